//! The VNC path: a viewer's pointer events to the guest's evdev node, through `pvmouse-vnc` and
//! pvmouse, beside the same viewer straight to QEMU's VNC server and its virtio-tablet-pci.
//!
//! One guest has both devices and one QEMU VNC server; `pvmouse-vnc` stands in front of it. The
//! viewer is a minimal RFB client (handshake, then `PointerEvent`s only), paced by the host; the
//! guest probe reads each device and answers every frame that moves X. The same positions, in
//! the same run, one series after the other. CPU is QEMU's and the backend's, and for pvmouse
//! also `pvmouse-vnc`'s.
//!
//! A third series points with stream records written straight to pvmouse's control socket, so
//! that the report separates what `pvmouse-vnc`'s hop costs from what delivering through a
//! vhost-user device costs QEMU. Each series also counts QEMU's thread switches and the guest's
//! interrupts and context switches per event: where the paths' costs differ, and where not.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pvmouse_client::{Connection, RecordStream};
use pvmouse_spec::control::QEMU_ABS_MAX;
use pvmouse_spec::profile::AXIS_MAX;
use pvmouse_spec::stream::{Record, pixel_centre};
use pvmouse_vmtest::{PVMOUSE_NAME, Replies, Vm, VmConfig};

use crate::host_cpu::CpuMeter;
use crate::run::{Series, series};

const WAIT: Duration = Duration::from_secs(30);
/// The paths take turns this many times; each turn has a warm-up of [`WARM_UP`] samples first.
pub const ROUNDS: usize = 4;
const WARM_UP: usize = 20;
const TABLET: &str = "QEMU Virtio Tablet";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VncPath {
    /// Viewer → QEMU's VNC server → virtio-tablet-pci.
    QemuTablet,
    /// Viewer → pvmouse-vnc → pvmouse's control socket → pvmouse.
    Pvmouse,
    /// No viewer: a control client streams the same records straight to pvmouse. What the path
    /// costs without `pvmouse-vnc`'s hop: the floor of any front door, in front of the backend
    /// or inside it.
    Records,
}

impl VncPath {
    pub const ALL: [VncPath; 3] = [VncPath::QemuTablet, VncPath::Pvmouse, VncPath::Records];

    pub fn id(self) -> &'static str {
        match self {
            VncPath::QemuTablet => "qemu-vnc-virtio-tablet",
            VncPath::Pvmouse => "pvmouse-vnc-pvmouse",
            VncPath::Records => "records-pvmouse",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            VncPath::QemuTablet => "viewer → QEMU's VNC server → virtio-tablet-pci",
            VncPath::Pvmouse => "viewer → pvmouse-vnc → pvmouse",
            VncPath::Records => {
                "control client streaming records → pvmouse (no VNC; for reference)"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct VncResult {
    pub path: VncPath,
    pub round: usize,
    pub series: Series,
    /// The measured series' CPU (utime + stime, seconds) by process, in the order QEMU, the
    /// backend, `pvmouse-vnc` (the last two for pvmouse only).
    pub cpu_by_process: Vec<(&'static str, f64)>,
    pub per_event: PerEvent,
}

/// Where the work per pointer event happens: QEMU's threads on the host, and the guest, which
/// does the same work whichever device delivers the event.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerEvent {
    /// How often one of QEMU's threads (main loop, vCPU, …) was switched in.
    pub qemu_switches: f64,
    /// The guest's MSI interrupts (`/proc/interrupts`, every `PCI-MSI` line).
    pub guest_interrupts: f64,
    /// The guest's context switches (`ctxt` in `/proc/stat`).
    pub guest_switches: f64,
}

/// The guest's MSI interrupts and context switches so far.
fn guest_counters(vm: &Vm) -> Result<(u64, u64), String> {
    let lines = vm.probe.sh("cat /proc/interrupts /proc/stat", WAIT)?;
    let mut interrupts = 0;
    let mut switches = None;
    for line in &lines {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ctxt") => switches = words.next().and_then(|v| v.parse().ok()),
            // "NN:", then one count per CPU, then the controller and the name.
            Some(_) if line.contains("PCI-MSI") => {
                interrupts += words.map_while(|w| w.parse::<u64>().ok()).sum::<u64>();
            }
            _ => {}
        }
    }
    let switches =
        switches.ok_or_else(|| format!("no ctxt line in the guest's /proc/stat: {lines:?}"))?;
    Ok((interrupts, switches))
}

/// A client that only points: an RFB viewer, or a control client writing records.
struct Viewer {
    speaks: Speaks,
    width: u16,
    height: u16,
}

/// How a [`Viewer`] points.
enum Speaks {
    /// RFB `PointerEvent`s, to a VNC server.
    Rfb(Box<dyn ReadWrite>),
    /// Stream records, on pvmouse's control socket.
    Records(RecordStream),
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

impl Viewer {
    fn connect(mut stream: Box<dyn ReadWrite>) -> io::Result<Self> {
        let mut version = [0u8; 12];
        stream.read_exact(&mut version)?;
        stream.write_all(b"RFB 003.008\n")?;
        let mut n = [0u8; 1];
        stream.read_exact(&mut n)?;
        let mut types = vec![0u8; usize::from(n[0])];
        stream.read_exact(&mut types)?;
        if !types.contains(&1) {
            return Err(io::Error::other(format!(
                "no security type None: {types:?}"
            )));
        }
        stream.write_all(&[1])?;
        let mut result = [0u8; 4];
        stream.read_exact(&mut result)?;
        if result != [0; 4] {
            return Err(io::Error::other("security refused"));
        }
        stream.write_all(&[1])?;
        let mut init = [0u8; 24];
        stream.read_exact(&mut init)?;
        let name = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        io::copy(&mut (&mut stream).take(u64::from(name)), &mut io::sink())?;
        // SetEncodings (Raw): QEMU decides whether a viewer's pointer is absolute when it gets
        // one, and treats it as relative until then.
        stream.write_all(&[2, 0, 0, 1, 0, 0, 0, 0])?;
        Ok(Self {
            width: u16::from_be_bytes([init[0], init[1]]),
            height: u16::from_be_bytes([init[2], init[3]]),
            speaks: Speaks::Rfb(stream),
        })
    }

    /// A control client switched to records, pointing on a head of this size.
    fn records(control: &Path, width: u16, height: u16) -> Result<Self, pvmouse_client::Error> {
        Ok(Self {
            speaks: Speaks::Records(Connection::connect(control)?.into_stream()?),
            width,
            height,
        })
    }

    fn point(&mut self, x: u16, y: u16) -> io::Result<()> {
        match &mut self.speaks {
            Speaks::Records(stream) => stream
                .send(&Record {
                    display: Some(0),
                    x: Some(pixel_centre(x, self.width)),
                    y: Some(pixel_centre(y, self.height)),
                    ..Record::default()
                })
                .map_err(|e| io::Error::other(e.to_string())),
            Speaks::Rfb(stream) => {
                let [xh, xl] = x.to_be_bytes();
                let [yh, yl] = y.to_be_bytes();
                stream.write_all(&[5, 0, xh, xl, yh, yl])
            }
        }
    }
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The column of sample `i`: 7 pixels apart, none repeated within the matching window.
fn column(i: usize, width: u16) -> u16 {
    let span = usize::from(width.saturating_sub(40)).max(1);
    16 + u16::try_from((7 * i) % span).unwrap_or(0)
}

/// Boots the guest, starts `pvmouse-vnc`, and measures the paths in turn.
pub fn measure(
    rate_hz: f64,
    samples: usize,
    log: &dyn Fn(&str),
) -> Result<(Vec<VncResult>, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let upstream = dir.path().join("vnc.sock");
    log("vnc path: booting a guest with pvmouse, virtio-tablet-pci and a QEMU VNC server");
    let vm = Vm::boot(VmConfig {
        displays: 1,
        extra_qemu_args: vec![
            "-device".into(),
            "virtio-tablet-pci".into(),
            "-vnc".into(),
            format!("unix:{}", upstream.display()),
        ],
        ..VmConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let bin = pvmouse_vmtest::assets::build_binaries()
        .map_err(|e| e.to_string())?
        .backend
        .with_file_name("pvmouse-vnc");
    // The viewer reaches either front door the same way, a Unix socket, so that the paths
    // differ only in what is behind it.
    let front = dir.path().join("pvmouse-vnc.sock");
    let proxy = Proxy(
        Command::new(&bin)
            .arg("--control")
            .arg(vm.control_socket())
            .arg("--head")
            .arg(format!(
                "0=unix:{},unix:{}",
                front.display(),
                upstream.display()
            ))
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?,
    );
    // Both viewers connect first and stay connected; the paths then take turns, round after
    // round, so that drift in the guest or the host over the run falls on both alike.
    let mut viewers = Vec::new();
    for path in VncPath::ALL {
        let device = match path {
            VncPath::QemuTablet => TABLET,
            VncPath::Pvmouse | VncPath::Records => PVMOUSE_NAME,
        };
        // One reader per device: a second would echo each of its frames twice.
        if !viewers.iter().any(|(_, d, _)| *d == device) {
            let mark = vm.probe.mark();
            vm.probe
                .send(&format!("bench {device}"))
                .map_err(|e| e.to_string())?;
            vm.probe
                .wait_for(mark, WAIT, |l| l.starts_with(&format!("BENCH {device} ")))?;
        }
        let viewer = match path {
            VncPath::QemuTablet => {
                UnixStream::connect(&upstream).and_then(|s| Viewer::connect(Box::new(s)))
            }
            VncPath::Pvmouse => {
                let deadline = Instant::now() + WAIT;
                let stream = loop {
                    match UnixStream::connect(&front) {
                        Ok(s) => break s,
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => return Err(format!("pvmouse-vnc: {e}")),
                    }
                };
                Viewer::connect(Box::new(stream))
            }
            VncPath::Records => {
                // The same head as the viewers, so that the same columns aim at the same pixels.
                let (width, height) = viewers
                    .first()
                    .map(|(_, _, v): &(VncPath, &str, Viewer)| (v.width, v.height))
                    .ok_or("the records client takes its head's size from a viewer, and none connected")?;
                Viewer::records(&vm.control_socket(), width, height)
                    .map_err(|e| io::Error::other(e.to_string()))
            }
        }
        .map_err(|e| format!("{}: {e}", path.id()))?;
        viewers.push((path, device, viewer));
    }
    let mut results = Vec::new();
    let mut counter = 0usize;
    let per_round = samples.div_ceil(ROUNDS);
    for round in 1..=ROUNDS {
        for (path, device, viewer) in &mut viewers {
            let (path, device) = (*path, *device);
            let width = viewer.width;
            let mut pids = vec![vm.qemu_pid()];
            let mut names = vec!["QEMU"];
            if path != VncPath::QemuTablet {
                pids.extend(vm.backend_pid());
                names.push("backend");
            }
            if path == VncPath::Pvmouse {
                pids.push(proxy.0.id());
                names.push("pvmouse-vnc");
            }
            // What the guest reads for column p: pvmouse aims at the pixel's centre over
            // 0..65535; QEMU scales the pixel's left edge over 0..32767.
            let key = |p: u16| match path {
                VncPath::Pvmouse | VncPath::Records => (f64::from(p) + 0.5) / f64::from(width),
                VncPath::QemuTablet => f64::from(p) / f64::from(width),
            };
            let axis_max = match path {
                VncPath::Pvmouse | VncPath::Records => f64::from(AXIS_MAX),
                VncPath::QemuTablet => QEMU_ABS_MAX as f64,
            };
            let prefix = format!("FR {device} ");
            let tolerance = 2.0 / f64::from(width);
            let viewer_cell = std::cell::RefCell::new(&mut *viewer);
            let mut one = |n: usize| -> Result<Series, String> {
                let first = counter;
                counter += n;
                series(
                    &vm,
                    &pids,
                    rate_hz,
                    n,
                    |i| {
                        viewer_cell
                            .borrow_mut()
                            .point(column(first + i, width), 100)
                            .map_err(|e| e.to_string())
                    },
                    |i| key(column(first + i, width)),
                    |l| Some(l.strip_prefix(&prefix)?.trim().parse::<f64>().ok()? / axis_max),
                    tolerance,
                    Replies::default,
                )
            };
            let mark = vm.probe.mark();
            let warm = one(WARM_UP)?;
            if warm.own == 0 {
                let seen: Vec<String> = vm
                    .probe
                    .lines(mark)
                    .into_iter()
                    .filter(|l| l.starts_with(&prefix))
                    .take(5)
                    .collect();
                return Err(format!(
                    "{}: no sample of the warm-up came back (width {width}; the guest read \
                     {seen:?})",
                    path.id(),
                ));
            }
            log(&format!(
                "vnc path: round {round}: {}: {per_round} samples at {rate_hz} Hz",
                path.id()
            ));
            let guest_before = guest_counters(&vm)?;
            let meter = CpuMeter::start(&pids);
            let s = one(per_round)?;
            let per_process = meter.per_process();
            let guest_after = guest_counters(&vm)?;
            let per_event = |n: u64| n as f64 / s.sent.max(1) as f64;
            let counts = PerEvent {
                qemu_switches: per_event(per_process[0].switches),
                guest_interrupts: per_event(guest_after.0.saturating_sub(guest_before.0)),
                guest_switches: per_event(guest_after.1.saturating_sub(guest_before.1)),
            };
            let cpu_by_process: Vec<(&'static str, f64)> = names
                .iter()
                .copied()
                .zip(per_process.iter().map(|u| u.ticks_s))
                .collect();
            log(&format!(
                "vnc path: round {round}: {}: p50 {:.2} ms, p99 {:.2} ms, answered {} of {}, \
                 CPU by process {cpu_by_process:?}, per event {counts:?}",
                path.id(),
                s.latency.p50(),
                s.latency.p99(),
                s.sent - s.unanswered,
                s.sent
            ));
            results.push(VncResult {
                path,
                round,
                series: s,
                cpu_by_process,
                per_event: counts,
            });
        }
    }
    drop(proxy);
    Ok((results, crate::run::guest_kernel_version(&vm)))
}
