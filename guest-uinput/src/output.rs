//! The one desktop pointer the bridge creates through uinput.

use std::io;

use evdev::uinput::VirtualDevice;
use evdev::{
    AbsInfo, AbsoluteAxisCode, AttributeSet, BusType, InputId, KeyCode, RelativeAxisCode,
    UinputAbsSetup,
};
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{REL_HWHEEL, REL_HWHEEL_HI_RES, REL_WHEEL, REL_WHEEL_HI_RES};
use pvmouse_spec::profile::Button;

use crate::layout::OUTPUT_MAX;

/// The name the desktop sees; under uinput's 80-byte limit.
pub const OUTPUT_NAME: &str = "pvmouse desktop pointer";
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
    device: VirtualDevice,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").finish_non_exhaustive()
    }
}

impl Output {
    /// An absolute pointer udev classifies as a mouse, as it does usb-tablet: ABS_X and ABS_Y
    /// over the fixed range, five buttons, both wheels with their hi-res events.
    pub fn create() -> Result<Self, OutputError> {
        let builder = VirtualDevice::builder().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OutputError::UinputMissing,
            io::ErrorKind::PermissionDenied => OutputError::UinputPermission,
            _ => OutputError::Create(e),
        })?;
        let keys: AttributeSet<KeyCode> = Button::ALL.iter().map(|b| KeyCode(b.code())).collect();
        let rels: AttributeSet<RelativeAxisCode> =
            [REL_HWHEEL, REL_WHEEL, REL_WHEEL_HI_RES, REL_HWHEEL_HI_RES]
                .into_iter()
                .map(RelativeAxisCode)
                .collect();
        let axis = |code| UinputAbsSetup::new(code, AbsInfo::new(0, 0, OUTPUT_MAX, 0, 0, 0));
        let device = builder
            .name(OUTPUT_NAME)
            .input_id(InputId::new(
                BusType::BUS_VIRTUAL,
                OUTPUT_VENDOR,
                OUTPUT_PRODUCT,
                1,
            ))
            .with_keys(&keys)
            .and_then(|b| b.with_relative_axes(&rels))
            .and_then(|b| b.with_absolute_axis(&axis(AbsoluteAxisCode::ABS_X)))
            .and_then(|b| b.with_absolute_axis(&axis(AbsoluteAxisCode::ABS_Y)))
            .and_then(|b| b.build())
            .map_err(OutputError::Create)?;
        Ok(Self { device })
    }

    /// Writes one frame; uinput adds the SYN_REPORT.
    pub fn emit(&mut self, events: &[InputEvent]) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut batch = [evdev::InputEvent::new(0, 0, 0); crate::mapper::MAX_OUTPUT_EVENTS];
        for (slot, e) in batch.iter_mut().zip(events) {
            *slot = evdev::InputEvent::new(e.kind, e.code, e.value);
        }
        self.device.emit(&batch[..events.len().min(batch.len())])
    }
}
