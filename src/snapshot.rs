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

use std::sync::mpsc::{Receiver, Sender, SyncSender};

use serde_json::json;

use crate::audit::{APPLICATION, NewAuditEvent, Outcome};
use crate::domain::description::ProjectDescription;
use crate::domain::invariants;
use crate::domain::names::{
    KeyAllocator, ProjectKey, ProjectName, ServiceAccountName, Username, WorkspaceName,
};
use crate::error::{Error, Result};
use crate::repo::{NewProject, Repository, ServiceAccountId, UserId, WorkspaceId};

/// Projects checked, sent and written together: a batch's names, keys and
/// descriptions are checked first, then its grants (the order in which a bad
/// snapshot's first error is found, and so which error it fails with).
const IMPORT_BATCH: usize = 1024;

/// Batches the planner may run ahead of the writer: enough to keep both busy,
/// few enough that the snapshot's checked form never sits in memory whole.
const PLANNED_AHEAD: usize = 4;

/// Applies a snapshot through `repo`, inside the caller's transaction. `progress` is
/// called with (projects done, projects in all) as projects are written.
///
/// Two threads share the work: a planner parses and checks the snapshot in document
/// order (every name, N1–N7, A4, A5, A7, S2, the grants' duplicates), allocates keys
/// and resolves grants to positions, with no database; this thread writes what it
/// is handed and makes the few checks that need the database (a workspace that
/// exists, a member who is no user). The first error either meets ends the import
/// and is the error importing in document order meets first.
pub(crate) fn import<R: Repository + ?Sized>(
    repo: &R,
    snapshot: &Snapshot,
    now: i64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ImportSummary> {
    std::thread::scope(|scope| {
        let (sender, steps) = std::sync::mpsc::sync_channel(PLANNED_AHEAD);
        // Written batches go back to the planner to be freed there: freeing another
        // thread's allocations is slow in the allocator, and the writer is the
        // import's critical path.
        let (spent, returned) = std::sync::mpsc::channel();
        let planner = std::thread::Builder::new()
            .name("turnstile-import".into())
            .spawn_scoped(scope, move || plan(snapshot, &sender, &returned))?;
        let applied = apply(repo, &steps, spent, snapshot, now, progress);
        // A planner still sending sees the writer gone and stops.
        drop(steps);
        if let Err(panic) = planner.join() {
            std::panic::resume_unwind(panic);
        }
        applied
    })
}

/// What the planner hands the writer, in document order.
enum Step {
    /// The snapshot's users; always the first step.
    Users(Vec<Username>),
    /// A workspace (its index in the snapshot) to create, with its members.
    Workspace {
        index: usize,
        name: WorkspaceName,
        members: Vec<(Username, WorkspaceRole)>,
    },
    /// The service accounts of the workspace last created.
    Accounts(Vec<ServiceAccountName>),
    /// Projects of the workspace last created, with their grants.
    Batch(Batch),
    /// The workspace last created is complete.
    WorkspaceDone,
    /// The first check that failed: the import fails with it.
    Failed(Error),
    /// The whole snapshot was checked; always the last step.
    Done,
}

/// Projects `start..start + names.len()` of a workspace, checked.
struct Batch {
    start: usize,
    names: Vec<ProjectName>,
    keys: Vec<ProjectKey>,
    descriptions: Vec<ProjectDescription>,
    /// Each project's user grants, project after project: (member position, role).
    user_grants: Vec<(u32, ProjectRole)>,
    /// The same for service accounts: (service account position, role).
    sa_grants: Vec<(u32, ProjectRole)>,
    /// Where each project's grants end in `user_grants` and `sa_grants`.
    ends: Vec<(usize, usize)>,
}

/// Why the planner stopped before the end.
enum Stop {
    Failed(Error),
    /// The writer stopped first (a storage error): nobody is listening.
    WriterGone,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// The planner: sends the steps of `snapshot` to `out`, then `Done` or `Failed`, and
/// frees the batches the writer hands back until the writer is done.
fn plan(snapshot: &Snapshot, out: &SyncSender<Step>, returned: &Receiver<Batch>) {
    let last = match plan_steps(snapshot, out, returned) {
        Ok(()) => Step::Done,
        Err(Stop::Failed(e)) => Step::Failed(e),
        Err(Stop::WriterGone) => return,
    };
    let _ = out.send(last);
    returned.iter().for_each(drop);
}

fn send(out: &SyncSender<Step>, step: Step) -> std::result::Result<(), Stop> {
    out.send(step).map_err(|_| Stop::WriterGone)
}

fn plan_steps(
    snapshot: &Snapshot,
    out: &SyncSender<Step>,
    returned: &Receiver<Batch>,
) -> std::result::Result<(), Stop> {
    if snapshot.version != SNAPSHOT_VERSION {
        return Err(
            Error::invalid_value("snapshot version", &snapshot.version.to_string(), "1").into(),
        );
    }
    let users = snapshot
        .users
        .iter()
        .map(|name| name.parse())
        .collect::<Result<Vec<Username>>>()?;
    send(out, Step::Users(users))?;
    for (index, ws_snap) in snapshot.workspaces.iter().enumerate() {
        let ws_name: WorkspaceName = ws_snap.name.parse()?;
        // Members: the writer looks each one up (a member who is no user), so the
        // members before a bad one are sent before its error.
        let mut members = Vec::with_capacity(ws_snap.members.len());
        let mut member_by_key: HashMap<String, u32> = HashMap::with_capacity(members.capacity());
        let mut bad_member = None;
        for (name, role) in &ws_snap.members {
            let name: Username = match name.parse() {
                Ok(name) => name,
                Err(e) => {
                    bad_member = Some(e);
                    break;
                }
            };
            // Keys are case-sensitive in the document, names are not (N2).
            if member_by_key.contains_key(name.key()) {
                bad_member = Some(Error::UserAlreadyInvited {
                    user: name.to_string(),
                    workspace: ws_name.to_string(),
                });
                break;
            }
            member_by_key.insert(name.key().to_owned(), index_of(members.len()));
            members.push((name, *role));
        }
        let admins = members
            .iter()
            .filter(|(_, r)| *r == WorkspaceRole::Admin)
            .count();
        send(
            out,
            Step::Workspace {
                index,
                name: ws_name.clone(),
                members,
            },
        )?;
        if let Some(e) = bad_member {
            return Err(e.into());
        }
        // A4: at least one admin.
        invariants::keeps_an_admin(&ws_name, u32::try_from(admins).unwrap_or(u32::MAX))?;

        // Service accounts, and S2: at most the limit active.
        let active = ws_snap.service_accounts.iter().filter(|s| s.active).count();
        invariants::within_service_account_limit(
            &ws_name,
            u32::try_from(active).unwrap_or(u32::MAX),
            ws_snap.service_account_limit,
        )?;
        let mut accounts = Vec::with_capacity(ws_snap.service_accounts.len());
        let mut account_by_key: HashMap<String, u32> = HashMap::with_capacity(accounts.capacity());
        for sa in &ws_snap.service_accounts {
            let name: ServiceAccountName = sa.name.parse()?;
            if account_by_key.contains_key(name.key()) {
                return Err(Error::ServiceAccountAlreadyExists {
                    account: format!("{name}@{ws_name}"),
                }
                .into());
            }
            account_by_key.insert(name.key().to_owned(), index_of(accounts.len()));
            accounts.push(name);
        }
        send(out, Step::Accounts(accounts))?;

        let mut projects = ProjectChecks::new(&ws_name, ws_snap, member_by_key, account_by_key)?;
        for start in (0..ws_snap.projects.len()).step_by(IMPORT_BATCH) {
            returned.try_iter().for_each(drop);
            send(out, Step::Batch(projects.batch(start)?))?;
        }
        send(out, Step::WorkspaceDone)?;
    }
    Ok(())
}

/// The planner's state over one workspace's projects.
struct ProjectChecks<'s> {
    ws_name: &'s WorkspaceName,
    ws_snap: &'s WorkspaceSnapshot,
    /// Folded names so far (N3) and skeletons with their project's position (N7). The
    /// workspace is new, so its projects can clash or look alike only among themselves.
    names: HashSet<String>,
    skeletons: HashMap<String, usize>,
    keys: KeyAllocator,
    explicit_keys: std::vec::IntoIter<ProjectKey>,
    members: Grantees<'s>,
    accounts: Grantees<'s>,
}

/// The workspace's members, or its service accounts, as its grants name them.
struct Grantees<'s> {
    /// Grants name them as the document spells them: a spelling the workspace's own
    /// list uses is found without parsing it again.
    by_spelling: HashMap<&'s str, u32>,
    /// Their folded names (N2), for any other spelling.
    by_key: HashMap<String, u32>,
    /// The project (its position + 1) that last granted each a role.
    granted: Vec<usize>,
}

impl<'s> Grantees<'s> {
    fn new(spellings: impl Iterator<Item = &'s str>, by_key: HashMap<String, u32>) -> Self {
        Self {
            by_spelling: spellings
                .enumerate()
                .map(|(i, name)| (name, index_of(i)))
                .collect(),
            granted: vec![0; by_key.len()],
            by_key,
        }
    }

    /// The position of the one `spelled` names; `folded` gives the folded name of a
    /// spelling the list does not use.
    fn find(&self, spelled: &str, folded: impl FnOnce() -> Result<String>) -> Result<Option<u32>> {
        Ok(match self.by_spelling.get(spelled) {
            Some(&at) => Some(at),
            None => self.by_key.get(&folded()?).copied(),
        })
    }

    /// Notes a grant to the one at `at` by the project marked `mark`; `false` if
    /// that project granted it a role already.
    fn grant_once(&mut self, at: u32, mark: usize) -> bool {
        let last = &mut self.granted[at as usize];
        let first = *last != mark;
        *last = mark;
        first
    }
}

impl<'s> ProjectChecks<'s> {
    /// Claims the workspace's explicit keys, before any key is generated.
    fn new(
        ws_name: &'s WorkspaceName,
        ws_snap: &'s WorkspaceSnapshot,
        member_by_key: HashMap<String, u32>,
        account_by_key: HashMap<String, u32>,
    ) -> Result<Self> {
        let projects = ws_snap.projects.len();
        let mut keys = KeyAllocator::default();
        keys.reserve(projects);
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
        Ok(Self {
            ws_name,
            ws_snap,
            names: HashSet::with_capacity(projects),
            skeletons: HashMap::with_capacity(projects),
            keys,
            explicit_keys: explicit_keys.into_iter(),
            members: Grantees::new(ws_snap.members.keys().map(String::as_str), member_by_key),
            accounts: Grantees::new(
                ws_snap.service_accounts.iter().map(|sa| sa.name.as_str()),
                account_by_key,
            ),
        })
    }

    /// Checks the batch of projects that begins at `start`.
    fn batch(&mut self, start: usize) -> Result<Batch> {
        let ws_name = self.ws_name;
        let ws_snap = self.ws_snap;
        let range = start..(start + IMPORT_BATCH).min(ws_snap.projects.len());
        let mut batch = Batch {
            start,
            names: Vec::with_capacity(range.len()),
            keys: Vec::with_capacity(range.len()),
            descriptions: Vec::with_capacity(range.len()),
            user_grants: Vec::new(),
            sa_grants: Vec::new(),
            ends: Vec::with_capacity(range.len()),
        };
        for i in range.clone() {
            let p = &ws_snap.projects[i];
            let name: ProjectName = p.name.parse()?;
            if !self.names.insert(name.key().to_owned()) {
                return Err(Error::ProjectAlreadyExists {
                    project: format!("{ws_name}/{name}"),
                });
            }
            // INVARIANT: N7, no two projects of a workspace share a skeleton.
            if let Some(&other) = self.skeletons.get(name.skeleton()) {
                let other = &ws_snap.projects[other].name;
                let other = other
                    .parse::<ProjectName>()
                    .map_or(other.clone(), |n| n.to_string());
                return Err(Error::ProjectNameConfusable {
                    project: format!("{ws_name}/{name}"),
                    existing: format!("{ws_name}/{other}"),
                });
            }
            self.skeletons.insert(name.skeleton().to_owned(), i);
            batch.descriptions.push(p.description.parse()?);
            invariants::visibility_allowed(ws_name, p.visibility, ws_snap.allow_public_projects)?;
            batch.keys.push(match p.key {
                Some(_) => self
                    .explicit_keys
                    .next()
                    .expect("one explicit key per project that gave one"),
                None => self.keys.allocate(&ProjectKey::from_name(&name)),
            });
            batch.names.push(name);
        }
        for i in range {
            let p = &ws_snap.projects[i];
            let mark = i + 1;
            let project_name = || format!("{ws_name}/{}", p.name);
            for (user, role) in &p.members {
                let found = self
                    .members
                    .find(user, || Ok(user.parse::<Username>()?.key().to_owned()))?;
                // INVARIANT: A7, only workspace members hold grants.
                let Some(m) = found else {
                    invariants::may_hold_grant(&user.parse()?, ws_name, false)?;
                    continue;
                };
                if !self.members.grant_once(m, mark) {
                    return Err(Error::UserAlreadyHasAccess {
                        user: user.parse::<Username>()?.to_string(),
                        project: project_name(),
                        role: *role,
                    });
                }
                batch.user_grants.push((m, *role));
            }
            for (sa, role) in &p.service_accounts {
                let found = self.accounts.find(sa, || {
                    Ok(sa.parse::<ServiceAccountName>()?.key().to_owned())
                })?;
                let Some(a) = found else {
                    let sa: ServiceAccountName = sa.parse()?;
                    return Err(Error::ServiceAccountNotFound {
                        account: format!("{sa}@{ws_name}"),
                    });
                };
                if !self.accounts.grant_once(a, mark) {
                    let sa: ServiceAccountName = sa.parse()?;
                    return Err(Error::ServiceAccountAlreadyHasAccess {
                        account: format!("{sa}@{ws_name}"),
                        project: project_name(),
                        role: *role,
                    });
                }
                batch.sa_grants.push((a, *role));
            }
            batch
                .ends
                .push((batch.user_grants.len(), batch.sa_grants.len()));
        }
        Ok(batch)
    }
}

/// A position in a workspace's members or service accounts, which are far fewer
/// than 2³² (a snapshot that large would not fit in memory).
fn index_of(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 members or service accounts")
}

/// The workspace the writer is filling.
struct Current<'s> {
    snap: &'s WorkspaceSnapshot,
    name: WorkspaceName,
    id: WorkspaceId,
    members: Vec<UserId>,
    accounts: Vec<ServiceAccountId>,
}

/// The writer: applies the planner's steps through `repo`.
fn apply<R: Repository + ?Sized>(
    repo: &R,
    steps: &Receiver<Step>,
    spent: Sender<Batch>,
    snapshot: &Snapshot,
    now: i64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ImportSummary> {
    // The planner ends with `Done` or `Failed`; a channel that closes before either,
    // or a step out of order, is a planner that broke, never a finished import.
    let broken = || Error::from(std::io::Error::other("the import's planner stopped early"));
    let next = || steps.recv().map_err(|_| broken());
    let mut summary = ImportSummary::default();
    let total: usize = snapshot.workspaces.iter().map(|w| w.projects.len()).sum();
    let mut done = 0;

    let users = match next()? {
        Step::Users(users) => users,
        Step::Failed(e) => return Err(e),
        _ => return Err(broken()),
    };
    let mut user_ids: HashMap<&str, UserId> = HashMap::with_capacity(users.len());
    for name in &users {
        if user_ids.contains_key(name.key()) {
            continue;
        }
        let id = match repo.user(name)? {
            Some(existing) => existing.id,
            None => {
                summary.users += 1;
                repo.insert_user(name, now)?
            }
        };
        user_ids.insert(name.key(), id);
    }

    let mut current: Option<Current<'_>> = None;
    let mut user_grants = Vec::new();
    let mut sa_grants = Vec::new();
    loop {
        match next()? {
            Step::Users(_) => return Err(broken()),
            Step::Workspace {
                index,
                name,
                members,
            } => {
                let snap = snapshot.workspaces.get(index).ok_or_else(broken)?;
                if repo.workspace(&name)?.is_some() {
                    return Err(Error::WorkspaceAlreadyExists {
                        workspace: name.to_string(),
                    });
                }
                let id = repo.insert_workspace(&name, now)?;
                repo.update_workspace_settings(
                    id,
                    snap.allow_public_projects,
                    snap.service_account_limit,
                )?;
                summary.workspaces += 1;
                let mut ids = Vec::with_capacity(members.len());
                for (user, role) in &members {
                    let user_id =
                        match user_ids.get(user.key()) {
                            Some(id) => *id,
                            None => repo.user(user)?.map(|u| u.id).ok_or_else(|| {
                                Error::UserNotFound {
                                    user: user.to_string(),
                                }
                            })?,
                        };
                    repo.put_workspace_member(id, user_id, *role)?;
                    ids.push(user_id);
                    summary.members += 1;
                }
                current = Some(Current {
                    snap,
                    name,
                    id,
                    members: ids,
                    accounts: Vec::new(),
                });
            }
            Step::Accounts(accounts) => {
                let ws = current.as_mut().ok_or_else(broken)?;
                for (name, sa) in accounts.iter().zip(&ws.snap.service_accounts) {
                    ws.accounts
                        .push(repo.insert_service_account(ws.id, name, sa.active, now)?);
                    summary.service_accounts += 1;
                }
            }
            Step::Batch(b) => {
                let ws = current.as_ref().ok_or_else(broken)?;
                let projects = ws
                    .snap
                    .projects
                    .get(b.start..b.start + b.names.len())
                    .ok_or_else(broken)?;
                let new: Vec<NewProject<'_>> = projects
                    .iter()
                    .zip(&b.names)
                    .zip(&b.keys)
                    .zip(&b.descriptions)
                    .map(|(((p, name), key), description)| NewProject {
                        workspace_id: ws.id,
                        name,
                        key,
                        visibility: p.visibility,
                        description,
                    })
                    .collect();
                let ids = repo.insert_projects(&new, now)?;
                user_grants.clear();
                sa_grants.clear();
                let (mut user_from, mut sa_from) = (0, 0);
                for (project, &(user_to, sa_to)) in ids.into_iter().zip(&b.ends) {
                    // In primary-key order, so that each row lands at its table's end.
                    let first = user_grants.len();
                    for &(m, role) in b.user_grants.get(user_from..user_to).ok_or_else(broken)? {
                        let user = *ws.members.get(m as usize).ok_or_else(broken)?;
                        user_grants.push((project, user, role));
                    }
                    user_grants[first..].sort_unstable_by_key(|g| g.1);
                    let first = sa_grants.len();
                    for &(a, role) in b.sa_grants.get(sa_from..sa_to).ok_or_else(broken)? {
                        let account = *ws.accounts.get(a as usize).ok_or_else(broken)?;
                        sa_grants.push((project, account, role));
                    }
                    sa_grants[first..].sort_unstable_by_key(|g| g.1);
                    (user_from, sa_from) = (user_to, sa_to);
                }
                repo.insert_user_grants(&user_grants)?;
                repo.insert_service_account_grants(&sa_grants)?;
                summary.grants += user_grants.len() + sa_grants.len();
                summary.projects += b.names.len();
                done += b.names.len();
                progress(done, total);
                drop(new);
                // Freed by the planner, or here if it has finished.
                if let Err(back) = spent.send(b) {
                    drop(back);
                }
            }
            Step::WorkspaceDone => {
                let ws = current.take().ok_or_else(broken)?;
                repo.append_audit(&NewAuditEvent {
                    at: now,
                    workspace: Some(ws.name.as_str()),
                    actor: APPLICATION,
                    action: "workspace.import",
                    target: ws.name.as_str(),
                    outcome: Outcome::Ok,
                    details: json!({
                        "members": ws.snap.members.len(),
                        "service_accounts": ws.snap.service_accounts.len(),
                        "projects": ws.snap.projects.len(),
                    }),
                })?;
            }
            Step::Failed(e) => return Err(e),
            Step::Done => break,
        }
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
