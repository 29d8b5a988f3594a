//! Finding pvmouse devices by the spec's identity, never by event-node number.

use std::path::{Path, PathBuf};

use evdev::Device;
use pvmouse_spec::evdev::BUS_VIRTUAL;
use pvmouse_spec::profile::{PRODUCT, VENDOR};

pub fn is_pvmouse(dev: &Device) -> bool {
    let id = dev.input_id();
    id.bus_type().0 == BUS_VIRTUAL && id.vendor() == VENDOR && id.product() == PRODUCT
}

/// The nodes in `dir` whose names start with `prefix` (`event`, `card`), sorted.
pub fn nodes(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    nodes.sort();
    nodes
}

/// Every pvmouse evdev node under `dir` (normally /dev/input), sorted.
pub fn scan(dir: &Path) -> Vec<(PathBuf, Device)> {
    nodes(dir, "event")
        .into_iter()
        .filter_map(|p| {
            let dev = Device::open(&p).ok()?;
            is_pvmouse(&dev).then_some((p, dev))
        })
        .collect()
}
