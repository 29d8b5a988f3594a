//! The worker's side of `--restartable`: the device, run on what the keeper handed down
//! ([`crate::cli::Inherited`]), in a process that ends on purpose for an upgrade.

use std::sync::mpsc::Sender;

use crate::daemon::DaemonError;

/// Why a worker stops serving, as its threads tell the one that runs it.
#[derive(Debug)]
pub enum Stop {
    /// `pvmouse-upgrade` was answered.
    Upgrade,
    /// The vhost-user loop ended on a host error.
    Failed(DaemonError),
    /// SIGTERM or SIGINT: let go of held buttons, remove what this process made, and end.
    Terminate,
}

/// The control command's way to end this worker for an upgrade. Only a worker has one: a
/// standalone backend has nobody to start it again.
#[derive(Debug, Clone)]
pub struct Upgrade(Sender<Stop>);

impl Upgrade {
    pub fn new(stops: Sender<Stop>) -> Self {
        Self(stops)
    }

    /// Asks the worker to end. It stops its control thread first, which finishes writing the
    /// reply this request is part of; everything answered so far is already in the ledger.
    pub fn request(&self) {
        // Nobody left to receive it: the worker is ending already.
        let _ = self.0.send(Stop::Upgrade);
    }
}

/// What a backend that cannot be upgraded in place answers `pvmouse-upgrade`.
pub const NOT_UPGRADABLE: &str =
    "this backend cannot be upgraded in place: start it with --restartable";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_request_reaches_the_worker_once_per_request() {
        let (stops, stopped) = std::sync::mpsc::channel();
        let upgrade = Upgrade::new(stops);
        upgrade.clone().request();
        assert!(matches!(stopped.try_recv(), Ok(Stop::Upgrade)));
        assert!(stopped.try_recv().is_err(), "one request, one stop");
        drop(stopped);
        // A worker already ending: the request is simply not needed.
        upgrade.request();
    }
}
