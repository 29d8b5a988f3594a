//! `pvmouse-rel-survey`: what a guest's consumers make of a pointer with absolute and relative
//! axes both, the shape a pvmouse with a relative mode could take (issue: relative motion). It
//! boots the desktop guest, has the probe create such a device with uinput (`combo`), and
//! prints what udev's input_id and `libinput list-devices` say of it, then, in sway and in
//! X.Org, where the pointer goes for an absolute position, for relative motion, and for the
//! same absolute position again (which Linux's input core drops as unchanged). A measurement for a design
//! decision, run by hand: it asserts nothing.

use std::time::Duration;

use pvmouse_vmtest::desktop::{READER_LOG, Reader, Sway};
use pvmouse_vmtest::guest::Guest;

const WAIT: Duration = Duration::from_secs(60);
const LOGS: &str = "tail -n 20 /tmp/sway.log /tmp/reader.log 2>&1";

fn main() {
    let guest = Guest::desktop(1, LOGS, WAIT);
    let node = guest
        .probe
        .request("combo", "COMBO ", WAIT)
        .unwrap_or_else(|e| guest.fail(e));
    let node = node.trim_start_matches("COMBO ").to_owned();
    println!("device: {node}");
    guest.sh("udevadm settle");
    for line in guest.sh(&format!(
        "udevadm info -q property -n {node} | grep ^ID_INPUT"
    )) {
        println!("udev: {line}");
    }
    let devices = guest.sh("libinput list-devices 2>/dev/null || true");
    let mut in_block = false;
    for line in devices {
        if line.starts_with("Device:") {
            in_block = line.contains("combo");
        }
        if in_block && !line.trim().is_empty() {
            println!("libinput: {line}");
        }
    }

    Sway::start(&guest, "output Virtual-1 mode 1024x768 position 0 0\\n")
        .unwrap_or_else(|e| guest.fail(e));
    Sway::in_session(
        &guest,
        &format!("/opt/pvmouse-wl-reader >{READER_LOG} 2>&1 &"),
    )
    .unwrap_or_else(|e| guest.fail(e));
    let reader = guest.reader_ready();
    let step = |what: &str, emit: &str| {
        guest
            .probe
            .request(&format!("combo-emit {emit}"), "EMITTED", WAIT)
            .unwrap_or_else(|e| guest.fail(e));
        std::thread::sleep(Duration::from_millis(500));
        let at = reader.position();
        println!("sway: {what} ({emit}): pointer at {at:?}");
        at
    };
    let _: Option<_> = step("absolute, a quarter across and down", "abs 16384 16384");
    for (dx, dy) in [(10, 0), (100, 0), (0, 100), (-100, -100)] {
        step("relative", &format!("rel {dx} {dy}"));
    }
    step("the same absolute position again", "abs 16384 16384");
    step("another absolute position", "abs 32768 32768");
    let accel = Sway::in_session(
        &guest,
        "swaymsg -t get_inputs -r | grep -E 'accel|name' | head -n 20",
    )
    .unwrap_or_default();
    for line in accel {
        println!("sway input: {}", line.trim());
    }
    let _ = Reader::position(&reader);

    // The same in X.Org with xf86-input-libinput, the position read from the server itself.
    guest.sh("pkill -x sway; pkill -x seatd; sleep 1; true");
    guest.sh("Xorg :0 vt1 -nolisten tcp -noreset >/tmp/xorg.log 2>&1 &");
    guest.until("DISPLAY=:0 xrandr --listmonitors", "Monitors:");
    println!(
        "X.Org: before any input: {}",
        guest.sh("DISPLAY=:0 xdotool getmouselocation").join(" ")
    );
    let x_step = |what: &str, emit: &str| {
        guest
            .probe
            .request(&format!("combo-emit {emit}"), "EMITTED", WAIT)
            .unwrap_or_else(|e| guest.fail(e));
        std::thread::sleep(Duration::from_millis(500));
        let at = guest.sh("DISPLAY=:0 xdotool getmouselocation");
        println!("X.Org: {what} ({emit}): {}", at.join(" "));
    };
    x_step("absolute, a quarter across and down", "abs 16384 16384");
    for (dx, dy) in [(10, 0), (100, 0), (0, 100), (-100, -100)] {
        x_step("relative", &format!("rel {dx} {dy}"));
    }
    x_step("the same absolute position again", "abs 16384 16384");
    x_step("another absolute position", "abs 32768 32768");
    for line in guest.sh("DISPLAY=:0 xinput list-props 'pvmouse combo probe' 2>&1 \
         | grep -iE 'accel|calibration|absolute' || true")
    {
        println!("X.Org xinput: {}", line.trim());
    }
    println!(
        "X.Org screen: {}",
        guest.sh("DISPLAY=:0 xrandr | head -n 1").join(" ")
    );
}
