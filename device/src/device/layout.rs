//! The guest bridge's desktop layout: taking it over, holding the stream while the bridge lets
//! go of the device, and going back to per-display positions.

use std::time::{Duration, Instant};

use pvmouse_spec::status::{Acknowledgement, LayoutEvent, LayoutReceiver, RELEASE_TIMEOUT_MS};

use super::Core;
use super::link::DriverLink;
use crate::coordinates::Coordinates;
use crate::frame::Frame;
use crate::guest_fault::GuestFault;

impl Core {
    /// Queues a frame for the driver, if there is one. Only acknowledgements and position
    /// frames come here; a full queue loses an acknowledgement, which the bridge retries.
    pub(super) fn queue(&mut self, frame: Frame) {
        if !matches!(self.driver, DriverLink::Inactive) {
            let _ = self.pending.push(frame);
        }
    }

    pub(super) fn acknowledge(&mut self, ack: Acknowledgement) {
        self.queue(Frame {
            acknowledgement: Some(ack.encode()),
            ..Frame::default()
        });
    }

    /// Puts `coordinates` in force and moves the guest's pointer to where it is in them.
    pub(super) fn recoordinate(&mut self, coordinates: Coordinates) {
        self.coordinates = coordinates;
        let frame = self.state.recoordinate(&self.coordinates);
        self.queue(frame);
    }

    pub(super) fn end_hold(&mut self) {
        self.pending.release();
        self.hold_until = None;
    }

    /// Back to per-display positions: the driver or the bridge that knew the layout is gone.
    pub(super) fn forget_layout(&mut self) {
        self.layouts = LayoutReceiver::default();
        self.end_hold();
        if self.coordinates.is_desktop() {
            self.recoordinate(Coordinates::PerDisplay);
        }
    }

    /// One complete message from the guest bridge about its layout (spec/pvmouse.md §6.1).
    pub(super) fn on_layout(&mut self, event: LayoutEvent, displays: u8, now: Instant) {
        match event {
            LayoutEvent::Layout { layout, tag } => {
                let fits = layout.displays().all(|(id, _)| id < displays);
                if !fits || !self.bridge.present() {
                    self.faults.record(GuestFault::LayoutRefused);
                    self.acknowledge(Acknowledgement::Refused { tag });
                    return;
                }
                self.acknowledge(Acknowledgement::Applied { tag });
                // Nothing more reaches the bridge, which still holds the device, until it lets
                // go: the next frames are in coordinates it must not map.
                self.pending.hold();
                self.hold_until = Some(now + Duration::from_millis(RELEASE_TIMEOUT_MS));
                self.recoordinate(Coordinates::Desktop(layout));
            }
            LayoutEvent::Refused { tag, .. } => {
                self.faults.record(GuestFault::LayoutRefused);
                self.acknowledge(Acknowledgement::Refused { tag });
            }
            LayoutEvent::Clear { tag } => {
                self.end_hold();
                self.acknowledge(Acknowledgement::Cleared { tag });
                self.recoordinate(Coordinates::PerDisplay);
            }
            LayoutEvent::Released { .. } => self.end_hold(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::device::PointerDevice;
    use crate::testing::{MockEventQueue, MockRing, guest_memory};
    use pvmouse_spec::InputEvent;
    use pvmouse_spec::evdev::{ABS_X, BTN_LEFT, EV_KEY};
    use pvmouse_spec::profile::DISPLAY_AXIS;

    #[test]
    fn a_layout_from_the_bridge_is_acknowledged_held_then_sent_over_the_desktop() {
        use pvmouse_spec::evdev::ABS_Y;
        use pvmouse_spec::status::{StatusMessage, encode_layout};
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        dev.submit(&move_to(1, 0, 0)).unwrap();
        let mut seen = ring.used_idx();
        let mut status = StatusWriter::new(&mem);
        status.send(&dev, &[heartbeat()]);
        let layout = side_by_side();
        status.send(&dev, &encode_layout(&layout, 9).unwrap());
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Applied { tag: 9 })
        );
        assert!(dev.status().desktop_coordinates);
        seen = ring.used_idx();
        // Held: nothing reaches the bridge that still holds the device.
        dev.submit(&move_to(0, 65535, 65535)).unwrap();
        dev.submit(&press(true)).unwrap();
        assert_eq!(ring.used_idx(), seen);
        status.send(&dev, &[StatusMessage::Released { tag: 9 }.encode()]);
        let (x, y) = layout.map(0, 65535, 65535).unwrap();
        assert_eq!(
            events(&ring, seen),
            [
                abs(DISPLAY_AXIS, 0),
                abs(ABS_X, x),
                abs(ABS_Y, y),
                InputEvent::new(EV_KEY, BTN_LEFT, 1),
                InputEvent::syn_report()
            ],
            "the held move and press, the move in desktop values"
        );
        seen = ring.used_idx();
        // Clearing goes back to per-display values, and says where in the stream.
        status.send(&dev, &[StatusMessage::LayoutClear { tag: 10 }.encode()]);
        let mut expected = ack(Acknowledgement::Cleared { tag: 10 }).to_vec();
        expected.extend([
            abs(ABS_X, 65535),
            abs(ABS_Y, 65535),
            InputEvent::syn_report(),
        ]);
        assert_eq!(events(&ring, seen), expected);
        assert!(!dev.status().desktop_coordinates);
    }

    #[test]
    fn a_hold_ends_by_itself_and_a_silent_bridge_takes_its_layout_with_it() {
        use pvmouse_spec::status::{PRESENCE_TIMEOUT_MS, encode_layout};
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        dev.submit(&move_to(1, 100, 100)).unwrap();
        let mut status = StatusWriter::new(&mem);
        status.send(&dev, &[heartbeat()]);
        status.send(&dev, &encode_layout(&side_by_side(), 1).unwrap());
        let seen = ring.used_idx();
        let deadline = dev.next_deadline().unwrap();
        assert!(deadline <= Instant::now() + Duration::from_millis(RELEASE_TIMEOUT_MS));
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        dev.on_timer();
        assert!(ring.used_idx() > seen, "the hold ended without the bridge");
        std::thread::sleep(Duration::from_millis(PRESENCE_TIMEOUT_MS));
        let seen = ring.used_idx();
        dev.on_timer();
        assert!(!dev.status().desktop_coordinates);
        assert_eq!(
            events(&ring, seen),
            [
                abs(ABS_X, 100),
                abs(pvmouse_spec::evdev::ABS_Y, 100),
                InputEvent::syn_report()
            ],
            "back to where the host put it, per display"
        );
    }

    #[test]
    fn layouts_without_a_bridge_for_missing_displays_or_damaged_are_refused() {
        use pvmouse_spec::layout::{Layout, Rect};
        use pvmouse_spec::status::encode_layout;
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        let mut status = StatusWriter::new(&mem);
        let words = encode_layout(&side_by_side(), 1).unwrap();
        let mut seen = ring.used_idx();
        status.send(&dev, &words);
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Refused { tag: 1 }),
            "no bridge"
        );
        status.send(&dev, &[heartbeat()]);
        let third = Layout::new(std::collections::BTreeMap::from([(
            2,
            Rect {
                x: 0,
                y: 0,
                width: 10,
                height: 10,
            },
        )]))
        .unwrap();
        seen = ring.used_idx();
        status.send(&dev, &encode_layout(&third, 2).unwrap());
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Refused { tag: 2 }),
            "display 2"
        );
        let mut lost = words.clone();
        lost.remove(5);
        seen = ring.used_idx();
        status.send(&dev, &lost);
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Refused { tag: 1 }),
            "a value lost"
        );
        assert!(!dev.status().desktop_coordinates);
        assert_eq!(dev.status().guest_faults, vec![("layout-refused", 3)]);
    }
}
