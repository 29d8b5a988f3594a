//! The VNC path's smoke run: a viewer reaches both devices, through QEMU and through
//! `pvmouse-vnc`, and the report has both. It checks that the benchmark works; `make bench`
//! records the figures.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use pvmouse_benches::environment::Environment;
use pvmouse_benches::report;
use pvmouse_benches::vnc_path::{ROUNDS, VncPath, measure};

#[test]
fn both_vnc_paths_reach_the_guest_and_are_reported() {
    let (results, kernel) = measure(100.0, 150, &|l| eprintln!("[smoke] {l}")).unwrap();
    assert!(kernel.starts_with("Linux version"), "{kernel}");
    assert_eq!(results.len(), VncPath::ALL.len() * ROUNDS);
    for r in &results {
        assert_eq!(r.series.unanswered, 0, "{}: {:?}", r.path.id(), r.series);
        assert!(r.series.own > 0, "{}", r.path.id());
        let processes = if r.path == VncPath::Pvmouse { 3 } else { 1 };
        assert_eq!(r.cpu_by_process.len(), processes, "{:?}", r.cpu_by_process);
    }
    let section = report::vnc_markdown(
        &results,
        &Environment::of_host("make bench-smoke"),
        100.0,
        150,
    );
    for p in VncPath::ALL {
        assert!(section.contains(p.id()));
    }
    assert!(report::vnc_target(&results).is_some());
}
