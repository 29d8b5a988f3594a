//! The many-VMs benchmark's smoke run: five restartable backends attached in-process, every
//! move written reaches its guest, and the report has every figure. It checks that the
//! benchmark works; `make bench-many` records the figures for 100.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use pvmouse_benches::many_vms::{Plan, run};
use pvmouse_benches::report::Section;

#[test]
fn five_backends_take_every_move_and_are_reported() {
    let backend = pvmouse_vmtest::assets::build_binaries().unwrap().backend;
    let plan = Plan {
        vms: 5,
        idle: Duration::from_secs(2),
        samples: 100,
        rate_hz: 100,
        backend,
    };
    let figures = run(&plan, "many_vms_smoke").unwrap();
    assert_eq!(figures.keepers.processes, 5);
    assert_eq!(figures.workers.processes, 5, "a worker per keeper");
    assert!(
        figures.keepers.pss_kib > 0 && figures.workers.fds > 0,
        "{figures:?}"
    );
    assert_eq!(figures.alone.samples, 100);
    assert_eq!(figures.loaded.samples, 100);
    // Every move changes X, so each makes exactly one frame in its guest.
    assert!(figures.load_moves > 100, "{figures:?}");
    assert_eq!(figures.load_frames, figures.load_moves, "a move was lost");
    let section = Section::ManyVms.render(&figures).unwrap();
    assert!(section.contains("Many VMs on one host: 5 restartable backends"));
}
