//! The control protocol's commands as types, and their replies ([spec/control.md]).
//!
//! A command serialises to its `arguments`; [`Connection::send`](crate::Connection::send)
//! adds its name. Replies deserialise from the `return` member. Unknown members of a reply are
//! ignored, so a newer backend that reports more still works with an older client.
//!
//! [spec/control.md]: https://github.com/pvmouse/pvmouse/blob/main/spec/control.md

use pvmouse_spec::control::command as name;
pub use pvmouse_spec::control::reply::{Counters, GuestCoordinates, Pointer, Status};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A command of the control protocol: its name and the type of its reply.
pub trait Command: Serialize {
    const NAME: &'static str;
    type Reply: DeserializeOwned;
}

/// The `{}` most commands answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Empty {}

/// `pvmouse-send`: one frame at full precision (motion, then buttons, then wheels). Every
/// member is optional; what is left out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PvmouseSend {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<u8>,
    /// Normalised, 0.0 … 1.0 across the display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
    /// Relative motion in device units (the guest's acceleration applies); sets the pointer
    /// to relative mode. Not with a position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dx: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dy: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buttons: Option<Buttons>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wheel: Option<Wheel>,
}

impl Command for PvmouseSend {
    const NAME: &'static str = name::PVMOUSE_SEND;
    type Reply = Empty;
}

/// Buttons to set: `Some(true)` down, `Some(false)` up, `None` unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buttons {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<bool>,
}

/// Wheel movement in hi-res units, 120 per detent; positive is up or right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Wheel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertical: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizontal: Option<i32>,
}

/// QEMU's `input-send-event`, as pvmouse accepts it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputSendEvent {
    /// The display, default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u8>,
    /// If set, must be the device's `--name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub events: Vec<InputEvent>,
}

impl Command for InputSendEvent {
    const NAME: &'static str = name::INPUT_SEND_EVENT;
    type Reply = Empty;
}

/// One of QEMU's InputEvents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub enum InputEvent {
    /// 0 … 0x7FFF across the display.
    Abs {
        axis: Axis,
        value: u16,
    },
    Btn {
        down: bool,
        button: QemuButton,
    },
    /// Relative motion on one axis, in device units.
    Rel {
        axis: Axis,
        value: i32,
    },
}

/// `pvmouse-set-mode`: absolute positions or relative motion, switched with no hot-plug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PvmouseSetMode {
    pub mode: pvmouse_spec::profile::PointerMode,
}

impl Command for PvmouseSetMode {
    const NAME: &'static str = name::PVMOUSE_SET_MODE;
    type Reply = Empty;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    X,
    Y,
}

/// QEMU's button names; a wheel "button" scrolls one detent when pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QemuButton {
    Left,
    Right,
    Middle,
    Side,
    Extra,
    WheelUp,
    WheelDown,
    WheelLeft,
    WheelRight,
}

/// `query-pvmouse`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueryPvmouse;

impl Command for QueryPvmouse {
    const NAME: &'static str = name::QUERY_PVMOUSE;
    type Reply = Status;
}

/// `query-version`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueryVersion;

impl Command for QueryVersion {
    const NAME: &'static str = name::QUERY_VERSION;
    type Reply = Version;
}

/// QEMU's version shape; pvmouse reports its own version in `qemu`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Version {
    pub qemu: VersionTriple,
    pub package: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct VersionTriple {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// `pvmouse-upgrade`: a `--restartable` backend replaces its worker with the binary now on
/// disk. The connection ends with the old worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PvmouseUpgrade;

impl Command for PvmouseUpgrade {
    const NAME: &'static str = name::PVMOUSE_UPGRADE;
    type Reply = Empty;
}
