//! One absolute pointer the bridge creates through uinput: the desktop pointer, or in
//! per-display mode one of the display pointers ([`crate::pointers`] decides which exist).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

use evdev::uinput::VirtualDevice;
use evdev::{
    AbsInfo, AbsoluteAxisCode, AttributeSet, BusType, InputId, KeyCode, RelativeAxisCode,
    UinputAbsSetup,
};
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{EV_SYN, SYN_REPORT};
use pvmouse_spec::profile::{KEY_CODES, POSITION_CODES, REL_CODES};

use crate::layout::OUTPUT_MAX;

/// The desktop pointer's name; under uinput's 80-byte limit.
pub const OUTPUT_NAME: &str = "pvmouse desktop pointer";
/// A display pointer's name, before its display id: udev rules match it.
pub const DISPLAY_POINTER_PREFIX: &str = "pvmouse display ";
/// The bridge's own ids: the profile's vendor ("pv") with product "dp" (desktop pointer).
pub const OUTPUT_VENDOR: u16 = pvmouse_spec::profile::VENDOR;
pub const OUTPUT_PRODUCT: u16 = 0x6470;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("/dev/uinput does not exist: load the uinput kernel module (modprobe uinput)")]
    UinputMissing,
    #[error("no permission to open /dev/uinput: run as root or grant this user access to it")]
    UinputPermission,
    #[error("cannot create the uinput pointer: {0}")]
    Create(io::Error),
}

pub struct Output {
    /// Owns the pointer: dropping it destroys the uinput device.
    _device: VirtualDevice,
    /// The uinput descriptor, for writing whole frames in one call (`VirtualDevice::emit` makes
    /// two: the events, then SYN_REPORT).
    writer: File,
    /// Frames queued for the next flush, as `struct input_event`s, each frame closed by
    /// SYN_REPORT. Reused, so a steady stream allocates nothing.
    pending: Vec<u8>,
}

/// `struct input_event` on 64-bit Linux: a timeval (which the kernel fills in), then type, code
/// and value.
pub const KERNEL_INPUT_EVENT_SIZE: usize = 24;

pub fn encode_event(kind: u16, code: u16, value: i32) -> [u8; KERNEL_INPUT_EVENT_SIZE] {
    let mut raw = [0u8; KERNEL_INPUT_EVENT_SIZE];
    raw[16..18].copy_from_slice(&kind.to_ne_bytes());
    raw[18..20].copy_from_slice(&code.to_ne_bytes());
    raw[20..24].copy_from_slice(&value.to_ne_bytes());
    raw
}

/// The most events one write carries: half of the 128-event buffer the kernel gives each reader
/// of the pointer, so a burst written at once cannot overflow a reader that has kept up.
const MAX_EVENTS_PER_WRITE: usize = 64;

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").finish_non_exhaustive()
    }
}

impl Output {
    /// An absolute pointer udev classifies as a mouse, as it does usb-tablet: ABS_X and ABS_Y
    /// over the fixed range, five buttons, both wheels with their hi-res events.
    pub fn create(name: &str) -> Result<Self, OutputError> {
        let builder = VirtualDevice::builder().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OutputError::UinputMissing,
            io::ErrorKind::PermissionDenied => OutputError::UinputPermission,
            _ => OutputError::Create(e),
        })?;
        // The profile's buttons and wheels, and its position axes without the display axis.
        let keys: AttributeSet<KeyCode> = KEY_CODES.into_iter().map(KeyCode).collect();
        let rels: AttributeSet<RelativeAxisCode> =
            REL_CODES.into_iter().map(RelativeAxisCode).collect();
        let axis = |code| {
            UinputAbsSetup::new(
                AbsoluteAxisCode(code),
                AbsInfo::new(0, 0, OUTPUT_MAX, 0, 0, 0),
            )
        };
        let [abs_x, abs_y] = POSITION_CODES;
        let device = builder
            .name(name)
            .input_id(InputId::new(
                BusType::BUS_VIRTUAL,
                OUTPUT_VENDOR,
                OUTPUT_PRODUCT,
                1,
            ))
            .with_keys(&keys)
            .and_then(|b| b.with_relative_axes(&rels))
            .and_then(|b| b.with_absolute_axis(&axis(abs_x)))
            .and_then(|b| b.with_absolute_axis(&axis(abs_y)))
            .and_then(|b| b.build())
            .map_err(OutputError::Create)?;
        let writer = File::from(
            device
                .as_fd()
                .try_clone_to_owned()
                .map_err(OutputError::Create)?,
        );
        Ok(Self {
            _device: device,
            writer,
            pending: Vec::with_capacity(PENDING_CAPACITY * KERNEL_INPUT_EVENT_SIZE),
        })
    }

    /// Queues one frame for the next `flush`. An empty frame changes nothing and is skipped.
    pub fn queue(&mut self, events: &[InputEvent]) {
        if events.is_empty() {
            return;
        }
        for e in events {
            self.pending
                .extend_from_slice(&encode_event(e.kind, e.code, e.value));
        }
        self.pending
            .extend_from_slice(&encode_event(EV_SYN, SYN_REPORT, 0));
    }

    /// Queues one event of a frame that [`Output::close_frame`] ends.
    pub fn push_event(&mut self, e: InputEvent) {
        self.pending
            .extend_from_slice(&encode_event(e.kind, e.code, e.value));
    }

    pub fn close_frame(&mut self) {
        self.pending
            .extend_from_slice(&encode_event(EV_SYN, SYN_REPORT, 0));
    }

    /// Writes the queued frames: one write per frame at steady rates, and during a burst one
    /// per batch of up to 64 events, which is what lets the bridge keep up in a slow guest.
    pub fn flush(&mut self) -> io::Result<()> {
        let result = self.write_pending();
        self.pending.clear();
        result
    }

    fn write_pending(&mut self) -> io::Result<()> {
        let mut rest = &self.pending[..];
        while !rest.is_empty() {
            let mut take = rest
                .len()
                .min(MAX_EVENTS_PER_WRITE * KERNEL_INPUT_EVENT_SIZE);
            // Cut after a SYN_REPORT, so no reader ever sees half a frame stall.
            while take < rest.len() && !is_syn_report(&rest[take - KERNEL_INPUT_EVENT_SIZE..take]) {
                take -= KERNEL_INPUT_EVENT_SIZE;
            }
            if take == 0 {
                take = rest
                    .len()
                    .min(MAX_EVENTS_PER_WRITE * KERNEL_INPUT_EVENT_SIZE);
            }
            // uinput takes every whole event of a write, or fails the write.
            self.writer.write_all(&rest[..take])?;
            rest = &rest[take..];
            if !rest.is_empty() {
                // Let the pointer's readers drain this part before the next lands in their
                // 128-event buffers: on a one-CPU guest they cannot run otherwise.
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Writes one frame now.
    pub fn emit(&mut self, events: &[InputEvent]) -> io::Result<()> {
        self.queue(events);
        self.flush()
    }
}

/// Room for one full read of evdev's batch without growing.
const PENDING_CAPACITY: usize = 1024;

fn is_syn_report(raw: &[u8]) -> bool {
    raw[16..18] == EV_SYN.to_ne_bytes() && raw[18..20] == SYN_REPORT.to_ne_bytes()
}
