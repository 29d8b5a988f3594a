//! The pointer devices the end-to-end benchmark compares, and how each is set up.
//!
//! Every kind boots the same guest image with the same probe and echo path. Only the input
//! device differs, and which QMP socket the host drives it through.

use std::time::Duration;

use pvmouse_spec::control::QEMU_ABS_MAX;
use pvmouse_spec::profile::AXIS_MAX;
use pvmouse_vmtest::{PVMOUSE_NAME, Vm, VmConfig};

/// The relative device's name in the guest: pvmouse's, suffixed.
pub const PVMOUSE_RELATIVE: &str = "pvmouse relative";

/// The bridged kind's desktop: one 1920x1080 display, so x keeps its meaning end to end.
pub const BRIDGE_LAYOUT: &str = "0=1920x1080@0,0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// No input device: the probe channel's own round trip, the floor under every kind.
    Floor,
    /// (a) pvmouse through vhost-user, read from pvmouse-guestd's uinput pointer.
    PvmouseBridged,
    /// (b) pvmouse, read from its own evdev node.
    PvmouseRaw,
    /// (b') the same, with the backend `--restartable` (a keeper and its worker).
    PvmouseRestartable,
    /// (c) QEMU's in-process virtio-tablet-pci.
    VirtioTablet,
    /// (d) QEMU's usb-tablet on qemu-xhci.
    UsbTabletXhci,
    /// (e) QEMU's usb-tablet on a UHCI controller.
    UsbTabletUhci,
    /// (f) pvmouse in relative mode: motion through its relative device, read from that
    /// device's evdev node.
    PvmouseRelative,
    /// (g) QEMU's in-process virtio-mouse-pci, the relative device it compares with.
    VirtioMouse,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Floor,
        Kind::PvmouseBridged,
        Kind::PvmouseRaw,
        Kind::PvmouseRestartable,
        Kind::VirtioTablet,
        Kind::UsbTabletXhci,
        Kind::UsbTabletUhci,
        Kind::PvmouseRelative,
        Kind::VirtioMouse,
    ];

    /// The short name used on the command line and in reports.
    pub fn id(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::PvmouseBridged => "pvmouse-bridged",
            Kind::PvmouseRaw => "pvmouse-raw",
            Kind::PvmouseRestartable => "pvmouse-restartable",
            Kind::VirtioTablet => "virtio-tablet",
            Kind::UsbTabletXhci => "usb-tablet-xhci",
            Kind::UsbTabletUhci => "usb-tablet-uhci",
            Kind::PvmouseRelative => "pvmouse-relative",
            Kind::VirtioMouse => "virtio-mouse",
        }
    }

    pub fn from_id(id: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.id() == id)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Floor => "null round trip (probe channel only, no input device)",
            Kind::PvmouseBridged => {
                "pvmouse + pvmouse-guestd --map-in-bridge, read from the uinput pointer"
            }
            Kind::PvmouseRaw => "pvmouse, read from its own evdev node",
            Kind::PvmouseRestartable => {
                "pvmouse --restartable (keeper and worker), read from its own evdev node"
            }
            Kind::VirtioTablet => "virtio-tablet-pci (in QEMU)",
            Kind::UsbTabletXhci => "usb-tablet on qemu-xhci",
            Kind::UsbTabletUhci => "usb-tablet on piix3-usb-uhci",
            Kind::PvmouseRelative => {
                "pvmouse in relative mode, read from its relative device's evdev node"
            }
            Kind::VirtioMouse => "virtio-mouse-pci (in QEMU), relative",
        }
    }

    /// Driven with relative motion (`input-send-event` `rel`) rather than positions.
    pub fn is_relative(self) -> bool {
        matches!(self, Kind::PvmouseRelative | Kind::VirtioMouse)
    }

    pub fn is_pvmouse(self) -> bool {
        matches!(
            self,
            Kind::PvmouseBridged
                | Kind::PvmouseRaw
                | Kind::PvmouseRestartable
                | Kind::PvmouseRelative
        )
    }

    pub fn vm_config(self) -> VmConfig {
        let extra: &[&str] = match self {
            Kind::Floor
            | Kind::PvmouseBridged
            | Kind::PvmouseRaw
            | Kind::PvmouseRestartable
            | Kind::PvmouseRelative => &[],
            Kind::VirtioTablet => &["-device", "virtio-tablet-pci"],
            Kind::VirtioMouse => &["-device", "virtio-mouse-pci"],
            Kind::UsbTabletXhci => &[
                "-device",
                "qemu-xhci,id=xhci",
                "-device",
                "usb-tablet,bus=xhci.0",
            ],
            // q35's `-usb` adds EHCI with UHCI companions; name the UHCI controller outright so
            // the tablet is certainly driven by UHCI.
            Kind::UsbTabletUhci => &[
                "-device",
                "piix3-usb-uhci,id=uhci",
                "-device",
                "usb-tablet,bus=uhci.0",
            ],
        };
        VmConfig {
            pvmouse: self.is_pvmouse(),
            // On a hot-plug port, so the idle measurement can unplug it from the same VM.
            pvmouse_bus: self.is_pvmouse().then(|| "rp1".to_owned()),
            displays: 1,
            extra_qemu_args: extra.iter().map(|s| (*s).to_owned()).collect(),
            restartable: self == Kind::PvmouseRestartable,
            relative: self == Kind::PvmouseRelative,
            ..VmConfig::default()
        }
    }

    /// The evdev device the guest probe reads, by name; `None` for the floor.
    pub fn guest_device(self) -> Option<&'static str> {
        match self {
            Kind::Floor => None,
            Kind::PvmouseBridged => Some("pvmouse desktop pointer"),
            Kind::PvmouseRaw | Kind::PvmouseRestartable => Some(PVMOUSE_NAME),
            Kind::VirtioTablet => Some("QEMU Virtio Tablet"),
            Kind::UsbTabletXhci | Kind::UsbTabletUhci => Some("QEMU QEMU USB Tablet"),
            Kind::PvmouseRelative => Some(PVMOUSE_RELATIVE),
            Kind::VirtioMouse => Some("QEMU Virtio Mouse"),
        }
    }

    /// The evdev device whose buttons the burst counts: pvmouse's buttons stay on its pointer
    /// in relative mode.
    pub fn button_device(self) -> Option<&'static str> {
        match self {
            Kind::PvmouseRelative => Some(PVMOUSE_NAME),
            _ => self.guest_device(),
        }
    }

    /// The guest's ABS_X maximum, to turn what the guest read back into a fraction.
    /// (Relative kinds send the sample's QEMU-scale value as the motion, read back as is.)
    pub fn guest_axis_max(self) -> f64 {
        if self.is_pvmouse() && !self.is_relative() {
            f64::from(AXIS_MAX)
        } else {
            QEMU_ABS_MAX as f64
        }
    }

    /// Whatever must run in the guest before the device can be read: the bridge, for (a).
    pub fn prepare_guest(self, vm: &Vm) -> Result<(), String> {
        if self != Kind::PvmouseBridged {
            return Ok(());
        }
        let (rc, out) = vm.probe.run(
            // The bridge's own mapping, through its uinput pointer (in desktop mode it would
            // otherwise hand the layout to the device; the desktop path measures that).
            &format!(
                "pvmouse-guestd --map-in-bridge --layout {BRIDGE_LAYOUT} >> /tmp/guestd.log 2>&1 &"
            ),
            Duration::from_secs(30),
        )?;
        if rc != 0 {
            return Err(format!("pvmouse-guestd did not start: {out:?}"));
        }
        Ok(())
    }
}
