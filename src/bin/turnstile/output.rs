//! What a command hands back to `main`: its output for people and for `--json`, or a
//! failure with its exit code. Also the small table printers.

use std::fmt::Write as _;
use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use turnstile::{Error, ErrorKind, IssuedToken};

/// Success (and `check`: allowed).
pub const EXIT_OK: u8 = 0;
/// Denied, not found, invalid token, conflict (and `check`: denied).
pub const EXIT_DENIED: u8 = 1;
/// A malformed command line, name, role or input file.
pub const EXIT_USAGE: u8 = 2;
/// The database (or the operating system under it) failed.
pub const EXIT_STORAGE: u8 = 3;

/// Printed after every token, whatever the output format.
pub const TOKEN_WARNING: &str =
    "warning: this token will not be shown again; store it now (turnstile keeps only its digest)";

/// A command that failed: its kind (the library's [`ErrorKind`], which decides the exit
/// code), a stable name, and one line for people.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    /// The library error's [`Error::name`], or the CLI's own (`Usage`, `Io`,
    /// `DatabaseNotFound`, `DatabaseExists`, `NotADemoDatabase`, `FileNotFound`).
    pub name: &'static str,
    pub message: String,
}

impl Failure {
    fn new(kind: ErrorKind, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            name,
            message: message.into(),
        }
    }

    /// A malformed command line, value or input file.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, "Usage", message)
    }

    /// Something the command needs is not there.
    pub fn not_found(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, name, message)
    }

    /// The command conflicts with what is there (a database where a new one would go).
    pub fn conflict(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, name, message)
    }

    /// The file system failed.
    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Storage, "Io", message)
    }

    /// The database named is not there (exit 3, as for any storage failure: the
    /// database cannot be used).
    pub fn missing_database(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Storage, "DatabaseNotFound", message)
    }

    /// The failure's exit code.
    pub fn code(&self) -> u8 {
        exit_code(self.kind)
    }

    /// The same failure, its message prefixed (e.g. with a line number).
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        Self {
            message: format!("{prefix}: {}", self.message),
            ..self
        }
    }

    /// The failure as `--json` prints it (on stderr): `{"error": {"kind", "name",
    /// "message"}}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "error": {
                "kind": self.kind.as_str(),
                "name": self.name,
                "message": self.message,
            }
        })
    }

    /// Prints the failure on stderr: one `error: ` line, or with `json` one JSON line.
    pub fn print(&self, json: bool) {
        let mut err = std::io::stderr().lock();
        if json {
            let _ = writeln!(err, "{}", self.to_json());
        } else {
            let _ = writeln!(err, "error: {}", self.message);
        }
    }
}

/// The exit code of each kind of error (E1): the one mapping from the library's
/// answers to the documented codes. The CLI decides no rule.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidInput => EXIT_USAGE,
        ErrorKind::Storage | ErrorKind::Busy => EXIT_STORAGE,
        _ => EXIT_DENIED,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::new(e.kind(), e.name(), e.to_string())
    }
}

/// One command's result.
#[derive(Debug, Default)]
pub struct Output {
    /// The document printed with `--json`; `None` prints `text` in both modes.
    pub json: Option<Value>,
    /// What people read on stdout.
    pub text: String,
    /// A line for people on stderr before `text` (not printed with `--json`).
    pub note: Option<String>,
    /// A line on stderr after the output, in both modes.
    pub warning: Option<String>,
    /// The exit code.
    pub code: u8,
}

impl Output {
    /// `text` for people, `json` for `--json`.
    pub fn new(json: impl Serialize, text: impl Into<String>) -> Self {
        Self {
            json: Some(serde_json::to_value(json).unwrap_or(Value::Null)),
            text: text.into(),
            ..Self::default()
        }
    }

    /// Printed as is whatever the output format (an exported document).
    pub fn raw(text: String) -> Self {
        Self {
            text,
            ..Self::default()
        }
    }

    /// A newly issued token: people get the bare secret on stdout (so that
    /// `TOKEN=$(turnstile ...)` works) with `note` on stderr; `--json` gets `json`,
    /// whose `token` field holds the secret. Both get the warning.
    pub fn token(json: impl Serialize, note: String, token: &IssuedToken) -> Self {
        Self {
            note: Some(note),
            warning: Some(TOKEN_WARNING.to_owned()),
            ..Self::new(json, format!("{}\n", token.secret()))
        }
    }

    pub fn with_code(self, code: u8) -> Self {
        Self { code, ..self }
    }

    /// Writes the output; a closed stdout (`| head`) is not an error worth a panic.
    pub fn print(&self, json: bool) {
        let mut err = std::io::stderr().lock();
        if !json && let Some(note) = &self.note {
            let _ = writeln!(err, "{note}");
        }
        let mut out = std::io::stdout().lock();
        match (&self.json, json) {
            (Some(doc), true) => {
                let text = serde_json::to_string_pretty(doc).unwrap_or_default();
                let _ = writeln!(out, "{text}");
            }
            _ => {
                let _ = out.write_all(self.text.as_bytes());
            }
        }
        let _ = out.flush();
        if let Some(warning) = &self.warning {
            let _ = writeln!(err, "{warning}");
        }
    }
}

/// The JSON of an issued token: the only place its secret appears.
#[derive(Debug, Serialize)]
pub struct TokenJson {
    pub id: i64,
    pub principal: String,
    pub label: String,
    pub secret: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl TokenJson {
    pub fn new(token: &IssuedToken, expires_at: Option<DateTime<Utc>>) -> Self {
        Self {
            id: token.id.0,
            principal: token.principal.to_string(),
            label: token.label.clone(),
            secret: token.secret().to_owned(),
            expires_at,
        }
    }
}

/// Rows under a header, columns aligned; the last column is not padded. An empty
/// table prints `empty` instead, so that people see the command ran.
/// A name → role map (project members, service accounts, workspace members) as table
/// rows and as a JSON list of `{ <name_field>: name, "role": role }`.
pub fn role_map<R: Serialize + std::fmt::Display>(
    map: &std::collections::BTreeMap<String, R>,
    name_field: &str,
) -> (Vec<Vec<String>>, Vec<Value>) {
    map.iter()
        .map(|(name, role)| {
            let mut item = serde_json::Map::new();
            item.insert(name_field.to_owned(), Value::from(name.as_str()));
            item.insert(
                "role".to_owned(),
                serde_json::to_value(role).unwrap_or_default(),
            );
            (vec![name.clone(), role.to_string()], Value::Object(item))
        })
        .unzip()
}

pub fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("{empty}\n");
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key  value` lines, keys aligned.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let pad = width - k.chars().count();
        let _ = writeln!(out, "{k}{}  {v}", " ".repeat(pad));
    }
    out
}

/// A time for people: UTC, to the second.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// An optional time for people, `-` when absent.
pub fn maybe_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "-".to_owned())
}

/// `s` as one shell word, for lines people paste.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-@:+=,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A description on one table line: line breaks and tabs as spaces, any other control
/// character escaped, so that stored text cannot move the terminal's cursor.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => " ".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// `allowed` or `not allowed`.
pub fn allowed(yes: bool) -> &'static str {
    if yes { "allowed" } else { "not allowed" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("ml-team/cls"), "ml-team/cls");
        assert_eq!(shell_quote("/tmp/a b.db"), "'/tmp/a b.db'");
        assert_eq!(shell_quote("ml-team/bob's"), "'ml-team/bob'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn table_aligns_columns_and_leaves_no_trailing_spaces() {
        let rows = vec![
            vec!["alice".to_owned(), "admin".to_owned()],
            vec!["bob".to_owned(), "".to_owned()],
        ];
        let t = table(&["user", "role"], &rows, "no users");
        assert_eq!(t, "user   role\nalice  admin\nbob\n");
        assert_eq!(table(&["user"], &[], "no users"), "no users\n");
    }

    #[test]
    fn pairs_align_keys() {
        let t = pairs(&[("a", "1".into()), ("long", "2".into())]);
        assert_eq!(t, "a     1\nlong  2\n");
    }
}
