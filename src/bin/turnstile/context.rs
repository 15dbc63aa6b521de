//! What every command shares: the database path and the acting principal's token.

use std::path::PathBuf;

use turnstile::{Engine, Options, Principal, Session};

use crate::output::Failure;

/// The database used when neither `--db` nor `TURNSTILE_DB` names one.
pub const DEFAULT_DB: &str = "turnstile.db";

/// What every command shares: where the database is, who acts.
pub struct Context {
    pub db: Option<PathBuf>,
    /// Whether `--json` was given.
    pub json: bool,
    /// Whether `db` came from `TURNSTILE_DB` rather than `--db`.
    pub db_from_env: bool,
    /// The token, trimmed; `None` when absent or blank (`TURNSTILE_TOKEN=""` is a
    /// missing token, not an invalid one).
    pub token: Option<String>,
}

impl Context {
    /// The database: a SQLite file's path (a `sqlite:PATH` URL read as its path, so
    /// that every file check sees the real file), or a PostgreSQL URL as given.
    pub fn db_path(&self) -> PathBuf {
        let given = self.db.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DB));
        Engine::database_file(&given).unwrap_or(given)
    }

    /// Opens the existing database; a missing file is an error rather than a new,
    /// empty database made by a typo.
    pub fn open(&self) -> Result<Engine, Failure> {
        let path = self.db_path();
        if !crate::files::is_server_url(&path) && !path.exists() {
            return Err(Failure::missing_database(format!(
                "database `{}` not found: create it with `turnstile init` or name another with --db",
                path.display()
            )));
        }
        Ok(Engine::open(&path)?)
    }

    /// Opens the existing database for a command that only reads: read-only, so that
    /// a read-only file or directory serves it and nothing is created beside the
    /// file. A database from an older turnstile is opened for writing instead, once,
    /// to upgrade it.
    pub fn open_for_reading(&self) -> Result<Engine, Failure> {
        let path = self.db_path();
        if !crate::files::is_server_url(&path) && !path.exists() {
            return self.open();
        }
        let options = Options {
            read_only: true,
            ..Options::default()
        };
        match Engine::open_with(&path, options) {
            Ok(engine) => Ok(engine),
            Err(turnstile::Error::SchemaNeedsUpgrade { .. }) => self.open(),
            Err(e) => Err(e.into()),
        }
    }

    /// [`open_for_reading`](Self::open_for_reading) when `reads_only`, else [`open`](Self::open).
    pub fn open_for(&self, reads_only: bool) -> Result<Engine, Failure> {
        if reads_only {
            self.open_for_reading()
        } else {
            self.open()
        }
    }

    /// The acting principal's session, from `--token` or `TURNSTILE_TOKEN`.
    pub fn session<'e>(&self, engine: &'e Engine) -> Result<Session<'e>, Failure> {
        let token = self.token.as_deref().ok_or_else(|| {
            Failure::usage(
                "missing token: this command acts as a principal; pass --token or set TURNSTILE_TOKEN",
            )
        })?;
        Ok(engine.authenticate(token)?)
    }

    /// The principal a `check` or `explain` is about: `--as`, else the token's.
    pub fn principal(
        &self,
        engine: &Engine,
        as_principal: Option<&str>,
    ) -> Result<Principal, Failure> {
        match as_principal {
            Some(p) => Ok(p.parse()?),
            None if self.token.is_some() => Ok(self.session(engine)?.actor().clone()),
            None => Err(Failure::usage(
                "missing token: name the principal with --as PRINCIPAL, or pass --token or set TURNSTILE_TOKEN",
            )),
        }
    }
}
