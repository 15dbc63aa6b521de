//! Fixtures shared by the integration tests. Each test crate includes this module and
//! uses what it needs of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use turnstile::{Principal, ProjectOptions, Visibility};

/// A principal from its name as people type it.
pub fn who(name: &str) -> Principal {
    name.parse().expect("a valid principal name")
}

/// Project options asking for `visibility`.
pub fn with_visibility(visibility: Visibility) -> ProjectOptions {
    ProjectOptions {
        visibility: Some(visibility),
        ..Default::default()
    }
}

/// A plain rusqlite connection to a database file, beside the engine's own, that
/// waits for locks rather than failing.
pub fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("the database opens with rusqlite");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

/// A file or directory made immutable (`chattr +i`), which stops root too; made
/// mutable again when dropped, even when the test fails, so that it can be removed.
pub struct Immutable(PathBuf);

impl Immutable {
    /// Makes `path` immutable, or panics: the tests that need it must not pass
    /// without it.
    pub fn make(path: &Path) -> Self {
        let status = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("chattr runs");
        assert!(status.success(), "chattr +i {}", path.display());
        Self(path.to_owned())
    }

    /// Takes charge of a path the caller made immutable itself.
    pub fn adopt(path: &Path) -> Self {
        Self(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}
