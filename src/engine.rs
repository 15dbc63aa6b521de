//! [`Engine`]: opening a database, bootstrap, authentication and the check path.
//! The management calls are in [`Session`](crate::Session), `src/session.rs`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::{APPLICATION, AuditEvent, AuditQuery, NewAuditEvent, Outcome};
use crate::cache::{Cache, Entry, Facts, FactsCache};
use crate::clock::{now_ms, to_time};
use crate::domain::access::{Access, Action, decide, effective_access};
use crate::domain::names::{QualifiedProjectName, Username, WorkspaceName};
use crate::domain::principal::Principal;
use crate::domain::roles::WorkspaceRole;
use crate::error::{Error, Result};
use crate::repo::store::{ChangeStamp, Freshness, Store};
use crate::repo::{TokenId, TokenOwner};
use crate::session::Session;
use crate::token::{self, IssuedToken};
use crate::uses::TokenUses;

/// The access-control engine over one SQLite database.
///
/// `Engine` is `Send + Sync`: a service opens one and shares it across its threads.
/// Several processes may open the same file at once.
///
/// ```
/// use turnstile::{Action, Engine, Principal};
///
/// let engine = Engine::open_in_memory()?;
/// engine.create_user("alice")?;
/// engine.create_workspace("ml-team", "alice")?;
/// let alice = engine.session_for(&"alice".parse()?)?;
/// alice.create_project("ml-team/classification", Default::default())?;
///
/// let who: Principal = "alice".parse()?;
/// assert!(engine.check(&who, "ml-team/classification", Action::Delete)?);
/// # Ok::<(), turnstile::Error>(())
/// ```
pub struct Engine {
    pub(crate) store: Store,
    /// `None` unless [`Options::decision_cache`] was asked for on a file database.
    cache: Option<Caches>,
    /// Token uses not yet written (T7).
    pub(crate) uses: Arc<TokenUses>,
}

struct Caches {
    freshness: Freshness,
    facts: FactsCache,
    tokens: Cache<TokenEntry>,
    /// The keyed fingerprints the token cache is looked up by.
    fingerprints: token::Fingerprints,
}

/// A live token, cached under its [`Fingerprint`](token::Fingerprint): the entry
/// answers only for the very string it was made from (see [`token::Fingerprints`]),
/// so a hit needs neither the shape check nor SHA-256.
struct TokenEntry {
    fingerprint: token::Fingerprint,
    id: TokenId,
    /// Shared, so that a hit costs no copy of the names.
    principal: Arc<Principal>,
    expires_at: Option<i64>,
    /// The last use recorded in the database.
    last_used_at: Option<i64>,
    /// Whether this entry's use was noted already (T7). The entry dies with the next
    /// commit, the batch of uses included, so noting it again before then would only
    /// take the lock of the pending uses to find it there. Set once the stored last use
    /// is due for an update, so that a token used for hours without a commit is noted
    /// when its last use turns a minute old.
    noted: std::sync::atomic::AtomicBool,
}

impl Entry for TokenEntry {
    fn key(&self) -> &[u8] {
        self.fingerprint.as_bytes()
    }
}

/// A live token's principal, as [`Engine::principal_of_token`] finds it.
struct Bearer {
    principal: Arc<Principal>,
    token: TokenId,
}

/// A live token as read from storage, with what its cache entry needs.
struct Found {
    principal: Arc<Principal>,
    token: TokenId,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    /// Whether this look-up noted its use (T7).
    noted: bool,
}

impl Found {
    fn bearer(self) -> Bearer {
        Bearer {
            principal: self.principal,
            token: self.token,
        }
    }
}

/// How [`Engine::open_with`] opens a database. Build it from the default:
/// `Options { decision_cache: true, ..Options::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Keep the facts behind recent decisions and token look-ups in memory. On a
    /// SQLite file never stale: before answering from memory, each call checks (a
    /// few loads from a memory map of SQLite's shared WAL-index header, no lock, no
    /// system call) that no connection of any process has committed since the entry
    /// was read (SPEC T4). On PostgreSQL only with
    /// [`postgres_staleness`](Self::postgres_staleness) (B3). An in-memory database
    /// ignores it.
    pub decision_cache: bool,
    /// On PostgreSQL, how late the decision cache may be: with `decision_cache`, an
    /// answer from memory reflects every commit, by any process on any machine,
    /// completed more than this long before the call. Changes are heard through
    /// `LISTEN`/`NOTIFY` (usually within a millisecond); a heartbeat every quarter of
    /// the bound proves the listener is keeping up, and while it is not, every
    /// decision reads the database. `None` (the default): no cache on PostgreSQL,
    /// every decision reads the database, so a revocation holds for the very next
    /// call (B3). At least 4 ms. Ignored on SQLite, whose cache is never stale.
    pub postgres_staleness: Option<std::time::Duration>,
    /// How long a write waits for another process's writer before it fails with
    /// [`Error::Busy`] (D2). 60 seconds by default.
    pub busy_timeout: std::time::Duration,
    /// Open for reading only: nothing is created or changed beside the file, so a
    /// read-only file or directory serves decisions, lists and exports; every
    /// management call fails with a storage error. The file must exist and be at the
    /// current schema version. A file whose directory cannot be written and which has
    /// no write-ahead log is read as an immutable file: changes another process makes
    /// to it later are not seen by this engine.
    pub read_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            decision_cache: false,
            postgres_staleness: None,
            busy_timeout: crate::repo::sqlite::BUSY_TIMEOUT,
            read_only: false,
        }
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (creating if needed) the database at `path`, migrating an older schema
    /// and refusing a newer one (D1, B4). `path` is a SQLite file, a `sqlite:PATH`
    /// URL, or a `postgres://` / `postgresql://` URL naming an existing PostgreSQL
    /// database (B1), whose tables are created on first open. With the default
    /// options there is no decision cache: every decision reads the database (on
    /// PostgreSQL, see [`Options::postgres_staleness`] for the opt-in cache, B3).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Options::default())
    }

    /// The local file a database location names: the path of a SQLite file (a plain
    /// path, or a `sqlite:PATH` URL), `None` for a PostgreSQL URL. For front ends that
    /// must tell a missing file from a database to create.
    ///
    /// ```
    /// use std::path::Path;
    /// use turnstile::Engine;
    /// assert_eq!(Engine::database_file("sqlite:/tmp/acl.db"), Some(Path::new("/tmp/acl.db").into()));
    /// assert_eq!(Engine::database_file("acl.db"), Some(Path::new("acl.db").into()));
    /// assert_eq!(Engine::database_file("postgres://db.internal/acl"), None);
    /// ```
    pub fn database_file(path: impl AsRef<Path>) -> Option<std::path::PathBuf> {
        match crate::repo::store::Location::of(path.as_ref()) {
            crate::repo::store::Location::Sqlite(file) => Some(file),
            crate::repo::store::Location::Postgres(_) => None,
        }
    }

    /// [`open`](Self::open) with options.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use turnstile::{Engine, Options};
    /// let options = Options { decision_cache: true, ..Options::default() };
    /// let engine = Engine::open_with(dir.path().join("acl.db"), options)?;
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        let store = Store::open(
            path.as_ref(),
            crate::repo::store::OpenOptions {
                busy_timeout: options.busy_timeout,
                read_only: options.read_only,
            },
        )?;
        let freshness = if options.decision_cache && !options.read_only {
            store.freshness(options.postgres_staleness)?
        } else {
            None
        };
        let cache = match freshness {
            Some(freshness) => Some(Caches {
                freshness,
                facts: FactsCache::new(),
                tokens: Cache::new(),
                fingerprints: token::Fingerprints::new()?,
            }),
            None => None,
        };
        let uses = TokenUses::start(&store);
        Ok(Self { store, cache, uses })
    }

    /// Opens a private in-memory database, for tests and examples.
    pub fn open_in_memory() -> Result<Self> {
        let store = Store::open_in_memory()?;
        let uses = TokenUses::start(&store);
        Ok(Self {
            store,
            cache: None,
            uses,
        })
    }

    /// The cache and the current change stamp, when the cache is on and the stamp
    /// can be read; the stamp is taken before any look-up it will vouch for.
    fn cached(&self) -> Option<(&Caches, ChangeStamp)> {
        let cache = self.cache.as_ref()?;
        Some((cache, cache.freshness.stamp()?))
    }

    /// Creates a user. Called by the embedding application, without an actor.
    pub fn create_user(&self, name: &str) -> Result<Username> {
        let name: Username = name.parse()?;
        self.store.write(|repo| {
            if repo.user(&name)?.is_some() {
                return Err(Error::UserAlreadyExists {
                    user: name.to_string(),
                });
            }
            let now = now_ms();
            repo.insert_user(&name, now)?;
            repo.append_audit(&NewAuditEvent {
                at: now,
                workspace: None,
                actor: APPLICATION,
                action: "user.create",
                target: name.as_str(),
                outcome: Outcome::Ok,
                details: json!({}),
            })?;
            Ok(name.clone())
        })
    }

    /// Creates a workspace with `first_admin`, an existing user, as its admin.
    pub fn create_workspace(&self, name: &str, first_admin: &str) -> Result<WorkspaceName> {
        let name: WorkspaceName = name.parse()?;
        let admin: Username = first_admin.parse()?;
        self.store.write(|repo| {
            if repo.workspace(&name)?.is_some() {
                return Err(Error::WorkspaceAlreadyExists {
                    workspace: name.to_string(),
                });
            }
            let user = repo.user(&admin)?.ok_or_else(|| Error::UserNotFound {
                user: admin.to_string(),
            })?;
            let now = now_ms();
            let ws = repo.insert_workspace(&name, now)?;
            repo.put_workspace_member(ws, user.id, WorkspaceRole::Admin)?;
            repo.append_audit(&NewAuditEvent {
                at: now,
                workspace: Some(name.as_str()),
                actor: APPLICATION,
                action: "workspace.create",
                target: name.as_str(),
                outcome: Outcome::Ok,
                details: json!({ "first_admin": user.name.as_str() }),
            })?;
            Ok(name.clone())
        })
    }

    /// Issues a personal token for a user (T5); `expires_at`, when given, must be in
    /// the future. The secret is in the returned value and nowhere else.
    pub fn issue_user_token(
        &self,
        username: &str,
        label: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken> {
        let name: Username = username.parse()?;
        let label = parse_label(label)?;
        let now = now_ms();
        let expires_at = expires_at.map(|t| t.timestamp_millis());
        if expires_at.is_some_and(|t| t <= now) {
            return Err(Error::invalid_value(
                "token expiry",
                &expires_at.map(to_time).unwrap_or_default().to_rfc3339(),
                "a time in the future",
            ));
        }
        let new = token::generate()?;
        self.store.write(|repo| {
            let user = repo.user(&name)?.ok_or_else(|| Error::UserNotFound {
                user: name.to_string(),
            })?;
            let id = repo.insert_token(
                TokenOwner::User(user.id),
                &new.digest,
                label,
                now,
                expires_at,
            )?;
            repo.append_audit(&NewAuditEvent {
                at: now,
                workspace: None,
                actor: APPLICATION,
                action: "token.issue",
                target: user.name.as_str(),
                outcome: Outcome::Ok,
                details: json!({ "token_id": id.0, "label": label, "expires_at": expires_at }),
            })?;
            Ok(IssuedToken {
                id,
                principal: Principal::User(user.name),
                label: label.to_owned(),
                expires_at: expires_at.map(to_time),
                secret: new.secret.clone(),
            })
        })
    }

    /// Authenticates a token (T3): the principal's session, or `InvalidToken` whatever
    /// the reason (unknown, revoked, expired, deactivated account, malformed).
    ///
    /// The session stays bound to the token (T6): once the token is revoked, rotated,
    /// expired or its owner deactivated, every later call on it fails with
    /// `InvalidToken`, whichever process made the change.
    pub fn authenticate(&self, token: &str) -> Result<Session<'_>> {
        let bearer = self.principal_of_token(token, self.cached())?;
        Ok(Session::new(
            &self.store,
            &self.uses,
            self,
            Arc::unwrap_or_clone(bearer.principal),
            Some(bearer.token),
        ))
    }

    /// A session bound to the token with this id, for a front end that keeps the id
    /// rather than the secret (the HTTP server's access tokens, H4). Fails with
    /// `InvalidToken` unless the token is live (T3, T6).
    pub fn session_for_token(&self, id: TokenId) -> Result<Session<'_>> {
        let found = self.store.read(|repo| repo.token_by_id(id))?;
        let found = found
            .filter(|t| t.state().is_live(now_ms()))
            .ok_or(Error::InvalidToken)?;
        Ok(Session::new(
            &self.store,
            &self.uses,
            self,
            found.principal,
            Some(id),
        ))
    }

    /// Token to decision in one call: [`authenticate`](Self::authenticate), then
    /// [`check`](Self::check). Without the decision cache, one statement takes the
    /// token and the facts together. Never writes (T7).
    pub fn authorize(&self, token: &str, project: &str, action: Action) -> Result<bool> {
        if self.cache.is_none()
            && let Ok(name) = project.parse::<QualifiedProjectName>()
        {
            let digest = token::parse(token)?;
            let found = self.store.read_latest(|repo| {
                repo.token_project_facts(&digest, &name.workspace, name.project.key())
            })?;
            if let Some(f) = found {
                // INVARIANT: T3, every cause of failure is the same `InvalidToken`.
                if !f.state().is_live_by(now_ms) {
                    return Err(Error::InvalidToken);
                }
                self.uses.note(f.token_id, f.last_used_at);
                return Ok(decide(f.visibility, f.standing, action));
            }
            // No row: an unknown token or an unknown project. The steps below tell
            // which, the token first, so an unauthenticated caller learns nothing.
        }
        // One stamp vouches for both look-ups.
        let cached = self.cached();
        let bearer = self.principal_of_token(token, cached)?;
        Ok(self
            .facts_with(cached, Some(&bearer.principal), project)?
            .is_some_and(|facts| facts.permits(action)))
    }

    /// The live token's principal. `cached` is [`Engine::cached`], read once by the
    /// caller for the whole call. Notes the use (T7); never writes.
    fn principal_of_token(
        &self,
        token: &str,
        cached: Option<(&Caches, ChangeStamp)>,
    ) -> Result<Bearer> {
        if let Some((cache, stamp)) = &cached {
            let fingerprint = cache.fingerprints.of(token);
            // INVARIANT: T1, T2, an entry found is one whose key, the fingerprint, equals
            // this one: the same string as the entry's, which was well-formed and found
            // by its digest.
            let hit = cache.tokens.get(stamp, fingerprint.as_bytes(), |e| {
                use std::sync::atomic::Ordering::Relaxed;
                // A load first: the common case reads no clock and writes nothing to
                // the shared line.
                let note = if e.noted.load(Relaxed) {
                    None
                } else {
                    self.uses
                        .due_now(e.last_used_at)
                        .filter(|_| !e.noted.swap(true, Relaxed))
                };
                (e.id, e.expires_at, note, e.principal.clone())
            });
            if let Some((id, expires_at, note, principal)) = hit {
                // INVARIANT: T3, T5, an expired token fails like any other.
                if expires_at.is_some_and(|e| e <= now_ms()) {
                    return Err(Error::InvalidToken);
                }
                if let Some(now) = note {
                    self.uses.note_at(id, now);
                }
                return Ok(Bearer {
                    principal,
                    token: id,
                });
            }
            let bearer = self.principal_of_token_from_storage(token)?;
            let entry = TokenEntry {
                fingerprint,
                id: bearer.token,
                principal: bearer.principal.clone(),
                expires_at: bearer.expires_at,
                last_used_at: bearer.last_used_at,
                noted: bearer.noted.into(),
            };
            cache.tokens.insert(stamp, entry);
            return Ok(bearer.bearer());
        }
        Ok(self.principal_of_token_from_storage(token)?.bearer())
    }

    /// [`principal_of_token`](Self::principal_of_token) from storage: the shape and the
    /// checksum, then the look-up by digest.
    fn principal_of_token_from_storage(&self, token: &str) -> Result<Found> {
        // T1: shape and checksum first; a bad token never reaches the database.
        let digest = token::parse(token)?;
        let found = self
            .store
            .read_latest(|repo| repo.token_by_digest(&digest))?;
        // INVARIANT: T3, every cause of failure is the same `InvalidToken`.
        let Some(found) = found.filter(|t| t.state().is_live_by(now_ms)) else {
            return Err(Error::InvalidToken);
        };
        let t = &found.token;
        let due = self.uses.due_now(t.last_used_at);
        if let Some(now) = due {
            self.uses.note_at(t.id, now);
        }
        Ok(Found {
            principal: Arc::new(found.principal),
            token: t.id,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            noted: due.is_some(),
        })
    }

    /// A session acting as `principal`, for an application that authenticated the
    /// caller itself. Fails if the user does not exist or the service account does
    /// not exist or is deactivated.
    pub fn session_for(&self, principal: &Principal) -> Result<Session<'_>> {
        self.store.read(|repo| match principal {
            Principal::User(name) => {
                repo.user(name)?.ok_or_else(|| Error::UserNotFound {
                    user: name.to_string(),
                })?;
                Ok(())
            }
            Principal::ServiceAccount(full) => {
                repo.active_service_account(full)?;
                Ok(())
            }
        })?;
        Ok(Session::new(
            &self.store,
            &self.uses,
            self,
            principal.clone(),
            None,
        ))
    }

    /// May `principal` perform `action` on `project` (`workspace/project`)? The hot
    /// path: one cached statement from names to facts, then the pure rules.
    ///
    /// A project that does not exist is answered exactly as one the principal cannot
    /// view: `false` (A6). An unknown principal fails with `UserNotFound` or
    /// `ServiceAccountNotFound`, whether or not the project exists.
    pub fn check(&self, principal: &Principal, project: &str, action: Action) -> Result<bool> {
        Ok(self
            .facts(Some(principal), project)?
            .is_some_and(|facts| facts.permits(action)))
    }

    /// May an anonymous caller perform `action` on `project`? Only public projects
    /// are viewable (R4); any other project, existing or not, is `false` (A6).
    pub fn check_anonymous(&self, project: &str, action: Action) -> Result<bool> {
        Ok(self
            .facts(None, project)?
            .is_some_and(|facts| facts.permits(action)))
    }

    /// The effective role of `principal` on `project` and the rule that gave it, or
    /// `None` for no access, which is also the answer for a project that does not
    /// exist (A6).
    ///
    /// ```
    /// # use turnstile::{Engine, RoleSource, ProjectRole};
    /// # let engine = Engine::open_in_memory()?;
    /// # engine.create_user("alice")?;
    /// # engine.create_workspace("ml-team", "alice")?;
    /// # engine.session_for(&"alice".parse()?)?.create_project("ml-team/cls", Default::default())?;
    /// let access = engine.explain(&"alice".parse()?, "ml-team/cls")?.unwrap();
    /// assert_eq!(access.role, ProjectRole::Owner);
    /// assert_eq!(access.source, RoleSource::WorkspaceAdmin);
    /// assert_eq!(engine.explain(&"alice".parse()?, "ml-team/no-such-project")?, None);
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn explain(&self, principal: &Principal, project: &str) -> Result<Option<Access>> {
        Ok(self
            .facts(Some(principal), project)?
            .and_then(|facts| effective_access(facts.visibility, facts.standing)))
    }

    /// The effective role of an anonymous caller on `project`: viewer on a public
    /// project (R4), else `None`.
    pub fn explain_anonymous(&self, project: &str) -> Result<Option<Access>> {
        Ok(self
            .facts(None, project)?
            .and_then(|facts| effective_access(facts.visibility, facts.standing)))
    }

    fn facts(&self, principal: Option<&Principal>, project: &str) -> Result<Option<Facts>> {
        self.facts_with(self.cached(), principal, project)
    }

    /// The facts of `principal` on `project`, from the cache when `cached` vouches
    /// for them, else from storage; `None` when the project does not exist.
    fn facts_with(
        &self,
        cached: Option<(&Caches, ChangeStamp)>,
        principal: Option<&Principal>,
        project: &str,
    ) -> Result<Option<Facts>> {
        let (Some(principal), Some((cache, stamp))) = (principal, cached) else {
            return Ok(self.facts_from_storage(principal, project)?.map(|(f, _)| f));
        };
        let mut buffer = [0; 64];
        let miss = match cache.facts.get(&stamp, principal, project, &mut buffer) {
            Ok(hit) => return Ok(Some(hit)),
            Err(miss) => miss,
        };
        let found = self.facts_from_storage(Some(principal), project)?;
        // INVARIANT: T4, what is cached under a stamp is of the state that stamp
        // names: had a commit landed during the read, the stamp would differ now, and
        // the facts, perhaps newer than the stamp, are not kept. (Entries of two states
        // under one stamp could combine into an answer that neither state gives.)
        if let Some((facts, Some(id))) = found
            && cache.freshness.stamp() == Some(stamp)
        {
            cache.facts.insert(&stamp, miss, principal, id, facts);
        }
        Ok(found.map(|(facts, _)| facts))
    }

    /// The facts from storage, with the principal's row id.
    fn facts_from_storage(
        &self,
        principal: Option<&Principal>,
        project: &str,
    ) -> Result<Option<(Facts, Option<i64>)>> {
        let name: QualifiedProjectName = project.parse()?;
        let facts = self.store.read_latest(|repo| {
            repo.project_facts(principal, &name.workspace, name.project.key())
        })?;
        let unknown = |principal: &Principal| match principal {
            Principal::ServiceAccount(sa) => Error::ServiceAccountNotFound {
                account: sa.to_string(),
            },
            Principal::User(u) => Error::UserNotFound {
                user: u.to_string(),
            },
        };
        let Some(facts) = facts else {
            // INVARIANT: A6, an absent project answers as an invisible one: no
            // access. Only the principal's own existence may still fail the call.
            if let Some(principal) = principal
                && !self.store.read(|repo| repo.principal_exists(principal))?
            {
                return Err(unknown(principal));
            }
            return Ok(None);
        };
        match (facts.standing, principal) {
            (Some(standing), _) => Ok(Some((
                Facts::new(standing, facts.visibility),
                facts.principal_id,
            ))),
            (None, Some(principal)) => Err(unknown(principal)),
            // An anonymous caller always has a standing: `Standing::Anonymous`.
            (None, None) => Ok(None),
        }
    }

    /// Loads a [`Snapshot`](crate::Snapshot) (users, workspaces, members, service
    /// accounts, projects, grants) in one transaction: all of it or, on the first
    /// error, none of it. The fast way to load many facts at once.
    pub fn import(&self, snapshot: &crate::Snapshot) -> Result<crate::ImportSummary> {
        self.import_with_progress(snapshot, |_, _| {})
    }

    /// [`import`](Self::import), calling `progress(done, total)` as projects are written.
    pub fn import_with_progress(
        &self,
        snapshot: &crate::Snapshot,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<crate::ImportSummary> {
        let now = now_ms();
        let load = |repo: &dyn crate::repo::Repository| {
            let suspended = repo.suspend_secondary_structures()?;
            let summary = crate::snapshot::import(repo, snapshot, now, &mut progress)?;
            repo.restore_secondary_structures(suspended)?;
            Ok(summary)
        };
        // Foreign keys stay on (D2): a bulk load suspends only what it puts back
        // itself, the secondary indexes and the A7/R7 triggers (every grant names a
        // project, user or service account that `import` inserted or found in the
        // same transaction, so those triggers would find nothing).
        let summary = if crate::snapshot::is_bulk(snapshot) {
            self.store.write(load)?
        } else {
            self.store
                .write(|repo| crate::snapshot::import(repo, snapshot, now, &mut progress))?
        };
        self.store.checkpoint();
        Ok(summary)
    }

    /// The whole model as a [`Snapshot`](crate::Snapshot), without token secrets
    /// (which are not stored) and without the audit log.
    pub fn export(&self) -> Result<crate::Snapshot> {
        self.store.read(|repo| crate::snapshot::export(repo))
    }

    /// The whole audit log, filtered: for the embedding application. Workspace admins
    /// use [`Session::audit_log`].
    pub fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.store.read(|repo| repo.audit_events(query))
    }
}

fn parse_label(label: &str) -> Result<&str> {
    let ok = (1..=64).contains(&label.chars().count()) && !label.chars().any(char::is_control);
    if ok {
        Ok(label)
    } else {
        Err(Error::invalid_value(
            "token label",
            label,
            "1 to 64 characters without control characters",
        ))
    }
}

impl crate::session::Decide for Engine {
    fn check(&self, principal: &Principal, project: &str, action: Action) -> Result<bool> {
        Engine::check(self, principal, project, action)
    }

    fn explain(&self, principal: &Principal, project: &str) -> Result<Option<Access>> {
        Engine::explain(self, principal, project)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // T7: the uses noted since the last batch are written now, not lost, unless
        // another writer holds the database for more than a second: dropping an
        // engine must not wait out a bulk import for bookkeeping.
        self.uses.flush(|batch| {
            self.store
                .write_within(std::time::Duration::from_secs(1), |repo| {
                    crate::uses::record(repo, batch)
                })
        });
    }
}

// A compile-time proof that an Engine can be shared across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
};
