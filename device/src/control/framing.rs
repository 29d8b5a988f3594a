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

/// How deep values may nest, as serde_json allows: deeper is a syntax error, caught at once.
const MAX_DEPTH: usize = 128;

/// What the framer expects next, outside strings and bare tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Expect {
    /// A value (at the top, after `:` or after `,` in an array).
    #[default]
    Value,
    /// A value or `]`, just after `[`.
    ValueOrClose,
    /// A key or `}`, just after `{`.
    KeyOrClose,
    /// A key, after `,` in an object.
    Key,
    Colon,
    /// `,` or the closing bracket of the innermost container.
    CommaOrClose,
}

/// What [`ValueFramer::scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// More bytes are needed.
    Incomplete,
    /// The value is this many bytes long.
    Complete(usize),
    /// The byte at this offset cannot continue the value: a syntax error, known at once.
    Invalid(usize),
}

/// Finds the end of the top-level JSON value that starts a stream, and the first byte that
/// cannot belong to it. Whitespace before the value is the caller's to skip; the framer is fed
/// from the value's first byte on. It checks the grammar of brackets, separators, keys and
/// strings, not what is inside a string or a number: the parser says that, once the value is
/// complete. Checking the grammar as bytes arrive is what makes a malformed command (an
/// unclosed `{`, say) an error where it goes wrong, instead of swallowing every later command.
#[derive(Debug, Default, Clone)]
pub struct ValueFramer {
    /// Bytes of the value looked at so far.
    seen: usize,
    /// Open containers, innermost last: `{` or `[`.
    open: Vec<u8>,
    expect: Expect,
    in_string: bool,
    /// The string being read is an object key.
    key: bool,
    escaped: bool,
    /// Inside a number or literal (`true`, `null`, …): it ends at the first byte that cannot
    /// belong to it, so the end of the received bytes says nothing yet.
    bare: bool,
}

/// Bytes that end a bare token.
fn delimits(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'{' | b'}' | b'[' | b']' | b'"' | b',' | b':')
}

impl ValueFramer {
    /// Looks at the bytes of `value` not yet seen. `value` is the whole value so far, from its
    /// first byte.
    pub fn scan(&mut self, value: &[u8]) -> Scan {
        while let Some(&b) = value.get(self.seen) {
            let at = self.seen;
            if self.bare {
                if !delimits(b) {
                    self.seen += 1;
                    continue;
                }
                // The delimiter is not part of the token: look at it again as what follows.
                self.bare = false;
                if self.value_done() {
                    return Scan::Complete(at);
                }
                continue;
            }
            self.seen += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.key {
                        self.key = false;
                        self.expect = Expect::Colon;
                    } else if self.value_done() {
                        return Scan::Complete(self.seen);
                    }
                }
                continue;
            }
            if b.is_ascii_whitespace() {
                continue;
            }
            let ok = match (self.expect, b) {
                (Expect::KeyOrClose | Expect::Key, b'"') => {
                    self.in_string = true;
                    self.key = true;
                    true
                }
                (Expect::Colon, b':') => {
                    self.expect = Expect::Value;
                    true
                }
                (Expect::ValueOrClose, b']') | (Expect::KeyOrClose, b'}') => {
                    self.open.pop();
                    if self.value_done() {
                        return Scan::Complete(self.seen);
                    }
                    true
                }
                (Expect::CommaOrClose, b',') => {
                    self.expect = if self.open.last() == Some(&b'{') {
                        Expect::Key
                    } else {
                        Expect::Value
                    };
                    true
                }
                (Expect::CommaOrClose, b'}' | b']') if self.open.last() == Some(&closer(b)) => {
                    self.open.pop();
                    if self.value_done() {
                        return Scan::Complete(self.seen);
                    }
                    true
                }
                (Expect::Value | Expect::ValueOrClose, b'{' | b'[') => {
                    if self.open.len() == MAX_DEPTH {
                        false
                    } else {
                        self.open.push(b);
                        self.expect = if b == b'{' {
                            Expect::KeyOrClose
                        } else {
                            Expect::ValueOrClose
                        };
                        true
                    }
                }
                (Expect::Value | Expect::ValueOrClose, b'"') => {
                    self.in_string = true;
                    true
                }
                (Expect::Value | Expect::ValueOrClose, _) if !delimits(b) => {
                    self.bare = true;
                    true
                }
                _ => false,
            };
            if !ok {
                return Scan::Invalid(at);
            }
        }
        Scan::Incomplete
    }

    /// A value ended: true if it was the top-level one.
    fn value_done(&mut self) -> bool {
        self.expect = Expect::CommaOrClose;
        self.open.is_empty()
    }

    /// Ready for the next value. The nesting stack keeps its capacity, so framing a stream of
    /// commands allocates nothing per command.
    pub fn reset(&mut self) {
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        *self = Self {
            open,
            ..Self::default()
        };
    }

    /// How many bytes of the current value have been looked at.
    pub fn seen(&self) -> usize {
        self.seen
    }
}

/// The opening bracket a closing one matches.
fn closer(close: u8) -> u8 {
    if close == b'}' { b'{' } else { b'[' }
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
                    Scan::Complete(end) => {
                        out.push(pending.drain(..end).collect());
                        framer = ValueFramer::default();
                    }
                    Scan::Incomplete => break,
                    Scan::Invalid(at) => panic!("invalid at {at}: {pending:?}"),
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
        assert_eq!(f.scan(b"12"), Scan::Incomplete);
        assert_eq!(f.scan(b"123"), Scan::Incomplete);
        assert_eq!(f.scan(b"123\n"), Scan::Complete(3));
    }

    #[test]
    fn grammar_errors_are_found_at_the_byte_where_they_are() {
        for (text, at) in [
            (&b"}"[..], 0),
            (b"]", 0),
            (b",", 0),
            (b":", 0),
            // An unclosed object followed by the next command: caught at the next `{`.
            (b"{\"x\": 0.5\n{\"execute\": 1}", 10),
            (b"{nonsense", 1),
            (b"{\"a\" 1}", 5),
            (b"{\"a\": 1 \"b\": 2}", 8),
            (b"[1, 2}", 5),
            (b"{\"a\": 1]", 7),
            (b"[,]", 1),
            (b"{\"a\":}", 5),
        ] {
            let got = ValueFramer::default().scan(text);
            assert_eq!(
                got,
                Scan::Invalid(at),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        let deep = vec![b'['; MAX_DEPTH + 1];
        assert_eq!(ValueFramer::default().scan(&deep), Scan::Invalid(MAX_DEPTH));
    }

    #[test]
    fn each_byte_is_looked_at_once() {
        let mut f = ValueFramer::default();
        let mut value = b"{\"pad\": \"".to_vec();
        for _ in 0..10_000 {
            value.extend_from_slice(b"ab");
            assert_eq!(f.scan(&value), Scan::Incomplete);
            assert_eq!(f.seen(), value.len());
        }
        value.extend_from_slice(b"\"}");
        assert_eq!(f.scan(&value), Scan::Complete(value.len()));
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
