//! The running bridge: one reader thread per grabbed pvmouse device, mapping and emitting under
//! one lock (no hand-off on the event path), and a main loop for everything else: hot-plug,
//! layouts from session agents, reloads on SIGHUP and DRM hot-plug, heartbeats to the host, and
//! a clean exit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use evdev::{AbsoluteAxisCode, Device};
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::EV_MSC;
use pvmouse_spec::profile::{DISPLAY_AXIS, STATUS_MSC_CODE};
use pvmouse_spec::status::{BRIDGE_PROTOCOL_VERSION, HEARTBEAT_INTERVAL_MS, StatusMessage};

use crate::devices;
use crate::layout::Layout;
use crate::layout::resolve::{self, ResolveError, Source, Sources};
use crate::mapper::{Mapper, PointerMode};
use crate::output::OutputError;
use crate::pointers::Pointers;
use crate::session::{self, Access, SessionEvent};
use pvmouse_spec::session::Reply;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the layout may come from; see [`resolve`].
    pub layout: Sources,
    pub input_dir: PathBuf,
    /// `--mode`: the operator's choice, which beats the session agent's. `None` takes the
    /// agent's word, and desktop mode without an agent.
    pub mode: Option<PointerMode>,
    /// Where session agents connect, and who may; `None` serves no session socket.
    pub session: Option<(PathBuf, Access)>,
    /// Where the per-display pointers' udev binding rules are written.
    pub udev_rules: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Layout(#[from] ResolveError),
    #[error("cannot set up {0}: {1}")]
    Setup(&'static str, std::io::Error),
}

struct Bridge {
    mapper: Mapper,
    output: Pointers,
}

impl Bridge {
    fn emit(&mut self, frame: &crate::mapper::OutputFrame) {
        if let Err(e) = self.output.emit(frame) {
            tracing::warn!("cannot write to the uinput pointer: {e}");
        }
    }

    /// Puts a layout and mode in force. A mode change, or a per-display pointer that must be
    /// re-created, first releases held buttons on the pointers that pressed them; otherwise
    /// the pointers stay and so does a drag in progress.
    fn apply(&mut self, layout: Layout, mode: PointerMode) -> Result<(), OutputError> {
        let same_pointers = mode == self.mapper.mode()
            && (mode == PointerMode::Desktop || same_displays(self.mapper.layout(), &layout));
        if same_pointers {
            let f = self.mapper.set_layout(layout);
            self.emit(&f);
            return Ok(());
        }
        let (old_layout, old_mode) = (self.mapper.layout().clone(), self.mapper.mode());
        let released = self.mapper.set_mode(layout, mode);
        self.emit(&released);
        let result = self.output.reconcile(mode, self.mapper.layout());
        if result.is_err() {
            // Back to what worked, so the mapper and the pointers agree again.
            let _ = self.mapper.set_mode(old_layout, old_mode);
            if let Err(e) = self.output.reconcile(old_mode, self.mapper.layout()) {
                tracing::error!("cannot restore the previous pointers either: {e}");
            }
        }
        let f = self.mapper.place_now();
        self.emit(&f);
        result
    }
}

/// Whether two layouts need the same per-display pointers: the same displays, bound to the same
/// outputs.
fn same_displays(a: &Layout, b: &Layout) -> bool {
    a.displays()
        .map(|(id, d)| (id, &d.name))
        .eq(b.displays().map(|(id, d)| (id, &d.name)))
}

/// A session agent's newest layout.
#[derive(Debug)]
struct AgentLayout {
    server: String,
    layout: Layout,
    mode: PointerMode,
    /// When it arrived, in the order of arrival: the newest agent wins.
    seq: u64,
}

type Shared = Arc<Mutex<Bridge>>;

fn lock(bridge: &Shared) -> MutexGuard<'_, Bridge> {
    bridge.lock().unwrap_or_else(|e| e.into_inner())
}

enum Msg {
    Rescan,
    Gone(PathBuf),
    Reload,
    Session(SessionEvent),
    Exit,
}

/// Writes one status event into a grabbed pvmouse device. Only the grabbing open file may
/// inject into a grabbed device, so this goes through a duplicate of that descriptor.
fn send_status(file: &mut File, message: StatusMessage) -> std::io::Result<()> {
    file.write_all(&crate::output::encode_event(
        EV_MSC,
        STATUS_MSC_CODE,
        message.encode(),
    ))
}

fn reader(path: PathBuf, mut dev: Device, bridge: Shared, tx: Sender<Msg>) {
    loop {
        match dev.fetch_events() {
            Ok(events) => {
                let mut b = lock(&bridge);
                let Bridge { mapper, output } = &mut *b;
                for e in events {
                    let ev = InputEvent::new(e.event_type().0, e.code(), e.value());
                    if let Some(frame) = mapper.feed(ev) {
                        output.queue(&frame);
                    }
                }
                if let Err(e) = output.flush() {
                    tracing::warn!("cannot write to the uinput pointer: {e}");
                }
            }
            Err(e) => {
                tracing::info!(device = %path.display(), "pvmouse device gone: {e}");
                let _ = tx.send(Msg::Gone(path));
                return;
            }
        }
    }
}

struct Daemon {
    config: Config,
    bridge: Shared,
    /// Grabbed devices, by node, with the descriptor heartbeats go through.
    devices: BTreeMap<PathBuf, File>,
    agents: BTreeMap<u64, AgentLayout>,
    next_seq: u64,
    tx: Sender<Msg>,
}

impl Daemon {
    fn attach_new(&mut self) {
        for (path, mut dev) in devices::scan(&self.config.input_dir) {
            if self.devices.contains_key(&path) {
                continue;
            }
            if let Err(e) = dev.grab() {
                tracing::warn!(device = %path.display(), "cannot grab pvmouse device: {e}");
                continue;
            }
            let mut status = match dev.as_fd().try_clone_to_owned() {
                Ok(fd) => File::from(fd),
                Err(e) => {
                    tracing::warn!(device = %path.display(), "cannot duplicate descriptor: {e}");
                    continue;
                }
            };
            // Take over where the device is: a restarted bridge resumes a drag in progress.
            let abs = dev.get_abs_state().ok();
            let value = |code: u16| abs.map(|a| a[usize::from(code)].value).unwrap_or(0);
            let keys: Vec<u16> = dev
                .get_key_state()
                .map(|k| k.iter().map(|c| c.0).collect())
                .unwrap_or_default();
            let display = u8::try_from(value(DISPLAY_AXIS)).unwrap_or(0);
            {
                let mut b = lock(&self.bridge);
                let f = b.mapper.sync(
                    display,
                    value(AbsoluteAxisCode::ABS_X.0),
                    value(AbsoluteAxisCode::ABS_Y.0),
                    &keys,
                );
                b.emit(&f);
            }
            if let Err(e) = send_status(&mut status, present()) {
                tracing::warn!(device = %path.display(), "cannot announce the bridge: {e}");
            }
            tracing::info!(device = %path.display(), "bridging pvmouse device");
            self.devices.insert(path.clone(), status);
            let (bridge, tx) = (self.bridge.clone(), self.tx.clone());
            std::thread::spawn(move || reader(path, dev, bridge, tx));
        }
    }

    fn heartbeat(&mut self) {
        for (path, file) in &mut self.devices {
            if let Err(e) = send_status(file, present()) {
                tracing::debug!(device = %path.display(), "heartbeat failed: {e}");
            }
        }
    }

    fn release(&self) {
        let mut b = lock(&self.bridge);
        let f = b.mapper.release_all();
        b.emit(&f);
    }

    /// The mode for a layout from `source`: the operator's, else the agent's, else desktop.
    fn mode_for(&self, source: Source) -> PointerMode {
        let agent = self
            .agents
            .values()
            .max_by_key(|a| a.seq)
            .filter(|_| source == Source::Session)
            .map(|a| a.mode);
        self.config.mode.or(agent).unwrap_or(PointerMode::Desktop)
    }

    /// Resolves the layout again, from the sources as they are now, and puts it in force.
    fn reload(&mut self) -> Result<(Source, PointerMode), String> {
        self.config.layout.session = self
            .agents
            .values()
            .max_by_key(|a| a.seq)
            .map(|a| a.layout.clone());
        let (layout, source) = resolve::resolve(&self.config.layout).map_err(|e| e.to_string())?;
        let mode = self.mode_for(source);
        tracing::info!(?layout, ?source, ?mode, "layout in force");
        lock(&self.bridge)
            .apply(layout, mode)
            .map_err(|e| e.to_string())?;
        Ok((source, mode))
    }

    fn session(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Layout {
                agent,
                server,
                layout,
                mode,
                displays,
                reply,
            } => {
                tracing::info!(agent, %server, ?mode, "layout from the session");
                self.next_seq += 1;
                let previous = self.agents.insert(
                    agent,
                    AgentLayout {
                        server,
                        layout,
                        mode,
                        seq: self.next_seq,
                    },
                );
                let answer = match self.reload() {
                    Ok((Source::Session, mode)) => Reply::Applied { displays, mode },
                    Ok((source, _)) => Reply::Error(format!(
                        "kept for later: the bridge's {source:?} layout is in force \
                         (the operator's --layout beats the session's)"
                    )),
                    Err(e) => {
                        // Not usable: forget it, so it cannot win later either.
                        match previous {
                            Some(p) => self.agents.insert(agent, p),
                            None => self.agents.remove(&agent),
                        };
                        Reply::Error(e)
                    }
                };
                let _ = reply.send(answer);
            }
            SessionEvent::Gone { agent } => {
                if let Some(gone) = self.agents.remove(&agent) {
                    tracing::info!(agent, server = %gone.server, "session agent gone");
                    if let Err(e) = self.reload() {
                        tracing::error!("layout not reloaded, keeping the current one: {e}");
                    }
                }
            }
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        self.attach_new();
        let interval = Duration::from_millis(HEARTBEAT_INTERVAL_MS);
        let mut next_beat = Instant::now() + interval;
        loop {
            let wait = next_beat.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Rescan) => self.attach_new(),
                Ok(Msg::Gone(path)) => {
                    self.devices.remove(&path);
                    self.release();
                }
                Ok(Msg::Reload) => {
                    if let Err(e) = self.reload() {
                        tracing::error!("layout not reloaded, keeping the current one: {e}");
                    }
                }
                Ok(Msg::Session(event)) => self.session(event),
                Ok(Msg::Exit) | Err(RecvTimeoutError::Disconnected) => {
                    self.release();
                    for file in self.devices.values_mut() {
                        let _ = send_status(file, StatusMessage::BridgeGone);
                    }
                    tracing::info!("exiting; buttons released, host told");
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.heartbeat();
                    next_beat += interval;
                }
            }
        }
    }
}

fn present() -> StatusMessage {
    StatusMessage::BridgePresent {
        version: BRIDGE_PROTOCOL_VERSION,
    }
}

fn watch_signals(tx: Sender<Msg>) -> Result<(), DaemonError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(|e| DaemonError::Setup("signal handling", e))?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let msg = if sig == SIGHUP {
                Msg::Reload
            } else {
                Msg::Exit
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    Ok(())
}

fn watch_hotplug(dir: &Path, tx: Sender<Msg>) -> Result<(), DaemonError> {
    use inotify::{Inotify, WatchMask};
    let mut inotify = Inotify::init().map_err(|e| DaemonError::Setup("inotify", e))?;
    inotify
        .watches()
        .add(dir, WatchMask::CREATE | WatchMask::ATTRIB)
        .map_err(|e| DaemonError::Setup("watching the input directory", e))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while inotify.read_events_blocking(&mut buf).is_ok() {
            if tx.send(Msg::Rescan).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// DRM hot-plug uevents trigger the same reload as SIGHUP. Without the socket (no netlink in
/// a sandbox, say) the bridge still works; it just waits for SIGHUP.
fn watch_drm(tx: Sender<Msg>) {
    match crate::drm_hotplug::uevent_socket() {
        Ok(socket) => {
            std::thread::spawn(move || {
                crate::drm_hotplug::watch(socket, || tx.send(Msg::Reload).is_ok());
            });
        }
        Err(e) => tracing::warn!("no DRM hot-plug notices (uevent socket: {e}); use SIGHUP"),
    }
}

/// The session socket, serving agents on its own thread.
fn serve_session(
    path: &Path,
    access: Access,
    dri: PathBuf,
    tx: Sender<Msg>,
) -> Result<(), DaemonError> {
    let listener = session::bind(path).map_err(|e| DaemonError::Setup("the session socket", e))?;
    tracing::info!(socket = %path.display(), "session agents may connect");
    std::thread::spawn(move || {
        let connectors = Arc::new(move || crate::layout::drm::connectors(&dri));
        session::serve(listener, access, connectors, move |event| {
            tx.send(Msg::Session(event)).is_ok()
        });
    });
    Ok(())
}

/// Runs until SIGTERM or SIGINT. Setup errors (no uinput, bad layout) return at once.
pub fn run(config: Config) -> Result<(), DaemonError> {
    let (layout, source) = resolve::resolve(&config.layout)?;
    let mode = config.mode.unwrap_or(PointerMode::Desktop);
    tracing::info!(?layout, ?source, ?mode, "desktop layout");
    let output = Pointers::new(mode, &layout, &config.udev_rules)?;
    let (tx, rx) = channel();
    watch_signals(tx.clone())?;
    watch_hotplug(&config.input_dir, tx.clone())?;
    watch_drm(tx.clone());
    if let Some((path, access)) = &config.session {
        serve_session(
            path,
            access.clone(),
            config.layout.dri_dir.clone(),
            tx.clone(),
        )?;
    }
    let daemon = Daemon {
        bridge: Arc::new(Mutex::new(Bridge {
            mapper: Mapper::with_mode(layout, mode),
            output,
        })),
        config,
        devices: BTreeMap::new(),
        agents: BTreeMap::new(),
        next_seq: 0,
        tx,
    };
    daemon.run(rx);
    Ok(())
}
