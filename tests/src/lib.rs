//! `pvmouse-vmtest`: the real-world harness. It brings a fresh machine from nothing to a
//! running VM, with stock QEMU, Debian's guest kernel and the real `vhost-user-pvmouse`, and
//! reads what the guest's evdev sees through a probe inside the guest.

pub mod assets;
pub mod initramfs;
pub mod probe;
pub mod qmp;
pub mod qmp_stream;
pub mod vm;

pub use probe::{GuestEvent, ProbeLink, frames};
pub use qmp::Qmp;
pub use qmp_stream::{QmpStream, Replies};
pub use vm::{PVMOUSE_NAME, Vm, VmConfig, VmError};
