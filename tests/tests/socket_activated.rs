//! QEMU attaches to a backend started as systemd starts it: Debian's `systemd-socket-activate`
//! binds the vhost-user and control sockets, as the package's two socket units do, and hands
//! them over (named by `FileDescriptorName=`) when QEMU first connects; the backend, restartable
//! by default and run as an ordinary user, tells the service manager's socket (the VM's own)
//! that it is ready, and the guest gets input, on the relative device too, whose socket comes
//! from the package's optional third socket unit. SIGTERM then stops it as `systemctl stop` would:
//! a button held is let go in the guest first, and the sockets stay (they are the socket
//! units').

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use pvmouse_client::Connection;
use pvmouse_spec::evdev::{BTN_LEFT, EV_KEY};
use pvmouse_vmtest::exclusive;
use pvmouse_vmtest::{PVMOUSE_NAME, VmConfig, round_to_i32};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn qemu_attaches_to_a_socket_activated_backend_and_the_guest_gets_input() {
    let vm = exclusive::boot(VmConfig {
        socket_activated: true,
        restartable: true,
        relative: true,
        ..VmConfig::default()
    });
    let ready = vm.service_notices(WAIT);
    println!("told the service manager: {ready:?}");
    assert!(ready.iter().any(|l| l == "READY=1"), "{ready:?}");
    vm.probe.watch(PVMOUSE_NAME, WAIT).unwrap();
    let mut client = Connection::connect(&vm.control_socket()).unwrap();
    client
        .execute("pvmouse-send", json!({"display": 1, "x": 0.5, "y": 0.75}))
        .unwrap();
    let (x, y) = (round_to_i32(0.5 * 65535.0), round_to_i32(0.75 * 65535.0));
    vm.probe
        .query_until("state", PVMOUSE_NAME, "the move", WAIT, |st| {
            st["abs"]["0"] == x && st["abs"]["1"] == y
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // The relative device came from the socket named `relative`: motion reaches the guest there.
    let relative = format!("{PVMOUSE_NAME} relative");
    vm.probe.watch(&relative, WAIT).unwrap();
    let mark = vm.probe.mark();
    client
        .execute("pvmouse-send", json!({"dx": 7, "dy": -2}))
        .unwrap();
    let moved = vm
        .probe
        .wait_events(&relative, mark, WAIT, |evs| {
            pvmouse_vmtest::motion_sums(evs) == (7, -2)
        })
        .unwrap_or_else(|e| panic!("the relative device: {e}"));
    println!("the relative device from the socket named relative: {moved:?}");
    client
        .execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
    // A button held when the service stops: the guest sees it let go.
    client
        .execute("pvmouse-send", json!({"buttons": {"left": true}}))
        .unwrap();
    vm.probe
        .query_until("state", PVMOUSE_NAME, "left held", WAIT, |st| {
            st["keys"] == json!([BTN_LEFT])
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let mark = vm.probe.mark();
    drop(client);

    // systemd-socket-activate became the backend (the keeper) when QEMU connected.
    let keeper = vm.backend_pid().unwrap();
    let exe = std::fs::read_link(format!("/proc/{keeper}/exe")).unwrap();
    assert!(exe.ends_with("vhost-user-pvmouse"), "{}", exe.display());
    assert!(vm.worker_pid().is_some(), "restartable: a worker runs");
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &keeper.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let stopping = vm.service_notices(WAIT);
    assert!(stopping.iter().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let took = pvmouse_vmtest::vm::wait_exited(keeper, WAIT)
        .unwrap_or_else(|e| panic!("SIGTERM did not end the backend: {e}"));
    println!("stopped in {took:?}; told {stopping:?}");
    let released: Vec<i32> = vm
        .probe
        .events(PVMOUSE_NAME, mark)
        .iter()
        .filter(|e| e.event.kind == EV_KEY && e.event.code == BTN_LEFT)
        .map(|e| e.event.value)
        .collect();
    assert_eq!(
        released,
        [0],
        "the guest saw the held button let go as the backend stopped"
    );
    assert!(
        vm.vhost_socket().exists() && vm.control_socket().exists(),
        "the units' sockets stay"
    );
}
