//! Which layout and which mode the bridge runs in, when session agents come and go.
//!
//! Any number of session agents may be connected (one per display server, say); the newest
//! layout any of them sent is the session's word, and [`resolve`](crate::layout::resolve) puts
//! it after the operator's `--layout` and before the layout file and DRM. The mode is the
//! operator's `--mode`, else the newest agent's while the session's layout is in force, else
//! desktop. In desktop mode the device maps, when the hand-off is allowed; per-display pointers
//! need the bridge to map.
//!
//! Pure: the main loop in [`crate::daemon`] reads the layout sources, creates the pointers and
//! answers the agents; this module says what to read, which mode follows, and what to answer,
//! so every rule is tested here without a socket, a file or a device.

use std::collections::BTreeMap;

use pvmouse_spec::layout::Layout;
use pvmouse_spec::session::{PointerMode, Reply};

use crate::handoff::Want;
use crate::layout::resolve::Source;

/// A session agent's newest layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLayout {
    /// The display server the agent speaks for, for the logs.
    pub server: String,
    pub layout: Layout,
    pub mode: PointerMode,
    /// When it arrived, in the order of arrival: the newest agent wins.
    seq: u64,
}

/// The session agents' layouts and the operator's mode, and what follows from them.
#[derive(Debug)]
pub struct Arbiter {
    /// `--mode`: the operator's choice, which beats the agents'. `None` takes their word.
    operator_mode: Option<PointerMode>,
    agents: BTreeMap<u64, AgentLayout>,
    next_seq: u64,
}

/// A layout an agent just sent, taken in until the bridge has tried it: [`Arbiter::settle`]
/// keeps it or puts back what the agent had before.
#[derive(Debug)]
#[must_use = "settle the proposal, or a layout that failed stays in the running"]
pub struct Proposal {
    agent: u64,
    previous: Option<AgentLayout>,
}

/// What the bridge made of the sources as they are: the source in force and its mode, or why
/// nothing was applied.
pub type Outcome = Result<(Source, PointerMode), String>;

impl Arbiter {
    pub fn new(operator_mode: Option<PointerMode>) -> Self {
        Self {
            operator_mode,
            agents: BTreeMap::new(),
            next_seq: 0,
        }
    }

    fn newest(&self) -> Option<&AgentLayout> {
        self.agents.values().max_by_key(|a| a.seq)
    }

    /// The session's layout for [`resolve`](crate::layout::resolve): the newest agent's.
    pub fn session_layout(&self) -> Option<&Layout> {
        self.newest().map(|a| &a.layout)
    }

    /// The mode for a layout from `source`: the operator's, else the newest agent's if the
    /// layout is the session's, else desktop.
    pub fn mode_for(&self, source: Source) -> PointerMode {
        let agent = self
            .newest()
            .filter(|_| source == Source::Session)
            .map(|a| a.mode);
        self.operator_mode.or(agent).unwrap_or(PointerMode::Desktop)
    }

    /// An agent sent a layout: from now on it is the newest. The bridge then reloads and
    /// settles the proposal with what came of it.
    pub fn propose(
        &mut self,
        agent: u64,
        server: String,
        layout: Layout,
        mode: PointerMode,
    ) -> Proposal {
        self.next_seq += 1;
        let previous = self.agents.insert(
            agent,
            AgentLayout {
                server,
                layout,
                mode,
                seq: self.next_seq,
            },
        );
        Proposal { agent, previous }
    }

    /// The answer for the agent, from what the reload after its proposal made of it. A layout
    /// that could not be applied is forgotten, so it cannot win later either: the agent's
    /// previous layout, if it had one, stands again, in its old place in the order.
    pub fn settle(
        &mut self,
        proposal: Proposal,
        outcome: Outcome,
        displays: Vec<Option<u8>>,
    ) -> Reply {
        match outcome {
            Ok((Source::Session, mode)) => Reply::Applied { displays, mode },
            Ok((source, _)) => Reply::Error(format!(
                "kept for later: the bridge's {source:?} layout is in force \
                 (the operator's --layout beats the session's)"
            )),
            Err(e) => {
                match proposal.previous {
                    Some(p) => self.agents.insert(proposal.agent, p),
                    None => self.agents.remove(&proposal.agent),
                };
                Reply::Error(e)
            }
        }
    }

    /// An agent disconnected: its layout no longer holds. Returns it, if it had sent one, and
    /// then the bridge reloads; an agent that sent nothing changes nothing.
    pub fn forget(&mut self, agent: u64) -> Option<AgentLayout> {
        self.agents.remove(&agent)
    }
}

/// Who maps in `mode`: the device, in desktop mode when the hand-off is allowed; the bridge
/// otherwise, since per-display pointers are the bridge's.
pub fn want(handoff: bool, mode: PointerMode, layout: &Layout) -> Want {
    if handoff && mode == PointerMode::Desktop {
        Want::HandOff(layout.clone())
    } else {
        Want::Map
    }
}

/// Whether going from one layout and mode to another keeps the uinput pointers as they are (and
/// a drag in progress with them): the same mode, and in per-display mode the same displays,
/// bound to the same outputs. Otherwise the pointers are re-created and held buttons released.
pub fn keeps_pointers(
    (from_mode, from): (PointerMode, &Layout),
    (to_mode, to): (PointerMode, &Layout),
) -> bool {
    from_mode == to_mode && (to_mode == PointerMode::Desktop || same_displays(from, to))
}

/// The same displays, bound to the same outputs.
fn same_displays(a: &Layout, b: &Layout) -> bool {
    a.displays()
        .map(|(id, d)| (id, &d.name))
        .eq(b.displays().map(|(id, d)| (id, &d.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ParseLayout;
    use PointerMode::{Desktop, PerDisplay};

    fn spec(s: &str) -> Layout {
        Layout::parse_spec(s).unwrap()
    }

    fn side_by_side() -> Layout {
        spec("0=1024x768@0,0,1=1280x1024@1024,0")
    }

    fn stacked() -> Layout {
        spec("0=1024x768@0,0,1=1280x1024@0,768")
    }

    /// `layout` with its displays bound to these outputs, in order.
    fn named(layout: &Layout, names: &[&str]) -> Layout {
        let displays = layout
            .displays()
            .zip(names)
            .map(|((id, d), name)| {
                let mut d = d.clone();
                d.name = Some((*name).to_owned());
                (id, d)
            })
            .collect();
        Layout::with_displays(displays).unwrap()
    }

    /// An agent's layout, applied as the session's.
    fn applied(a: &mut Arbiter, agent: u64, layout: Layout, mode: PointerMode) {
        let p = a.propose(agent, format!("server{agent}"), layout, mode);
        let in_force = a.mode_for(Source::Session);
        let reply = a.settle(p, Ok((Source::Session, in_force)), vec![Some(0)]);
        assert!(matches!(reply, Reply::Applied { .. }), "{reply:?}");
    }

    #[test]
    fn without_agents_there_is_no_session_layout_and_the_mode_is_desktop_or_the_operators() {
        let a = Arbiter::new(None);
        assert_eq!(a.session_layout(), None);
        for source in [
            Source::CommandLine,
            Source::Session,
            Source::File,
            Source::Drm,
        ] {
            assert_eq!(a.mode_for(source), Desktop, "{source:?}");
        }
        assert_eq!(a.mode_for(Source::Fallback), Desktop);
        let a = Arbiter::new(Some(PerDisplay));
        assert_eq!(a.mode_for(Source::Drm), PerDisplay);
        assert_eq!(a.mode_for(Source::Session), PerDisplay);
    }

    #[test]
    fn the_agents_mode_holds_only_while_its_layout_is_in_force() {
        let mut a = Arbiter::new(None);
        let _ = a.propose(1, "weston".into(), side_by_side(), PerDisplay);
        assert_eq!(a.session_layout(), Some(&side_by_side()));
        assert_eq!(a.mode_for(Source::Session), PerDisplay);
        for source in [
            Source::CommandLine,
            Source::File,
            Source::Drm,
            Source::Fallback,
        ] {
            assert_eq!(a.mode_for(source), Desktop, "{source:?}");
        }
    }

    #[test]
    fn the_operators_mode_beats_the_agents() {
        for operator in [Desktop, PerDisplay] {
            let mut a = Arbiter::new(Some(operator));
            for agent_mode in [Desktop, PerDisplay] {
                let _ = a.propose(1, "s".into(), side_by_side(), agent_mode);
                assert_eq!(a.mode_for(Source::Session), operator);
                assert_eq!(a.mode_for(Source::Drm), operator);
            }
        }
    }

    #[test]
    fn the_newest_layout_wins_whatever_the_agents_number() {
        let mut a = Arbiter::new(None);
        applied(&mut a, 7, side_by_side(), Desktop);
        applied(&mut a, 3, stacked(), PerDisplay);
        assert_eq!(a.session_layout(), Some(&stacked()), "agent 3 spoke last");
        assert_eq!(a.mode_for(Source::Session), PerDisplay);
        // Agent 7 speaks again: its new word is the newest.
        let other = spec("0=800x600@0,0");
        applied(&mut a, 7, other.clone(), Desktop);
        assert_eq!(a.session_layout(), Some(&other));
        assert_eq!(a.mode_for(Source::Session), Desktop);
    }

    #[test]
    fn when_the_newest_agent_goes_the_one_before_it_holds_again() {
        let mut a = Arbiter::new(None);
        applied(&mut a, 1, side_by_side(), Desktop);
        applied(&mut a, 2, stacked(), PerDisplay);
        let gone = a.forget(2).expect("agent 2 had sent a layout");
        assert_eq!((gone.server.as_str(), gone.mode), ("server2", PerDisplay));
        assert_eq!(gone.layout, stacked());
        assert_eq!(a.session_layout(), Some(&side_by_side()));
        assert_eq!(a.mode_for(Source::Session), Desktop);
        assert!(a.forget(1).is_some());
        assert_eq!(
            a.session_layout(),
            None,
            "no agent left: file and DRM serve"
        );
        assert_eq!(a.mode_for(Source::Session), Desktop);
    }

    #[test]
    fn an_agent_that_sent_nothing_or_is_gone_already_changes_nothing() {
        let mut a = Arbiter::new(None);
        assert_eq!(a.forget(5), None);
        applied(&mut a, 1, side_by_side(), PerDisplay);
        assert_eq!(a.forget(5), None);
        assert!(a.forget(1).is_some());
        assert_eq!(a.forget(1), None, "gone once, not twice");
    }

    #[test]
    fn an_applied_session_layout_is_answered_with_its_displays_and_the_mode_in_force() {
        let mut a = Arbiter::new(Some(Desktop));
        let p = a.propose(1, "weston".into(), side_by_side(), PerDisplay);
        let mode = a.mode_for(Source::Session);
        let reply = a.settle(p, Ok((Source::Session, mode)), vec![Some(0), None]);
        assert_eq!(
            reply,
            Reply::Applied {
                displays: vec![Some(0), None],
                mode: Desktop,
            },
            "the operator's mode, not the agent's"
        );
        assert_eq!(a.session_layout(), Some(&side_by_side()));
    }

    #[test]
    fn a_layout_beaten_by_the_operators_is_kept_for_later() {
        let mut a = Arbiter::new(None);
        let p = a.propose(1, "sway".into(), stacked(), PerDisplay);
        let reply = a.settle(p, Ok((Source::CommandLine, Desktop)), vec![Some(0)]);
        match reply {
            Reply::Error(why) => {
                assert!(why.starts_with("kept for later"), "{why}");
                assert!(why.contains("CommandLine"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.session_layout(), Some(&stacked()), "still in the running");
        assert_eq!(a.mode_for(Source::Session), PerDisplay);
    }

    #[test]
    fn a_layout_that_fails_is_forgotten_and_the_agents_previous_one_stands_in_its_old_place() {
        let mut a = Arbiter::new(None);
        applied(&mut a, 1, side_by_side(), Desktop);
        applied(&mut a, 2, stacked(), PerDisplay);
        // Agent 1's new layout cannot be applied: its old one is back, behind agent 2's.
        let bad = spec("0=800x600@0,0");
        let p = a.propose(1, "server1".into(), bad, PerDisplay);
        let reply = a.settle(p, Err("no uinput".into()), vec![Some(0)]);
        assert_eq!(reply, Reply::Error("no uinput".into()));
        assert_eq!(a.session_layout(), Some(&stacked()));
        assert!(a.forget(2).is_some());
        assert_eq!(a.session_layout(), Some(&side_by_side()));
        assert_eq!(a.mode_for(Source::Session), Desktop);
    }

    #[test]
    fn a_first_layout_that_fails_leaves_no_trace() {
        let mut a = Arbiter::new(None);
        let p = a.propose(4, "kwin".into(), side_by_side(), PerDisplay);
        let reply = a.settle(p, Err("cannot create the pointers".into()), vec![]);
        assert_eq!(reply, Reply::Error("cannot create the pointers".into()));
        assert_eq!(a.session_layout(), None);
        assert_eq!(a.mode_for(Source::Session), Desktop);
        assert_eq!(a.forget(4), None, "nothing left to forget");
    }

    #[test]
    fn the_device_maps_only_in_desktop_mode_and_only_when_allowed() {
        let layout = side_by_side();
        assert_eq!(want(true, Desktop, &layout), Want::HandOff(layout.clone()));
        assert_eq!(want(true, PerDisplay, &layout), Want::Map);
        assert_eq!(want(false, Desktop, &layout), Want::Map);
        assert_eq!(want(false, PerDisplay, &layout), Want::Map);
    }

    #[test]
    fn desktop_pointers_stay_whatever_the_layout() {
        assert!(keeps_pointers(
            (Desktop, &side_by_side()),
            (Desktop, &stacked())
        ));
        assert!(keeps_pointers(
            (
                Desktop,
                &named(&side_by_side(), &["Virtual-1", "Virtual-2"])
            ),
            (Desktop, &spec("0=800x600@0,0"))
        ));
    }

    #[test]
    fn per_display_pointers_stay_while_the_displays_and_their_outputs_do() {
        let a = named(&side_by_side(), &["Virtual-1", "Virtual-2"]);
        let moved = named(&stacked(), &["Virtual-1", "Virtual-2"]);
        assert!(keeps_pointers((PerDisplay, &a), (PerDisplay, &moved)));
        assert!(!keeps_pointers(
            (PerDisplay, &a),
            (
                PerDisplay,
                &named(&side_by_side(), &["Virtual-2", "Virtual-1"])
            )
        ));
        assert!(!keeps_pointers(
            (PerDisplay, &a),
            (PerDisplay, &side_by_side())
        ));
        assert!(!keeps_pointers(
            (PerDisplay, &side_by_side()),
            (PerDisplay, &spec("0=1024x768@0,0"))
        ));
    }

    #[test]
    fn a_mode_change_recreates_the_pointers() {
        let layout = side_by_side();
        assert!(!keeps_pointers((Desktop, &layout), (PerDisplay, &layout)));
        assert!(!keeps_pointers((PerDisplay, &layout), (Desktop, &layout)));
    }
}
