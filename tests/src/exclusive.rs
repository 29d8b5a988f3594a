//! One VM at a time in a test process. The machine has two cores, TCG is CPU-bound and a
//! desktop guest takes both, so the tests of one file (which libtest runs on parallel threads)
//! must never boot two VMs at once. Every test takes its VM from here:
//!
//! - [`boot`] gives a test a fresh VM of its own, for tests that change the guest or the
//!   device in ways the next test would notice;
//! - a [`SharedVm`] is booted by the first test that asks for it and kept for the next ones
//!   that ask for the same, for tests that leave nothing behind that another would see.
//!
//! Both stand in one slot behind one lock: while a test holds a VM no other test of the
//! process has one, and a kept shared VM is shut down before any other VM boots.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, TryLockError, mpsc};

use crate::vm::{Vm, VmConfig};

/// The process's one VM slot: the kept shared VM, if any, and whose it is.
static SLOT: Mutex<Option<(&'static str, Vm)>> = Mutex::new(None);

fn take_slot() -> MutexGuard<'static, Option<(&'static str, Vm)>> {
    // A test that failed while it held the slot leaves it poisoned; the VM it held was
    // dropped with it (see SharedVmGuard's Drop), so the slot itself is sound.
    SLOT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A test's own VM, the only one of the process while it lives.
#[derive(Debug)]
pub struct ExclusiveVm {
    // Dropped before the slot is released: the VM is gone when the next test boots its own.
    vm: Vm,
    _slot: MutexGuard<'static, Option<(&'static str, Vm)>>,
}

impl Deref for ExclusiveVm {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl DerefMut for ExclusiveVm {
    fn deref_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }
}

/// Boots a fresh VM for one test, once no other VM of this process runs (a kept shared VM is
/// shut down first). A failed boot panics with the boot step and the console's last lines.
pub fn boot(config: VmConfig) -> ExclusiveVm {
    let mut slot = take_slot();
    *slot = None;
    let vm = Vm::boot(config).unwrap_or_else(|e| panic!("{e}"));
    ExclusiveVm { vm, _slot: slot }
}

/// A VM that the tests of one file share: booted by the first test that asks for it, kept
/// while the next tests ask for it too, shut down when another VM is needed, when a test
/// using it fails, and when the test process exits.
///
/// Only for tests that stay independent on it: a test must not count on the guest or the
/// device being as they were at boot, and must leave nothing (a process, a held button, a
/// removed module) that another test would see. Nor may a test restart its QEMU or backend:
/// children die with the thread that started them, and the shared VM's are started on a
/// thread of their own.
#[derive(Debug)]
pub struct SharedVm {
    /// Names the VM in the slot, so that two shared VMs of a file are told apart.
    name: &'static str,
    config: fn() -> VmConfig,
}

impl SharedVm {
    pub const fn new(name: &'static str, config: fn() -> VmConfig) -> Self {
        Self { name, config }
    }

    /// The shared VM, booted now if it is not the one kept; held until the guard is dropped.
    pub fn get(&self) -> SharedVmGuard {
        let mut slot = take_slot();
        if slot.as_ref().is_none_or(|(name, _)| *name != self.name) {
            *slot = None;
            *slot = Some((self.name, boot_kept((self.config)())));
            clean_up_at_exit();
        }
        SharedVmGuard { slot }
    }
}

/// A test's hold on a [`SharedVm`].
#[derive(Debug)]
pub struct SharedVmGuard {
    slot: MutexGuard<'static, Option<(&'static str, Vm)>>,
}

impl Deref for SharedVmGuard {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        match self.slot.as_ref() {
            Some((_, vm)) => vm,
            None => unreachable!("a SharedVmGuard is only made with its VM in the slot"),
        }
    }
}

impl Drop for SharedVmGuard {
    fn drop(&mut self) {
        // A failed test may have left the guest in any state: the next test boots afresh.
        if std::thread::panicking() {
            *self.slot = None;
        }
    }
}

/// Boots a VM whose processes outlive the calling test's thread: QEMU and the backend die
/// with the thread that spawned them (`PR_SET_PDEATHSIG`), and libtest ends each test's
/// thread, so they are spawned by a thread that stays until the process exits.
fn boot_kept(config: VmConfig) -> Vm {
    let (booted, vm) = mpsc::channel();
    std::thread::Builder::new()
        .name("pvmouse-shared-vm".into())
        .spawn(move || {
            let _ = booted.send(Vm::boot(config));
            loop {
                std::thread::park();
            }
        })
        .unwrap_or_else(|e| panic!("a thread for the shared VM: {e}"));
    match vm.recv() {
        Ok(Ok(vm)) => vm,
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("the shared VM's thread ended before it booted"),
    }
}

/// Statics are never dropped: the kept VM is shut down, and its directory removed, when the
/// test process exits.
fn clean_up_at_exit() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: atexit only records the handler; the handler is a plain `extern "C"` fn
        // that does not unwind (dropping a Vm ignores every error) and that only runs at exit.
        unsafe {
            libc::atexit(drop_kept_vm);
        }
    });
}

extern "C" fn drop_kept_vm() {
    // try_lock: a test thread still holding the slot at exit keeps it, rather than hang exit.
    let mut slot = match SLOT.try_lock() {
        Ok(slot) => slot,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    *slot = None;
}
