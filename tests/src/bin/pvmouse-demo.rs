//! `pvmouse-demo`, the main job. It boots the desktop guest, whose pvmouse has two displays,
//! with sway on two monitors (1024x768 left of 1280x1024), the guest bridge, and the session
//! agent giving the bridge sway's layout. It tours the pointer across both monitors with clicks
//! and scrolls through the control socket, and prints each command, the position per display
//! that the host sent, what the guest's evdev received from the pvmouse device, and where sway
//! put the pointer (read by a Wayland client with a surface on each monitor, which also draws
//! the pointer's trail). The bridge has handed sway's layout to the device, so the device sends
//! desktop values that sway reads directly, with no guest process in between. It then takes QMP
//! screendumps of both heads and puts them together as one picture, and exits 0 only if every
//! frame matched and every point landed on its pixel.

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
use pvmouse_vmtest::desktop::{
    Head, Reader, Sway, screendump, wait_for_coordinates, write_side_by_side,
};
use pvmouse_vmtest::{PVMOUSE_NAME, Qmp, Vm, VmConfig, input_frames, round_to_i32};
use serde_json::{Value, json};

/// (x, y, width, height) of each display on the desktop, and the desktop's bounding box.
const DISPLAYS: [(f64, f64, f64, f64); 2] =
    [(0.0, 0.0, 1024.0, 768.0), (1024.0, 0.0, 1280.0, 1024.0)];
const DESKTOP: (f64, f64) = (2304.0, 1024.0);

/// One step of the tour: a control command, what it means per display, and the frames the spec
/// says the guest's evdev node must see once the device maps onto sway's layout.
struct Step {
    label: String,
    /// For a move: the display and position, to check where sway put the pointer.
    point: Option<(usize, f64, f64)>,
    command: &'static str,
    arguments: Value,
    per_display: Vec<Vec<InputEvent>>,
    device: Vec<Vec<InputEvent>>,
}

/// What the host has set and what the guest's device holds, to predict each frame: only changes
/// are sent.
#[derive(Default)]
struct Model {
    display: i32,
    x: Option<i32>,
    y: Option<i32>,
    u: Option<i32>,
    v: Option<i32>,
}

fn scale(v: f64) -> i32 {
    round_to_i32(v * f64::from(AXIS_MAX))
}

/// The device's mapping, from spec/pvmouse.md: the pixel that contains L + x/65535·size (the
/// far edge on the display's last pixel), aimed at its centre over the desktop's 0..=65535.
fn desktop_value(display: i32, x: i32, y: i32) -> (i32, i32) {
    let (lx, ly, w, h) = DISPLAYS[usize::try_from(display).unwrap_or(0)];
    let pixel = |origin: f64, size: f64, v: i32| {
        origin
            + (f64::from(v) * size / f64::from(AXIS_MAX))
                .floor()
                .min(size - 1.0)
    };
    (
        round_to_i32((pixel(lx, w, x) + 0.5) / DESKTOP.0 * 65535.0),
        round_to_i32((pixel(ly, h, y) + 0.5) / DESKTOP.1 * 65535.0),
    )
}

impl Model {
    fn moved(&mut self, display: i32, x: f64, y: f64) -> (Vec<InputEvent>, Vec<InputEvent>) {
        let (x, y) = (scale(x), scale(y));
        let mut raw = Vec::new();
        if display != self.display {
            raw.push(InputEvent::new(EV_ABS, DISPLAY_AXIS, display));
        }
        if Some(x) != self.x {
            raw.push(InputEvent::new(EV_ABS, ABS_X, x));
        }
        if Some(y) != self.y {
            raw.push(InputEvent::new(EV_ABS, ABS_Y, y));
        }
        let (u, v) = desktop_value(display, x, y);
        let mut device = Vec::new();
        if display != self.display {
            device.push(InputEvent::new(EV_ABS, DISPLAY_AXIS, display));
        }
        if Some(u) != self.u {
            device.push(InputEvent::new(EV_ABS, ABS_X, u));
        }
        if Some(v) != self.v {
            device.push(InputEvent::new(EV_ABS, ABS_Y, v));
        }
        (self.display, self.x, self.y, self.u, self.v) =
            (display, Some(x), Some(y), Some(u), Some(v));
        (raw, device)
    }
}

/// A lap around each display: an ellipse, a left click at its lowest point, a right click at
/// its highest, and a scroll at its leftmost.
fn tour() -> Vec<Step> {
    // The device starts on display 0 with no position: nobody has set one.
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
            let (raw, device) = model.moved(display, x, y);
            if device.is_empty() {
                // Another point of the same pixel: the device sends nothing.
                continue;
            }
            steps.push(Step {
                point: Some((usize::try_from(display).unwrap_or(0), x, y)),
                label: format!("move d{display} ({x:.3}, {y:.3})"),
                command: "pvmouse-send",
                arguments: json!({"display": display, "x": x, "y": y}),
                per_display: vec![raw],
                device: vec![device],
            });
            if i == points / 4 || i == 3 * points / 4 {
                let (button, code) = if i == points / 4 {
                    ("left", BTN_LEFT)
                } else {
                    ("right", BTN_RIGHT)
                };
                let click = vec![
                    vec![InputEvent::new(EV_KEY, code, 1)],
                    vec![InputEvent::new(EV_KEY, code, 0)],
                ];
                steps.push(Step {
                    point: None,
                    label: format!("click {button}"),
                    command: "input-send-event",
                    arguments: json!({"head": display, "events": [
                        {"type": "btn", "data": {"down": true, "button": button}},
                        {"type": "btn", "data": {"down": false, "button": button}}]}),
                    per_display: click.clone(),
                    device: click,
                });
            }
            if i == points / 2 {
                let sign = if display == 0 { 1 } else { -1 };
                let scroll = vec![vec![
                    InputEvent::new(EV_REL, REL_WHEEL, sign),
                    InputEvent::new(EV_REL, REL_WHEEL_HI_RES, 120 * sign),
                ]];
                steps.push(Step {
                    point: None,
                    label: format!("scroll {}", if sign > 0 { "up" } else { "down" }),
                    command: "pvmouse-send",
                    arguments: json!({"wheel": {"vertical": 120 * sign}}),
                    per_display: scroll.clone(),
                    device: scroll,
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
                (EV_ABS, DISPLAY_AXIS) => "DISP".to_owned(),
                (EV_KEY, BTN_LEFT) => "LEFT".to_owned(),
                (EV_KEY, BTN_RIGHT) => "RIGHT".to_owned(),
                (EV_REL, REL_WHEEL) => "WHEEL".to_owned(),
                (EV_REL, REL_WHEEL_HI_RES) => "HIRES".to_owned(),
                (k, c) => format!("{k}:{c}"),
            };
            let _ = write!(s, "{name}={}", e.value);
        }
    }
    s
}

/// The pointer's path in desktop pixels, with clicks and scrolls, from the device's events.
#[derive(Default)]
struct Seen {
    path: Vec<(f64, f64)>,
    clicks: Vec<(f64, f64)>,
    scrolls: Vec<(f64, f64)>,
}

fn replay(received: &[Vec<InputEvent>]) -> Seen {
    let mut seen = Seen::default();
    let (mut u, mut v) = (0, 0);
    let pixel = |u: i32, v: i32| {
        (
            f64::from(u) / 65535.0 * (DESKTOP.0 - 1.0),
            f64::from(v) / 65535.0 * (DESKTOP.1 - 1.0),
        )
    };
    for frame in received {
        let mut moved = false;
        for e in frame {
            match (e.kind, e.code) {
                (EV_ABS, ABS_X) => {
                    u = e.value;
                    moved = true;
                }
                (EV_ABS, ABS_Y) => {
                    v = e.value;
                    moved = true;
                }
                (EV_KEY, _) if e.value == 1 => seen.clicks.push(pixel(u, v)),
                (EV_REL, REL_WHEEL) => seen.scrolls.push(pixel(u, v)),
                _ => {}
            }
        }
        if moved {
            seen.path.push(pixel(u, v));
        }
    }
    seen
}

fn draw(seen: &Seen, out: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(out, (1200, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "pvmouse demo: the pointer on the guest desktop (blue path, red clicks, green scrolls)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..DESKTOP.0, -DESKTOP.1..0.0)?;
    chart
        .configure_mesh()
        .x_desc("desktop x (pixels)")
        .y_desc("desktop y (pixels, top = 0)")
        .y_label_formatter(&|v| format!("{:.0}", v.abs()))
        .draw()?;
    // Plot -y: evdev's y grows downwards, the chart's upwards.
    let at = |&(x, y): &(f64, f64)| (x, -y);
    for (d, (lx, ly, w, h)) in DISPLAYS.iter().enumerate() {
        let outline = [
            (*lx, *ly),
            (lx + w, *ly),
            (lx + w, ly + h),
            (*lx, ly + h),
            (*lx, *ly),
        ];
        chart.draw_series(LineSeries::new(
            outline.iter().map(at),
            BLACK.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("display {d}: {w}x{h}"),
            at(&(lx + 10.0, ly + 20.0)),
            ("sans-serif", 16),
        )))?;
    }
    chart.draw_series(LineSeries::new(
        seen.path.iter().map(at),
        BLUE.stroke_width(2),
    ))?;
    chart.draw_series(
        seen.clicks
            .iter()
            .map(at)
            .map(|p| Circle::new(p, 7, RED.filled())),
    )?;
    chart.draw_series(
        seen.scrolls
            .iter()
            .map(at)
            .map(|p| TriangleMarker::new(p, 9, GREEN.filled())),
    )?;
    root.present()?;
    Ok(())
}

/// The side-by-side picture with each monitor labelled with its display id and size: an SVG
/// that shows `png` (beside it) under a band of labels, one per head.
fn write_labelled(
    pictures: &[pvmouse_vmtest::desktop::Picture],
    png: &str,
    out: &PathBuf,
) -> std::io::Result<()> {
    const BAND: usize = 28;
    let width: usize = pictures.iter().map(|p| p.width).sum();
    let height = pictures.iter().map(|p| p.height).max().unwrap_or(0);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{}' \
         font-family='sans-serif' font-size='16'>\n\
         <rect width='100%' height='{BAND}' fill='#202020'/>\n\
         <image href='{png}' x='0' y='{BAND}' width='{width}' height='{height}'/>\n",
        height + BAND
    );
    let mut left = 0;
    for (display, p) in pictures.iter().enumerate() {
        svg.push_str(&format!(
            "<rect x='{left}' y='{BAND}' width='{}' height='{}' fill='none' stroke='#ffcc00' \
             stroke-width='2'/>\n<text x='{}' y='20' fill='#ffcc00'>display {display}: \
             {}x{} (head {display})</text>\n",
            p.width,
            p.height,
            left + 8,
            p.width,
            p.height
        ));
        left += p.width;
    }
    svg.push_str("</svg>\n");
    std::fs::write(out, svg)
}

/// Waits for `n` frames from `device` after `mark`. The bridge's heartbeats, which Linux also
/// hands every reader of the device, are left out.
fn await_frames(
    vm: &Vm,
    device: &str,
    mark: usize,
    n: usize,
) -> Result<Vec<Vec<InputEvent>>, String> {
    vm.probe
        .wait_events(device, mark, Duration::from_secs(20), |evs| {
            input_frames(evs).len() >= n
        })
        .map(|evs| input_frames(&evs))
}

/// A guest shell command that must succeed.
fn sh(vm: &Vm, command: &str) -> Result<Vec<String>, String> {
    vm.probe.sh(command, Duration::from_secs(60))
}

/// Starts sway, the bridge, the session agent and the reader; returns the reader's output index
/// of each display.
fn start_desktop(vm: &Vm, ctl: &mut Qmp) -> Result<[usize; 2], String> {
    let wait = Duration::from_secs(60);
    println!("starting sway on two monitors: 1024x768 left of 1280x1024");
    Sway::start(
        vm,
        "output Virtual-1 mode 1024x768 position 0 0\\n\
         output Virtual-2 mode 1280x1024 position 1024 0\\n",
    )?;
    println!("starting the guest bridge (pvmouse-guestd) and the session agent (pvmouse-session)");
    let mark = vm.probe.mark();
    sh(
        vm,
        "/opt/pvmouse-guestd --session-user pvm >/tmp/guestd.log 2>&1 &",
    )?;
    vm.probe
        .send(&format!("watch {PVMOUSE_NAME}"))
        .map_err(|e| e.to_string())?;
    vm.probe.wait_for(mark, wait, |l| {
        l.starts_with(&format!("OPEN {PVMOUSE_NAME} "))
    })?;
    let event = ctl
        .wait_event("PVMOUSE_BRIDGE_CHANGE", Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    println!("host sees the bridge: {}", event["data"]);
    Sway::in_session(vm, "/opt/pvmouse-session >/tmp/session.log 2>&1 &")?;
    let applied = vm
        .probe
        .sh_until("cat /tmp/session.log", "applied the layout", wait)?;
    println!("{}", applied.last().map_or("", |l| l.as_str()));
    wait_for_coordinates(ctl, "desktop", wait)?;
    println!("the bridge handed the layout to the device: sway reads pvmouse directly");
    Sway::in_session(vm, "/opt/pvmouse-wl-reader --trail >/tmp/reader.log 2>&1 &")?;
    vm.probe.sh_until("cat /tmp/reader.log", "READY", wait)?;
    let listed = Reader { vm }.outputs();
    let index_of = |name: &str| -> Result<usize, String> {
        listed
            .iter()
            .find_map(|f| {
                (f.get(2).map(String::as_str) == Some(name)).then(|| f[1].parse().ok())?
            })
            .ok_or_else(|| format!("sway has no output {name}: {listed:?}"))
    };
    Ok([index_of("Virtual-1")?, index_of("Virtual-2")?])
}

fn run() -> Result<bool, String> {
    let started = Instant::now();
    println!(
        "pvmouse demo: preparing and booting the desktop guest (QEMU, TCG) with a two-display pvmouse..."
    );
    let vm = Vm::boot(VmConfig {
        desktop: true,
        ..VmConfig::default()
    })
    .map_err(|e| e.to_string())?;
    println!("guest up after {:.1} s", started.elapsed().as_secs_f64());
    let mut ctl: Qmp = vm.control().map_err(|e| e.to_string())?;
    let outputs = start_desktop(&vm, &mut ctl)?;
    let heads = [
        Head::plain(0, 0, 1024, 768),
        Head::plain(1024, 0, 1280, 1024),
    ];

    let steps = tour();
    let mut all_ok = true;
    let mut pointer_all = Vec::new();
    println!(
        "\n{:<3} {:<24} {:<26} {:<24} {:<24} {:<22} ok",
        "#",
        "command",
        "per display (host)",
        "guest evdev: expected",
        "guest evdev: received",
        "sway (output, x, y)"
    );
    for (n, step) in steps.iter().enumerate() {
        let mark = vm.probe.mark();
        ctl.execute(step.command, step.arguments.clone())
            .map_err(|e| format!("step {n} ({}): {e}", step.label))?;
        let pointer = await_frames(&vm, PVMOUSE_NAME, mark, step.device.len());
        let mut ok = pointer.as_ref().is_ok_and(|p| *p == step.device);
        let mut on_screen = String::new();
        if let Some((display, x, y)) = step.point {
            let want = heads[display].expected_local(x, y);
            // sway reads the pointer a moment after the evdev node has it.
            let deadline = Instant::now() + Duration::from_secs(5);
            let reader = Reader { vm: &vm };
            let mut got = reader.position();
            let right = |g: Option<(usize, f64, f64)>| {
                g.is_some_and(|(o, gx, gy)| {
                    o == outputs[display]
                        && (gx - want.0).abs() <= 0.5
                        && (gy - want.1).abs() <= 0.5
                })
            };
            while !right(got) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                got = reader.position();
            }
            ok &= right(got);
            on_screen = match got {
                Some((o, gx, gy)) => format!("({o}, {gx:.1}, {gy:.1})"),
                None => "(nothing)".into(),
            };
        }
        all_ok &= ok;
        let received = match &pointer {
            Ok(f) => show(f),
            Err(e) => format!("(nothing: {e})"),
        };
        println!(
            "{n:<3} {:<24} {:<26} {:<24} {:<24} {:<22} {}",
            step.label,
            show(&step.per_display),
            show(&step.device),
            received,
            on_screen,
            if ok { "yes" } else { "NO" }
        );
        if let Ok(p) = pointer {
            pointer_all.extend(p);
        }
    }

    let out_dir = pvmouse_vmtest::assets::workspace_root().join("target/demo");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let svg = out_dir.join("pointer-path.svg");
    draw(&replay(&pointer_all), &svg).map_err(|e| format!("drawing {}: {e}", svg.display()))?;
    let mut qemu = vm.qemu_qmp().map_err(|e| e.to_string())?;
    let mut pictures = Vec::new();
    for head in 0..2 {
        let dump = out_dir.join(format!("head{head}.ppm"));
        pictures.push(screendump(&mut qemu, head, &dump).map_err(|e| format!("screendump: {e}"))?);
        let _ = std::fs::remove_file(&dump);
    }
    let png = out_dir.join("desktop.png");
    write_side_by_side(&pictures, &png).map_err(|e| format!("{}: {e}", png.display()))?;
    let labelled = out_dir.join("desktop.svg");
    write_labelled(&pictures, "desktop.png", &labelled)
        .map_err(|e| format!("{}: {e}", labelled.display()))?;
    let status = ctl
        .execute("query-pvmouse", json!({}))
        .map_err(|e| e.to_string())?;
    println!(
        "\n{} steps; bridge present: {}; device counters {}",
        steps.len(),
        status["bridge-present"],
        status["counters"]
    );
    println!(
        "both monitors as sway shows them, with the pointer's trail: {} (labelled: {})",
        png.display(),
        labelled.display()
    );
    println!("the path in desktop space: {}", svg.display());
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => {
            println!(
                "RESULT: every frame the guest's pvmouse device received matched what was sent, and sway put every point on its pixel."
            );
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
