//! `pvmouse-demo`, the main job: boot a guest whose pvmouse has two displays, tour the pointer
//! across both with clicks and scrolls through the control socket, print what was sent beside
//! what the guest's evdev received, draw the path the guest saw on each display, and exit 0
//! only if every frame matched.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{
    ABS_X, ABS_Y, BTN_LEFT, BTN_RIGHT, EV_ABS, EV_KEY, EV_REL, REL_WHEEL, REL_WHEEL_HI_RES,
};
use pvmouse_spec::profile::{AXIS_MAX, DISPLAY_AXIS};
use pvmouse_vmtest::{PVMOUSE_NAME, Qmp, Vm, VmConfig, frames};
use serde_json::{Value, json};

/// One step of the tour: a control command and the frames the spec says the guest must see.
struct Step {
    label: String,
    command: &'static str,
    arguments: Value,
    expected: Vec<Vec<InputEvent>>,
}

/// Mirrors what the guest should hold, to predict each frame: only changes are sent.
#[derive(Default)]
struct Model {
    display: i32,
    x: Option<i32>,
    y: Option<i32>,
}

fn scale(v: f64) -> i32 {
    (v * f64::from(AXIS_MAX)).round() as i32
}

impl Model {
    fn moved(&mut self, display: i32, x: f64, y: f64) -> Vec<InputEvent> {
        let (x, y) = (scale(x), scale(y));
        let mut f = Vec::new();
        if display != self.display {
            f.push(InputEvent::new(EV_ABS, DISPLAY_AXIS, display));
        }
        if Some(x) != self.x {
            f.push(InputEvent::new(EV_ABS, ABS_X, x));
        }
        if Some(y) != self.y {
            f.push(InputEvent::new(EV_ABS, ABS_Y, y));
        }
        (self.display, self.x, self.y) = (display, Some(x), Some(y));
        f
    }
}

/// A lap around each display: an ellipse, a left click at its lowest point, a right click at its
/// highest, and a scroll at its leftmost.
fn tour() -> Vec<Step> {
    let mut model = Model::default();
    let mut steps = Vec::new();
    for display in 0..2 {
        let points = 24;
        for i in 0..=points {
            let a = std::f64::consts::TAU * f64::from(i) / f64::from(points);
            let (cx, cy, rx, ry) = if display == 0 {
                (0.5, 0.5, 0.35, 0.3)
            } else {
                (0.45, 0.55, 0.3, 0.35)
            };
            let x = ((cx + rx * a.cos()) * 1000.0).round() / 1000.0;
            let y = ((cy + ry * a.sin()) * 1000.0).round() / 1000.0;
            let expected = model.moved(display, x, y);
            if expected.is_empty() {
                continue;
            }
            steps.push(Step {
                label: format!("move d{display} ({x:.3}, {y:.3})"),
                command: "pvmouse-send",
                arguments: json!({"display": display, "x": x, "y": y}),
                expected: vec![expected],
            });
            if i == points / 4 || i == 3 * points / 4 {
                let (button, code) = if i == points / 4 {
                    ("left", BTN_LEFT)
                } else {
                    ("right", BTN_RIGHT)
                };
                steps.push(Step {
                    label: format!("click {button}"),
                    command: "input-send-event",
                    arguments: json!({"head": display, "events": [
                        {"type": "btn", "data": {"down": true, "button": button}},
                        {"type": "btn", "data": {"down": false, "button": button}}]}),
                    expected: vec![
                        vec![InputEvent::new(EV_KEY, code, 1)],
                        vec![InputEvent::new(EV_KEY, code, 0)],
                    ],
                });
            }
            if i == points / 2 {
                let sign = if display == 0 { 1 } else { -1 };
                steps.push(Step {
                    label: format!("scroll {}", if sign > 0 { "up" } else { "down" }),
                    command: "pvmouse-send",
                    arguments: json!({"wheel": {"vertical": 120 * sign}}),
                    expected: vec![vec![
                        InputEvent::new(EV_REL, REL_WHEEL, sign),
                        InputEvent::new(EV_REL, REL_WHEEL_HI_RES, 120 * sign),
                    ]],
                });
            }
        }
    }
    steps
}

fn show(frames: &[Vec<InputEvent>]) -> String {
    let mut s = String::new();
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            s.push_str(" | ");
        }
        for (j, e) in f.iter().enumerate() {
            if j > 0 {
                s.push(' ');
            }
            let name = match (e.kind, e.code) {
                (EV_ABS, ABS_X) => "X".to_owned(),
                (EV_ABS, ABS_Y) => "Y".to_owned(),
                (EV_ABS, DISPLAY_AXIS) => "DISPLAY".to_owned(),
                (EV_KEY, BTN_LEFT) => "LEFT".to_owned(),
                (EV_KEY, BTN_RIGHT) => "RIGHT".to_owned(),
                (EV_REL, REL_WHEEL) => "WHEEL".to_owned(),
                (EV_REL, REL_WHEEL_HI_RES) => "WHEEL_HI".to_owned(),
                (k, c) => format!("{k}:{c}"),
            };
            let _ = write!(s, "{name}={}", e.value);
        }
    }
    s
}

/// What the guest's pointer did, per display: positions, clicks and scrolls, in order.
#[derive(Default)]
struct Seen {
    path: [Vec<(i32, i32)>; 2],
    clicks: [Vec<(i32, i32)>; 2],
    scrolls: [Vec<(i32, i32)>; 2],
}

fn replay(received: &[Vec<InputEvent>]) -> Seen {
    let mut seen = Seen::default();
    let (mut d, mut x, mut y) = (0usize, 0, 0);
    for frame in received {
        let mut moved = false;
        for e in frame {
            match (e.kind, e.code) {
                (EV_ABS, DISPLAY_AXIS) => {
                    d = usize::try_from(e.value).unwrap_or(0).min(1);
                    moved = true;
                }
                (EV_ABS, ABS_X) => {
                    x = e.value;
                    moved = true;
                }
                (EV_ABS, ABS_Y) => {
                    y = e.value;
                    moved = true;
                }
                (EV_KEY, _) if e.value == 1 => seen.clicks[d].push((x, y)),
                (EV_REL, REL_WHEEL) => seen.scrolls[d].push((x, y)),
                _ => {}
            }
        }
        if moved {
            seen.path[d].push((x, y));
        }
    }
    seen
}

fn draw(seen: &Seen, out: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(out, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "pvmouse demo: the pointer path the guest's evdev reported (blue path, red clicks, green scrolls)",
        ("sans-serif", 20),
    )?;
    let panels = root.split_evenly((1, 2));
    let max = f64::from(AXIS_MAX);
    // Normalised, with y flipped so the picture is the right way up (evdev's y grows downwards).
    let at = |&(x, y): &(i32, i32)| (f64::from(x) / max, 1.0 - f64::from(y) / max);
    for (d, area) in panels.iter().enumerate() {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("display {d}"), ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("x / width")
            .y_desc("y / height")
            .y_label_formatter(&|v| format!("{:.1}", 1.0 - v))
            .draw()?;
        chart.draw_series(LineSeries::new(
            seen.path[d].iter().map(at),
            BLUE.stroke_width(2),
        ))?;
        chart.draw_series(
            seen.clicks[d]
                .iter()
                .map(at)
                .map(|p| Circle::new(p, 7, RED.filled())),
        )?;
        chart.draw_series(
            seen.scrolls[d]
                .iter()
                .map(at)
                .map(|p| TriangleMarker::new(p, 9, GREEN.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}

fn run() -> Result<bool, String> {
    let started = Instant::now();
    println!(
        "pvmouse demo: preparing and booting a guest (QEMU, TCG) with a two-display pvmouse..."
    );
    let vm = Vm::boot(VmConfig::default()).map_err(|e| e.to_string())?;
    println!("guest up after {:.1} s", started.elapsed().as_secs_f64());
    vm.probe.request(
        &format!("watch {PVMOUSE_NAME}"),
        &format!("OPEN {PVMOUSE_NAME} "),
        Duration::from_secs(30),
    )?;
    let mut ctl: Qmp = vm.control().map_err(|e| e.to_string())?;

    let steps = tour();
    let mut all_ok = true;
    let mut received_all = Vec::new();
    println!(
        "\n{:<4} {:<26} {:<44} {:<44} ok",
        "#", "command", "expected in guest", "guest evdev received"
    );
    for (n, step) in steps.iter().enumerate() {
        let mark = vm.probe.mark();
        ctl.execute(step.command, step.arguments.clone())
            .map_err(|e| format!("step {n} ({}): {e}", step.label))?;
        let want = step.expected.len();
        let got = match vm
            .probe
            .wait_events(PVMOUSE_NAME, mark, Duration::from_secs(20), |evs| {
                frames(evs).len() >= want
            }) {
            Ok(evs) => frames(&evs),
            Err(e) => {
                println!(
                    "{n:<4} {:<26} {:<44} {:<44} NO ({e})",
                    step.label,
                    show(&step.expected),
                    "-"
                );
                all_ok = false;
                continue;
            }
        };
        let ok = got == step.expected;
        all_ok &= ok;
        println!(
            "{n:<4} {:<26} {:<44} {:<44} {}",
            step.label,
            show(&step.expected),
            show(&got),
            if ok { "yes" } else { "NO" }
        );
        received_all.extend(got);
    }

    let out_dir = pvmouse_vmtest::assets::workspace_root().join("target/demo");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let svg = out_dir.join("pointer-path.svg");
    draw(&replay(&received_all), &svg).map_err(|e| format!("drawing {}: {e}", svg.display()))?;
    let status = ctl
        .execute("query-pvmouse", json!({}))
        .map_err(|e| e.to_string())?;
    println!(
        "\n{} steps, {} frames received; device counters {}",
        steps.len(),
        received_all.len(),
        status["counters"]
    );
    println!("picture of the path on each display: {}", svg.display());
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => {
            println!("RESULT: every frame the guest received matched what was sent.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("RESULT: MISMATCH: see the rows marked NO above.");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("pvmouse-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
