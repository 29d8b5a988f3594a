//! Which uinput pointers exist, for the mode in force: one desktop pointer whose range spans
//! the layout's bounding box, or one pointer per display, each bound to its output through the
//! udev property `WL_OUTPUT` (which Weston reads when the device appears).
//!
//! A change of mode or layout re-creates only the pointers that differ: a pointer that stays
//! is never unplugged under the display server.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use pvmouse_spec::session::PointerMode;

use crate::layout::Layout;
use crate::mapper::OutputFrame;
use crate::output::{DISPLAY_POINTER_PREFIX, OUTPUT_NAME, Output, OutputError};

/// Where the binding rules go by default: udev reads `/run/udev/rules.d` besides `/etc`.
pub const DEFAULT_UDEV_RULES: &str = "/run/udev/rules.d/70-pvmouse-guestd.rules";

/// A display pointer and the output it was bound to when it was created.
#[derive(Debug)]
struct DisplayPointer {
    output: Option<String>,
    device: Output,
}

#[derive(Debug)]
enum Kind {
    Desktop(Output),
    PerDisplay(BTreeMap<u8, DisplayPointer>),
}

#[derive(Debug)]
pub struct Pointers {
    kind: Kind,
    rules: PathBuf,
    /// Display pointers with queued events, as bits by display id.
    touched: u16,
}

/// Whether a name may go into a udev rule as it is. Connector names are ASCII letters, digits
/// and `-`; anything else is refused rather than quoted.
pub fn is_plain_output_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn display_pointer_name(id: u8) -> String {
    format!("{DISPLAY_POINTER_PREFIX}{id}")
}

impl Pointers {
    pub fn new(mode: PointerMode, layout: &Layout, rules: &Path) -> Result<Self, OutputError> {
        let kind = match mode {
            PointerMode::Desktop => Kind::Desktop(Output::create(OUTPUT_NAME)?),
            PointerMode::PerDisplay => Kind::PerDisplay(BTreeMap::new()),
        };
        let mut pointers = Self {
            kind,
            rules: rules.to_owned(),
            touched: 0,
        };
        pointers.reconcile(mode, layout)?;
        Ok(pointers)
    }

    pub fn mode(&self) -> PointerMode {
        match self.kind {
            Kind::Desktop(_) => PointerMode::Desktop,
            Kind::PerDisplay(_) => PointerMode::PerDisplay,
        }
    }

    /// Makes the pointers match `mode` and `layout`. Held buttons must have been released on
    /// the old pointers first ([`crate::mapper::Mapper::set_mode`]).
    pub fn reconcile(&mut self, mode: PointerMode, layout: &Layout) -> Result<(), OutputError> {
        self.touched = 0;
        match (mode, &mut self.kind) {
            (PointerMode::Desktop, Kind::Desktop(_)) => Ok(()),
            (PointerMode::Desktop, Kind::PerDisplay(_)) => {
                self.kind = Kind::Desktop(Output::create(OUTPUT_NAME)?);
                self.write_rules(&BTreeMap::new());
                Ok(())
            }
            (PointerMode::PerDisplay, Kind::Desktop(_)) => {
                self.kind = Kind::PerDisplay(BTreeMap::new());
                self.reconcile_displays(layout)
            }
            (PointerMode::PerDisplay, Kind::PerDisplay(_)) => self.reconcile_displays(layout),
        }
    }

    fn reconcile_displays(&mut self, layout: &Layout) -> Result<(), OutputError> {
        let wanted: BTreeMap<u8, Option<String>> = layout
            .displays()
            .map(|(id, d)| (id, d.name.clone().filter(|n| is_plain_output_name(n))))
            .collect();
        // The rules go in before any device appears, so udev tags new devices with them.
        self.write_rules(&wanted);
        let Kind::PerDisplay(have) = &mut self.kind else {
            return Ok(());
        };
        have.retain(|id, p| wanted.get(id).is_some_and(|o| *o == p.output));
        for (id, output) in wanted {
            if have.contains_key(&id) {
                continue;
            }
            if output.is_none() {
                tracing::warn!(
                    display = id,
                    "no output name for this display: the display server chooses its output"
                );
            }
            let device = Output::create(&display_pointer_name(id))?;
            have.insert(id, DisplayPointer { output, device });
        }
        Ok(())
    }

    /// One rule per display pointer, then a reload so udev uses them for the next device.
    fn write_rules(&self, outputs: &BTreeMap<u8, Option<String>>) {
        let mut text = String::from(
            "# Written by pvmouse-guestd: binds each display pointer to its output.\n",
        );
        for (id, name) in outputs {
            if let Some(name) = name {
                text.push_str(&format!(
                    "SUBSYSTEM==\"input\", ATTRS{{name}}==\"{}\", ENV{{WL_OUTPUT}}=\"{name}\"\n",
                    display_pointer_name(*id)
                ));
            }
        }
        let write = || -> io::Result<()> {
            if let Some(dir) = self.rules.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.rules.with_extension("tmp");
            std::fs::write(&tmp, text.as_bytes())?;
            std::fs::rename(&tmp, &self.rules)
        };
        if let Err(e) = write() {
            tracing::warn!(rules = %self.rules.display(), "cannot write udev rules: {e}");
            return;
        }
        match Command::new("udevadm")
            .args(["control", "--reload"])
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => tracing::warn!("udevadm control --reload: {s}"),
            Err(e) => tracing::warn!("cannot run udevadm to reload the binding rules: {e}"),
        }
    }

    /// Queues a frame's events on the pointers they are for.
    pub fn queue(&mut self, frame: &OutputFrame) {
        match &mut self.kind {
            Kind::Desktop(output) => output.queue(frame.as_slice()),
            Kind::PerDisplay(have) => {
                for (target, e) in frame.targeted() {
                    if let Some(p) = have.get_mut(&target) {
                        p.device.push_event(e);
                        self.touched |= 1 << (target & 15);
                    }
                }
                for (id, p) in have.iter_mut() {
                    if self.touched & (1 << (id & 15)) != 0 {
                        p.device.close_frame();
                    }
                }
                self.touched = 0;
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Desktop(output) => output.flush(),
            Kind::PerDisplay(have) => {
                let mut result = Ok(());
                for p in have.values_mut() {
                    if let Err(e) = p.device.flush() {
                        result = Err(e);
                    }
                }
                result
            }
        }
    }

    pub fn emit(&mut self, frame: &OutputFrame) -> io::Result<()> {
        self.queue(frame);
        self.flush()
    }
}
