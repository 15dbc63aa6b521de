//! The PostgreSQL implementation of [`Repository`] (SPEC B1–B4), and the pool of
//! connections it runs on.
//!
//! Every write is one SERIALIZABLE transaction, run again from the start when
//! PostgreSQL reports a serialization failure (SQLSTATE 40001), a deadlock, or a
//! unique violation that a concurrent transaction caused, a bounded number of times
//! (B2). Correctness rests on serializable isolation and constraints only: no
//! advisory locks, no `SELECT ... FOR UPDATE`, nothing a distributed SQL engine that
//! speaks PostgreSQL's protocol lacks. The check path is one prepared statement
//! outside any explicit transaction; reads take a REPEATABLE READ, READ ONLY
//! snapshot. Each pooled connection keeps its prepared statements.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, GenericClient, IsolationLevel, Row, Statement};

use super::pg_tls::Target;
use super::store::OpenOptions;
use super::*;
use crate::audit::Outcome;
use crate::domain::access::Standing;
use crate::domain::names::fold;
use crate::error::Error;

/// The schema at version [`BASE_VERSION`], applied to a new database, which the
/// [`UPGRADES`] then bring to [`SCHEMA_VERSION`] in the same transaction (B4).
pub(crate) const SCHEMA: &str = include_str!("../../schema_postgres.sql");
/// The version [`SCHEMA`] creates (`schema_postgres.sql`).
const BASE_VERSION: i64 = 3;
/// The schema version this build writes: the row of `turnstile_schema`. Numbered on
/// its own, as SQLite's is (D1); PostgreSQL support began at version 2.
pub(crate) const SCHEMA_VERSION: i64 = 4;
/// `UPGRADES[n - 2]` brings version `n` to `n + 1`.
const UPGRADES: [&str; SCHEMA_VERSION as usize - 2] = [
    // 2 -> 3: the check's covering index, as on SQLite.
    "CREATE INDEX projects_by_name ON projects (workspace_id, name_key) INCLUDE (visibility);",
    // 3 -> 4: every change notified, for the opt-in decision cache (B3).
    include_str!("../../schema_postgres_notify.sql"),
];

/// How many times a write transaction runs before the call fails with `Busy` (B2).
const MAX_ATTEMPTS: u32 = 40;
/// Connections per engine: enough for the threads of one server process.
const POOL_SIZE: u32 = 16;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The prepared statements of a connection, by the address and length of their SQL:
/// every statement is a `&'static str` literal, so its address names it, and the
/// check path does not hash its ~400 bytes of SQL on every call. Two copies of one
/// text at two addresses are merely prepared twice.
type Statements = HashMap<(usize, usize), Statement, foldhash::fast::RandomState>;

fn statement_key(sql: &'static str) -> (usize, usize) {
    (sql.as_ptr() as usize, sql.len())
}

/// A pooled connection with its prepared statements.
pub(crate) struct PgConn {
    client: Client,
    statements: Statements,
}

struct Manager {
    target: Target,
    lock_timeout: Duration,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = Error;

    fn connect(&self) -> Result<PgConn> {
        let mut client = self.target.connect()?;
        // D2 on PostgreSQL: a write waiting for a row lock past the busy timeout
        // fails (55P03), and becomes `Busy`.
        client.batch_execute(&format!(
            "SET lock_timeout = {}",
            self.lock_timeout.as_millis().max(1)
        ))?;
        Ok(PgConn {
            client,
            statements: Statements::default(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<()> {
        conn.client.simple_query("")?;
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

struct Inner {
    pool: r2d2::Pool<Manager>,
    /// What the pool connects to, for connections of other kinds (the listener).
    target: Target,
    busy_timeout: Duration,
    read_only: bool,
}

/// A PostgreSQL database: a pool of connections.
pub(crate) struct PgStore(Arc<Inner>);

/// A [`PgStore`] held by a background thread.
pub(crate) struct WeakPg(Weak<Inner>);

impl PgStore {
    /// Connects, brings the schema up to date (B4) and starts the pool.
    pub(crate) fn open(url: &str, options: OpenOptions) -> Result<Self> {
        let target = Target::parse(url)?;
        let mut client = target.connect()?;
        if options.read_only {
            let found = schema_version(&mut client)?;
            refuse_newer(found)?;
            if found < SCHEMA_VERSION {
                return Err(Error::SchemaNeedsUpgrade {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        } else {
            migrate(&mut client)?;
        }
        drop(client);
        let manager = Manager {
            target: target.clone(),
            lock_timeout: options.busy_timeout,
        };
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(options.busy_timeout.max(Duration::from_millis(1)))
            .build_unchecked(manager);
        Ok(Self(Arc::new(Inner {
            pool,
            target,
            busy_timeout: options.busy_timeout,
            read_only: options.read_only,
        })))
    }

    pub(crate) fn weak(&self) -> WeakPg {
        WeakPg(Arc::downgrade(&self.0))
    }

    pub(crate) fn write<T>(&self, f: impl FnMut(&dyn Repository) -> Result<T>) -> Result<T> {
        self.0.write(f)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn Repository) -> Result<T>) -> Result<T> {
        let mut conn = self.0.get()?;
        let PgConn { client, statements } = &mut *conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let out = f(&PgRepo::new(&mut tx, statements))?;
        tx.commit()?;
        Ok(out)
    }

    pub(crate) fn read_latest<T>(&self, f: impl FnOnce(&dyn Repository) -> Result<T>) -> Result<T> {
        let mut conn = self.0.get()?;
        let PgConn { client, statements } = &mut *conn;
        f(&PgRepo::new(client, statements))
    }

    /// A listener for the decision cache, on a connection of its own (B3).
    pub(crate) fn listener(&self, bound: Duration) -> Result<super::pg_listen::Listener> {
        let target = self.0.target.adjusted(|config| {
            // Named, so that an operator can tell it in `pg_stat_activity`.
            config.application_name("turnstile-listen");
            // A connection that died without a word (a half-open TCP connection) is
            // found out by the kernel within seconds, and the listener reconnects.
            config
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(5))
                .keepalives_interval(Duration::from_secs(1))
                .keepalives_retries(3)
                .tcp_user_timeout(super::pg_listen::reconnect_after(bound));
        });
        Ok(super::pg_listen::Listener::start(bound, move || {
            target.connect()
        })?)
    }

    /// Whether the server answers: the HTTP server's readiness probe (H9).
    #[cfg(feature = "server")]
    pub(crate) fn ping(&self) -> Result<()> {
        let mut conn = self.0.get()?;
        conn.client.simple_query("SELECT 1")?;
        Ok(())
    }
}

impl WeakPg {
    pub(crate) fn write<T>(&self, f: impl FnMut(&dyn Repository) -> Result<T>) -> Result<T> {
        let inner = self
            .0
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the database was closed"))?;
        inner.write(f)
    }
}

impl Inner {
    fn get(&self) -> Result<r2d2::PooledConnection<Manager>> {
        let started = Instant::now();
        self.pool.get().map_err(|e| {
            if started.elapsed() >= self.busy_timeout {
                Error::Busy {
                    waited: started.elapsed(),
                }
            } else {
                std::io::Error::other(format!("cannot connect to PostgreSQL: {e}")).into()
            }
        })
    }

    /// One SERIALIZABLE transaction running `f`, retried on a serialization failure
    /// (B2). Past [`MAX_ATTEMPTS`] or the busy timeout, `Busy`.
    fn write<T>(&self, mut f: impl FnMut(&dyn Repository) -> Result<T>) -> Result<T> {
        if self.read_only {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the database was opened read-only",
            )
            .into());
        }
        let started = Instant::now();
        let mut conn = self.get()?;
        let mut attempt = 0;
        let mut unique_violations = 0;
        loop {
            attempt += 1;
            let result = {
                let PgConn { client, statements } = &mut *conn;
                attempt_write(client, statements, &mut f)
            };
            match result {
                Err(e) if is_lock_timeout(&e) => {
                    return Err(Error::Busy {
                        waited: started.elapsed(),
                    });
                }
                // A unique violation that a fresh attempt's own checks do not turn
                // into its domain error is no race: after a few tries it is the
                // storage error it is, as on SQLite, not `Busy`.
                Err(e) if is_unique_violation(&e) && unique_violations >= MAX_UNIQUE_RETRIES => {
                    return Err(e);
                }
                Err(e) if is_retryable(&e) => {
                    if is_unique_violation(&e) {
                        unique_violations += 1;
                    }
                    if attempt >= MAX_ATTEMPTS || started.elapsed() >= self.busy_timeout {
                        return Err(Error::Busy {
                            waited: started.elapsed(),
                        });
                    }
                    std::thread::sleep(backoff(attempt));
                }
                other => return other,
            }
        }
    }
}

fn attempt_write<T>(
    client: &mut Client,
    statements: &mut Statements,
    f: &mut impl FnMut(&dyn Repository) -> Result<T>,
) -> Result<T> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()?;
    // An early `?` drops the transaction, which rolls back (E3).
    let out = f(&PgRepo::new(&mut tx, statements))?;
    tx.commit()?;
    Ok(out)
}

/// A random wait that grows with the attempt, so that transactions which collided
/// do not collide again in step: 1 ms to 2^attempt ms, at most 100 ms.
fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let cap = (1u64 << attempt.min(7)).min(100);
    Duration::from_micros(rand::rng().random_range(500..=cap * 1000))
}

fn sql_state(e: &Error) -> Option<&SqlState> {
    match e {
        Error::Storage(crate::error::StorageError(crate::error::StorageCause::Postgres(e))) => {
            e.code()
        }
        _ => None,
    }
}

/// A failure that running the transaction again may not meet: a serialization
/// failure, a deadlock, or a unique violation raised by a concurrent insert of the
/// same key (which the transaction's own check, run again, reports as the domain
/// error it is).
fn is_retryable(e: &Error) -> bool {
    sql_state(e).is_some_and(|s| {
        *s == SqlState::T_R_SERIALIZATION_FAILURE
            || *s == SqlState::T_R_DEADLOCK_DETECTED
            || *s == SqlState::UNIQUE_VIOLATION
    })
}

/// How often a transaction is run again after a unique violation: enough for a
/// concurrent insert of the same key to become visible to the transaction's checks.
const MAX_UNIQUE_RETRIES: u32 = 3;

fn is_unique_violation(e: &Error) -> bool {
    sql_state(e).is_some_and(|s| *s == SqlState::UNIQUE_VIOLATION)
}

fn is_lock_timeout(e: &Error) -> bool {
    sql_state(e).is_some_and(|s| *s == SqlState::LOCK_NOT_AVAILABLE)
}

/// The schema version of the database: 0 when turnstile has not set it up.
fn schema_version(client: &mut Client) -> Result<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass('turnstile_schema') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let row = client.query_opt("SELECT max(version) FROM turnstile_schema", &[])?;
    let version: Option<i32> = match row {
        Some(r) => r.try_get(0)?,
        None => None,
    };
    Ok(version.map_or(0, i64::from))
}

fn refuse_newer(found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction (B4); a newer schema
/// is refused and left untouched. Another process may be migrating at the same time:
/// a transaction that loses the race fails, and the version is read again.
fn migrate(client: &mut Client) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        let found = schema_version(client)?;
        refuse_newer(found)?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let result = (|| -> Result<()> {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .start()?;
            let mut version = schema_version_in(&mut tx)?;
            refuse_newer(version)?;
            if version == 0 {
                tx.batch_execute(SCHEMA)?;
                version = BASE_VERSION;
            }
            while version < SCHEMA_VERSION {
                let step = usize::try_from(version - 2)
                    .ok()
                    .and_then(|v| UPGRADES.get(v))
                    .ok_or_else(|| {
                        std::io::Error::other(format!(
                            "no migration from PostgreSQL schema version {version}"
                        ))
                    })?;
                tx.batch_execute(step)?;
                version += 1;
                tx.execute(
                    "UPDATE turnstile_schema SET version = $1",
                    &[&i32::try_from(version).unwrap_or(i32::MAX)],
                )?;
            }
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => return Ok(()),
            // Another process created the schema first: look again.
            Err(e) if sql_state(&e).is_some() && schema_version(client)? != found => continue,
            Err(e) if is_retryable(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(
        std::io::Error::other("cannot migrate the PostgreSQL schema: too many concurrent attempts")
            .into(),
    )
}

fn schema_version_in(tx: &mut ::postgres::Transaction<'_>) -> Result<i64> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('turnstile_schema') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> = tx
        .query_one("SELECT max(version) FROM turnstile_schema", &[])?
        .try_get(0)?;
    Ok(version.map_or(0, i64::from))
}

// Enumerations are stored as small integers (see schema_postgres.sql).

fn bad_value(what: &str, n: i32) -> Error {
    std::io::Error::other(format!("stored {what} {n} is out of range")).into()
}

fn project_role(n: i32) -> Result<ProjectRole> {
    match n {
        1 => Ok(ProjectRole::Viewer),
        2 => Ok(ProjectRole::Contributor),
        3 => Ok(ProjectRole::Owner),
        n => Err(bad_value("project role", n)),
    }
}

fn project_role_int(r: ProjectRole) -> i32 {
    match r {
        ProjectRole::Viewer => 1,
        ProjectRole::Contributor => 2,
        ProjectRole::Owner => 3,
    }
}

fn workspace_role(n: i32) -> Result<WorkspaceRole> {
    match n {
        1 => Ok(WorkspaceRole::Member),
        2 => Ok(WorkspaceRole::Admin),
        n => Err(bad_value("workspace role", n)),
    }
}

fn workspace_role_int(r: WorkspaceRole) -> i32 {
    match r {
        WorkspaceRole::Member => 1,
        WorkspaceRole::Admin => 2,
    }
}

fn visibility(n: i32) -> Result<Visibility> {
    match n {
        0 => Ok(Visibility::Private),
        1 => Ok(Visibility::Workspace),
        2 => Ok(Visibility::Public),
        n => Err(bad_value("visibility", n)),
    }
}

fn visibility_int(v: Visibility) -> i32 {
    match v {
        Visibility::Private => 0,
        Visibility::Workspace => 1,
        Visibility::Public => 2,
    }
}

fn opt_project_role(n: Option<i32>) -> Result<Option<ProjectRole>> {
    n.map(project_role).transpose()
}

fn opt_workspace_role(n: Option<i32>) -> Result<Option<WorkspaceRole>> {
    n.map(workspace_role).transpose()
}

/// A column of a row, never a panic on a surprising type (E4).
fn get<'a, T: ::postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    Ok(row.try_get(i)?)
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn sql_limit(limit: Option<usize>) -> Option<i64> {
    limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn owner_params(owner: TokenOwner) -> (Option<i64>, Option<i64>) {
    match owner {
        TokenOwner::User(u) => (Some(u.0), None),
        TokenOwner::ServiceAccount(s) => (None, Some(s.0)),
    }
}

/// Rows per statement of a bulk insert.
const BULK_ROWS: usize = 10_000;

/// [`Repository`] over one PostgreSQL connection, inside the transaction its caller
/// opened, or (for the check path) on the connection itself.
pub(crate) struct PgRepo<'a, C: GenericClient> {
    conn: RefCell<&'a mut C>,
    statements: RefCell<&'a mut Statements>,
}

impl<'a, C: GenericClient> PgRepo<'a, C> {
    fn new(conn: &'a mut C, statements: &'a mut Statements) -> Self {
        Self {
            conn: RefCell::new(conn),
            statements: RefCell::new(statements),
        }
    }

    fn statement(&self, sql: &'static str) -> Result<Statement> {
        let key = statement_key(sql);
        if let Some(s) = self.statements.borrow().get(&key) {
            return Ok(s.clone());
        }
        let s = self.conn.borrow_mut().prepare(sql)?;
        self.statements.borrow_mut().insert(key, s.clone());
        Ok(s)
    }

    fn rows(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        let s = self.statement(sql)?;
        Ok(self.conn.borrow_mut().query(&s, params)?)
    }

    fn row(&self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>> {
        let s = self.statement(sql)?;
        Ok(self.conn.borrow_mut().query_opt(&s, params)?)
    }

    fn one(&self, sql: &'static str, params: Params<'_>) -> Result<Row> {
        let s = self.statement(sql)?;
        Ok(self.conn.borrow_mut().query_one(&s, params)?)
    }

    fn exec(&self, sql: &'static str, params: Params<'_>) -> Result<u64> {
        let s = self.statement(sql)?;
        Ok(self.conn.borrow_mut().execute(&s, params)?)
    }

    fn count(&self, sql: &'static str, params: Params<'_>) -> Result<u32> {
        Ok(count(get(&self.one(sql, params)?, 0)?))
    }

    fn workspace_row(r: &Row) -> Result<WorkspaceRecord> {
        let limit: i32 = get(r, 3)?;
        Ok(WorkspaceRecord {
            id: WorkspaceId(get(r, 0)?),
            name: WorkspaceName::from_stored(get(r, 1)?),
            allow_public_projects: get(r, 2)?,
            service_account_limit: u32::try_from(limit).unwrap_or(0),
        })
    }

    fn project_row(r: &Row) -> Result<ProjectRecord> {
        Ok(ProjectRecord {
            id: ProjectId(get(r, 0)?),
            workspace_id: WorkspaceId(get(r, 1)?),
            name: ProjectName::from_stored(get(r, 2)?),
            key: ProjectKey::from_stored(get(r, 3)?),
            visibility: visibility(get(r, 4)?)?,
            description: get(r, 5)?,
        })
    }

    fn service_account_row(r: &Row) -> Result<ServiceAccountRecord> {
        Ok(ServiceAccountRecord {
            id: ServiceAccountId(get(r, 0)?),
            workspace_id: WorkspaceId(get(r, 1)?),
            name: ServiceAccountName::from_stored(get(r, 2)?),
            active: get(r, 3)?,
        })
    }

    fn token_row(r: &Row) -> Result<TokenRecord> {
        let user: Option<i64> = get(r, 1)?;
        let sa: Option<i64> = get(r, 2)?;
        let owner = match (user, sa) {
            (Some(u), _) => TokenOwner::User(UserId(u)),
            (None, Some(s)) => TokenOwner::ServiceAccount(ServiceAccountId(s)),
            (None, None) => return Err(std::io::Error::other("a token without an owner").into()),
        };
        Ok(TokenRecord {
            id: TokenId(get(r, 0)?),
            owner,
            label: get(r, 3)?,
            created_at: get(r, 4)?,
            expires_at: get(r, 5)?,
            last_used_at: get(r, 6)?,
            revoked_at: get(r, 7)?,
        })
    }

    fn token_lookup(row: Option<Row>) -> Result<Option<TokenLookup>> {
        let Some(r) = row else { return Ok(None) };
        let token = Self::token_row(&r)?;
        let (principal, principal_active) = match token.owner {
            TokenOwner::User(_) => (Principal::User(Username::from_stored(get(&r, 8)?)), true),
            TokenOwner::ServiceAccount(_) => (
                Principal::ServiceAccount(ServiceAccountFullName {
                    name: ServiceAccountName::from_stored(get(&r, 9)?),
                    workspace: WorkspaceName::from_stored(get(&r, 10)?),
                }),
                get(&r, 11)?,
            ),
        };
        Ok(Some(TokenLookup {
            token,
            principal,
            principal_active,
        }))
    }

    fn listed(
        r: &Row,
        ws: &ListingWorkspace,
        visibility_: Option<Visibility>,
    ) -> Result<ListedProject> {
        Ok(ListedProject {
            qualified: qualified_name(&ws.name, get::<&str>(r, 0)?),
            name_key: get(r, 1)?,
            visibility: match visibility_ {
                Some(v) => v,
                None => visibility(get(r, 2)?)?,
            },
            grant: if visibility_.is_some() {
                None
            } else {
                opt_project_role(get(r, 3)?)?
            },
        })
    }
}

macro_rules! token_lookup_sql {
    ($filter:literal) => {
        concat!(
            "SELECT t.id, t.user_id, t.service_account_id, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at,
                    u.name, s.name, sw.name, s.active
             FROM tokens t
             LEFT JOIN users u ON u.id = t.user_id
             LEFT JOIN service_accounts s ON s.id = t.service_account_id
             LEFT JOIN workspaces sw ON sw.id = s.workspace_id
             WHERE ",
            $filter
        )
    };
}

impl<C: GenericClient> Repository for PgRepo<'_, C> {
    fn user(&self, name: &Username) -> Result<Option<UserRecord>> {
        self.row(
            "SELECT id, name FROM users WHERE name_key = $1",
            &[&name.key()],
        )?
        .map(|r| {
            Ok(UserRecord {
                id: UserId(get(&r, 0)?),
                name: Username::from_stored(get(&r, 1)?),
            })
        })
        .transpose()
    }

    fn insert_user(&self, name: &Username, now: i64) -> Result<UserId> {
        let r = self.one(
            "INSERT INTO users (name, name_key, created_at) VALUES ($1, $2, $3) RETURNING id",
            &[&name.as_str(), &name.key(), &now],
        )?;
        Ok(UserId(get(&r, 0)?))
    }

    fn workspace(&self, name: &WorkspaceName) -> Result<Option<WorkspaceRecord>> {
        self.row(
            "SELECT id, name, allow_public_projects, service_account_limit
             FROM workspaces WHERE name = $1",
            &[&name.as_str()],
        )?
        .map(|r| Self::workspace_row(&r))
        .transpose()
    }

    fn insert_workspace(&self, name: &WorkspaceName, now: i64) -> Result<WorkspaceId> {
        let r = self.one(
            "INSERT INTO workspaces (name, created_at) VALUES ($1, $2) RETURNING id",
            &[&name.as_str(), &now],
        )?;
        Ok(WorkspaceId(get(&r, 0)?))
    }

    fn update_workspace_settings(
        &self,
        ws: WorkspaceId,
        allow_public: bool,
        limit: u32,
    ) -> Result<()> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        self.exec(
            "UPDATE workspaces SET allow_public_projects = $2, service_account_limit = $3
             WHERE id = $1",
            &[&ws.0, &allow_public, &limit],
        )?;
        Ok(())
    }

    fn workspace_counts(&self, ws: WorkspaceId) -> Result<WorkspaceCounts> {
        let r = self.one(
            "SELECT
               (SELECT count(*) FROM workspace_members WHERE workspace_id = $1 AND role = 2),
               (SELECT count(*) FROM workspace_members WHERE workspace_id = $1 AND role = 1),
               (SELECT count(*) FROM projects WHERE workspace_id = $1),
               (SELECT count(*) FROM service_accounts WHERE workspace_id = $1 AND active),
               (SELECT count(*) FROM service_accounts WHERE workspace_id = $1 AND NOT active)",
            &[&ws.0],
        )?;
        Ok(WorkspaceCounts {
            admins: count(get(&r, 0)?),
            members: count(get(&r, 1)?),
            projects: count(get(&r, 2)?),
            active_service_accounts: count(get(&r, 3)?),
            deactivated_service_accounts: count(get(&r, 4)?),
        })
    }

    fn workspace_role(&self, ws: WorkspaceId, user: UserId) -> Result<Option<WorkspaceRole>> {
        self.row(
            "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            &[&ws.0, &user.0],
        )?
        .map(|r| workspace_role(get(&r, 0)?))
        .transpose()
    }

    fn put_workspace_member(
        &self,
        ws: WorkspaceId,
        user: UserId,
        role: WorkspaceRole,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
            &[&ws.0, &user.0, &workspace_role_int(role)],
        )?;
        Ok(())
    }

    fn delete_workspace_member(&self, ws: WorkspaceId, user: UserId) -> Result<usize> {
        let grants = self.exec(
            "DELETE FROM user_grants WHERE user_id = $2
             AND project_id IN (SELECT id FROM projects WHERE workspace_id = $1)",
            &[&ws.0, &user.0],
        )?;
        self.exec(
            "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            &[&ws.0, &user.0],
        )?;
        Ok(usize::try_from(grants).unwrap_or(usize::MAX))
    }

    fn workspace_members(&self, ws: WorkspaceId) -> Result<Vec<(Username, WorkspaceRole)>> {
        self.rows(
            "SELECT u.name, m.role FROM workspace_members m JOIN users u ON u.id = m.user_id
             WHERE m.workspace_id = $1 ORDER BY u.name_key",
            &[&ws.0],
        )?
        .iter()
        .map(|r| {
            Ok((
                Username::from_stored(get(r, 0)?),
                workspace_role(get(r, 1)?)?,
            ))
        })
        .collect()
    }

    fn count_workspace_role(&self, ws: WorkspaceId, role: WorkspaceRole) -> Result<u32> {
        self.count(
            "SELECT count(*) FROM workspace_members WHERE workspace_id = $1 AND role = $2",
            &[&ws.0, &workspace_role_int(role)],
        )
    }

    fn service_account(
        &self,
        ws: WorkspaceId,
        name: &ServiceAccountName,
    ) -> Result<Option<ServiceAccountRecord>> {
        self.row(
            "SELECT id, workspace_id, name, active FROM service_accounts
             WHERE workspace_id = $1 AND name_key = $2",
            &[&ws.0, &name.key()],
        )?
        .map(|r| Self::service_account_row(&r))
        .transpose()
    }

    fn insert_service_account(
        &self,
        ws: WorkspaceId,
        name: &ServiceAccountName,
        active: bool,
        now: i64,
    ) -> Result<ServiceAccountId> {
        let r = self.one(
            "INSERT INTO service_accounts (workspace_id, name, name_key, active, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&ws.0, &name.as_str(), &name.key(), &active, &now],
        )?;
        Ok(ServiceAccountId(get(&r, 0)?))
    }

    fn set_service_account_active(&self, sa: ServiceAccountId, active: bool) -> Result<()> {
        self.exec(
            "UPDATE service_accounts SET active = $2 WHERE id = $1",
            &[&sa.0, &active],
        )?;
        Ok(())
    }

    fn count_active_service_accounts(&self, ws: WorkspaceId) -> Result<u32> {
        self.count(
            "SELECT count(*) FROM service_accounts WHERE workspace_id = $1 AND active",
            &[&ws.0],
        )
    }

    fn service_accounts(&self, ws: WorkspaceId) -> Result<Vec<(ServiceAccountName, bool)>> {
        self.rows(
            "SELECT name, active FROM service_accounts WHERE workspace_id = $1 ORDER BY name_key",
            &[&ws.0],
        )?
        .iter()
        .map(|r| Ok((ServiceAccountName::from_stored(get(r, 0)?), get(r, 1)?)))
        .collect()
    }

    fn project(&self, ws: WorkspaceId, name: &ProjectName) -> Result<Option<ProjectRecord>> {
        self.row(
            "SELECT id, workspace_id, name, key, visibility, description FROM projects
             WHERE workspace_id = $1 AND name_key = $2",
            &[&ws.0, &name.key()],
        )?
        .map(|r| Self::project_row(&r))
        .transpose()
    }

    fn confusable_project(&self, ws: WorkspaceId, skeleton: &str) -> Result<Option<ProjectName>> {
        self.row(
            "SELECT name FROM projects WHERE workspace_id = $1 AND name_skeleton = $2 LIMIT 1",
            &[&ws.0, &skeleton],
        )?
        .map(|r| Ok(ProjectName::from_stored(get(&r, 0)?)))
        .transpose()
    }

    fn project_keys(&self, ws: WorkspaceId, prefix: &str) -> Result<HashSet<String>> {
        self.rows(
            "SELECT key FROM projects WHERE workspace_id = $1 AND key >= $2 AND key < $2 || '~'",
            &[&ws.0, &prefix],
        )?
        .iter()
        .map(|r| get(r, 0))
        .collect()
    }

    fn project_key_taken(&self, ws: WorkspaceId, key: &ProjectKey) -> Result<bool> {
        Ok(self
            .row(
                "SELECT 1 FROM projects WHERE workspace_id = $1 AND key = $2",
                &[&ws.0, &key.as_str()],
            )?
            .is_some())
    }

    fn insert_project(&self, p: &NewProject<'_>, now: i64) -> Result<ProjectId> {
        let r = self.one(
            "INSERT INTO projects (workspace_id, name, name_key, key, visibility, description, created_at, name_skeleton)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &p.workspace_id.0,
                &p.name.as_str(),
                &p.name.key(),
                &p.key.as_str(),
                &visibility_int(p.visibility),
                &p.description.as_str(),
                &now,
                &p.name.skeleton(),
            ],
        )?;
        Ok(ProjectId(get(&r, 0)?))
    }

    fn insert_projects(&self, projects: &[NewProject<'_>], now: i64) -> Result<Vec<ProjectId>> {
        let mut ids = Vec::with_capacity(projects.len());
        for chunk in projects.chunks(BULK_ROWS) {
            let ws: Vec<i64> = chunk.iter().map(|p| p.workspace_id.0).collect();
            let names: Vec<&str> = chunk.iter().map(|p| p.name.as_str()).collect();
            let keys_: Vec<&str> = chunk.iter().map(|p| p.name.key()).collect();
            let keys: Vec<&str> = chunk.iter().map(|p| p.key.as_str()).collect();
            let vis: Vec<i32> = chunk.iter().map(|p| visibility_int(p.visibility)).collect();
            let descriptions: Vec<&str> = chunk.iter().map(|p| p.description.as_str()).collect();
            let skeletons: Vec<&str> = chunk.iter().map(|p| p.name.skeleton()).collect();
            // The ids come back with their row numbers: RETURNING promises no order.
            let rows = self.rows(
                "WITH new AS (
                    INSERT INTO projects (workspace_id, name, name_key, key, visibility, description, created_at, name_skeleton)
                    SELECT w, n, nk, k, v, d, $7, s
                    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $8::text[])
                         AS t(w, n, nk, k, v, d, s)
                    RETURNING id, workspace_id, name_key)
                 SELECT new.id, o.i FROM new
                 JOIN unnest($1::bigint[], $3::text[]) WITH ORDINALITY AS o(w, nk, i)
                   ON o.w = new.workspace_id AND o.nk = new.name_key
                 ORDER BY o.i",
                &[
                    &ws,
                    &names,
                    &keys_,
                    &keys,
                    &vis,
                    &descriptions,
                    &now,
                    &skeletons,
                ],
            )?;
            if rows.len() != chunk.len() {
                return Err(
                    std::io::Error::other("bulk insert returned the wrong number of rows").into(),
                );
            }
            for r in &rows {
                ids.push(ProjectId(get(r, 0)?));
            }
        }
        Ok(ids)
    }

    fn insert_user_grants(&self, grants: &[(ProjectId, UserId, ProjectRole)]) -> Result<()> {
        for chunk in grants.chunks(BULK_ROWS) {
            let p: Vec<i64> = chunk.iter().map(|g| g.0.0).collect();
            let u: Vec<i64> = chunk.iter().map(|g| g.1.0).collect();
            let r: Vec<i32> = chunk.iter().map(|g| project_role_int(g.2)).collect();
            self.exec(
                "INSERT INTO user_grants (project_id, user_id, role)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[])",
                &[&p, &u, &r],
            )?;
        }
        Ok(())
    }

    fn insert_service_account_grants(
        &self,
        grants: &[(ProjectId, ServiceAccountId, ProjectRole)],
    ) -> Result<()> {
        for chunk in grants.chunks(BULK_ROWS) {
            let p: Vec<i64> = chunk.iter().map(|g| g.0.0).collect();
            let s: Vec<i64> = chunk.iter().map(|g| g.1.0).collect();
            let r: Vec<i32> = chunk.iter().map(|g| project_role_int(g.2)).collect();
            self.exec(
                "INSERT INTO service_account_grants (project_id, service_account_id, role)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[])",
                &[&p, &s, &r],
            )?;
        }
        Ok(())
    }

    fn delete_project(&self, project: ProjectId) -> Result<()> {
        self.exec("DELETE FROM projects WHERE id = $1", &[&project.0])?;
        Ok(())
    }

    fn set_project_visibility(&self, project: ProjectId, v: Visibility) -> Result<()> {
        self.exec(
            "UPDATE projects SET visibility = $2 WHERE id = $1",
            &[&project.0, &visibility_int(v)],
        )?;
        Ok(())
    }

    fn set_project_description(
        &self,
        project: ProjectId,
        description: &ProjectDescription,
    ) -> Result<()> {
        self.exec(
            "UPDATE projects SET description = $2 WHERE id = $1",
            &[&project.0, &description.as_str()],
        )?;
        Ok(())
    }

    fn users(&self) -> Result<Vec<Username>> {
        self.rows("SELECT name FROM users ORDER BY name_key", &[])?
            .iter()
            .map(|r| Ok(Username::from_stored(get(r, 0)?)))
            .collect()
    }

    fn workspaces(&self) -> Result<Vec<WorkspaceRecord>> {
        self.rows(
            "SELECT id, name, allow_public_projects, service_account_limit FROM workspaces ORDER BY name",
            &[],
        )?
        .iter()
        .map(Self::workspace_row)
        .collect()
    }

    fn projects(&self, ws: WorkspaceId) -> Result<Vec<ProjectRecord>> {
        self.rows(
            "SELECT id, workspace_id, name, key, visibility, description FROM projects
             WHERE workspace_id = $1 ORDER BY name_key",
            &[&ws.0],
        )?
        .iter()
        .map(Self::project_row)
        .collect()
    }

    fn user_grants_in_workspace(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(ProjectId, Username, ProjectRole)>> {
        self.rows(
            "SELECT g.project_id, u.name, g.role FROM user_grants g
             JOIN projects p ON p.id = g.project_id JOIN users u ON u.id = g.user_id
             WHERE p.workspace_id = $1",
            &[&ws.0],
        )?
        .iter()
        .map(|r| {
            Ok((
                ProjectId(get(r, 0)?),
                Username::from_stored(get(r, 1)?),
                project_role(get(r, 2)?)?,
            ))
        })
        .collect()
    }

    fn service_account_grants_in_workspace(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(ProjectId, ServiceAccountName, ProjectRole)>> {
        self.rows(
            "SELECT g.project_id, s.name, g.role FROM service_account_grants g
             JOIN projects p ON p.id = g.project_id
             JOIN service_accounts s ON s.id = g.service_account_id
             WHERE p.workspace_id = $1",
            &[&ws.0],
        )?
        .iter()
        .map(|r| {
            Ok((
                ProjectId(get(r, 0)?),
                ServiceAccountName::from_stored(get(r, 1)?),
                project_role(get(r, 2)?)?,
            ))
        })
        .collect()
    }

    fn project_ids(&self, ws: WorkspaceId) -> Result<Vec<ProjectId>> {
        self.rows(
            "SELECT id FROM projects WHERE workspace_id = $1 ORDER BY id",
            &[&ws.0],
        )?
        .iter()
        .map(|r| Ok(ProjectId(get(r, 0)?)))
        .collect()
    }

    fn user_grant(&self, project: ProjectId, user: UserId) -> Result<Option<ProjectRole>> {
        self.row(
            "SELECT role FROM user_grants WHERE project_id = $1 AND user_id = $2",
            &[&project.0, &user.0],
        )?
        .map(|r| project_role(get(&r, 0)?))
        .transpose()
    }

    fn put_user_grant(&self, project: ProjectId, user: UserId, role: ProjectRole) -> Result<()> {
        self.exec(
            "INSERT INTO user_grants (project_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
            &[&project.0, &user.0, &project_role_int(role)],
        )?;
        Ok(())
    }

    fn delete_user_grant(&self, project: ProjectId, user: UserId) -> Result<bool> {
        Ok(self.exec(
            "DELETE FROM user_grants WHERE project_id = $1 AND user_id = $2",
            &[&project.0, &user.0],
        )? > 0)
    }

    fn project_users(&self, project: ProjectId, with_members: bool) -> Result<Vec<ProjectUserRow>> {
        self.rows(
            "WITH p AS (SELECT id, workspace_id FROM projects WHERE id = $1),
                  listed(user_id) AS (
                    SELECT user_id FROM user_grants WHERE project_id = $1
                    UNION
                    SELECT m.user_id FROM workspace_members m, p
                    WHERE $2 AND m.workspace_id = p.workspace_id)
             SELECT u.name, m.role, g.role
             FROM listed l
             JOIN users u ON u.id = l.user_id
             CROSS JOIN p
             LEFT JOIN workspace_members m ON m.workspace_id = p.workspace_id AND m.user_id = u.id
             LEFT JOIN user_grants g ON g.project_id = p.id AND g.user_id = u.id
             ORDER BY u.name_key",
            &[&project.0, &with_members],
        )?
        .iter()
        .map(|r| {
            Ok(ProjectUserRow {
                name: Username::from_stored(get(r, 0)?),
                workspace_role: opt_workspace_role(get(r, 1)?)?,
                grant: opt_project_role(get(r, 2)?)?,
            })
        })
        .collect()
    }

    fn service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
    ) -> Result<Option<ProjectRole>> {
        self.row(
            "SELECT role FROM service_account_grants WHERE project_id = $1 AND service_account_id = $2",
            &[&project.0, &sa.0],
        )?
        .map(|r| project_role(get(&r, 0)?))
        .transpose()
    }

    fn put_service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
        role: ProjectRole,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO service_account_grants (project_id, service_account_id, role)
             VALUES ($1, $2, $3)
             ON CONFLICT (project_id, service_account_id) DO UPDATE SET role = excluded.role",
            &[&project.0, &sa.0, &project_role_int(role)],
        )?;
        Ok(())
    }

    fn delete_service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
    ) -> Result<bool> {
        Ok(self.exec(
            "DELETE FROM service_account_grants WHERE project_id = $1 AND service_account_id = $2",
            &[&project.0, &sa.0],
        )? > 0)
    }

    fn project_service_accounts(
        &self,
        project: ProjectId,
    ) -> Result<Vec<(ServiceAccountName, bool, ProjectRole)>> {
        self.rows(
            "SELECT s.name, s.active, g.role
             FROM service_account_grants g JOIN service_accounts s ON s.id = g.service_account_id
             WHERE g.project_id = $1 ORDER BY s.name_key",
            &[&project.0],
        )?
        .iter()
        .map(|r| {
            Ok((
                ServiceAccountName::from_stored(get(r, 0)?),
                get(r, 1)?,
                project_role(get(r, 2)?)?,
            ))
        })
        .collect()
    }

    fn project_facts(
        &self,
        principal: Option<&Principal>,
        workspace: &WorkspaceName,
        project_key: &str,
    ) -> Result<Option<ProjectFacts>> {
        // One statement from names to facts: the check path (WORKLOAD.md).
        match principal {
            None => self
                .row(
                    "SELECT p.visibility FROM workspaces w
                     JOIN projects p ON p.workspace_id = w.id AND p.name_key = $2
                     WHERE w.name = $1",
                    &[&workspace.as_str(), &project_key],
                )?
                .map(|r| {
                    Ok(ProjectFacts {
                        visibility: visibility(get(&r, 0)?)?,
                        standing: Some(Standing::Anonymous),
                        principal_id: None,
                    })
                })
                .transpose(),
            Some(Principal::User(user)) => self
                .row(
                    "SELECT p.visibility, u.id, m.role, g.role
                     FROM workspaces w
                     JOIN projects p ON p.workspace_id = w.id AND p.name_key = $2
                     LEFT JOIN users u ON u.name_key = $3
                     LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = u.id
                     LEFT JOIN user_grants g ON g.project_id = p.id AND g.user_id = u.id
                     WHERE w.name = $1",
                    &[&workspace.as_str(), &project_key, &user.key()],
                )?
                .map(|r| {
                    let principal_id = get::<Option<i64>>(&r, 1)?;
                    let exists = principal_id.is_some();
                    Ok(ProjectFacts {
                        visibility: visibility(get(&r, 0)?)?,
                        standing: if exists {
                            Some(Standing::User {
                                workspace_role: opt_workspace_role(get(&r, 2)?)?,
                                grant: opt_project_role(get(&r, 3)?)?,
                            })
                        } else {
                            None
                        },
                        principal_id,
                    })
                })
                .transpose(),
            Some(Principal::ServiceAccount(sa)) => self
                .row(
                    "SELECT p.visibility, s.id, s.active, s.workspace_id = w.id, g.role
                     FROM workspaces w
                     JOIN projects p ON p.workspace_id = w.id AND p.name_key = $2
                     LEFT JOIN workspaces sw ON sw.name = $3
                     LEFT JOIN service_accounts s ON s.workspace_id = sw.id AND s.name_key = $4
                     LEFT JOIN service_account_grants g
                            ON g.project_id = p.id AND g.service_account_id = s.id
                     WHERE w.name = $1",
                    &[
                        &workspace.as_str(),
                        &project_key,
                        &sa.workspace.as_str(),
                        &sa.name.key(),
                    ],
                )?
                .map(|r| {
                    let principal_id = get::<Option<i64>>(&r, 1)?;
                    let exists = principal_id.is_some();
                    Ok(ProjectFacts {
                        visibility: visibility(get(&r, 0)?)?,
                        standing: if exists {
                            Some(Standing::ServiceAccount {
                                active: get(&r, 2)?,
                                in_workspace: get(&r, 3)?,
                                grant: opt_project_role(get(&r, 4)?)?,
                            })
                        } else {
                            None
                        },
                        principal_id,
                    })
                })
                .transpose(),
        }
    }

    fn listing_workspaces(
        &self,
        principal: &Principal,
        from: &str,
    ) -> Result<Vec<ListingWorkspace>> {
        match principal {
            Principal::User(user) => self
                .rows(
                    "SELECT w.id, w.name, m.role FROM workspaces w
                     LEFT JOIN workspace_members m ON m.workspace_id = w.id
                          AND m.user_id = (SELECT id FROM users WHERE name_key = $1)
                     WHERE w.name >= $2
                       AND (m.role IS NOT NULL OR EXISTS (
                            SELECT 1 FROM projects p WHERE p.workspace_id = w.id AND p.visibility = 2))
                     ORDER BY w.name",
                    &[&user.key(), &from],
                )?
                .iter()
                .map(|r| {
                    Ok(ListingWorkspace {
                        id: WorkspaceId(get(r, 0)?),
                        name: WorkspaceName::from_stored(get(r, 1)?),
                        standing: Standing::User {
                            workspace_role: opt_workspace_role(get(r, 2)?)?,
                            grant: None,
                        },
                    })
                })
                .collect(),
            Principal::ServiceAccount(sa) => self
                .rows(
                    "WITH me AS (
                        SELECT s.workspace_id, s.active FROM service_accounts s
                        JOIN workspaces w ON w.id = s.workspace_id
                        WHERE w.name = $1 AND s.name_key = $2)
                     SELECT w.id, w.name, coalesce((SELECT active FROM me), false),
                            coalesce(w.id = (SELECT workspace_id FROM me), false)
                     FROM workspaces w
                     WHERE w.name >= $3
                       AND (w.id IS NOT DISTINCT FROM (SELECT workspace_id FROM me) OR EXISTS (
                            SELECT 1 FROM projects p WHERE p.workspace_id = w.id AND p.visibility = 2))
                     ORDER BY w.name",
                    &[&sa.workspace.as_str(), &sa.name.key(), &from],
                )?
                .iter()
                .map(|r| {
                    Ok(ListingWorkspace {
                        id: WorkspaceId(get(r, 0)?),
                        name: WorkspaceName::from_stored(get(r, 1)?),
                        standing: Standing::ServiceAccount {
                            active: get(r, 2)?,
                            in_workspace: get(r, 3)?,
                            grant: None,
                        },
                    })
                })
                .collect(),
        }
    }

    fn projects_with_visibility(
        &self,
        ws: &ListingWorkspace,
        v: Visibility,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ListedProject>> {
        self.rows(
            "SELECT name, name_key FROM projects
             WHERE workspace_id = $1 AND visibility = $2 AND name_key > $3
             ORDER BY name_key LIMIT $4",
            &[&ws.id.0, &visibility_int(v), &after, &sql_limit(limit)],
        )?
        .iter()
        .map(|r| Self::listed(r, ws, Some(v)))
        .collect()
    }

    fn granted_projects(
        &self,
        principal: &Principal,
        ws: &ListingWorkspace,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ListedProject>> {
        let rows = match principal {
            Principal::User(user) => self.rows(
                "SELECT p.name, p.name_key, p.visibility, g.role
                 FROM user_grants g JOIN projects p ON p.id = g.project_id
                 WHERE g.user_id = (SELECT id FROM users WHERE name_key = $1)
                   AND p.workspace_id = $2 AND p.name_key > $3
                 ORDER BY p.name_key LIMIT $4",
                &[&user.key(), &ws.id.0, &after, &sql_limit(limit)],
            )?,
            Principal::ServiceAccount(sa) => self.rows(
                "SELECT p.name, p.name_key, p.visibility, g.role
                 FROM service_account_grants g JOIN projects p ON p.id = g.project_id
                 WHERE g.service_account_id = (
                        SELECT s.id FROM service_accounts s JOIN workspaces w ON w.id = s.workspace_id
                        WHERE w.name = $1 AND s.name_key = $2)
                   AND p.workspace_id = $3 AND p.name_key > $4
                 ORDER BY p.name_key LIMIT $5",
                &[
                    &sa.workspace.as_str(),
                    &sa.name.key(),
                    &ws.id.0,
                    &after,
                    &sql_limit(limit),
                ],
            )?,
        };
        rows.iter().map(|r| Self::listed(r, ws, None)).collect()
    }

    fn insert_token(
        &self,
        owner: TokenOwner,
        digest: &TokenDigest,
        label: &str,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<TokenId> {
        let (user, sa) = owner_params(owner);
        let r = self.one(
            "INSERT INTO tokens (digest, user_id, service_account_id, label, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &&digest.as_bytes()[..],
                &user,
                &sa,
                &label,
                &now,
                &expires_at,
            ],
        )?;
        Ok(TokenId(get(&r, 0)?))
    }

    fn token_by_digest(&self, digest: &TokenDigest) -> Result<Option<TokenLookup>> {
        Self::token_lookup(self.row(
            token_lookup_sql!("t.digest = $1"),
            &[&&digest.as_bytes()[..]],
        )?)
    }

    fn token_by_id(&self, id: TokenId) -> Result<Option<TokenLookup>> {
        Self::token_lookup(self.row(token_lookup_sql!("t.id = $1"), &[&id.0])?)
    }

    fn token_project_facts(
        &self,
        digest: &TokenDigest,
        workspace: &WorkspaceName,
        project_key: &str,
    ) -> Result<Option<TokenProjectFacts>> {
        let Some(r) = self.row(
            "SELECT t.id, t.expires_at, t.last_used_at, t.revoked_at IS NOT NULL,
                    t.service_account_id IS NOT NULL, coalesce(s.active, true),
                    s.workspace_id IS NOT DISTINCT FROM w.id, p.visibility, m.role, ug.role, sg.role
             FROM tokens t
             JOIN workspaces w ON w.name = $2
             JOIN projects p ON p.workspace_id = w.id AND p.name_key = $3
             LEFT JOIN service_accounts s ON s.id = t.service_account_id
             LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = t.user_id
             LEFT JOIN user_grants ug ON ug.project_id = p.id AND ug.user_id = t.user_id
             LEFT JOIN service_account_grants sg
                    ON sg.project_id = p.id AND sg.service_account_id = t.service_account_id
             WHERE t.digest = $1",
            &[&&digest.as_bytes()[..], &workspace.as_str(), &project_key],
        )?
        else {
            return Ok(None);
        };
        let is_sa: bool = get(&r, 4)?;
        let active: bool = get(&r, 5)?;
        let standing = if is_sa {
            Standing::ServiceAccount {
                active,
                in_workspace: get(&r, 6)?,
                grant: opt_project_role(get(&r, 10)?)?,
            }
        } else {
            Standing::User {
                workspace_role: opt_workspace_role(get(&r, 8)?)?,
                grant: opt_project_role(get(&r, 9)?)?,
            }
        };
        Ok(Some(TokenProjectFacts {
            token_id: TokenId(get(&r, 0)?),
            expires_at: get(&r, 1)?,
            last_used_at: get(&r, 2)?,
            revoked: get(&r, 3)?,
            principal_active: active,
            visibility: visibility(get(&r, 7)?)?,
            standing,
        }))
    }

    fn tokens_of(&self, owner: TokenOwner) -> Result<Vec<TokenRecord>> {
        let (user, sa) = owner_params(owner);
        self.rows(
            "SELECT t.id, t.user_id, t.service_account_id, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at
             FROM tokens t
             WHERE t.user_id IS NOT DISTINCT FROM $1 AND t.service_account_id IS NOT DISTINCT FROM $2
             ORDER BY t.id DESC",
            &[&user, &sa],
        )?
        .iter()
        .map(Self::token_row)
        .collect()
    }

    fn revoke_token(&self, id: TokenId, now: i64) -> Result<bool> {
        Ok(self.exec(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id.0, &now],
        )? > 0)
    }

    fn revoke_tokens_of(&self, owner: TokenOwner, now: i64) -> Result<Vec<TokenRecord>> {
        let live: Vec<TokenRecord> = self
            .tokens_of(owner)?
            .into_iter()
            .filter(|t| t.revoked_at.is_none())
            .collect();
        for t in &live {
            self.revoke_token(t.id, now)?;
        }
        Ok(live)
    }

    fn touch_token(&self, id: TokenId, now: i64) -> Result<()> {
        self.exec(
            "UPDATE tokens SET last_used_at = greatest(coalesce(last_used_at, 0), $2) WHERE id = $1",
            &[&id.0, &now],
        )?;
        Ok(())
    }

    fn append_audit(&self, e: &NewAuditEvent<'_>) -> Result<()> {
        self.exec(
            "INSERT INTO audit_events (at, workspace, actor, action, target, outcome, details, actor_key, target_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &e.at,
                &e.workspace,
                &e.actor,
                &e.action,
                &e.target,
                &e.outcome.as_str(),
                &e.details.to_string(),
                &fold(e.actor),
                &fold(e.target),
            ],
        )?;
        Ok(())
    }

    fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let workspace = q.workspace.as_deref().map(str::to_ascii_lowercase);
        let actor = q.actor.as_deref().map(fold);
        let target = q.target.as_deref().map(fold);
        let since = q.since.map(|t| t.timestamp_millis());
        let until = q.until.map(|t| t.timestamp_millis());
        self.rows(
            "SELECT id, at, workspace, actor, action, target, outcome, details FROM audit_events
             WHERE ($1::text IS NULL OR workspace = $1)
               AND ($2::text IS NULL OR actor_key = $2)
               AND ($3::text IS NULL OR target_key = $3)
               AND ($4::bigint IS NULL OR at >= $4)
               AND ($5::bigint IS NULL OR at < $5)
             ORDER BY id DESC LIMIT $6",
            &[
                &workspace,
                &actor,
                &target,
                &since,
                &until,
                &sql_limit(q.limit),
            ],
        )?
        .iter()
        .map(|r| {
            let at: i64 = get(r, 1)?;
            let outcome: String = get(r, 6)?;
            let details: String = get(r, 7)?;
            Ok(AuditEvent {
                id: get(r, 0)?,
                at: chrono::DateTime::from_timestamp_millis(at).unwrap_or_default(),
                workspace: get(r, 2)?,
                actor: get(r, 3)?,
                action: get(r, 4)?,
                target: get(r, 5)?,
                outcome: if outcome == "denied" {
                    Outcome::Denied
                } else {
                    Outcome::Ok
                },
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
    }

    fn signing_key(&self) -> Result<Option<Vec<u8>>> {
        self.row("SELECT secret FROM signing_keys ORDER BY id LIMIT 1", &[])?
            .map(|r| get(&r, 0))
            .transpose()
    }

    fn insert_signing_key(&self, secret: &[u8], now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO signing_keys (secret, created_at) VALUES ($1, $2)",
            &[&secret, &now],
        )?;
        Ok(())
    }
}
