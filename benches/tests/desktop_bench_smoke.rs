//! The desktop path's smoke run: sway boots beside pvmouse and virtio-tablet, every path is
//! driven and answers, and the report has them all. It checks that the benchmark works, not what
//! it measures: `make bench` records the figures.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use pvmouse_benches::desktop_path::{DesktopPlan, Path, measure};
use pvmouse_benches::environment::Environment;
use pvmouse_benches::figures::Desktop;
use pvmouse_benches::report::Section;

#[test]
fn every_desktop_path_reaches_sways_client_and_is_reported() {
    let plan = DesktopPlan::smoke();
    let (results, kernel) = measure(&plan, &|l| eprintln!("[smoke] {l}")).unwrap();
    assert!(kernel.contains("Linux version"), "{kernel}");
    assert_eq!(
        results.iter().map(|r| r.path).collect::<Vec<_>>(),
        Path::ALL
    );
    for r in &results {
        let s = &r.series;
        assert_eq!(s.sent, plan.samples, "{}", r.path.id());
        assert_eq!(s.unanswered, 0, "{}: {s:?}", r.path.id());
        assert!(s.own > 0 && s.latency.p50() > 0.0, "{}: {s:?}", r.path.id());
    }
    let env = Environment::of_host("make bench-smoke");
    let figures = Desktop::of(&results, &env, &plan);
    let section = Section::Desktop.render(&figures).unwrap();
    for path in Path::ALL {
        assert!(section.contains(path.id()), "{} missing", path.id());
    }
    assert!(figures.target.is_some());
}
