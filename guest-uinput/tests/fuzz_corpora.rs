//! Every committed corpus entry of the `bridge` and `session` fuzz targets runs through the same
//! functions as the targets, in the normal test suite.

use std::path::PathBuf;

/// The committed corpus of one fuzz target, in name order.
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
        .map(|path| {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect()
}

#[test]
fn bridge_corpus() {
    for (path, data) in corpus("bridge") {
        eprintln!("{}", path.display());
        match data.split_first() {
            Some((mode, rest)) if mode % 2 == 1 => pvmouse_guestd::fuzzing::layout_text(rest),
            Some((_, rest)) => pvmouse_guestd::fuzzing::raw_events(rest),
            None => {}
        }
    }
}

#[test]
fn session_corpus() {
    for (path, data) in corpus("session") {
        eprintln!("{}", path.display());
        pvmouse_guestd::fuzzing::session_line(&data);
    }
}
