//! Everything a test VM needs, from nothing: system packages, the backend and guest probe
//! binaries, Debian's guest kernel and udevadm, and the initramfs. Downloads are cached under
//! `target/pvmouse-guest/`, so a second run needs no network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::initramfs::Initramfs;

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{step}: {detail}")]
    Step { step: &'static str, detail: String },
}

fn fail(step: &'static str, detail: impl Into<String>) -> AssetError {
    AssetError::Step {
        step,
        detail: detail.into(),
    }
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn cache_dir() -> PathBuf {
    workspace_root().join("target/pvmouse-guest")
}

/// Runs one set-up step, saying on standard error what it is, that it still runs every 30 s,
/// and how long it took: a first run installs and builds for minutes, and none of them passes
/// in silence.
fn run(step: &'static str, cmd: &mut Command) -> Result<String, AssetError> {
    let started = std::time::Instant::now();
    eprintln!("pvmouse: {step}…");
    let (finished, waiting) = std::sync::mpsc::channel::<()>();
    let ticker = std::thread::spawn(move || {
        let every = std::time::Duration::from_secs(30);
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = waiting.recv_timeout(every) {
            eprintln!(
                "pvmouse: {step}: still running, {:.0} s so far",
                started.elapsed().as_secs_f64()
            );
        }
    });
    let out = cmd.output();
    drop(finished);
    let _ = ticker.join();
    let out = out.map_err(|e| fail(step, format!("cannot run {cmd:?}: {e}")))?;
    eprintln!(
        "pvmouse: {step}: {} in {:.1} s",
        if out.status.success() {
            "done"
        } else {
            "failed"
        },
        started.elapsed().as_secs_f64()
    );
    if !out.status.success() {
        return Err(fail(
            step,
            format!(
                "{cmd:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// QEMU 10 and busybox-static, through the project's installer: it installs them as root and
/// prints the exact commands otherwise. Missing QEMU is a failure, never a skip.
pub fn ensure_host_packages() -> Result<(), AssetError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    install_once(
        &DONE,
        "scripts/install-host-deps",
        "installing QEMU 10 and busybox-static",
    )
    .map_err(|e| fail("host packages", e))
}

/// Runs one of the project's installer scripts, once per test process: its result is kept in
/// `done`, so every later caller gets the same answer without running it again.
fn install_once(
    done: &OnceLock<Result<(), String>>,
    script: &str,
    what: &'static str,
) -> Result<(), String> {
    done.get_or_init(|| {
        run(what, &mut Command::new(workspace_root().join(script)))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .clone()
}

/// libvirt 11.3 from bookworm-backports, through the project's installer
/// (`scripts/install-libvirt`). Missing it is a failure, never a skip.
pub fn ensure_libvirt() -> Result<(), AssetError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    ensure_host_packages()?;
    install_once(&DONE, "scripts/install-libvirt", "installing libvirt 11.3")
        .map_err(|e| fail("libvirt", e))
}

/// pvmouse's three Debian packages, as `make deb` builds them.
#[derive(Debug, Clone)]
pub struct Packages {
    /// vhost-user-pvmouse: the backend, its systemd units, libvirt hook and QEMU descriptor.
    pub backend: PathBuf,
    pub vnc: PathBuf,
    /// pvmouse-guest: the guest's bridge, session agent, udev rule and units.
    pub guest: PathBuf,
}

/// Builds the Debian packages with `make deb` (which installs cargo-deb and lintian first),
/// once per test process.
pub fn debian_packages() -> Result<Packages, AssetError> {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            run(
                "building the Debian packages (make deb)",
                Command::new("make").arg("-C").arg(&root).arg("deb"),
            )
            .map_err(|e| e.to_string())?;
            let version = env!("CARGO_PKG_VERSION");
            let deb = |name: &str| {
                let path = root.join(format!("target/debian/{name}_{version}-1_amd64.deb"));
                if path.exists() {
                    Ok(path)
                } else {
                    Err(format!("make deb made no {}", path.display()))
                }
            };
            Ok(Packages {
                backend: deb("vhost-user-pvmouse")?,
                vnc: deb("pvmouse-vnc")?,
                guest: deb("pvmouse-guest")?,
            })
        })
        .clone()
        .map_err(|e| fail("Debian packages", e))
}

/// Debian's Chromium, noVNC and websockify, and playwright-core to drive Chromium, through the
/// project's installer (`scripts/install-browser-deps`). Returns the `node_modules` folder the
/// browser script needs on `NODE_PATH`. Missing any of them is a failure, never a skip.
pub fn ensure_browser_tools() -> Result<PathBuf, AssetError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    install_once(
        &DONE,
        "scripts/install-browser-deps",
        "installing Chromium, noVNC, websockify and playwright-core",
    )
    .map_err(|e| fail("browser tools", e))?;
    Ok(workspace_root().join("target/browser-tools/node_modules"))
}

/// Debian's gtk-vnc with its Python bindings, and Xvfb, through the project's installer
/// (`scripts/install-gtk-vnc-deps`). Missing any of them is a failure, never a skip.
pub fn ensure_gtk_vnc() -> Result<(), AssetError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    install_once(
        &DONE,
        "scripts/install-gtk-vnc-deps",
        "installing gtk-vnc and Xvfb",
    )
    .map_err(|e| fail("gtk-vnc", e))
}

#[derive(Debug, Clone)]
pub struct Binaries {
    pub backend: PathBuf,
    pub probe: PathBuf,
    pub guestd: PathBuf,
    /// The Wayland pointer reader for desktop guests.
    pub wl_reader: PathBuf,
    /// An X11 game's pointer lock (`tests/x11-grab`).
    pub x11_grab: PathBuf,
    /// The session agent, for desktop guests.
    pub session: PathBuf,
}

/// Builds `vhost-user-pvmouse` and the guest probe, both linked statically against glibc so
/// the probe runs in a guest with no libraries. A target directory of its own keeps this
/// from waiting on the build lock of the `cargo test` that runs it.
pub fn build_binaries() -> Result<Binaries, AssetError> {
    static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let target_dir = root.join("target/vm-build");
            let triple = "x86_64-unknown-linux-gnu";
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(
                "building the backend and guest probe",
                Command::new(cargo)
                    .current_dir(&root)
                    .args(["build", "--release", "--target", triple])
                    .args(["-p", "vhost-user-pvmouse", "-p", "pvmouse-guest-probe"])
                    .args(["-p", "pvmouse-guestd", "-p", "pvmouse-wl-reader"])
                    .args(["-p", "pvmouse-x11-grab"])
                    .args(["-p", "pvmouse-session", "-p", "pvmouse-vnc"])
                    .env("CARGO_TARGET_DIR", &target_dir)
                    // Debug info would make the initramfs too large for a 256 MiB guest to
                    // unpack; symbols stay, for backtraces.
                    .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
                    .env(
                        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                        "-C target-feature=+crt-static",
                    ),
            )
            .map_err(|e| e.to_string())?;
            let bin = target_dir.join(triple).join("release");
            Ok(Binaries {
                backend: bin.join("vhost-user-pvmouse"),
                probe: bin.join("pvmouse-guest-probe"),
                guestd: bin.join("pvmouse-guestd"),
                wl_reader: bin.join("pvmouse-wl-reader"),
                x11_grab: bin.join("pvmouse-x11-grab"),
                session: bin.join("pvmouse-session"),
            })
        })
        .clone()
        .map_err(|e| fail("binaries", e))
}

/// The version the upgrade test's second build reports.
pub const UPGRADE_VERSION: &str = "0.1.99";

/// The backend built again with `PVMOUSE_VERSION` set to [`UPGRADE_VERSION`], in a target
/// directory of its own: what the upgrade test puts on disk in place of the running one.
pub fn build_upgrade_backend() -> Result<PathBuf, AssetError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let target_dir = root.join("target/vm-build-upgrade");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(
                "building the backend as another version",
                Command::new(cargo)
                    .current_dir(&root)
                    .args(["build", "--release", "-p", "vhost-user-pvmouse"])
                    .env("CARGO_TARGET_DIR", &target_dir)
                    .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
                    .env("PVMOUSE_VERSION", UPGRADE_VERSION),
            )
            .map_err(|e| e.to_string())?;
            Ok(target_dir.join("release/vhost-user-pvmouse"))
        })
        .clone()
        .map_err(|e| fail("upgrade build", e))
}

/// Downloads a Debian package (with apt's current candidate) and unpacks it under `into`,
/// once: a `complete` marker makes later runs offline.
fn unpacked_package(package: &str, into: &Path) -> Result<PathBuf, AssetError> {
    let root = into.join(package);
    if root.join(".complete").exists() {
        return Ok(root);
    }
    let dl = into.join("downloads");
    std::fs::create_dir_all(&dl).map_err(|e| fail("guest assets", e.to_string()))?;
    let download = || {
        run(
            "downloading guest packages",
            Command::new("apt-get")
                .current_dir(&dl)
                .args(["download", package]),
        )
    };
    if download().is_err() {
        // A fresh machine may have no package lists yet.
        if is_root() {
            run(
                "updating package lists",
                Command::new("apt-get").args(["update", "-q"]),
            )?;
        }
        download().map_err(|e| {
            fail(
                "downloading guest packages",
                format!("{e}\n(as root, `apt-get update` first fixes a missing package list)"),
            )
        })?;
    }
    let deb = std::fs::read_dir(&dl)
        .map_err(|e| fail("guest assets", e.to_string()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .ok_or_else(|| {
            fail(
                "downloading guest packages",
                format!("no .deb for {package}"),
            )
        })?;
    let _ = std::fs::remove_dir_all(&root);
    run(
        "unpacking guest packages",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
    )?;
    std::fs::write(root.join(".complete"), b"").map_err(|e| fail("guest assets", e.to_string()))?;
    Ok(root)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

#[derive(Debug, Clone)]
pub struct GuestKernel {
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
    pub package: String,
}

/// Debian bookworm's `linux-image-6.1.0-*-amd64` (not `-cloud`: it lacks uinput), resolved
/// from the `linux-image-amd64` metapackage, or the one already cached.
pub fn guest_kernel() -> Result<GuestKernel, AssetError> {
    static KERNEL: OnceLock<Result<GuestKernel, String>> = OnceLock::new();
    KERNEL
        .get_or_init(|| find_or_fetch_kernel().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| fail("guest kernel", e))
}

fn find_or_fetch_kernel() -> Result<GuestKernel, AssetError> {
    let cache = cache_dir().join("kernel");
    let remembered = cache.join("package");
    let package = match std::fs::read_to_string(&remembered) {
        Ok(p) if cache.join(p.trim()).join(".complete").exists() => p.trim().to_owned(),
        _ => {
            let deps = run(
                "resolving the guest kernel package",
                Command::new("apt-cache").args(["depends", "linux-image-amd64"]),
            )
            .or_else(|_| {
                if is_root() {
                    run(
                        "updating package lists",
                        Command::new("apt-get").args(["update", "-q"]),
                    )?;
                }
                run(
                    "resolving the guest kernel package",
                    Command::new("apt-cache").args(["depends", "linux-image-amd64"]),
                )
            })?;
            let package = deps
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .find(|p| p.starts_with("linux-image-6.1.0-") && p.ends_with("-amd64"))
                .ok_or_else(|| {
                    fail(
                        "resolving the guest kernel package",
                        format!("no linux-image-6.1.0-*-amd64 in:\n{deps}"),
                    )
                })?
                .to_owned();
            std::fs::create_dir_all(&cache).map_err(|e| fail("guest kernel", e.to_string()))?;
            package
        }
    };
    let root = unpacked_package(&package, &cache)?;
    std::fs::write(&remembered, &package).map_err(|e| fail("guest kernel", e.to_string()))?;
    let version = package.trim_start_matches("linux-image-");
    Ok(GuestKernel {
        vmlinuz: root.join(format!("boot/vmlinuz-{version}")),
        modules: root.join(format!("lib/modules/{version}")),
        package,
    })
}

/// The modules a test guest loads, by name. Their load order comes from each module's own
/// `depends=` field.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_input",
    "evdev",
    "uinput",
    "virtio_console",
    "virtio_pci",
    "usbhid",
    "hid_generic",
    "xhci_pci",
    "uhci_hcd",
    "virtio_gpu",
    // The desktop image's root disk (jbd2 needs crc32c at mount time, not at load time).
    "virtio_blk",
    "crc32c_generic",
    "ext4",
];

fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// Module name → path of its `.ko`, for the whole kernel tree.
fn index_modules(modules: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "ko") {
                if let Some(stem) = path.file_stem() {
                    out.insert(module_key(&stem.to_string_lossy()), path);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&modules.join("kernel"), &mut out);
    out
}

/// A module's `depends=` list, read from its modinfo section.
fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|start| {
            let rest = &ko[start + key.len()..];
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(module_key)
                .collect()
        })
        .unwrap_or_default()
}

/// `wanted` and everything they depend on, dependencies first.
pub fn module_load_order(
    modules: &Path,
    wanted: &[&str],
) -> Result<Vec<(String, PathBuf)>, AssetError> {
    let index = index_modules(modules);
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> Result<(), AssetError> {
        if done.contains(name) {
            return Ok(());
        }
        if depth > 32 {
            return Err(fail("guest modules", format!("dependency cycle at {name}")));
        }
        let path = index.get(name).ok_or_else(|| {
            fail(
                "guest modules",
                format!("module {name} is not in the kernel package"),
            )
        })?;
        let bytes = std::fs::read(path).map_err(|e| fail("guest modules", e.to_string()))?;
        for dep in module_depends(&bytes) {
            visit(&dep, index, done, order, depth + 1)?;
        }
        done.insert(name.to_owned());
        order.push((name.to_owned(), path.clone()));
        Ok(())
    }
    for name in wanted {
        visit(&module_key(name), &index, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

/// Debian's udevadm and the shared libraries it needs, for `udevadm test-builtin input_id`.
/// Returns (guest path, host file) pairs.
pub fn udevadm_files() -> Result<Vec<(String, PathBuf)>, AssetError> {
    let root = unpacked_package("udev", &cache_dir().join("udev"))?;
    let udevadm = root.join("bin/udevadm");
    let ldd = run(
        "resolving udevadm's libraries",
        Command::new("ldd").arg(&udevadm),
    )?;
    let mut files = vec![("bin/udevadm".to_owned(), udevadm)];
    for line in ldd.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(fail(
                "resolving udevadm's libraries",
                format!("missing on this host: {line}"),
            ));
        }
        // "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .nth(1)
            .unwrap_or(line)
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            let host = std::fs::canonicalize(path)
                .map_err(|e| fail("udevadm libraries", format!("{path}: {e}")))?;
            files.push((path.trim_start_matches('/').to_owned(), host));
        }
    }
    Ok(files)
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
step() { echo "pvmouse-boot: $1" > /dev/ttyS0; }
step "loading modules"
for m in $(cat /etc/pvmouse-modules); do
  insmod /lib/modules/$m.ko || step "insmod failed: $m"
done
root=$(sed -n 's/.*pvmouse\.root=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$root" ]; then
  step "mounting the desktop root $root"
  mkdir -p /newroot
  mount -t ext4 "$root" /newroot || step "cannot mount $root"
  mount -t tmpfs tmpfs /newroot/opt
  cp /bin/pvmouse-guest-probe /bin/pvmouse-guestd /bin/pvmouse-wl-reader /bin/pvmouse-session \
    /bin/pvmouse-x11-grab /desktop-init /pvmouse-guest.deb /newroot/opt/
  for fs in proc sys dev; do mount --move /$fs /newroot/$fs; done
  exec switch_root /newroot /opt/desktop-init
fi
step "starting the probe"
/bin/pvmouse-guest-probe pvmouse.probe
step "probe exited"
poweroff -f
"#;

/// The desktop image's init, after the busybox initramfs switched to it: udev (display
/// servers find their devices through it), then the probe, which starts everything else; or,
/// with `pvmouse.systemd=1` on the kernel command line, systemd (after installing the guest
/// package, with `pvmouse.package=1`).
const DESKTOP_INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/opt
# Display servers that need a logind session (mutter) boot with systemd as init; the image
# starts the probe as a service then.
if grep -q 'pvmouse.systemd=1' /proc/cmdline; then
  # With pvmouse.package=1, the guest package is installed first, as a user installs it:
  # its udev rule, system unit and user unit then start the guest side, and nothing else does.
  if grep -q 'pvmouse.package=1' /proc/cmdline; then
    echo "pvmouse-boot: installing pvmouse-guest" > /dev/ttyS0
    mount -t tmpfs tmpfs /tmp
    dpkg -i /opt/pvmouse-guest.deb > /dev/ttyS0 2>&1 || echo "pvmouse-boot: dpkg failed" > /dev/ttyS0
    umount /tmp
  fi
  echo "pvmouse-boot: starting systemd" > /dev/ttyS0
  exec /lib/systemd/systemd
fi
step() { echo "pvmouse-boot: $1" > /dev/ttyS0; }
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
for d in /run /tmp /dev/shm; do mount -t tmpfs tmpfs $d; done
step "starting udev"
/lib/systemd/systemd-udevd --daemon
udevadm trigger --action=add
udevadm settle
step "starting the probe"
/opt/pvmouse-guest-probe pvmouse.probe
step "probe exited"
poweroff -f
"#;

/// The desktop root filesystem image, built by `scripts/build-desktop-image` on first use
/// (Debian's packages, about 90 s) and cached under `target/pvmouse-desktop/`.
pub fn desktop_image() -> Result<PathBuf, AssetError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            guest_kernel().map_err(|e| e.to_string())?;
            let script = workspace_root().join("scripts/build-desktop-image");
            run("desktop image", &mut Command::new(&script)).map_err(|e| e.to_string())?;
            Ok(workspace_root().join("target/pvmouse-desktop/rootfs.ext4"))
        })
        .clone()
        .map_err(|e| fail("desktop image", e))
}

/// The initramfs: busybox, the modules in load order, udevadm, the probe, and an init that
/// reports each boot step on the console.
pub fn build_initramfs() -> Result<PathBuf, AssetError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| assemble_initramfs().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| fail("initramfs", e))
}

fn assemble_initramfs() -> Result<PathBuf, AssetError> {
    let kernel = guest_kernel()?;
    let bins = build_binaries()?;
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| fail("initramfs", format!("{}: {e}", p.display())));
    let mut img = Initramfs::new();
    for d in [
        "bin",
        "sbin",
        "etc",
        "etc/pvmouse",
        "etc/udev",
        "etc/udev/rules.d",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "lib",
        "lib/modules",
        "lib64",
        "lib/x86_64-linux-gnu",
        "usr",
        "usr/lib",
    ] {
        img.dir(d);
    }
    img.file("init", 0o755, INIT.as_bytes());
    img.file("desktop-init", 0o755, DESKTOP_INIT.as_bytes());
    img.file("bin/busybox", 0o755, &read(Path::new("/bin/busybox"))?);
    img.file("bin/pvmouse-guest-probe", 0o755, &read(&bins.probe)?);
    img.file("bin/pvmouse-guestd", 0o755, &read(&bins.guestd)?);
    img.file("bin/pvmouse-wl-reader", 0o755, &read(&bins.wl_reader)?);
    img.file("bin/pvmouse-x11-grab", 0o755, &read(&bins.x11_grab)?);
    img.file("bin/pvmouse-session", 0o755, &read(&bins.session)?);
    img.file(
        "etc/udev/rules.d/70-pvmouse.rules",
        0o644,
        &read(&workspace_root().join("guest-uinput/packaging/70-pvmouse.rules"))?,
    );
    // The guest package `make deb` built: a desktop guest booted with `pvmouse.package=1`
    // installs it before systemd starts, so that its units are what start the guest side.
    let packages = debian_packages()?;
    img.file("pvmouse-guest.deb", 0o644, &read(&packages.guest)?);
    let order = module_load_order(&kernel.modules, GUEST_MODULES)?;
    let mut names = String::new();
    for (name, path) in &order {
        img.file(&format!("lib/modules/{name}.ko"), 0o644, &read(path)?);
        names.push_str(name);
        names.push('\n');
    }
    img.file("etc/pvmouse-modules", 0o644, names.as_bytes());
    for (guest, host) in udevadm_files()? {
        img.file(&guest, 0o755, &read(&host)?);
    }
    let out = cache_dir().join(format!("initramfs-{}.cpio", kernel.package));
    std::fs::create_dir_all(cache_dir()).map_err(|e| fail("initramfs", e.to_string()))?;
    std::fs::write(&out, img.finish()).map_err(|e| fail("initramfs", e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_field_is_parsed_from_modinfo() {
        let ko = b"\0\0license=GPL\0depends=virtio,virtio_ring\0retpoline=Y\0";
        assert_eq!(module_depends(ko), ["virtio", "virtio_ring"]);
        assert!(module_depends(b"depends=\0").is_empty());
        assert_eq!(module_key("hid-generic"), "hid_generic");
    }
}
