//! Where one JSON value ends in a byte stream, found in time linear in the bytes received, and
//! the one parse of each complete value.
//!
//! A client may send a command a few bytes at a time. Re-parsing the whole unfinished command on
//! every read costs time quadratic in its length, so that a few tricklers keep a core busy and
//! delay every other client. [`ValueFramer`] looks at each byte once and carries what it knows
//! (nesting depth, inside a string, after a backslash) from one read to the next. Only a value
//! it has seen end is parsed, by [`parse_value`], which also refuses duplicate keys as QEMU's
//! parser does.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Finds the end of the top-level JSON value that starts a stream. Whitespace before the value
/// is the caller's to skip; the framer is fed from the value's first byte on.
#[derive(Debug, Default, Clone)]
pub struct ValueFramer {
    /// Bytes of the value looked at so far.
    seen: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A number or literal (`true`, `null`, …) at the top level: it ends at the first byte that
    /// cannot belong to it, so the end of the received bytes says nothing yet.
    bare: bool,
}

/// Bytes that end a bare top-level value.
fn delimits(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'{' | b'}' | b'[' | b']' | b'"' | b',' | b':')
}

impl ValueFramer {
    /// Looks at the bytes of `value` not yet seen. `value` is the whole value so far, from its
    /// first byte. Returns the value's length once its end is in `value`.
    pub fn scan(&mut self, value: &[u8]) -> Option<usize> {
        while let Some(&b) = value.get(self.seen) {
            let first = self.seen == 0;
            self.seen += 1;
            if first {
                match b {
                    b'{' | b'[' => self.depth = 1,
                    b'"' => self.in_string = true,
                    // A closing bracket or separator where a value should start is one byte
                    // of bad input: end it here, and let the parser say what is wrong.
                    b'}' | b']' | b',' | b':' => return Some(1),
                    _ => self.bare = true,
                }
                continue;
            }
            if self.bare {
                if delimits(b) {
                    return Some(self.seen - 1);
                }
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        return Some(self.seen);
                    }
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(self.seen);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// How many bytes of the current value have been looked at.
    pub fn seen(&self) -> usize {
        self.seen
    }
}

/// Parses one complete JSON value, refusing an object that repeats a key at any depth.
pub fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `serde_json::Value` as serde_json does, except that a repeated key is an error
/// instead of the last one silently winning.
#[derive(Debug, Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never yields a non-finite number from JSON text.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key '{key}'")));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every value in `stream` (separated by whitespace), found by feeding it in pieces of
    /// `piece` bytes.
    fn frame_all(stream: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut framer = ValueFramer::default();
        for chunk in stream.chunks(piece) {
            pending.extend_from_slice(chunk);
            loop {
                let start = pending
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(pending.len());
                if framer.seen() == 0 {
                    pending.drain(..start);
                }
                match framer.scan(&pending) {
                    Some(end) => {
                        out.push(pending.drain(..end).collect());
                        framer = ValueFramer::default();
                    }
                    None => break,
                }
            }
        }
        out
    }

    #[test]
    fn values_end_where_they_end_however_the_stream_is_split() {
        let stream = br#"{"execute": "x", "arguments": {"s": "a}]\"{[", "n": [1, [2, {}]]}}
            [1,2] "top \" level" 42 true{"a":1}null
        "#;
        let want: Vec<&[u8]> = vec![
            br#"{"execute": "x", "arguments": {"s": "a}]\"{[", "n": [1, [2, {}]]}}"#,
            b"[1,2]",
            br#""top \" level""#,
            b"42",
            b"true",
            br#"{"a":1}"#,
            b"null",
        ];
        for piece in 1..=stream.len() {
            assert_eq!(frame_all(stream, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn a_bare_value_at_the_end_of_the_bytes_is_not_yet_complete() {
        let mut f = ValueFramer::default();
        assert_eq!(f.scan(b"12"), None);
        assert_eq!(f.scan(b"123"), None);
        assert_eq!(f.scan(b"123\n"), Some(3));
    }

    #[test]
    fn stray_closers_are_one_byte_values() {
        for b in [b"}", b"]", b",", b":"] {
            assert_eq!(ValueFramer::default().scan(b), Some(1));
        }
    }

    #[test]
    fn each_byte_is_looked_at_once() {
        let mut f = ValueFramer::default();
        let mut value = b"{\"pad\": \"".to_vec();
        for _ in 0..10_000 {
            value.extend_from_slice(b"ab");
            assert_eq!(f.scan(&value), None);
            assert_eq!(f.seen(), value.len());
        }
        value.extend_from_slice(b"\"}");
        assert_eq!(f.scan(&value), Some(value.len()));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(
            parse_value(br#"{"a": 1, "b": {"c": [1, {"d": null}]}}"#).unwrap(),
            json!({"a": 1, "b": {"c": [1, {"d": null}]}})
        );
        for bad in [
            &br#"{"execute": "a", "execute": "b"}"#[..],
            br#"{"arguments": {"x": 1, "x": 2}}"#,
            br#"[{"k": 1, "k": 1}]"#,
        ] {
            let err = parse_value(bad).unwrap_err().to_string();
            assert!(err.starts_with("duplicate key '"), "{err}");
        }
    }

    #[test]
    fn numbers_parse_as_serde_json_parses_them() {
        for text in ["0", "-5", "18446744073709551615", "1e300", "-1e-300", "0.5"] {
            let ours = parse_value(text.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
        }
    }
}
