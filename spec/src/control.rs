//! Constants of the host control protocol (`spec/control.md`).

/// QEMU's `input-send-event` absolute range is 0..=0x7FFF; pvmouse scales it to the device range.
pub const QEMU_ABS_MAX: i64 = 0x7fff;

/// The largest wheel movement one command may carry, per axis, in hi-res units (1000 detents).
pub const MAX_WHEEL_HI_RES: i64 = 120_000;

/// The largest relative motion one command may carry, per axis, in device units.
pub const MAX_REL_MOTION: i64 = 1 << 20;

/// A command longer than this is refused and skipped up to the next newline.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Replies and events queued for a client that is not reading; past this it is disconnected.
pub const MAX_UNREAD_BYTES: usize = 256 * 1024;

/// Control connections served at once; further ones get an error and are closed.
pub const MAX_CLIENTS: usize = 64;

/// A connection that has not completed `qmp_capabilities` this long after connecting is told so
/// and closed, so that idle connections cannot hold every slot. QMP clients negotiate at once.
pub const NEGOTIATION_TIMEOUT_MS: u64 = 5000;

/// Events whose rate the guest controls (driver and bridge changes) reach clients at most once
/// per this interval per kind; the newest state is sent when the interval ends.
pub const GUEST_EVENT_INTERVAL_MS: u64 = 1000;

pub mod command {
    pub const QMP_CAPABILITIES: &str = "qmp_capabilities";
    pub const INPUT_SEND_EVENT: &str = "input-send-event";
    pub const PVMOUSE_SEND: &str = "pvmouse-send";
    pub const QUERY_PVMOUSE: &str = "query-pvmouse";
    pub const QUERY_VERSION: &str = "query-version";
    pub const QUERY_COMMANDS: &str = "query-commands";
    pub const PVMOUSE_UPGRADE: &str = "pvmouse-upgrade";
    /// Switches the pointer between absolute and relative mode (`{"mode": "relative"}`).
    pub const PVMOUSE_SET_MODE: &str = "pvmouse-set-mode";
    /// Turns the rest of the connection's input into binary records (`crate::stream`).
    pub const PVMOUSE_STREAM: &str = "pvmouse-stream";
    /// A test hook: a worker panic, to show one is survived. Refused unless the backend runs
    /// with `PVMOUSE_TEST_HOOKS=1` in its environment.
    pub const X_PVMOUSE_PANIC: &str = "x-pvmouse-panic";
}

pub mod event {
    pub const FRONTEND_CHANGE: &str = "PVMOUSE_FRONTEND_CHANGE";
    pub const DRIVER_CHANGE: &str = "PVMOUSE_DRIVER_CHANGE";
    pub const BRIDGE_CHANGE: &str = "PVMOUSE_BRIDGE_CHANGE";
    /// The pointer's mode changed: `{"mode": "absolute" | "relative"}`.
    pub const MODE_CHANGE: &str = "PVMOUSE_MODE_CHANGE";
    /// Stream records refused that their client did not ask to have answered.
    pub const STREAM_REFUSED: &str = "PVMOUSE_STREAM_REFUSED";
}

/// The replies whose shape this protocol defines, as the server writes them and clients read
/// them. Clients ignore members they do not know, so a newer server can report more.
pub mod reply {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    /// `query-pvmouse`: the device's state.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Status {
        pub name: String,
        pub serial: String,
        pub displays: u8,
        pub axis_max: u16,
        pub pointer: Pointer,
        pub frontend_connected: bool,
        pub driver_active: bool,
        pub driver_paused: bool,
        pub bridge_present: bool,
        /// Only while the bridge is present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bridge_version: Option<u8>,
        pub guest_coordinates: GuestCoordinates,
        pub pending_frames: u64,
        pub coalesced_frames: u64,
        pub counters: Counters,
        /// Malformed guest input by kind, e.g. `{"broken-chain": 2}`.
        pub guest_faults: BTreeMap<String, u64>,
        /// What pointer input means now; absolute from a server that has no relative mode.
        #[serde(default)]
        pub mode: crate::profile::PointerMode,
        /// The relative device, when the backend serves one (`--relative-socket`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub relative: Option<Relative>,
    }

    /// `query-pvmouse`'s view of the relative device.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Relative {
        pub frontend_connected: bool,
        pub driver_active: bool,
        pub pending_frames: u64,
        pub events_delivered: u64,
    }

    /// The pointer once every queued frame reaches the guest.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Pointer {
        pub display: u8,
        /// Device values, 0 … `axis-max`; absent until a client sets them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub x: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub y: Option<u16>,
        /// Every button by name, down or not.
        pub buttons: BTreeMap<String, bool>,
    }

    /// How positions reach the guest (spec §6.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum GuestCoordinates {
        /// The device maps positions onto the layout the guest bridge gave it.
        Desktop,
        PerDisplay,
    }

    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Counters {
        pub commands: u64,
        pub frames: u64,
        pub events_delivered: u64,
        pub rejected_queue_full: u64,
        pub activations: u64,
        /// Activations that resumed a paused queue rather than starting a new driver.
        pub resumes: u64,
    }
}
