//! The 8-byte virtio-input event, as it travels in eventq and statusq buffers.

/// Size in bytes of one event on the wire (`struct virtio_input_event`).
pub const VIRTIO_EVENT_SIZE: usize = 8;

/// One virtio-input event: `le16 type, le16 code, le32 value`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct InputEvent {
    pub kind: u16,
    pub code: u16,
    /// evdev values are signed; the wire carries their two's-complement bits.
    pub value: i32,
}

impl InputEvent {
    pub const fn new(kind: u16, code: u16, value: i32) -> Self {
        Self { kind, code, value }
    }

    pub const fn syn_report() -> Self {
        Self::new(crate::evdev::EV_SYN, crate::evdev::SYN_REPORT, 0)
    }

    pub const fn is_syn_report(&self) -> bool {
        self.kind == crate::evdev::EV_SYN && self.code == crate::evdev::SYN_REPORT
    }

    pub fn to_le_bytes(self) -> [u8; VIRTIO_EVENT_SIZE] {
        let mut out = [0u8; VIRTIO_EVENT_SIZE];
        out[0..2].copy_from_slice(&self.kind.to_le_bytes());
        out[2..4].copy_from_slice(&self.code.to_le_bytes());
        out[4..8].copy_from_slice(&self.value.to_le_bytes());
        out
    }

    pub fn from_le_bytes(bytes: [u8; VIRTIO_EVENT_SIZE]) -> Self {
        Self {
            kind: u16::from_le_bytes([bytes[0], bytes[1]]),
            code: u16::from_le_bytes([bytes[2], bytes[3]]),
            value: i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_little_endian() {
        let ev = InputEvent::new(0x0102, 0x0304, -2);
        let bytes = ev.to_le_bytes();
        assert_eq!(bytes, [0x02, 0x01, 0x04, 0x03, 0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(InputEvent::from_le_bytes(bytes), ev);
    }
}
