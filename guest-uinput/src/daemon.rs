//! The running bridge: one reader thread per pvmouse device, mapping and emitting under one lock
//! (no hand-off on the event path), and a main loop for everything else: hot-plug, layouts from
//! session agents, reloads on SIGHUP and DRM hot-plug, heartbeats to the host, and a clean exit.
//! Which layout and mode win is [`crate::arbitration`]'s to say; this module does the I/O.
//!
//! In desktop mode a reader hands the mapping to its device ([`crate::handoff`]) and then sleeps:
//! the display server reads the device itself. It wakes only when the main loop has something
//! new for it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use evdev::{AbsoluteAxisCode, Device};
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::EV_MSC;
use pvmouse_spec::profile::{DISPLAY_AXIS, STATUS_MSC_CODE};
use pvmouse_spec::status::{
    Acknowledgement, BRIDGE_PROTOCOL_VERSION, HEARTBEAT_INTERVAL_MS, StatusMessage,
};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::arbitration::{self, Arbiter};
use crate::devices;
use crate::handoff::{Action, Handoff, Want};
use crate::layout::Layout;
use crate::layout::resolve::{self, ResolveError, Sources};
use crate::mapper::{Mapper, PointerMode};
use crate::output::OutputError;
use crate::pointers::Pointers;
use crate::session::{self, Access, SessionEvent};

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
    /// In desktop mode, hand the layout to the device so the display server reads it directly.
    pub handoff: bool,
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
    /// Who should map, for every device: readers take it when woken.
    want: Want,
    handoff: bool,
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
        let result = self.apply_pointers(layout, mode);
        self.want = arbitration::want(self.handoff, self.mapper.mode(), self.mapper.layout());
        result
    }

    fn apply_pointers(&mut self, layout: Layout, mode: PointerMode) -> Result<(), OutputError> {
        if arbitration::keeps_pointers((self.mapper.mode(), self.mapper.layout()), (mode, &layout))
        {
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

/// Writes one status event into a pvmouse device. While the bridge holds the device, only the
/// grabbing open file may inject into it, so this goes through a duplicate of that descriptor.
fn send_status(file: &mut File, message: StatusMessage) -> std::io::Result<()> {
    send_value(file, message.encode())
}

/// One status value. No SYN_REPORT follows it: one written between two events of the device's
/// own frame would split that frame for every other reader. Readers ignore a lone `MSC_RAW`.
fn send_value(file: &mut File, value: i32) -> std::io::Result<()> {
    file.write_all(&crate::output::encode_event(EV_MSC, STATUS_MSC_CODE, value))
}

/// Between the values of a layout message: Linux drops a status event when the status queue is
/// full (QEMU 10 gives it 4 buffers), so the values are written one at a time and paced.
const PACE: Duration = Duration::from_millis(1);

/// What a reader waits on: its wake-up socket always, and its device unless parked (the
/// display server reads the device then).
struct Waiter {
    epoll: Epoll,
    watching_device: bool,
}

/// Which descriptor an epoll event is for: an index into [`Waiter::wait`]'s answer.
const WAKE: u64 = 0;
const DEVICE: u64 = 1;

impl Waiter {
    fn new(wake: BorrowedFd<'_>, device: BorrowedFd<'_>) -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        let readable = EpollEvent::new(EventSet::IN, WAKE);
        epoll.ctl(ControlOperation::Add, wake.as_raw_fd(), readable)?;
        let mut waiter = Self {
            epoll,
            watching_device: false,
        };
        waiter.watch_device(device, true)?;
        Ok(waiter)
    }

    /// Starts or stops waiting on the device.
    fn watch_device(&mut self, device: BorrowedFd<'_>, watch: bool) -> std::io::Result<()> {
        if watch == self.watching_device {
            return Ok(());
        }
        let op = if watch {
            ControlOperation::Add
        } else {
            ControlOperation::Delete
        };
        let readable = EpollEvent::new(EventSet::IN, DEVICE);
        self.epoll.ctl(op, device.as_raw_fd(), readable)?;
        self.watching_device = watch;
        Ok(())
    }

    /// Waits until the wake socket or the watched device has something, or `timeout` passes.
    /// Returns which are readable: the wake socket, the device.
    fn wait(&self, timeout: Option<Duration>) -> std::io::Result<[bool; 2]> {
        let ms = timeout.map_or(-1, |t| {
            i32::try_from(t.as_millis().max(1)).unwrap_or(i32::MAX)
        });
        let mut events = [EpollEvent::default(); 2];
        let n = match self.epoll.wait(ms, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        let mut ready = [false; 2];
        for event in events.iter().take(n) {
            if let Some(r) = usize::try_from(event.data())
                .ok()
                .and_then(|i| ready.get_mut(i))
            {
                *r = true;
            }
        }
        Ok(ready)
    }
}

/// One pvmouse device: it maps what the device sends, or, once the device maps, sleeps until
/// woken.
struct Reader {
    path: PathBuf,
    dev: Device,
    /// A duplicate of the device's descriptor, for status values.
    status: File,
    wake: UnixStream,
    waiter: Waiter,
    handoff: Handoff,
    bridge: Shared,
    /// Reused for each batch, so mapping allocates nothing per event.
    batch: Vec<InputEvent>,
}

impl Reader {
    fn run(mut self, tx: Sender<Msg>) {
        loop {
            let timeout = self
                .handoff
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let watch = !self.handoff.parked();
            if let Err(e) = self.waiter.watch_device(self.dev.as_fd(), watch) {
                tracing::error!(device = %self.path.display(), "epoll: {e}");
            }
            let ready = match self.waiter.wait(timeout) {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!(device = %self.path.display(), "poll: {e}");
                    [false, true]
                }
            };
            if ready[0] {
                self.woken();
            }
            if ready[1] {
                if let Err(e) = self.read_batch() {
                    tracing::info!(device = %self.path.display(), "pvmouse device gone: {e}");
                    let _ = tx.send(Msg::Gone(self.path));
                    return;
                }
            }
            let actions = self.handoff.on_timeout(Instant::now());
            self.act(actions);
        }
    }

    fn woken(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
        let was_parked = self.handoff.parked();
        let want = lock(&self.bridge).want.clone();
        let actions = self.handoff.steer(want, Instant::now());
        if was_parked && actions.contains(&Action::Grab) {
            // What piled up unread while parked went to the display server already.
            self.discard_unread();
        }
        self.act(actions);
    }

    fn discard_unread(&mut self) {
        if let Err(e) = self.waiter.watch_device(self.dev.as_fd(), true) {
            tracing::error!(device = %self.path.display(), "epoll: {e}");
            return;
        }
        while matches!(self.waiter.wait(Some(Duration::ZERO)), Ok([_, true])) {
            if self.dev.fetch_events().map(|e| e.count()).is_err() {
                return;
            }
        }
    }

    fn read_batch(&mut self) -> std::io::Result<()> {
        self.batch.clear();
        self.batch.extend(
            self.dev
                .fetch_events()?
                .map(|e| InputEvent::new(e.event_type().0, e.code(), e.value())),
        );
        let disposition = self.handoff.disposition();
        let mut answers = [None; 4];
        let mut n = 0;
        {
            let mut b = lock(&self.bridge);
            let Bridge { mapper, output, .. } = &mut *b;
            for &ev in &self.batch {
                if ev.kind == EV_MSC && ev.code == STATUS_MSC_CODE {
                    if let (Some(ack), Some(slot)) =
                        (Acknowledgement::decode(ev.value), answers.get_mut(n))
                    {
                        *slot = Some(ack);
                        n += 1;
                    }
                    continue;
                }
                if disposition.feeds(ev.kind) {
                    if let Some(frame) = mapper.feed(ev) {
                        output.queue(&frame);
                    }
                }
            }
            if let Err(e) = output.flush() {
                tracing::warn!("cannot write to the uinput pointer: {e}");
            }
        }
        for ack in answers.into_iter().flatten() {
            let before = self.handoff.parked();
            let actions = self.handoff.on_answer(ack, Instant::now());
            self.act(actions);
            if !before && self.handoff.parked() {
                tracing::info!(
                    device = %self.path.display(),
                    "the device maps onto the layout now; the bridge lets it be"
                );
            }
        }
        Ok(())
    }

    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Grab => {
                    if let Err(e) = self.dev.grab() {
                        tracing::warn!(device = %self.path.display(), "cannot grab: {e}");
                    }
                }
                Action::Ungrab => {
                    if let Err(e) = self.dev.ungrab() {
                        tracing::warn!(device = %self.path.display(), "cannot release: {e}");
                    }
                }
                Action::Send(values) => {
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            std::thread::sleep(PACE);
                        }
                        if let Err(e) = send_value(&mut self.status, *v) {
                            tracing::warn!(device = %self.path.display(), "status write: {e}");
                            break;
                        }
                    }
                }
                Action::ReleaseButtons => {
                    let mut b = lock(&self.bridge);
                    let f = b.mapper.release_all();
                    b.emit(&f);
                }
                Action::Sync => sync(&self.dev, &self.bridge),
            }
        }
    }
}

/// Takes over where the device is: the pointer goes there and held buttons stay held, so a
/// restarted bridge resumes a drag in progress.
fn sync(dev: &Device, bridge: &Shared) {
    let abs = dev.get_abs_state().ok();
    let value = |code: u16| abs.map(|a| a[usize::from(code)].value).unwrap_or(0);
    let keys: Vec<u16> = dev
        .get_key_state()
        .map(|k| k.iter().map(|c| c.0).collect())
        .unwrap_or_default();
    let display = u8::try_from(value(DISPLAY_AXIS)).unwrap_or(0);
    let mut b = lock(bridge);
    let f = b.mapper.sync(
        display,
        value(AbsoluteAxisCode::ABS_X.0),
        value(AbsoluteAxisCode::ABS_Y.0),
        &keys,
    );
    b.emit(&f);
}

/// What the main loop keeps of a device: where heartbeats go, and how to wake its reader.
struct Attached {
    status: File,
    wake: UnixStream,
}

struct Daemon {
    config: Config,
    bridge: Shared,
    /// Devices being read, by node.
    devices: BTreeMap<PathBuf, Attached>,
    arbiter: Arbiter,
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
            let dup = || dev.as_fd().try_clone_to_owned().map(File::from);
            let (mut status, reader_status) = match (dup(), dup()) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(device = %path.display(), "cannot duplicate descriptor: {e}");
                    continue;
                }
            };
            let (wake, reader_wake) = match UnixStream::pair()
                .and_then(|(a, b)| b.set_nonblocking(true).map(|()| (a, b)))
            {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("cannot make a wake-up socket: {e}");
                    continue;
                }
            };
            let waiter = match Waiter::new(reader_wake.as_fd(), dev.as_fd()) {
                Ok(waiter) => waiter,
                Err(e) => {
                    tracing::warn!("cannot make an epoll instance: {e}");
                    continue;
                }
            };
            sync(&dev, &self.bridge);
            if let Err(e) = send_status(&mut status, present()) {
                tracing::warn!(device = %path.display(), "cannot announce the bridge: {e}");
            }
            tracing::info!(device = %path.display(), "bridging pvmouse device");
            let want = lock(&self.bridge).want.clone();
            let (handoff, actions) = Handoff::attach(want, Instant::now());
            let mut reader = Reader {
                path: path.clone(),
                dev,
                status: reader_status,
                wake: reader_wake,
                waiter,
                handoff,
                bridge: self.bridge.clone(),
                batch: Vec::with_capacity(64),
            };
            reader.act(actions);
            self.devices.insert(path, Attached { status, wake });
            let tx = self.tx.clone();
            std::thread::spawn(move || reader.run(tx));
        }
    }

    /// Tells every reader to look at what is wanted now.
    fn wake_readers(&mut self) {
        for (path, d) in &mut self.devices {
            if let Err(e) = d.wake.write_all(&[1]) {
                tracing::warn!(device = %path.display(), "cannot wake the reader: {e}");
            }
        }
    }

    fn heartbeat(&mut self) {
        for (path, d) in &mut self.devices {
            if let Err(e) = send_status(&mut d.status, present()) {
                tracing::debug!(device = %path.display(), "heartbeat failed: {e}");
            }
        }
    }

    fn release(&self) {
        let mut b = lock(&self.bridge);
        let f = b.mapper.release_all();
        b.emit(&f);
    }

    /// Resolves the layout again, from the sources as they are now, and puts it in force.
    fn reload(&mut self) -> arbitration::Outcome {
        self.config.layout.session = self.arbiter.session_layout().cloned();
        let (layout, source) = resolve::resolve(&self.config.layout).map_err(|e| e.to_string())?;
        let mode = self.arbiter.mode_for(source);
        tracing::info!(?layout, ?source, ?mode, "layout in force");
        let applied = lock(&self.bridge).apply(layout, mode);
        self.wake_readers();
        applied.map_err(|e| e.to_string())?;
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
                let proposal = self.arbiter.propose(agent, server, layout, mode);
                let outcome = self.reload();
                let _ = reply.send(self.arbiter.settle(proposal, outcome, displays));
            }
            SessionEvent::Gone { agent } => {
                if let Some(gone) = self.arbiter.forget(agent) {
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
                    // The devices forget the layout at once and go back to per-display positions.
                    for d in self.devices.values_mut() {
                        let _ = send_status(&mut d.status, StatusMessage::BridgeGone);
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
    let arbiter = Arbiter::new(config.mode);
    let mode = arbiter.mode_for(source);
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
            want: arbitration::want(config.handoff, mode, &layout),
            handoff: config.handoff,
            mapper: Mapper::with_mode(layout, mode),
            output,
        })),
        config,
        devices: BTreeMap::new(),
        arbiter,
        tx,
    };
    daemon.run(rx);
    Ok(())
}
