//! The backend behind one type (SPEC B1). [`Store`] is what the engine, its sessions
//! and the snapshot code see of storage: write and read transactions over
//! `&dyn Repository`, the single statement of the check path, and what freshness
//! and bulk loading need. Which database answers is decided once, at open.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Repository;
use super::pg_listen::Listener;
use super::postgres::{PgStore, WeakPg};
use super::sqlite::{self, ChangeProbe, SqliteRepo, WeakWriter};

/// What the decision cache compares (T4, B3): two equal stamps mean no commit in
/// between. Sized for SQLite's, the WAL-index header and the change counter;
/// PostgreSQL's listener fills the first two words with its count of notifications.
pub(crate) use super::sqlite::{ChangeStamp, STAMP_WORDS};
use crate::error::Result;

/// Where a database is: a SQLite file or a PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A SQLite file: a path, or a `sqlite:` URL.
    Sqlite(std::path::PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Location {
    /// Reads a path or URL (B1): `postgres://` and `postgresql://` are PostgreSQL,
    /// `sqlite:PATH` (or `sqlite://PATH`) and anything else is a SQLite file path.
    pub(crate) fn of(target: &Path) -> Self {
        let Some(text) = target.to_str() else {
            return Self::Sqlite(target.to_owned());
        };
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Self::Postgres(text.to_owned());
        }
        if let Some(rest) = text.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            return Self::Sqlite(rest.into());
        }
        Self::Sqlite(target.to_owned())
    }
}

/// How a [`Store`] opens its database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOptions {
    /// How long a write waits for another writer (SQLite) or for a row lock or a
    /// pooled connection (PostgreSQL) before failing with `Busy`.
    pub(crate) busy_timeout: std::time::Duration,
    /// Open for reading only.
    pub(crate) read_only: bool,
}

/// One database, on either backend.
pub(crate) enum Store {
    /// A SQLite file or an in-memory database.
    Sqlite(sqlite::Store),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

/// The source of the change stamps the decision cache compares (T4, B3).
pub(crate) enum Freshness {
    /// SQLite's WAL-index header: changes with every commit of any process.
    Sqlite(Arc<ChangeProbe>),
    /// The count of PostgreSQL notifications heard, given out only while every
    /// commit older than the listener's bound has been heard.
    Postgres(Listener),
}

impl Freshness {
    /// The current stamp, read before any look-up it will vouch for; `None` when no
    /// stamp can be trusted now, and the caller must read the database.
    pub(crate) fn stamp(&self) -> Option<ChangeStamp> {
        match self {
            Self::Sqlite(probe) => probe.stamp(),
            Self::Postgres(listener) => listener.stamp(),
        }
    }
}

/// A handle to a [`Store`] for a background thread, which must not keep the
/// database open once the engine is dropped.
pub(crate) enum WeakStore {
    Sqlite(WeakWriter),
    Postgres(WeakPg),
}

impl Store {
    /// Opens the database at `target` (a path or a URL, see [`Location::of`]).
    pub(crate) fn open(target: &Path, options: OpenOptions) -> Result<Self> {
        match Location::of(target) {
            Location::Sqlite(path) => Ok(Self::Sqlite(sqlite::Store::open(
                &path,
                sqlite::OpenOptions {
                    busy_timeout: options.busy_timeout,
                    read_only: options.read_only,
                },
            )?)),
            Location::Postgres(url) => Ok(Self::Postgres(PgStore::open(&url, options)?)),
        }
    }

    /// A private in-memory SQLite database.
    pub(crate) fn open_in_memory() -> Result<Self> {
        Ok(Self::Sqlite(sqlite::Store::open_in_memory()?))
    }

    /// Runs `f` in one write transaction, committed only if `f` succeeds (E3). On
    /// PostgreSQL the transaction is SERIALIZABLE and `f` runs again after a
    /// serialization failure (B2), so `f` must not act outside the transaction.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(&dyn Repository) -> Result<T>) -> Result<T> {
        match self {
            Self::Sqlite(s) => s.write(|repo| f(repo)),
            Self::Postgres(s) => s.write(f),
        }
    }

    /// [`write`](Self::write), waiting at most `wait` for another writer on SQLite:
    /// for bookkeeping that must not hold up its caller. On PostgreSQL, where writers
    /// do not wait for each other's whole transactions, a plain write.
    pub(crate) fn write_within<T>(
        &self,
        wait: std::time::Duration,
        mut f: impl FnMut(&dyn Repository) -> Result<T>,
    ) -> Result<T> {
        match self {
            Self::Sqlite(s) => s.write_within(wait, |repo| f(repo)),
            Self::Postgres(s) => s.write(f),
        }
    }

    /// Runs `f` in one read transaction: a consistent snapshot.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn Repository) -> Result<T>) -> Result<T> {
        match self {
            Self::Sqlite(s) => s.read(|repo| f(repo)),
            Self::Postgres(s) => s.read(f),
        }
    }

    /// Runs `f`, a single statement, on the latest committed state: the check path.
    pub(crate) fn read_latest<T>(&self, f: impl FnOnce(&dyn Repository) -> Result<T>) -> Result<T> {
        match self {
            Self::Sqlite(s) => s.with_connection(|conn| f(&SqliteRepo { conn })),
            Self::Postgres(s) => s.read_latest(f),
        }
    }

    /// Whether the database answers (H9).
    #[cfg(feature = "server")]
    pub(crate) fn ping(&self) -> Result<()> {
        match self {
            Self::Sqlite(s) => s.with_connection(|c| {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
                Ok(())
            }),
            Self::Postgres(s) => s.ping(),
        }
    }

    /// What tells the decision cache that nothing has changed (T4, B3): the change
    /// probe of a SQLite file; on PostgreSQL a listener, only when the caller accepts
    /// answers up to `postgres_bound` late. `None` in memory and on PostgreSQL
    /// without a bound, where every decision reads the database.
    pub(crate) fn freshness(&self, postgres_bound: Option<Duration>) -> Result<Option<Freshness>> {
        Ok(match self {
            Self::Sqlite(s) => s.probe().map(Freshness::Sqlite),
            Self::Postgres(s) => match postgres_bound {
                Some(bound) => Some(Freshness::Postgres(s.listener(bound)?)),
                None => None,
            },
        })
    }

    /// A handle for a background thread.
    pub(crate) fn weak(&self) -> WeakStore {
        match self {
            Self::Sqlite(s) => WeakStore::Sqlite(s.weak_writer()),
            Self::Postgres(s) => WeakStore::Postgres(s.weak()),
        }
    }

    /// After a bulk load: lets SQLite move its log into the file. Nothing to do on
    /// PostgreSQL.
    pub(crate) fn checkpoint(&self) {
        if let Self::Sqlite(s) = self {
            s.checkpoint();
        }
    }
}

impl WeakStore {
    /// [`Store::write`], or an error once the store is gone.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(&dyn Repository) -> Result<T>) -> Result<T> {
        match self {
            Self::Sqlite(w) => w.write(|repo| f(repo)),
            Self::Postgres(w) => w.write(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b1_urls_choose_the_backend() {
        assert_eq!(
            Location::of(Path::new("postgres://u@h/db")),
            Location::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            Location::of(Path::new("postgresql://h/db")),
            Location::Postgres("postgresql://h/db".into())
        );
        assert_eq!(
            Location::of(Path::new("sqlite:acl.db")),
            Location::Sqlite("acl.db".into())
        );
        assert_eq!(
            Location::of(Path::new("sqlite:///var/acl.db")),
            Location::Sqlite("/var/acl.db".into())
        );
        assert_eq!(
            Location::of(Path::new("data/acl.db")),
            Location::Sqlite("data/acl.db".into())
        );
    }
}
