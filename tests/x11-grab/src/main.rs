//! `pvmouse-x11-grab`: what an X11 game does to lock the pointer, for the relative-mode test.
//!
//! It grabs the pointer (confined to the root window), listens to XI2 raw motion on the root
//! window, and after every raw event warps the pointer back to the screen's centre, as SDL's
//! relative mode does on X11. So the pointer stays put while the game reads the motion. One
//! line per raw motion event, with the device it came from and both values of each axis:
//!
//! ```text
//! GRABBED width height
//! RAW sourceid dx dy dx_raw dy_raw     (accelerated, then as the device sent them)
//! ```

use std::io::Write;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xinput::{ConnectionExt as _, EventMask, Fp3232, XIEventMask};
use x11rb::protocol::xproto::{ConnectionExt as _, EventMask as CoreMask, GrabMode, GrabStatus};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The harness reads lines; if it is gone there is no one to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn value(v: &Fp3232) -> f64 {
    f64::from(v.integral) + f64::from(v.frac) / 4_294_967_296.0
}

/// Axis `axis`'s value in a raw event, 0 if the event does not carry it.
fn axis(mask: &[u32], values: &[Fp3232], axis: usize) -> f64 {
    let set = |i: usize| mask.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0);
    if !set(axis) {
        return 0.0;
    }
    // Values are packed: the index is the number of set bits below this axis.
    let index = (0..axis).filter(|i| set(*i)).count();
    values.get(index).map_or(0.0, value)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (conn, screen) = x11rb::connect(None)?;
    let root = conn.setup().roots[screen].clone();
    let version = conn.xinput_xi_query_version(2, 2)?.reply()?;
    if (version.major_version, version.minor_version) < (2, 0) {
        return Err("the server has no XI2".into());
    }
    conn.xinput_xi_select_events(
        root.root,
        &[EventMask {
            deviceid: 0, // XIAllDevices: raw events come from the devices themselves
            mask: vec![XIEventMask::RAW_MOTION],
        }],
    )?;
    let grab = conn
        .grab_pointer(
            false,
            root.root,
            CoreMask::POINTER_MOTION,
            GrabMode::ASYNC,
            GrabMode::ASYNC,
            root.root,
            x11rb::NONE,
            x11rb::CURRENT_TIME,
        )?
        .reply()?;
    if grab.status != GrabStatus::SUCCESS {
        return Err(format!("the grab failed: {:?}", grab.status).into());
    }
    let (w, h) = (root.width_in_pixels, root.height_in_pixels);
    let centre = (
        i16::try_from(w / 2).unwrap_or(0),
        i16::try_from(h / 2).unwrap_or(0),
    );
    conn.warp_pointer(x11rb::NONE, root.root, 0, 0, 0, 0, centre.0, centre.1)?;
    conn.flush()?;
    say(&format!("GRABBED {w} {h}"));
    loop {
        if let Event::XinputRawMotion(e) = conn.wait_for_event()? {
            let m = &e.valuator_mask;
            say(&format!(
                "RAW {} {} {} {} {}",
                e.sourceid,
                axis(m, &e.axisvalues, 0),
                axis(m, &e.axisvalues, 1),
                axis(m, &e.axisvalues_raw, 0),
                axis(m, &e.axisvalues_raw, 1),
            ));
            conn.warp_pointer(x11rb::NONE, root.root, 0, 0, 0, 0, centre.0, centre.1)?;
            conn.flush()?;
        }
    }
}

// The raw-event parsing is the one piece worth checking on the host.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_values_are_packed_by_the_mask() {
        let v = |i: i32| Fp3232 {
            integral: i,
            frac: 0,
        };
        // Axes 1 and 3 set: values for 1 then 3.
        let mask = [0b1010];
        let values = [v(7), v(-2)];
        assert_eq!(axis(&mask, &values, 0), 0.0);
        assert_eq!(axis(&mask, &values, 1), 7.0);
        assert_eq!(axis(&mask, &values, 3), -2.0);
        let half = Fp3232 {
            integral: -1,
            frac: 1 << 31,
        };
        assert_eq!(value(&half), -0.5);
    }
}
