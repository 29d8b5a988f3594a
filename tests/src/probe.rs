//! The host end of the guest probe's virtio-serial channel: commands out, lines in.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pvmouse_spec::InputEvent;

/// One event as the guest's evdev reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuestEvent {
    /// Kernel timestamp, seconds.
    pub time: f64,
    pub event: InputEvent,
}

#[derive(Debug, Default)]
struct Lines {
    lines: Vec<String>,
    /// When each line arrived, for timing round trips.
    arrived: Vec<Instant>,
    closed: bool,
}

/// Every line the probe sent, kept in order; readers look from a mark onwards.
#[derive(Debug, Clone)]
pub struct ProbeLink {
    writer: Arc<Mutex<UnixStream>>,
    lines: Arc<(Mutex<Lines>, Condvar)>,
}

impl ProbeLink {
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        let reader = BufReader::new(stream.try_clone()?);
        let lines: Arc<(Mutex<Lines>, Condvar)> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                let (m, cv) = &*sink;
                let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                g.lines.push(line);
                g.arrived.push(now);
                drop(g);
                cv.notify_all();
            }
            let (m, cv) = &*sink;
            m.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            cv.notify_all();
        });
        Ok(Self {
            writer: Arc::new(Mutex::new(stream)),
            lines,
        })
    }

    /// Where the line stream stands now; later searches start here.
    pub fn mark(&self) -> usize {
        self.lines
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .len()
    }

    pub fn send(&self, command: &str) -> std::io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(w, "{command}")
    }

    /// The first line at or after `from` that `matches`, waiting up to `timeout`.
    pub fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Result<(usize, String), String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = from;
        loop {
            while next < g.lines.len() {
                if matches(&g.lines[next]) {
                    return Ok((next, g.lines[next].clone()));
                }
                next += 1;
            }
            if g.closed {
                return Err("the guest probe closed its channel".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let tail: Vec<&String> = g.lines.iter().rev().take(5).collect();
                return Err(format!(
                    "timed out after {timeout:?}; last probe lines: {tail:?}"
                ));
            }
            g = cv
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends `command` and returns the first reply line starting with `prefix`.
    pub fn request(
        &self,
        command: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let mark = self.mark();
        self.send(command).map_err(|e| e.to_string())?;
        self.wait_for(mark, timeout, |l| {
            l.starts_with(prefix) || l.starts_with("ERR ")
        })
        .and_then(|(_, l)| if l.starts_with("ERR ") { Err(l) } else { Ok(l) })
    }

    /// Starts streaming the events of the input device called `name` and waits until the probe
    /// has it open.
    pub fn watch(&self, name: &str, timeout: Duration) -> Result<(), String> {
        self.request(&format!("watch {name}"), &format!("OPEN {name} "), timeout)
            .map(drop)
    }

    /// Sends `COMMAND NAME` and parses the JSON of its `COMMAND NAME {json}` reply: `caps`,
    /// `state` and `tally`.
    pub fn query(
        &self,
        command: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let prefix = format!("{} {name} ", command.to_uppercase());
        let line = self.request(&format!("{command} {name}"), &prefix, timeout)?;
        serde_json::from_str(&line[prefix.len()..]).map_err(|e| format!("{line}: {e}"))
    }

    /// Runs a shell command in the guest; returns (exit code, output lines).
    pub fn run(&self, command: &str, timeout: Duration) -> Result<(i32, Vec<String>), String> {
        let mark = self.mark();
        self.send(&format!("run {command}"))
            .map_err(|e| e.to_string())?;
        let (end, rc) = self.wait_for(mark, timeout, |l| l.starts_with("RC "))?;
        let code = rc[3..].trim().parse().unwrap_or(-1);
        let g = self.lines.0.lock().unwrap_or_else(|e| e.into_inner());
        let out = g.lines[mark..end]
            .iter()
            .filter_map(|l| l.strip_prefix("OUT ").map(str::to_owned))
            .collect();
        Ok((code, out))
    }

    /// Runs a shell command that must succeed; returns its output lines.
    pub fn sh(&self, command: &str, timeout: Duration) -> Result<Vec<String>, String> {
        match self.run(command, timeout)? {
            (0, out) => Ok(out),
            (rc, out) => Err(format!("{command}: exit {rc}: {out:?}")),
        }
    }

    /// Runs a shell command again and again until it succeeds and a line of its output contains
    /// `want`, for at most `limit`; returns that output, or the last one in the error.
    pub fn sh_until(
        &self,
        command: &str,
        want: &str,
        limit: Duration,
    ) -> Result<Vec<String>, String> {
        // Each try is a process in the guest: a slower pace than a host query's.
        crate::wait::until_every(
            &format!("{command} to print {want:?}"),
            limit,
            Duration::from_millis(100),
            || match self.run(command, limit) {
                Ok((0, out)) if out.iter().any(|l| l.contains(want)) => Ok(Ok(out)),
                Ok((rc, out)) => Err(format!("exit {rc}: {out:?}")),
                // The probe itself failed: trying again would not help.
                Err(e) => Ok(Err(e)),
            },
        )
        .and_then(|out| out)
    }

    /// Polls `query NAME`'s answer (`state`, `tally`, …) until `ready` holds; returns it.
    pub fn query_until(
        &self,
        command: &str,
        name: &str,
        what: &str,
        limit: Duration,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, String> {
        crate::wait::until(what, limit, || match self.query(command, name, limit) {
            Ok(answer) => crate::wait::when(answer, &ready).map(Ok),
            // The probe itself failed: trying again would not help.
            Err(e) => Ok(Err(e)),
        })
        .and_then(|answer| answer)
    }

    /// Every line received since `from`.
    pub fn lines(&self, from: usize) -> Vec<String> {
        let g = self.lines.0.lock().unwrap_or_else(|e| e.into_inner());
        g.lines[from.min(g.lines.len())..].to_vec()
    }

    /// Every line received since `from`, with the host time it arrived.
    pub fn timed_lines(&self, from: usize) -> Vec<(Instant, String)> {
        let g = self.lines.0.lock().unwrap_or_else(|e| e.into_inner());
        let from = from.min(g.lines.len());
        g.arrived[from..]
            .iter()
            .copied()
            .zip(g.lines[from..].iter().cloned())
            .collect()
    }

    /// Events of device `name` received since `from`.
    pub fn events(&self, name: &str, from: usize) -> Vec<GuestEvent> {
        let g = self.lines.0.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = format!("EV {name} ");
        g.lines[from.min(g.lines.len())..]
            .iter()
            .filter_map(|l| parse_event(l.strip_prefix(&prefix)?))
            .collect()
    }

    /// Waits until device `name`'s events since `from` satisfy `done`, and returns them.
    pub fn wait_events(
        &self,
        name: &str,
        from: usize,
        timeout: Duration,
        done: impl Fn(&[GuestEvent]) -> bool,
    ) -> Result<Vec<GuestEvent>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let evs = self.events(name, from);
            if done(&evs) {
                return Ok(evs);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} with {} events from {name}: {:?}",
                    evs.len(),
                    evs.iter().rev().take(12).collect::<Vec<_>>()
                ));
            }
            let mark = self.mark();
            let _ = self.wait_for(mark, Duration::from_millis(200), |_| true);
        }
    }
}

/// The relative motion in `events`: the sums of their `REL_X` and `REL_Y` values.
pub fn motion_sums(events: &[GuestEvent]) -> (i32, i32) {
    use pvmouse_spec::evdev::{EV_REL, REL_X, REL_Y};
    events
        .iter()
        .fold((0, 0), |(x, y), e| match (e.event.kind, e.event.code) {
            (EV_REL, REL_X) => (x + e.event.value, y),
            (EV_REL, REL_Y) => (x, y + e.event.value),
            _ => (x, y),
        })
}

/// An input event, as tests write the ones they expect.
pub fn ev(kind: u16, code: u16, value: i32) -> InputEvent {
    InputEvent::new(kind, code, value)
}

fn parse_event(rest: &str) -> Option<GuestEvent> {
    let mut f = rest.split_whitespace();
    let time = f.next()?.parse().ok()?;
    let kind = f.next()?.parse().ok()?;
    let code = f.next()?.parse().ok()?;
    let value = f.next()?.parse().ok()?;
    Some(GuestEvent {
        time,
        event: InputEvent::new(kind, code, value),
    })
}

/// The input frames among `events`: the guest bridge's status values (`EV_MSC`), which Linux
/// also hands every reader of the device and which end no frame, are left out, and so are the
/// frames that held nothing else (the device's answers to the bridge).
pub fn input_frames(events: &[GuestEvent]) -> Vec<Vec<InputEvent>> {
    frames(events)
        .into_iter()
        .map(|f| {
            f.into_iter()
                .filter(|e| e.kind != pvmouse_spec::evdev::EV_MSC)
                .collect::<Vec<_>>()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

/// Splits events into frames, each ending with SYN_REPORT (which is dropped from the frame).
pub fn frames(events: &[GuestEvent]) -> Vec<Vec<InputEvent>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for e in events {
        if e.event.is_syn_report() {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(e.event);
        }
    }
    out
}
