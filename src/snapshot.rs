//! Bulk import and export: the whole access model as one serde document.
//!
//! [`Engine::import`](crate::Engine::import) applies a [`Snapshot`] in one transaction
//! (all or nothing, E3), checking every name (N1–N6) and every invariant a management
//! call would (A4, A5, A7, S2, R7); [`Engine::export`](crate::Engine::export) writes the
//! same format back. Token secrets are never part of it (T2): an imported service
//! account has no token until an admin issues one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::roles::{ProjectRole, Visibility, WorkspaceRole};

/// The version of the snapshot format this build reads and writes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Users, workspaces, their members, service accounts, projects and grants.
///
/// ```
/// use turnstile::{Engine, Snapshot};
/// let doc = r#"{
///   "version": 1,
///   "users": ["alice", "bob"],
///   "workspaces": [{
///     "name": "ml-team",
///     "members": { "alice": "admin", "bob": "member" },
///     "service_accounts": [{ "name": "cicd" }],
///     "projects": [{
///       "name": "classification",
///       "visibility": "private",
///       "members": { "bob": "contributor" },
///       "service_accounts": { "cicd": "viewer" }
///     }]
///   }]
/// }"#;
/// let snapshot: Snapshot = serde_json::from_str(doc).unwrap();
/// let engine = Engine::open_in_memory()?;
/// let summary = engine.import(&snapshot)?;
/// assert_eq!(summary.projects, 1);
/// assert!(engine.check(&"bob".parse()?, "ml-team/classification", turnstile::Action::Edit)?);
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Format version; [`SNAPSHOT_VERSION`].
    #[serde(default = "default_version")]
    pub version: u32,
    /// Users to create; existing users of the same name are reused.
    #[serde(default)]
    pub users: Vec<String>,
    /// Workspaces to create, with everything in them.
    #[serde(default)]
    pub workspaces: Vec<WorkspaceSnapshot>,
}

impl Default for Snapshot {
    /// An empty snapshot of the current version.
    fn default() -> Self {
        Self {
            version: SNAPSHOT_VERSION,
            users: Vec::new(),
            workspaces: Vec::new(),
        }
    }
}

fn default_version() -> u32 {
    SNAPSHOT_VERSION
}

fn default_limit() -> u32 {
    50
}

fn default_true() -> bool {
    true
}

/// One workspace in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSnapshot {
    /// The workspace name (N1).
    pub name: String,
    /// Whether projects may be public (A5).
    #[serde(default)]
    pub allow_public_projects: bool,
    /// The most active service accounts at once (S2).
    #[serde(default = "default_limit")]
    pub service_account_limit: u32,
    /// Username → workspace role; at least one admin (A4).
    #[serde(default, deserialize_with = "unique_keys")]
    pub members: BTreeMap<String, WorkspaceRole>,
    /// The workspace's service accounts.
    #[serde(default)]
    pub service_accounts: Vec<ServiceAccountSnapshot>,
    /// The workspace's projects.
    #[serde(default)]
    pub projects: Vec<ProjectSnapshot>,
}

/// One service account in a [`WorkspaceSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountSnapshot {
    /// The short name (N2), without `@workspace`.
    pub name: String,
    /// `false` for a deactivated account.
    #[serde(default = "default_true")]
    pub active: bool,
}

/// One project in a [`WorkspaceSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSnapshot {
    /// The project name (N3), without `workspace/`.
    pub name: String,
    /// The key (N4); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The visibility; `private` when absent.
    #[serde(default = "default_visibility")]
    pub visibility: Visibility,
    /// The description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Username → explicit project role; every one a workspace member (A7).
    #[serde(default, deserialize_with = "unique_keys")]
    pub members: BTreeMap<String, ProjectRole>,
    /// Service account short name → explicit project role.
    #[serde(default, deserialize_with = "unique_keys")]
    pub service_accounts: BTreeMap<String, ProjectRole>,
}

fn default_visibility() -> Visibility {
    Visibility::Private
}

/// A map whose document repeats no key: `{"a": "admin", "a": "member"}` is an error
/// naming `a`, not a silent "last one wins".
fn unique_keys<'de, D, V>(deserializer: D) -> std::result::Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of names to roles")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "key `{}` appears twice",
                        crate::domain::names::echo(&key)
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(Unique(std::marker::PhantomData))
}

/// What an import created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Users created (existing ones are reused and not counted).
    pub users: usize,
    /// Workspaces created.
    pub workspaces: usize,
    /// Memberships created.
    pub members: usize,
    /// Service accounts created.
    pub service_accounts: usize,
    /// Projects created.
    pub projects: usize,
    /// Explicit grants created, users' and service accounts'.
    pub grants: usize,
}

// A seeded fast hash: a bulk import hashes every project's name, skeleton and key,
// and SipHash was a tenth of its time.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use serde_json::json;

use crate::audit::{APPLICATION, NewAuditEvent, Outcome};
use crate::domain::description::ProjectDescription;
use crate::domain::invariants;
use crate::domain::names::{
    KeyAllocator, ProjectKey, ProjectName, ServiceAccountName, Username, WorkspaceName,
};
use crate::error::{Error, Result};
use crate::repo::{NewProject, Repository, ServiceAccountId, UserId};

/// Projects validated and written together by [`import`].
const IMPORT_BATCH: usize = 1024;

/// Applies a snapshot through `repo`, inside the caller's transaction. `progress` is
/// called with (projects done, projects in all) as projects are written.
pub(crate) fn import<R: Repository + ?Sized>(
    repo: &R,
    snapshot: &Snapshot,
    now: i64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ImportSummary> {
    if snapshot.version != SNAPSHOT_VERSION {
        return Err(Error::invalid_value(
            "snapshot version",
            &snapshot.version.to_string(),
            "1",
        ));
    }
    let mut summary = ImportSummary::default();
    let total: usize = snapshot.workspaces.iter().map(|w| w.projects.len()).sum();
    let mut done = 0;

    let mut users: HashMap<String, UserId> = HashMap::new();
    for name in &snapshot.users {
        let name: Username = name.parse()?;
        let id = match repo.user(&name)? {
            Some(existing) => existing.id,
            None => {
                summary.users += 1;
                repo.insert_user(&name, now)?
            }
        };
        users.insert(name.key().to_owned(), id);
    }

    for ws_snap in &snapshot.workspaces {
        let ws_name: WorkspaceName = ws_snap.name.parse()?;
        if repo.workspace(&ws_name)?.is_some() {
            return Err(Error::WorkspaceAlreadyExists {
                workspace: ws_name.to_string(),
            });
        }
        let ws = repo.insert_workspace(&ws_name, now)?;
        repo.update_workspace_settings(
            ws,
            ws_snap.allow_public_projects,
            ws_snap.service_account_limit,
        )?;
        summary.workspaces += 1;

        // Members, and A4: at least one admin.
        let mut members: HashMap<String, UserId> = HashMap::new();
        for (name, role) in &ws_snap.members {
            let name: Username = name.parse()?;
            // Keys are case-sensitive in the document, names are not (N2).
            if members.contains_key(name.key()) {
                return Err(Error::UserAlreadyInvited {
                    user: name.to_string(),
                    workspace: ws_name.to_string(),
                });
            }
            let id = match users.get(name.key()) {
                Some(id) => *id,
                None => repo
                    .user(&name)?
                    .map(|u| u.id)
                    .ok_or_else(|| Error::UserNotFound {
                        user: name.to_string(),
                    })?,
            };
            repo.put_workspace_member(ws, id, *role)?;
            members.insert(name.key().to_owned(), id);
            summary.members += 1;
        }
        let admins = ws_snap
            .members
            .values()
            .filter(|r| **r == WorkspaceRole::Admin)
            .count();
        invariants::keeps_an_admin(&ws_name, u32::try_from(admins).unwrap_or(u32::MAX))?;

        // Service accounts, and S2: at most the limit active.
        let active = ws_snap.service_accounts.iter().filter(|s| s.active).count();
        invariants::within_service_account_limit(
            &ws_name,
            u32::try_from(active).unwrap_or(u32::MAX),
            ws_snap.service_account_limit,
        )?;
        let mut accounts: HashMap<String, ServiceAccountId> = HashMap::new();
        for sa in &ws_snap.service_accounts {
            let name: ServiceAccountName = sa.name.parse()?;
            if accounts.contains_key(name.key()) {
                return Err(Error::ServiceAccountAlreadyExists {
                    account: format!("{name}@{ws_name}"),
                });
            }
            let id = repo.insert_service_account(ws, &name, sa.active, now)?;
            accounts.insert(name.key().to_owned(), id);
            summary.service_accounts += 1;
        }

        // Projects and their grants. The workspace is new, so its projects can clash
        // (N3) or look alike (N7) only among themselves: both are decided here, in
        // memory, in the same pass that parses the names.
        let mut names: HashSet<String> = HashSet::with_capacity(ws_snap.projects.len());
        let mut skeletons: HashMap<String, usize> = HashMap::with_capacity(ws_snap.projects.len());
        let mut keys = KeyAllocator::default();
        let mut explicit_keys: Vec<ProjectKey> = Vec::new();
        for p in &ws_snap.projects {
            if let Some(key) = &p.key {
                let key: ProjectKey = key.parse()?;
                if !keys.claim(&key) {
                    return Err(Error::ProjectKeyCollision {
                        key: key.to_string(),
                        workspace: ws_name.to_string(),
                    });
                }
                explicit_keys.push(key);
            }
        }
        let mut explicit = explicit_keys.into_iter();
        // Validate a batch of projects, then write it with a few multi-row statements.
        for (b, batch) in ws_snap.projects.chunks(IMPORT_BATCH).enumerate() {
            let mut parsed: Vec<(ProjectName, ProjectKey, ProjectDescription)> =
                Vec::with_capacity(batch.len());
            for (i, p) in batch.iter().enumerate() {
                let name: ProjectName = p.name.parse()?;
                if !names.insert(name.key().to_owned()) {
                    return Err(Error::ProjectAlreadyExists {
                        project: format!("{ws_name}/{name}"),
                    });
                }
                // INVARIANT: N7, no two projects of a workspace share a skeleton.
                if let Some(&other) = skeletons.get(name.skeleton()) {
                    let other = &ws_snap.projects[other].name;
                    let other = other
                        .parse::<ProjectName>()
                        .map_or(other.clone(), |n| n.to_string());
                    return Err(Error::ProjectNameConfusable {
                        project: format!("{ws_name}/{name}"),
                        existing: format!("{ws_name}/{other}"),
                    });
                }
                skeletons.insert(name.skeleton().to_owned(), b * IMPORT_BATCH + i);
                let description: ProjectDescription = p.description.parse()?;
                invariants::visibility_allowed(
                    &ws_name,
                    p.visibility,
                    ws_snap.allow_public_projects,
                )?;
                let key = match p.key {
                    Some(_) => explicit
                        .next()
                        .expect("one explicit key per project that gave one"),
                    None => keys.allocate(&ProjectKey::from_name(&name)),
                };
                parsed.push((name, key, description));
            }
            let new: Vec<NewProject<'_>> = batch
                .iter()
                .zip(&parsed)
                .map(|(p, (name, key, description))| NewProject {
                    workspace_id: ws,
                    name,
                    key,
                    visibility: p.visibility,
                    description,
                })
                .collect();
            let ids = repo.insert_projects(&new, now)?;
            let mut user_grants = Vec::new();
            let mut sa_grants = Vec::new();
            for (p, project) in batch.iter().zip(ids) {
                let project_name = || format!("{ws_name}/{}", p.name);
                let mut granted: HashSet<String> = HashSet::new();
                for (user, role) in &p.members {
                    let user: Username = user.parse()?;
                    if !granted.insert(user.key().to_owned()) {
                        return Err(Error::UserAlreadyHasAccess {
                            user: user.to_string(),
                            project: project_name(),
                            role: *role,
                        });
                    }
                    // INVARIANT: A7, only workspace members hold grants.
                    let id = members.get(user.key());
                    invariants::may_hold_grant(&user, &ws_name, id.is_some())?;
                    if let Some(id) = id {
                        user_grants.push((project, *id, *role));
                    }
                }
                granted.clear();
                for (sa, role) in &p.service_accounts {
                    let sa: ServiceAccountName = sa.parse()?;
                    if !granted.insert(sa.key().to_owned()) {
                        return Err(Error::ServiceAccountAlreadyHasAccess {
                            account: format!("{sa}@{ws_name}"),
                            project: project_name(),
                            role: *role,
                        });
                    }
                    let id =
                        accounts
                            .get(sa.key())
                            .ok_or_else(|| Error::ServiceAccountNotFound {
                                account: format!("{sa}@{ws_name}"),
                            })?;
                    sa_grants.push((project, *id, *role));
                }
            }
            repo.insert_user_grants(&user_grants)?;
            repo.insert_service_account_grants(&sa_grants)?;
            summary.grants += user_grants.len() + sa_grants.len();
            summary.projects += batch.len();
            done += batch.len();
            progress(done, total);
        }
        repo.append_audit(&NewAuditEvent {
            at: now,
            workspace: Some(ws_name.as_str()),
            actor: APPLICATION,
            action: "workspace.import",
            target: ws_name.as_str(),
            outcome: Outcome::Ok,
            details: json!({
                "members": ws_snap.members.len(),
                "service_accounts": ws_snap.service_accounts.len(),
                "projects": ws_snap.projects.len(),
            }),
        })?;
    }
    repo.append_audit(&NewAuditEvent {
        at: now,
        workspace: None,
        actor: APPLICATION,
        action: "import",
        target: "snapshot",
        outcome: Outcome::Ok,
        details: serde_json::to_value(summary).unwrap_or_default(),
    })?;
    Ok(summary)
}

/// Whether a snapshot is large enough that loading it without the secondary indexes
/// and rebuilding them at the end beats updating them row by row (measured: the
/// standard workload's shape, 200,000 projects).
pub(crate) fn is_bulk(snapshot: &Snapshot) -> bool {
    snapshot
        .workspaces
        .iter()
        .map(|w| w.projects.len())
        .sum::<usize>()
        >= BULK_PROJECTS
}

/// See [`is_bulk`].
const BULK_PROJECTS: usize = 50_000;

/// Reads the whole model back as a snapshot. Never includes token secrets (they are
/// not stored) nor the audit log.
pub(crate) fn export<R: Repository + ?Sized>(repo: &R) -> Result<Snapshot> {
    let users = repo.users()?.into_iter().map(|u| u.to_string()).collect();
    let mut workspaces = Vec::new();
    for ws in repo.workspaces()? {
        let members = repo
            .workspace_members(ws.id)?
            .into_iter()
            .map(|(u, r)| (u.to_string(), r))
            .collect();
        let service_accounts = repo
            .service_accounts(ws.id)?
            .into_iter()
            .map(|(name, active)| ServiceAccountSnapshot {
                name: name.to_string(),
                active,
            })
            .collect();
        let mut user_grants: HashMap<i64, BTreeMap<String, ProjectRole>> = HashMap::new();
        for (p, u, role) in repo.user_grants_in_workspace(ws.id)? {
            user_grants
                .entry(p.0)
                .or_default()
                .insert(u.to_string(), role);
        }
        let mut sa_grants: HashMap<i64, BTreeMap<String, ProjectRole>> = HashMap::new();
        for (p, sa, role) in repo.service_account_grants_in_workspace(ws.id)? {
            sa_grants
                .entry(p.0)
                .or_default()
                .insert(sa.to_string(), role);
        }
        let projects = repo
            .projects(ws.id)?
            .into_iter()
            .map(|p| ProjectSnapshot {
                name: p.name.to_string(),
                key: Some(p.key.to_string()),
                visibility: p.visibility,
                description: p.description,
                members: user_grants.remove(&p.id.0).unwrap_or_default(),
                service_accounts: sa_grants.remove(&p.id.0).unwrap_or_default(),
            })
            .collect();
        workspaces.push(WorkspaceSnapshot {
            name: ws.name.to_string(),
            allow_public_projects: ws.allow_public_projects,
            service_account_limit: ws.service_account_limit,
            members,
            service_accounts,
            projects,
        });
    }
    Ok(Snapshot {
        version: SNAPSHOT_VERSION,
        users,
        workspaces,
    })
}
