//! `pvmouse-vmtest`: the real-world harness. It brings a fresh machine from nothing to a
//! running VM, with stock QEMU, Debian's guest kernel and the real `vhost-user-pvmouse`, and
//! reads what the guest's evdev sees through a probe inside the guest.

pub mod assets;
pub mod desktop;
pub mod exclusive;
pub mod guest;
pub mod initramfs;
pub mod probe;
pub mod qmp;
pub mod qmp_stream;
pub mod vm;
pub mod wait;

pub use probe::{GuestEvent, ProbeLink, ev, frames, input_frames, motion_sums};
pub use qmp::Qmp;
pub use qmp_stream::{QmpStream, Replies};
pub use vm::{PVMOUSE_NAME, Vm, VmConfig, VmError};

/// The nearest integer to `v`, for expected axis values and pixels computed in floating point.
/// Out-of-range values saturate, which no expected value here comes near.
#[expect(
    clippy::cast_possible_truncation,
    reason = "rounded first; axis values and pixels are far inside i32"
)]
pub fn round_to_i32(v: f64) -> i32 {
    v.round() as i32
}
