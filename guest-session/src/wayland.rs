//! The layout of a Wayland session: `wl_output` (name, current mode, transform, scale) and,
//! where the compositor has it, `xdg-output` (the logical position and size in the global
//! space) and wlroots' output management (the exact scale, which `wl_output` rounds up to an
//! integer and `xdg-output`'s size rounds down). Compositors announce every change with
//! `done`, and outputs come and go as globals.

use pvmouse_spec::layout::Scale;
use pvmouse_spec::session::{PointerMode, SessionLayout, SessionOutput};
use wayland_client::protocol::{wl_output, wl_registry};
use wayland_client::{Connection, Dispatch, Proxy, QueueHandle, WEnum};
use wayland_protocols::xdg::xdg_output::zv1::client::{zxdg_output_manager_v1, zxdg_output_v1};
use wayland_protocols_wlr::output_management::v1::client::{
    zwlr_output_head_v1, zwlr_output_manager_v1, zwlr_output_mode_v1,
};

#[derive(Debug, thiserror::Error)]
pub enum WaylandError {
    #[error("cannot connect to the Wayland compositor: {0}")]
    Connect(#[from] wayland_client::ConnectError),
    #[error("Wayland compositor: {0}")]
    Dispatch(#[from] wayland_client::DispatchError),
}

#[derive(Debug)]
struct Output {
    global: u32,
    wl: wl_output::WlOutput,
    xdg: Option<zxdg_output_v1::ZxdgOutputV1>,
    name: Option<String>,
    xdg_name: Option<String>,
    position: (i32, i32),
    transform: u32,
    mode: Option<(i32, i32)>,
    scale: i32,
    logical_position: Option<(i32, i32)>,
    logical_size: Option<(i32, i32)>,
}

/// An output as wlroots' output management describes it: only what `wl_output` and
/// `xdg-output` lack.
#[derive(Debug)]
struct Head {
    wl: zwlr_output_head_v1::ZwlrOutputHeadV1,
    name: Option<String>,
    /// Framebuffer pixels per logical pixel, as the compositor draws (a wl_fixed).
    scale: Option<f64>,
}

#[derive(Debug, Default)]
struct State {
    outputs: Vec<Output>,
    heads: Vec<Head>,
    manager: Option<zxdg_output_manager_v1::ZxdgOutputManagerV1>,
    /// The compositor, told apart by its own globals.
    server: Option<&'static str>,
    changed: bool,
}

/// Which compositor owns a global, for the ones whose globals say so.
fn server_of(interface: &str) -> Option<&'static str> {
    if interface.starts_with("weston_") {
        Some("weston")
    } else if interface == "gtk_shell1" {
        Some("mutter")
    } else if interface.starts_with("org_kde_kwin") {
        Some("kwin")
    } else if interface.starts_with("zwlr_") {
        Some("wlroots")
    } else {
        None
    }
}

/// Weston maps an absolute pointer onto one output; the others spread it over the layout.
pub fn mode_for(server: &str) -> PointerMode {
    if server == "weston" {
        PointerMode::PerDisplay
    } else {
        PointerMode::Desktop
    }
}

impl State {
    fn watch_xdg(&mut self, qh: &QueueHandle<Self>) {
        if let Some(manager) = &self.manager {
            for o in self.outputs.iter_mut().filter(|o| o.xdg.is_none()) {
                o.xdg = Some(manager.get_xdg_output(&o.wl, qh, o.global));
            }
        }
    }

    fn layout(&self) -> SessionLayout {
        let server = self.server.unwrap_or("wayland");
        let outputs = self
            .outputs
            .iter()
            .filter_map(|o| {
                let (mw, mh) = o.mode?;
                let name = o.name.clone().or_else(|| o.xdg_name.clone());
                let swapped = o.transform % 2 == 1;
                let scale = o.scale.max(1);
                let (lw, lh) = o.logical_size.unwrap_or(if swapped {
                    (mh / scale, mw / scale)
                } else {
                    (mw / scale, mh / scale)
                });
                let (x, y) = o.logical_position.unwrap_or(o.position);
                let scale = name.as_ref().and_then(|n| {
                    let head = self.heads.iter().find(|h| h.name.as_ref() == Some(n))?;
                    Scale::from_f64(head.scale?)
                });
                Some(SessionOutput {
                    name,
                    x,
                    y,
                    width: u32::try_from(lw).ok()?,
                    height: u32::try_from(lh).ok()?,
                    mode_width: u32::try_from(mw).ok()?,
                    mode_height: u32::try_from(mh).ok()?,
                    transform: u8::try_from(o.transform).ok()?,
                    scale,
                })
            })
            .collect();
        SessionLayout {
            server: server.into(),
            mode: mode_for(server),
            outputs,
        }
    }
}

impl Dispatch<wl_registry::WlRegistry, ()> for State {
    fn event(
        state: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        match event {
            wl_registry::Event::Global {
                name,
                interface,
                version,
            } => {
                if let Some(server) = server_of(&interface) {
                    state.server.get_or_insert(server);
                }
                match interface.as_str() {
                    "wl_output" => {
                        let wl = registry.bind(name, version.min(4), qh, name);
                        state.outputs.push(Output {
                            global: name,
                            wl,
                            xdg: None,
                            name: None,
                            xdg_name: None,
                            position: (0, 0),
                            transform: 0,
                            mode: None,
                            scale: 1,
                            logical_position: None,
                            logical_size: None,
                        });
                        state.watch_xdg(qh);
                    }
                    "zxdg_output_manager_v1" => {
                        state.manager = Some(registry.bind(name, version.min(3), qh, ()));
                        state.watch_xdg(qh);
                    }
                    "zwlr_output_manager_v1" => {
                        let _: zwlr_output_manager_v1::ZwlrOutputManagerV1 =
                            registry.bind(name, version.min(2), qh, ());
                    }
                    _ => {}
                }
            }
            wl_registry::Event::GlobalRemove { name } => {
                let before = state.outputs.len();
                state.outputs.retain(|o| o.global != name);
                state.changed |= state.outputs.len() != before;
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_output::WlOutput, u32> for State {
    fn event(
        state: &mut Self,
        _: &wl_output::WlOutput,
        event: wl_output::Event,
        global: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let Some(o) = state.outputs.iter_mut().find(|o| o.global == *global) else {
            return;
        };
        match event {
            wl_output::Event::Geometry {
                x, y, transform, ..
            } => {
                o.position = (x, y);
                o.transform = match transform {
                    WEnum::Value(t) => u32::from(t),
                    WEnum::Unknown(v) => v,
                };
            }
            wl_output::Event::Mode {
                flags: WEnum::Value(flags),
                width,
                height,
                ..
            } if flags.contains(wl_output::Mode::Current) => o.mode = Some((width, height)),
            wl_output::Event::Scale { factor } => o.scale = factor,
            wl_output::Event::Name { name } => o.name = Some(name),
            wl_output::Event::Done => state.changed = true,
            _ => {}
        }
    }
}

impl Dispatch<zxdg_output_v1::ZxdgOutputV1, u32> for State {
    fn event(
        state: &mut Self,
        _: &zxdg_output_v1::ZxdgOutputV1,
        event: zxdg_output_v1::Event,
        global: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let Some(o) = state.outputs.iter_mut().find(|o| o.global == *global) else {
            return;
        };
        match event {
            zxdg_output_v1::Event::LogicalPosition { x, y } => o.logical_position = Some((x, y)),
            zxdg_output_v1::Event::LogicalSize { width, height } => {
                o.logical_size = Some((width, height));
            }
            zxdg_output_v1::Event::Name { name } => o.xdg_name = Some(name),
            zxdg_output_v1::Event::Done => state.changed = true,
            _ => {}
        }
    }
}

impl Dispatch<zwlr_output_manager_v1::ZwlrOutputManagerV1, ()> for State {
    fn event(
        state: &mut Self,
        _: &zwlr_output_manager_v1::ZwlrOutputManagerV1,
        event: zwlr_output_manager_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            zwlr_output_manager_v1::Event::Head { head } => state.heads.push(Head {
                wl: head,
                name: None,
                scale: None,
            }),
            zwlr_output_manager_v1::Event::Done { .. } => state.changed = true,
            _ => {}
        }
    }

    wayland_client::event_created_child!(State, zwlr_output_manager_v1::ZwlrOutputManagerV1, [
        zwlr_output_manager_v1::EVT_HEAD_OPCODE => (zwlr_output_head_v1::ZwlrOutputHeadV1, ()),
    ]);
}

impl Dispatch<zwlr_output_head_v1::ZwlrOutputHeadV1, ()> for State {
    fn event(
        state: &mut Self,
        head: &zwlr_output_head_v1::ZwlrOutputHeadV1,
        event: zwlr_output_head_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwlr_output_head_v1::Event::Finished = event {
            state.heads.retain(|h| h.wl.id() != head.id());
            return;
        }
        let Some(h) = state.heads.iter_mut().find(|h| h.wl.id() == head.id()) else {
            return;
        };
        match event {
            zwlr_output_head_v1::Event::Name { name } => h.name = Some(name),
            zwlr_output_head_v1::Event::Scale { scale } => h.scale = Some(scale),
            _ => {}
        }
    }

    wayland_client::event_created_child!(State, zwlr_output_head_v1::ZwlrOutputHeadV1, [
        zwlr_output_head_v1::EVT_MODE_OPCODE => (zwlr_output_mode_v1::ZwlrOutputModeV1, ()),
    ]);
}

wayland_client::delegate_noop!(State: ignore zxdg_output_manager_v1::ZxdgOutputManagerV1);
wayland_client::delegate_noop!(State: ignore zwlr_output_mode_v1::ZwlrOutputModeV1);

/// Reports the layout once the compositor has described every output, and again after every
/// change, until the compositor goes away.
pub fn watch(mut report: impl FnMut(SessionLayout) -> bool) -> Result<(), WaylandError> {
    let conn = Connection::connect_to_env()?;
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut state = State::default();
    // Globals, then each output's description and output management's heads, then
    // xdg-output's.
    for _ in 0..3 {
        queue.roundtrip(&mut state)?;
    }
    state.changed = false;
    if !report(state.layout()) {
        return Ok(());
    }
    loop {
        queue.blocking_dispatch(&mut state)?;
        if std::mem::take(&mut state.changed) && !report(state.layout()) {
            return Ok(());
        }
    }
}
