//! The worker's side of `--restartable`: what changes in a process the keeper started.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static WORKER: AtomicBool = AtomicBool::new(false);

/// This process is a keeper's worker: a panic anywhere ends it (the keeper starts another, which
/// takes over the state), and `pvmouse-upgrade` may end it on purpose.
pub fn enter() {
    WORKER.store(true, Ordering::SeqCst);
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!("worker panicked: {info}; ending it, the keeper starts another");
        std::process::abort();
    }));
}

/// Ends this worker once the reply has gone out, so that the keeper starts the binary now on
/// disk. Everything answered so far is already in the ledger.
pub fn upgrade() -> Result<(), &'static str> {
    if !WORKER.load(Ordering::SeqCst) {
        return Err("this backend cannot be upgraded in place: start it with --restartable");
    }
    std::thread::spawn(|| {
        // Time for the control thread to write the reply.
        std::thread::sleep(Duration::from_millis(100));
        tracing::info!("worker exiting for an upgrade");
        std::process::exit(0);
    });
    Ok(())
}
