//! `pvmouse-wl-reader`: the harness's independent pointer reader for Wayland compositors.
//!
//! It puts one fullscreen surface on every output and prints, one line each, what the
//! compositor tells it: the outputs, then where the pointer enters, moves and clicks, in the
//! surface's own (logical) coordinates. It asks the compositor, never pvmouse. Each surface is
//! grey with a red 16×16 square at its top-left corner, so that a screendump shows where the
//! compositor drew each output's logical origin. With `--trail` it also draws where the pointer
//! goes (small dark dots) and where it clicks (orange squares), for the demo's screenshot.
//!
//! With `--lock` it is a game that locks the pointer: when the pointer first enters one of its
//! surfaces it locks it there (`zwp_pointer_constraints_v1`, persistently) and prints the
//! relative motion it gets (`zwp_relative_pointer_v1`), accelerated and not.
//!
//! ```text
//! OUTPUT index name x y width height scale     (wl_output: position, current mode, scale)
//! READY
//! ENTER index x y | MOTION index x y | BUTTON index code pressed|released | LEAVE index
//! LOCKED | UNLOCKED | RELATIVE dx dy dx_unaccel dy_unaccel       (with --lock)
//! ```

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use wayland_client::protocol::{
    wl_buffer, wl_compositor, wl_output, wl_pointer, wl_registry, wl_seat, wl_shm, wl_shm_pool,
    wl_surface,
};
use wayland_client::{Connection, Dispatch, QueueHandle, WEnum, delegate_noop};
use wayland_protocols::wp::pointer_constraints::zv1::client::{
    zwp_locked_pointer_v1, zwp_pointer_constraints_v1,
};
use wayland_protocols::wp::relative_pointer::zv1::client::{
    zwp_relative_pointer_manager_v1, zwp_relative_pointer_v1,
};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

#[derive(Debug, Default)]
struct Output {
    wl: Option<wl_output::WlOutput>,
    name: String,
    position: (i32, i32),
    mode: (i32, i32),
    scale: i32,
    surface: Option<wl_surface::WlSurface>,
    toplevel: Option<xdg_toplevel::XdgToplevel>,
    size: (i32, i32),
    /// The surface's buffer and the file behind it, to draw the trail into.
    canvas: Option<Canvas>,
}

/// A buffer the compositor shows, drawn into through its file.
#[derive(Debug)]
struct Canvas {
    file: File,
    buffer: wl_buffer::WlBuffer,
    width: i32,
    height: i32,
}

impl Canvas {
    /// A `side`×`side` square of `bgr` centred on (x, y), then shown.
    fn dot(&self, surface: &wl_surface::WlSurface, x: f64, y: f64, side: i32, bgr: [u8; 3]) {
        let (cx, cy) = (x.floor(), y.floor());
        let half = side / 2;
        let pixel = [bgr[0], bgr[1], bgr[2], 0xff];
        let mut row = Vec::with_capacity(usize::try_from(side).unwrap_or(0) * 4);
        for _ in 0..side {
            row.extend_from_slice(&pixel);
        }
        #[expect(clippy::cast_possible_truncation, reason = "surface coordinates")]
        let (left, top) = (cx as i32 - half, cy as i32 - half);
        for dy in 0..side {
            let (py, px) = (top + dy, left.max(0));
            let right = (left + side).min(self.width);
            if py < 0 || py >= self.height || px >= right {
                continue;
            }
            let bytes = usize::try_from((right - px) * 4).unwrap_or(0);
            if let Ok(at) = u64::try_from((py * self.width + px) * 4) {
                let _ = self.file.write_all_at(&row[..bytes.min(row.len())], at);
            }
        }
        surface.attach(Some(&self.buffer), 0, 0);
        surface.damage_buffer(left, top, side, side);
        surface.commit();
    }
}

#[derive(Debug, Default)]
struct Reader {
    /// `--trail`: draw where the pointer goes, and its clicks.
    trail: bool,
    /// `--lock`: lock the pointer on first entry and report relative motion.
    lock: bool,
    constraints: Option<zwp_pointer_constraints_v1::ZwpPointerConstraintsV1>,
    relative: Option<zwp_relative_pointer_manager_v1::ZwpRelativePointerManagerV1>,
    locked: Option<zwp_locked_pointer_v1::ZwpLockedPointerV1>,
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    outputs: Vec<Output>,
    /// The output whose surface has the pointer.
    focus: Option<usize>,
    /// Where on it.
    position: (f64, f64),
}

impl Reader {
    fn draw(&self, output: usize, side: i32, bgr: [u8; 3]) {
        let Some(o) = self.outputs.get(output).filter(|_| self.trail) else {
            return;
        };
        if let (Some(canvas), Some(surface)) = (&o.canvas, &o.surface) {
            canvas.dot(surface, self.position.0, self.position.1, side, bgr);
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The harness reads lines; if it is gone there is no one to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl Dispatch<wl_registry::WlRegistry, ()> for Reader {
    fn event(
        state: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        let wl_registry::Event::Global {
            name,
            interface,
            version,
        } = event
        else {
            return;
        };
        match interface.as_str() {
            "wl_compositor" => state.compositor = Some(registry.bind(name, version.min(4), qh, ())),
            "wl_shm" => state.shm = Some(registry.bind(name, 1, qh, ())),
            "xdg_wm_base" => state.wm_base = Some(registry.bind(name, 1, qh, ())),
            "wl_seat" => {
                registry.bind::<wl_seat::WlSeat, _, _>(name, 1, qh, ());
            }
            "zwp_pointer_constraints_v1" if state.lock => {
                state.constraints = Some(registry.bind(name, 1, qh, ()));
            }
            "zwp_relative_pointer_manager_v1" if state.lock => {
                state.relative = Some(registry.bind(name, 1, qh, ()));
            }
            "wl_output" => {
                let index = state.outputs.len();
                let wl = registry.bind(name, version.min(4), qh, index);
                state.outputs.push(Output {
                    wl: Some(wl),
                    name: format!("output{index}"),
                    scale: 1,
                    ..Output::default()
                });
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_output::WlOutput, usize> for Reader {
    fn event(
        state: &mut Self,
        _: &wl_output::WlOutput,
        event: wl_output::Event,
        index: &usize,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let Some(output) = state.outputs.get_mut(*index) else {
            return;
        };
        match event {
            wl_output::Event::Geometry { x, y, .. } => output.position = (x, y),
            wl_output::Event::Mode {
                flags: WEnum::Value(flags),
                width,
                height,
                ..
            } if flags.contains(wl_output::Mode::Current) => output.mode = (width, height),
            wl_output::Event::Scale { factor } => output.scale = factor,
            wl_output::Event::Name { name } => output.name = name,
            _ => {}
        }
    }
}

impl Dispatch<wl_seat::WlSeat, ()> for Reader {
    fn event(
        state: &mut Self,
        seat: &wl_seat::WlSeat,
        event: wl_seat::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_seat::Event::Capabilities {
            capabilities: WEnum::Value(caps),
        } = event
        {
            if caps.contains(wl_seat::Capability::Pointer) {
                let pointer = seat.get_pointer(qh, ());
                if let Some(manager) = &state.relative {
                    manager.get_relative_pointer(&pointer, qh, ());
                }
            }
        }
    }
}

impl Dispatch<wl_pointer::WlPointer, ()> for Reader {
    fn event(
        state: &mut Self,
        pointer: &wl_pointer::WlPointer,
        event: wl_pointer::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        match event {
            wl_pointer::Event::Enter {
                surface,
                surface_x,
                surface_y,
                ..
            } => {
                state.focus = state
                    .outputs
                    .iter()
                    .position(|o| o.surface.as_ref() == Some(&surface));
                state.position = (surface_x, surface_y);
                if let Some(i) = state.focus {
                    say(&format!("ENTER {i} {surface_x} {surface_y}"));
                }
                if let (Some(constraints), None) = (&state.constraints, &state.locked) {
                    state.locked = Some(constraints.lock_pointer(
                        &surface,
                        pointer,
                        None,
                        zwp_pointer_constraints_v1::Lifetime::Persistent,
                        qh,
                        (),
                    ));
                }
            }
            wl_pointer::Event::Leave { .. } => {
                if let Some(i) = state.focus.take() {
                    say(&format!("LEAVE {i}"));
                }
            }
            wl_pointer::Event::Motion {
                surface_x,
                surface_y,
                ..
            } => {
                if let Some(i) = state.focus {
                    say(&format!("MOTION {i} {surface_x} {surface_y}"));
                    state.position = (surface_x, surface_y);
                    state.draw(i, 6, [0x30, 0x30, 0x30]);
                }
            }
            wl_pointer::Event::Button {
                button,
                state: pressed,
                ..
            } => {
                if let Some(i) = state.focus {
                    let what = match pressed {
                        WEnum::Value(wl_pointer::ButtonState::Pressed) => "pressed",
                        _ => "released",
                    };
                    say(&format!("BUTTON {i} {button} {what}"));
                    if what == "pressed" {
                        state.draw(i, 14, [0x00, 0x80, 0xf0]);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for Reader {
    fn event(
        _: &mut Self,
        wm_base: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm_base.pong(serial);
        }
    }
}

impl Dispatch<xdg_toplevel::XdgToplevel, usize> for Reader {
    fn event(
        state: &mut Self,
        _: &xdg_toplevel::XdgToplevel,
        event: xdg_toplevel::Event,
        index: &usize,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_toplevel::Event::Configure { width, height, .. } = event {
            if let Some(output) = state.outputs.get_mut(*index) {
                output.size = (width, height);
            }
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, usize> for Reader {
    fn event(
        state: &mut Self,
        xdg_surface: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        index: &usize,
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        let xdg_surface::Event::Configure { serial } = event else {
            return;
        };
        xdg_surface.ack_configure(serial);
        let (Some(output), Some(shm)) = (state.outputs.get(*index), state.shm.as_ref()) else {
            return;
        };
        // A compositor that leaves the size to the client gets one the size of the output.
        let (w, h) = match output.size {
            (w, h) if w > 0 && h > 0 => (w, h),
            _ => (output.mode.0.max(1), output.mode.1.max(1)),
        };
        let Some(surface) = output.surface.clone() else {
            return;
        };
        match buffer(shm, qh, w, h) {
            Ok((file, buffer)) => {
                surface.attach(Some(&buffer), 0, 0);
                surface.commit();
                if let Some(output) = state.outputs.get_mut(*index) {
                    output.canvas = Some(Canvas {
                        file,
                        buffer,
                        width: w,
                        height: h,
                    });
                }
            }
            Err(e) => say(&format!("ERROR buffer: {e}")),
        }
    }
}

/// The side of the red square each surface has at its top-left corner: a screendump shows
/// where the compositor put the output's logical origin in the framebuffer.
const MARKER: i32 = 16;

/// A `w`×`h` buffer of opaque grey with a red [`MARKER`] at its origin, in a file under `$XDG_RUNTIME_DIR` that is unlinked at
/// once (the compositor maps it through the descriptor).
fn buffer(
    shm: &wl_shm::WlShm,
    qh: &QueueHandle<Reader>,
    w: i32,
    h: i32,
) -> std::io::Result<(File, wl_buffer::WlBuffer)> {
    let dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into());
    let path = format!("{dir}/pvmouse-wl-reader-{}-{w}x{h}", std::process::id());
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    let stride = w
        .checked_mul(4)
        .ok_or_else(|| std::io::Error::other("width"))?;
    let len = stride
        .checked_mul(h)
        .ok_or_else(|| std::io::Error::other("size"))?;
    let bytes = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut pixels = vec![0x80; bytes];
    // Xrgb8888 is little-endian: blue, green, red, unused.
    for row in 0..MARKER.min(h) {
        for col in 0..MARKER.min(w) {
            if let Ok(at) = usize::try_from(row * stride + col * 4) {
                pixels[at..at + 4].copy_from_slice(&[0, 0, 0xff, 0xff]);
            }
        }
    }
    file.write_all(&pixels)?;
    let pool = shm.create_pool(file.as_fd(), len, qh, ());
    let buffer = pool.create_buffer(0, w, h, stride, wl_shm::Format::Xrgb8888, qh, ());
    pool.destroy();
    Ok((file, buffer))
}

delegate_noop!(Reader: ignore wl_compositor::WlCompositor);
delegate_noop!(Reader: ignore wl_surface::WlSurface);
impl Dispatch<zwp_locked_pointer_v1::ZwpLockedPointerV1, ()> for Reader {
    fn event(
        _: &mut Self,
        _: &zwp_locked_pointer_v1::ZwpLockedPointerV1,
        event: zwp_locked_pointer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            zwp_locked_pointer_v1::Event::Locked => say("LOCKED"),
            zwp_locked_pointer_v1::Event::Unlocked => say("UNLOCKED"),
            _ => {}
        }
    }
}

impl Dispatch<zwp_relative_pointer_v1::ZwpRelativePointerV1, ()> for Reader {
    fn event(
        _: &mut Self,
        _: &zwp_relative_pointer_v1::ZwpRelativePointerV1,
        event: zwp_relative_pointer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwp_relative_pointer_v1::Event::RelativeMotion {
            dx,
            dy,
            dx_unaccel,
            dy_unaccel,
            ..
        } = event
        {
            say(&format!("RELATIVE {dx} {dy} {dx_unaccel} {dy_unaccel}"));
        }
    }
}

delegate_noop!(Reader: ignore zwp_pointer_constraints_v1::ZwpPointerConstraintsV1);
delegate_noop!(Reader: ignore zwp_relative_pointer_manager_v1::ZwpRelativePointerManagerV1);
delegate_noop!(Reader: ignore wl_shm::WlShm);
delegate_noop!(Reader: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Reader: ignore wl_buffer::WlBuffer);

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvmouse-wl-reader: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = Connection::connect_to_env()?;
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut reader = Reader {
        trail: std::env::args().any(|a| a == "--trail"),
        lock: std::env::args().any(|a| a == "--lock"),
        ..Reader::default()
    };
    // The globals, then what each output says about itself.
    queue.roundtrip(&mut reader)?;
    queue.roundtrip(&mut reader)?;
    let (Some(compositor), Some(wm_base)) = (reader.compositor.clone(), reader.wm_base.clone())
    else {
        return Err("the compositor offers no wl_compositor or xdg_wm_base".into());
    };
    if reader.lock && (reader.constraints.is_none() || reader.relative.is_none()) {
        return Err(
            "--lock: the compositor offers no pointer constraints or relative pointer".into(),
        );
    }
    for (i, output) in reader.outputs.iter_mut().enumerate() {
        say(&format!(
            "OUTPUT {i} {} {} {} {} {} {}",
            output.name,
            output.position.0,
            output.position.1,
            output.mode.0,
            output.mode.1,
            output.scale
        ));
        let surface = compositor.create_surface(&qh, ());
        let xdg = wm_base.get_xdg_surface(&surface, &qh, i);
        let toplevel = xdg.get_toplevel(&qh, i);
        toplevel.set_title(format!("pvmouse-wl-reader {i}"));
        toplevel.set_fullscreen(output.wl.as_ref());
        surface.commit();
        output.surface = Some(surface);
        output.toplevel = Some(toplevel);
    }
    queue.roundtrip(&mut reader)?;
    // mutter without a shell puts every new window on one monitor and keeps it there; asking
    // again once the surfaces are mapped moves each to its output. Others are unmoved by it.
    for output in &reader.outputs {
        if let Some(toplevel) = &output.toplevel {
            toplevel.set_fullscreen(output.wl.as_ref());
        }
    }
    queue.roundtrip(&mut reader)?;
    queue.roundtrip(&mut reader)?;
    say("READY");
    loop {
        queue.blocking_dispatch(&mut reader)?;
    }
}
