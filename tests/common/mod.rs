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
// Backends (SPEC B1): one suite, run on SQLite and on PostgreSQL in one test binary.

/// The server the PostgreSQL copies of the suites use: a URL to a database on it (often
/// `postgres`) whose user may create databases.
pub const ENV_POSTGRES_URL: &str = "TURNSTILE_TEST_POSTGRES_URL";

/// The backend a test runs on.
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

thread_local! {
    /// The backend of the test running on this thread, set by [`backend_tests!`].
    static BACKEND: std::cell::RefCell<Option<Backend>> = const { std::cell::RefCell::new(None) };
}

/// Sets this thread's backend until dropped (see [`enter`]).
pub struct OnBackend {
    previous: Option<Backend>,
}

impl OnBackend {
    /// Makes `backend` this thread's backend until the guard is dropped: what a thread
    /// that a test spawns calls before it asks for an engine.
    pub fn set(backend: Backend) -> Self {
        let previous = BACKEND.with(|b| b.borrow_mut().replace(backend));
        Self { previous }
    }
}

impl Drop for OnBackend {
    fn drop(&mut self) {
        BACKEND.with(|b| *b.borrow_mut() = self.previous.take());
    }
}

/// Where [`backend_tests!`] starts a test: SQLite always; PostgreSQL when
/// [`ENV_POSTGRES_URL`] is set, else `None` after [`require_postgres`] has said that
/// `test` is skipped (or failed it, under `CI=true`).
pub fn enter(postgres: bool, test: &str) -> Option<OnBackend> {
    if !postgres {
        return Some(OnBackend::set(Backend::Sqlite));
    }
    require_postgres(test).map(|url| OnBackend::set(Backend::Postgres(url)))
}

/// What a skipped test returns: `()` or `Ok(())`.
pub trait Skipped {
    /// The value of a test that did not run.
    fn skipped() -> Self;
}

impl Skipped for () {
    fn skipped() {}
}

impl<E> Skipped for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}

/// The test functions given, once per backend: `mod sqlite { .. }` and
/// `mod postgres { .. }`, so that a test is `rules::sqlite::a6_..` and
/// `rules::postgres::a6_..` and a filter picks a backend (`cargo test -- postgres::`,
/// or `-- --skip postgres::`). Each copy sets its backend for the test's thread
/// ([`backend`], [`engine`], [`TestDb::fresh`] read it); the PostgreSQL copies skip
/// without [`ENV_POSTGRES_URL`] (and fail under `CI=true`, see [`require_postgres`]).
///
/// Write the tests as usual (attributes, `#[test]`, an optional return type such as
/// `-> Result<()>`) between parentheses, so that rustfmt still formats them:
/// `common::backend_tests!( #[test] fn a() -> Result<()> { .. } );`. A test's body
/// runs in a module of the file, with everything of the file in scope (`use super::*`).
/// Threads it spawns have no backend until they call [`OnBackend::set`]; child
/// processes are given a file path or URL ([`TestDb::target`]).
// Used by the backend suites only; the other test crates include this module too.
#[allow(unused_macros)]
macro_rules! backend_tests {
    ($($(#[$meta:meta])* fn $name:ident() $(-> $ret:ty)? $body:block)*) => {
        /// The tests of this file on SQLite.
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $crate::common::backend_tests!(@copies false, $($(#[$meta])* fn $name() $(-> $ret)? $body)*);
        }

        /// The tests of this file on PostgreSQL (`TURNSTILE_TEST_POSTGRES_URL`).
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $crate::common::backend_tests!(@copies true, $($(#[$meta])* fn $name() $(-> $ret)? $body)*);
        }
    };
    (@copies $postgres:expr, $($(#[$meta:meta])* fn $name:ident() $(-> $ret:ty)? $body:block)*) => {
        $(
            $(#[$meta])*
            fn $name() $(-> $ret)? {
                let test = concat!(module_path!(), "::", stringify!($name));
                match $crate::common::enter($postgres, test) {
                    Some(_on_backend) => $body,
                    None => $crate::common::Skipped::skipped(),
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use backend_tests;

/// The backend of the test running on this thread. Outside [`backend_tests!`] (or on a
/// thread the test spawned without [`OnBackend::set`]) there is none, and this panics
/// rather than guess.
pub fn backend() -> Backend {
    BACKEND.with(|b| b.borrow().clone()).unwrap_or_else(|| {
        panic!(
            "no backend on this thread: common::backend() serves the tests of \
             common::backend_tests! on their own thread (spawned threads: OnBackend::set)"
        )
    })
}

/// Whether the test on this thread runs on PostgreSQL.
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

/// A fresh, empty database of the test's backend, removed when dropped: a file in a
/// temporary directory, or a database created on the PostgreSQL server.
pub struct TestDb {
    target: PathBuf,
    dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A new database on the test's backend.
    pub fn fresh() -> Self {
        match backend() {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres(server) => Self::postgres(&server),
        }
    }

    /// A new SQLite file, whatever the test's backend.
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

/// An engine on a fresh database of the test's backend, which it removes when dropped.
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
