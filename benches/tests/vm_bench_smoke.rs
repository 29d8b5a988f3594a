//! The end-to-end benchmark's smoke run: every kind boots, is driven, answers and is reported.
//! It checks that the benchmark works, not what it measures: the figures on a CI machine mean
//! nothing, and `make bench` records the real ones.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use pvmouse_benches::cdf_plot;
use pvmouse_benches::environment::Environment;
use pvmouse_benches::figures::EndToEnd;
use pvmouse_benches::kinds::Kind;
use pvmouse_benches::report::Section;
use pvmouse_benches::run::{Plan, run_all};

#[test]
fn every_kind_is_measured_and_reported() {
    let plan = Plan::smoke();
    let mut env = Environment::of_host("make bench-smoke");
    let results = run_all(&Kind::ALL, &plan, &mut env, &|l| eprintln!("[smoke] {l}")).unwrap();

    assert_eq!(results.len(), Kind::ALL.len());
    for r in &results {
        let s = &r.steady;
        assert_eq!(s.sent, plan.steady_samples, "{}", r.kind.id());
        // Coalescing devices answer some samples with newer frames; none may stay unanswered.
        assert_eq!(s.unanswered, 0, "{}: {s:?}", r.kind.id());
        assert!(s.own > 0 && s.latency.p50() > 0.0, "{}: {s:?}", r.kind.id());
        assert!(r.idle.qemu.wall.as_secs_f64() >= plan.idle.as_secs_f64());
        if r.kind == Kind::Floor {
            assert!(r.burst.is_none() && r.ladder.is_empty());
            continue;
        }
        assert!(!r.ladder.is_empty(), "{}", r.kind.id());
        let burst = r.burst.as_ref().unwrap();
        assert_eq!(burst.transitions, plan.burst_transitions);
        assert!(
            burst.seen > 0,
            "{}: the guest saw no button: {burst:?}",
            r.kind.id()
        );
        if r.kind.is_pvmouse() {
            assert!(r.backend_rss.is_some() && r.idle.backend.is_some());
            // With the relative device attached too, unplugging the pointer is no baseline.
            assert_eq!(r.idle.qemu_unplugged.is_some(), !r.kind.is_relative());
            assert!(r.backend_pss.is_some(), "{}: no PSS", r.kind.id());
        }
    }
    assert!(env.guest_kernel.contains("Linux version"), "{env:?}");

    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("latency-cdf.svg");
    cdf_plot::draw(&results, plan.steady_rate_hz, &plot).unwrap();
    let svg = std::fs::read_to_string(&plot).unwrap();
    let figures = EndToEnd::of(&results, &env, &plan, "latency-cdf.svg");
    let section = Section::EndToEnd.render(&figures).unwrap();
    // What --render-only reads back renders the same.
    let kept: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&figures).unwrap()).unwrap();
    assert_eq!(Section::EndToEnd.render(&kept).unwrap(), section);
    for kind in Kind::ALL {
        assert!(
            svg.contains(kind.id()),
            "{} missing from the plot",
            kind.id()
        );
        assert!(
            section.contains(kind.id()),
            "{} missing from the report",
            kind.id()
        );
    }
    assert_eq!(
        figures.targets.iter().filter(|t| t.met().is_none()).count(),
        0
    );
}
