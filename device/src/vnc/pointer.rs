//! A viewer's `PointerEvent`s as pvmouse input: the position normalised by the head's current
//! framebuffer size, aimed at the pixel's centre (spec/pvmouse.md §3.1, so the guest gets the
//! exact pixel the viewer pointed at), the button mask as the buttons' states, and buttons 4 to 7
//! as wheel detents.

use serde_json::{Map, Value, json};

/// RFB button-mask bits that are buttons, and pvmouse's names for them. Bit 7 is X's button 8,
/// "back", which Linux reports as BTN_SIDE.
const BUTTONS: [(u8, &str); 4] = [(0, "left"), (1, "middle"), (2, "right"), (7, "side")];
/// Wheel bits (buttons 4 to 7): axis and hi-res units per press, 120 a detent.
const WHEELS: [(u8, &str, i32); 4] = [
    (3, "vertical", 120),
    (4, "vertical", -120),
    (5, "horizontal", -120),
    (6, "horizontal", 120),
];

#[derive(Debug, Clone)]
pub struct PointerRouter {
    display: u8,
    mask: u8,
}

impl PointerRouter {
    pub fn new(display: u8) -> Self {
        Self { display, mask: 0 }
    }

    /// The `pvmouse-send` arguments for one `PointerEvent`, on a framebuffer of `size`.
    pub fn arguments(&mut self, mask: u8, x: u16, y: u16, size: (u16, u16)) -> Value {
        let axis = |v: u16, size: u16| {
            let size = size.max(1);
            (f64::from(v.min(size - 1)) + 0.5) / f64::from(size)
        };
        let mut args = Map::new();
        args.insert("display".into(), json!(self.display));
        args.insert("x".into(), json!(axis(x, size.0)));
        args.insert("y".into(), json!(axis(y, size.1)));
        let changed = mask ^ self.mask;
        let mut buttons = Map::new();
        for (bit, name) in BUTTONS {
            if changed & (1 << bit) != 0 {
                buttons.insert(name.into(), json!(mask & (1 << bit) != 0));
            }
        }
        if !buttons.is_empty() {
            args.insert("buttons".into(), Value::Object(buttons));
        }
        let pressed = mask & !self.mask;
        let (mut vertical, mut horizontal) = (0, 0);
        for (bit, axis, units) in WHEELS {
            if pressed & (1 << bit) != 0 {
                match axis {
                    "vertical" => vertical += units,
                    _ => horizontal += units,
                }
            }
        }
        if vertical != 0 || horizontal != 0 {
            args.insert(
                "wheel".into(),
                json!({"vertical": vertical, "horizontal": horizontal}),
            );
        }
        self.mask = mask;
        Value::Object(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_aim_at_pixel_centres_and_the_mask_becomes_transitions_and_detents() {
        let mut r = PointerRouter::new(1);
        let a = r.arguments(0, 0, 1023, (1280, 1024));
        assert_eq!(a["display"], 1);
        assert_eq!(a["x"], json!(0.5 / 1280.0));
        assert_eq!(a["y"], json!(1023.5 / 1024.0));
        assert!(a.get("buttons").is_none() && a.get("wheel").is_none());
        let a = r.arguments(0b1, 10, 10, (1280, 1024));
        assert_eq!(a["buttons"], json!({"left": true}));
        let a = r.arguments(0b1001, 10, 10, (1280, 1024));
        assert_eq!(a["wheel"], json!({"vertical": 120, "horizontal": 0}));
        assert!(a.get("buttons").is_none(), "left still held: no change");
        let a = r.arguments(0b1, 10, 10, (1280, 1024));
        assert!(a.get("wheel").is_none(), "a release scrolls nothing");
        let a = r.arguments(0b100_0001, 10, 10, (1280, 1024));
        assert_eq!(a["wheel"], json!({"vertical": 0, "horizontal": 120}));
        let a = r.arguments(0, 5000, 5000, (1280, 1024));
        assert_eq!(a["buttons"], json!({"left": false}));
        assert_eq!(
            a["x"],
            json!(1279.5 / 1280.0),
            "past the edge is the last pixel"
        );
    }
}
