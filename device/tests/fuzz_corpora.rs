//! Every committed fuzz corpus entry (seeds, and each crash a fuzzer found, once fixed) runs
//! through the same functions as the fuzz targets, in the normal test suite.

use std::path::PathBuf;

use vhost_user_pvmouse::fuzzing;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no corpus in {}", dir.display());
    entries
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    for (path, bytes) in corpus(target) {
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
fn vnc_messages_corpus() {
    replay("vnc_messages", fuzzing::vnc_messages);
}

#[test]
fn stream_records_corpus() {
    replay("stream_records", fuzzing::stream_records);
}
