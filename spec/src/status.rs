//! Guest→host messages on the status queue.
//!
//! The guest bridge writes `EV_MSC`/[`STATUS_MSC_CODE`](crate::profile::STATUS_MSC_CODE) events
//! into the pvmouse evdev node; Linux's virtio_input forwards them to the status queue. The value
//! carries a magic, a message kind and the bridge's protocol version. Any other status event is
//! consumed and ignored by the device.

/// High 16 bits of every pvmouse status value: ASCII "PV".
pub const MAGIC: u16 = 0x5056;

/// The bridge protocol version this crate describes.
pub const BRIDGE_PROTOCOL_VERSION: u8 = 1;

/// The bridge sends [`StatusMessage::BridgePresent`] at least this often while it runs.
pub const HEARTBEAT_INTERVAL_MS: u64 = 500;

/// The device declares the bridge gone after this long without a heartbeat.
pub const PRESENCE_TIMEOUT_MS: u64 = 1500;

const KIND_GONE: u8 = 0x00;
const KIND_PRESENT: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMessage {
    /// Heartbeat: a bridge has grabbed the device and is running.
    BridgePresent { version: u8 },
    /// The bridge is releasing the device and exiting.
    BridgeGone,
}

impl StatusMessage {
    pub const fn encode(self) -> i32 {
        let (kind, version) = match self {
            StatusMessage::BridgePresent { version } => (KIND_PRESENT, version),
            StatusMessage::BridgeGone => (KIND_GONE, 0),
        };
        let [magic_hi, magic_lo] = MAGIC.to_be_bytes();
        i32::from_be_bytes([magic_hi, magic_lo, kind, version])
    }

    /// Returns `None` for any value that is not a pvmouse status message.
    pub const fn decode(value: i32) -> Option<Self> {
        let [magic_hi, magic_lo, kind, version] = value.to_be_bytes();
        if u16::from_be_bytes([magic_hi, magic_lo]) != MAGIC {
            return None;
        }
        match kind {
            KIND_PRESENT => Some(StatusMessage::BridgePresent { version }),
            KIND_GONE => Some(StatusMessage::BridgeGone),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_values() {
        for m in [
            StatusMessage::BridgePresent { version: 1 },
            StatusMessage::BridgePresent { version: 200 },
            StatusMessage::BridgeGone,
        ] {
            assert_eq!(StatusMessage::decode(m.encode()), Some(m));
        }
        assert_eq!(
            StatusMessage::BridgePresent { version: 1 }.encode(),
            0x5056_0101
        );
        assert_eq!(StatusMessage::decode(0), None);
        assert_eq!(StatusMessage::decode(0x5056_0701), None);
        assert_eq!(StatusMessage::decode(-1), None);
    }
}
