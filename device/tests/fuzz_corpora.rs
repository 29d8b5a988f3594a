//! Every committed fuzz corpus entry (seeds, and each crash a fuzzer found, once fixed) runs
//! through the same functions as the fuzz targets, in the normal test suite.

use vhost_user_pvmouse::{fuzzing, testing};

fn replay(target: &str, run: impl Fn(&[u8])) {
    for (path, bytes) in testing::fuzz_corpus(target) {
        eprintln!("{}", path.display());
        run(&bytes);
    }
}

#[test]
fn guest_queues_corpus() {
    replay("guest_queues", fuzzing::guest_queues);
}

#[test]
fn config_space_corpus() {
    replay("config_space", fuzzing::config_space);
}

#[test]
fn control_corpus() {
    replay("control", |data| match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => fuzzing::control_values(rest),
        Some((_, rest)) => fuzzing::control_bytes(rest),
        None => {}
    });
}

#[test]
fn status_messages_corpus() {
    replay("status_messages", fuzzing::status_messages);
}

#[test]
fn keeper_messages_corpus() {
    replay("keeper_messages", fuzzing::keeper_messages);
}

#[test]
fn ledger_states_corpus() {
    replay("ledger_states", fuzzing::ledger_states);
}

#[test]
fn stream_records_corpus() {
    replay("stream_records", fuzzing::stream_records);
}
