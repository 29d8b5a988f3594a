//! The latency CDF of the steady series, one line per kind, on a log time axis.

use std::path::Path;

use plotters::prelude::*;

use crate::run::KindResult;

const COLOURS: [RGBColor; 6] = [
    RGBColor(120, 120, 120),
    RGBColor(200, 30, 30),
    RGBColor(230, 120, 0),
    RGBColor(30, 90, 200),
    RGBColor(40, 150, 60),
    RGBColor(140, 60, 170),
];

pub fn draw(results: &[KindResult], rate_hz: f64, path: &Path) -> Result<(), String> {
    let all = results
        .iter()
        .flat_map(|r| r.steady.latency.sorted_ms.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return Err("no samples to plot".into());
    }
    let (lo, hi) = ((lo * 0.8).max(0.01), hi * 1.25);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("pvmouse: round-trip latency CDF at {rate_hz} Hz (QEMU TCG)"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("host send → guest evdev → host, ms (log scale)")
        .y_desc("fraction of samples")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, r) in results.iter().enumerate() {
        let d = &r.steady.latency.sorted_ms;
        let n = d.len() as f64;
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                d.iter().enumerate().map(|(k, &v)| (v, (k + 1) as f64 / n)),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(format!(
                "{} (p50 {:.2} ms)",
                r.kind.id(),
                r.steady.latency.p50()
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
