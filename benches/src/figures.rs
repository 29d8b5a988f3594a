//! A run's figures as data: everything the generated sections of RESULTS.md show, summarised
//! from one run's measurements. `pvmouse-vmbench` writes them as JSON (target/vm-bench/, and
//! benches/results/ beside RESULTS.md), and `report` renders the sections from that JSON.
//!
//! The figures keep what was measured and the verdicts decided from it (a rate sustained, a
//! target met), so that the templates only word them. A value that could not be measured is
//! `None` (JSON `null`), which the report shows as "—".

use serde::{Deserialize, Serialize};

use crate::desktop_path::{DesktopPlan, Path, PathResult};
use crate::environment::Environment;
use crate::host_cpu::CpuUse;
use crate::kinds::Kind;
use crate::latency::Distribution;
use crate::run::{KindResult, Plan, Series};
use crate::vnc_path::{PerEvent, VncPath, VncResult};

/// A finite value, or `None` for what could not be measured (a quantile of no samples).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// `a ÷ b`, when both are known and `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => finite(a / b),
        _ => None,
    }
}

/// Seconds of CPU over `events` events, in milliseconds per 1000 events.
fn ms_per_1000(cpu_s: f64, events: usize) -> f64 {
    cpu_s * 1e6 / events.max(1) as f64
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: usize,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl From<&Distribution> for Latency {
    fn from(d: &Distribution) -> Self {
        Latency {
            samples: d.sorted_ms.len(),
            p50: finite(d.p50()),
            p90: finite(d.p90()),
            p99: finite(d.p99()),
            max: finite(d.max()),
        }
    }
}

/// One series of samples at one rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesFigures {
    pub rate_hz: f64,
    /// The rate the host actually kept.
    pub achieved_hz: f64,
    /// Whether that was at least 95% of the rate asked.
    pub kept_rate: bool,
    pub sent: usize,
    pub answered: usize,
    /// Answered by a frame of a newer sample.
    pub coalesced: usize,
    pub unanswered: usize,
    /// Commands the server answered with an error.
    pub refused: u64,
    pub backlog_grew: bool,
    /// See [`Series::sustained`].
    pub sustained: bool,
    pub latency: Latency,
    /// utime + stime of the processes measured, per 1000 samples sent.
    pub cpu_ms_per_1000: f64,
}

impl From<&Series> for SeriesFigures {
    fn from(s: &Series) -> Self {
        SeriesFigures {
            rate_hz: s.rate_hz,
            achieved_hz: s.achieved_hz,
            kept_rate: s.kept_rate(),
            sent: s.sent,
            answered: s.sent - s.unanswered,
            coalesced: s.coalesced,
            unanswered: s.unanswered,
            refused: s.replies.errors,
            backlog_grew: s.backlog_grew,
            sustained: s.sustained(),
            latency: Latency::from(&s.latency),
            cpu_ms_per_1000: ms_per_1000(s.cpu.ticks_s, s.sent),
        }
    }
}

/// CPU over a window, in percent of one core.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuShare {
    /// utime + stime (clock ticks).
    pub percent: f64,
    /// Scheduler run time (nanoseconds), for shares too small for clock ticks.
    pub run_percent: f64,
    pub seconds: f64,
}

impl From<&CpuUse> for CpuShare {
    fn from(u: &CpuUse) -> Self {
        CpuShare {
            percent: u.percent(),
            run_percent: u.run_percent(),
            seconds: u.wall.as_secs_f64(),
        }
    }
}

/// Idle CPU of one kind's VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleFigures {
    pub qemu: CpuShare,
    /// QEMU over a second window right after the first, with nothing changed.
    pub qemu_again: CpuShare,
    /// QEMU after pvmouse was hot-unplugged from the same VM (pvmouse only).
    pub qemu_unplugged: Option<CpuShare>,
    pub backend: Option<CpuShare>,
}

/// A process's memory (or the sum of a backend's processes), KiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// Proportional set size; absent from figures kept before it was measured.
    #[serde(default)]
    pub pss_kib: Option<u64>,
}

impl Memory {
    fn of(rss: Option<(u64, u64)>, pss: Option<u64>) -> Option<Memory> {
        rss.map(|(rss_kib, peak_kib)| Memory {
            rss_kib,
            peak_kib,
            pss_kib: pss,
        })
    }
}

/// The button burst of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstFigures {
    pub transitions: usize,
    pub refused: u64,
    pub seen: u64,
    pub lost: u64,
    /// SYN_DROPPED reports the guest reader saw.
    pub dropped: u64,
    pub send_seconds: f64,
    /// QEMU's run time from the burst's start until the last transition arrived ...
    pub qemu_busy_seconds: f64,
    /// ... and that window's length.
    pub window_seconds: f64,
}

/// One kind of the end-to-end comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindFigures {
    pub id: String,
    pub description: String,
    /// The evdev device the guest reads; `None` for the floor, which has no input device.
    pub guest_device: Option<String>,
    pub steady: SeriesFigures,
    pub p50_vs_virtio_tablet: Option<f64>,
    pub p99_vs_virtio_tablet: Option<f64>,
    /// Each rate tried, lowest first, up to the first that did not sustain.
    pub ladder: Vec<SeriesFigures>,
    /// The steady series' CPU (QEMU and the backend) per 1000 moves, net of the idle rate
    /// measured in the same VM (gross: `steady.cpu_ms_per_1000`).
    pub net_cpu_ms_per_1000: Option<f64>,
    pub net_cpu_vs_virtio_tablet: Option<f64>,
    pub idle: IdleFigures,
    pub backend_memory: Option<Memory>,
    pub qemu_memory: Option<Memory>,
    pub burst: Option<BurstFigures>,
}

impl KindFigures {
    fn of(r: &KindResult) -> Self {
        KindFigures {
            id: r.kind.id().to_owned(),
            description: r.kind.describe().to_owned(),
            guest_device: r.kind.guest_device().map(str::to_owned),
            steady: SeriesFigures::from(&r.steady),
            p50_vs_virtio_tablet: None,
            p99_vs_virtio_tablet: None,
            ladder: r.ladder.iter().map(SeriesFigures::from).collect(),
            net_cpu_ms_per_1000: finite(r.net_cpu_per_1000()),
            net_cpu_vs_virtio_tablet: None,
            idle: IdleFigures {
                qemu: CpuShare::from(&r.idle.qemu),
                qemu_again: CpuShare::from(&r.idle.qemu_again),
                qemu_unplugged: r.idle.qemu_unplugged.as_ref().map(CpuShare::from),
                backend: r.idle.backend.as_ref().map(CpuShare::from),
            },
            backend_memory: Memory::of(r.backend_rss, r.backend_pss),
            qemu_memory: Memory::of(r.qemu_rss, r.qemu_pss),
            burst: r.burst.as_ref().map(|b| BurstFigures {
                transitions: b.transitions,
                refused: b.refused,
                seen: b.seen,
                lost: b.lost(),
                dropped: b.dropped,
                send_seconds: b.send_seconds,
                qemu_busy_seconds: b.qemu_busy.run_s,
                window_seconds: b.qemu_busy.wall.as_secs_f64(),
            }),
        }
    }

    fn is(&self, kind: Kind) -> bool {
        self.id == kind.id()
    }
}

/// How much the end-to-end run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFigures {
    pub steady_rate_hz: f64,
    pub steady_samples: usize,
    pub ladder_hz: Vec<f64>,
    pub ladder_seconds: f64,
    pub idle_seconds: f64,
    pub burst_rate_hz: f64,
    pub burst_transitions: usize,
}

impl From<&Plan> for PlanFigures {
    fn from(p: &Plan) -> Self {
        PlanFigures {
            steady_rate_hz: p.steady_rate_hz,
            steady_samples: p.steady_samples,
            ladder_hz: p.ladder_hz.clone(),
            ladder_seconds: p.ladder_seconds,
            idle_seconds: p.idle.as_secs_f64(),
            burst_rate_hz: p.burst_rate_hz,
            burst_transitions: p.burst_transitions,
        }
    }
}

/// One target of the end-to-end run: whether it was met (`None`: not measured) and the figures
/// that decide it. The templates word each one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "kebab-case")]
pub enum Target {
    /// pvmouse raw's p50 and p99 no higher than virtio-tablet's.
    RawLatency {
        met: Option<bool>,
        raw_p50: Option<f64>,
        raw_p99: Option<f64>,
        tablet_p50: Option<f64>,
        tablet_p99: Option<f64>,
    },
    /// pvmouse bridged's p99 no more than 1.2 × virtio-tablet's.
    BridgedP99 {
        met: Option<bool>,
        bridged_p99: Option<f64>,
        vs_tablet: Option<f64>,
    },
    /// A usb-tablet slower at p50 than the slower pvmouse kind.
    UsbSlower {
        met: Option<bool>,
        kind: String,
        usb_p50: Option<f64>,
        slower_pvmouse_p50: Option<f64>,
    },
    /// A pvmouse kind adds no measurable idle CPU (≤ 0.1% of a core).
    IdleCpu {
        met: Option<bool>,
        kind: String,
        backend_run_percent: Option<f64>,
        /// QEMU's idle run time attached minus unplugged, in the same VM.
        qemu_attached_minus_unplugged: Option<f64>,
        /// How far QEMU's two windows with nothing changed differed.
        qemu_noise: f64,
    },
    /// A pvmouse kind's CPU per event, net of idle, no more than virtio-tablet's.
    CpuPerEvent {
        met: Option<bool>,
        kind: String,
        net_ms_per_1000: Option<f64>,
        tablet_net_ms_per_1000: Option<f64>,
    },
    /// No button transition lost or refused in the burst, raw and bridged together.
    ButtonsKept {
        met: Option<bool>,
        lost_or_refused: Option<u64>,
    },
    /// pvmouse's relative mode no slower and no more CPU per event than virtio-mouse-pci.
    RelativeVsMouse {
        met: Option<bool>,
        relative_p50: Option<f64>,
        relative_p99: Option<f64>,
        mouse_p50: Option<f64>,
        mouse_p99: Option<f64>,
        relative_net_ms_per_1000: Option<f64>,
        mouse_net_ms_per_1000: Option<f64>,
    },
}

impl Target {
    pub fn met(&self) -> Option<bool> {
        match self {
            Target::RawLatency { met, .. }
            | Target::BridgedP99 { met, .. }
            | Target::UsbSlower { met, .. }
            | Target::IdleCpu { met, .. }
            | Target::CpuPerEvent { met, .. }
            | Target::ButtonsKept { met, .. }
            | Target::RelativeVsMouse { met, .. } => *met,
        }
    }
}

/// The end-to-end comparison of devices: one section of RESULTS.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndToEnd {
    pub environment: Environment,
    pub plan: PlanFigures,
    /// The latency CDF's file name, beside RESULTS.md.
    pub plot: String,
    pub kinds: Vec<KindFigures>,
    pub targets: Vec<Target>,
}

impl EndToEnd {
    pub fn of(results: &[KindResult], env: &Environment, plan: &Plan, plot: &str) -> Self {
        let mut kinds: Vec<KindFigures> = results.iter().map(KindFigures::of).collect();
        let tablet = kinds.iter().find(|k| k.is(Kind::VirtioTablet)).cloned();
        for k in &mut kinds {
            let t = tablet.as_ref();
            k.p50_vs_virtio_tablet =
                ratio(k.steady.latency.p50, t.and_then(|t| t.steady.latency.p50));
            k.p99_vs_virtio_tablet =
                ratio(k.steady.latency.p99, t.and_then(|t| t.steady.latency.p99));
            if k.guest_device.is_some() {
                k.net_cpu_vs_virtio_tablet =
                    ratio(k.net_cpu_ms_per_1000, t.and_then(|t| t.net_cpu_ms_per_1000));
            }
        }
        let targets = targets(&kinds);
        EndToEnd {
            environment: env.clone(),
            plan: PlanFigures::from(plan),
            plot: plot.to_owned(),
            kinds,
            targets,
        }
    }
}

/// Decides each target from the kinds' figures; a kind not run leaves its targets unmeasured.
pub fn targets(kinds: &[KindFigures]) -> Vec<Target> {
    let find = |kind: Kind| kinds.iter().find(|k| k.is(kind));
    let tablet = find(Kind::VirtioTablet);
    let raw = find(Kind::PvmouseRaw);
    let bridged = find(Kind::PvmouseBridged);
    let p50 = |k: Option<&KindFigures>| k.and_then(|k| k.steady.latency.p50);
    let p99 = |k: Option<&KindFigures>| k.and_then(|k| k.steady.latency.p99);
    let mut out = Vec::new();

    let (raw_p50, raw_p99, tablet_p50, tablet_p99) = (p50(raw), p99(raw), p50(tablet), p99(tablet));
    out.push(Target::RawLatency {
        met: match (raw_p50, raw_p99, tablet_p50, tablet_p99) {
            (Some(r50), Some(r99), Some(t50), Some(t99)) => Some(r50 <= t50 && r99 <= t99),
            _ => None,
        },
        raw_p50,
        raw_p99,
        tablet_p50,
        tablet_p99,
    });
    let bridged_p99 = p99(bridged);
    out.push(Target::BridgedP99 {
        met: bridged_p99.zip(tablet_p99).map(|(b, t)| b <= 1.2 * t),
        bridged_p99,
        vs_tablet: ratio(bridged_p99, tablet_p99),
    });
    let slower_pvmouse_p50 = [p50(raw), p50(bridged)]
        .into_iter()
        .flatten()
        .reduce(f64::max);
    for usb in [Kind::UsbTabletXhci, Kind::UsbTabletUhci] {
        let usb_p50 = p50(find(usb));
        out.push(Target::UsbSlower {
            met: usb_p50.zip(slower_pvmouse_p50).map(|(u, p)| u > p),
            kind: usb.id().to_owned(),
            usb_p50,
            slower_pvmouse_p50,
        });
    }
    // The backend's own idle CPU, by scheduler run time (clock ticks are too coarse for 0.1%),
    // and QEMU's idle with pvmouse attached against hot-unplugged in the same VM: QEMU's idle
    // differs between VMs by more than 0.1% with identical devices. A difference within the
    // spread of two windows with nothing changed is not something pvmouse added.
    let pvmouse = [raw, bridged].into_iter().flatten();
    for k in pvmouse.clone() {
        let backend = k.idle.backend.map(|b| b.run_percent);
        let delta = k
            .idle
            .qemu_unplugged
            .map(|u| k.idle.qemu.run_percent - u.run_percent);
        let noise = (k.idle.qemu.run_percent - k.idle.qemu_again.run_percent).abs();
        out.push(Target::IdleCpu {
            met: backend
                .zip(delta)
                .map(|(b, d)| b + (d - noise).max(0.0) <= 0.1),
            kind: k.id.clone(),
            backend_run_percent: backend,
            qemu_attached_minus_unplugged: delta,
            qemu_noise: noise,
        });
    }
    let tablet_net = tablet.and_then(|t| t.net_cpu_ms_per_1000);
    for k in pvmouse.clone() {
        out.push(Target::CpuPerEvent {
            met: k.net_cpu_ms_per_1000.zip(tablet_net).map(|(n, t)| n <= t),
            kind: k.id.clone(),
            net_ms_per_1000: k.net_cpu_ms_per_1000,
            tablet_net_ms_per_1000: tablet_net,
        });
    }
    let lost: Option<u64> = pvmouse
        .map(|k| k.burst.as_ref().map(|b| b.lost + b.refused))
        .sum();
    out.push(Target::ButtonsKept {
        met: lost.map(|l| l == 0),
        lost_or_refused: lost,
    });
    let (relative, mouse) = (find(Kind::PvmouseRelative), find(Kind::VirtioMouse));
    let net = |k: Option<&KindFigures>| k.and_then(|k| k.net_cpu_ms_per_1000);
    let (r50, r99, m50, m99) = (p50(relative), p99(relative), p50(mouse), p99(mouse));
    let (rnet, mnet) = (net(relative), net(mouse));
    out.push(Target::RelativeVsMouse {
        met: match (r50, r99, m50, m99, rnet, mnet) {
            (Some(r50), Some(r99), Some(m50), Some(m99), Some(rn), Some(mn)) => {
                Some(r50 <= m50 && r99 <= m99 && rn <= mn)
            }
            _ => None,
        },
        relative_p50: r50,
        relative_p99: r99,
        mouse_p50: m50,
        mouse_p99: m99,
        relative_net_ms_per_1000: rnet,
        mouse_net_ms_per_1000: mnet,
    });
    out
}

/// Two latency ratios and whether they meet their target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyTarget {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub met: bool,
}

/// One path's turn in one round of the desktop path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesktopTurn {
    pub path: String,
    pub description: String,
    /// 1, 2, …
    pub round: usize,
    pub series: SeriesFigures,
    /// Against the raw device in the same round.
    pub p50_vs_raw: Option<f64>,
    pub p99_vs_raw: Option<f64>,
}

/// One desktop path over every round, its samples pooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesktopPooled {
    pub path: String,
    pub latency: Latency,
    pub p50_vs_raw: Option<f64>,
    pub p99_vs_raw: Option<f64>,
}

/// The desktop path: one section of RESULTS.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desktop {
    pub environment: Environment,
    pub rate_hz: f64,
    pub samples: usize,
    pub rounds: usize,
    pub turns: Vec<DesktopTurn>,
    pub pooled: Vec<DesktopPooled>,
    /// The device's mapping against raw, pooled: within 1.1× at p50 and p99.
    pub target: Option<LatencyTarget>,
}

/// A desktop path's samples from every round together.
fn desktop_pooled(results: &[PathResult], path: Path) -> Option<Distribution> {
    let parts: Vec<&Distribution> = results
        .iter()
        .filter(|r| r.path == path)
        .map(|r| &r.series.latency)
        .collect();
    (!parts.is_empty()).then(|| Distribution::pooled(parts))
}

impl Desktop {
    pub fn of(results: &[PathResult], env: &Environment, plan: &DesktopPlan) -> Self {
        let turns = results
            .iter()
            .map(|r| {
                let series = SeriesFigures::from(&r.series);
                let raw = results
                    .iter()
                    .find(|o| o.path == Path::PvmouseRaw && o.round == r.round)
                    .map(|o| Latency::from(&o.series.latency));
                DesktopTurn {
                    path: r.path.id().to_owned(),
                    description: r.path.describe().to_owned(),
                    round: r.round,
                    p50_vs_raw: ratio(series.latency.p50, raw.as_ref().and_then(|l| l.p50)),
                    p99_vs_raw: ratio(series.latency.p99, raw.as_ref().and_then(|l| l.p99)),
                    series,
                }
            })
            .collect();
        let raw = desktop_pooled(results, Path::PvmouseRaw).map(|d| Latency::from(&d));
        let pooled: Vec<DesktopPooled> = Path::ALL
            .into_iter()
            .filter_map(|path| {
                let latency = Latency::from(&desktop_pooled(results, path)?);
                Some(DesktopPooled {
                    path: path.id().to_owned(),
                    p50_vs_raw: ratio(latency.p50, raw.as_ref().and_then(|l| l.p50)),
                    p99_vs_raw: ratio(latency.p99, raw.as_ref().and_then(|l| l.p99)),
                    latency,
                })
            })
            .collect();
        let target = raw.as_ref().and_then(|_| {
            let device = pooled.iter().find(|p| p.path == Path::PvmouseDevice.id())?;
            let (p50, p99) = (device.p50_vs_raw, device.p99_vs_raw);
            Some(LatencyTarget {
                p50,
                p99,
                met: p50.is_some_and(|r| r <= 1.1) && p99.is_some_and(|r| r <= 1.1),
            })
        });
        Desktop {
            environment: env.clone(),
            rate_hz: plan.rate_hz,
            samples: plan.samples,
            rounds: plan.rounds,
            turns,
            pooled,
            target,
        }
    }
}

/// Where the work per pointer event happens: QEMU's threads, and the guest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerEventFigures {
    pub qemu_switches: f64,
    pub guest_interrupts: f64,
    pub guest_switches: f64,
}

impl From<&PerEvent> for PerEventFigures {
    fn from(p: &PerEvent) -> Self {
        PerEventFigures {
            qemu_switches: p.qemu_switches,
            guest_interrupts: p.guest_interrupts,
            guest_switches: p.guest_switches,
        }
    }
}

/// One process's share of a path's CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessCpu {
    pub process: String,
    pub cpu_ms_per_1000: f64,
}

/// One VNC path's turn in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VncTurn {
    pub path: String,
    pub round: usize,
    pub series: SeriesFigures,
    pub by_process: Vec<ProcessCpu>,
    pub per_event: PerEventFigures,
}

/// One VNC path over every round: its samples pooled, its CPU summed, its counts per event
/// weighted by the events each round sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VncPooled {
    pub path: String,
    pub description: String,
    pub sent: usize,
    pub answered: usize,
    pub coalesced: usize,
    pub latency: Latency,
    pub cpu_ms_per_1000: f64,
    pub by_process: Vec<ProcessCpu>,
    pub per_event: PerEventFigures,
}

/// pvmouse's path against QEMU's, pooled: no slower at p50 and p99, no more CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VncTarget {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub cpu: Option<f64>,
    pub met: bool,
}

/// The VNC path: one section of RESULTS.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vnc {
    pub environment: Environment,
    pub rate_hz: f64,
    /// Positions per path, over every round.
    pub samples: usize,
    pub rounds: usize,
    pub turns: Vec<VncTurn>,
    pub pooled: Vec<VncPooled>,
    pub target: Option<VncTarget>,
}

fn vnc_pooled(results: &[VncResult], path: VncPath) -> Option<VncPooled> {
    let rounds: Vec<&VncResult> = results.iter().filter(|r| r.path == path).collect();
    if rounds.is_empty() {
        return None;
    }
    let sent: usize = rounds.iter().map(|r| r.series.sent).sum();
    let mut by_process: Vec<ProcessCpu> = Vec::new();
    for r in &rounds {
        for &(name, cpu_s) in &r.cpu_by_process {
            let ms = ms_per_1000(cpu_s, sent);
            match by_process.iter_mut().find(|p| p.process == name) {
                Some(p) => p.cpu_ms_per_1000 += ms,
                None => by_process.push(ProcessCpu {
                    process: name.to_owned(),
                    cpu_ms_per_1000: ms,
                }),
            }
        }
    }
    let mean = |f: fn(&PerEvent) -> f64| {
        rounds
            .iter()
            .map(|r| f(&r.per_event) * r.series.sent as f64)
            .sum::<f64>()
            / sent.max(1) as f64
    };
    Some(VncPooled {
        path: path.id().to_owned(),
        description: path.describe().to_owned(),
        sent,
        answered: rounds
            .iter()
            .map(|r| r.series.sent - r.series.unanswered)
            .sum(),
        coalesced: rounds.iter().map(|r| r.series.coalesced).sum(),
        latency: Latency::from(&Distribution::pooled(
            rounds.iter().map(|r| &r.series.latency),
        )),
        cpu_ms_per_1000: ms_per_1000(rounds.iter().map(|r| r.series.cpu.ticks_s).sum(), sent),
        by_process,
        per_event: PerEventFigures {
            qemu_switches: mean(|p| p.qemu_switches),
            guest_interrupts: mean(|p| p.guest_interrupts),
            guest_switches: mean(|p| p.guest_switches),
        },
    })
}

impl Vnc {
    pub fn of(results: &[VncResult], env: &Environment, rate_hz: f64, samples: usize) -> Self {
        let turns = results
            .iter()
            .map(|r| VncTurn {
                path: r.path.id().to_owned(),
                round: r.round,
                series: SeriesFigures::from(&r.series),
                by_process: r
                    .cpu_by_process
                    .iter()
                    .map(|&(name, cpu_s)| ProcessCpu {
                        process: name.to_owned(),
                        cpu_ms_per_1000: ms_per_1000(cpu_s, r.series.sent),
                    })
                    .collect(),
                per_event: PerEventFigures::from(&r.per_event),
            })
            .collect();
        let pooled: Vec<VncPooled> = VncPath::ALL
            .into_iter()
            .filter_map(|path| vnc_pooled(results, path))
            .collect();
        let find = |path: VncPath| pooled.iter().find(|p| p.path == path.id());
        let target = find(VncPath::Pvmouse)
            .zip(find(VncPath::QemuTablet))
            .map(|(ours, theirs)| {
                let p50 = ratio(ours.latency.p50, theirs.latency.p50);
                let p99 = ratio(ours.latency.p99, theirs.latency.p99);
                let cpu = ratio(Some(ours.cpu_ms_per_1000), Some(theirs.cpu_ms_per_1000));
                let within = |r: Option<f64>| r.is_some_and(|r| r <= 1.0);
                VncTarget {
                    p50,
                    p99,
                    cpu,
                    met: within(p50) && within(p99) && within(cpu),
                }
            });
        Vnc {
            environment: env.clone(),
            rate_hz,
            samples,
            rounds: results.iter().map(|r| r.round).max().unwrap_or(0),
            turns,
            pooled,
            target,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;
    use crate::fixtures;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    fn end_to_end() -> EndToEnd {
        EndToEnd::of(
            &fixtures::kinds(),
            &fixtures::environment(),
            &fixtures::plan(),
            "latency-cdf.svg",
        )
    }

    #[test]
    fn kinds_are_compared_with_virtio_tablet_in_the_same_run() {
        let e = end_to_end();
        let raw = &e.kinds[1];
        assert_eq!(raw.id, "pvmouse-raw");
        assert!(close(raw.steady.latency.p50, 0.5) && close(raw.steady.latency.p99, 0.99));
        assert!(close(raw.p50_vs_virtio_tablet, 0.5) && close(raw.p99_vs_virtio_tablet, 0.5));
        // 1.51 s over 2000 moves, less 0.2 s of idle over the series' 10 s.
        assert!((raw.steady.cpu_ms_per_1000 - 755.0).abs() < 1e-9);
        assert!(close(raw.net_cpu_ms_per_1000, 655.0));
        assert!(close(raw.net_cpu_vs_virtio_tablet, 655.0 / 660.0));
        // The floor has no device to compare.
        assert_eq!(e.kinds[0].guest_device, None);
        assert_eq!(e.kinds[0].net_cpu_vs_virtio_tablet, None);
        assert!(raw.ladder.iter().all(|s| s.sustained));
        let failed = &e.kinds[2].ladder[1];
        assert!(!failed.sustained && !failed.kept_rate && failed.backlog_grew);
        assert_eq!((failed.answered, failed.refused), (1497, 2));
    }

    #[test]
    fn targets_are_decided_from_the_figures_and_unmeasured_without_their_kinds() {
        let targets = end_to_end().targets;
        let verdicts: Vec<Option<bool>> = targets.iter().map(Target::met).collect();
        // Raw latency, bridged p99, xhci, UHCI, raw idle CPU, raw CPU per event, buttons,
        // relative against virtio-mouse.
        assert_eq!(
            verdicts,
            [
                Some(true),
                None,
                None,
                None,
                Some(true),
                Some(true),
                Some(true),
                None
            ]
        );
        let Target::IdleCpu {
            backend_run_percent,
            qemu_attached_minus_unplugged,
            qemu_noise,
            ..
        } = &targets[4]
        else {
            panic!("{:?}", targets[4]);
        };
        assert!(close(*backend_run_percent, 0.009));
        assert!(close(*qemu_attached_minus_unplugged, 0.1));
        assert!((qemu_noise - 0.2).abs() < 1e-9);

        // Slower pvmouse than the tablet misses the latency target.
        let mut kinds = fixtures::kinds();
        kinds[1].steady.latency = fixtures::latency(0.03);
        let e = EndToEnd::of(
            &kinds,
            &fixtures::environment(),
            &fixtures::plan(),
            "cdf.svg",
        );
        assert_eq!(e.targets[0].met(), Some(false));
        // A lost transition misses the buttons target.
        kinds[1].burst.as_mut().unwrap().seen = 7999;
        let e = EndToEnd::of(
            &kinds,
            &fixtures::environment(),
            &fixtures::plan(),
            "cdf.svg",
        );
        assert!(
            e.targets.contains(&Target::ButtonsKept {
                met: Some(false),
                lost_or_refused: Some(1)
            }),
            "{:?}",
            e.targets
        );
    }

    #[test]
    fn figures_survive_their_json() {
        let e = end_to_end();
        let back: EndToEnd = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        let (results, plan) = fixtures::desktop();
        let d = Desktop::of(&results, &fixtures::environment(), &plan);
        let back: Desktop = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        let v = Vnc::of(&fixtures::vnc(), &fixtures::environment(), 200.0, 1000);
        let back: Vnc = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_desktop_target_compares_the_device_mapping_with_raw_pooled() {
        let (mut results, plan) = fixtures::desktop();
        let d = Desktop::of(&results, &fixtures::environment(), &plan);
        let device = d
            .turns
            .iter()
            .find(|t| t.path == "pvmouse-device-maps")
            .unwrap();
        assert!(close(device.p50_vs_raw, 1.05) && close(device.p99_vs_raw, 1.05));
        let target = d.target.unwrap();
        assert!(target.met && close(target.p50, 1.05));
        // A second round of the device at 1.2× raw pools to past 1.1×.
        let mut slow = results[1].clone();
        slow.round = 2;
        slow.series.latency = fixtures::latency(0.06);
        results.push(slow);
        let d = Desktop::of(&results, &fixtures::environment(), &plan);
        assert!(!d.target.unwrap().met);
        // The second round has no raw turn to compare with.
        assert_eq!(d.turns[4].p50_vs_raw, None);
    }

    #[test]
    fn vnc_paths_pool_their_rounds() {
        let v = Vnc::of(&fixtures::vnc(), &fixtures::environment(), 200.0, 1000);
        assert_eq!(v.rounds, 2);
        let ours = &v.pooled[1];
        assert_eq!(ours.path, "pvmouse-vnc-pvmouse");
        assert_eq!(
            (ours.sent, ours.answered, ours.latency.samples),
            (1000, 1000, 200)
        );
        assert!((ours.cpu_ms_per_1000 - 980.0).abs() < 1e-9);
        let by_process: Vec<(&str, f64)> = ours
            .by_process
            .iter()
            .map(|p| (p.process.as_str(), p.cpu_ms_per_1000))
            .collect();
        for ((name, ms), (want_name, want_ms)) in
            by_process
                .iter()
                .zip([("QEMU", 900.0), ("backend", 50.0), ("pvmouse-vnc", 30.0)])
        {
            assert_eq!(*name, want_name);
            assert!((ms - want_ms).abs() < 1e-9, "{name} {ms}");
        }
        assert!((ours.per_event.qemu_switches - 10.0).abs() < 1e-9);
        let target = v.target.unwrap();
        assert!(close(target.p50, 1.1) && close(target.cpu, 980.0 / 900.0));
        assert!(!target.met);
    }
}
