//! Frames waiting for eventq buffers.
//!
//! The queue is allocated once and never grows. Motion-only frames fold into whatever is queued
//! after them, so under backpressure the guest gets the newest position, while every button and
//! wheel frame stays separate and in order. A frame that has started to stream is never changed:
//! its remaining events go out before anything else, across as many refills as it takes.
//!
//! The queue can also *hold*: frames queued after a point wait, still coalescing, until the hold
//! ends. The device holds after telling the guest bridge its layout is in force, so that nothing
//! reaches the bridge in the new coordinates before it has let go of the device.
//!
//! The pointer's frames and the relative device's share the queue, so that the guest gets them
//! in the order they were made; each device's queue takes from the head only the frames that
//! are its own ([`PendingFrames::for_port`]), and motion folds only into motion of its kind.

use std::collections::VecDeque;

use pvmouse_spec::InputEvent;
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, FrameEvents};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{pending} frames are waiting for the guest to drain its event queue")]
pub struct QueueFull {
    pub pending: usize,
}

/// In a snapshot: every waiting frame, the one in flight and how far it got, the hold and the
/// count of coalesced frames. The capacity is the device's own, and a batch's budget ends with
/// the worker; a restored queue is [`checked`](PendingFrames::checked) against the capacity.
/// (The fields are crate-visible for the format-1 ledger's reader only.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingFrames {
    pub(crate) frames: VecDeque<Frame>,
    #[serde(skip)]
    capacity: usize,
    pub(crate) streaming: FrameEvents,
    /// The frame in flight is the relative device's.
    pub(crate) streaming_relative: bool,
    pub(crate) streamed: usize,
    pub(crate) coalesced: u64,
    /// While holding: how many of the queued frames may still go out.
    pub(crate) deliverable: Option<usize>,
    /// While pacing: how many more events may go out in this batch.
    #[serde(skip)]
    budget: Option<usize>,
    /// Whose frames `peek` takes from the head: the relative device's (`Some(true)`), the
    /// pointer's (`Some(false)`), or any.
    #[serde(skip)]
    port: Option<bool>,
}

impl PendingFrames {
    /// `capacity` bounds the button and wheel frames; one more slot holds trailing motion.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            frames: VecDeque::with_capacity(capacity + 1),
            capacity,
            streaming: FrameEvents::empty(),
            streaming_relative: false,
            streamed: 0,
            coalesced: 0,
            deliverable: None,
            budget: None,
            port: None,
        }
    }

    /// Frames not yet started. The one being streamed is not counted.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.streamed >= self.streaming.as_slice().len()
    }

    /// Button or wheel frames that can still be queued.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.held_frames())
    }

    /// Queued frames that count against capacity: all but a motion-only tail.
    fn held_frames(&self) -> usize {
        let motion_tail = self.frames.back().is_some_and(Frame::is_motion_only);
        self.frames.len() - usize::from(motion_tail)
    }

    /// Frames whose motion was folded into a later frame, since start.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    pub fn push(&mut self, frame: Frame) -> Result<(), QueueFull> {
        if frame.is_empty() {
            return Ok(());
        }
        if !frame.is_motion_only() && self.held_frames() >= self.capacity {
            return Err(QueueFull {
                pending: self.frames.len(),
            });
        }
        // Never fold across the start of a hold: what was released stays as it was.
        let last_released = self.deliverable == Some(self.frames.len());
        if let Some(last) = self.frames.back_mut().filter(|_| !last_released) {
            if last.is_motion_only() && last.is_relative() == frame.is_relative() {
                *last = Frame::absorb_earlier_motion(frame, last);
                self.coalesced += 1;
                return Ok(());
            }
        }
        // Motion-only frames exist only at the tail, so at most capacity + 1 frames are queued:
        // within what was reserved at construction, so no allocation.
        self.frames.push_back(frame);
        Ok(())
    }

    /// Frames queued from now on wait until [`Self::release`]; those already queued still go.
    pub fn hold(&mut self) {
        self.deliverable = Some(self.frames.len());
    }

    pub fn release(&mut self) {
        self.deliverable = None;
    }

    #[cfg(test)]
    pub fn holding(&self) -> bool {
        self.deliverable.is_some()
    }

    /// At most `events` more go out until the budget is lifted (`None`).
    pub fn set_budget(&mut self, events: Option<usize>) {
        self.budget = events;
    }

    /// From now on `peek` takes only the relative device's frames (`Some(true)`), only the
    /// pointer's (`Some(false)`), or any (`None`); at the head of the queue, a frame of the
    /// other device stops it, so neither overtakes the other.
    pub fn for_port(&mut self, relative: Option<bool>) {
        self.port = relative;
    }

    /// The next event to deliver, without consuming it.
    pub fn peek(&mut self) -> Option<InputEvent> {
        if self.budget == Some(0) {
            return None;
        }
        if self.streamed >= self.streaming.as_slice().len() {
            if self.deliverable == Some(0) {
                return None;
            }
            if let (Some(relative), Some(next)) = (self.port, self.frames.front()) {
                if next.is_relative() != relative {
                    return None;
                }
            }
            let frame = self.frames.pop_front()?;
            if let Some(n) = &mut self.deliverable {
                *n -= 1;
            }
            self.streaming = frame.events();
            self.streaming_relative = frame.is_relative();
            self.streamed = 0;
        }
        if self
            .port
            .is_some_and(|relative| relative != self.streaming_relative)
        {
            return None;
        }
        self.streaming.as_slice().get(self.streamed).copied()
    }

    /// Marks the event returned by the last `peek` as delivered.
    pub fn consume(&mut self) {
        self.streamed += 1;
        if let Some(b) = &mut self.budget {
            *b = b.saturating_sub(1);
        }
    }

    /// A restored queue, made whole for `capacity`: `None` if it holds more frames than the
    /// device can (the one in flight and trailing motion aside); the position within the frame
    /// in flight and the hold are bounded by what there is.
    pub(crate) fn checked(mut self, capacity: usize) -> Option<Self> {
        let n = self.frames.len();
        if n > capacity + 2 {
            return None;
        }
        self.frames.reserve_exact((capacity + 1).saturating_sub(n));
        self.capacity = capacity;
        self.streamed = self.streamed.min(self.streaming.as_slice().len());
        self.deliverable = self.deliverable.map(|d| d.min(n));
        self.budget = None;
        Some(self)
    }

    /// Drops the relative device's frames (its driver went away), the rest of one in flight
    /// included.
    pub fn drop_relative(&mut self) {
        self.frames.retain(|f| !f.is_relative());
        if self.streaming_relative {
            self.streaming = FrameEvents::empty();
            self.streamed = 0;
            self.streaming_relative = false;
        }
        if let Some(d) = &mut self.deliverable {
            *d = (*d).min(self.frames.len());
        }
    }

    /// The relative device's frames waiting, the one in flight included.
    pub fn relative_len(&self) -> usize {
        let in_flight = self.streaming_relative && self.streamed < self.streaming.as_slice().len();
        self.frames.iter().filter(|f| f.is_relative()).count() + usize::from(in_flight)
    }

    /// Drops everything, including the rest of a frame in flight. Used when the driver goes
    /// away: the next activation sends a full-state frame instead.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.streaming = FrameEvents::empty();
        self.streaming_relative = false;
        self.streamed = 0;
        self.deliverable = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::WheelStep;

    fn motion(x: u16) -> Frame {
        Frame {
            x: Some(x),
            ..Frame::default()
        }
    }

    fn click(down: bool) -> Frame {
        Frame {
            buttons_set: 1,
            buttons_down: u8::from(down),
            ..Frame::default()
        }
    }

    fn drain(p: &mut PendingFrames) -> Vec<InputEvent> {
        let mut out = Vec::new();
        while let Some(e) = p.peek() {
            out.push(e);
            p.consume();
        }
        out
    }

    #[test]
    fn motion_coalesces_to_the_newest_position() {
        let mut p = PendingFrames::with_capacity(4);
        for x in 0..100 {
            p.push(motion(x)).unwrap();
        }
        assert_eq!(p.len(), 1);
        assert_eq!(p.coalesced(), 99);
        let evs = drain(&mut p);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].value, 99);
    }

    #[test]
    fn motion_before_a_click_lands_in_the_click_frame_and_clicks_never_merge() {
        let mut p = PendingFrames::with_capacity(8);
        p.push(motion(1)).unwrap();
        p.push(click(true)).unwrap();
        p.push(motion(2)).unwrap();
        p.push(motion(3)).unwrap();
        p.push(click(false)).unwrap();
        p.push(motion(4)).unwrap();
        assert_eq!(p.len(), 3);
        let evs = drain(&mut p);
        let values: Vec<(u16, i32)> = evs.iter().map(|e| (e.code, e.value)).collect();
        // [X=1 LEFT=1 SYN] [X=3 LEFT=0 SYN] [X=4 SYN]
        assert_eq!(
            values,
            vec![
                (0, 1),
                (0x110, 1),
                (0, 0),
                (0, 3),
                (0x110, 0),
                (0, 0),
                (0, 4),
                (0, 0)
            ]
        );
    }

    #[test]
    fn a_full_queue_refuses_button_frames_but_still_takes_motion() {
        let mut p = PendingFrames::with_capacity(2);
        p.push(click(true)).unwrap();
        p.push(click(false)).unwrap();
        assert_eq!(p.push(click(true)), Err(QueueFull { pending: 2 }));
        let wheel = Frame {
            wheel_vertical: WheelStep {
                detents: 1,
                hi_res: 120,
            },
            ..Frame::default()
        };
        assert!(p.push(wheel).is_err());
        // Motion still finds the trailing slot, and more motion folds into it.
        p.push(motion(1)).unwrap();
        p.push(motion(2)).unwrap();
        assert_eq!(p.len(), 3);
        // A click would turn that motion into a held frame: still refused.
        assert!(p.push(click(true)).is_err());
        let evs = drain(&mut p);
        assert_eq!(evs[evs.len() - 2].value, 2, "newest position arrives last");
        assert_eq!(p.free(), 2);
    }

    #[test]
    fn a_frame_in_flight_is_finished_before_the_next_and_never_altered() {
        let mut p = PendingFrames::with_capacity(4);
        p.push(Frame {
            x: Some(1),
            y: Some(1),
            ..Frame::default()
        })
        .unwrap();
        let first = p.peek().unwrap();
        p.consume();
        assert_eq!(first.value, 1);
        // The rest of frame 1 is in flight; new motion must not rewrite it.
        p.push(motion(7)).unwrap();
        let rest = drain(&mut p);
        assert_eq!(rest[0].value, 1, "Y of the first frame");
        assert!(rest[1].is_syn_report());
        assert_eq!(rest[2].value, 7);
    }

    #[test]
    fn clear_drops_the_frame_in_flight() {
        let mut p = PendingFrames::with_capacity(4);
        p.push(click(true)).unwrap();
        p.peek();
        p.consume();
        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.peek(), None);
    }

    #[test]
    fn a_hold_keeps_back_what_comes_after_it_and_folds_nothing_across_it() {
        let mut p = PendingFrames::with_capacity(8);
        p.push(motion(1)).unwrap();
        p.hold();
        p.push(motion(2)).unwrap();
        p.push(click(true)).unwrap();
        p.push(motion(3)).unwrap();
        assert!(p.holding());
        let released = drain(&mut p);
        assert_eq!(
            released,
            motion(1).events().as_slice(),
            "only what came before"
        );
        assert!(p.peek().is_none());
        p.release();
        let rest = drain(&mut p);
        let mut expected = Frame::absorb_earlier_motion(click(true), &motion(2))
            .events()
            .as_slice()
            .to_vec();
        expected.extend_from_slice(motion(3).events().as_slice());
        assert_eq!(rest, expected);
    }
}
