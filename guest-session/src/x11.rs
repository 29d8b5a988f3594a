//! The layout of an X11 session, from RandR: each active output's CRTC, whose geometry is in
//! screen coordinates after rotation and any `--scale` transform, with the mode it scans out.
//! RandR's notify events say when it changes.

use pvmouse_spec::layout::Scale;
use pvmouse_spec::session::{PointerMode, SessionLayout, SessionOutput};
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::randr::{ConnectionExt as _, NotifyMask, Rotation};
use x11rb::protocol::render;

#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    #[error("cannot connect to the X server: {0}")]
    Connect(#[from] x11rb::errors::ConnectError),
    #[error("X server: {0}")]
    Connection(#[from] x11rb::errors::ConnectionError),
    #[error("X server: {0}")]
    Reply(#[from] x11rb::errors::ReplyError),
    #[error("the X server has no RandR 1.3 or later")]
    NoRandr,
}

/// RandR's rotation and reflection as `wl_output.transform`. RandR rotates counter-clockwise,
/// as `wl_output` does; a reflection in y is a reflection in x turned half a circle.
pub fn transform(rotation: Rotation) -> u8 {
    let bits = u16::from(rotation);
    let mut quarter: u8 = if bits & u16::from(Rotation::ROTATE90) != 0 {
        1
    } else if bits & u16::from(Rotation::ROTATE180) != 0 {
        2
    } else if bits & u16::from(Rotation::ROTATE270) != 0 {
        3
    } else {
        0
    };
    let mut flip = bits & u16::from(Rotation::REFLECT_X) != 0;
    if bits & u16::from(Rotation::REFLECT_Y) != 0 {
        flip = !flip;
        quarter = (quarter + 2) % 4;
    }
    quarter + if flip { 4 } else { 0 }
}

/// The exact scale of a CRTC whose transform is a uniform scale (`xrandr --scale 1.5x1.5`), as
/// framebuffer pixels per screen pixel. RandR's matrix takes a framebuffer point to the screen
/// point it shows, in 16.16 fixed point, so a scale of 1.5 shows 1.5 screen pixels per
/// framebuffer pixel: 2/3 here. Any other transform (none, a shear, a projection) gives `None`,
/// and the bridge takes the ratio of the sizes, which is exact for an identity.
pub fn scale(t: &render::Transform) -> Option<Scale> {
    const ONE: i32 = 1 << 16;
    let uniform = t.matrix11 == t.matrix22
        && t.matrix11 > 0
        && [
            t.matrix12, t.matrix13, t.matrix21, t.matrix23, t.matrix31, t.matrix32,
        ] == [0; 6]
        && t.matrix33 == ONE;
    if !uniform || t.matrix11 == ONE {
        return None;
    }
    Scale::fraction(ONE.unsigned_abs().into(), t.matrix11.unsigned_abs().into())
}

fn read_layout(conn: &impl Connection, root: u32) -> Result<SessionLayout, X11Error> {
    let res = conn.randr_get_screen_resources_current(root)?.reply()?;
    let mut outputs = Vec::new();
    for output in &res.outputs {
        let info = conn
            .randr_get_output_info(*output, res.config_timestamp)?
            .reply()?;
        if info.crtc == x11rb::NONE {
            continue;
        }
        let crtc = conn
            .randr_get_crtc_info(info.crtc, res.config_timestamp)?
            .reply()?;
        let Some(mode) = res.modes.iter().find(|m| m.id == crtc.mode) else {
            continue;
        };
        let matrix = conn.randr_get_crtc_transform(info.crtc)?.reply()?;
        outputs.push(SessionOutput {
            name: Some(String::from_utf8_lossy(&info.name).into_owned()),
            x: i32::from(crtc.x),
            y: i32::from(crtc.y),
            width: u32::from(crtc.width),
            height: u32::from(crtc.height),
            mode_width: u32::from(mode.width),
            mode_height: u32::from(mode.height),
            transform: transform(crtc.rotation),
            scale: scale(&matrix.current_transform),
        });
    }
    Ok(SessionLayout {
        server: "x11".into(),
        mode: PointerMode::Desktop,
        outputs,
    })
}

/// Reports the layout now and after every RandR change, until the X server goes away.
pub fn watch(mut report: impl FnMut(SessionLayout) -> bool) -> Result<(), X11Error> {
    let (conn, screen) = x11rb::connect(None)?;
    let root = conn
        .setup()
        .roots
        .get(screen)
        .ok_or(X11Error::NoRandr)?
        .root;
    let version = conn.randr_query_version(1, 5)?.reply()?;
    if (version.major_version, version.minor_version) < (1, 3) {
        return Err(X11Error::NoRandr);
    }
    conn.randr_select_input(
        root,
        NotifyMask::SCREEN_CHANGE | NotifyMask::CRTC_CHANGE | NotifyMask::OUTPUT_CHANGE,
    )?;
    conn.flush()?;
    if !report(read_layout(&conn, root)?) {
        return Ok(());
    }
    loop {
        let changed = matches!(
            conn.wait_for_event()?,
            Event::RandrScreenChangeNotify(_) | Event::RandrNotify(_)
        );
        if changed && !report(read_layout(&conn, root)?) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled(s: i32) -> render::Transform {
        render::Transform {
            matrix11: s,
            matrix12: 0,
            matrix13: 0,
            matrix21: 0,
            matrix22: s,
            matrix23: 0,
            matrix31: 0,
            matrix32: 0,
            matrix33: 1 << 16,
        }
    }

    #[test]
    fn a_uniform_randr_scale_is_framebuffer_pixels_per_screen_pixel() {
        // xrandr --scale 1.5x1.5 and 1.25x1.25.
        assert_eq!(scale(&scaled(0x1_8000)), Scale::new(2, 3));
        assert_eq!(scale(&scaled(0x1_4000)), Scale::new(4, 5));
        // 1.3 is not a 16.16 number: the nearest fraction of 16-bit terms to 65536/85197.
        assert_eq!(scale(&scaled(85197)), Scale::fraction(65536, 85197));
        assert_eq!(scale(&scaled(1 << 16)), None, "no scale");
        let mut sheared = scaled(0x1_8000);
        sheared.matrix12 = 5;
        assert_eq!(scale(&sheared), None);
        let mut uneven = scaled(0x1_8000);
        uneven.matrix22 = 1 << 16;
        assert_eq!(scale(&uneven), None);
    }

    #[test]
    fn randr_rotations_are_wl_output_transforms() {
        assert_eq!(transform(Rotation::ROTATE0), 0);
        assert_eq!(transform(Rotation::ROTATE90), 1);
        assert_eq!(transform(Rotation::ROTATE270), 3);
        assert_eq!(transform(Rotation::ROTATE0 | Rotation::REFLECT_X), 4);
        assert_eq!(transform(Rotation::ROTATE0 | Rotation::REFLECT_Y), 6);
        assert_eq!(
            transform(Rotation::ROTATE0 | Rotation::REFLECT_X | Rotation::REFLECT_Y),
            2
        );
    }
}
