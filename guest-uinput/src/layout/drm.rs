//! A layout from DRM/KMS: each connected output's current mode, display id = scanout
//! (connector) index, arranged left to right in connector order, as most compositors default.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use drm::control::{Device as ControlDevice, connector};

use super::{Layout, Rect};

struct Card(File);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl drm::Device for Card {}
impl ControlDevice for Card {}

/// (scanout index, width, height) of every connected output with an active mode on one card.
fn card_outputs(path: &Path) -> std::io::Result<Vec<(u8, u32, u32)>> {
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
        let mode = info
            .current_encoder()
            .and_then(|e| card.get_encoder(e).ok())
            .and_then(|e| e.crtc())
            .and_then(|c| card.get_crtc(c).ok())
            .and_then(|c| c.mode());
        if let (Some(mode), Ok(index)) = (mode, u8::try_from(index)) {
            let (w, h) = mode.size();
            out.push((index, u32::from(w), u32::from(h)));
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
        for (index, w, h) in outputs {
            displays.insert(
                index,
                Rect {
                    x,
                    y: 0,
                    width: w,
                    height: h,
                },
            );
            x = x.saturating_add(i32::try_from(w).unwrap_or(i32::MAX));
        }
        match Layout::new(displays) {
            Ok(layout) => {
                tracing::info!(card = %card.display(), ?layout, "layout detected from DRM");
                return Some(layout);
            }
            Err(e) => tracing::warn!(card = %card.display(), "unusable DRM layout: {e}"),
        }
    }
    None
}
