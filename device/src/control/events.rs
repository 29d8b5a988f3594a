//! QMP events: what a client is told of the device's notices, shaped as QEMU shapes its own.

use pvmouse_spec::control::event;
use serde_json::{Value, json};

use super::qmp;
use crate::notice::Notice;

pub fn notice_event(notice: Notice) -> Value {
    match notice {
        Notice::Frontend { connected } => {
            qmp::event(event::FRONTEND_CHANGE, json!({ "connected": connected }))
        }
        Notice::Driver { active } => qmp::event(event::DRIVER_CHANGE, json!({ "active": active })),
        Notice::Bridge {
            present: true,
            version,
        } => qmp::event(
            event::BRIDGE_CHANGE,
            json!({ "present": true, "version": version }),
        ),
        Notice::Bridge { present: false, .. } => {
            qmp::event(event::BRIDGE_CHANGE, json!({ "present": false }))
        }
    }
}
