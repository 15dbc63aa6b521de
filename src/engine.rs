//! [`Engine`]: opening a database, bootstrap, authentication and the check path.
//! The management calls are in [`Session`](crate::Session), `src/session.rs`.

use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::audit::{APPLICATION, AuditEvent, AuditQuery, NewAuditEvent, Outcome};
use crate::cache::Cache;
use crate::domain::access::{Access, Action, Standing, decide, effective_access};
use crate::domain::names::{QualifiedProjectName, Username, WorkspaceName};
use crate::domain::principal::Principal;
use crate::domain::roles::{Visibility, WorkspaceRole};
use crate::error::{Error, Result};
use crate::repo::sqlite::{ChangeProbe, ChangeStamp, SqliteRepo, Store};
use crate::repo::{Repository, TokenId, TokenOwner, TokenRecord};
use crate::session::{Session, find_active_service_account};
use crate::token;

/// How often, at most, a token's `last_used_at` is written.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

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
}

struct Caches {
    probe: std::sync::Arc<ChangeProbe>,
    facts: Cache<FactsEntry>,
    tokens: Cache<TokenEntry>,
}

/// Facts cached for one (principal, project) pair. The full key is kept, compactly,
/// so that a hash collision is a miss and never another pair's answer.
struct FactsEntry {
    /// The pair's [`facts_key_parts`], concatenated.
    key: Box<str>,
    standing: Standing,
    visibility: Visibility,
}

/// The parts of a facts-cache key: the principal's case-folded name, a NUL (which no
/// name contains), the project as given.
fn facts_key_parts<'a>(principal: &'a Principal, project: &'a str) -> [&'a str; 5] {
    match principal {
        Principal::User(u) => [u.key(), "", "", "\0", project],
        Principal::ServiceAccount(sa) => [sa.name.key(), "@", sa.workspace.as_str(), "\0", project],
    }
}

/// Whether `stored` is exactly the concatenation of `parts`, without building it.
fn key_matches(stored: &str, parts: &[&str]) -> bool {
    let mut rest = stored;
    for part in parts {
        match rest.strip_prefix(part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

struct TokenEntry {
    digest: token::TokenDigest,
    principal: Principal,
    expires_at: Option<i64>,
    /// The last use recorded in the database.
    last_used_at: i64,
}

/// How [`Engine::open_with`] opens a database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep the facts behind recent decisions and token look-ups in memory. Never
    /// stale: before answering from memory, each call checks (two `pread`s, no lock)
    /// that no connection of any process has committed since the entry was read
    /// (SPEC T4). Applies to file databases; an in-memory database ignores it.
    pub decision_cache: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// A token as issued: the only time its secret is available (T2).
///
/// `Debug` does not print the secret.
pub struct IssuedToken {
    /// The token's id, by which it is listed, audited and revoked.
    pub id: TokenId,
    /// The principal it authenticates.
    pub principal: Principal,
    /// Its label.
    pub label: String,
    /// When it expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    pub(crate) secret: String,
}

impl IssuedToken {
    /// The secret, to hand to its holder once. turnstile keeps only its digest.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The secret, by value.
    pub fn into_secret(self) -> String {
        self.secret
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("label", &self.label)
            .field("expires_at", &self.expires_at)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A token as listed: everything but the secret, which is not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The token's id.
    pub id: i64,
    /// Its label.
    pub label: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was last used to authenticate (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id.0,
            label: t.label,
            created_at: to_time(t.created_at),
            last_used_at: t.last_used_at.map(to_time),
            expires_at: t.expires_at.map(to_time),
            revoked_at: t.revoked_at.map(to_time),
        }
    }
}

impl Engine {
    /// Opens (creating if needed) the database at `path`, migrating an older schema
    /// and refusing a newer one (D1).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Options::default())
    }

    /// [`open`](Self::open) with options.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use turnstile::{Engine, Options};
    /// let engine = Engine::open_with(dir.path().join("acl.db"), Options { decision_cache: true })?;
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        let store = Store::open(path.as_ref())?;
        let probe = if options.decision_cache {
            store.probe()
        } else {
            None
        };
        let cache = probe.map(|probe| Caches {
            probe,
            facts: Cache::new(),
            tokens: Cache::new(),
        });
        Ok(Self { store, cache })
    }

    /// Opens a private in-memory database, for tests and examples.
    pub fn open_in_memory() -> Result<Self> {
        Ok(Self {
            store: Store::open_in_memory()?,
            cache: None,
        })
    }

    /// The cache and the current change stamp, when the cache is on and the stamp
    /// can be read; the stamp is taken before any look-up it will vouch for.
    fn cached(&self) -> Option<(&Caches, ChangeStamp)> {
        let cache = self.cache.as_ref()?;
        Some((cache, cache.probe.stamp()?))
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
    pub fn authenticate(&self, token: &str) -> Result<Session<'_>> {
        let principal = self.principal_of_token(token, self.cached())?;
        Ok(Session {
            engine: self,
            actor: principal,
        })
    }

    /// Token to decision in one call: [`authenticate`](Self::authenticate), then
    /// [`check`](Self::check). Without the decision cache, one statement takes the
    /// token and the facts together.
    pub fn authorize(&self, token: &str, project: &str, action: Action) -> Result<bool> {
        if self.cache.is_none()
            && let Ok(name) = project.parse::<QualifiedProjectName>()
        {
            let digest = token::parse(token)?;
            let now = now_ms();
            let found = self.store.with_connection(|conn| {
                SqliteRepo { conn }.token_project_facts(
                    &digest,
                    &name.workspace,
                    name.project.key(),
                )
            })?;
            if let Some(f) = found {
                // INVARIANT: T3, every cause of failure is the same `InvalidToken`.
                if f.revoked || f.expires_at.is_some_and(|e| e <= now) || !f.principal_active {
                    return Err(Error::InvalidToken);
                }
                self.record_use(f.token_id, f.last_used_at, now);
                return Ok(decide(f.visibility, f.standing, action));
            }
            // No row: an unknown token or an unknown project. The two steps below
            // tell which, the token first, so an unauthenticated caller learns nothing.
        }
        // One stamp vouches for both look-ups.
        let cached = self.cached();
        let principal = self.principal_of_token(token, cached)?;
        let (standing, visibility) = self.facts_with(cached, Some(&principal), project)?;
        Ok(decide(visibility, standing, action))
    }

    /// Records a use of a token unless one was recorded within the last minute.
    /// Bookkeeping only: a failure to record it must not refuse a valid token.
    fn record_use(&self, token: TokenId, last_used_at: Option<i64>, now: i64) {
        if last_used_at.is_none_or(|at| now - at >= LAST_USED_RESOLUTION_MS) {
            let _ = self.store.write(|repo| repo.touch_token(token, now));
        }
    }

    /// The principal a token authenticates. `cached` is [`Engine::cached`], read once
    /// by the caller for the whole call.
    fn principal_of_token(
        &self,
        token: &str,
        cached: Option<(&Caches, ChangeStamp)>,
    ) -> Result<Principal> {
        // T1: shape and checksum first; a bad token never reaches the database.
        let digest = token::parse(token)?;
        let now = now_ms();
        let hash = u64::from_le_bytes(digest.0[..8].try_into().expect("8 of 32 bytes"));
        if let Some((cache, stamp)) = &cached
            && let Some(hit) = cache.tokens.get(stamp, hash, |e| {
                // An entry due for its last-use write is no hit: the slow path writes it.
                let fresh = now - e.last_used_at < LAST_USED_RESOLUTION_MS;
                (e.digest == digest && fresh).then(|| (e.expires_at, e.principal.clone()))
            })
        {
            let (expires_at, principal) = hit;
            if expires_at.is_some_and(|e| e <= now) {
                return Err(Error::InvalidToken);
            }
            return Ok(principal);
        }
        let found = self
            .store
            .with_connection(|conn| SqliteRepo { conn }.token_by_digest(&digest))?;
        let Some(found) = found else {
            return Err(Error::InvalidToken);
        };
        let t = &found.token;
        // INVARIANT: T3, every cause of failure is the same `InvalidToken`.
        if t.revoked_at.is_some()
            || t.expires_at.is_some_and(|e| e <= now)
            || !found.principal_active
        {
            return Err(Error::InvalidToken);
        }
        match t
            .last_used_at
            .filter(|at| now - at < LAST_USED_RESOLUTION_MS)
        {
            Some(last_used_at) => {
                if let Some((cache, stamp)) = &cached {
                    let entry = TokenEntry {
                        digest,
                        principal: found.principal.clone(),
                        expires_at: t.expires_at,
                        last_used_at,
                    };
                    cache.tokens.insert(stamp, hash, entry);
                }
            }
            // The write changes the stamp, so there is nothing to cache now.
            None => self.record_use(t.id, t.last_used_at, now),
        }
        Ok(found.principal)
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
                find_active_service_account(repo, full)?;
                Ok(())
            }
        })?;
        Ok(Session {
            engine: self,
            actor: principal.clone(),
        })
    }

    /// May `principal` perform `action` on `project` (`workspace/project`)? The hot
    /// path: one cached statement from names to facts, then the pure rules.
    ///
    /// Fails with `ProjectNotFound` if the project does not exist, and with
    /// `UserNotFound` or `ServiceAccountNotFound` for an unknown principal.
    pub fn check(&self, principal: &Principal, project: &str, action: Action) -> Result<bool> {
        let (standing, visibility) = self.facts(Some(principal), project)?;
        Ok(decide(visibility, standing, action))
    }

    /// May an anonymous caller perform `action` on `project`? Only public projects
    /// are viewable (R4).
    pub fn check_anonymous(&self, project: &str, action: Action) -> Result<bool> {
        let (standing, visibility) = self.facts(None, project)?;
        Ok(decide(visibility, standing, action))
    }

    /// The effective role of `principal` on `project` and the rule that gave it, or
    /// `None` for no access.
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
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn explain(&self, principal: &Principal, project: &str) -> Result<Option<Access>> {
        let (standing, visibility) = self.facts(Some(principal), project)?;
        Ok(effective_access(visibility, standing))
    }

    /// The effective role of an anonymous caller on `project`: viewer on a public
    /// project (R4), else `None`.
    pub fn explain_anonymous(&self, project: &str) -> Result<Option<Access>> {
        let (standing, visibility) = self.facts(None, project)?;
        Ok(effective_access(visibility, standing))
    }

    fn facts(
        &self,
        principal: Option<&Principal>,
        project: &str,
    ) -> Result<(Standing, Visibility)> {
        self.facts_with(self.cached(), principal, project)
    }

    /// The facts of `principal` on `project`, from the cache when `cached` vouches
    /// for an entry, else from storage.
    fn facts_with(
        &self,
        cached: Option<(&Caches, ChangeStamp)>,
        principal: Option<&Principal>,
        project: &str,
    ) -> Result<(Standing, Visibility)> {
        let (Some(principal), Some((cache, stamp))) = (principal, cached) else {
            return self.facts_from_storage(principal, project);
        };
        let parts = facts_key_parts(principal, project);
        let hash = cache.facts.hash(parts);
        let hit = cache.facts.get(&stamp, hash, |e| {
            key_matches(&e.key, &parts).then_some((e.standing, e.visibility))
        });
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let (standing, visibility) = self.facts_from_storage(Some(principal), project)?;
        let entry = FactsEntry {
            key: parts.concat().into_boxed_str(),
            standing,
            visibility,
        };
        cache.facts.insert(&stamp, hash, entry);
        Ok((standing, visibility))
    }

    fn facts_from_storage(
        &self,
        principal: Option<&Principal>,
        project: &str,
    ) -> Result<(Standing, Visibility)> {
        let name: QualifiedProjectName = project.parse()?;
        let facts = self.store.with_connection(|conn| {
            SqliteRepo { conn }.project_facts(principal, &name.workspace, name.project.key())
        })?;
        let facts = facts.ok_or_else(|| Error::ProjectNotFound {
            project: name.to_string(),
        })?;
        let standing = facts.standing.ok_or_else(|| match principal {
            Some(Principal::ServiceAccount(sa)) => Error::ServiceAccountNotFound {
                account: sa.to_string(),
            },
            Some(Principal::User(u)) => Error::UserNotFound {
                user: u.to_string(),
            },
            // An anonymous caller always has a standing: `Standing::Anonymous`.
            None => Error::ProjectNotFound {
                project: name.to_string(),
            },
        })?;
        Ok((standing, facts.visibility))
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
        let summary = self
            .store
            .write(|repo| crate::snapshot::import(repo, snapshot, now, &mut progress))?;
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

// A compile-time proof that an Engine can be shared across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
};
