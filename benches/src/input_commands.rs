//! The `input-send-event` commands every kind is driven with, pre-formatted so a paced stream
//! spends no time building them.

/// `input-send-event` moving the pointer to (x, y), QEMU's 0..=32767 scale.
pub fn move_command(x: u32, y: u32) -> String {
    format!(
        "{{\"execute\":\"input-send-event\",\"arguments\":{{\"events\":[\
         {{\"type\":\"abs\",\"data\":{{\"axis\":\"x\",\"value\":{x}}}}},\
         {{\"type\":\"abs\",\"data\":{{\"axis\":\"y\",\"value\":{y}}}}}]}}}}\n"
    )
}

/// `input-send-event` moving the pointer by `dx` (relative motion on X).
pub fn rel_command(dx: u32) -> String {
    format!(
        "{{\"execute\":\"input-send-event\",\"arguments\":{{\"events\":[\
         {{\"type\":\"rel\",\"data\":{{\"axis\":\"x\",\"value\":{dx}}}}}]}}}}\n"
    )
}

/// `input-send-event` pressing or releasing the left button.
pub fn button_command(down: bool) -> String {
    format!(
        "{{\"execute\":\"input-send-event\",\"arguments\":{{\"events\":[\
         {{\"type\":\"btn\",\"data\":{{\"down\":{down},\"button\":\"left\"}}}}]}}}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_valid_qmp() {
        let m: serde_json::Value = serde_json::from_str(&move_command(16, 32751)).unwrap();
        assert_eq!(m["arguments"]["events"][1]["data"]["value"], 32751);
        let r: serde_json::Value = serde_json::from_str(&rel_command(80)).unwrap();
        assert_eq!(r["arguments"]["events"][0]["data"]["value"], 80);
        let b: serde_json::Value = serde_json::from_str(&button_command(true)).unwrap();
        assert_eq!(b["arguments"]["events"][0]["data"]["down"], true);
    }
}
