//! Project descriptions (SPEC N8).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The most characters a description holds (N8).
pub const MAX_DESCRIPTION_CHARS: usize = 4096;

/// A project's description (N8): at most 4,096 characters, with no control
/// characters other than tab and newline. Parsed once at the edge, like a name.
///
/// ```
/// use turnstile::ProjectDescription;
/// let d: ProjectDescription = "Image models\n\tv2".parse()?;
/// assert_eq!(d.as_str(), "Image models\n\tv2");
/// assert!("bell\u{7}".parse::<ProjectDescription>().is_err());
/// assert!("x".repeat(4097).parse::<ProjectDescription>().is_err());
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectDescription(String);

impl ProjectDescription {
    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const EXPECTED: &str =
    "at most 4096 characters, with no control characters other than tab and newline";

impl FromStr for ProjectDescription {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::invalid_value("project description", s, EXPECTED);
        // A character is at most 4 bytes: bound the work on a hostile 10 MB input.
        if s.len() > MAX_DESCRIPTION_CHARS * 4 || s.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid());
        }
        if s.chars().any(|c| c.is_control() && c != '\t' && c != '\n') {
            return Err(invalid());
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for ProjectDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n8_descriptions_are_bounded_and_free_of_control_characters() {
        for good in ["", "plain", "tab\tand\nnewline", &"é".repeat(4096), "زبان"] {
            assert!(good.parse::<ProjectDescription>().is_ok(), "{good:?}");
        }
        for bad in [
            &"x".repeat(4097),
            &"é".repeat(4097),
            "nul\0",
            "escape\u{1b}[31m",
            "carriage\r\nreturn",
            "c1\u{85}",
            "del\u{7f}",
        ] {
            let err = bad.parse::<ProjectDescription>().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidValue {
                        what: "project description",
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
        let huge = "x".repeat(10 * 1024 * 1024);
        let err = huge.parse::<ProjectDescription>().unwrap_err();
        assert!(
            err.to_string().len() < 300,
            "the message echoes a short prefix"
        );
        let err = "escape\u{1b}[31m"
            .parse::<ProjectDescription>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid project description `escape\\u{{1b}}[31m`: expected {EXPECTED}")
        );
    }
}
