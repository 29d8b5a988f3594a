//! What the bridge reads from a pvmouse device, from a layout file and from a session agent, as
//! plain functions of bytes: the fuzz targets in `fuzz/` call these, and the normal test suite replays every
//! committed corpus entry through them. Each panics only if the bridge breaks an invariant.

use std::path::Path;

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{EV_ABS, EV_KEY, EV_MSC, EV_REL, EV_SYN};
use pvmouse_spec::profile::{ABS_CODES, KEY_CODES, POSITION_CODES, REL_CODES};

use crate::layout::{Layout, LayoutError, OUTPUT_MAX, ParseLayout};
use crate::mapper::{MAX_OUTPUT_EVENTS, Mapper};

/// Raw events as the kernel could hand them to the bridge, 8 bytes each: type (biased towards
/// the ones pvmouse sends), code, value. Every output frame fits, carries only what the desktop
/// pointer advertises, keeps ABS values in range and key values 0 or 1, and nothing stays held
/// after `release_all`.
pub fn raw_events(data: &[u8]) {
    let layout = Layout::parse_spec("0=1024x768@0,0,1=1280x1024@1024,0,5=10x10@-10,-10")
        .expect("a valid layout");
    let mut mapper = Mapper::new(layout);
    for e in data.chunks_exact(8) {
        let kind = [EV_SYN, EV_KEY, EV_REL, EV_ABS, EV_MSC, u16::from(e[1])][usize::from(e[0] % 6)];
        let code = match e[2] % 4 {
            // One past each set: a code the profile does not have.
            0 => pick(&ABS_CODES, e[3]),
            1 => pick(&KEY_CODES, e[3]),
            2 => pick(&REL_CODES, e[3]),
            _ => u16::from_le_bytes([e[3], e[1]]),
        };
        let value = i32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        if let Some(frame) = mapper.feed(InputEvent::new(kind, code, value)) {
            check_frame(frame.as_slice());
        }
    }
    check_frame(mapper.release_all().as_slice());
    assert!(
        mapper.release_all().is_empty(),
        "a second release_all has nothing left to release"
    );
}

/// One of `codes`, or (one time in `codes.len() + 1`) code 0x3ff, which no profile set has.
fn pick(codes: &[u16], selector: u8) -> u16 {
    codes
        .get(usize::from(selector) % (codes.len() + 1))
        .copied()
        .unwrap_or(0x3ff)
}

fn check_frame(frame: &[InputEvent]) {
    assert!(frame.len() <= MAX_OUTPUT_EVENTS);
    for e in frame {
        match e.kind {
            EV_ABS => {
                assert!(POSITION_CODES.contains(&e.code), "{e:?}");
                assert!((0..=OUTPUT_MAX).contains(&e.value), "{e:?}");
            }
            EV_KEY => {
                assert!(KEY_CODES.contains(&e.code), "{e:?}");
                assert!(e.value == 0 || e.value == 1, "{e:?}");
            }
            EV_REL => assert!(REL_CODES.contains(&e.code), "{e:?}"),
            _ => panic!("the pointer does not advertise {e:?}"),
        }
    }
}

/// A layout file and a `--layout` spec, from any text. A layout that loads maps every point
/// into the pointer's range; one that does not names the file and a line in the file's text.
pub fn layout_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Layout::parse_file(Path::new("fuzz.toml"), &text) {
        Ok(layout) => check_layout(&layout),
        Err(LayoutError::File { file, line, .. }) => {
            assert_eq!(file, "fuzz.toml");
            // An error at the very end (an unclosed value) is on the line after a final newline.
            let lines = text.matches('\n').count() + 1;
            assert!((1..=lines).contains(&line), "line {line} of {text:?}");
        }
        Err(e) => panic!("a file's error names the file: {e}"),
    }
    if let Ok(layout) = Layout::parse_spec(&text) {
        check_layout(&layout);
    }
}

fn check_layout(layout: &Layout) {
    for display in 0..=16u8 {
        for (x, y) in [(0, 0), (65535, 65535), (-5, 70000), (32768, 1)] {
            if let Some((u, v)) = layout.map(display, x, y) {
                assert!((0..=OUTPUT_MAX).contains(&u) && (0..=OUTPUT_MAX).contains(&v));
            }
        }
    }
}

/// One line from a session agent (spec/session.md), against two lit connectors and an unlit
/// one. A layout that is accepted maps every position onto a pixel inside its display's logical
/// rectangle, and into the pointers' ranges; a hostile output name never reaches a udev rule.
pub fn session_line(data: &[u8]) {
    use crate::layout::drm::Connector;
    use crate::pointers::is_plain_output_name;
    use pvmouse_spec::session::SessionLayout;

    let Ok(message) = serde_json::from_slice::<SessionLayout>(data) else {
        return;
    };
    let connectors = [
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
        Connector {
            name: "Virtual-3".into(),
            id: 2,
            mode: None,
        },
    ];
    let Ok((layout, ids)) = crate::layout::session::layout(&message, &connectors) else {
        return;
    };
    assert_eq!(ids.len(), message.outputs.len());
    for (id, display) in layout.displays() {
        assert!(ids.contains(&Some(id)), "display {id} was matched");
        assert!(
            display.name.as_deref().is_none_or(is_plain_output_name),
            "{:?}",
            display.name
        );
        let r = display.logical;
        for (x, y) in [(0, 0), (65535, 65535), (-5, 70000), (32768, 1), (1, 65534)] {
            let (px, py) = layout.to_desktop(id, x, y).expect("a known display");
            assert!(
                px >= i64::from(r.x)
                    && px < i64::from(r.x) + i64::from(r.width)
                    && py >= i64::from(r.y)
                    && py < i64::from(r.y) + i64::from(r.height),
                "({x}, {y}) on display {id} lands at ({px}, {py}), outside {r:?}"
            );
            for (u, v) in [
                layout.map(id, x, y).expect("mapped"),
                layout.map_on_display(id, x, y).expect("mapped"),
            ] {
                assert!((0..=OUTPUT_MAX).contains(&u) && (0..=OUTPUT_MAX).contains(&v));
            }
        }
    }
}
