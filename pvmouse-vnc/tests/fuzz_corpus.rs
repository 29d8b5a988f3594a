//! Every committed corpus entry of the `vnc_messages` fuzz target runs through the target's
//! function in the normal test suite.

#[test]
fn vnc_messages_corpus() {
    for (path, bytes) in vhost_user_pvmouse::testing::fuzz_corpus("vnc_messages") {
        eprintln!("{}", path.display());
        pvmouse_vnc::fuzzing::vnc_messages(&bytes);
    }
}
