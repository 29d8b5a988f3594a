//! Many VMs on one host, without a VM: `vms` restartable backends (a keeper and its worker each,
//! as one VM has), each attached to a frontend in this process as QEMU 10 attaches one (queues
//! of 4, memory shared through a file on tmpfs), with one driver thread that gives event buffers
//! back as Linux's virtio_input does. It measures what the backends cost together: PSS and
//! descriptors of every process, CPU of all of them idle, and one client's latency (a record
//! written to its control socket until the frame is in its guest's used ring) alone and while
//! every VM takes moves at the same rate.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use pvmouse_client::{Connection, RecordStream};
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{ABS_X, EV_ABS, EV_SYN};
use pvmouse_spec::profile::{EVENTQ, STATUSQ};
use pvmouse_spec::stream::Record;
use serde::{Deserialize, Serialize};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vhost_user_pvmouse::testing::{MEMORY_SIZE, MockRing, descriptor_index};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::environment::Environment;
use crate::host_cpu::CpuMeter;
use crate::latency::Distribution;

/// QEMU 10's vhost-user-input queue size.
const QUEUE_SIZE: u16 = 4;
/// The status queue's rings, below the buffers (`testing::BUFFERS`) and clear of the event
/// queue's.
const STATUSQ_BASE: u64 = 0x1000;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub vms: usize,
    /// How long all of them are measured idle.
    pub idle: Duration,
    /// Latency samples, alone and loaded each.
    pub samples: usize,
    /// Moves a second per VM, the measured client's included.
    pub rate_hz: u32,
    /// The backend binary.
    pub backend: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Quantiles {
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    fn of(d: &Distribution) -> Self {
        Self {
            samples: d.sorted_ms.len(),
            p50: d.p50(),
            p90: d.p90(),
            p99: d.p99(),
            max: d.sorted_ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// Memory and descriptors of one kind of process, summed and per process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessCost {
    pub processes: usize,
    pub pss_kib: u64,
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManyVms {
    pub environment: Environment,
    pub vms: usize,
    pub keepers: ProcessCost,
    pub workers: ProcessCost,
    pub pss_kib_per_vm: f64,
    pub fds_per_vm: f64,
    pub idle_seconds: f64,
    /// utime + stime of every keeper and worker while idle, in seconds.
    pub idle_cpu_s: f64,
    /// Scheduler run time of the same, in seconds (nanosecond resolution).
    pub idle_run_s: f64,
    pub idle_percent_of_core: f64,
    /// Threads switched in, all processes together, per second while idle.
    pub idle_wakeups_per_s: f64,
    pub rate_hz: u32,
    pub alone: Quantiles,
    pub loaded: Quantiles,
    /// Moves written to all VMs during the loaded measurement, and frames every guest got.
    pub load_moves: u64,
    pub load_frames: u64,
    pub load_seconds: f64,
    /// CPU of every keeper and worker while loaded, as a percentage of one core.
    pub loaded_percent_of_core: f64,
}

/// One backend process pair, stopped when dropped.
struct Backend {
    keeper: Child,
    control: PathBuf,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

/// One VM's guest side, driven from the driver thread.
struct Driver {
    eventq: MockRing<'static>,
    mem: &'static GuestMemoryMmap,
    call: EventFd,
    kick: EventFd,
    seen: u16,
    free: Vec<u16>,
    x: Option<i32>,
}

impl Driver {
    /// Takes what the device gave back; returns the ABS_X of each complete frame that moved X.
    fn drain(&mut self, mut frame: impl FnMut(i32)) {
        let _ = self.call.read();
        while self.eventq.used_idx() != self.seen {
            let used = self.eventq.used(self.seen);
            self.free.push(descriptor_index(&used));
            let event = InputEvent::from_le_bytes(self.eventq.used_event(self.seen));
            self.seen = self.seen.wrapping_add(1);
            match (event.kind, event.code) {
                (EV_ABS, ABS_X) => self.x = Some(event.value),
                (EV_SYN, _) => {
                    if let Some(x) = self.x.take() {
                        frame(x);
                    }
                }
                _ => {}
            }
        }
        self.refill();
    }

    fn refill(&mut self) {
        while let Some(i) = self.free.pop() {
            self.eventq.offer_event_buffer(i);
        }
        // With VIRTIO_RING_F_EVENT_IDX, as Linux negotiates it: interrupt me after the next
        // used entry (the avail ring's `used_event`, after its ring).
        let (_, avail, _) = self.eventq.layout();
        let used_event = avail + 4 + 2 * u64::from(QUEUE_SIZE);
        let _ = self
            .mem
            .write_obj(self.seen.to_le(), GuestAddress(used_event));
        let _ = self.kick.write(1);
    }
}

fn spawn_backend(binary: &Path, dir: &Path, i: usize) -> std::io::Result<(Backend, PathBuf)> {
    let vhost = dir.join(format!("vm{i}.vhost"));
    let control = dir.join(format!("vm{i}.control"));
    let keeper = Command::new(binary)
        .arg("--restartable")
        .arg("--socket-path")
        .arg(&vhost)
        .arg("--control-socket")
        .arg(&control)
        .env("TMPDIR", dir)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((Backend { keeper, control }, vhost))
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Guest memory shared as QEMU shares it, in a file on tmpfs (no `unsafe` for a memfd here).
fn guest_memory() -> Result<(File, &'static GuestMemoryMmap), String> {
    let file = tempfile::tempfile_in("/dev/shm").map_err(|e| format!("/dev/shm: {e}"))?;
    file.set_len(MEMORY_SIZE as u64)
        .map_err(|e| e.to_string())?;
    let clone = file.try_clone().map_err(|e| e.to_string())?;
    let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
        GuestAddress(0),
        MEMORY_SIZE,
        Some(FileOffset::new(clone, 0)),
    )])
    .map_err(|e| e.to_string())?;
    // Each lives as long as the run; the benchmark is one run.
    Ok((file, Box::leak(Box::new(mem))))
}

/// Attaches a frontend as QEMU 10 does and starts both rings; returns it and the driver.
fn attach(vhost: &Path) -> Result<(Frontend, Driver, File), String> {
    let e = |e: vhost::Error| e.to_string();
    let mut frontend = {
        let mut last = String::new();
        let mut got = None;
        for _ in 0..400 {
            match Frontend::connect(vhost, 2) {
                Ok(f) => {
                    got = Some(f);
                    break;
                }
                Err(err) => last = err.to_string(),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        got.ok_or(format!("cannot connect to {}: {last}", vhost.display()))?
    };
    frontend.set_owner().map_err(e)?;
    let features = frontend.get_features().map_err(e)?;
    if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
        return Err("the backend offers no protocol features".into());
    }
    frontend.set_features(features).map_err(e)?;
    frontend.get_protocol_features().map_err(e)?;
    frontend
        .set_protocol_features(VhostUserProtocolFeatures::CONFIG)
        .map_err(e)?;
    let (file, mem) = guest_memory()?;
    let host = mem
        .get_host_address(GuestAddress(0))
        .map_err(|e| e.to_string())? as u64;
    frontend
        .set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEMORY_SIZE as u64,
            userspace_addr: host,
            mmap_offset: 0,
            mmap_handle: file.as_raw_fd(),
        }])
        .map_err(e)?;
    let eventq = MockRing::at(mem, 0, QUEUE_SIZE);
    let statusq = MockRing::at(mem, STATUSQ_BASE, QUEUE_SIZE);
    // Close-on-exec, as QEMU makes them: the backends started later must not inherit them.
    let fd = || EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(|e| e.to_string());
    let (kicks, calls) = ([fd()?, fd()?], [fd()?, fd()?]);
    for (q, ring) in [(EVENTQ, &eventq), (STATUSQ, &statusq)] {
        let q = usize::from(q);
        let (desc, avail, used) = ring.layout();
        frontend.set_vring_num(q, QUEUE_SIZE).map_err(e)?;
        frontend
            .set_vring_addr(
                q,
                &VringConfigData {
                    queue_max_size: QUEUE_SIZE,
                    queue_size: QUEUE_SIZE,
                    flags: 0,
                    desc_table_addr: host + desc,
                    used_ring_addr: host + used,
                    avail_ring_addr: host + avail,
                    log_addr: None,
                },
            )
            .map_err(e)?;
        frontend.set_vring_base(q, 0).map_err(e)?;
        frontend.set_vring_call(q, &calls[q]).map_err(e)?;
        frontend.set_vring_kick(q, &kicks[q]).map_err(e)?;
        frontend.set_vring_enable(q, true).map_err(e)?;
    }
    let [kick, _] = kicks;
    let [call, _] = calls;
    let mut driver = Driver {
        eventq,
        mem,
        call,
        kick,
        seen: 0,
        free: (0..QUEUE_SIZE).rev().collect(),
        x: None,
    };
    driver.refill();
    Ok((frontend, driver, file))
}

/// The guest side of every VM on one thread: waits on the call eventfds, gives buffers back,
/// counts frames, and tells VM 0's frames with their X and arrival time.
fn drive(
    mut drivers: Vec<Driver>,
    measured: Sender<(i32, Instant)>,
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let epoll = Epoll::new().map_err(|e| e.to_string())?;
    for (i, d) in drivers.iter().enumerate() {
        epoll
            .ctl(
                ControlOperation::Add,
                d.call.as_raw_fd(),
                EpollEvent::new(EventSet::IN, i as u64),
            )
            .map_err(|e| e.to_string())?;
    }
    let mut events = vec![EpollEvent::default(); drivers.len()];
    while !stop.load(Ordering::Relaxed) {
        let n = epoll.wait(100, &mut events).map_err(|e| e.to_string())?;
        for event in &events[..n] {
            let i = usize::try_from(event.data()).unwrap_or(usize::MAX);
            let Some(d) = drivers.get_mut(i) else {
                continue;
            };
            d.drain(|x| {
                frames.fetch_add(1, Ordering::Relaxed);
                if i == 0 {
                    let _ = measured.send((x, Instant::now()));
                }
            });
        }
    }
    Ok(())
}

/// Reads `Pss:`, `Rss:` from /proc/PID/smaps_rollup, descriptors and threads.
fn cost_of(pids: &[u32]) -> ProcessCost {
    let mut cost = ProcessCost {
        processes: pids.len(),
        ..ProcessCost::default()
    };
    for pid in pids {
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        cost.pss_kib += field("Pss:");
        cost.rss_kib += field("Rss:");
        cost.fds += std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
        cost.threads += std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    }
    cost
}

/// A record moving X to `x`, asking for no answer.
fn move_to(x: u16) -> Record {
    Record {
        x: Some(x),
        ..Record::default()
    }
}

/// VM 0's latency: `samples` moves at `rate_hz`, each timed until its frame is in the ring.
fn measure(
    first: &mut RecordStream,
    measured: &Receiver<(i32, Instant)>,
    samples: usize,
    rate_hz: u32,
) -> Result<Distribution, String> {
    let period = Duration::from_secs(1) / rate_hz;
    let mut latencies = Vec::with_capacity(samples);
    let start = Instant::now();
    for k in 0..samples {
        // Every move a new X, so that each makes a frame.
        let x = 1000 + u16::try_from(k % 2 * 30_000 + k % 1000).unwrap_or(0);
        while measured.try_recv().is_ok() {}
        let sent = Instant::now();
        first.send(&move_to(x)).map_err(|e| e.to_string())?;
        let mut others = Vec::new();
        loop {
            let (got, at) = measured.recv_timeout(Duration::from_secs(5)).map_err(|_| {
                format!("move {k} to {x} never reached VM 0's guest (frames at {others:?})")
            })?;
            others.push(got);
            if got == i32::from(x) {
                latencies.push(at - sent);
                break;
            }
        }
        let next = start + period * u32::try_from(k + 1).unwrap_or(u32::MAX);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(Distribution::new(latencies))
}

/// Every other VM's moves, `rate_hz` each, spread evenly over each period (the VMs are not in
/// step with each other), until `stop`; returns how many were written.
fn load(mut streams: Vec<RecordStream>, rate_hz: u32, stop: &AtomicBool) -> Result<u64, String> {
    if streams.is_empty() {
        return Ok(0);
    }
    let period = Duration::from_secs(1) / rate_hz;
    let step = period / u32::try_from(streams.len()).unwrap_or(u32::MAX);
    let start = Instant::now();
    let mut written = 0u64;
    let mut tick = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let x = if tick % 2 == 0 { 20_000 } else { 40_000 };
        for (i, stream) in streams.iter_mut().enumerate() {
            stream.send(&move_to(x)).map_err(|e| e.to_string())?;
            written += 1;
            let next = start + period * tick + step * u32::try_from(i + 1).unwrap_or(0);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        tick += 1;
    }
    Ok(written)
}

/// Runs the plan and returns its figures.
pub fn run(plan: &Plan, command: &str) -> Result<ManyVms, String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut backends = Vec::new();
    let mut frontends = Vec::new();
    let mut drivers = Vec::new();
    let mut files = Vec::new();
    for i in 0..plan.vms {
        let (backend, vhost) = spawn_backend(&plan.backend, dir.path(), i)
            .map_err(|e| format!("{}: {e}", plan.backend.display()))?;
        wait_until("the control socket", Duration::from_secs(20), || {
            Connection::connect(&backend.control).is_ok()
        })?;
        let (frontend, driver, file) = attach(&vhost)?;
        backends.push(backend);
        frontends.push(frontend);
        drivers.push(driver);
        files.push(file);
        if (i + 1) % 20 == 0 {
            eprintln!("many-vms: {} backends attached", i + 1);
        }
    }
    let keepers: Vec<u32> = backends.iter().map(|b| b.keeper.id()).collect();
    let workers: Vec<u32> = keepers
        .iter()
        .flat_map(|k| pvmouse_vmtest::vm::children_of(*k))
        .collect();
    if workers.len() != plan.vms {
        return Err(format!(
            "{} workers for {} keepers",
            workers.len(),
            plan.vms
        ));
    }
    let (tx, measured) = channel();
    let frames = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let driver_thread = {
        let (frames, stop) = (frames.clone(), stop.clone());
        std::thread::spawn(move || drive(drivers, tx, frames, stop))
    };
    let mut streams = backends
        .iter()
        .map(|b| {
            Connection::connect(&b.control)
                .and_then(Connection::into_stream)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Every device activated (its full-state frame taken), then left alone a moment.
    std::thread::sleep(Duration::from_secs(2));

    let all: Vec<u32> = keepers.iter().chain(&workers).copied().collect();
    let (keeper_cost, worker_cost) = (cost_of(&keepers), cost_of(&workers));
    eprintln!("many-vms: idle for {:?}", plan.idle);
    let meter = CpuMeter::start(&all);
    std::thread::sleep(plan.idle);
    let idle = meter.total();

    let others = streams.split_off(1);
    let first = &mut streams[0];
    eprintln!("many-vms: VM 0 alone, {} moves", plan.samples);
    let alone = measure(first, &measured, plan.samples, plan.rate_hz)?;
    eprintln!("many-vms: VM 0 with all {} VMs moving", plan.vms);
    let stop_load = Arc::new(AtomicBool::new(false));
    let meter = CpuMeter::start(&all);
    let frames_before = frames.load(Ordering::Relaxed);
    let load_start = Instant::now();
    let load_thread = {
        let (stop_load, rate) = (stop_load.clone(), plan.rate_hz);
        std::thread::spawn(move || load(others, rate, &stop_load))
    };
    let loaded = measure(first, &measured, plan.samples, plan.rate_hz);
    stop_load.store(true, Ordering::Relaxed);
    let other_moves = load_thread
        .join()
        .map_err(|_| "the load thread panicked".to_string())??;
    let loaded = loaded?;
    let load_seconds = load_start.elapsed().as_secs_f64();
    let moves = other_moves + plan.samples as u64;
    // The last moves' frames are on their way.
    std::thread::sleep(Duration::from_millis(500));
    let load_frames = frames.load(Ordering::Relaxed) - frames_before;
    let loaded_cpu = meter.total();

    stop.store(true, Ordering::Relaxed);
    driver_thread
        .join()
        .map_err(|_| "the driver thread panicked".to_string())??;
    drop((streams, frontends, files));
    drop(backends);

    let vms = plan.vms as f64;
    let mut environment = Environment::of_host(command);
    environment.guest_kernel = "none (in-process frontends)".into();
    environment.accel = "none".into();
    environment.wall_seconds = started.elapsed().as_secs_f64();
    Ok(ManyVms {
        environment,
        vms: plan.vms,
        pss_kib_per_vm: (keeper_cost.pss_kib + worker_cost.pss_kib) as f64 / vms,
        fds_per_vm: (keeper_cost.fds + worker_cost.fds) as f64 / vms,
        keepers: keeper_cost,
        workers: worker_cost,
        idle_seconds: idle.wall.as_secs_f64(),
        idle_cpu_s: idle.ticks_s,
        idle_run_s: idle.run_s,
        idle_percent_of_core: idle.run_percent(),
        idle_wakeups_per_s: idle.switches as f64 / idle.wall.as_secs_f64(),
        rate_hz: plan.rate_hz,
        alone: Quantiles::of(&alone),
        loaded: Quantiles::of(&loaded),
        load_moves: moves,
        load_frames,
        load_seconds,
        loaded_percent_of_core: loaded_cpu.run_percent(),
    })
}
