//! A test VM: `vhost-user-pvmouse` and QEMU started together, with the guest console, the
//! probe's virtio-serial channel and both QMP sockets on host sockets. Dropping it kills both
//! processes, on success, failure and panic alike.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::assets::{self, AssetError};
use crate::probe::ProbeLink;
use crate::qmp::Qmp;

/// The name the guest sees for pvmouse in test VMs.
pub const PVMOUSE_NAME: &str = "pvmouse";

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Assets(#[from] AssetError),
    #[error("VM boot failed while {step}: {detail}\n--- guest console (last lines) ---\n{console}")]
    Boot {
        step: String,
        detail: String,
        console: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Attach pvmouse (backend and `vhost-user-input-pci`); off for VMs that compare other
    /// devices.
    pub pvmouse: bool,
    pub displays: u32,
    /// Extra QEMU arguments, e.g. a virtio-tablet-pci to run beside pvmouse.
    pub extra_qemu_args: Vec<String>,
    /// Extra guest kernel command-line arguments.
    pub kernel_args: Vec<String>,
    /// Put pvmouse on this bus (e.g. the hot-pluggable root port `rp1`) instead of the root.
    pub pvmouse_bus: Option<String>,
    /// Boot the desktop image (`scripts/build-desktop-image`: Xorg, Weston, sway, mutter) as the
    /// root filesystem, with a two-output virtio-gpu, two vCPUs and 1.5 GiB, instead of the
    /// busybox guest. The probe runs there too; display servers are started through it.
    pub desktop: bool,
    pub boot_timeout: Duration,
    /// Run the backend `--restartable` (a keeper and a worker it replaces: the default), with its
    /// test hooks on (`PVMOUSE_TEST_HOOKS=1`); else `--single-process`.
    pub restartable: bool,
    /// Run this backend binary instead of the one the harness builds (the upgrade test puts a
    /// copy where it can replace it).
    pub backend_bin: Option<PathBuf>,
    /// Start the backend as systemd's socket units would: Debian's `systemd-socket-activate`
    /// binds both sockets and hands them over (named `vhost-user` and `control`) when QEMU
    /// first connects, and the backend tells `NOTIFY_SOCKET` (the VM's own, see
    /// [`Vm::service_notices`]) when it is ready.
    pub socket_activated: bool,
    /// Serve the relative device too (`--relative-socket`), attached as a second
    /// `vhost-user-input-pci` (`pvmouse1`).
    pub relative: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        let secs = std::env::var("PVMOUSE_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        Self {
            pvmouse: true,
            displays: 2,
            extra_qemu_args: Vec::new(),
            kernel_args: Vec::new(),
            pvmouse_bus: None,
            desktop: false,
            boot_timeout: Duration::from_secs(secs),
            restartable: false,
            backend_bin: None,
            socket_activated: false,
            relative: false,
        }
    }
}

/// The accelerator: TCG unless `PVMOUSE_ACCEL=kvm` (KVM hangs on nested hosts like CI's).
fn accel_args() -> Vec<String> {
    match std::env::var("PVMOUSE_ACCEL").as_deref() {
        Ok("kvm") => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
        _ => vec!["-accel".into(), "tcg".into()],
    }
}

/// Children die with the test process even if it is killed outright.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which is
    // async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[derive(Debug)]
pub struct Vm {
    dir: tempfile::TempDir,
    /// The service manager's notification socket, for a socket-activated backend.
    notify: Option<std::os::unix::net::UnixDatagram>,
    qemu: Child,
    backend: Option<Child>,
    backend_bin: PathBuf,
    console: Arc<Mutex<String>>,
    guest: GuestLinks,
    launch: QemuLaunch,
    pub probe: ProbeLink,
}

/// Where each QEMU of a VM connects its console and the probe's port.
#[derive(Debug)]
struct GuestLinks {
    console: UnixListener,
    probe: UnixListener,
}

/// What it takes to start this VM's QEMU, again if need be.
#[derive(Debug)]
struct QemuLaunch {
    config: VmConfig,
    vmlinuz: PathBuf,
    initramfs: PathBuf,
    /// The desktop root filesystem image, when the config asks for it.
    desktop: Option<PathBuf>,
}

impl Vm {
    pub fn vhost_socket(&self) -> PathBuf {
        self.dir.path().join("vhost.sock")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    pub fn qemu_qmp_socket(&self) -> PathBuf {
        self.dir.path().join("qemu-qmp.sock")
    }

    pub fn boot(config: VmConfig) -> Result<Vm, VmError> {
        let console = Arc::new(Mutex::new(String::new()));
        let boot_err = |step: &str, detail: String| VmError::Boot {
            step: step.to_owned(),
            detail,
            console: String::new(),
        };
        assets::ensure_host_packages()?;
        let mut step = "building binaries";
        let bins = assets::build_binaries().map_err(|e| boot_err(step, e.to_string()))?;
        step = "preparing the guest kernel and initramfs";
        let kernel = assets::guest_kernel().map_err(|e| boot_err(step, e.to_string()))?;
        let initramfs = assets::build_initramfs().map_err(|e| boot_err(step, e.to_string()))?;
        let desktop = if config.desktop {
            step = "building the desktop image";
            Some(assets::desktop_image().map_err(|e| boot_err(step, e.to_string()))?)
        } else {
            None
        };

        let dir = tempfile::Builder::new().prefix("pvmouse-vm-").tempdir()?;
        let guest = GuestLinks {
            console: UnixListener::bind(dir.path().join("console.sock"))?,
            probe: UnixListener::bind(dir.path().join("probe.sock"))?,
        };

        step = "starting vhost-user-pvmouse";
        let notify = if config.socket_activated {
            let path = dir.path().join("notify");
            let socket = std::os::unix::net::UnixDatagram::bind(&path)?;
            // The backend may run as another user; the service manager takes its word.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
            Some(socket)
        } else {
            None
        };
        let mut backend = if config.pvmouse {
            let bin = config
                .backend_bin
                .clone()
                .unwrap_or_else(|| bins.backend.clone());
            let backend = start_backend(&bin, dir.path(), &config)?;
            wait_path(&dir.path().join("vhost.sock"), Duration::from_secs(10))
                .map_err(|e| boot_err(step, e))?;
            Some(backend)
        } else {
            None
        };
        let launch = QemuLaunch {
            config,
            vmlinuz: kernel.vmlinuz.clone(),
            initramfs,
            desktop,
        };
        let (qemu, probe) = match launch.start(dir.path(), &guest, &console) {
            Ok(started) => started,
            Err(e) => {
                if let Some(b) = backend.as_mut() {
                    let _ = b.kill();
                    let _ = b.wait();
                }
                return Err(e);
            }
        };
        Ok(Vm {
            dir,
            notify,
            qemu,
            backend,
            backend_bin: launch
                .config
                .backend_bin
                .clone()
                .unwrap_or_else(|| bins.backend.clone()),
            console,
            guest,
            launch,
            probe,
        })
    }

    /// Kills QEMU outright (SIGKILL), leaving the backend running.
    pub fn kill_qemu(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }

    /// Starts a fresh QEMU, with the same devices, against the same backend, and waits for its
    /// guest's probe.
    pub fn relaunch_qemu(&mut self) -> Result<(), VmError> {
        self.kill_qemu();
        let (qemu, probe) = self
            .launch
            .start(self.dir.path(), &self.guest, &self.console)?;
        self.qemu = qemu;
        self.probe = probe;
        Ok(())
    }

    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console, lines)
    }

    /// A QMP session on pvmouse's control socket.
    pub fn control(&self) -> std::io::Result<Qmp> {
        Qmp::connect(&self.control_socket(), Duration::from_secs(10))
    }

    /// A QMP session on QEMU's own monitor.
    pub fn qemu_qmp(&self) -> std::io::Result<Qmp> {
        Qmp::connect(&self.qemu_qmp_socket(), Duration::from_secs(10))
    }

    pub fn qemu_pid(&self) -> u32 {
        self.qemu.id()
    }

    pub fn backend_pid(&self) -> Option<u32> {
        self.backend.as_ref().map(Child::id)
    }

    /// With `--restartable`: the worker the keeper (the backend process) runs now.
    pub fn worker_pid(&self) -> Option<u32> {
        children_of(self.backend_pid()?).into_iter().next()
    }

    /// With `--restartable`: waits for the keeper's next worker, one that is not `old`; returns
    /// it and how long it took to appear (checked every 5 ms, for that figure).
    pub fn next_worker(
        &self,
        old: Option<u32>,
        limit: Duration,
    ) -> Result<(u32, Duration), String> {
        let start = Instant::now();
        crate::wait::until_every(
            "the keeper's next worker",
            limit,
            Duration::from_millis(5),
            || {
                let now = self.worker_pid();
                now.filter(|pid| Some(*pid) != old).ok_or(now)
            },
        )
        .map(|pid| (pid, start.elapsed()))
    }

    /// What a socket-activated backend told the service manager so far (`READY=1`,
    /// `STOPPING=1`, …), waiting up to `within` for the first datagram.
    pub fn service_notices(&self, within: Duration) -> Vec<String> {
        let Some(notify) = &self.notify else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let _ = notify.set_read_timeout(Some(within.max(Duration::from_millis(1))));
        while let Ok(n) = notify.recv(&mut buf) {
            out.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
            let _ = notify.set_read_timeout(Some(Duration::from_millis(1)));
        }
        out
    }

    /// Every process of the backend: the backend itself, or a keeper and its worker.
    pub fn backend_pids(&self) -> Vec<u32> {
        let Some(main) = self.backend_pid() else {
            return Vec::new();
        };
        let mut pids = vec![main];
        if self.launch.config.restartable {
            pids.extend(children_of(main));
        }
        pids
    }

    /// Resident memory of the backend, in KiB, from /proc.
    pub fn backend_rss_kib(&self) -> Option<u64> {
        memory_kib(self.backend_pid()?).map(|(rss, _)| rss)
    }

    pub fn kill_backend(&mut self) {
        if let Some(mut b) = self.backend.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
    }

    pub fn restart_backend(&mut self) -> std::io::Result<()> {
        self.kill_backend();
        self.backend = Some(start_backend(
            &self.backend_bin,
            self.dir.path(),
            &self.launch.config,
        )?);
        Ok(())
    }

    /// Whether QEMU is still running.
    pub fn qemu_alive(&mut self) -> bool {
        matches!(self.qemu.try_wait(), Ok(None))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        self.kill_backend();
    }
}

impl QemuLaunch {
    /// Starts QEMU, takes its console and probe connections, and waits for the probe's hello,
    /// naming the boot step that failed otherwise. QEMU is killed on every failure.
    fn start(
        &self,
        dir: &Path,
        guest: &GuestLinks,
        console: &Arc<Mutex<String>>,
    ) -> Result<(Child, ProbeLink), VmError> {
        let boot_err = |step: &str, detail: String| VmError::Boot {
            step: step.to_owned(),
            detail,
            console: tail(console, 25),
        };
        let step = "starting QEMU";
        // The desktop runs display servers: more memory and a second vCPU.
        let (memory, cpus) = if self.desktop.is_some() {
            ("1536", "2")
        } else {
            ("256", "1")
        };
        let mut kernel_args = self.config.kernel_args.clone();
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(accel_args())
            .args([
                "-m",
                memory,
                "-smp",
                cpus,
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
            ])
            .arg("-object")
            .arg(format!(
                "memory-backend-memfd,id=mem,size={memory}M,share=on"
            ))
            .args(["-machine", "q35,memory-backend=mem"])
            .arg("-kernel")
            .arg(&self.vmlinuz)
            .arg("-initrd")
            .arg(&self.initramfs)
            .arg("-append")
            .arg(format!("console=ttyS0 quiet panic=-1 {}", {
                if self.desktop.is_some() {
                    // With -display none QEMU reports the second output disconnected.
                    kernel_args
                        .extend(["video=Virtual-2:e".into(), "pvmouse.root=/dev/vda".into()]);
                }
                kernel_args.join(" ")
            }))
            .arg("-chardev")
            .arg(format!(
                "socket,id=con,path={}",
                dir.join("console.sock").display()
            ))
            .args(["-serial", "chardev:con"])
            .args(["-device", "virtio-serial-pci,id=vser"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=probe,path={}",
                dir.join("probe.sock").display()
            ))
            .args(["-device", "virtserialport,chardev=probe,name=pvmouse.probe"])
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                dir.join("qemu-qmp.sock").display()
            ))
            .args(["-device", "pcie-root-port,id=rp1,chassis=1"]);
        if self.config.pvmouse {
            qemu.arg("-chardev")
                .arg(format!(
                    "socket,id=pvm,path={}",
                    dir.join("vhost.sock").display()
                ))
                .arg("-device")
                .arg(match &self.config.pvmouse_bus {
                    Some(bus) => {
                        format!("vhost-user-input-pci,chardev=pvm,id=pvmouse0,bus={bus}")
                    }
                    None => "vhost-user-input-pci,chardev=pvm,id=pvmouse0".to_owned(),
                });
            if self.config.relative {
                qemu.arg("-chardev")
                    .arg(format!(
                        "socket,id=pvmrel,path={}",
                        dir.join("relative.sock").display()
                    ))
                    .args(["-device", "vhost-user-input-pci,chardev=pvmrel,id=pvmouse1"]);
            }
        }
        if let Some(image) = &self.desktop {
            // snapshot=on: every boot starts from the pristine image.
            qemu.arg("-drive")
                .arg(format!(
                    "file={},if=virtio,format=raw,snapshot=on",
                    image.display()
                ))
                .arg("-device")
                .arg(format!(
                    "virtio-gpu-pci,max_outputs=2,id={}",
                    crate::desktop::GPU_ID
                ));
        }
        qemu.args(&self.config.extra_qemu_args)
            .arg("-no-reboot")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut qemu);
        let mut qemu = qemu.spawn().map_err(|e| boot_err(step, format!("{e}")))?;

        let stderr = qemu.stderr.take();
        let fail = |qemu: &mut Child, stderr: Option<ChildStderr>, step: &str, detail: String| {
            let _ = qemu.kill();
            let mut text = String::new();
            if let Some(mut s) = stderr {
                let _ = s.read_to_string(&mut text);
            }
            let _ = qemu.wait();
            boot_err(step, format!("{detail}\n{text}"))
        };
        let connected = accept(&guest.console, &mut qemu)
            .and_then(|c| Ok((c, accept(&guest.probe, &mut qemu)?)));
        let (console_stream, probe_stream) = match connected {
            Ok(pair) => pair,
            Err(e) => return Err(fail(&mut qemu, stderr, step, e)),
        };
        // QEMU's stderr is kept in the console log too, so failures show both.
        if let Some(mut stderr) = stderr {
            let sink = console.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = format!("[qemu] {}", String::from_utf8_lossy(&buf[..n]));
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&text);
                }
            });
        }
        let sink = console.clone();
        let mut console_reader = console_stream;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = console_reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let probe = match ProbeLink::new(probe_stream) {
            Ok(p) => p,
            Err(e) => return Err(fail(&mut qemu, None, step, e.to_string())),
        };

        // Wait for the probe's hello, naming the last boot step the guest reported.
        let deadline = Instant::now() + self.config.boot_timeout;
        loop {
            if probe
                .wait_for(0, Duration::from_millis(200), |l| l.starts_with("HELLO"))
                .is_ok()
            {
                return Ok((qemu, probe));
            }
            if let Ok(Some(status)) = qemu.try_wait() {
                return Err(boot_err(
                    &boot_step(console),
                    format!("QEMU exited: {status}"),
                ));
            }
            if Instant::now() >= deadline {
                let detail = format!("no probe hello within {:?}", self.config.boot_timeout);
                return Err(fail(&mut qemu, None, &boot_step(console), detail));
            }
        }
    }
}

/// Accepts QEMU's connection on `listener`, giving up if QEMU exits or 30 s pass.
fn accept(listener: &UnixListener, qemu: &mut Child) -> Result<UnixStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(_) if Instant::now() < deadline => {
                if let Ok(Some(status)) = qemu.try_wait() {
                    return Err(format!("QEMU exited: {status}"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("QEMU never connected: {e}")),
        }
    }
}

/// The last step the guest reported on its console, or what the kernel was doing.
fn boot_step(console: &Arc<Mutex<String>>) -> String {
    let log = console.lock().unwrap_or_else(|e| e.into_inner());
    match log.rfind("pvmouse-boot: ") {
        Some(i) => {
            let rest = &log[i + 14..];
            format!("guest: {}", rest.lines().next().unwrap_or("").trim())
        }
        // The kernel boots with `quiet`: silence before init's first step is the kernel.
        None if log.contains("[qemu]") => "starting QEMU".into(),
        None => "booting the guest kernel (no console output before init)".into(),
    }
}

/// (VmRSS, VmHWM) of a process, in KiB, from /proc/PID/status.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Proportional set size, in KiB, from /proc/PID/smaps_rollup: each shared page counted once
/// among the processes that map it.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The user a restartable backend runs as when the tests run as root: `nobody`.
const UNPRIVILEGED: u32 = 65_534;

fn start_backend(bin: &Path, dir: &Path, config: &VmConfig) -> std::io::Result<Child> {
    let log = std::fs::File::create(dir.join("backend.log"))?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let (vhost, control) = (dir.join("vhost.sock"), dir.join("control.sock"));
    let mut program: Vec<std::ffi::OsString> = Vec::new();
    if config.socket_activated {
        // As a .socket unit would: bound now, handed over named on QEMU's first connection.
        program.extend(["systemd-socket-activate".into(), "--listen".into()]);
        program.push(vhost.clone().into());
        program.push("--listen".into());
        program.push(control.clone().into());
        if config.relative {
            // The package's optional third socket unit.
            program.push("--listen".into());
            program.push(dir.join("relative.sock").into());
            program.push("--fdname=vhost-user:control:relative".into());
        } else {
            program.push("--fdname=vhost-user:control".into());
        }
        let mut env = std::ffi::OsString::from("--setenv=NOTIFY_SOCKET=");
        env.push(dir.join("notify"));
        program.push(env);
    }
    program.push(bin.into());
    let mut cmd = if config.restartable && root {
        // As an ordinary user, as libvirt's `qemu` user runs it: root would hide permission
        // bugs (a keeper that only root could run went unnoticed until it was run so). The
        // parent-death signal is set again after the change of user, which clears it.
        std::os::unix::fs::chown(dir, Some(UNPRIVILEGED), Some(UNPRIVILEGED))?;
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--pdeathsig=KILL",
        ])
        .args(&program);
        c
    } else {
        let mut c = Command::new(&program[0]);
        c.args(&program[1..]);
        c
    };
    if config.restartable {
        cmd.arg("--restartable").env("PVMOUSE_TEST_HOOKS", "1");
    } else {
        // Restartable is the default; the other tests run the device in one process.
        cmd.arg("--single-process");
    }
    if !config.socket_activated {
        cmd.arg("--socket-path")
            .arg(&vhost)
            .arg("--control-socket")
            .arg(&control);
    }
    if config.relative && !config.socket_activated {
        cmd.arg("--relative-socket").arg(dir.join("relative.sock"));
    }
    cmd.arg("--displays")
        .arg(config.displays.to_string())
        .args(["--name", PVMOUSE_NAME])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    die_with_parent(&mut cmd);
    cmd.spawn()
}

/// A host command's success and its output, stdout then stderr; panics if it cannot run.
pub fn output_of(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The processes whose executable is `exe`, from /proc.
pub fn processes_of(exe: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe))
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Waits until `pid` has exited (gone, or a zombie its parent has not reaped); how long that
/// took, or an error after `limit`.
pub fn wait_exited(pid: u32, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        if start.elapsed() > limit {
            return Err(format!("process {pid} still runs after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(start.elapsed())
}

/// The processes whose parent is `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …; comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// How many descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn wait_path(path: &Path, timeout: Duration) -> Result<(), String> {
    crate::wait::until_every(
        &format!("{} to appear", path.display()),
        timeout,
        Duration::from_millis(10),
        || if path.exists() { Ok(()) } else { Err("absent") },
    )
}

fn tail(log: &Arc<Mutex<String>>, lines: usize) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_memory() {
        let (rss, peak) = super::memory_kib(std::process::id()).expect("own /proc/PID/status");
        assert!(rss > 0 && peak >= rss);
    }
}
