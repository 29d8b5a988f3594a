//! Reading command arguments with the checks and messages QEMU gives: missing, mistyped and
//! unexpected members are named with their full path, e.g. `events[2].data.value`.

use serde_json::{Map, Value};

use super::qmp::QmpError;

#[derive(Debug)]
pub struct Args<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    taken: Vec<&'a str>,
}

impl<'a> Args<'a> {
    pub fn new(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            map,
            prefix: prefix.into(),
            taken: Vec::new(),
        }
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        self.taken.push(key);
        self.map.get(key)
    }

    fn wrong_type(&self, key: &str, expected: &str) -> QmpError {
        QmpError::generic(format!(
            "Invalid parameter type for '{}', expected: {expected}",
            self.path(key)
        ))
    }

    fn missing(&self, key: &str) -> QmpError {
        QmpError::generic(format!("Parameter '{}' is missing", self.path(key)))
    }

    /// An optional member of one JSON type; `expected` names the type in the error.
    fn opt<T>(
        &mut self,
        key: &'a str,
        expected: &str,
        extract: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, QmpError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => extract(v)
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, expected)),
        }
    }

    pub fn opt_number(&mut self, key: &'a str) -> Result<Option<f64>, QmpError> {
        self.opt(key, "number", Value::as_f64)
    }

    pub fn opt_str(&mut self, key: &'a str) -> Result<Option<&'a str>, QmpError> {
        self.opt(key, "string", Value::as_str)
    }

    pub fn opt_bool(&mut self, key: &'a str) -> Result<Option<bool>, QmpError> {
        self.opt(key, "boolean", Value::as_bool)
    }

    pub fn opt_object(&mut self, key: &'a str) -> Result<Option<&'a Map<String, Value>>, QmpError> {
        self.opt(key, "object", Value::as_object)
    }

    pub fn opt_array(&mut self, key: &'a str) -> Result<Option<&'a Vec<Value>>, QmpError> {
        self.opt(key, "array", Value::as_array)
    }

    pub fn str(&mut self, key: &'a str) -> Result<&'a str, QmpError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn bool(&mut self, key: &'a str) -> Result<bool, QmpError> {
        self.opt_bool(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn object(&mut self, key: &'a str) -> Result<&'a Map<String, Value>, QmpError> {
        self.opt_object(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn array(&mut self, key: &'a str) -> Result<&'a Vec<Value>, QmpError> {
        self.opt_array(key)?.ok_or_else(|| self.missing(key))
    }

    /// Fails on the first member nobody asked for.
    pub fn finish(self) -> Result<(), QmpError> {
        match self.map.keys().find(|k| !self.taken.contains(&k.as_str())) {
            Some(k) => Err(QmpError::generic(format!(
                "Parameter '{}' is unexpected",
                self.path(k)
            ))),
            None => Ok(()),
        }
    }

    /// An integer member that must lie in `range`; `what` explains the range to the user.
    ///
    /// JSON has one number type: an integer too large for 64 bits arrives as a float. Any whole
    /// number outside the range, however large, is reported as out of range; only a fraction
    /// is a wrong type.
    pub fn int_in(
        &mut self,
        key: &'a str,
        range: std::ops::RangeInclusive<i64>,
        what: &str,
    ) -> Result<Option<i64>, QmpError> {
        let value = self.get(key);
        let path = self.path(key);
        let out_of_range = |shown: &dyn std::fmt::Display| {
            QmpError::generic(format!(
                "Parameter '{path}' out of range: {shown} is not in {}..={} ({what})",
                range.start(),
                range.end()
            ))
        };
        match value {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if range.contains(&v) => Ok(Some(v)),
                Some(v) => Err(out_of_range(&v)),
                None if n.is_u64() => Err(out_of_range(n)),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 => Err(out_of_range(&format_args!("{f:e}"))),
                    _ => Err(self.wrong_type(key, "integer")),
                },
            },
            Some(_) => Err(self.wrong_type(key, "integer")),
        }
    }
}
