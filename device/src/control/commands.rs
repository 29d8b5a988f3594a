//! The control commands: turning QMP arguments into validated pointer actions, and reporting
//! the device's state. Everything is checked before anything reaches the device, so a bad
//! command changes nothing.

use pvmouse_spec::control::reply::Relative;
use pvmouse_spec::control::reply::{GuestCoordinates, Pointer, Status};
use pvmouse_spec::control::{MAX_REL_MOTION, MAX_WHEEL_HI_RES, QEMU_ABS_MAX, command};
use pvmouse_spec::profile::{AXIS_MAX, Button, HI_RES_PER_DETENT, PointerMode};
use serde_json::{Map, Value, json};

use super::args::Args;
use super::qmp::{QmpError, Request};
use crate::device::{DeviceStatus, PointerDevice, SubmitError};
use crate::identity::Identity;
use crate::keeper::worker::{NOT_UPGRADABLE, Upgrade};
use crate::pointer::{PointerAction, WheelAxis};

/// One control command: its name, as `query-commands` lists it, and what it does in a session
/// that has negotiated capabilities.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    run: Handler,
}

/// A command's work: the device, the connection's session and the command's arguments in, the
/// `return` value out.
type Handler = fn(&dyn PointerDevice, &mut Session, &Map<String, Value>) -> Result<Value, QmpError>;

/// Every command, for dispatch and for `query-commands` alike.
pub const COMMANDS: &[Command] = &[
    Command {
        name: command::QMP_CAPABILITIES,
        run: |_, _, _| {
            Err(QmpError::command_not_found(
                "Capabilities negotiation is already complete, command ignored",
            ))
        },
    },
    Command {
        name: command::INPUT_SEND_EVENT,
        run: |device, session, args| {
            let actions = parse_input_send_event(args, device.identity())?;
            submit(device, &mut session.held, &actions)
        },
    },
    Command {
        name: command::PVMOUSE_SEND,
        run: |device, session, args| {
            let actions = parse_pvmouse_send(args, device.identity())?;
            submit(device, &mut session.held, &actions)
        },
    },
    Command {
        name: command::PVMOUSE_SET_MODE,
        run: |device, session, args| {
            let mut a = Args::new(args, "");
            let name = a.str("mode")?;
            a.finish()?;
            let mode = PointerMode::from_name(name).ok_or_else(|| {
                QmpError::generic(format!(
                    "Parameter 'mode' does not accept value '{name}' (absolute or relative)"
                ))
            })?;
            submit(device, &mut session.held, &[PointerAction::Mode(mode)])
        },
    },
    Command {
        name: command::QUERY_PVMOUSE,
        run: |device, _, args| {
            Args::new(args, "").finish()?;
            Ok(status_json(device.identity(), &device.status()))
        },
    },
    Command {
        name: command::QUERY_VERSION,
        run: |_, _, args| {
            Args::new(args, "").finish()?;
            Ok(super::qmp::greeting(crate::VERSION)["QMP"]["version"].clone())
        },
    },
    Command {
        name: command::PVMOUSE_UPGRADE,
        run: |_, session, args| {
            Args::new(args, "").finish()?;
            let upgrade = session
                .upgrade
                .as_ref()
                .ok_or_else(|| QmpError::generic(NOT_UPGRADABLE))?;
            upgrade.request();
            Ok(json!({}))
        },
    },
    Command {
        name: command::PVMOUSE_STREAM,
        run: |_, session, args| {
            Args::new(args, "").finish()?;
            session.streaming = true;
            Ok(json!({}))
        },
    },
    Command {
        name: command::X_PVMOUSE_PANIC,
        run: |_, _, args| {
            Args::new(args, "").finish()?;
            if std::env::var_os("PVMOUSE_TEST_HOOKS").is_none_or(|v| v != "1") {
                return Err(QmpError::generic(
                    "a test hook: the backend was not started with PVMOUSE_TEST_HOOKS=1",
                ));
            }
            panic!("x-pvmouse-panic: a test asked this worker to panic");
        },
    },
    Command {
        name: command::QUERY_COMMANDS,
        run: |_, _, args| {
            Args::new(args, "").finish()?;
            Ok(COMMANDS.iter().map(|c| json!({ "name": c.name })).collect())
        },
    },
];

/// Per-connection protocol state.
#[derive(Debug, Default)]
pub struct Session {
    pub negotiated: bool,
    /// `pvmouse-stream` succeeded: the rest of the input is records.
    pub streaming: bool,
    /// How `pvmouse-upgrade` ends this process; only a keeper's worker has it.
    pub upgrade: Option<Upgrade>,
    /// The buttons this connection pressed and has not released ([`Button::bit`]): what the
    /// backend releases when the connection ends.
    pub held: u8,
}

pub fn execute(
    device: &dyn PointerDevice,
    session: &mut Session,
    request: &Request,
) -> Result<Value, QmpError> {
    if !session.negotiated {
        return negotiate(session, request);
    }
    match COMMANDS.iter().find(|c| c.name == request.execute) {
        Some(command) => (command.run)(device, session, &request.arguments),
        None => Err(QmpError::command_not_found(format!(
            "The command {} has not been found",
            request.execute
        ))),
    }
}

/// Before negotiation, QMP accepts `qmp_capabilities` only. pvmouse offers no capabilities.
fn negotiate(session: &mut Session, request: &Request) -> Result<Value, QmpError> {
    if request.execute != command::QMP_CAPABILITIES {
        return Err(QmpError::command_not_found(
            "Expecting capabilities negotiation with 'qmp_capabilities'",
        ));
    }
    let mut a = Args::new(&request.arguments, "");
    if let Some(enable) = a.opt_array("enable")? {
        if let Some(cap) = enable.first() {
            return Err(QmpError::generic(format!(
                "Capability '{}' not available",
                cap.as_str().unwrap_or("?")
            )));
        }
    }
    a.finish()?;
    session.negotiated = true;
    Ok(json!({}))
}

/// Applies a command's actions; on success, `held` follows the buttons this connection holds:
/// those its presses took from up to down, until it releases them. A press of a button already
/// down (another connection's) is not this connection's to let go of.
pub fn submit(
    device: &dyn PointerDevice,
    held: &mut u8,
    actions: &[PointerAction],
) -> Result<Value, QmpError> {
    let buttons = actions
        .iter()
        .any(|a| matches!(a, PointerAction::Button { .. }));
    // Read only for commands with buttons: motion, the hot path, costs nothing more. The
    // control thread is the only writer of buttons, so nothing changes them in between.
    let before = if buttons { device.buttons() } else { 0 };
    match device.submit(actions) {
        Ok(_) => {
            for action in actions {
                if let PointerAction::Button { button, down } = action {
                    if !*down {
                        *held &= !button.bit();
                    } else if before & button.bit() == 0 {
                        *held |= button.bit();
                    }
                }
            }
            Ok(json!({}))
        }
        Err(e @ (SubmitError::DisplayOutOfRange { .. } | SubmitError::NoRelativeDevice)) => {
            Err(QmpError::generic(e.to_string()))
        }
        Err(SubmitError::QueueFull(full)) => Err(QmpError::generic(format!(
            "input not accepted: the guest is not draining its event queue ({} frames pending); \
             nothing of this command was applied",
            full.pending
        ))),
    }
}

/// QEMU's 0..=0x7FFF scaled to 0..=AXIS_MAX, rounding to nearest, ends mapping to ends.
pub fn scale_qemu_abs(value: i64) -> u16 {
    let scaled = (value * i64::from(AXIS_MAX) + QEMU_ABS_MAX / 2) / QEMU_ABS_MAX;
    u16::try_from(scaled.clamp(0, i64::from(AXIS_MAX))).unwrap_or(u16::MAX)
}

/// A normalised coordinate in 0.0..=1.0 at full device precision.
pub fn scale_normalised(value: f64) -> u16 {
    let scaled = (value * f64::from(AXIS_MAX)).round();
    // Callers check the range first; the clamp makes the cast exact regardless.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rounded value clamped to 0..=AXIS_MAX"
    )]
    let scaled = scaled.clamp(0.0, f64::from(AXIS_MAX)) as u16;
    scaled
}

fn display_range(identity: &Identity) -> (std::ops::RangeInclusive<i64>, String) {
    let n = identity.displays();
    (
        0..=i64::from(n) - 1,
        format!(
            "this device has {n} display{}",
            if n == 1 { "" } else { "s" }
        ),
    )
}

fn check_device(identity: &Identity, device: Option<&str>) -> Result<(), QmpError> {
    match device {
        Some(d) if d != identity.name() => Err(QmpError::device_not_found(format!(
            "Device '{d}' not found; this control socket serves one device, '{}': \
             omit 'device' or use that name",
            identity.name()
        ))),
        _ => Ok(()),
    }
}

/// `input-send-event`, with QEMU's arguments and meaning: `head` picks the display (display 0
/// when absent, QEMU's default console), absolute values are 0..=0x7FFF, wheel "buttons"
/// scroll one detent when pressed.
pub fn parse_input_send_event(
    args: &Map<String, Value>,
    identity: &Identity,
) -> Result<Vec<PointerAction>, QmpError> {
    let mut a = Args::new(args, "");
    check_device(identity, a.opt_str("device")?)?;
    let (heads, what) = display_range(identity);
    let head = a.int_in("head", heads, &what)?.unwrap_or(0);
    let display = u8::try_from(head).ok();
    let events = a.array("events")?;
    a.finish()?;

    let mut actions = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let path = format!("events[{i}]");
        let obj = event.as_object().ok_or_else(|| {
            QmpError::generic(format!(
                "Invalid parameter type for '{path}', expected: object"
            ))
        })?;
        let mut e = Args::new(obj, format!("{path}."));
        let kind = e.str("type")?;
        let data = e.object("data")?;
        e.finish()?;
        let mut d = Args::new(data, format!("{path}.data."));
        match kind {
            "btn" => {
                let down = d.bool("down")?;
                let name = d.str("button")?;
                d.finish()?;
                let wheel = |axis, hi_res| PointerAction::Wheel { axis, hi_res };
                let action = match name {
                    "wheel-up" => wheel(WheelAxis::Vertical, HI_RES_PER_DETENT),
                    "wheel-down" => wheel(WheelAxis::Vertical, -HI_RES_PER_DETENT),
                    "wheel-right" => wheel(WheelAxis::Horizontal, HI_RES_PER_DETENT),
                    "wheel-left" => wheel(WheelAxis::Horizontal, -HI_RES_PER_DETENT),
                    _ => match Button::from_name(name) {
                        Some(button) => PointerAction::Button { button, down },
                        None => {
                            return Err(QmpError::generic(format!(
                                "Parameter '{path}.data.button' does not accept value '{name}' \
                                 (pvmouse has left, right, middle, side, extra and the four wheel \
                                 directions)"
                            )));
                        }
                    },
                };
                // As in QEMU, a wheel "button" scrolls on press; its release does nothing.
                if down || matches!(action, PointerAction::Button { .. }) {
                    actions.push(action);
                }
            }
            "abs" => {
                let axis = d.str("axis")?;
                let value = d
                    .int_in("value", 0..=QEMU_ABS_MAX, "QEMU's absolute range")?
                    .ok_or_else(|| {
                        QmpError::generic(format!("Parameter '{path}.data.value' is missing"))
                    })?;
                d.finish()?;
                let v = Some(scale_qemu_abs(value));
                let (x, y) = match axis {
                    "x" => (v, None),
                    "y" => (None, v),
                    _ => {
                        return Err(QmpError::generic(format!(
                            "Parameter '{path}.data.axis' does not accept value '{axis}'"
                        )));
                    }
                };
                actions.push(PointerAction::Move { display, x, y });
            }
            "rel" => {
                let axis = d.str("axis")?;
                let value = d
                    .int_in(
                        "value",
                        -MAX_REL_MOTION..=MAX_REL_MOTION,
                        "pvmouse's relative range",
                    )?
                    .ok_or_else(|| {
                        QmpError::generic(format!("Parameter '{path}.data.value' is missing"))
                    })?;
                d.finish()?;
                // Within ±2^20, so always an i32.
                let v = i32::try_from(value).unwrap_or(0);
                let (dx, dy) = match axis {
                    "x" => (v, 0),
                    "y" => (0, v),
                    _ => {
                        return Err(QmpError::generic(format!(
                            "Parameter '{path}.data.axis' does not accept value '{axis}'"
                        )));
                    }
                };
                actions.push(PointerAction::Motion {
                    dx,
                    dy,
                    keep_mode: false,
                });
            }
            "key" | "mtt" => {
                return Err(QmpError::generic(format!(
                    "Input event type '{kind}' ({path}) is not supported: pvmouse is a pointer \
                     with buttons and wheels; use 'abs', 'rel' and 'btn'"
                )));
            }
            _ => {
                return Err(QmpError::generic(format!(
                    "Parameter '{path}.type' does not accept value '{kind}'"
                )));
            }
        }
    }
    Ok(actions)
}

/// `pvmouse-send`: one frame at full precision. Motion first, then buttons, then wheels, so a
/// press in the same command happens at the new position.
pub fn parse_pvmouse_send(
    args: &Map<String, Value>,
    identity: &Identity,
) -> Result<Vec<PointerAction>, QmpError> {
    let mut a = Args::new(args, "");
    let (displays, what) = display_range(identity);
    let display = a.int_in("display", displays, &what)?;
    let mut coord = |key| -> Result<Option<u16>, QmpError> {
        match a.opt_number(key)? {
            // `{v:?}` keeps the shortest form that round-trips (1e-300, not 300 zeros).
            Some(v) if !(0.0..=1.0).contains(&v) => Err(QmpError::generic(format!(
                "Parameter '{key}' out of range: {v:?} is not in 0.0..=1.0 (a normalised \
                 position within the display)"
            ))),
            Some(v) => Ok(Some(scale_normalised(v))),
            None => Ok(None),
        }
    };
    let x = coord("x")?;
    let y = coord("y")?;
    let rel = -MAX_REL_MOTION..=MAX_REL_MOTION;
    let what = "relative motion in device units";
    let dx = a.int_in("dx", rel.clone(), what)?;
    let dy = a.int_in("dy", rel, what)?;
    let buttons = a.opt_object("buttons")?;
    let wheel = a.opt_object("wheel")?;
    a.finish()?;
    let positioned = display.is_some() || x.is_some() || y.is_some();
    let moved = dx.is_some() || dy.is_some();
    if positioned && moved {
        return Err(QmpError::generic(
            "Give a position (display, x, y) or relative motion (dx, dy), not both",
        ));
    }

    let mut actions = Vec::new();
    if positioned {
        actions.push(PointerAction::Move {
            display: display.and_then(|d| u8::try_from(d).ok()),
            x,
            y,
        });
    }
    if moved {
        // Within ±2^20, so always an i32.
        let delta = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok()).unwrap_or(0);
        actions.push(PointerAction::Motion {
            dx: delta(dx),
            dy: delta(dy),
            keep_mode: false,
        });
    }
    if let Some(buttons) = buttons {
        let mut b = Args::new(buttons, "buttons.");
        for button in Button::ALL {
            if let Some(down) = b.opt_bool(button.name())? {
                actions.push(PointerAction::Button { button, down });
            }
        }
        b.finish()?;
    }
    if let Some(wheel) = wheel {
        let mut w = Args::new(wheel, "wheel.");
        let range = -MAX_WHEEL_HI_RES..=MAX_WHEEL_HI_RES;
        let what = "hi-res units, 120 per detent";
        let vertical = w.int_in("vertical", range.clone(), what)?;
        let horizontal = w.int_in("horizontal", range, what)?;
        w.finish()?;
        for (axis, value) in [
            (WheelAxis::Vertical, vertical),
            (WheelAxis::Horizontal, horizontal),
        ] {
            if let Some(v) = value.and_then(|v| i32::try_from(v).ok()) {
                actions.push(PointerAction::Wheel { axis, hi_res: v });
            }
        }
    }
    Ok(actions)
}

pub fn status_json(identity: &Identity, s: &DeviceStatus) -> Value {
    let reply = Status {
        name: identity.name().to_owned(),
        serial: identity.serial().to_owned(),
        displays: identity.displays(),
        axis_max: u16::try_from(AXIS_MAX).unwrap_or(u16::MAX),
        pointer: Pointer {
            display: s.pointer.display,
            x: s.pointer.x,
            y: s.pointer.y,
            buttons: Button::ALL
                .iter()
                .map(|b| (b.name().to_owned(), s.pointer.is_down(*b)))
                .collect(),
        },
        frontend_connected: s.frontend_connected,
        driver_active: s.driver_active,
        driver_paused: s.driver_paused,
        bridge_present: s.bridge_version.is_some(),
        bridge_version: s.bridge_version,
        guest_coordinates: if s.desktop_coordinates {
            GuestCoordinates::Desktop
        } else {
            GuestCoordinates::PerDisplay
        },
        pending_frames: u64::try_from(s.pending_frames).unwrap_or(u64::MAX),
        coalesced_frames: s.coalesced_frames,
        counters: s.counters,
        guest_faults: s
            .guest_faults
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        mode: s.mode,
        relative: s.relative.map(|r| Relative {
            frontend_connected: r.frontend_connected,
            driver_active: r.driver_active,
            pending_frames: u64::try_from(r.pending_frames).unwrap_or(u64::MAX),
            events_delivered: r.events_delivered,
        }),
    };
    // A struct of strings, numbers and maps with string keys always serialises.
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_abs_scaling_maps_ends_to_ends_and_rounds() {
        assert_eq!(scale_qemu_abs(0), 0);
        assert_eq!(scale_qemu_abs(QEMU_ABS_MAX), 65535);
        assert_eq!(scale_qemu_abs(16384), 32769);
        assert_eq!(scale_qemu_abs(1), 2);
        let mut last = 0;
        for v in 0..=QEMU_ABS_MAX {
            let s = scale_qemu_abs(v);
            assert!(s >= last, "monotonic at {v}");
            last = s;
        }
    }

    #[test]
    fn normalised_scaling_uses_the_full_range() {
        assert_eq!(scale_normalised(0.0), 0);
        assert_eq!(scale_normalised(1.0), 65535);
        assert_eq!(scale_normalised(0.5), 32768);
        assert_eq!(scale_normalised(1.0 / 65535.0), 1);
    }
}
