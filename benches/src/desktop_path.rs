//! The desktop path: from the host's send to a client of a real display server seeing the motion.
//!
//! One desktop guest runs sway on two monitors (1024x768 left of 1280x1024), with pvmouse and
//! QEMU's virtio-tablet-pci attached side by side. The Wayland reader (`pvmouse-wl-reader`), a
//! client in sway's session, prints every `wl_pointer.motion`; the guest probe streams its lines
//! to the host as they come. The same stream, aimed at the same pixels of the left monitor, goes
//! through each path in turn, in the same VM, and the whole round is repeated so that drift
//! between paths shows:
//!
//! - virtio-tablet-pci, which sway maps onto the whole layout;
//! - pvmouse's raw device with no bridge: the shortest path pvmouse has, the baseline;
//! - pvmouse with the bridge mapping (`pvmouse-guestd --map-in-bridge`): a second hop in the
//!   guest for every event;
//! - pvmouse with the device mapping: the bridge handed sway's layout to the device and sleeps.

use std::time::Duration;

use pvmouse_vmtest::desktop::{Sway, wait_for_bridge, wait_for_coordinates};
use pvmouse_vmtest::{Qmp, QmpStream, Vm, VmConfig, round_to_i32};

use crate::input_commands::move_command;
use crate::run::{Series, series};

const WAIT: Duration = Duration::from_secs(60);

/// sway's outputs: the left one is where every sample goes.
const OUTPUTS: &str = "output Virtual-1 mode 1024x768 position 0 0\\n\
                       output Virtual-2 mode 1280x1024 position 1024 0\\n";
const LEFT: (f64, f64) = (1024.0, 768.0);
const DESKTOP: (f64, f64) = (2304.0, 1024.0);
/// The row every sample is on.
const ROW: f64 = 300.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    VirtioTablet,
    PvmouseRaw,
    PvmouseBridge,
    PvmouseDevice,
}

impl Path {
    /// The order of a round: the two that should cost the same side by side.
    pub const ALL: [Path; 4] = [
        Path::PvmouseRaw,
        Path::PvmouseDevice,
        Path::PvmouseBridge,
        Path::VirtioTablet,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Path::VirtioTablet => "virtio-tablet",
            Path::PvmouseRaw => "pvmouse-raw",
            Path::PvmouseBridge => "pvmouse-bridge-maps",
            Path::PvmouseDevice => "pvmouse-device-maps",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Path::VirtioTablet => "virtio-tablet-pci (in QEMU); sway maps it onto the layout",
            Path::PvmouseRaw => "pvmouse's own device, no bridge; sway maps it onto the layout",
            Path::PvmouseBridge => {
                "pvmouse through pvmouse-guestd --map-in-bridge (a uinput hop per event)"
            }
            Path::PvmouseDevice => {
                "pvmouse, the device mapping sway's layout (the bridge sleeps): the default"
            }
        }
    }

    /// The QEMU-scale (0 … 32767) values that aim at the centre of desktop pixel (`p`, ROW).
    /// Through the bridge or the device, pvmouse's values are per display, so they divide the
    /// left monitor; the others are spread over the whole desktop by sway.
    fn aim(self, p: f64) -> (u32, u32) {
        let (w, h) = match self {
            Path::PvmouseBridge | Path::PvmouseDevice => LEFT,
            Path::VirtioTablet | Path::PvmouseRaw => DESKTOP,
        };
        let scale =
            |v: f64, size: f64| u32::try_from(round_to_i32(v / size * 32767.0)).unwrap_or(0);
        (scale(p + 0.5, w), scale(ROW + 0.5, h))
    }

    /// Starts or stops the guest bridge for this path.
    fn prepare(self, vm: &Vm, ctl: &mut Qmp) -> Result<(), String> {
        let mut restart = |flags: &str| -> Result<(), String> {
            vm.probe.sh(
                &format!(
                    "pkill -x pvmouse-guestd; sleep 0.3; \
                     /opt/pvmouse-guestd --session-user pvm {flags} >/tmp/guestd.log 2>&1 &"
                ),
                WAIT,
            )?;
            wait_for_bridge(ctl, WAIT)
        };
        match self {
            // No bridge: it would hold the device, or have the device map.
            Path::VirtioTablet | Path::PvmouseRaw => {
                vm.probe.sh("pkill -x pvmouse-guestd; true", WAIT)?;
                wait_for_no_bridge(ctl)?;
                wait_for_coordinates(ctl, "per-display", WAIT).map(drop)
            }
            Path::PvmouseBridge => {
                restart("--map-in-bridge")?;
                Sway::in_session(vm, "/opt/pvmouse-session >/tmp/session.log 2>&1 &")?;
                vm.probe
                    .sh_until("cat /tmp/session.log", "applied the layout", WAIT)?;
                wait_for_coordinates(ctl, "per-display", WAIT).map(drop)
            }
            // The session agent reconnects to the new bridge by itself.
            Path::PvmouseDevice => {
                restart("")?;
                wait_for_coordinates(ctl, "desktop", WAIT).map(drop)
            }
        }
    }
}

/// Waits until the host no longer hears the bridge (it said goodbye on SIGTERM).
fn wait_for_no_bridge(ctl: &mut Qmp) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let status = ctl
            .execute("query-pvmouse", serde_json::json!({}))
            .map_err(|e| e.to_string())?;
        if status["bridge-present"] == false {
            return Ok(());
        }
        if start.elapsed() >= WAIT {
            return Err(format!("the bridge is still there after {WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The left monitor's pixel for sample `i`: consecutive samples 7 pixels apart, none repeated
/// within 960 samples, so a reply can only match its own sample.
fn pixel(i: usize) -> f64 {
    20.0 + ((7 * i) % 960) as f64
}

#[derive(Debug, Clone)]
pub struct DesktopPlan {
    pub rate_hz: f64,
    pub samples: usize,
    /// Rounds over every path, one after another.
    pub rounds: usize,
}

impl DesktopPlan {
    pub fn full() -> Self {
        Self {
            rate_hz: 100.0,
            samples: 500,
            rounds: 4,
        }
    }

    pub fn smoke() -> Self {
        Self {
            rate_hz: 100.0,
            samples: 150,
            rounds: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PathResult {
    pub path: Path,
    /// 1, 2, …
    pub round: usize,
    pub series: Series,
}

/// Boots the desktop guest once and measures every path in it. Also returns the guest's kernel.
pub fn measure(
    plan: &DesktopPlan,
    log: &dyn Fn(&str),
) -> Result<(Vec<PathResult>, String), String> {
    log("desktop path: booting the desktop guest with pvmouse and virtio-tablet-pci");
    let vm = Vm::boot(VmConfig {
        desktop: true,
        displays: 2,
        extra_qemu_args: vec!["-device".into(), "virtio-tablet-pci".into()],
        ..VmConfig::default()
    })
    .map_err(|e| e.to_string())?;
    Sway::start(&vm, OUTPUTS)?;
    let mark = vm.probe.mark();
    vm.probe
        .send(&format!(
            "spawn {}",
            Sway::session_command("exec /opt/pvmouse-wl-reader")
        ))
        .map_err(|e| e.to_string())?;
    vm.probe.wait_for(mark, WAIT, |l| l == "SP READY")?;
    let lines: Vec<String> = vm
        .probe
        .timed_lines(mark)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    // The reader's index of the left monitor, from its `OUTPUT index name …` lines.
    let left = lines
        .iter()
        .filter_map(|l| l.strip_prefix("SP OUTPUT "))
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let index = f.next()?;
            (f.next() == Some("Virtual-1")).then(|| index.to_owned())
        })
        .ok_or_else(|| format!("the reader named no Virtual-1: {lines:?}"))?;
    let motion = format!("SP MOTION {left} ");
    let mut pids = vec![vm.qemu_pid()];
    pids.extend(vm.backend_pid());
    let mut ctl = vm.control().map_err(|e| e.to_string())?;
    let mut pvmouse =
        QmpStream::connect(&vm.control_socket()).map_err(|e| format!("pvmouse control: {e}"))?;
    let mut qemu = QmpStream::connect(&vm.qemu_qmp_socket()).map_err(|e| format!("QEMU: {e}"))?;
    let mut results = Vec::new();
    let mut counter = 0;
    let rounds = (1..=plan.rounds).flat_map(|round| Path::ALL.map(|path| (round, path)));
    for (round, path) in rounds {
        path.prepare(&vm, &mut ctl)?;
        let qmp = if path == Path::VirtioTablet {
            &mut qemu
        } else {
            &mut pvmouse
        };
        // A warm-up, unrecorded: the first motion enters the reader's surface (no motion event).
        let mut one = |n: usize| -> Result<Series, String> {
            let first = counter;
            counter += n;
            let commands: Vec<String> = (first..first + n)
                .map(|i| {
                    let (x, y) = path.aim(pixel(i));
                    move_command(x, y)
                })
                .collect();
            let sender = std::cell::RefCell::new(&mut *qmp);
            series(
                &vm,
                &pids,
                plan.rate_hz,
                n,
                |i| {
                    sender
                        .borrow_mut()
                        .send(&commands[i])
                        .map_err(|e| format!("QMP send: {e}"))
                },
                |i| pixel(first + i) + 0.5,
                |l| {
                    l.strip_prefix(&motion)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                },
                1.0,
                || sender.borrow().replies(),
            )
        };
        one(50)?;
        log(&format!(
            "desktop path: round {round}: {}: {} samples at {} Hz",
            path.id(),
            plan.samples,
            plan.rate_hz
        ));
        let s = one(plan.samples)?;
        log(&format!(
            "desktop path: round {round}: {}: p50 {:.2} ms, p99 {:.2} ms, answered {} of {}, \
             coalesced {}",
            path.id(),
            s.latency.p50(),
            s.latency.p99(),
            s.sent - s.unanswered,
            s.sent,
            s.coalesced
        ));
        results.push(PathResult {
            path,
            round,
            series: s,
        });
    }
    Ok((results, crate::run::guest_kernel_version(&vm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_aim_at_distinct_pixel_centres_of_the_left_monitor() {
        for i in 0..960 {
            let p = pixel(i);
            assert!((20.0..980.0).contains(&p));
            assert!((1..500).all(|k| pixel(i + k) != p));
        }
        // Per display through pvmouse: the value means the pixel aimed at.
        let (x, _) = Path::PvmouseDevice.aim(100.0);
        let a = (f64::from(x) * 65535.0 / 32767.0).round();
        assert_eq!((a * 1024.0 / 65535.0).floor(), 100.0);
        // Over the desktop: within a tenth of a pixel of the centre.
        let (x, _) = Path::VirtioTablet.aim(100.0);
        assert!((f64::from(x) / 32767.0 * DESKTOP.0 - 100.5).abs() < 0.1);
    }
}
