//! `pvmouse-prepare`: everything the VM tests need, installed, fetched and built ahead of them,
//! with each step said as it runs and timed (`make test` runs it first). The tests would do the
//! same on first use, but inside the test runner, which keeps their output until they end, so a
//! first run would sit for minutes in silence. Everything is cached: a second run is offline and
//! takes seconds.

use std::process::ExitCode;
use std::time::Instant;

use pvmouse_vmtest::assets;

/// One step: what it makes ready, and the harness's function that does it.
type Step<'a> = (&'a str, &'a dyn Fn() -> Result<(), String>);

fn main() -> ExitCode {
    let started = Instant::now();
    let steps: [Step<'_>; 8] = [
        ("QEMU 10 and busybox-static", &|| {
            assets::ensure_host_packages().map_err(|e| e.to_string())
        }),
        ("the backend and the guest's programs", &|| {
            assets::build_binaries()
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("Debian's guest kernel", &|| {
            assets::guest_kernel().map(drop).map_err(|e| e.to_string())
        }),
        ("the desktop guest image", &|| {
            assets::desktop_image().map(drop).map_err(|e| e.to_string())
        }),
        ("the Debian packages (make deb)", &|| {
            assets::debian_packages()
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("libvirt 11.3", &|| {
            assets::ensure_libvirt().map_err(|e| e.to_string())
        }),
        ("the browser-gateway test's tools", &|| {
            assets::ensure_browser_tools()
                .map(drop)
                .map_err(|e| e.to_string())
        }),
        ("gtk-vnc and Xvfb for the viewer test", &|| {
            assets::ensure_gtk_vnc().map_err(|e| e.to_string())
        }),
    ];
    for (n, (what, step)) in steps.iter().enumerate() {
        let at = Instant::now();
        eprintln!("[{}/{}] {what}", n + 1, steps.len());
        if let Err(e) = step() {
            eprintln!("pvmouse-prepare: {what}: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!(
            "[{}/{}] {what}: ready ({:.1} s)",
            n + 1,
            steps.len(),
            at.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "everything the tests need is ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
