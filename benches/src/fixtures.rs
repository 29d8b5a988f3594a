//! Small, fixed measurements for the unit tests of `figures` and `report`: every figure is
//! chosen so that what the report must show can be worked out by hand.
//!
//! A latency distribution here is 1, 2, … 100 times a step, so that p50, p90, p99 and max are
//! 50, 90, 99 and 100 steps.

use std::time::Duration;

use pvmouse_vmtest::Replies;

use crate::desktop_path::{DesktopPlan, Path, PathResult};
use crate::environment::Environment;
use crate::host_cpu::CpuUse;
use crate::kinds::Kind;
use crate::latency::Distribution;
use crate::run::{Burst, Idle, KindResult, Plan, Series};
use crate::vnc_path::{PerEvent, VncPath, VncResult};

pub fn environment() -> Environment {
    Environment {
        date: "2026-12-03 10:00 UTC".into(),
        cpu: "AMD EPYC".into(),
        cores: 2,
        memory: "24 GiB".into(),
        host_kernel: "6.18.44".into(),
        qemu: "QEMU emulator version 10.0.2".into(),
        guest_kernel: "Linux version 6.1.0".into(),
        accel: "tcg".into(),
        command: "make bench".into(),
        commit: "0123abc".into(),
        wall_seconds: 288.4,
    }
}

pub fn cpu(ticks_s: f64, run_s: f64, wall_s: f64) -> CpuUse {
    CpuUse {
        ticks_s,
        run_s,
        switches: 0,
        wall: Duration::from_secs_f64(wall_s),
    }
}

/// 1..=100 steps of `step_ms`.
pub fn latency(step_ms: f64) -> Distribution {
    Distribution {
        sorted_ms: (1..=100).map(|i| f64::from(i) * step_ms).collect(),
    }
}

/// A series that kept its rate and lost nothing, `cpu_s` of CPU over 10 s.
pub fn series(rate_hz: f64, sent: usize, step_ms: f64, cpu_s: f64) -> Series {
    Series {
        rate_hz,
        sent,
        achieved_hz: rate_hz,
        latency: latency(step_ms),
        own: sent,
        coalesced: 0,
        unanswered: 0,
        backlog_grew: false,
        replies: Replies {
            ok: sent as u64,
            errors: 0,
            first_error: None,
        },
        cpu: cpu(cpu_s, cpu_s, 10.0),
    }
}

fn kind(kind: Kind, step_ms: f64, ladder: Vec<Series>) -> KindResult {
    let pvmouse = kind.is_pvmouse();
    KindResult {
        kind,
        // 2000 samples over 10 s; idle is 0.2 s of QEMU per 10 s, so net is gross less
        // 0.2 s, per 1000 samples 100 ms less.
        steady: series(200.0, 2000, step_ms, 1.5 + step_ms),
        ladder,
        idle: Idle {
            qemu: cpu(0.2, 0.21, 10.0),
            backend: pvmouse.then(|| cpu(0.0, 0.0009, 10.0)),
            qemu_again: cpu(0.2, 0.23, 10.0),
            qemu_unplugged: pvmouse.then(|| cpu(0.19, 0.2, 10.0)),
        },
        backend_rss: pvmouse.then_some((2840, 2900)),
        qemu_rss: Some((358_400, 360_000)),
        backend_pss: pvmouse.then_some(1200),
        qemu_pss: Some(300_000),
        burst: (kind != Kind::Floor).then(|| Burst {
            transitions: 8000,
            refused: 0,
            seen: if pvmouse { 8000 } else { 7000 },
            dropped: 0,
            send_seconds: 1.0,
            qemu_busy: cpu(1.1, 1.13, 1.2),
        }),
    }
}

/// The floor, pvmouse raw (sustains every rate tried) and virtio-tablet (fails at 1000 Hz for
/// every reason at once), half as fast as pvmouse raw.
pub fn kinds() -> Vec<KindResult> {
    let mut failed = series(1000.0, 1500, 0.02, 0.5);
    failed.coalesced = 20;
    failed.unanswered = 3;
    failed.backlog_grew = true;
    failed.replies.errors = 2;
    failed.achieved_hz = 900.0;
    vec![
        kind(Kind::Floor, 0.005, Vec::new()),
        kind(
            Kind::PvmouseRaw,
            0.01,
            vec![
                series(500.0, 750, 0.01, 0.5),
                series(1000.0, 1500, 0.012, 0.5),
            ],
        ),
        kind(
            Kind::VirtioTablet,
            0.02,
            vec![series(500.0, 750, 0.02, 0.5), failed],
        ),
    ]
}

pub fn plan() -> Plan {
    Plan::full()
}

/// One round of every desktop path; the device's mapping is 1.05× raw, the tablet 1.2×.
pub fn desktop() -> (Vec<PathResult>, DesktopPlan) {
    let step = |path: Path| match path {
        Path::PvmouseRaw => 0.04,
        Path::PvmouseDevice => 0.042,
        Path::PvmouseBridge => 0.044,
        Path::VirtioTablet => 0.048,
    };
    let results = Path::ALL
        .into_iter()
        .map(|path| PathResult {
            path,
            round: 1,
            series: series(100.0, 500, step(path), 3.0),
        })
        .collect();
    let plan = DesktopPlan {
        rate_hz: 100.0,
        samples: 500,
        rounds: 1,
    };
    (results, plan)
}

/// Two rounds of every VNC path, 500 events each; pvmouse's path is 1.1× QEMU's latency.
pub fn vnc() -> Vec<VncResult> {
    let mut results = Vec::new();
    for round in 1..=2 {
        for path in VncPath::ALL {
            let (step, by_process): (f64, &[(&'static str, f64)]) = match path {
                VncPath::QemuTablet => (0.01, &[("QEMU", 0.45)]),
                VncPath::Pvmouse => (
                    0.011,
                    &[("QEMU", 0.45), ("backend", 0.025), ("pvmouse-vnc", 0.015)],
                ),
                VncPath::Records => (0.0105, &[("QEMU", 0.45), ("backend", 0.02)]),
            };
            let cpu_s = by_process.iter().map(|p| p.1).sum();
            results.push(VncResult {
                path,
                round,
                series: series(200.0, 500, step, cpu_s),
                cpu_by_process: by_process.to_vec(),
                per_event: PerEvent {
                    qemu_switches: if round == 1 { 9.5 } else { 10.5 },
                    guest_interrupts: 2.0,
                    guest_switches: 4.1,
                },
            });
        }
    }
    results
}
