//! pvmouse under a real libvirtd (Debian's 11.3 from bookworm-backports, beside QEMU 10), as an
//! operator runs it: the backend package installed (its libvirt hook included), a TCG domain
//! defined with the README's XML (memfd shared memory, and the chardev and
//! `vhost-user-input-pci` in `<qemu:commandline>`), `virsh start`; input sent on the control
//! socket reaches the guest's evdev node; `virsh destroy` leaves no backend process and no
//! socket file. libvirt starts QEMU as libvirt-qemu, and the hook runs the backend as that user.
//!
//! There is no systemd as PID 1 here: the test starts virtlogd and libvirtd itself and stops
//! them at the end, and the hook runs the backend on its own (with systemd it would start the
//! socket units instead).

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pvmouse_client::Connection;
use pvmouse_vmtest::vm::{output_of as sh, processes_of};
use pvmouse_vmtest::{PVMOUSE_NAME, ProbeLink, assets, round_to_i32};
use serde_json::json;

const DOMAIN: &str = "pvmouse-libvirt-test";
const WAIT: Duration = Duration::from_secs(60);
const RUNTIME: &str = "/run/vhost-user-pvmouse";

fn virsh(args: &[&str]) -> (bool, String) {
    sh("virsh", &[&["-c", "qemu:///system"][..], args].concat())
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// virtlogd and libvirtd, started by the test and stopped (with the package purged and the
/// domain undefined) however it ends.
struct Libvirt {
    started: Vec<(&'static str, PathBuf)>,
}

impl Libvirt {
    fn start() -> Self {
        let mut started = Vec::new();
        for (daemon, pidfile) in [
            ("virtlogd", "/run/virtlogd.pid"),
            ("libvirtd", "/run/libvirtd.pid"),
        ] {
            if !processes_of(Path::new(&format!("/usr/sbin/{daemon}"))).is_empty() {
                panic!("{daemon} already runs: this test starts its own, with the hook installed");
            }
            let (ok, log) = sh(daemon, &["--daemon"]);
            assert!(ok, "{daemon}: {log}");
            started.push((daemon, PathBuf::from(pidfile)));
        }
        wait_until("libvirtd's socket", || {
            Path::new("/run/libvirt/libvirt-sock").exists() && virsh(&["version"]).0
        });
        Libvirt { started }
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", DOMAIN]);
        let _ = virsh(&["undefine", DOMAIN]);
        for (daemon, pidfile) in self.started.iter().rev() {
            if let Ok(pid) = std::fs::read_to_string(pidfile) {
                let _ = sh("kill", &["-TERM", pid.trim()]);
            }
            let exe = PathBuf::from(format!("/usr/sbin/{daemon}"));
            let start = Instant::now();
            while !processes_of(&exe).is_empty() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = sh("dpkg", &["--purge", "vhost-user-pvmouse"]);
    }
}

/// The domain: the harness's guest kernel and initramfs, booted directly under TCG, with the
/// README's pvmouse XML and the harness's console and probe channels, all in
/// `<qemu:commandline>` at fixed PCI addresses (libvirt's own root ports take the others).
fn domain_xml(dir: &Path, kernel: &Path, initramfs: &Path) -> String {
    let socket = format!("{RUNTIME}/{DOMAIN}/vhost-user.sock");
    let args = [
        "-chardev".to_owned(),
        format!("socket,id=pvmouse,path={socket}"),
        "-device".to_owned(),
        "vhost-user-input-pci,chardev=pvmouse,id=pvmouse0,bus=pcie.0,addr=0x10".to_owned(),
        "-chardev".to_owned(),
        format!("socket,id=con,path={}", dir.join("console.sock").display()),
        "-serial".to_owned(),
        "chardev:con".to_owned(),
        "-device".to_owned(),
        "virtio-serial-pci,id=vser,bus=pcie.0,addr=0x11".to_owned(),
        "-chardev".to_owned(),
        format!("socket,id=probe,path={}", dir.join("probe.sock").display()),
        "-device".to_owned(),
        "virtserialport,chardev=probe,name=pvmouse.probe".to_owned(),
    ];
    let args: String = args
        .iter()
        .map(|a| format!("    <qemu:arg value='{a}'/>\n"))
        .collect();
    format!(
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{}</kernel>
    <initrd>{}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
{args}  </qemu:commandline>
</domain>
",
        kernel.display(),
        initramfs.display()
    )
}

#[test]
fn a_libvirt_domain_gets_its_backend_from_the_hook_and_input_reaches_the_guest() {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "libvirtd's system instance and dpkg take root");
    assets::ensure_libvirt().unwrap_or_else(|e| panic!("{e}"));
    let packages = assets::debian_packages().unwrap_or_else(|e| panic!("{e}"));
    let kernel = assets::guest_kernel().unwrap().vmlinuz;
    let initramfs = assets::build_initramfs().unwrap();
    let (ok, log) = sh("dpkg", &["-i", packages.backend.to_str().unwrap()]);
    assert!(ok, "{log}");
    let libvirt = Libvirt::start();

    // Files libvirt's QEMU (libvirt-qemu) reads or connects to; libvirt relabels the kernel
    // and initramfs it is given, so it gets copies.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (vmlinuz, initrd) = (dir.path().join("vmlinuz"), dir.path().join("initramfs"));
    std::fs::copy(&kernel, &vmlinuz).unwrap();
    std::fs::copy(&initramfs, &initrd).unwrap();
    let listen = |name: &str| {
        let path = dir.path().join(name);
        let l = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        l.set_nonblocking(true).unwrap();
        l
    };
    let (console, probe) = (listen("console.sock"), listen("probe.sock"));
    let xml = dir.path().join("domain.xml");
    std::fs::write(&xml, domain_xml(dir.path(), &vmlinuz, &initrd)).unwrap();

    let (ok, log) = virsh(&["define", xml.to_str().unwrap()]);
    assert!(ok, "virsh define: {log}");
    let start = Instant::now();
    let (ok, log) = virsh(&["start", DOMAIN]);
    let started = start.elapsed();
    assert!(ok, "virsh start: {log}");
    let accept = |l: &UnixListener| {
        let start = Instant::now();
        loop {
            if let Ok((s, _)) = l.accept() {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            assert!(start.elapsed() < WAIT, "QEMU never connected");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let _console = accept(&console);
    let probe = ProbeLink::new(accept(&probe)).unwrap();
    probe
        .wait_for(0, Duration::from_secs(120), |l| l.starts_with("HELLO"))
        .unwrap_or_else(|e| panic!("the guest never said hello: {e}"));
    println!("virsh start took {started:?}; the guest is up");

    // The backend the hook started: keeper and worker, as libvirt's QEMU user.
    let backend = PathBuf::from("/usr/libexec/vhost-user-pvmouse");
    let pids = processes_of(&backend);
    assert_eq!(pids.len(), 2, "keeper and worker: {pids:?}");
    let uid_of = |pid: u32| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .to_owned()
    };
    let (_, qemu_uid) = sh("id", &["-u", "libvirt-qemu"]);
    for pid in &pids {
        assert_eq!(
            uid_of(*pid),
            qemu_uid.trim(),
            "the backend runs as libvirt-qemu"
        );
    }

    let control = PathBuf::from(format!("{RUNTIME}/{DOMAIN}/control.sock"));
    probe.watch(PVMOUSE_NAME, WAIT).unwrap();
    wait_until("the guest's driver", || {
        Connection::connect(&control)
            .and_then(|mut c| c.execute("query-pvmouse", json!({})))
            .is_ok_and(|s| s["driver-active"] == true)
    });
    let mut client = Connection::connect(&control).unwrap();
    client
        .execute("pvmouse-send", json!({"x": 0.75, "y": 0.25}))
        .unwrap();
    let (x, y) = (round_to_i32(0.75 * 65535.0), round_to_i32(0.25 * 65535.0));
    probe
        .query_until("state", PVMOUSE_NAME, "the move", WAIT, |st| {
            st["abs"]["0"] == x && st["abs"]["1"] == y
        })
        .unwrap_or_else(|e| panic!("{e}"));
    println!("input on the control socket reached the guest's evdev node: x {x}, y {y}");
    drop(client);

    let start = Instant::now();
    let (ok, log) = virsh(&["destroy", DOMAIN]);
    let destroyed = start.elapsed();
    assert!(ok, "virsh destroy: {log}");
    wait_until("the backend gone", || processes_of(&backend).is_empty());
    let gone = start.elapsed();
    let left = Path::new(RUNTIME).join(DOMAIN);
    assert!(!left.exists(), "{} left behind", left.display());
    println!(
        "virsh destroy took {destroyed:?}; the backend and {} were gone after {gone:?}",
        left.display()
    );
    drop(libvirt);
    assert!(
        !Path::new("/etc/libvirt/hooks/qemu.d/vhost-user-pvmouse").exists(),
        "the purge removes the hook"
    );
}
