//! The keeper's half of a frontend connection: each frontend message is recorded in the
//! [`Session`] and passed to the current worker, and its answer, if it owes one, comes back.
//!
//! The frontend never waits on a worker for more than [`ANSWER_WAIT`]. QEMU's vhost-user calls
//! block its main loop (a QMP `stop` waits for `GET_VRING_BASE`), so a worker that is dead,
//! starting, in restart backoff or hung must not hold QEMU up. When no worker answers in time
//! the keeper answers in its place, from what it knows for certain:
//!
//! - an acknowledgement (`REPLY_ACK`) is a success: the message is in the session, and every
//!   worker from now on is told it;
//! - features, queue count, memory slots and config reads are what a worker answered before
//!   ([`Answers`]): they depend on the program and the config selector only;
//! - `GET_VRING_BASE` is where guest memory shows the ring stands, once no worker can move it:
//!   a worker that was told the session is killed first, and its successor never starts that
//!   ring.
//!
//! A late answer is still owed by the worker, and dropped when it comes. A worker that owes
//! answers for [`HUNG_AFTER`] is hung: it is killed and replaced.
//!
//! A new worker (after a crash, a kill or an upgrade) is first asked its features (the probe),
//! and told the session only once it answers. Until then it has been told nothing that starts a
//! ring, so the keeper may answer for the rings on its own; and what the frontend sends meanwhile
//! is recorded, so the replay brings the new worker up to date in one go. After the replay the
//! worker is kicked and the guest interrupted.
//!
//! Decisions only: the socket to the worker is behind [`WorkerLink`], so that what is replayed
//! to whom, in which order and how often, and what the keeper answers itself, is tested without
//! processes.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{
    FrontendReq, VhostUserHeaderFlag, VhostUserU64, VhostUserVringState,
};
use vm_memory::ByteValued;

use super::message::{Message, MessageError};
use super::session::Session;

/// How often one frontend message may cost a worker: a message that every worker dies on is
/// not the device's to keep alive.
pub const REPLAYS_PER_MESSAGE: u32 = 5;
/// How long the frontend waits for a worker's answer before the keeper gives its own. Killing a
/// worker that holds a ring takes a few milliseconds more; the whole stays within 100 ms.
pub const ANSWER_WAIT: Duration = Duration::from_millis(50);
/// How long the frontend waits for an answer only a worker can give (a request the keeper has
/// never seen answered): a new connection's first questions, while no worker runs yet.
pub const UNANSWERABLE_WAIT: Duration = Duration::from_secs(10);
/// A worker that owes an answer for this long is hung, and replaced.
pub const HUNG_AFTER: Duration = Duration::from_secs(1);
/// At most this many answers are kept: config reads come in (select, subsel) pairs, a few
/// dozen of them, and a frontend that reads more must not grow the keeper.
const ANSWERS_KEPT: usize = 1024;

/// The keeper's connection to whichever worker runs now.
pub trait WorkerLink {
    /// Connects to whichever worker accepts next, in place of the current connection.
    fn connect(&mut self) -> Result<(), MessageError>;
    /// Sends, giving up after [`ANSWER_WAIT`] on a worker that reads nothing.
    fn send(&mut self, msg: &Message) -> Result<(), MessageError>;
    /// The worker's next message, if one comes by `deadline`.
    fn recv_by(&mut self, deadline: Instant) -> Result<Option<Message>, MessageError>;
    /// Signals one of the session's eventfds: a kick for the worker, an interrupt for the
    /// guest. Either is harmless when spurious, so a failure is not one.
    fn ring(&mut self, doorbell: &OwnedFd);
    /// Kills the worker now running, and returns once it is gone: it touches guest memory no
    /// more.
    fn kill_worker(&mut self);
    /// Whether a worker process runs now (one may be starting, or none, in restart backoff).
    fn worker_running(&self) -> bool;
}

/// Where the keeper stands with the worker it is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next worker to accept has been asked its features and told nothing else yet.
    Probing,
    /// The worker has been told the session. It owes `owed` answers nobody waits for any more
    /// (to the replay, or late ones the keeper gave in its place); the oldest unanswered since
    /// `since`.
    Attached { owed: usize, since: Option<Instant> },
}

impl State {
    const FRESH: State = State::Attached {
        owed: 0,
        since: None,
    };
}

/// Worker answers the keeper may give again itself, by request and, for config reads, by what
/// was read and the selector written before.
#[derive(Debug, Default)]
struct Answers(HashMap<Vec<u8>, Vec<u8>>);

impl Answers {
    fn key(session: &Session, msg: &Message) -> Option<Vec<u8>> {
        use FrontendReq as R;
        let mut key = msg.request.to_le_bytes().to_vec();
        match msg.code()? {
            R::GET_FEATURES
            | R::GET_PROTOCOL_FEATURES
            | R::GET_QUEUE_NUM
            | R::GET_MAX_MEM_SLOTS => {}
            R::GET_CONFIG => {
                // Offset and size; then the selector.
                key.extend_from_slice(msg.payload.get(..8)?);
                for write in session.config_writes() {
                    key.extend_from_slice(write);
                }
            }
            _ => return None,
        }
        Some(key)
    }

    fn learn(&mut self, session: &Session, msg: &Message, reply: &Message) {
        if let Some(key) = Self::key(session, msg) {
            if self.0.len() >= ANSWERS_KEPT {
                self.0.clear();
            }
            self.0.insert(key, reply.payload.clone());
        }
    }

    fn recall(&self, session: &Session, msg: &Message) -> Option<Message> {
        let payload = self.0.get(&Self::key(session, msg)?)?.clone();
        Some(reply_to(msg, payload))
    }
}

/// The keeper's own answer to `msg`.
fn reply_to(msg: &Message, payload: Vec<u8>) -> Message {
    Message {
        request: msg.request,
        flags: 0x1 | VhostUserHeaderFlag::REPLY.bits(),
        payload,
        fds: Vec::new(),
    }
}

#[derive(Debug)]
pub struct Relay<L> {
    link: L,
    session: Session,
    state: State,
    answers: Answers,
}

impl<L: WorkerLink> Relay<L> {
    /// Starts relaying for a new frontend connection, to the worker that accepts first.
    pub fn new(mut link: L) -> Result<Self, MessageError> {
        link.connect()?;
        Ok(Self {
            link,
            session: Session::default(),
            state: State::FRESH,
            answers: Answers::default(),
        })
    }

    pub fn link(&self) -> &L {
        &self.link
    }

    /// Passes a frontend message, which came at `arrived`, to the worker, and returns the
    /// answer the frontend waits for, if any: the worker's, or by [`ANSWER_WAIT`] the keeper's.
    pub fn forward(
        &mut self,
        msg: &Message,
        arrived: Instant,
    ) -> Result<Option<Message>, MessageError> {
        // A ring stop is recorded once answered: the keeper's own answer reads where the ring
        // stood, which the record forgets.
        let stops_ring = msg.is(FrontendReq::GET_VRING_BASE);
        if !stops_ring {
            self.session.record(msg)?;
        }
        let reply = if msg.wants_reply() {
            Some(self.answer(msg, arrived)?)
        } else {
            self.pass(msg)?;
            None
        };
        if stops_ring {
            self.session.record(msg)?;
        }
        Ok(reply)
    }

    /// The worker has something to say between frontend messages: an answer owed, its probe's
    /// answer, or its connection closing.
    pub fn worker_readable(&mut self, now: Instant) -> Result<(), MessageError> {
        match self.link.recv_by(now) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => match self.state {
                State::Probing => self.attach(now),
                State::Attached { owed: 0, .. } => {
                    tracing::warn!("the worker spoke unasked; replacing it");
                    self.link.kill_worker();
                    self.reconnect()
                }
                State::Attached { owed, .. } => {
                    self.state = State::Attached {
                        owed: owed - 1,
                        since: (owed > 1).then_some(now),
                    };
                    Ok(())
                }
            },
            Err(e) => {
                tracing::warn!("worker gone between messages ({e}); waiting for the next");
                self.reconnect()
            }
        }
    }

    /// When [`Relay::check`] must next run, if ever: when the worker has owed answers for
    /// [`HUNG_AFTER`].
    pub fn check_at(&self) -> Option<Instant> {
        match self.state {
            State::Attached {
                since: Some(since), ..
            } => Some(since + HUNG_AFTER),
            _ => None,
        }
    }

    /// Replaces a worker that has owed answers for too long.
    pub fn check(&mut self, now: Instant) -> Result<(), MessageError> {
        if self.check_at().is_some_and(|at| at <= now) {
            tracing::error!("the worker has not answered for {HUNG_AFTER:?}: hung; replacing it");
            self.link.kill_worker();
            self.reconnect()?;
        }
        Ok(())
    }

    /// Sends a message that wants no answer. Until a new worker has answered its probe the
    /// message is only recorded: the replay tells the worker.
    fn pass(&mut self, msg: &Message) -> Result<(), MessageError> {
        if self.state == State::Probing {
            return Ok(());
        }
        if let Err(e) = self.link.send(msg) {
            tracing::warn!("worker gone ({e}); it is told this message in the replay");
            self.reconnect()?;
        }
        Ok(())
    }

    /// The answer to `msg`, by [`ANSWER_WAIT`] if the keeper can give one itself.
    fn answer(&mut self, msg: &Message, arrived: Instant) -> Result<Message, MessageError> {
        let can_stand_in = msg.is(FrontendReq::GET_VRING_BASE) || self.stand_in(msg).is_some();
        let deadline = arrived
            + if can_stand_in {
                ANSWER_WAIT
            } else {
                UNANSWERABLE_WAIT
            };
        let mut tries = 0;
        loop {
            if self.state == State::Probing && can_stand_in && !self.link.worker_running() {
                // Restart backoff: no worker will answer by the deadline.
                break;
            }
            if self.state == State::Probing && !self.finish_probe(deadline)? {
                break;
            }
            match self.exchange(msg, arrived, deadline) {
                Ok(Some(reply)) => {
                    self.answers.learn(&self.session, msg, &reply);
                    return Ok(reply);
                }
                Ok(None) => break,
                Err(e) if tries < REPLAYS_PER_MESSAGE => {
                    tries += 1;
                    tracing::warn!("worker gone mid-message ({e}); replaying the session");
                    self.reconnect()?;
                }
                Err(e) => return Err(e),
            }
        }
        if msg.is(FrontendReq::GET_VRING_BASE) {
            return self.ring_stopped_here(msg);
        }
        self.stand_in(msg).ok_or_else(|| {
            MessageError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no worker answered, and the keeper cannot answer for one",
            ))
        })
    }

    /// What the keeper answers in a worker's place, if it can (`GET_VRING_BASE` aside).
    fn stand_in(&self, msg: &Message) -> Option<Message> {
        if msg.needs_reply() && !msg.asks() {
            // An acknowledgement: success, for a message every worker is now told.
            return Some(reply_to(msg, VhostUserU64::new(0).as_slice().to_vec()));
        }
        self.answers.recall(&self.session, msg)
    }

    /// Answers `GET_VRING_BASE` from guest memory, after making sure no worker runs the ring.
    fn ring_stopped_here(&mut self, msg: &Message) -> Result<Message, MessageError> {
        if self.state != State::Probing {
            // This worker was told the session and may be moving the ring.
            tracing::error!("the worker did not stop a ring in time; killing it");
            self.link.kill_worker();
            self.reconnect()?;
        }
        let index = msg.first_word().unwrap_or(0);
        let num = self
            .session
            .ring_position(usize::try_from(index).unwrap_or(usize::MAX));
        tracing::warn!(
            ring = index,
            num,
            "answered the ring's stop in the worker's place"
        );
        let state = VhostUserVringState::new(index, u32::from(num));
        Ok(reply_to(msg, state.as_slice().to_vec()))
    }

    /// Sends `msg` and reads what the worker owes, then the answer to `msg`; `None` if that
    /// has not come by `deadline`.
    fn exchange(
        &mut self,
        msg: &Message,
        now: Instant,
        deadline: Instant,
    ) -> Result<Option<Message>, MessageError> {
        self.link.send(msg)?;
        let State::Attached { owed, since } = self.state else {
            return Err(MessageError::Closed);
        };
        let (mut owed, mut since) = (owed + 1, since.or(Some(now)));
        let reply = loop {
            match self.link.recv_by(deadline) {
                Ok(Some(reply)) => {
                    owed -= 1;
                    if owed == 0 {
                        break Some(reply);
                    }
                    since = Some(Instant::now());
                }
                Ok(None) => break None,
                Err(e) => {
                    self.state = State::Attached { owed, since };
                    return Err(e);
                }
            }
        };
        self.state = State::Attached {
            owed,
            since: if owed == 0 { None } else { since },
        };
        Ok(reply)
    }

    /// Waits for the probe's answer until `deadline`, and tells the worker the session if it
    /// comes: whether the worker is now attached.
    fn finish_probe(&mut self, deadline: Instant) -> Result<bool, MessageError> {
        for _ in 0..REPLAYS_PER_MESSAGE {
            match self.link.recv_by(deadline) {
                Ok(Some(_)) => {
                    self.attach(Instant::now())?;
                    if self.state != State::Probing {
                        return Ok(true);
                    }
                }
                Ok(None) => return Ok(false),
                Err(e) => {
                    tracing::warn!("a new worker went before it answered ({e})");
                    self.reconnect()?;
                }
            }
        }
        Ok(false)
    }

    /// Connects to the next worker and asks it its features.
    fn reconnect(&mut self) -> Result<(), MessageError> {
        self.link.connect()?;
        self.link
            .send(&Message::request(FrontendReq::GET_FEATURES))?;
        self.state = State::Probing;
        Ok(())
    }

    /// The worker answered its probe: tell it the session, kick it and interrupt the guest.
    fn attach(&mut self, now: Instant) -> Result<(), MessageError> {
        let replay = self.session.replay()?;
        let owed = replay.iter().filter(|m| m.wants_reply()).count();
        for m in &replay {
            if let Err(e) = self.link.send(m) {
                tracing::warn!("a new worker went during the replay ({e})");
                return self.reconnect();
            }
        }
        for doorbell in self.session.doorbells() {
            if let Some(fd) = doorbell.fds.first() {
                self.link.ring(fd);
            }
        }
        self.state = State::Attached {
            owed,
            since: (owed > 0).then_some(now),
        };
        tracing::info!("a new worker took over the session");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use std::collections::VecDeque;

    use vhost::vhost_user::message::{FrontendReq as R, VhostUserHeaderFlag};

    use super::*;
    use crate::keeper::session::tests::{QEMU_REPLAY, descriptor_id, doorbell_ids, qemu_session};

    /// What one fake worker was sent: (request, flags).
    type Got = Vec<(u32, u32)>;

    /// Workers as the relay sees them. Each connect reaches the next one, which dies when it is
    /// sent its `dies_after`-th message, or any `poison` message. A `silent` worker reads but
    /// answers nothing until it is not silent any more (it is hung, or not started yet); its
    /// answers then come in order.
    #[derive(Debug, Default)]
    struct FakeWorkers {
        workers: Vec<Got>,
        /// Per worker, in start order: how many messages it takes before it dies.
        lifetimes: VecDeque<usize>,
        left: Option<usize>,
        alive: bool,
        silent: bool,
        poison: Option<R>,
        /// Answers the current worker owes, each its request and a serial number.
        owed: VecDeque<(u32, u64)>,
        answered: u64,
        kills: usize,
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

        fn got(&self, worker: usize) -> Vec<u32> {
            self.workers[worker].iter().map(|(r, _)| *r).collect()
        }
    }

    impl WorkerLink for FakeWorkers {
        fn connect(&mut self) -> Result<(), MessageError> {
            self.workers.push(Vec::new());
            self.rung.push(Vec::new());
            self.left = self.lifetimes.pop_front();
            self.alive = true;
            self.owed.clear();
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
            if msg.wants_reply() {
                self.answered += 1;
                self.owed.push_back((msg.request, self.answered));
            }
            Ok(())
        }

        fn recv_by(&mut self, _deadline: Instant) -> Result<Option<Message>, MessageError> {
            if !self.alive {
                return Err(MessageError::Closed);
            }
            if self.silent {
                return Ok(None);
            }
            let Some((request, serial)) = self.owed.pop_front() else {
                return Ok(None);
            };
            Ok(Some(Message {
                request,
                flags: 0x1 | VhostUserHeaderFlag::REPLY.bits(),
                payload: serial.to_le_bytes().to_vec(),
                fds: Vec::new(),
            }))
        }

        fn ring(&mut self, doorbell: &OwnedFd) {
            let id = descriptor_id(doorbell);
            self.rung.last_mut().unwrap().push(id);
        }

        fn kill_worker(&mut self) {
            self.kills += 1;
            self.alive = false;
        }

        fn worker_running(&self) -> bool {
            !self.silent
        }
    }

    fn now() -> Instant {
        Instant::now()
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
            relay.forward(msg, now()).unwrap();
        }
        (relay, session)
    }

    fn set_up(workers: FakeWorkers) -> Relay<FakeWorkers> {
        set_up_session(workers).0
    }

    fn codes(list: &[R]) -> Vec<u32> {
        list.iter().map(|c| u32::from(*c)).collect()
    }

    /// What a new worker is sent: the probe, then the replay.
    fn probe_then(replay: &[R]) -> Vec<u32> {
        let mut want = vec![u32::from(R::GET_FEATURES)];
        want.extend(codes(replay));
        want
    }

    fn vring_state(index: u32) -> Vec<u8> {
        VhostUserVringState::new(index, 0).as_slice().to_vec()
    }

    fn ring_stop(index: u32) -> Message {
        let mut m = Message::request(R::GET_VRING_BASE);
        m.payload = vring_state(index);
        m
    }

    fn config_read() -> Message {
        let mut m = Message::request(R::GET_CONFIG);
        m.payload = vec![0; 12];
        m
    }

    fn select(value: u8) -> Message {
        let mut m = Message::request(R::SET_CONFIG);
        m.payload = vec![0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, value];
        m
    }

    #[test]
    fn every_message_reaches_the_worker_and_only_owed_answers_come_back() {
        let mut relay = relay(FakeWorkers::default());
        let mut answered = Vec::new();
        for msg in qemu_session() {
            if let Some(reply) = relay.forward(&msg, now()).unwrap() {
                assert_eq!(reply.request, msg.request);
                answered.push(msg.request);
            }
        }
        let sent: Vec<u32> = qemu_session().iter().map(|m| m.request).collect();
        assert_eq!(relay.link().got(0), sent);
        let owed: Vec<u32> = qemu_session()
            .iter()
            .filter(|m| m.wants_reply())
            .map(|m| m.request)
            .collect();
        assert!(!owed.is_empty());
        assert_eq!(answered, owed);
        assert_eq!(relay.link().workers.len(), 1, "nobody died");
        assert_eq!(relay.check_at(), None, "nothing owed");
    }

    #[test]
    fn a_crash_mid_message_replays_the_session_then_the_message() {
        let (mut relay, session) = set_up_session(FakeWorkers::default());
        relay.link.kill();
        let reply = relay.forward(&config_read(), now()).unwrap().unwrap();
        assert_eq!(reply.request, u32::from(R::GET_CONFIG));

        assert_eq!(relay.link().workers.len(), 2);
        let mut want = probe_then(&QEMU_REPLAY);
        want.push(R::GET_CONFIG.into());
        assert_eq!(
            relay.link().got(1),
            want,
            "the session, in order, then the message"
        );
        // Replayed messages ask for no acknowledgement the frontend would never read.
        let acks = relay.link().workers[1]
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
        assert_eq!(
            relay.check_at(),
            None,
            "the replay's own answer was read and dropped"
        );
    }

    #[test]
    fn a_worker_gone_between_messages_is_told_the_session_once_it_answers_its_probe() {
        let mut relay = set_up(FakeWorkers::default());
        // The worker answered `pvmouse-upgrade` and ended: its connection closes.
        relay.link.kill();
        relay.link.silent = true;
        relay.worker_readable(now()).unwrap();
        assert_eq!(
            relay.link().got(1),
            probe_then(&[]),
            "asked, and told nothing yet"
        );
        // What the frontend sends meanwhile is kept for the replay, not sent ahead of it.
        let enable = qemu_session().pop().unwrap();
        assert!(enable.is(R::SET_VRING_ENABLE));
        assert!(
            relay.forward(&enable, now()).unwrap().is_none(),
            "nothing owed"
        );
        assert_eq!(relay.link().got(1), probe_then(&[]));
        // The new worker answers its probe.
        relay.link.silent = false;
        relay.worker_readable(now()).unwrap();
        assert_eq!(relay.link().got(1), probe_then(&QEMU_REPLAY));
        assert_eq!(
            relay.link().got(0).len(),
            qemu_session().len(),
            "the old one got nothing more"
        );
    }

    #[test]
    fn a_worker_that_dies_during_the_replay_is_replaced_too() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.kill();
        // The next worker dies three messages in (the probe, SET_OWNER, GET_FEATURES); the one
        // after lives.
        relay.link.lifetimes.extend([3, usize::MAX]);
        relay.forward(&config_read(), now()).unwrap().unwrap();
        let workers = &relay.link().workers;
        assert_eq!(workers.len(), 3);
        assert_eq!(workers[1].len(), 3);
        let mut want = probe_then(&QEMU_REPLAY);
        want.push(R::GET_CONFIG.into());
        assert_eq!(relay.link().got(2), want);
    }

    #[test]
    fn a_message_every_worker_dies_on_ends_the_connection_after_a_few_replays() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.poison = Some(R::GET_CONFIG);
        let err = relay.forward(&config_read(), now()).unwrap_err();
        assert!(matches!(err, MessageError::Closed), "{err}");
        let workers = relay.link().workers.len();
        assert_eq!(workers, 1 + REPLAYS_PER_MESSAGE as usize);
    }

    #[test]
    fn a_hung_worker_is_answered_for_from_what_it_said_before_then_replaced() {
        let mut relay = set_up(FakeWorkers::default());
        relay.forward(&select(1), now()).unwrap();
        let one = relay.forward(&config_read(), now()).unwrap().unwrap();
        relay.forward(&select(2), now()).unwrap();
        let two = relay.forward(&config_read(), now()).unwrap().unwrap();
        assert_ne!(one.payload, two.payload);

        relay.link.silent = true;
        relay.forward(&select(1), now()).unwrap();
        let again = relay.forward(&config_read(), now()).unwrap().unwrap();
        assert_eq!(again.payload, one.payload, "the answer for this selector");
        assert_eq!(again.flags, 0x1 | VhostUserHeaderFlag::REPLY.bits());
        assert_eq!(relay.link().kills, 0, "late is not yet hung");

        // The worker still owes that answer; by HUNG_AFTER it is replaced.
        let at = relay.check_at().expect("an answer is owed");
        relay.check(at - Duration::from_millis(1)).unwrap();
        assert_eq!(relay.link().kills, 0);
        relay.check(at).unwrap();
        assert_eq!(relay.link().kills, 1);
        assert_eq!(relay.link().workers.len(), 2);
        assert_eq!(relay.link().got(1), probe_then(&[]));
    }

    #[test]
    fn a_late_answer_is_dropped_when_it_comes() {
        let mut relay = set_up(FakeWorkers::default());
        let first = relay.forward(&config_read(), now()).unwrap().unwrap();
        relay.link.silent = true;
        relay.forward(&config_read(), now()).unwrap().unwrap();
        relay.link.silent = false;
        relay.worker_readable(now()).unwrap();
        assert_eq!(relay.check_at(), None, "nothing owed any more");
        let next = relay.forward(&config_read(), now()).unwrap().unwrap();
        let serial = |m: &Message| u64::from_le_bytes(m.payload[..8].try_into().unwrap());
        assert_eq!(
            serial(&next),
            serial(&first) + 2,
            "its own answer, not the late one"
        );
    }

    #[test]
    fn a_ring_stop_a_hung_worker_does_not_answer_is_answered_from_guest_memory_after_a_kill() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.silent = true;
        let reply = relay.forward(&ring_stop(0), now()).unwrap().unwrap();
        assert_eq!(
            relay.link().kills,
            1,
            "killed before the keeper read the ring"
        );
        let state = VhostUserVringState::from_slice(&reply.payload).unwrap();
        assert_eq!(
            (state.index, state.num),
            (0, 4242),
            "where guest memory shows ring 0"
        );
        // The next worker never starts that ring.
        relay.link.silent = false;
        relay.worker_readable(now()).unwrap();
        let ring1_only: Vec<R> = QEMU_REPLAY[..6]
            .iter()
            .chain(&QEMU_REPLAY[12..])
            .copied()
            .collect();
        assert_eq!(relay.link().got(1), probe_then(&ring1_only));
    }

    #[test]
    fn with_no_worker_at_all_the_frontend_is_still_answered_at_once() {
        let mut relay = set_up(FakeWorkers::default());
        relay.forward(&config_read(), now()).unwrap().unwrap();
        // The worker died, and the next is not started yet (restart backoff).
        relay.link.kill();
        relay.link.silent = true;
        relay.worker_readable(now()).unwrap();

        let mut enable = Message::request(R::SET_VRING_ENABLE);
        enable.payload = VhostUserVringState::new(1, 1).as_slice().to_vec();
        enable.flags |= VhostUserHeaderFlag::NEED_REPLY.bits();
        let ack = relay.forward(&enable, now()).unwrap().unwrap();
        assert_eq!(
            ack.payload,
            0u64.to_le_bytes(),
            "acknowledged: it is in the session"
        );
        assert!(relay.forward(&config_read(), now()).unwrap().is_some());
        let stop = relay.forward(&ring_stop(1), now()).unwrap().unwrap();
        let state = VhostUserVringState::from_slice(&stop.payload).unwrap();
        // Ring 1's used ring is in no region the keeper has: it stands where it was set.
        assert_eq!((state.index, state.num), (1, 0));
        assert_eq!(
            relay.link().kills,
            0,
            "no worker was told the session: none to kill"
        );

        relay.link.silent = false;
        relay.worker_readable(now()).unwrap();
        assert_eq!(
            relay.link().got(1),
            probe_then(&QEMU_REPLAY[..12]),
            "ring 1 stopped"
        );
    }

    #[test]
    fn an_answer_only_a_worker_can_give_is_waited_for_and_then_refused() {
        let mut relay = set_up(FakeWorkers::default());
        relay.link.silent = true;
        let err = relay
            .forward(&Message::request(R::GET_STATUS), now())
            .unwrap_err();
        assert!(err.to_string().contains("no worker answered"), "{err}");
    }
}
