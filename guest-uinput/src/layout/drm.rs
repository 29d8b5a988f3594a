//! A layout from DRM/KMS: each connected output's current mode, display id = scanout
//! (connector) index, arranged left to right in connector order, as most compositors default.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use drm::control::{Device as ControlDevice, connector};

use super::{Display, Layout, Rect};

struct Card(File);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl drm::Device for Card {}
impl ControlDevice for Card {}

/// The kernel's name for a connector (`Virtual-2`), which display servers use for the output.
fn connector_name(info: &connector::Info) -> String {
    format!("{}-{}", info.interface().as_str(), info.interface_id())
}

/// One connector of the card pvmouse's displays are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    /// The kernel's name, which display servers use for the output (`Virtual-2`).
    pub name: String,
    /// Its index on the card: for virtio-gpu the scanout, so the QEMU head and pvmouse display.
    pub id: u8,
    /// The mode it scans out, when connected and lit.
    pub mode: Option<(u32, u32)>,
}

/// The connectors of the first card that has any.
pub fn connectors(dri: &Path) -> Vec<Connector> {
    for card in crate::devices::nodes(dri, "card") {
        let Ok(file) = OpenOptions::new().read(true).open(&card) else {
            continue;
        };
        let card = Card(file);
        let Ok(res) = card.resource_handles() else {
            continue;
        };
        let found: Vec<Connector> = res
            .connectors()
            .iter()
            .enumerate()
            .filter_map(|(index, handle)| {
                let info = card.get_connector(*handle, false).ok()?;
                let mode = (info.state() == connector::State::Connected)
                    .then(|| current_mode(&card, &info))
                    .flatten();
                Some(Connector {
                    name: connector_name(&info),
                    id: u8::try_from(index).ok()?,
                    mode,
                })
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// The size of the mode the connector's CRTC scans out.
fn current_mode(card: &Card, info: &connector::Info) -> Option<(u32, u32)> {
    let mode = info
        .current_encoder()
        .and_then(|e| card.get_encoder(e).ok())
        .and_then(|e| e.crtc())
        .and_then(|c| card.get_crtc(c).ok())
        .and_then(|c| c.mode())?;
    let (w, h) = mode.size();
    Some((u32::from(w), u32::from(h)))
}

/// (scanout index, name, width, height) of every connected output with an active mode on one
/// card.
fn card_outputs(path: &Path) -> std::io::Result<Vec<(u8, String, u32, u32)>> {
    let card = Card(OpenOptions::new().read(true).write(true).open(path)?);
    let res = card.resource_handles()?;
    let mut out = Vec::new();
    for (index, handle) in res.connectors().iter().enumerate() {
        let Ok(info) = card.get_connector(*handle, false) else {
            continue;
        };
        if info.state() != connector::State::Connected {
            continue;
        }
        if let (Some((w, h)), Ok(index)) = (current_mode(&card, &info), u8::try_from(index)) {
            out.push((index, connector_name(&info), w, h));
        }
    }
    Ok(out)
}

/// The layout of the first DRM card with active outputs, if any.
pub fn detect(dri: &Path) -> Option<Layout> {
    let cards = crate::devices::nodes(dri, "card");
    for card in cards {
        let outputs = match card_outputs(&card) {
            Ok(o) if !o.is_empty() => o,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(card = %card.display(), "cannot read DRM outputs: {e}");
                continue;
            }
        };
        let mut x = 0i32;
        let mut displays = BTreeMap::new();
        for (index, name, w, h) in outputs {
            let mut display = Display::plain(Rect {
                x,
                y: 0,
                width: w,
                height: h,
            });
            display.name = Some(name);
            displays.insert(index, display);
            x = x.saturating_add(i32::try_from(w).unwrap_or(i32::MAX));
        }
        match Layout::with_displays(displays) {
            Ok(layout) => {
                tracing::info!(card = %card.display(), ?layout, "layout detected from DRM");
                return Some(layout);
            }
            Err(e) => tracing::warn!(card = %card.display(), "unusable DRM layout: {e}"),
        }
    }
    None
}
