//! Constants of the host control protocol (`spec/control.md`).

/// QEMU's `input-send-event` absolute range is 0..=0x7FFF; pvmouse scales it to the device range.
pub const QEMU_ABS_MAX: i64 = 0x7fff;

/// The largest wheel movement one command may carry, per axis, in hi-res units (1000 detents).
pub const MAX_WHEEL_HI_RES: i64 = 120_000;

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
    /// Stream records refused that their client did not ask to have answered.
    pub const STREAM_REFUSED: &str = "PVMOUSE_STREAM_REFUSED";
}
