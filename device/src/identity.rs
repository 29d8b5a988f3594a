//! Who this pvmouse instance is: the values an operator may choose, validated once.

use pvmouse_spec::profile::{MAX_DISPLAYS, MAX_ID_STRING_LEN, MIN_DISPLAYS};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{what} must be 1 to {MAX_ID_STRING_LEN} printable ASCII characters, got {value:?}")]
    BadString { what: &'static str, value: String },
    #[error("displays must be {MIN_DISPLAYS} to {MAX_DISPLAYS}, got {0}")]
    BadDisplays(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    name: String,
    serial: String,
    displays: u8,
    /// The backend serves the relative device too.
    relative: bool,
}

impl Identity {
    pub fn new(name: &str, serial: &str, displays: u32) -> Result<Self, IdentityError> {
        let check = |what, value: &str| {
            let ok = !value.is_empty()
                && value.len() <= MAX_ID_STRING_LEN
                && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            if ok {
                Ok(value.to_owned())
            } else {
                Err(IdentityError::BadString {
                    what,
                    value: value.to_owned(),
                })
            }
        };
        if !(MIN_DISPLAYS..=MAX_DISPLAYS).contains(&displays) {
            return Err(IdentityError::BadDisplays(displays));
        }
        Ok(Self {
            name: check("name", name)?,
            serial: check("serial", serial)?,
            // MAX_DISPLAYS is 16, so this always fits.
            displays: u8::try_from(displays).map_err(|_| IdentityError::BadDisplays(displays))?,
            relative: false,
        })
    }

    /// This identity, with or without the relative device.
    #[must_use]
    pub fn with_relative(self, relative: bool) -> Self {
        Self { relative, ..self }
    }

    pub fn relative(&self) -> bool {
        self.relative
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn serial(&self) -> &str {
        &self.serial
    }

    pub fn displays(&self) -> u8 {
        self.displays
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_strings_and_display_count() {
        assert!(Identity::new("pvmouse", "s-1", 1).is_ok());
        assert!(Identity::new("pvmouse", "s", 16).is_ok());
        assert_eq!(
            Identity::new("pvmouse", "s", 0),
            Err(IdentityError::BadDisplays(0))
        );
        assert!(Identity::new("pvmouse", "s", 17).is_err());
        assert!(Identity::new("", "s", 1).is_err());
        assert!(Identity::new(&"n".repeat(64), "s", 1).is_err());
        assert!(Identity::new(&"n".repeat(63), "s", 1).is_ok());
        assert!(Identity::new("tab\there", "s", 1).is_err());
        assert!(Identity::new("pvmouse", "caf\u{e9}", 1).is_err());
    }
}
