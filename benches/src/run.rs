//! One kind's measurements in its own VM: the steady series, the rate ladder, idle CPU, memory
//! and the button burst.

use std::path::Path;
use std::time::{Duration, Instant};

use pvmouse_spec::control::QEMU_ABS_MAX;
use pvmouse_vmtest::vm::{memory_kib as rss_kib, pss_kib};
use pvmouse_vmtest::{QmpStream, Replies, Vm};
use serde_json::Value;

use crate::host_cpu::{CpuMeter, CpuUse};
use crate::input_commands::{button_command, move_command, rel_command};
use crate::kinds::Kind;
use crate::latency::{Distribution, FRACTION_TOLERANCE, backlog_grew, match_replies, position};

const WAIT: Duration = Duration::from_secs(30);

/// How much to measure; `full()` is the README's benchmark, `smoke()` CI's check that it works.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steady_rate_hz: f64,
    pub steady_samples: usize,
    /// Rates tried, lowest first, for the highest rate that sustains.
    pub ladder_hz: Vec<f64>,
    pub ladder_seconds: f64,
    pub idle: Duration,
    pub burst_rate_hz: f64,
    pub burst_transitions: usize,
}

impl Plan {
    pub fn full() -> Plan {
        Plan {
            steady_rate_hz: 200.0,
            steady_samples: 2000,
            ladder_hz: vec![500.0, 1000.0, 2000.0, 4000.0],
            ladder_seconds: 1.5,
            idle: Duration::from_secs(10),
            burst_rate_hz: 8000.0,
            burst_transitions: 8000,
        }
    }

    pub fn smoke() -> Plan {
        Plan {
            steady_rate_hz: 200.0,
            steady_samples: 300,
            ladder_hz: vec![1000.0],
            ladder_seconds: 0.3,
            idle: Duration::from_secs(2),
            burst_rate_hz: 8000.0,
            burst_transitions: 800,
        }
    }
}

/// One series of samples at one rate.
#[derive(Debug, Clone)]
pub struct Series {
    pub rate_hz: f64,
    pub sent: usize,
    /// The rate the host actually kept.
    pub achieved_hz: f64,
    pub latency: Distribution,
    pub own: usize,
    pub coalesced: usize,
    pub unanswered: usize,
    pub backlog_grew: bool,
    pub replies: Replies,
    /// CPU of QEMU plus the backend over the series.
    pub cpu: CpuUse,
}

impl Series {
    /// Every sample was answered, at most 1% of them by a newer frame, at the rate asked,
    /// without a growing backlog or a refused command.
    pub fn sustained(&self) -> bool {
        self.unanswered == 0
            && self.coalesced * 100 <= self.sent
            && self.replies.errors == 0
            && !self.backlog_grew
            && self.kept_rate()
    }

    /// The host sent at 95% of the rate asked or more.
    pub fn kept_rate(&self) -> bool {
        self.achieved_hz >= 0.95 * self.rate_hz
    }
}

#[derive(Debug, Clone)]
pub struct Burst {
    pub transitions: usize,
    /// Commands the server answered with an error (their transitions never entered a device).
    pub refused: u64,
    /// Press and release events the guest read.
    pub seen: u64,
    /// SYN_DROPPED reports: the guest reader's own buffer overflowed.
    pub dropped: u64,
    pub send_seconds: f64,
    /// QEMU's CPU (scheduler run time) from the burst's start until the last transition
    /// arrived, against that window's length: under TCG the vCPU thread runs only while the
    /// guest is busy, so a ratio near 1 means the guest's one CPU is the limit.
    pub qemu_busy: CpuUse,
}

impl Burst {
    pub fn lost(&self) -> u64 {
        (self.transitions as u64).saturating_sub(self.refused + self.seen)
    }
}

#[derive(Debug, Clone)]
pub struct Idle {
    pub qemu: CpuUse,
    pub backend: Option<CpuUse>,
    /// QEMU over a second window just after the first, to show how much idle CPU varies
    /// with nothing changed.
    pub qemu_again: CpuUse,
    /// For pvmouse: QEMU over the same window after pvmouse was hot-unplugged from the same VM,
    /// so what the device adds is told apart from the differences between VMs.
    pub qemu_unplugged: Option<CpuUse>,
}

impl Idle {
    /// How far QEMU's idle CPU moved between the two windows, in percent of a core (scheduler
    /// run time).
    pub fn qemu_noise(&self) -> f64 {
        (self.qemu.run_percent() - self.qemu_again.run_percent()).abs()
    }
}

#[derive(Debug, Clone)]
pub struct KindResult {
    pub kind: Kind,
    pub steady: Series,
    /// (rate, series) for each rung of the ladder tried.
    pub ladder: Vec<Series>,
    pub idle: Idle,
    /// (VmRSS, VmHWM) KiB after everything, summed over the backend's processes.
    pub backend_rss: Option<(u64, u64)>,
    pub qemu_rss: Option<(u64, u64)>,
    /// PSS KiB after everything, summed over the backend's processes; QEMU's.
    pub backend_pss: Option<u64>,
    pub qemu_pss: Option<u64>,
    pub burst: Option<Burst>,
}

impl KindResult {
    /// The highest rate whose series sustained.
    pub fn max_sustained(&self) -> Option<&Series> {
        self.ladder.iter().take_while(|s| s.sustained()).last()
    }

    /// The steady series' CPU per 1000 samples, in milliseconds, with the idle rate taken off.
    pub fn net_cpu_per_1000(&self) -> f64 {
        let idle_rate = self.idle_total_s() / self.idle.qemu.wall.as_secs_f64();
        let net = self.steady.cpu.ticks_s - idle_rate * self.steady.cpu.wall.as_secs_f64();
        net * 1e6 / self.steady.sent.max(1) as f64
    }

    pub fn idle_total_s(&self) -> f64 {
        self.idle.qemu.ticks_s + self.idle.backend.map_or(0.0, |b| b.ticks_s)
    }
}

/// The guest's kernel, as it reports itself.
pub fn guest_kernel_version(vm: &Vm) -> String {
    vm.probe
        .run("cat /proc/version", WAIT)
        .ok()
        .and_then(|(_, out)| out.into_iter().next())
        .unwrap_or_else(|| "unknown".into())
}

/// Boots `kind`'s VM and measures it.
pub fn measure(kind: Kind, plan: &Plan, log: &dyn Fn(&str)) -> Result<(KindResult, Vm), String> {
    log(&format!("{}: booting", kind.id()));
    let vm = Vm::boot(kind.vm_config()).map_err(|e| e.to_string())?;
    // QEMU first, then every process of the backend (a keeper and its worker, restartable).
    let mut pids = vec![vm.qemu_pid()];
    pids.extend(vm.backend_pids());
    kind.prepare_guest(&vm)?;

    let Some(device) = kind.guest_device() else {
        // The floor: the probe's own echo, no input device.
        let idle = measure_idle(&vm, &pids, plan.idle);
        log(&format!("{}: null round trip", kind.id()));
        let mut counter = 0;
        let steady = echo_series(
            &vm,
            &pids,
            plan.steady_rate_hz,
            plan.steady_samples,
            &mut counter,
        )?;
        return Ok((
            KindResult {
                kind,
                steady,
                ladder: Vec::new(),
                idle,
                backend_rss: None,
                backend_pss: None,
                qemu_pss: pss_kib(vm.qemu_pid()),
                qemu_rss: rss_kib(vm.qemu_pid()),
                burst: None,
            },
            vm,
        ));
    };

    let mark = vm.probe.mark();
    vm.probe
        .send(&format!("bench {device}"))
        .map_err(|e| e.to_string())?;
    vm.probe
        .wait_for(mark, WAIT, |l| l.starts_with(&format!("BENCH {device} ")))
        .map_err(|e| {
            let devices = vm.probe.run("cat /proc/bus/input/devices", WAIT);
            format!(
                "{}: the guest never showed {device:?}: {e}\n{devices:?}",
                kind.id()
            )
        })?;
    // The burst's buttons, when another device than the motion's carries them.
    if let Some(buttons) = kind.button_device().filter(|b| *b != device) {
        let mark = vm.probe.mark();
        vm.probe
            .send(&format!("bench {buttons}"))
            .map_err(|e| e.to_string())?;
        vm.probe
            .wait_for(mark, WAIT, |l| l.starts_with(&format!("BENCH {buttons} ")))
            .map_err(|e| format!("{}: the guest never showed {buttons:?}: {e}", kind.id()))?;
    }
    let socket = if kind.is_pvmouse() {
        vm.control_socket()
    } else {
        vm.qemu_qmp_socket()
    };
    let mut qmp = QmpStream::connect(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut counter = 0;
    let warm = move_series(&vm, kind, device, &mut qmp, &pids, 200.0, 50, &mut counter)?;
    if warm.own == 0 {
        let log = vm
            .probe
            .run("cat /tmp/guestd.log; cat /proc/bus/input/devices", WAIT);
        return Err(format!(
            "{}: no sample of the warm-up came back ({:?}); guest: {log:?}",
            kind.id(),
            warm.replies
        ));
    }

    log(&format!("{}: idle for {:?}", kind.id(), plan.idle));
    let idle = measure_idle(&vm, &pids, plan.idle);
    log(&format!(
        "{}: {} samples at {} Hz",
        kind.id(),
        plan.steady_samples,
        plan.steady_rate_hz
    ));
    let steady = move_series(
        &vm,
        kind,
        device,
        &mut qmp,
        &pids,
        plan.steady_rate_hz,
        plan.steady_samples,
        &mut counter,
    )?;
    let mut ladder = Vec::new();
    for &rate in &plan.ladder_hz {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a rate times seconds of a plan: small and positive; a saturating cast is right"
        )]
        let n = ((rate * plan.ladder_seconds) as usize).max(100);
        let s = move_series(&vm, kind, device, &mut qmp, &pids, rate, n, &mut counter)?;
        log(&format!(
            "{}: {rate} Hz: p50 {:.2} ms, p99 {:.2} ms, coalesced {}, unanswered {}, sustained {}",
            kind.id(),
            s.latency.p50(),
            s.latency.p99(),
            s.coalesced,
            s.unanswered,
            s.sustained()
        ));
        let sustained = s.sustained();
        ladder.push(s);
        if !sustained {
            break;
        }
    }
    log(&format!(
        "{}: burst of {} button transitions at {} Hz",
        kind.id(),
        plan.burst_transitions,
        plan.burst_rate_hz
    ));
    let burst = button_burst(
        &vm,
        kind.button_device().unwrap_or(device),
        &mut qmp,
        plan.burst_rate_hz,
        plan.burst_transitions,
    )?;
    let backend = vm.backend_pids();
    let backend_rss = backend
        .iter()
        .map(|p| rss_kib(*p))
        .collect::<Option<Vec<(u64, u64)>>>()
        .filter(|m| !m.is_empty())
        .map(|m| m.iter().fold((0, 0), |(r, h), (a, b)| (r + a, h + b)));
    let backend_pss = backend.iter().map(|p| pss_kib(*p)).sum::<Option<u64>>();
    let mut idle = idle;
    // (With the relative device attached too, unplugging the pointer is no baseline.)
    if kind.is_pvmouse() && !kind.is_relative() {
        log(&format!(
            "{}: idle for {:?} with pvmouse unplugged",
            kind.id(),
            plan.idle
        ));
        idle.qemu_unplugged = Some(idle_unplugged(&vm, plan.idle)?);
    }
    Ok((
        KindResult {
            kind,
            steady,
            ladder,
            idle,
            backend_rss,
            qemu_rss: rss_kib(vm.qemu_pid()),
            backend_pss: backend_pss.filter(|_| !backend.is_empty()),
            qemu_pss: pss_kib(vm.qemu_pid()),
            burst: Some(burst),
        },
        vm,
    ))
}

fn measure_idle(vm: &Vm, pids: &[u32], how_long: Duration) -> Idle {
    // Let the last replies and guest activity settle before the clock starts.
    std::thread::sleep(Duration::from_millis(500));
    let meter = CpuMeter::start(pids);
    std::thread::sleep(how_long);
    let used = meter.per_process();
    let again = CpuMeter::start(&pids[..1]);
    std::thread::sleep(how_long);
    // Every process after QEMU is the backend's: one, or a keeper and its worker.
    let backend = used.get(1..).filter(|b| !b.is_empty()).map(|b| {
        b.iter().fold(CpuUse::default(), |acc, u| CpuUse {
            ticks_s: acc.ticks_s + u.ticks_s,
            run_s: acc.run_s + u.run_s,
            switches: acc.switches + u.switches,
            wall: u.wall,
        })
    });
    Idle {
        qemu: used[0],
        backend: vm.backend_pid().and(backend),
        qemu_again: again.total(),
        qemu_unplugged: None,
    }
}

/// Hot-unplugs pvmouse through QEMU's QMP and measures QEMU idle without it.
fn idle_unplugged(vm: &Vm, how_long: Duration) -> Result<CpuUse, String> {
    let mut qemu = vm.qemu_qmp().map_err(|e| e.to_string())?;
    qemu.execute("device_del", serde_json::json!({"id": "pvmouse0"}))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = qemu
            .wait_event(
                "DEVICE_DELETED",
                deadline.saturating_duration_since(Instant::now()),
            )
            .map_err(|e| format!("unplugging pvmouse: {e}"))?;
        if e["data"]["device"] == "pvmouse0" {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let meter = CpuMeter::start(&[vm.qemu_pid()]);
    std::thread::sleep(how_long);
    Ok(meter.total())
}

/// Sleeps until `at`; the host's timer slack is set small by the caller.
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// Sends `n` paced samples with `send`, then matches the probe's replies to them.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site per kind of series"
)]
pub(crate) fn series(
    vm: &Vm,
    pids: &[u32],
    rate_hz: f64,
    n: usize,
    mut send: impl FnMut(usize) -> Result<(), String>,
    key: impl Fn(usize) -> f64,
    reply_key: impl Fn(&str) -> Option<f64>,
    tolerance: f64,
    replies: impl Fn() -> Replies,
) -> Result<Series, String> {
    let before = replies();
    let mark = vm.probe.mark();
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let meter = CpuMeter::start(pids);
    let start = Instant::now() + Duration::from_millis(20);
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        sleep_until(start + period.mul_f64(i as f64));
        let t = Instant::now();
        send(i)?;
        sent.push((t, key(i)));
    }
    let last_sent = sent.last().map_or(start, |s| s.0);
    let achieved_hz = if n > 1 {
        (n - 1) as f64 / (last_sent - sent[0].0).as_secs_f64()
    } else {
        rate_hz
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let matched = loop {
        let lines = vm.probe.timed_lines(mark);
        let got: Vec<(Instant, f64)> = lines
            .iter()
            .filter_map(|(t, l)| Some((*t, reply_key(l)?)))
            .collect();
        let m = match_replies(&sent, &got, tolerance);
        if m.latency.last().is_some_and(Option::is_some) || Instant::now() >= deadline {
            break m;
        }
        let now_mark = mark + lines.len();
        let _ = vm
            .probe
            .wait_for(now_mark, Duration::from_millis(100), |_| true);
    };
    let cpu = meter.total();
    let after = replies();
    let r = Replies {
        ok: after.ok - before.ok,
        errors: after.errors - before.errors,
        first_error: after.first_error.filter(|_| after.errors > before.errors),
    };
    Ok(Series {
        rate_hz,
        sent: n,
        achieved_hz,
        latency: Distribution::new(matched.latency.iter().flatten().copied()),
        own: matched.own,
        coalesced: matched.coalesced,
        unanswered: matched.unanswered(),
        backlog_grew: backlog_grew(&matched.latency),
        replies: r,
        cpu,
    })
}

/// Pointer moves through QMP, answered by the probe's `FR` lines.
#[allow(clippy::too_many_arguments, reason = "the series' whole context")]
fn move_series(
    vm: &Vm,
    kind: Kind,
    device: &str,
    qmp: &mut QmpStream,
    pids: &[u32],
    rate_hz: f64,
    n: usize,
    counter: &mut usize,
) -> Result<Series, String> {
    let first = *counter;
    *counter += n;
    let commands: Vec<String> = (first..first + n)
        .map(|i| {
            let (x, y) = position(i);
            // Relative kinds move by the sample's X value: what the guest reads back is it.
            if kind.is_relative() {
                rel_command(x)
            } else {
                move_command(x, y)
            }
        })
        .collect();
    let prefix = format!("FR {device} ");
    let axis_max = kind.guest_axis_max();
    let before_total = qmp.replies().total();
    let replies_handle = std::cell::RefCell::new(qmp);
    let s = series(
        vm,
        pids,
        rate_hz,
        n,
        |i| {
            replies_handle
                .borrow_mut()
                .send(&commands[i])
                .map_err(|e| format!("QMP send: {e}"))
        },
        |i| f64::from(position(first + i).0) / QEMU_ABS_MAX as f64,
        |l| Some(l.strip_prefix(&prefix)?.trim().parse::<f64>().ok()? / axis_max),
        FRACTION_TOLERANCE,
        || replies_handle.borrow().replies(),
    )?;
    let qmp = replies_handle.into_inner();
    // Every command must be answered before the next series counts its own replies.
    let r = qmp.wait_replies(before_total + n as u64, Duration::from_secs(10));
    if r.total() < before_total + n as u64 {
        return Err(format!(
            "{}: only {} of {n} commands were answered",
            kind.id(),
            r.total() - before_total
        ));
    }
    Ok(s)
}

/// The floor: `echo` lines through the probe channel, with no input device involved.
fn echo_series(
    vm: &Vm,
    pids: &[u32],
    rate_hz: f64,
    n: usize,
    counter: &mut usize,
) -> Result<Series, String> {
    let first = *counter;
    *counter += n;
    series(
        vm,
        pids,
        rate_hz,
        n,
        |i| {
            vm.probe
                .send(&format!("echo n{}", first + i))
                .map_err(|e| e.to_string())
        },
        |i| (first + i) as f64,
        |l| l.strip_prefix("ECHO n")?.trim().parse().ok(),
        0.25,
        Replies::default,
    )
}

/// Alternating left-button presses and releases at `rate_hz`; the guest counts what arrives.
fn button_burst(
    vm: &Vm,
    device: &str,
    qmp: &mut QmpStream,
    rate_hz: f64,
    transitions: usize,
) -> Result<Burst, String> {
    let count = |t: &Value, k: &str| t[k].as_u64().unwrap_or(0);
    let before = vm.probe.query("tally", device, WAIT)?;
    let qemu = CpuMeter::start(&[vm.qemu_pid()]);
    let replies_before = qmp.replies();
    let press = button_command(true);
    let release = button_command(false);
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let start = Instant::now();
    for i in 0..transitions {
        sleep_until(start + period.mul_f64(i as f64));
        qmp.send(if i % 2 == 0 { &press } else { &release })
            .map_err(|e| format!("QMP send: {e}"))?;
    }
    let send_seconds = start.elapsed().as_secs_f64();
    let r = qmp.wait_replies(
        replies_before.total() + transitions as u64,
        Duration::from_secs(30),
    );
    let refused = r.errors - replies_before.errors;
    // Wait until everything accepted has arrived, or nothing more arrives for 3 s.
    let (mut seen, mut dropped) = (0, 0);
    let mut last_change = Instant::now();
    let mut qemu_busy = qemu.total();
    while last_change.elapsed() < Duration::from_secs(3) {
        let now = vm.probe.query("tally", device, WAIT)?;
        let s = count(&now, "presses") + count(&now, "releases")
            - count(&before, "presses")
            - count(&before, "releases");
        dropped = count(&now, "dropped") - count(&before, "dropped");
        if s != seen {
            seen = s;
            last_change = Instant::now();
            qemu_busy = qemu.total();
        }
        if seen + refused >= transitions as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Burst {
        transitions,
        refused,
        seen,
        dropped,
        send_seconds,
        qemu_busy,
    })
}

/// Appends one line to a log file and stderr.
pub fn log_to(path: &Path) -> impl Fn(&str) + use<> {
    let path = path.to_owned();
    move |line: &str| {
        eprintln!("[vm-bench] {line}");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Measures each kind in turn, one VM at a time, and fills in the environment.
pub fn run_all(
    kinds: &[Kind],
    plan: &Plan,
    env: &mut crate::environment::Environment,
    log: &dyn Fn(&str),
) -> Result<Vec<KindResult>, String> {
    let started = Instant::now();
    let mut results = Vec::new();
    for &kind in kinds {
        let (result, vm) = measure(kind, plan, log)?;
        if env.guest_kernel == "unknown" {
            env.guest_kernel = guest_kernel_version(&vm);
        }
        drop(vm);
        results.push(result);
    }
    env.wall_seconds = started.elapsed().as_secs_f64();
    Ok(results)
}
