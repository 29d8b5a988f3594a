//! The VNC path's smoke run: a viewer reaches both devices, through QEMU and through
//! `pvmouse-vnc`, records written straight to pvmouse reach it too, and the report has all
//! three. It checks that the benchmark works; `make bench`
//! records the figures.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use pvmouse_benches::environment::Environment;
use pvmouse_benches::figures::Vnc;
use pvmouse_benches::report::Section;
use pvmouse_benches::vnc_path::{ROUNDS, VncPath, measure};

#[test]
fn both_vnc_paths_reach_the_guest_and_are_reported() {
    let (results, kernel) = measure(100.0, 150, &|l| eprintln!("[smoke] {l}")).unwrap();
    assert!(kernel.starts_with("Linux version"), "{kernel}");
    assert_eq!(results.len(), VncPath::ALL.len() * ROUNDS);
    for r in &results {
        assert_eq!(r.series.unanswered, 0, "{}: {:?}", r.path.id(), r.series);
        assert!(r.series.own > 0, "{}", r.path.id());
        let processes = match r.path {
            VncPath::QemuTablet => 1,
            VncPath::Pvmouse => 3,
            VncPath::Records => 2,
        };
        assert_eq!(r.cpu_by_process.len(), processes, "{:?}", r.cpu_by_process);
        // Each event interrupts the guest at least once (its device; the probe's answer adds
        // its channel's), and wakes QEMU's vCPU thread at least once.
        let e = r.per_event;
        assert!(e.guest_interrupts >= 1.0, "{}: {e:?}", r.path.id());
        assert!(e.guest_switches >= 1.0, "{}: {e:?}", r.path.id());
        assert!(e.qemu_switches >= 1.0, "{}: {e:?}", r.path.id());
    }
    let figures = Vnc::of(
        &results,
        &Environment::of_host("make bench-smoke"),
        100.0,
        150,
    );
    let section = Section::Vnc.render(&figures).unwrap();
    for p in VncPath::ALL {
        assert!(section.contains(p.id()));
    }
    assert!(figures.target.is_some());
}
