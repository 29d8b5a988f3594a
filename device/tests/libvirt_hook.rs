//! The libvirt hook (`packaging/libvirt/vhost-user-pvmouse`) as libvirt runs it: as root, with a
//! domain's name and an operation as arguments and its XML on standard input. A domain whose XML
//! names its pvmouse socket gets a backend before QEMU starts, run as the user libvirt runs QEMU
//! as, and loses it once QEMU is gone; any other domain, and any name that could escape the
//! runtime directory, is left alone. There is no systemd as PID 1 here, so this is the hook's
//! own way of running the backend; with systemd it starts the socket units (see
//! tests/tests/packages.rs for those).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_vhost-user-pvmouse");
const HOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/libvirt/vhost-user-pvmouse"
);

struct Setup {
    _dir: tempfile::TempDir,
    libexec: PathBuf,
    runtime: PathBuf,
    config: PathBuf,
}

fn setup() -> Setup {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "libvirt runs its hooks as root, and so must this test"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let libexec = dir.path().join("libexec");
    std::fs::create_dir(&libexec).unwrap();
    // A copy, not a link: the hook knows its backend by /proc/PID/exe.
    std::fs::copy(BINARY, libexec.join("vhost-user-pvmouse")).unwrap();
    std::fs::set_permissions(&libexec, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("etc");
    std::fs::create_dir(&config).unwrap();
    Setup {
        runtime: dir.path().join("run"),
        libexec,
        config,
        _dir: dir,
    }
}

impl Drop for Setup {
    /// A failed test leaves no backend running.
    fn drop(&mut self) {
        for pid in self.backends() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Setup {
    /// Runs the hook as libvirt does; its exit status and standard error.
    fn hook(&self, domain: &str, operation: &str, xml: &str) -> (bool, String) {
        self.hook_with(domain, operation, xml, &[])
    }

    /// [`hook`](Self::hook) with more of the environment set.
    fn hook_with(
        &self,
        domain: &str,
        operation: &str,
        xml: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> (bool, String) {
        let mut child = Command::new(HOOK)
            .args([domain, operation, "begin", "-"])
            .envs(env.iter().copied())
            .env("PVMOUSE_LIBEXEC", &self.libexec)
            .env("PVMOUSE_RUNTIME", &self.runtime)
            .env("PVMOUSE_CONFIG", &self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(xml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.stdout.is_empty(), "a hook writes nothing libvirt reads");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn socket(&self, domain: &str) -> PathBuf {
        self.runtime.join(domain).join("vhost-user.sock")
    }

    /// The domain XML that attaches pvmouse, as README shows it.
    fn xml(&self, domain: &str) -> String {
        format!(
            "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\
             <name>{domain}</name><qemu:commandline>\
             <qemu:arg value='-chardev'/>\
             <qemu:arg value='socket,id=pvmouse,path={}'/>\
             </qemu:commandline></domain>",
            self.socket(domain).display()
        )
    }

    /// Backend processes started from this test's libexec.
    fn backends(&self) -> Vec<u32> {
        let exe = self.libexec.join("vhost-user-pvmouse");
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe))
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect()
    }
}

fn owner(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .to_owned()
}

fn wait_gone(setup: &Setup, what: &Path) {
    let start = Instant::now();
    while what.exists() || !setup.backends().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_pvmouse_domain_gets_its_backend_before_qemu_and_loses_it_after() {
    let s = setup();
    std::fs::write(
        s.config.join("vm-1.env"),
        "# two heads\nPVMOUSE_OPTIONS=\"--displays 2\"\n",
    )
    .unwrap();
    let (ok, log) = s.hook("vm-1", "prepare", &s.xml("vm-1"));
    assert!(ok, "{log}");
    // The socket is there when the hook returns: libvirt starts QEMU next.
    assert!(s.socket("vm-1").exists(), "{log}");
    let backends = s.backends();
    assert_eq!(backends.len(), 2, "keeper and worker: {backends:?}");
    let user = if Command::new("id")
        .arg("libvirt-qemu")
        .status()
        .unwrap()
        .success()
    {
        "libvirt-qemu"
    } else {
        "nobody"
    };
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", user])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for pid in &backends {
        assert_eq!(owner(*pid), uid.trim(), "run as {user}, not root");
    }
    let status = pvmouse_client::Connection::connect(&s.runtime.join("vm-1/control.sock"))
        .unwrap()
        .status()
        .unwrap();
    assert_eq!(status.displays, 2, "the domain's options");
    println!("prepare: backend up as {user}, 2 displays");

    // libvirt restarted (reconnect) or the domain started: nothing changes.
    for operation in ["start", "started", "reconnect"] {
        assert!(s.hook("vm-1", operation, &s.xml("vm-1")).0);
    }
    assert_eq!(s.backends(), backends);
    // Stopped, then released: the backend goes, and nothing is left.
    assert!(s.hook("vm-1", "stopped", &s.xml("vm-1")).0);
    assert!(s.hook("vm-1", "release", &s.xml("vm-1")).0);
    wait_gone(&s, &s.runtime.join("vm-1"));
    println!(
        "release: backend gone, {} removed",
        s.runtime.join("vm-1").display()
    );
}

/// A domain that attaches the relative device too (a second chardev on `relative.sock`) gets
/// a backend that serves it; one that does not, none.
#[test]
fn a_domain_with_the_relative_device_gets_it_served() {
    let s = setup();
    let relative = s.runtime.join("vm-2").join("relative.sock");
    let xml = s.xml("vm-2").replace(
        "</qemu:commandline>",
        &format!(
            "<qemu:arg value='-chardev'/><qemu:arg value='socket,id=pvmrel,path={}'/>\
             </qemu:commandline>",
            relative.display()
        ),
    );
    let (ok, log) = s.hook("vm-2", "prepare", &xml);
    assert!(ok, "{log}");
    assert!(
        relative.exists(),
        "the relative socket is there for QEMU: {log}"
    );
    let mut control =
        pvmouse_client::Connection::connect(&s.runtime.join("vm-2/control.sock")).unwrap();
    assert!(control.status().unwrap().relative.is_some(), "served");
    control
        .execute("pvmouse-send", serde_json::json!({"dx": 5}))
        .unwrap();
    assert_eq!(
        control.status().unwrap().mode,
        pvmouse_spec::profile::PointerMode::Relative
    );
    assert!(s.hook("vm-2", "release", &xml).0);
    wait_gone(&s, &s.runtime.join("vm-2"));

    let (ok, log) = s.hook("vm-3", "prepare", &s.xml("vm-3"));
    assert!(ok, "{log}");
    let status = pvmouse_client::Connection::connect(&s.runtime.join("vm-3/control.sock"))
        .unwrap()
        .status()
        .unwrap();
    assert!(status.relative.is_none(), "a domain without it: none");
    assert!(s.hook("vm-3", "release", &s.xml("vm-3")).0);
    wait_gone(&s, &s.runtime.join("vm-3"));
}

/// With systemd, the hook starts the domain's socket units, the relative device's among them
/// when the XML attaches it, and stops them all with the service; a backend a control client
/// already woke is restarted to take the relative socket. `systemctl` here is a script that logs
/// its arguments and answers `is-active` from a list: there is no systemd as PID 1 to start
/// units (the units themselves are verified in tests/tests/packages.rs, and the socket named
/// `relative` handed over in tests/tests/socket_activated.rs).
#[test]
fn under_systemd_the_relative_socket_unit_starts_with_the_others() {
    let s = setup();
    let bin = s.libexec.join("fake-bin");
    std::fs::create_dir(&bin).unwrap();
    let (log, active) = (
        s.libexec.join("systemctl.log"),
        s.libexec.join("active-units"),
    );
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        format!(
            "#!/bin/sh\n\
             echo \"$*\" >>'{log}'\n\
             set -- $(echo \" $* \" | sed 's/ --quiet / /')\n\
             if [ \"$1\" = is-active ]; then\n\
               shift\n\
               for unit; do grep -qx \"$unit\" '{active}' 2>/dev/null || exit 3; done\n\
             fi\n\
             exit 0\n",
            log = log.display(),
            active = active.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let systemd = s.libexec.join("systemd-system");
    std::fs::create_dir(&systemd).unwrap();
    let path = std::ffi::OsString::from(format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap()
    ));
    let env = [
        ("PATH", path.as_os_str()),
        ("PVMOUSE_SYSTEMD", systemd.as_os_str()),
    ];
    let relative = s.runtime.join("vm-5").join("relative.sock");
    let with_relative = s.xml("vm-5").replace(
        "</qemu:commandline>",
        &format!(
            "<qemu:arg value='socket,id=pvmrel,path={}'/></qemu:commandline>",
            relative.display()
        ),
    );
    let both = "vhost-user-pvmouse@vm-5.socket vhost-user-pvmouse-control@vm-5.socket";
    let rel = "vhost-user-pvmouse-relative@vm-5.socket";
    let service = "vhost-user-pvmouse@vm-5.service";
    // What the hook told systemctl to do, is-active queries left out.
    let done = |xml: &str, active_units: &[&str]| -> Vec<String> {
        let _ = std::fs::remove_file(&log);
        std::fs::write(&active, active_units.join("\n")).unwrap();
        let (ok, out) = s.hook_with("vm-5", "prepare", xml, &env);
        assert!(ok, "{out}");
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("is-active"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(done(&with_relative, &[]), [format!("start {both} {rel}")]);
    assert_eq!(done(&s.xml("vm-5"), &[]), [format!("start {both}")]);
    // The backend runs already (a control client connected first): restarted, once the
    // relative socket listens. Not when that socket was already there, or not wanted.
    assert_eq!(
        done(&with_relative, &[service]),
        [format!("start {both} {rel}"), format!("restart {service}")]
    );
    assert_eq!(
        done(&with_relative, &[service, rel]),
        [format!("start {both} {rel}")]
    );
    assert_eq!(done(&s.xml("vm-5"), &[service]), [format!("start {both}")]);
    // Another domain's relative socket in the XML is not this domain's.
    let other = s.xml("vm-5").replace(
        "</qemu:commandline>",
        &format!(
            "<qemu:arg value='socket,id=pvmrel,path={}'/></qemu:commandline>",
            s.runtime.join("vm-6/relative.sock").display()
        ),
    );
    assert_eq!(done(&other, &[]), [format!("start {both}")]);
    let _ = std::fs::remove_file(&log);
    std::fs::write(&active, format!("{service}\n{both}").replace(' ', "\n")).unwrap();
    assert!(s.hook_with("vm-5", "release", &with_relative, &env).0);
    let stopped = std::fs::read_to_string(&log).unwrap();
    assert!(
        stopped.contains(&format!("stop {service} {both} {rel}")),
        "{stopped}"
    );
    assert!(
        s.backends().is_empty(),
        "systemd's to start, not the hook's"
    );
}

#[test]
fn a_backend_that_cannot_start_fails_the_hook_and_leaves_nothing() {
    let s = setup();
    // An option the backend refuses: it exits at once.
    std::fs::write(s.config.join("vm-2.env"), "PVMOUSE_OPTIONS=--displays 99\n").unwrap();
    let (ok, log) = s.hook("vm-2", "prepare", &s.xml("vm-2"));
    println!("a backend that cannot start: {}", log.trim());
    assert!(!ok, "libvirt must not start QEMU without its backend");
    assert!(log.contains("displays must be 1 to 16"), "{log}");
    assert!(s.backends().is_empty());
    assert!(!s.runtime.join("vm-2").exists());
}

#[test]
fn other_domains_and_names_that_could_escape_are_left_alone() {
    let s = setup();
    // A domain that does not use pvmouse.
    let (ok, log) = s.hook("plain", "prepare", "<domain><name>plain</name></domain>");
    assert!(ok, "{log}");
    assert!(!s.runtime.join("plain").exists());
    // Names that are not a plain file name, whatever their XML says.
    for name in [
        "../../etc",
        ".hidden",
        "a b",
        "a/b",
        "x$(touch /tmp/pvmouse-pwned)",
        &"v".repeat(65),
    ] {
        let xml = s.xml(name);
        let (ok, log) = s.hook(name, "prepare", &xml);
        assert!(ok, "{name}: {log}");
        assert!(s.backends().is_empty(), "{name}: a backend started");
    }
    assert!(!Path::new("/tmp/pvmouse-pwned").exists());
    let left: Vec<_> = std::fs::read_dir(&s.runtime)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // A release for a domain never prepared removes nothing else.
    assert!(s.hook("plain", "release", "").0);
}
