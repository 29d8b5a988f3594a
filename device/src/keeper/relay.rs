//! The keeper's half of a frontend connection: each frontend message is recorded in the
//! [`Session`] and passed to the current worker, and its answer, if it owes one, comes back.
//! When the worker goes away (killed, panicked, or ended for an upgrade), whichever worker the
//! supervisor starts next is told the session again, in [`Session::replay`]'s order, then
//! kicked and the guest interrupted, and the message it was on is sent again.
//!
//! Decisions only: the socket to the worker is behind [`WorkerLink`], so that what is replayed
//! to whom, in which order and how often is tested without processes.

use std::os::fd::OwnedFd;

use super::message::{Message, MessageError};
use super::session::Session;

/// How often one frontend message may cost a worker: a message that every worker dies on is
/// not the device's to keep alive.
pub const REPLAYS_PER_MESSAGE: u32 = 5;

/// The keeper's connection to whichever worker runs now.
pub trait WorkerLink {
    /// Connects to whichever worker accepts next, in place of the current connection.
    fn connect(&mut self) -> Result<(), MessageError>;
    fn send(&mut self, msg: &Message) -> Result<(), MessageError>;
    fn recv(&mut self) -> Result<Message, MessageError>;
    /// Signals one of the session's eventfds: a kick for the worker, an interrupt for the
    /// guest. Either is harmless when spurious, so a failure is not one.
    fn ring(&mut self, doorbell: &OwnedFd);
    /// Waits a little before trying to reach a worker again: the next one may not listen yet.
    fn pause(&mut self);
}

#[derive(Debug)]
pub struct Relay<L> {
    link: L,
    session: Session,
}

impl<L: WorkerLink> Relay<L> {
    /// Starts relaying for a new frontend connection, to the worker that accepts first.
    pub fn new(mut link: L) -> Result<Self, MessageError> {
        link.connect()?;
        Ok(Self {
            link,
            session: Session::default(),
        })
    }

    pub fn link(&self) -> &L {
        &self.link
    }

    /// Passes a frontend message to the worker and returns the worker's answer, if it owes
    /// one. A worker that dies on the way is replaced and told the session again first.
    pub fn forward(&mut self, msg: &Message) -> Result<Option<Message>, MessageError> {
        self.session.record(msg)?;
        let mut tries = 0;
        loop {
            match self.exchange(msg) {
                Ok(reply) => return Ok(reply),
                Err(e) if tries < REPLAYS_PER_MESSAGE => {
                    tries += 1;
                    tracing::warn!("worker gone mid-message ({e}); replaying the session");
                    self.replace()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The worker's connection closed while it owed nothing: it is gone.
    pub fn worker_gone(&mut self) -> Result<(), MessageError> {
        tracing::warn!("worker gone between messages; replaying the session");
        self.replace()
    }

    fn exchange(&mut self, msg: &Message) -> Result<Option<Message>, MessageError> {
        self.link.send(msg)?;
        if msg.wants_reply() {
            Ok(Some(self.link.recv()?))
        } else {
            Ok(None)
        }
    }

    /// Waits for the next worker and replays; retried while workers keep going away.
    fn replace(&mut self) -> Result<(), MessageError> {
        let mut last = None;
        for _ in 0..REPLAYS_PER_MESSAGE {
            match self.reconnect() {
                Ok(()) => {
                    tracing::info!("a new worker took over the session");
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    self.link.pause();
                }
            }
        }
        Err(last.unwrap_or(MessageError::Closed))
    }

    /// A new worker has the listener: tell it the session again.
    fn reconnect(&mut self) -> Result<(), MessageError> {
        self.link.connect()?;
        for m in self.session.replay()? {
            self.link.send(&m)?;
            if m.wants_reply() {
                // The answer is for the keeper, not the frontend.
                self.link.recv()?;
            }
        }
        for doorbell in self.session.doorbells() {
            if let Some(fd) = doorbell.fds.first() {
                self.link.ring(fd);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use std::collections::VecDeque;

    use vhost::vhost_user::message::{FrontendReq, VhostUserHeaderFlag};

    use super::*;
    use crate::keeper::session::tests::{QEMU_REPLAY, descriptor_id, doorbell_ids, qemu_session};

    /// What one fake worker was sent: (request, flags).
    type Got = Vec<(u32, u32)>;

    /// Workers as the relay sees them: each connect reaches the next one, which dies when it is
    /// sent its `dies_after`-th message, or any `poison` message.
    #[derive(Debug, Default)]
    struct FakeWorkers {
        workers: Vec<Got>,
        /// Per worker, in start order: how many messages it takes before it dies.
        lifetimes: VecDeque<usize>,
        left: Option<usize>,
        alive: bool,
        poison: Option<FrontendReq>,
        refusals: usize,
        pauses: usize,
        /// The descriptors rung, by identity, per worker.
        rung: Vec<Vec<u64>>,
    }

    impl FakeWorkers {
        fn current(&mut self) -> &mut Got {
            self.workers.last_mut().unwrap()
        }

        fn kill(&mut self) {
            self.alive = false;
        }
    }

    impl WorkerLink for FakeWorkers {
        fn connect(&mut self) -> Result<(), MessageError> {
            if self.refusals > 0 {
                self.refusals -= 1;
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
            }
            self.workers.push(Vec::new());
            self.rung.push(Vec::new());
            self.left = self.lifetimes.pop_front();
            self.alive = true;
            Ok(())
        }

        fn send(&mut self, msg: &Message) -> Result<(), MessageError> {
            if self.left == Some(0) || self.poison.is_some_and(|p| msg.is(p)) {
                self.alive = false;
            }
            if !self.alive {
                return Err(MessageError::Closed);
            }
            self.left = self.left.map(|n| n - 1);
            let entry = (msg.request, msg.flags);
            self.current().push(entry);
            Ok(())
        }

        fn recv(&mut self) -> Result<Message, MessageError> {
            if !self.alive {
                return Err(MessageError::Closed);
            }
            let (request, _) = *self.current().last().unwrap();
            Ok(Message {
                request,
                flags: 0x1 | VhostUserHeaderFlag::REPLY.bits(),
                payload: 7u64.to_le_bytes().to_vec(),
                fds: Vec::new(),
            })
        }

        fn ring(&mut self, doorbell: &OwnedFd) {
            let id = descriptor_id(doorbell);
            self.rung.last_mut().unwrap().push(id);
        }

        fn pause(&mut self) {
            self.pauses += 1;
        }
    }

    fn relay(workers: FakeWorkers) -> Relay<FakeWorkers> {
        Relay::new(workers).unwrap()
    }

    /// Sets a relay up with QEMU's session, which it returns; the first worker lives through
    /// it.
    fn set_up_session(mut workers: FakeWorkers) -> (Relay<FakeWorkers>, Vec<Message>) {
        workers.lifetimes.push_front(usize::MAX);
        let mut relay = relay(workers);
        let session = qemu_session();
        for msg in &session {
            relay.forward(msg).unwrap();
        }
        (relay, session)
    }

    fn set_up(workers: FakeWorkers) -> Relay<FakeWorkers> {
        set_up_session(workers).0
    }

    fn requests(got: &Got) -> Vec<u32> {
        got.iter().map(|(r, _)| *r).collect()
    }

    #[test]
    fn every_message_reaches_the_worker_and_only_owed_answers_come_back() {
        let mut relay = relay(FakeWorkers::default());
        let mut answered = Vec::new();
        for msg in qemu_session() {
            if let Some(reply) = relay.forward(&msg).unwrap() {
                assert_eq!(reply.request, msg.request);
                answered.push(msg.request);
            }
        }
        let sent: Vec<u32> = qemu_session().iter().map(|m| m.request).collect();
        assert_eq!(requests(&relay.link().workers[0]), sent);
        let owed: Vec<u32> = qemu_session()
            .iter()
            .filter(|m| m.wants_reply())
            .map(|m| m.request)
            .collect();
        assert!(!owed.is_empty());
        assert_eq!(answered, owed);
        assert_eq!(relay.link().workers.len(), 1, "nobody died");
    }

    #[test]
    fn a_crash_mid_message_replays_the_session_then_the_message() {
        let (mut relay, session) = set_up_session(FakeWorkers::default());
        relay.link.kill();
        let get_config = Message::request(FrontendReq::GET_CONFIG);
        let reply = relay
            .forward(&get_config)
            .unwrap()
            .expect("GET_CONFIG is answered");
        assert_eq!(reply.request, u32::from(FrontendReq::GET_CONFIG));

        let workers = &relay.link().workers;
        assert_eq!(workers.len(), 2);
        let mut want = QEMU_REPLAY.to_vec();
        want.push(FrontendReq::GET_CONFIG);
        let want: Vec<u32> = want.into_iter().map(u32::from).collect();
        assert_eq!(
            requests(&workers[1]),
            want,
            "the session, in order, then the message"
        );
        // Replayed messages ask for no acknowledgement the frontend would never read.
        let acks = workers[1]
            .iter()
            .filter(|(_, flags)| flags & 0x8 != 0)
            .count();
        assert_eq!(acks, 0);
        // Each running ring kicked and its guest interrupted, once, with the newest kick and
        // call descriptors the frontend set.
        assert_eq!(relay.link().rung[1], doorbell_ids(&session));
        assert_eq!(relay.link().rung[1].len(), 4);
        assert!(
            relay.link().rung[0].is_empty(),
            "nothing to ring for the first worker"
        );
    }

    #[test]
    fn an_upgraded_worker_is_replaced_between_messages_and_the_next_message_goes_to_the_new_one() {
        let mut relay = set_up(FakeWorkers::default());
        // The worker answered `pvmouse-upgrade` and ended: its connection closes.
        relay.link.kill();
        relay.worker_gone().unwrap();
        let enable = qemu_session().pop().unwrap();
        assert!(enable.is(FrontendReq::SET_VRING_ENABLE));
        assert!(relay.forward(&enable).unwrap().is_none(), "nothing owed");
        let workers = &relay.link().workers;
        assert_eq!(workers.len(), 2);
        let got = requests(&workers[1]);
        let replay_len = QEMU_REPLAY.len();
        assert_eq!(got.len(), replay_len + 1);
        assert_eq!(got[replay_len], enable.request);
        assert_eq!(
            requests(&workers[0]).len(),
            qemu_session().len(),
            "the old worker got nothing after it ended"
        );
    }

    #[test]
    fn a_worker_that_is_not_listening_yet_is_waited_for() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.kill();
        relay.link.refusals = 3;
        relay.worker_gone().unwrap();
        assert_eq!(relay.link().pauses, 3);
        assert_eq!(relay.link().workers.len(), 2);
    }

    #[test]
    fn a_worker_that_dies_during_the_replay_is_replaced_too() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.kill();
        // The next worker dies three messages into the replay; the one after lives.
        relay.link.lifetimes.extend([3, usize::MAX]);
        relay.worker_gone().unwrap();
        let workers = &relay.link().workers;
        assert_eq!(workers.len(), 3);
        assert_eq!(workers[1].len(), 3);
        assert_eq!(workers[2].len(), QEMU_REPLAY.len());
        assert_eq!(relay.link().pauses, 1);
    }

    #[test]
    fn a_message_every_worker_dies_on_ends_the_connection_after_a_few_replays() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.poison = Some(FrontendReq::GET_CONFIG);
        let err = relay
            .forward(&Message::request(FrontendReq::GET_CONFIG))
            .unwrap_err();
        assert!(matches!(err, MessageError::Closed), "{err}");
        let workers = relay.link().workers.len();
        assert_eq!(workers, 1 + REPLAYS_PER_MESSAGE as usize);
    }

    #[test]
    fn with_no_worker_to_be_had_the_replacement_gives_up() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.kill();
        relay.link.refusals = usize::MAX;
        assert!(relay.worker_gone().is_err());
        assert_eq!(relay.link().pauses, REPLAYS_PER_MESSAGE as usize);
    }
}
