//! The guest-local protocol between the per-user session agent (`pvmouse-session`) and the
//! system-wide bridge (`pvmouse-guestd`): the agent tells the bridge the display server's logical
//! layout and how the server binds absolute pointers. `spec/session.md` is normative.
//!
//! One JSON object per line, both ways, over a Unix stream socket. The agent sends a
//! [`SessionLayout`] whenever the layout changes; the bridge answers each with one [`Reply`].

use serde::{Deserialize, Serialize};

use crate::layout::Scale;

/// Where the bridge listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/pvmouse/session.sock";

/// A line longer than this is refused and the connection closed: a layout of 16 outputs with
/// long names is under 4 KiB.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Agents connected at once; one more is told so and closed.
pub const MAX_AGENTS: usize = 8;

/// A line not completed this long after its first byte closes the connection, whether the
/// agent stalls or trickles. A connection between whole lines may stay idle for ever: layouts
/// change rarely.
pub const PARTIAL_LINE_TIMEOUT_MS: u64 = 10_000;

/// How the display server maps an absolute pointer, and so how many pointers the bridge
/// creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointerMode {
    /// One pointer whose range spans the bounding box of the logical layout (X11, mutter, KWin,
    /// wlroots/sway).
    Desktop,
    /// One pointer per display, each bound to its output by the server (Weston, via udev's
    /// `WL_OUTPUT`).
    PerDisplay,
}

/// `wl_output.transform`'s values, which X11 RandR rotations and reflections map onto: the
/// transform the server applies to the logical output to draw it into the framebuffer.
pub const TRANSFORM_MAX: u8 = 7;

/// One output of the display server, in its own words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionOutput {
    /// The output's name, which is its DRM connector's (`Virtual-1`), when the display server
    /// says it (`wl_output` version 4, `xdg-output`, RandR). Without it (Weston 10 has
    /// neither), the bridge matches the output to a connector by its mode, then by order.
    #[serde(default)]
    pub name: Option<String>,
    /// The logical rectangle: position and size in the server's global space, after scale and
    /// transform.
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    /// The current mode, in framebuffer pixels, before any transform.
    pub mode_width: u32,
    pub mode_height: u32,
    /// `wl_output.transform`, 0 (normal) … 7 (flipped-270).
    pub transform: u8,
    /// The scale the server draws the output at, as framebuffer pixels per logical pixel, when
    /// the server publishes it exactly (wlroots' output management, X11 RandR's transform).
    /// Absent, the bridge takes the ratio of the mode's size to the logical size, which is
    /// exact wherever the logical size is (integer scales, mutter). Added after version 1's
    /// first release: a bridge older than it refuses the field, and the agent sends the layout
    /// again without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
}

/// Agent → bridge: the whole layout, every time it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLayout {
    /// The display server, for logs (`x11`, `sway`, `weston`, `mutter`, …).
    pub server: String,
    /// How the server binds absolute pointers.
    pub mode: PointerMode,
    pub outputs: Vec<SessionOutput>,
}

/// Bridge → agent, one per [`SessionLayout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Reply {
    /// The layout is in use: the pvmouse display id of each output the bridge matched, in the
    /// order sent, and the mode in force (an operator's `--mode` beats the agent's).
    Applied {
        displays: Vec<Option<u8>>,
        mode: PointerMode,
    },
    /// The layout was not used, and why. The bridge keeps its previous layout.
    Error(String),
    /// This peer may not set the layout (it is not the session's user), or no more agents are
    /// taken; the bridge closes the connection after this line.
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_reads_as_documented() {
        let line = r#"{"server":"sway","mode":"desktop","outputs":[{"name":"Virtual-1","x":0,"y":0,"width":512,"height":384,"mode_width":1024,"mode_height":768,"transform":0}]}"#;
        let l: SessionLayout = serde_json::from_str(line).unwrap();
        assert_eq!(l.mode, PointerMode::Desktop);
        assert_eq!(l.outputs[0].mode_width, 1024);
        assert!(serde_json::from_str::<SessionLayout>(&line.replace("desktop", "both")).is_err());
        assert!(
            serde_json::from_str::<SessionLayout>(&line.replace("\"x\"", "\"xx\"")).is_err(),
            "unknown fields are refused"
        );
        let r = serde_json::to_string(&Reply::Applied {
            displays: vec![Some(0), None],
            mode: PointerMode::PerDisplay,
        })
        .unwrap();
        assert_eq!(
            r,
            r#"{"applied":{"displays":[0,null],"mode":"per-display"}}"#
        );
    }
}
