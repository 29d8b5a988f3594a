//! Every committed corpus entry of the `bridge` and `session` fuzz targets runs through the same
//! functions as the targets, in the normal test suite.

use std::path::PathBuf;

#[test]
fn bridge_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/bridge");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no corpus in {}", dir.display());
    for path in entries {
        eprintln!("{}", path.display());
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match data.split_first() {
            Some((mode, rest)) if mode % 2 == 1 => pvmouse_guestd::fuzzing::layout_text(rest),
            Some((_, rest)) => pvmouse_guestd::fuzzing::raw_events(rest),
            None => {}
        }
    }
}

#[test]
fn session_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/session");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no corpus in {}", dir.display());
    for path in entries {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        pvmouse_guestd::fuzzing::session_line(&data);
    }
}
