//! A layout from the user's display server, as the session agent (`pvmouse-session`) reports
//! it: each output's logical rectangle, scale and transform, matched to its pvmouse display
//! through the output's name, which is its DRM connector's.

use std::collections::BTreeMap;

use pvmouse_spec::session::{SessionLayout, SessionOutput};

use super::drm::Connector;
use super::{Display, Layout, Rect, Transform};
use crate::pointers::is_plain_output_name;

/// The largest size the bridge believes, in pixels on either axis: far beyond any monitor, and
/// small enough that no mapping arithmetic can overflow.
const MAX_SIDE: u32 = 1 << 16;

/// The layout the agent's outputs describe, and the display id each output got (`None` for an
/// output that is not a connector of the card pvmouse's displays are on).
///
/// A named output is its connector. An unnamed one (Weston 10 tells no names) is the one lit
/// connector not claimed by name whose mode is the output's, when exactly one is; failing that,
/// if as many unnamed outputs as unclaimed lit connectors remain, they are paired in order,
/// left to right and top to bottom against connector order, which is how Weston places them.
pub fn layout(
    message: &SessionLayout,
    connectors: &[Connector],
) -> Result<(Layout, Vec<Option<u8>>), String> {
    let mut ids: Vec<Option<u8>> = Vec::with_capacity(message.outputs.len());
    let mut checked = Vec::with_capacity(message.outputs.len());
    for o in &message.outputs {
        checked.push(check(o)?);
        ids.push(
            o.name
                .as_ref()
                .and_then(|n| connectors.iter().find(|c| c.name == *n))
                .map(|c| c.id),
        );
    }
    let unclaimed = |ids: &[Option<u8>]| -> Vec<&Connector> {
        connectors
            .iter()
            .filter(|c| c.mode.is_some() && !ids.contains(&Some(c.id)))
            .collect()
    };
    for (i, o) in message.outputs.iter().enumerate() {
        if o.name.is_some() {
            continue;
        }
        let same_mode: Vec<&Connector> = unclaimed(&ids)
            .into_iter()
            .filter(|c| c.mode == Some((o.mode_width, o.mode_height)))
            .collect();
        if let [only] = same_mode[..] {
            ids[i] = Some(only.id);
        }
    }
    let mut unnamed: Vec<usize> = (0..ids.len()).filter(|i| ids[*i].is_none()).collect();
    let rest = unclaimed(&ids);
    if !unnamed.is_empty()
        && unnamed.len() == rest.len()
        && unnamed.iter().all(|i| message.outputs[*i].name.is_none())
    {
        unnamed.sort_by_key(|i| (message.outputs[*i].x, message.outputs[*i].y));
        for (i, c) in unnamed.into_iter().zip(rest) {
            ids[i] = Some(c.id);
        }
    }
    let mut displays = BTreeMap::new();
    for (i, (mut display, id)) in checked.into_iter().zip(&ids).enumerate() {
        let Some(id) = id else { continue };
        if display.name.is_none() {
            display.name = connectors
                .iter()
                .find(|c| c.id == *id)
                .map(|c| c.name.clone());
        }
        if displays.insert(*id, display).is_some() {
            return Err(format!(
                "output {} is listed twice",
                message.outputs[i].name.as_deref().unwrap_or("(unnamed)")
            ));
        }
    }
    if displays.is_empty() {
        return Err(format!(
            "no output matches a DRM connector (connectors: {})",
            connectors
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((Layout::with_displays(displays)?, ids))
}

fn check(o: &SessionOutput) -> Result<Display, String> {
    if let Some(name) = &o.name
        && !is_plain_output_name(name)
    {
        return Err(format!(
            "output name {name:?} is not a connector name (letters, digits, '-', '_', '.')"
        ));
    }
    let label = o.name.as_deref().unwrap_or("(unnamed)");
    let sides = [o.width, o.height, o.mode_width, o.mode_height];
    if sides.iter().any(|s| *s == 0 || *s > MAX_SIDE) {
        return Err(format!(
            "output {label}: sizes must be 1 … {MAX_SIDE} pixels"
        ));
    }
    let far = i64::from(MAX_SIDE) * 16;
    if i64::from(o.x).abs() > far || i64::from(o.y).abs() > far {
        return Err(format!("output {label}: position beyond ±{far}"));
    }
    let transform = Transform::from_wayland(o.transform)
        .ok_or_else(|| format!("output {label}: transform {} is not 0 … 7", o.transform))?;
    Ok(Display {
        logical: Rect {
            x: o.x,
            y: o.y,
            width: o.width,
            height: o.height,
        },
        framebuffer: (o.mode_width, o.mode_height),
        transform,
        name: o.name.clone(),
        scale: o.scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmouse_spec::profile::AXIS_MAX;
    use pvmouse_spec::session::PointerMode;

    fn output(
        name: &str,
        x: i32,
        y: i32,
        w: u32,
        h: u32,
        mode: (u32, u32),
        t: u8,
    ) -> SessionOutput {
        SessionOutput {
            name: (!name.is_empty()).then(|| name.into()),
            x,
            y,
            width: w,
            height: h,
            mode_width: mode.0,
            mode_height: mode.1,
            transform: t,
            scale: None,
        }
    }

    fn connectors() -> Vec<Connector> {
        vec![
            Connector {
                name: "Virtual-1".into(),
                id: 0,
                mode: Some((1024, 768)),
            },
            Connector {
                name: "Virtual-2".into(),
                id: 1,
                mode: Some((1280, 1024)),
            },
        ]
    }

    fn message(outputs: Vec<SessionOutput>) -> SessionLayout {
        SessionLayout {
            server: "test".into(),
            mode: PointerMode::Desktop,
            outputs,
        }
    }

    #[test]
    fn outputs_are_matched_by_connector_name() {
        let (l, ids) = layout(
            &message(vec![
                output("Virtual-2", 0, 0, 1280, 1024, (1280, 1024), 0),
                output("HDMI-A-9", 5000, 0, 10, 10, (10, 10), 0),
                output("Virtual-1", 1280, 0, 1024, 768, (1024, 768), 0),
            ]),
            &connectors(),
        )
        .unwrap();
        assert_eq!(ids, [Some(1), None, Some(0)]);
        assert_eq!(l.display(0).unwrap().x, 1280);
        assert_eq!(l.bounds().width, 2304);
    }

    #[test]
    fn unnamed_outputs_are_matched_by_mode_then_by_order() {
        let c = connectors();
        let (_, ids) = layout(
            &message(vec![
                output("", 0, 0, 1280, 1024, (1280, 1024), 0),
                output("", 1280, 0, 1024, 768, (1024, 768), 0),
            ]),
            &c,
        )
        .unwrap();
        assert_eq!(ids, [Some(1), Some(0)], "by mode");
        let mut same = c.clone();
        same[0].mode = Some((800, 600));
        same[1].mode = Some((800, 600));
        let (l, ids) = layout(
            &message(vec![
                output("", 800, 0, 800, 600, (800, 600), 0),
                output("", 0, 0, 800, 600, (800, 600), 0),
            ]),
            &same,
        )
        .unwrap();
        assert_eq!(ids, [Some(1), Some(0)], "left to right in connector order");
        assert_eq!(
            l.displays()
                .map(|(_, d)| d.name.clone())
                .collect::<Vec<_>>(),
            [Some("Virtual-1".to_owned()), Some("Virtual-2".to_owned())],
            "the matched connector names the display, for per-display binding"
        );
    }

    #[test]
    fn hostile_outputs_are_refused() {
        let c = connectors();
        let bad = [
            output("Virtual-1\", RUN+=\"/bin/sh", 0, 0, 10, 10, (10, 10), 0),
            output("Virtual-1", 0, 0, 0, 10, (10, 10), 0),
            output("Virtual-1", 0, 0, 10, 10, (10, u32::MAX), 0),
            output("Virtual-1", i32::MIN, 0, 10, 10, (10, 10), 0),
            output("Virtual-1", 0, 0, 10, 10, (10, 10), 8),
        ];
        for o in bad {
            assert!(layout(&message(vec![o.clone()]), &c).is_err(), "{o:?}");
        }
        let twice = vec![
            output("Virtual-1", 0, 0, 10, 10, (10, 10), 0),
            output("Virtual-1", 10, 0, 10, 10, (10, 10), 0),
        ];
        assert!(layout(&message(twice), &c).is_err());
        assert!(layout(&message(vec![]), &c).is_err());
        let overlap = vec![
            output("Virtual-1", 0, 0, 10, 10, (10, 10), 0),
            output("Virtual-2", 5, 0, 10, 10, (10, 10), 0),
        ];
        assert!(layout(&message(overlap), &c).is_err());
    }

    #[test]
    fn a_scaled_output_maps_framebuffer_pixels_to_logical_points() {
        // 1024x768 at scale 2: 512x384 logical, right of a 1280x1024 output.
        let (l, _) = layout(
            &message(vec![
                output("Virtual-1", 1280, 0, 512, 384, (1024, 768), 0),
                output("Virtual-2", 0, 0, 1280, 1024, (1280, 1024), 0),
            ]),
            &connectors(),
        )
        .unwrap();
        // Framebuffer pixel 0 (centre 0.5) is logical 0.25; pixel 1023 is 511.75.
        assert_eq!(l.to_desktop(0, 0, 0), Some((1280, 0)));
        assert_eq!(l.to_desktop(0, AXIS_MAX, AXIS_MAX), Some((1791, 383)));
        let (u, _) = l.map(0, 0, 0).unwrap();
        let want = (1280.25 / 1792.0 * 65535.0_f64).round();
        assert_eq!(f64::from(u), want);
    }

    #[test]
    fn a_rotated_output_shows_its_logical_top_right_at_the_framebuffer_origin() {
        // wl_output transform 90: the picture turned a quarter counter-clockwise, so the logical
        // top-left is at the framebuffer's bottom-left and its top-right at the origin.
        let (l, _) = layout(
            &message(vec![output("Virtual-2", 0, 0, 1024, 1280, (1280, 1024), 1)]),
            &connectors(),
        )
        .unwrap();
        assert_eq!(l.to_desktop(1, 0, 0), Some((1023, 0)));
        assert_eq!(l.to_desktop(1, AXIS_MAX, 0), Some((1023, 1279)));
        assert_eq!(l.to_desktop(1, 0, AXIS_MAX), Some((0, 0)));
    }
}
