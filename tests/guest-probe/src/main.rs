//! `pvmouse-guest-probe`: the test harness's hands and eyes inside a guest.
//!
//! It talks line by line over a virtio-serial port, found by its name. Each command gets
//! replies prefixed so the host can pick them out of the event stream:
//!
//! | command | reply |
//! |---|---|
//! | `caps NAME` | `CAPS NAME {json}`: EVIOCGNAME, EVIOCGUNIQ, EVIOCGID, EVIOCGPROP, EVIOCGBIT per type, EVIOCGABS per axis |
//! | `watch NAME` | `OPEN NAME /dev/input/eventN`, then `EV NAME sec.usec type code value` per event; `GONE NAME` when the device goes away, and `OPEN` again when it returns |
//! | `state NAME` | `STATE NAME {json}`: keys held (EVIOCGKEY) and absolute values (EVIOCGABS) |
//! | `run SHELL-COMMAND` | `OUT line`… then `RC code` |
//! | `spawn SHELL-COMMAND` | `SPAWNED pid`, then `SP line` for each line it prints, as it prints it (stderr is dropped), and `SPEXIT code` when it ends |
//! | `echo TEXT` | `ECHO TEXT` |
//! | `bench NAME` | `BENCH NAME /dev/input/eventN`, then `FR NAME x` for each frame that moves ABS_X (or has REL_X: `x` is the motion); button transitions and `SYN_DROPPED` are only counted |
//! | `tally NAME` | `TALLY NAME {json}`: frames, presses, releases and `SYN_DROPPED`s a `bench` reader has seen |
//! | `flap NAME SECONDS` | writes bridge status messages into the device as fast as it can for SECONDS, alternating "present" (versions 1 to 6) and "gone", then one "present, version 7"; then `FLAP NAME count` |
//! | `combo` | creates (once) a uinput pointer with both ABS_X/ABS_Y (0..65535) and REL_X/REL_Y, three buttons and the wheel, named `pvmouse combo probe`: what a pointer with a relative mode could look like, to see what the guest's consumers make of it; `COMBO /dev/input/eventN` |
//! | `combo-emit abs X Y` / `combo-emit rel DX DY` | writes one frame of it; `EMITTED` |
//!
//! Events are read raw, so a kernel-side overflow shows up as `SYN_DROPPED` (type 0 code 3)
//! rather than being resynchronised away.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use evdev::raw_stream::RawDevice;
use pvmouse_spec::evdev::{
    ABS_X, EV_ABS, EV_KEY, EV_MSC, EV_REL, EV_SYN, REL_X, SYN_DROPPED, SYN_REPORT,
};
use pvmouse_spec::profile::STATUS_MSC_CODE;
use pvmouse_spec::status::StatusMessage;
use serde_json::{Map, Value, json};

type Out = Arc<Mutex<File>>;

fn say(out: &Out, text: &str) {
    let mut f = out.lock().unwrap_or_else(|e| e.into_inner());
    // The host reads lines; a failed write means it is gone, and there is no one to tell.
    let _ = f.write_all(text.as_bytes());
}

/// The /dev node of the virtio-serial port called `name`.
fn find_port(name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir("/sys/class/virtio-ports").ok()?.flatten() {
        let port_name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if port_name.trim() == name {
            return Some(Path::new("/dev").join(entry.file_name()));
        }
    }
    None
}

fn find_device(name: &str) -> Option<(PathBuf, RawDevice)> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev/input")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("event"))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().find_map(|path| {
        let dev = RawDevice::open(&path).ok()?;
        (dev.name() == Some(name)).then_some((path, dev))
    })
}

fn caps(dev: &RawDevice) -> Value {
    let id = dev.input_id();
    let codes = |it: Box<dyn Iterator<Item = u16> + '_>| -> Vec<u16> { it.collect() };
    let mut bits = Map::new();
    bits.insert(
        "ev".into(),
        json!(codes(Box::new(dev.supported_events().iter().map(|e| e.0)))),
    );
    if let Some(k) = dev.supported_keys() {
        bits.insert("key".into(), json!(codes(Box::new(k.iter().map(|c| c.0)))));
    }
    if let Some(r) = dev.supported_relative_axes() {
        bits.insert("rel".into(), json!(codes(Box::new(r.iter().map(|c| c.0)))));
    }
    if let Some(a) = dev.supported_absolute_axes() {
        bits.insert("abs".into(), json!(codes(Box::new(a.iter().map(|c| c.0)))));
    }
    if let Some(m) = dev.misc_properties() {
        bits.insert("msc".into(), json!(codes(Box::new(m.iter().map(|c| c.0)))));
    }
    let mut absinfo = Map::new();
    if let (Some(axes), Ok(state)) = (dev.supported_absolute_axes(), dev.get_abs_state()) {
        for axis in axes.iter() {
            let a = state[usize::from(axis.0)];
            absinfo.insert(
                axis.0.to_string(),
                json!({"value": a.value, "min": a.minimum, "max": a.maximum,
                       "fuzz": a.fuzz, "flat": a.flat, "res": a.resolution}),
            );
        }
    }
    json!({
        "name": dev.name(),
        "uniq": dev.unique_name(),
        "id": {"bustype": id.bus_type().0, "vendor": id.vendor(), "product": id.product(),
               "version": id.version()},
        "props": codes(Box::new(dev.properties().iter().map(|p| p.0))),
        "bits": bits,
        "absinfo": absinfo,
    })
}

/// What a hostile guest process can do with no bridge at all: write status messages into the
/// evdev node, which virtio_input forwards to the device's status queue.
fn flap(arg: String, out: Out) {
    std::thread::spawn(move || {
        let (name, seconds) = arg.rsplit_once(' ').unwrap_or((arg.as_str(), "1"));
        let seconds: f64 = seconds.parse().unwrap_or(1.0);
        let Some((_, mut dev)) = find_device(name) else {
            say(&out, &format!("ERR flap: no device named {name}\n"));
            return;
        };
        let message =
            |m: StatusMessage| evdev::InputEvent::new(EV_MSC, STATUS_MSC_CODE, m.encode());
        let start = Instant::now();
        let mut count = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            let version = u8::try_from(count % 6).unwrap_or(0) + 1;
            let batch = [
                message(StatusMessage::BridgePresent { version }),
                message(StatusMessage::BridgeGone),
            ];
            if let Err(e) = dev.send_events(&batch) {
                say(&out, &format!("ERR flap: {e}\n"));
                return;
            }
            count += 2;
        }
        // Linux drops a status event when the status queue is full (QEMU 10 gives it 4
        // buffers), as it may be after the storm: let it drain, so the last state is sent.
        std::thread::sleep(Duration::from_millis(50));
        let last = [message(StatusMessage::BridgePresent { version: 7 })];
        let _ = dev.send_events(&last);
        say(&out, &format!("FLAP {name} {}\n", count + 1));
    });
}

fn state(dev: &RawDevice) -> Value {
    let keys: Vec<u16> = dev
        .get_key_state()
        .map(|k| k.iter().map(|c| c.0).collect())
        .unwrap_or_default();
    let mut abs = Map::new();
    if let (Some(axes), Ok(st)) = (dev.supported_absolute_axes(), dev.get_abs_state()) {
        for axis in axes.iter() {
            abs.insert(axis.0.to_string(), json!(st[usize::from(axis.0)].value));
        }
    }
    json!({"keys": keys, "abs": abs})
}

/// Streams `name`'s events until the probe exits, reopening the device whenever it returns.
///
/// The reader only reads and formats; a thread of its own writes to the port. A write to the
/// port waits for the host, and under TCG that can take long enough for the evdev buffer (128
/// events) to overflow behind a reader that writes as it reads.
fn watch(name: String, out: Out) {
    let (lines, to_write) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for text in to_write {
            say(&out, &text);
        }
    });
    // The writer ends only with the probe, so a failed send has no one to tell either.
    let send = move |text: String| {
        let _ = lines.send(text);
    };
    std::thread::spawn(move || {
        let mut announced_missing = false;
        loop {
            let Some((path, mut dev)) = find_device(&name) else {
                if !announced_missing {
                    send(format!("MISSING {name}\n"));
                    announced_missing = true;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            announced_missing = false;
            send(format!("OPEN {name} {}\n", path.display()));
            loop {
                let mut batch = String::new();
                match dev.fetch_events() {
                    Ok(events) => {
                        for ev in events {
                            let t = ev
                                .timestamp()
                                .duration_since(UNIX_EPOCH)
                                .unwrap_or_default();
                            batch.push_str(&format!(
                                "EV {name} {}.{:06} {} {} {}\n",
                                t.as_secs(),
                                t.subsec_micros(),
                                ev.event_type().0,
                                ev.code(),
                                ev.value()
                            ));
                        }
                        send(batch);
                    }
                    Err(_) => {
                        send(format!("GONE {name}\n"));
                        break;
                    }
                }
            }
        }
    });
}

/// What a `bench` reader has counted on one device.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    frames: u64,
    presses: u64,
    releases: u64,
    dropped: u64,
}

static TALLIES: Mutex<BTreeMap<String, Tally>> = Mutex::new(BTreeMap::new());

fn tally_of(name: &str) -> Tally {
    let tallies = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
    tallies.get(name).copied().unwrap_or_default()
}

/// The benchmark's echo path: one short line per frame that carries a position, written as soon
/// as the frame's SYN_REPORT is read, so the host can time each sample. Button frames are only
/// counted, so a burst of clicks is not throttled by the serial channel.
fn bench(name: String, out: Out) {
    std::thread::spawn(move || {
        let (path, mut dev) = loop {
            match find_device(&name) {
                Some(found) => break found,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        say(&out, &format!("BENCH {name} {}\n", path.display()));
        let mut batch = String::new();
        let mut frame_x = None;
        loop {
            let Ok(events) = dev.fetch_events() else {
                say(&out, &format!("GONE {name}\n"));
                return;
            };
            batch.clear();
            let mut seen = Tally::default();
            for ev in events {
                match (ev.event_type().0, ev.code(), ev.value()) {
                    (EV_SYN, SYN_REPORT, _) => {
                        seen.frames += 1;
                        if let Some(x) = frame_x.take() {
                            let _ = writeln!(batch, "FR {name} {x}");
                        }
                    }
                    (EV_SYN, SYN_DROPPED, _) => seen.dropped += 1,
                    (EV_ABS, ABS_X, x) => frame_x = Some(x),
                    // A relative pointer's sample is its motion on X.
                    (EV_REL, REL_X, dx) => frame_x = Some(dx),
                    (EV_KEY, _, 1) => seen.presses += 1,
                    (EV_KEY, _, 0) => seen.releases += 1,
                    _ => {}
                }
            }
            if !batch.is_empty() {
                say(&out, &batch);
            }
            let mut tallies = TALLIES.lock().unwrap_or_else(|e| e.into_inner());
            let t = tallies.entry(name.clone()).or_default();
            t.frames += seen.frames;
            t.presses += seen.presses;
            t.releases += seen.releases;
            t.dropped += seen.dropped;
        }
    });
}

fn run(command: &str, out: &Out) {
    match Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => {
            let mut text = String::new();
            for line in String::from_utf8_lossy(&o.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&o.stderr).lines())
            {
                text.push_str(&format!("OUT {line}\n"));
            }
            text.push_str(&format!("RC {}\n", o.status.code().unwrap_or(-1)));
            say(out, &text);
        }
        Err(e) => say(out, &format!("OUT cannot run /bin/sh: {e}\nRC 127\n")),
    }
}

/// Starts a command in the background and streams its output as it comes, so the host can time
/// what a program inside the guest saw (the benchmark's display-server client).
fn spawn(command: &str, out: Out) {
    let child = Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return say(&out, &format!("ERR spawn: {e}\n")),
    };
    say(&out, &format!("SPAWNED {}\n", child.id()));
    let Some(stdout) = child.stdout.take() else {
        return;
    };
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            say(&out, &format!("SP {line}\n"));
        }
        let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
        say(&out, &format!("SPEXIT {code}\n"));
    });
}

fn main() {
    let port_name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "pvmouse.probe".into());
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = loop {
        if let Some(p) = find_port(&port_name) {
            break p;
        }
        if Instant::now() > deadline {
            eprintln!("pvmouse-guest-probe: no virtio-serial port named {port_name}");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let port = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pvmouse-guest-probe: cannot open {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let reader = match port.try_clone() {
        Ok(r) => BufReader::new(r),
        Err(e) => {
            eprintln!("pvmouse-guest-probe: {e}");
            std::process::exit(1);
        }
    };
    let out: Out = Arc::new(Mutex::new(port));
    say(&out, "HELLO pvmouse-guest-probe\n");
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match cmd {
            "caps" => match find_device(arg) {
                Some((_, dev)) => say(&out, &format!("CAPS {arg} {}\n", caps(&dev))),
                None => say(&out, &format!("ERR caps: no device named {arg}\n")),
            },
            "state" => match find_device(arg) {
                Some((_, dev)) => say(&out, &format!("STATE {arg} {}\n", state(&dev))),
                None => say(&out, &format!("ERR state: no device named {arg}\n")),
            },
            "watch" => watch(arg.to_owned(), out.clone()),
            "run" => run(arg, &out),
            "spawn" => spawn(arg, out.clone()),
            "echo" => say(&out, &format!("ECHO {arg}\n")),
            "bench" => bench(arg.to_owned(), out.clone()),
            "flap" => flap(arg.to_owned(), out.clone()),
            "tally" => {
                let t = tally_of(arg);
                say(
                    &out,
                    &format!(
                        "TALLY {arg} {}\n",
                        json!({"frames": t.frames, "presses": t.presses,
                               "releases": t.releases, "dropped": t.dropped})
                    ),
                );
            }
            "combo" => match combo::create() {
                Ok(node) => say(&out, &format!("COMBO {node}\n")),
                Err(e) => say(&out, &format!("ERR combo: {e}\n")),
            },
            "combo-emit" => match combo::emit(arg) {
                Ok(()) => say(&out, "EMITTED\n"),
                Err(e) => say(&out, &format!("ERR combo-emit: {e}\n")),
            },
            "" => {}
            other => say(&out, &format!("ERR unknown command {other}\n")),
        }
    }
}

/// A uinput pointer with absolute and relative axes both: the shape a pvmouse with a relative
/// mode could take, made here so that what udev, libinput and the display servers do with it
/// can be measured before the device takes that shape.
mod combo {
    use std::sync::Mutex;

    use evdev::uinput::VirtualDevice;
    use evdev::{
        AbsInfo, AbsoluteAxisCode, AttributeSet, BusType, EventType, InputEvent, InputId, KeyCode,
        RelativeAxisCode, UinputAbsSetup,
    };
    use pvmouse_spec::evdev::{ABS_X, ABS_Y, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, REL_WHEEL};

    /// REL_X and REL_Y (Linux's codes 0 and 1).
    const REL_X: u16 = 0;
    const REL_Y: u16 = 1;

    static DEVICE: Mutex<Option<VirtualDevice>> = Mutex::new(None);

    /// Creates the device once; its event node.
    pub fn create() -> std::io::Result<String> {
        let mut slot = DEVICE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            let keys: AttributeSet<KeyCode> = [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE]
                .into_iter()
                .map(KeyCode)
                .collect();
            let rels: AttributeSet<RelativeAxisCode> = [REL_X, REL_Y, REL_WHEEL]
                .into_iter()
                .map(RelativeAxisCode)
                .collect();
            let axis = |code| {
                UinputAbsSetup::new(AbsoluteAxisCode(code), AbsInfo::new(0, 0, 65535, 0, 0, 0))
            };
            let device = VirtualDevice::builder()?
                .name("pvmouse combo probe")
                // Not pvmouse's ids: the bridge's udev rule must not take it.
                .input_id(InputId::new(BusType::BUS_VIRTUAL, 0x7076, 0x6370, 1))
                .with_keys(&keys)?
                .with_relative_axes(&rels)?
                .with_absolute_axis(&axis(ABS_X))?
                .with_absolute_axis(&axis(ABS_Y))?
                .build()?;
            *slot = Some(device);
        }
        let device = slot
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no device"))?;
        let node = device
            .enumerate_dev_nodes_blocking()?
            .flatten()
            .next()
            .ok_or_else(|| std::io::Error::other("no event node"))?;
        Ok(node.display().to_string())
    }

    /// `abs X Y` or `rel DX DY`: one frame (the SYN_REPORT is emit's own).
    pub fn emit(arg: &str) -> std::io::Result<()> {
        let bad = || std::io::Error::other(format!("want `abs X Y` or `rel DX DY`, got {arg:?}"));
        let words: Vec<&str> = arg.split_whitespace().collect();
        let [kind, a, b] = words[..] else {
            return Err(bad());
        };
        let (a, b): (i32, i32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        let (ty, codes) = match kind {
            "abs" => (EventType::ABSOLUTE, [ABS_X, ABS_Y]),
            "rel" => (EventType::RELATIVE, [REL_X, REL_Y]),
            _ => return Err(bad()),
        };
        let mut slot = DEVICE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let device = slot
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no combo device yet"))?;
        device.emit(&[
            InputEvent::new(ty.0, codes[0], a),
            InputEvent::new(ty.0, codes[1], b),
        ])
    }
}
