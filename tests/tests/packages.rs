//! pvmouse's Debian packages as a user gets them (`make deb`): lintian finds no error in any,
//! and they install, their systemd units verify, and they purge leaving nothing behind, on this
//! machine, as root, with Debian's own dpkg, systemd-analyze and lintian.
//!
//! There is no systemd as PID 1 here, so the units are checked with `systemd-analyze verify`
//! and `security --offline`, and run for real in the socket-activation and libvirt tests.
//! This host has no udev, which the guest package depends on: it is installed here with
//! `--force-depends`, for its files and units; the guest image installs it for real.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};
use std::process::Command;

use pvmouse_vmtest::assets::{Packages, debian_packages};
use pvmouse_vmtest::vm::output_of as run;

/// Lintian warnings kept on purpose, each with its reason (README.md, "Install", says them too).
const ACCEPTED_WARNINGS: [(&str, &str); 2] = [
    (
        "initial-upload-closes-no-bugs",
        "these packages are not uploaded to Debian: no ITP bug to close",
    ),
    (
        "maintainer-script-calls-systemctl",
        "the backend's removal stops every VM's instance; deb-systemd-invoke takes unit names, \
         not the instance pattern vhost-user-pvmouse@*",
    ),
];

fn packages() -> Packages {
    debian_packages().unwrap_or_else(|e| panic!("{e}"))
}

/// `systemd-analyze security --offline`'s overall exposure of a unit file, and its report.
fn exposure_of(unit: &str) -> (f64, String) {
    let (ok, report) = run("systemd-analyze", &["security", "--offline=yes", unit]);
    assert!(ok, "{report}");
    let exposure = report
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("Overall exposure level for ")?;
            rest.split_once(": ")?.1.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no overall exposure in {report}"));
    (exposure, report)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn lintian_finds_no_error_in_any_package() {
    let p = packages();
    for deb in [&p.backend, &p.vnc, &p.guest] {
        let (_, report) = run("lintian", &["--tag-display-limit", "0", path(deb)]);
        let tags: Vec<&str> = report
            .lines()
            .filter(|l| l.len() > 2 && l.as_bytes()[1] == b':' && !l.starts_with("N:"))
            .collect();
        println!("{}: {tags:#?}", deb.display());
        let errors: Vec<&&str> = tags.iter().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", deb.display());
        for tag in &tags {
            assert!(
                ACCEPTED_WARNINGS.iter().any(|(name, _)| tag.contains(name)),
                "{}: a warning nobody accepted: {tag}",
                deb.display()
            );
        }
    }
}

/// Files a package installed, from dpkg's list.
fn files_of(package: &str) -> Vec<PathBuf> {
    let (ok, list) = run("dpkg", &["-L", package]);
    assert!(ok, "{list}");
    list.lines()
        .map(PathBuf::from)
        // Files and links to files; not directories, nor links to them (/lib on a merged /usr).
        .filter(|p| !p.is_dir() && (p.is_file() || p.is_symlink()))
        .collect()
}

#[test]
fn the_packages_install_verify_and_purge_leaving_nothing() {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "installing packages takes root");
    let p = packages();
    let (ok, log) = run("dpkg", &["-i", path(&p.backend), path(&p.vnc)]);
    assert!(ok, "{log}");
    let (ok, log) = run("dpkg", &["--force-depends", "-i", path(&p.guest)]);
    assert!(ok, "{log}");
    // Again: an upgrade to the same version runs every maintainer script's other branch.
    let (ok, log) = run(
        "dpkg",
        &["--force-depends", "-i", path(&p.backend), path(&p.guest)],
    );
    assert!(ok, "{log}");
    let installed: Vec<PathBuf> = ["vhost-user-pvmouse", "pvmouse-vnc", "pvmouse-guest"]
        .iter()
        .flat_map(|name| files_of(name))
        .collect();
    println!("{} files installed", installed.len());

    // QEMU's discovery descriptor names the installed binary, which says the same.
    let descriptor: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("/usr/share/qemu/vhost-user/50-vhost-user-pvmouse.json").unwrap(),
    )
    .unwrap();
    let binary = descriptor["binary"].as_str().unwrap();
    let (ok, caps) = run(binary, &["--print-capabilities"]);
    assert!(ok, "{caps}");
    let caps: serde_json::Value = serde_json::from_str(&caps).unwrap();
    assert_eq!(caps["type"], descriptor["type"]);
    for page in [
        "vhost-user-pvmouse",
        "pvmouse-vnc",
        "pvmouse-guestd",
        "pvmouse-session",
    ] {
        let (ok, text) = run("man", &["-w", page]);
        assert!(ok, "no man page for {page}: {text}");
    }

    // Every unit verifies, the template ones as an instance.
    let units = [
        "vhost-user-pvmouse@vm1.service",
        "vhost-user-pvmouse@vm1.socket",
        "vhost-user-pvmouse-control@vm1.socket",
        "vhost-user-pvmouse-relative@vm1.socket",
        "pvmouse-guestd.service",
    ];
    let (ok, log) = run("systemd-analyze", &[&["verify"][..], &units].concat());
    // Units of other packages it loads on the way (libvirtd's, from backports, uses a service
    // type this systemd predates) may have their own complaints; ours may have none.
    let ours: Vec<&str> = log.lines().filter(|l| l.contains("pvmouse")).collect();
    assert!(ok && ours.is_empty(), "systemd-analyze verify: {log}");
    let runtime = tempfile::tempdir().unwrap();
    let out = Command::new("systemd-analyze")
        .args([
            "--user",
            "verify",
            "/usr/lib/systemd/user/pvmouse-session.service",
        ])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (exposure, report) = exposure_of("/lib/systemd/system/vhost-user-pvmouse@.service");
    let left: Vec<&str> = report.lines().filter(|l| l.starts_with('✗')).collect();
    println!("systemd-analyze security: exposure {exposure}; not tightened: {left:#?}");
    assert!(
        exposure <= 1.0,
        "the backend's unit is exposed: {exposure}\n{report}"
    );
    // The guest bridge runs as root (uinput, evdev grabs, udev rules): sandboxed as far as
    // that allows.
    let (guestd, report) = exposure_of("/lib/systemd/system/pvmouse-guestd.service");
    println!("systemd-analyze security of pvmouse-guestd.service: exposure {guestd}");
    assert!(
        guestd <= 6.0,
        "the guest bridge's unit is exposed: {guestd}\n{report}"
    );
    // The guest package enabled its units, as Debian packages do.
    for link in [
        "/etc/systemd/system/multi-user.target.wants/pvmouse-guestd.service",
        "/etc/systemd/user/graphical-session.target.wants/pvmouse-session.service",
    ] {
        assert!(Path::new(link).is_symlink(), "{link} not enabled");
    }

    let (ok, log) = run(
        "dpkg",
        &[
            "--purge",
            "pvmouse-guest",
            "pvmouse-vnc",
            "vhost-user-pvmouse",
        ],
    );
    assert!(ok, "{log}");
    let left: Vec<&PathBuf> = installed
        .iter()
        .filter(|p| p.exists() || p.is_symlink())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    for link in [
        "/etc/systemd/system/multi-user.target.wants/pvmouse-guestd.service",
        "/etc/systemd/user/graphical-session.target.wants/pvmouse-session.service",
    ] {
        assert!(!Path::new(link).is_symlink(), "{link} left behind");
    }
}
