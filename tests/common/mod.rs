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

// ---------------------------------------------------------------------------------
// Backends (SPEC B1): one suite, run on SQLite or on PostgreSQL.

/// The server the PostgreSQL runs use: a URL to a database on it (often `postgres`)
/// whose user may create databases.
pub const ENV_POSTGRES_URL: &str = "TURNSTILE_TEST_POSTGRES_URL";
/// `sqlite` or `postgres`: the backend of the suites' fresh engines. Unset, it is
/// PostgreSQL when [`ENV_POSTGRES_URL`] is set, else SQLite.
pub const ENV_BACKEND: &str = "TURNSTILE_TEST_BACKEND";

/// The backend the suites run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or an in-memory database).
    Sqlite,
    /// A fresh database on the server at this URL.
    Postgres(String),
}

/// The PostgreSQL server of [`ENV_POSTGRES_URL`], when set.
pub fn postgres_url() -> Option<String> {
    std::env::var(ENV_POSTGRES_URL)
        .ok()
        .filter(|u| !u.is_empty())
}

/// The backend of this run (see [`ENV_BACKEND`]). Asking for PostgreSQL without a
/// server fails the test rather than falling back to SQLite.
pub fn backend() -> Backend {
    match std::env::var(ENV_BACKEND).ok().as_deref() {
        Some("sqlite") => Backend::Sqlite,
        Some("postgres") => Backend::Postgres(postgres_url().unwrap_or_else(|| {
            panic!("{ENV_BACKEND}=postgres needs {ENV_POSTGRES_URL} (scripts/pg-throwaway.sh)")
        })),
        Some(other) => panic!("{ENV_BACKEND}={other}: expected sqlite or postgres"),
        None => postgres_url().map_or(Backend::Sqlite, Backend::Postgres),
    }
}

/// Whether this run is on PostgreSQL.
pub fn on_postgres() -> bool {
    matches!(backend(), Backend::Postgres(_))
}

/// For a test that needs PostgreSQL: its server, or `None` after saying in the output
/// that the test was skipped. Under `CI=true` a missing server fails the test.
pub fn require_postgres(test: &str) -> Option<String> {
    if let Some(url) = postgres_url() {
        return Some(url);
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test}: CI=true and {ENV_POSTGRES_URL} is not set: PostgreSQL is required"
    );
    // Straight to the process's stderr, past the test harness's capture, so that the
    // skip shows in every run's output.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {ENV_POSTGRES_URL} is not set (no PostgreSQL server)"
    );
    None
}

/// The URL of database `name` on the server at `server`.
pub fn database_url(server: &str, name: &str) -> String {
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// A database that this test process copies for each fresh one: empty, at the current
/// schema version, so that each test does not pay for the migration. Made once per
/// process; dropped by the next run's clean-up of its server, or with the server.
fn migrated_template(server: &str) -> String {
    static TEMPLATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let name = format!(
                "turnstile_template_{}_{:08x}",
                std::process::id(),
                rand::random::<u32>()
            );
            let mut admin = postgres::Client::connect(server, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to {ENV_POSTGRES_URL} ({server}): {e}"));
            // The templates and databases of test processes that are gone.
            let stale = admin
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'turnstile\\_t%'",
                    &[],
                )
                .expect("list databases");
            for row in stale {
                let old: String = row.get(0);
                let pid = old.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ =
                        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)"));
                }
            }
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("CREATE DATABASE");
            drop(
                turnstile::Engine::open(database_url(server, &name)).expect("migrate the template"),
            );
            name
        })
        .clone()
}

/// A fresh, empty database of the run's backend, removed when dropped: a file in a
/// temporary directory, or a database created on the PostgreSQL server.
pub struct TestDb {
    target: PathBuf,
    dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A new database on the run's backend.
    pub fn fresh() -> Self {
        match backend() {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres(server) => Self::postgres(&server),
        }
    }

    /// A new SQLite file, whatever the run's backend.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self {
            target: dir.path().join("test.db"),
            dir,
            postgres: None,
        }
    }

    /// A new database on the PostgreSQL server at `server`.
    pub fn postgres(server: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "turnstile_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let template = migrated_template(server);
        let mut admin = postgres::Client::connect(server, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {ENV_POSTGRES_URL} ({server}): {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .expect("CREATE DATABASE");
        Self {
            target: PathBuf::from(database_url(server, &name)),
            dir: tempfile::tempdir().expect("a temporary directory"),
            postgres: Some((server.to_owned(), name)),
        }
    }

    /// What `Engine::open` takes: a file path or a `postgres://` URL.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// A temporary directory that lives as long as the database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the database is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Opens an engine on it.
    pub fn open(&self) -> turnstile::Result<turnstile::Engine> {
        turnstile::Engine::open(&self.target)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres
            && let Ok(mut admin) = postgres::Client::connect(server, postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// An engine on a fresh database of the run's backend, which it removes when dropped.
pub struct TestEngine {
    // Dropped first: the engine closes its connections before the database goes.
    engine: turnstile::Engine,
    _db: Option<TestDb>,
}

impl std::ops::Deref for TestEngine {
    type Target = turnstile::Engine;

    fn deref(&self) -> &turnstile::Engine {
        &self.engine
    }
}

/// A fresh engine: in memory on SQLite, a new database on PostgreSQL. What the
/// suites use instead of `Engine::open_in_memory`.
pub fn engine() -> turnstile::Result<TestEngine> {
    match backend() {
        Backend::Sqlite => Ok(TestEngine {
            engine: turnstile::Engine::open_in_memory()?,
            _db: None,
        }),
        Backend::Postgres(server) => {
            let db = TestDb::postgres(&server);
            Ok(TestEngine {
                engine: db.open()?,
                _db: Some(db),
            })
        }
    }
}

/// `?1`-style parameters as PostgreSQL's `$1`.
fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// One value of a query written in SQL that both backends read (`?1` parameters, text
/// only), on the database at `target` (a file path or a `postgres://` URL).
pub fn query_value<T>(target: &Path, sql: &str, params: &[&str]) -> T
where
    T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>,
{
    let text = target.to_string_lossy();
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let mut client = postgres::Client::connect(&text, postgres::NoTls).expect("connect");
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        client
            .query_one(&dollar_params(sql), &params)
            .expect("a query")
            .get(0)
    } else {
        let conn = raw(target);
        conn.query_row(sql, rusqlite::params_from_iter(params), |r| r.get(0))
            .expect("a query")
    }
}
