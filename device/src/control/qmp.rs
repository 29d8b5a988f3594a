//! QMP framing: the greeting, requests, replies, errors and events, shaped as QEMU shapes them so
//! that stock QMP client libraries work unchanged.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotFound,
}

impl ErrorClass {
    fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    pub fn generic(desc: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    pub fn command_not_found(desc: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::CommandNotFound,
            desc: desc.into(),
        }
    }

    pub fn device_not_found(desc: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::DeviceNotFound,
            desc: desc.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub execute: String,
    pub arguments: Map<String, Value>,
    pub id: Option<Value>,
}

/// Splits a QMP input object into its parts. On error, the `id` (if one could be read) comes
/// back with it so the reply can still carry it.
pub fn parse_request(input: Value) -> Result<Request, (QmpError, Option<Value>)> {
    let Value::Object(mut obj) = input else {
        return Err((QmpError::generic("QMP input must be a JSON object"), None));
    };
    let id = obj.remove("id");
    let fail = |desc: String, id: &Option<Value>| Err((QmpError::generic(desc), id.clone()));
    if obj.contains_key("exec-oob") {
        return fail(
            "out-of-band execution is not supported by pvmouse; use 'execute'".into(),
            &id,
        );
    }
    let execute = match obj.remove("execute") {
        Some(Value::String(s)) => s,
        Some(_) => return fail("QMP input member 'execute' must be a string".into(), &id),
        None => return fail("QMP input lacks member 'execute'".into(), &id),
    };
    let arguments = match obj.remove("arguments") {
        Some(Value::Object(m)) => m,
        Some(_) => return fail("QMP input member 'arguments' must be an object".into(), &id),
        None => Map::new(),
    };
    if let Some(extra) = obj.keys().next() {
        return fail(format!("QMP input member '{extra}' is unexpected"), &id);
    }
    Ok(Request {
        execute,
        arguments,
        id,
    })
}

pub fn greeting(version: &str) -> Value {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor, micro) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    json!({
        "QMP": {
            "version": {
                "qemu": { "major": major, "minor": minor, "micro": micro },
                "package": format!("vhost-user-pvmouse {version}"),
            },
            "capabilities": [],
        }
    })
}

fn with_id(mut reply: Map<String, Value>, id: Option<Value>) -> Value {
    if let Some(id) = id {
        reply.insert("id".into(), id);
    }
    Value::Object(reply)
}

pub fn success(ret: Value, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), ret);
    with_id(m, id)
}

pub fn failure(err: &QmpError, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert(
        "error".into(),
        json!({ "class": err.class.as_str(), "desc": err.desc }),
    );
    with_id(m, id)
}

pub fn event(name: &str, data: Value) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!({
        "event": name,
        "data": data,
        "timestamp": { "seconds": now.as_secs(), "microseconds": now.subsec_micros() },
    })
}

/// One message on the wire, terminated as QEMU terminates them.
pub fn encode(message: &Value) -> Vec<u8> {
    let mut out = message.to_string().into_bytes();
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_split_and_malformed_ones_keep_their_id() {
        let r = parse_request(json!({"execute": "x", "arguments": {"a": 1}, "id": [1]})).unwrap();
        assert_eq!((r.execute.as_str(), r.id), ("x", Some(json!([1]))));
        let cases = [
            (json!([1]), "must be a JSON object"),
            (json!({"id": 5}), "lacks member 'execute'"),
            (json!({"execute": 1, "id": 5}), "'execute' must be a string"),
            (
                json!({"execute": "x", "arguments": [], "id": 5}),
                "'arguments' must be an object",
            ),
            (
                json!({"execute": "x", "bogus": 1, "id": 5}),
                "'bogus' is unexpected",
            ),
            (json!({"exec-oob": "x", "id": 5}), "out-of-band"),
        ];
        for (input, want) in cases {
            let (err, id) = parse_request(input.clone()).unwrap_err();
            assert!(err.desc.contains(want), "{input}: {}", err.desc);
            if input.is_object() {
                assert_eq!(id, Some(json!(5)), "{input}");
            }
        }
    }

    #[test]
    fn greeting_and_replies_look_like_qemus() {
        let g = greeting("1.2.3");
        assert_eq!(g["QMP"]["version"]["qemu"]["minor"], 2);
        assert_eq!(g["QMP"]["capabilities"], json!([]));
        let e = failure(&QmpError::command_not_found("nope"), Some(json!("a")));
        assert_eq!(
            e,
            json!({"error": {"class": "CommandNotFound", "desc": "nope"}, "id": "a"})
        );
        assert!(encode(&success(json!({}), None)).ends_with(b"}\r\n"));
    }
}
