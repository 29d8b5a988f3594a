//! What the desktop tests expect, and how they look at the screen.
//!
//! The expectations follow spec/pvmouse.md §3.1 (which framebuffer pixel a position means)
//! and spec/session.md (how a display server's transform and scale carry that pixel onto its
//! logical desktop). A screendump ([`screendump`]) checks the transform's direction against
//! what the display server really draws, so the tests do not take the spec's word for it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use pvmouse_spec::evdev::BTN_LEFT;

use crate::qmp::Qmp;
use crate::vm::Vm;
use crate::wait;

/// Where the desktop tests have `pvmouse-wl-reader` write its reports.
pub const READER_LOG: &str = "/tmp/reader.log";

/// Positions every desktop test sends to each head: both corners, the middle, two near the
/// edges, and the centre of framebuffer pixel (1, 2) of a 1280x1024 head.
pub const POINTS: [(f64, f64); 6] = [
    (0.0, 0.0),
    (1.0, 1.0),
    (0.5, 0.5),
    (0.1, 0.9),
    (0.999, 0.001),
    (1.5 / 1280.0, 2.5 / 1024.0),
];

/// GNOME's mutter in the desktop guest, bare (`mutter --wayland --display-server`: GNOME's
/// input mapping without GNOME Shell). It needs a logind session, so the guest boots systemd
/// (`pvmouse.systemd=1`) and mutter runs in a PAM session of `pvm` on tty1.
#[derive(Debug, Clone, Copy)]
pub struct Mutter;

impl Mutter {
    /// A command as `pvm`, in mutter's session.
    pub const AS_PVM: &str = "setpriv --reuid=pvm --regid=pvm --init-groups env HOME=/home/pvm \
                              XDG_RUNTIME_DIR=/run/user/1000 WAYLAND_DISPLAY=wayland-0";

    /// Writes `settings` as `pvm`'s GSettings key file (the image has no dconf; a key file's
    /// lines, each ended by a backslash and `n`), starts mutter, and waits for its socket.
    pub fn start(vm: &Vm, settings: &str) -> Result<(), String> {
        let wait = Duration::from_secs(60);
        vm.probe.sh(
            &format!(
                "mkdir -p /home/pvm/.config/glib-2.0/settings && printf '{settings}' \
                 >/home/pvm/.config/glib-2.0/settings/keyfile && chown -R pvm /home/pvm/.config"
            ),
            wait,
        )?;
        vm.probe.sh(
            "systemd-run --unit=pvmouse-mutter -p PAMName=login -p User=pvm -p TTYPath=/dev/tty1 \
             -p StandardInput=tty -p UtmpIdentifier=tty1 -p UtmpMode=user \
             -p Environment=XDG_SESSION_TYPE=wayland -p Environment=GSETTINGS_BACKEND=keyfile \
             /usr/bin/dbus-run-session -- mutter --wayland --display-server --no-x11",
            wait,
        )?;
        vm.probe
            .sh_until("ls /run/user/1000/ 2>&1", "wayland-0", wait)
            .map(|_| ())
    }
}

/// sway in the desktop guest. It refuses to run as root, so it runs as the image's user `pvm`,
/// with seatd handing it the devices; `setpriv` rather than `su`, so that no PAM session ends
/// under it.
#[derive(Debug, Clone, Copy)]
pub struct Sway;

impl Sway {
    /// The session user's runtime directory, where sway's sockets are.
    pub const RUNTIME: &str = "/run/user/1000";
    /// A `sh -c` command as `pvm`.
    const AS_PVM: &str = "setpriv --reuid=pvm --regid=pvm --init-groups env HOME=/home/pvm sh -c";

    /// Starts seatd and sway, its outputs set by `config` (sway's configuration lines, each
    /// ended by a backslash and `n`, which the guest's `printf` makes a newline), and waits for
    /// its IPC socket. sway draws its cursor into the picture (no hardware cursor plane), so
    /// that a screendump shows where it put the pointer.
    pub fn start(vm: &Vm, config: &str) -> Result<(), String> {
        let wait = Duration::from_secs(60);
        let runtime = Self::RUNTIME;
        vm.probe.sh("seatd -g video >/tmp/seatd.log 2>&1 &", wait)?;
        vm.probe.sh(
            &format!("mkdir -p {runtime} && chown pvm {runtime} && chmod 700 {runtime}"),
            wait,
        )?;
        vm.probe
            .sh(&format!("printf '{config}' >/tmp/sway.config"), wait)?;
        vm.probe.sh(
            &format!(
                "{} 'XDG_RUNTIME_DIR={runtime} LIBSEAT_BACKEND=seatd WLR_LIBINPUT_NO_DEVICES=1 \
                 WLR_NO_HARDWARE_CURSORS=1 \
                 WLR_RENDERER=pixman sway -d -c /tmp/sway.config >/tmp/sway.log 2>&1 &'",
                Self::AS_PVM
            ),
            wait,
        )?;
        vm.probe
            .sh_until(&format!("ls {runtime}"), "sway-ipc", wait)
            .map(|_| ())
    }

    /// The shell command that runs `command` in sway's session, as `pvm`.
    pub fn session_command(command: &str) -> String {
        let runtime = Self::RUNTIME;
        format!(
            "{} 'export XDG_RUNTIME_DIR={runtime} SWAYSOCK=$(ls {runtime}/sway-ipc.*.sock) \
             WAYLAND_DISPLAY=$(cd {runtime} && ls wayland-? | head -n1); {command}'",
            Self::AS_PVM
        )
    }

    /// A command run in sway's session, as `pvm`, retried while sway is still starting up.
    pub fn in_session(vm: &Vm, command: &str) -> Result<Vec<String>, String> {
        let full = Self::session_command(command);
        let wait = Duration::from_secs(60);
        // Each try is a process in the guest: a slower pace than a host query's.
        wait::until_every(
            &format!("{command} to succeed in sway's session"),
            wait,
            Duration::from_millis(200),
            || match vm.probe.run(&full, wait) {
                Ok((0, out)) => Ok(Ok(out)),
                Ok((rc, out)) => Err(format!("exit {rc}: {out:?}")),
                // The probe itself failed: trying again would not help.
                Err(e) => Ok(Err(e)),
            },
        )
        .and_then(|out| out)
    }
}

/// What the Wayland reader (`pvmouse-wl-reader`) reported, read through the probe.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub vm: &'a Vm,
}

impl Reader<'_> {
    fn last(&self, pattern: &str) -> Option<Vec<String>> {
        let out = self
            .vm
            .probe
            .sh(
                &format!("grep -E '{pattern}' {READER_LOG} | tail -n 1"),
                Duration::from_secs(30),
            )
            .ok()?;
        Some(out.first()?.split_whitespace().map(str::to_owned).collect())
    }

    /// The last pointer report: (output index, x, y) in the surface's logical coordinates.
    pub fn position(&self) -> Option<(usize, f64, f64)> {
        let f = self.last("^(ENTER|MOTION) ")?;
        Some((f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?))
    }

    /// The last button report: (output index, code, pressed).
    pub fn button(&self) -> Option<ButtonReport> {
        let f = self.last("^BUTTON ")?;
        Some((f[1].parse().ok()?, f[2].parse().ok()?, f[3] == "pressed"))
    }

    /// The reader's `OUTPUT` lines: index, name, x, y, width, height, scale, split.
    pub fn outputs(&self) -> Vec<Vec<String>> {
        self.vm
            .probe
            .sh(
                &format!("grep '^OUTPUT ' {READER_LOG}"),
                Duration::from_secs(30),
            )
            .unwrap_or_default()
            .iter()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    }

    /// The index of the output whose field `field` (2: name, 5: mode width) is `value`.
    pub fn output_where(&self, field: usize, value: &str) -> usize {
        let listed = self.outputs();
        listed
            .iter()
            .find_map(|f| {
                (f.get(field).map(String::as_str) == Some(value)).then(|| f[1].parse().ok())?
            })
            .unwrap_or_else(|| panic!("no reader output with field {field} = {value}: {listed:?}"))
    }

    /// Sends `(x, y)` on `display` until the reader sees the pointer within half a logical
    /// pixel of `want` (on `output`, when given), or `limit` passes; returns the last report.
    /// Each try first moves the pointer elsewhere, so that the point is motion even for a
    /// pointer that has not moved yet (which gives no `wl_pointer.enter`), and is sent again
    /// when the reader has not seen it within 400 ms: the server may have taken the device, or
    /// the bridge a new layout, only after it was sent.
    pub fn point(
        &self,
        ctl: &mut Qmp,
        display: usize,
        (x, y): (f64, f64),
        output: Option<usize>,
        want: (f64, f64),
        limit: Duration,
    ) -> Option<Report> {
        let start = Instant::now();
        let landed = |got: &Option<Report>| {
            got.is_some_and(|(o, gx, gy)| {
                output.is_none_or(|want_o| o == want_o) && within_half_pixel((gx, gy), want)
            })
        };
        let mut got = None;
        while start.elapsed() < limit {
            for (px, py) in [(0.3, 0.3), (x, y)] {
                let _ = ctl.execute(
                    "pvmouse-send",
                    json!({"display": display, "x": px, "y": py}),
                );
            }
            let window = Duration::from_millis(400).min(limit.saturating_sub(start.elapsed()));
            // Each check is a process in the guest, which shares its CPUs with the server: check
            // seldom enough that the checks do not slow what they wait for.
            match wait::until_every(
                "the reader's report",
                window,
                Duration::from_millis(150),
                || wait::when(self.position(), landed),
            ) {
                Ok(report) => return report,
                Err(_) => got = self.position(),
            }
        }
        got
    }

    /// A left click in the middle of `display`: what the reader last reported after the press,
    /// and after the release, each awaited up to 5 s for `output`.
    pub fn click(&self, ctl: &mut Qmp, display: usize, output: usize) -> [Option<ButtonReport>; 2] {
        [true, false].map(|down| {
            let _ = ctl.execute(
                "pvmouse-send",
                json!({"display": display, "x": 0.5, "y": 0.5, "buttons": {"left": down}}),
            );
            let seen = |got: &Option<ButtonReport>| *got == Some((output, BTN_LEFT, down));
            wait::until_every(
                "the reader's button report",
                Duration::from_secs(5),
                Duration::from_millis(150),
                || wait::when(self.button(), seen),
            )
            .unwrap_or_else(|_| self.button())
        })
    }

    /// Every point of [`POINTS`] on each head of a layout, then a click in its middle: the
    /// reader's reports, added to `tour`. `outputs[d]` is the reader's output for display d.
    pub fn visit(
        &self,
        ctl: &mut Qmp,
        layout: &'static str,
        heads: &[Head],
        outputs: &[usize],
        tour: &mut Tour,
    ) {
        for (display, (head, &output)) in heads.iter().zip(outputs).enumerate() {
            for point in POINTS {
                let want = head.expected_local(point.0, point.1);
                // A layout change reaches the bridge a moment after it is made: retry.
                let got = self.point(
                    ctl,
                    display,
                    point,
                    Some(output),
                    want,
                    Duration::from_secs(20),
                );
                tour.rows.push(Row {
                    layout,
                    display,
                    point,
                    output,
                    want,
                    got,
                });
            }
            let seen = self.click(ctl, display, output);
            for (down, got) in [true, false].into_iter().zip(seen) {
                tour.clicks.push(Click {
                    layout,
                    display,
                    output,
                    down,
                    got,
                });
            }
        }
    }

    /// The one-display check without the bridge: five pixel centres, edges included, on a
    /// 1280x1024 output that is the whole desktop. Returns (expected, reported) for each.
    pub fn raw_device_rows(&self, ctl: &mut Qmp) -> Vec<RawRow> {
        let head = Head::plain(0, 0, 1280, 1024);
        [(640, 512), (0, 0), (1279, 1023), (1, 1022), (1000, 3)]
            .into_iter()
            .map(|(px, py)| {
                let point = (
                    (f64::from(px) + 0.5) / 1280.0,
                    (f64::from(py) + 0.5) / 1024.0,
                );
                let want = head.expected_local(point.0, point.1);
                // The first point also waits for the server to pick the device up.
                (
                    want,
                    self.point(ctl, 0, point, None, want, Duration::from_secs(60)),
                )
            })
            .collect()
    }
}

/// A reader's pointer report: output index, x, y.
pub type Report = (usize, f64, f64);
/// A reader's button report: output index, Linux key code, pressed.
pub type ButtonReport = (usize, u16, bool);
/// One point of the one-display check: expected, reported.
pub type RawRow = ((f64, f64), Option<Report>);

/// One point of a layout test, and what the reader saw.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub layout: &'static str,
    pub display: usize,
    pub point: (f64, f64),
    pub output: usize,
    pub want: (f64, f64),
    pub got: Option<Report>,
}

/// One button transition of a layout test, and what the reader saw.
#[derive(Debug, Clone, Copy)]
pub struct Click {
    pub layout: &'static str,
    pub display: usize,
    pub output: usize,
    pub down: bool,
    pub got: Option<ButtonReport>,
}

/// What a layout test's reader reported, layout after layout ([`Reader::visit`]).
#[derive(Debug, Default)]
pub struct Tour {
    pub rows: Vec<Row>,
    pub clicks: Vec<Click>,
}

impl Tour {
    /// Prints the points and clicks as a table, then fails on the first point off by more
    /// than half a logical pixel or on the wrong output, or click not seen on its output.
    /// `logs` is what to show when nothing was reported at all.
    pub fn check(&self, server: &str, logs: &dyn Fn() -> String) {
        check_layout_rows(server, &self.rows, &self.clicks, logs);
    }
}

fn check_layout_rows(server: &str, rows: &[Row], clicks: &[Click], logs: &dyn Fn() -> String) {
    println!(
        "layout        display  x         y         expected (output, x, y)   {server} (output, x, y)"
    );
    for r in rows {
        println!(
            "{:<13} {}        {:<9.6} {:<9.6} ({}, {:.2}, {:.2})   {:?}",
            r.layout, r.display, r.point.0, r.point.1, r.output, r.want.0, r.want.1, r.got
        );
    }
    println!("clicks: {clicks:?}");
    for r in rows {
        let (o, gx, gy) = r
            .got
            .unwrap_or_else(|| panic!("no pointer report\n{}", logs()));
        let at = format!("{}: display {} {:?}", r.layout, r.display, r.point);
        assert_eq!(o, r.output, "{at}: on the wrong output");
        assert!(
            within_half_pixel((gx, gy), r.want),
            "{at}: {server} has ({gx}, {gy}), expected {:?}",
            r.want
        );
    }
    for c in clicks {
        assert_eq!(
            c.got,
            Some((c.output, BTN_LEFT, c.down)),
            "{}: display {}: the click was not seen on its output",
            c.layout,
            c.display
        );
    }
}

/// Prints the one-display check's points, then fails on the first off by more than half a
/// logical pixel.
pub fn check_raw_rows(server: &str, rows: &[RawRow], logs: &dyn Fn() -> String) {
    println!("raw pvmouse device in {server}, one 1280x1024 output (expected, {server}): {rows:?}");
    for (want, got) in rows {
        let (_, gx, gy) = got.unwrap_or_else(|| panic!("no pointer report\n{}", logs()));
        assert!(
            within_half_pixel((gx, gy), *want),
            "{server} has ({gx}, {gy}), expected {want:?}"
        );
    }
}

/// Waits until the host sees the guest bridge (`query-pvmouse`).
pub fn wait_for_bridge(ctl: &mut Qmp, limit: Duration) -> Result<(), String> {
    wait::status(ctl, "the host to hear the guest bridge", limit, |s| {
        s["bridge-present"] == true
    })
    .map(drop)
}

/// Waits until the device sends the guest positions in `want` coordinates (`query-pvmouse`'s
/// `guest-coordinates`): "desktop" once the bridge has handed it the layout and let go, so the
/// display server reads the device itself; "per-display" while the bridge maps. Returns how
/// long that took.
pub fn wait_for_coordinates(
    ctl: &mut Qmp,
    want: &str,
    limit: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    wait::status(
        ctl,
        &format!("the device to send {want} coordinates"),
        limit,
        |s| s["guest-coordinates"] == want,
    )
    .map(|_| start.elapsed())
}

/// Fails unless `server` drew head `index`'s logical origin (the reader's or the root tile's
/// red square) on the framebuffer pixel where `head`'s transform puts it: a screendump checks
/// the transform's direction against what the server really draws.
pub fn assert_origin_drawn(qemu: &mut Qmp, index: u32, head: &Head, server: &str, layout: &str) {
    let dump = std::env::temp_dir().join(format!("pvmouse-{server}-{}.ppm", std::process::id()));
    let picture = screendump(qemu, index, &dump)
        .unwrap_or_else(|e| panic!("{layout}: screendump of head {index}: {e}"));
    let _ = std::fs::remove_file(&dump);
    let (p, q) = head.framebuffer_pixel_of(0, 0);
    let red = picture.red_box();
    println!(
        "{layout}: head {index} red square at {red:?}; logical origin expected at framebuffer \
         ({p}, {q})"
    );
    let (px, qy) = (usize::try_from(p), usize::try_from(q));
    let (Ok(px), Ok(qy)) = (px, qy) else {
        panic!("{layout}: framebuffer pixel ({p}, {q}) is off the picture");
    };
    assert_eq!(
        picture.at(px, qy),
        [0xff, 0, 0],
        "{layout}: {server} did not draw head {index}'s logical origin at framebuffer ({p}, {q}) \
         where the transform puts it; red at {red:?}"
    );
}

/// Whether a report is within half a logical pixel of `want`.
pub fn within_half_pixel(got: (f64, f64), want: (f64, f64)) -> bool {
    (got.0 - want.0).abs() <= 0.5 && (got.1 - want.1).abs() <= 0.5
}

/// One head as a display server has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The scanout's size: what the host sees.
    pub framebuffer: (i32, i32),
    /// The logical rectangle: x, y, width, height.
    pub logical: (i32, i32, i32, i32),
    /// `wl_output.transform`, 0 … 7.
    pub transform: u8,
}

impl Head {
    /// A head shown as it is: no scale, no transform.
    pub const fn plain(x: i32, y: i32, width: i32, height: i32) -> Self {
        Self {
            framebuffer: (width, height),
            logical: (x, y, width, height),
            transform: 0,
        }
    }

    /// The logical pixel of the untransformed output that framebuffer pixel (p, q) shows:
    /// `wl_output.transform` turns the picture counter-clockwise, so with 1 (90) the logical
    /// top-left is drawn at the framebuffer's bottom-left, and with 3 (270) at its top-right
    /// (the sway test's screendump checks it).
    pub fn logical_pixel(&self, p: i32, q: i32) -> (i32, i32) {
        let (w, h) = self.framebuffer;
        match self.transform {
            1 => (h - 1 - q, p),
            2 => (w - 1 - p, h - 1 - q),
            3 => (q, w - 1 - p),
            4 => (w - 1 - p, q),
            5 => (q, p),
            6 => (p, h - 1 - q),
            7 => (h - 1 - q, w - 1 - p),
            _ => (p, q),
        }
    }

    /// The framebuffer pixel that shows logical-output pixel (u, v): the inverse of
    /// [`Head::logical_pixel`].
    pub fn framebuffer_pixel_of(&self, u: i32, v: i32) -> (i32, i32) {
        let (w, h) = self.framebuffer;
        match self.transform {
            1 => (v, h - 1 - u),
            2 => (w - 1 - u, h - 1 - v),
            3 => (w - 1 - v, u),
            4 => (w - 1 - u, v),
            5 => (v, u),
            6 => (u, h - 1 - v),
            7 => (w - 1 - v, h - 1 - u),
            _ => (u, v),
        }
    }

    /// Where a host position (0 … 1 on each axis) lands, in logical coordinates relative to the
    /// output's origin: the centre of the framebuffer pixel it means, through the transform
    /// and scale.
    pub fn expected_local(&self, x: f64, y: f64) -> (f64, f64) {
        let p = pixel(self.framebuffer.0, x);
        let q = pixel(self.framebuffer.1, y);
        let (u, v) = self.logical_pixel(p, q);
        let (tw, th) = if self.transform % 2 == 1 {
            (self.framebuffer.1, self.framebuffer.0)
        } else {
            self.framebuffer
        };
        let (_, _, lw, lh) = self.logical;
        (
            (f64::from(u) + 0.5) * f64::from(lw) / f64::from(tw),
            (f64::from(v) + 0.5) * f64::from(lh) / f64::from(th),
        )
    }

    /// The desktop pixel an X server puts the pointer on: the one that contains
    /// [`Head::expected_local`], offset by the output's position.
    pub fn expected_x_pixel(&self, x: f64, y: f64) -> (i32, i32) {
        let (lx, ly) = self.expected_local(x, y);
        (
            self.logical.0 + crate::round_to_i32(lx.floor()),
            self.logical.1 + crate::round_to_i32(ly.floor()),
        )
    }
}

/// An untransformed head scaled by an exact fraction, with the logical size cut to whole
/// pixels as wlroots cuts it: where a host position aims (spec/session.md §6), and which
/// framebuffer pixel a server that keeps fractions draws the pointer on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaledHead {
    pub framebuffer: (i32, i32),
    /// The logical rectangle: x, y, width, height.
    pub logical: (i32, i32, i32, i32),
    /// Framebuffer pixels per logical pixel: (framebuffer, logical).
    pub scale: (i32, i32),
}

impl ScaledHead {
    /// A `framebuffer` at `position` and `scale`, its logical size truncated (wlroots).
    pub const fn truncated(
        framebuffer: (i32, i32),
        position: (i32, i32),
        scale: (i32, i32),
    ) -> Self {
        Self {
            framebuffer,
            logical: (
                position.0,
                position.1,
                framebuffer.0 * scale.1 / scale.0,
                framebuffer.1 * scale.1 / scale.0,
            ),
            scale,
        }
    }

    /// The pixel nearest to (p, q) that the server lets the pointer reach: on each axis, the
    /// last whose span begins inside the logical rectangle.
    pub fn reachable(&self, (p, q): (i32, i32)) -> (i32, i32) {
        let (f, l) = self.scale;
        let last = |logical: i32, fb: i32| ((logical * f + l - 1) / l - 1).min(fb - 1);
        (
            p.min(last(self.logical.2, self.framebuffer.0)),
            q.min(last(self.logical.3, self.framebuffer.1)),
        )
    }

    /// The centre of pixel (p, q)'s span, cut to the logical rectangle, in logical
    /// coordinates from the output's origin.
    pub fn centre(&self, (p, q): (i32, i32)) -> (f64, f64) {
        let (f, l) = (f64::from(self.scale.0), f64::from(self.scale.1));
        let mid = |p: i32, logical: i32| {
            let start = f64::from(p) * l / f;
            let end = (f64::from(p + 1) * l / f).min(f64::from(logical));
            (start + end) / 2.0
        };
        (mid(p, self.logical.2), mid(q, self.logical.3))
    }

    /// The framebuffer pixel a server that keeps fractions draws the pointer on for a logical
    /// point from the output's origin: the point at the scale, truncated (wlroots).
    pub fn drawn(&self, (x, y): (f64, f64)) -> (i32, i32) {
        let k = f64::from(self.scale.0) / f64::from(self.scale.1);
        (
            crate::round_to_i32((x * k).floor()),
            crate::round_to_i32((y * k).floor()),
        )
    }
}

/// The smallest box (left, top, right, bottom, inclusive) that holds every pixel where two
/// pictures of one head differ: where the pointer is drawn, when it is the only change.
pub fn changed_box(before: &Picture, after: &Picture) -> Option<(usize, usize, usize, usize)> {
    if (before.width, before.height) != (after.width, after.height) {
        return None;
    }
    let mut found: Option<(usize, usize, usize, usize)> = None;
    for y in 0..after.height {
        for x in 0..after.width {
            if before.at(x, y) != after.at(x, y) {
                found = Some(found.map_or((x, y, x, y), |(l, t, r, b)| {
                    (l.min(x), t.min(y), r.max(x), b.max(y))
                }));
            }
        }
    }
    found
}

/// Virtual-1 as every two-output layout test has it: 1024x768 at the origin.
pub const VIRTUAL_1: Head = Head::plain(0, 0, 1024, 768);

/// Virtual-2 as the two-output layout tests have it: a 1280x1024 framebuffer, shown as the
/// logical rectangle `logical` (x, y, width, height) with `wl_output.transform` `transform`.
pub const fn virtual_2(logical: (i32, i32, i32, i32), transform: u8) -> Head {
    Head {
        framebuffer: (1280, 1024),
        logical,
        transform,
    }
}

/// spec/pvmouse.md §3.1: the pixel a normalised position means on an axis `size` pixels long.
pub fn pixel(size: i32, v: f64) -> i32 {
    let a = (v * 65535.0).round();
    crate::round_to_i32((a * f64::from(size) / 65535.0).floor()).min(size - 1)
}

/// A screendump: width, height and RGB bytes.
#[derive(Debug)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Picture {
    pub fn at(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// The bounding box (left, top, right, bottom, inclusive) of the pure red pixels.
    pub fn red_box(&self) -> Option<(usize, usize, usize, usize)> {
        let mut b: Option<(usize, usize, usize, usize)> = None;
        for y in 0..self.height {
            for x in 0..self.width {
                if self.at(x, y) == [0xff, 0, 0] {
                    b = Some(match b {
                        None => (x, y, x, y),
                        Some((l, t, r, bo)) => (l.min(x), t.min(y), r.max(x), bo.max(y)),
                    });
                }
            }
        }
        b
    }
}

/// The desktop guest's virtio-gpu, as `VmConfig::desktop` adds it.
pub const GPU_ID: &str = "gpu0";

/// QMP `screendump` of one head of the desktop guest's virtio-gpu, read back from its PPM file.
pub fn screendump(qemu: &mut Qmp, head: u32, file: &Path) -> std::io::Result<Picture> {
    let name = file
        .to_str()
        .ok_or_else(|| std::io::Error::other("a screendump path must be UTF-8"))?;
    qemu.execute(
        "screendump",
        json!({"filename": name, "device": GPU_ID, "head": head}),
    )?;
    read_ppm(&std::fs::read(file)?)
}

/// Heads side by side, tops aligned, on a dark background, as one PNG: what the monitors of a
/// desktop laid out left to right show.
pub fn write_side_by_side(pictures: &[Picture], path: &Path) -> std::io::Result<()> {
    let width: usize = pictures.iter().map(|p| p.width).sum();
    let height = pictures.iter().map(|p| p.height).max().unwrap_or(0);
    let mut rgb = vec![0x20u8; width * height * 3];
    let mut left = 0;
    for p in pictures {
        for y in 0..p.height {
            let from = &p.rgb[y * p.width * 3..(y + 1) * p.width * 3];
            let at = (y * width + left) * 3;
            rgb[at..at + from.len()].copy_from_slice(from);
        }
        left += p.width;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let to_u32 = |v: usize| u32::try_from(v).map_err(std::io::Error::other);
    let mut encoder = png::Encoder::new(file, to_u32(width)?, to_u32(height)?);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer.write_image_data(&rgb).map_err(std::io::Error::other)
}

/// A binary PPM (P6, maxval 255), as QEMU writes it.
pub fn read_ppm(bytes: &[u8]) -> std::io::Result<Picture> {
    let bad = |why: &str| std::io::Error::other(format!("not a PPM QEMU writes: {why}"));
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err(bad("short header"));
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    at += 1;
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(bad("not P6 with maxval 255"));
    }
    let width: usize = fields[1].parse().map_err(|_| bad("width"))?;
    let height: usize = fields[2].parse().map_err(|_| bad("height"))?;
    let rgb = bytes
        .get(at..at + width * height * 3)
        .ok_or_else(|| bad("short pixel data"))?
        .to_vec();
    Ok(Picture { width, height, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_are_inverted_exactly() {
        for t in 0..8 {
            let head = Head {
                framebuffer: (8, 6),
                logical: (0, 0, 8, 6),
                transform: t,
            };
            let (tw, th) = if t % 2 == 1 { (6, 8) } else { (8, 6) };
            for (u, v) in (0..tw).flat_map(|u| (0..th).map(move |v| (u, v))) {
                let (p, q) = head.framebuffer_pixel_of(u, v);
                assert!((0..8).contains(&p) && (0..6).contains(&q), "transform {t}");
                assert_eq!(head.logical_pixel(p, q), (u, v), "transform {t}");
            }
        }
    }

    #[test]
    fn a_scaled_head_halves_the_pixel_centre() {
        let head = Head {
            framebuffer: (1280, 1024),
            logical: (1024, 0, 640, 512),
            transform: 0,
        };
        assert_eq!(head.expected_local(0.0, 0.0), (0.25, 0.25));
        assert_eq!(head.expected_x_pixel(1.0, 1.0), (1024 + 639, 511));
    }
}
