//! Model-based differential test of the management API (SPEC §3–§5, §7).
//!
//! [`Model`] is a plain in-memory reference model of SPEC §3 (effective roles), §4
//! (who may do what) and §5 (service accounts): maps and sets, no SQL, written from
//! SPEC.md and from the call-level choices documented in `src/engine.rs`, without
//! looking at the engine's rule code (`src/domain/access.rs`). A proptest runner
//! generates random sequences of management calls (every call of SPEC §7, plus
//! `revoke_service_account_token`, `set_project_description`, `service_accounts` and
//! `audit_log`), made by random actors: users, and service accounts through
//! `session_for`, through their current or a superseded token, or through a session
//! opened before a later deactivation. Names come from small pools (two workspaces,
//! four users, three service account names and three project names per workspace,
//! with case variants and a few invalid or unknown names) so that collisions happen.
//! Every call runs against both the SQLite engine and the model:
//!
//! - after every step, both succeed with the same result, or fail with the same error
//!   kind (the `Error` variant, not the message);
//! - at the end of each sequence, `check`, `check_anonymous` and `explain` agree with
//!   the model for every principal × project × action, and `session_for`,
//!   `list_projects` and `list_projects_page` for every principal.
//!
//! Run the default (1024 sequences of up to 40 calls, about 20 s in debug):
//!
//! ```text
//! cargo test --test model -- --nocapture
//! ```
//!
//! and the long version by raising the case count, best in release:
//!
//! ```text
//! PROPTEST_CASES=50000 cargo test --release --test model -- --nocapture
//! ```
//!
//! The test prints the number of sequences and steps it ran (shrinking included).
//! `MODEL_STATS=1` also prints how often each call succeeded or failed with each
//! error, and `MODEL_TRACE=1` every step. Failures are not persisted to a regression
//! file; the panic message shows the disagreement and the minimal failing sequence.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};
use turnstile::{
    Action, AuditQuery, Engine, Error, Principal, ProjectOptions, ProjectRole, RoleSource, Session,
    Visibility, WorkspaceRole, WorkspaceSettings, WorkspaceStatus,
};

/// Sequences per run unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 1024;
/// The longest sequence of calls.
const MAX_STEPS: usize = 40;
/// The longest productive prelude (see [`steps`]).
const MAX_PRELUDE: usize = 10;

// ---------------------------------------------------------------------------------
// The universe: small pools, so that names collide.
// ---------------------------------------------------------------------------------

/// Users created up front. `alice` is the first admin of `ws-a`, `bob` of `ws-b`.
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// The workspaces created up front, with their first admins.
const WORKSPACES: [(&str, &str); 2] = [("ws-a", "alice"), ("ws-b", "bob")];
const PROJECT_ROLES: [ProjectRole; 3] = [
    ProjectRole::Viewer,
    ProjectRole::Contributor,
    ProjectRole::Owner,
];
const WORKSPACE_ROLES: [WorkspaceRole; 2] = [WorkspaceRole::Admin, WorkspaceRole::Member];
const VISIBILITIES: [Visibility; 3] = [
    Visibility::Private,
    Visibility::Workspace,
    Visibility::Public,
];

/// A project name as typed: `ws/name`.
#[derive(Clone, Copy)]
struct Proj {
    ws: &'static str,
    name: &'static str,
}

impl Proj {
    fn qualified(self) -> String {
        format!("{}/{}", self.ws, self.name)
    }
}

impl fmt::Debug for Proj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ws, self.name)
    }
}

/// A service account's full name as typed: `name@ws`.
#[derive(Clone, Copy)]
struct Sa {
    ws: &'static str,
    name: &'static str,
}

impl Sa {
    fn full(self) -> String {
        format!("{}@{}", self.name, self.ws)
    }

    /// The name every spelling of this account shares.
    fn canonical(self) -> String {
        format!("{}@{}", lower(self.name), lower(self.ws))
    }
}

impl fmt::Debug for Sa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.ws)
    }
}

/// How a service account actor gets its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SaMode {
    /// `Engine::session_for` now.
    Fresh,
    /// `Engine::authenticate` with the last token issued to it (fresh if none).
    Token,
    /// `Engine::authenticate` with the first token issued to it, once a newer one was
    /// issued (S4, S5: it never works again); fresh if there is none.
    OldToken,
    /// A session opened earlier, before any later deactivation (fresh if none).
    Stale,
}

#[derive(Clone, Copy, Debug)]
enum Actor {
    User(&'static str),
    Sa(Sa, SaMode),
}

/// How `create_project` is given its workspace.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// `ws/name`.
    Qualified,
    /// `name` with `options.workspace = ws`.
    WithWorkspace,
    /// `name` alone: a service account's own workspace, an error for a user.
    Bare,
}

#[derive(Clone, Debug)]
enum Op {
    CreateProject {
        p: Proj,
        form: Form,
        visibility: Visibility,
        key: Option<&'static str>,
    },
    DeleteProject(Proj),
    AddMember(Proj, &'static str, ProjectRole),
    RemoveMember(Proj, &'static str),
    SetMemberRole(Proj, &'static str, ProjectRole),
    Invite {
        ws: &'static str,
        user: &'static str,
        role: WorkspaceRole,
        all_projects: bool,
    },
    RemoveWorkspaceMember(&'static str, &'static str),
    SetWorkspaceRole(&'static str, &'static str, WorkspaceRole),
    SetVisibility(Proj, Visibility),
    SetDescription(Proj),
    SetSettings {
        ws: &'static str,
        allow_public: Option<bool>,
        limit: Option<u32>,
    },
    CreateSa {
        ws: &'static str,
        name: &'static str,
        all_projects: bool,
    },
    DeactivateSa(Sa),
    ReactivateSa(Sa),
    IssueSaToken(Sa),
    RevokeSaToken(Sa),
    AddProjectSa(Proj, Sa, ProjectRole),
    RemoveProjectSa(Proj, Sa),
    SetProjectSaRole(Proj, Sa, ProjectRole),
    ListProjects,
    ProjectMembers(Proj),
    ProjectSas(Proj),
    WorkspaceMembers(&'static str),
    WorkspaceSas(&'static str),
    ServiceAccounts(&'static str, bool),
    WorkspaceStatus(&'static str),
    AuditLog(&'static str),
}

impl Op {
    /// The project the call names, if any.
    fn project(&self) -> Option<Proj> {
        match *self {
            Op::CreateProject { p, .. }
            | Op::DeleteProject(p)
            | Op::AddMember(p, ..)
            | Op::RemoveMember(p, ..)
            | Op::SetMemberRole(p, ..)
            | Op::SetVisibility(p, ..)
            | Op::SetDescription(p)
            | Op::AddProjectSa(p, ..)
            | Op::RemoveProjectSa(p, ..)
            | Op::SetProjectSaRole(p, ..)
            | Op::ProjectMembers(p)
            | Op::ProjectSas(p) => Some(p),
            _ => None,
        }
    }

    /// The username the call names, if any.
    fn username(&self) -> Option<&'static str> {
        match *self {
            Op::AddMember(_, u, _)
            | Op::RemoveMember(_, u)
            | Op::SetMemberRole(_, u, _)
            | Op::Invite { user: u, .. }
            | Op::RemoveWorkspaceMember(_, u)
            | Op::SetWorkspaceRole(_, u, _) => Some(u),
            _ => None,
        }
    }

    /// The workspace the call is about, as typed.
    fn workspace(&self) -> Option<&'static str> {
        match *self {
            Op::CreateProject { p, .. }
            | Op::DeleteProject(p)
            | Op::AddMember(p, ..)
            | Op::RemoveMember(p, ..)
            | Op::SetMemberRole(p, ..)
            | Op::SetVisibility(p, ..)
            | Op::SetDescription(p)
            | Op::AddProjectSa(p, ..)
            | Op::RemoveProjectSa(p, ..)
            | Op::SetProjectSaRole(p, ..)
            | Op::ProjectMembers(p)
            | Op::ProjectSas(p) => Some(p.ws),
            Op::Invite { ws, .. }
            | Op::RemoveWorkspaceMember(ws, _)
            | Op::SetWorkspaceRole(ws, ..)
            | Op::SetSettings { ws, .. }
            | Op::CreateSa { ws, .. }
            | Op::WorkspaceMembers(ws)
            | Op::WorkspaceSas(ws)
            | Op::ServiceAccounts(ws, _)
            | Op::WorkspaceStatus(ws)
            | Op::AuditLog(ws) => Some(ws),
            Op::DeactivateSa(sa)
            | Op::ReactivateSa(sa)
            | Op::IssueSaToken(sa)
            | Op::RevokeSaToken(sa) => Some(sa.ws),
            Op::ListProjects => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Step {
    actor: Actor,
    op: Op,
}

// ---------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------

/// Mostly the two workspaces; sometimes another spelling of `ws-a` (N1), or one that
/// does not exist.
fn workspace() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("ws-a"),
        6 => Just("ws-b"),
        1 => Just("WS-A"),
        1 => Just("ws-c"),
    ]
}

/// Project names, with case variants (N3), Unicode spellings of one name (`Straße`
/// and `STRASSE`), a look-alike of `proj` with a Cyrillic `р` (N7) and one invalid
/// name (too short).
fn project_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("proj"),
        2 => Just("Proj"),
        1 => Just("PROJ"),
        4 => Just("beta"),
        3 => Just("gamma"),
        2 => Just("Straße"),
        1 => Just("STRASSE"),
        1 => Just(CYRILLIC_PROJ),
        1 => Just("ab"),
    ]
}

/// `proj` with a Cyrillic `р` (U+0440) for the Latin `p`: another name (N3), but a
/// look-alike of `proj` (N7).
const CYRILLIC_PROJ: &str = "\u{440}roj";

/// The model's own N3 identity of the pool's project names: their NFKC_Casefold,
/// written out by hand from Unicode's tables, not computed by the engine's code.
fn project_key(name: &str) -> String {
    match name {
        "Straße" | "STRASSE" => "strasse".to_owned(),
        other => other.to_lowercase(),
    }
}

/// The model's own N7 classes of look-alikes among the pool's names (by key).
fn look_alike(key: &str) -> &str {
    match key {
        CYRILLIC_PROJ => "proj",
        other => other,
    }
}

fn project() -> impl Strategy<Value = Proj> {
    (workspace(), project_name()).prop_map(|(ws, name)| Proj { ws, name })
}

/// Target usernames: the four users, another spelling of one, one never created, and
/// a service account's full name, which is no username (N2, A3).
fn username() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => Just("alice"),
        3 => Just("bob"),
        3 => Just("carol"),
        3 => Just("dave"),
        1 => Just("Carol"),
        1 => Just("eve"),
        1 => Just("ci@ws-a"),
    ]
}

fn sa_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just("ci"), 1 => Just("CI"), 4 => Just("bot"), 1 => Just("etl")]
}

fn service_account() -> impl Strategy<Value = Sa> {
    let ws = prop_oneof![6 => Just("ws-a"), 6 => Just("ws-b"), 1 => Just("ws-c")];
    (ws, sa_name()).prop_map(|(ws, name)| Sa { ws, name })
}

/// A project and a service account, usually of the project's workspace (as typed).
fn project_and_account() -> impl Strategy<Value = (Proj, Sa)> {
    let same_workspace = prop::bool::weighted(0.7);
    (project(), service_account(), same_workspace).prop_map(|(p, sa, same)| {
        let sa = if same { Sa { ws: p.ws, ..sa } } else { sa };
        (p, sa)
    })
}

/// An explicit project key, or none (generated). Generated keys start with the
/// name's first ASCII letter (`P`, `B`, `G`, `S`, `R`), so only explicit keys collide
/// (N4).
fn key() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![4 => Just(None), 1 => Just(Some("KA")), 1 => Just(Some("KB"))]
}

fn project_role() -> impl Strategy<Value = ProjectRole> {
    prop::sample::select(&PROJECT_ROLES[..])
}

fn workspace_role() -> impl Strategy<Value = WorkspaceRole> {
    prop::sample::select(&WORKSPACE_ROLES[..])
}

fn visibility() -> impl Strategy<Value = Visibility> {
    prop::sample::select(&VISIBILITIES[..])
}

fn actor() -> impl Strategy<Value = Actor> {
    let mode = prop_oneof![
        Just(SaMode::Fresh),
        Just(SaMode::Token),
        Just(SaMode::OldToken),
        Just(SaMode::Stale)
    ];
    let sa = (prop_oneof![Just("ws-a"), Just("ws-b")], sa_name(), mode)
        .prop_map(|(ws, name, mode)| Actor::Sa(Sa { ws, name }, mode));
    prop_oneof![
        7 => prop::sample::select(&USERS[..]).prop_map(Actor::User),
        3 => sa,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let form = prop_oneof![
        4 => Just(Form::Qualified),
        1 => Just(Form::WithWorkspace),
        1 => Just(Form::Bare),
    ];
    prop_oneof![
        8 => (project(), form, visibility(), key()).prop_map(|(p, form, visibility, key)| {
            Op::CreateProject { p, form, visibility, key }
        }),
        2 => project().prop_map(Op::DeleteProject),
        4 => (project(), username(), project_role())
            .prop_map(|(p, u, r)| Op::AddMember(p, u, r)),
        2 => (project(), username()).prop_map(|(p, u)| Op::RemoveMember(p, u)),
        2 => (project(), username(), project_role())
            .prop_map(|(p, u, r)| Op::SetMemberRole(p, u, r)),
        5 => (workspace(), username(), workspace_role(), any::<bool>()).prop_map(
            |(ws, user, role, all_projects)| Op::Invite { ws, user, role, all_projects }
        ),
        2 => (workspace(), username()).prop_map(|(w, u)| Op::RemoveWorkspaceMember(w, u)),
        3 => (workspace(), username(), workspace_role())
            .prop_map(|(w, u, r)| Op::SetWorkspaceRole(w, u, r)),
        3 => (project(), visibility()).prop_map(|(p, v)| Op::SetVisibility(p, v)),
        1 => project().prop_map(Op::SetDescription),
        2 => (
            workspace(),
            prop::option::of(any::<bool>()),
            prop::option::of(0u32..=3),
        )
            .prop_map(|(ws, allow_public, limit)| Op::SetSettings { ws, allow_public, limit }),
        5 => (workspace(), sa_name(), any::<bool>())
            .prop_map(|(ws, name, all_projects)| Op::CreateSa { ws, name, all_projects }),
        4 => service_account().prop_map(Op::DeactivateSa),
        6 => service_account().prop_map(Op::ReactivateSa),
        2 => service_account().prop_map(Op::IssueSaToken),
        1 => service_account().prop_map(Op::RevokeSaToken),
        5 => (project_and_account(), project_role())
            .prop_map(|((p, s), r)| Op::AddProjectSa(p, s, r)),
        3 => project_and_account().prop_map(|(p, s)| Op::RemoveProjectSa(p, s)),
        3 => (project_and_account(), project_role())
            .prop_map(|((p, s), r)| Op::SetProjectSaRole(p, s, r)),
        2 => Just(Op::ListProjects),
        2 => project().prop_map(Op::ProjectMembers),
        1 => project().prop_map(Op::ProjectSas),
        1 => workspace().prop_map(Op::WorkspaceMembers),
        1 => workspace().prop_map(Op::WorkspaceSas),
        1 => (workspace(), any::<bool>()).prop_map(|(w, d)| Op::ServiceAccounts(w, d)),
        1 => workspace().prop_map(Op::WorkspaceStatus),
        1 => workspace().prop_map(Op::AuditLog),
    ]
}

/// A call that often succeeds: the first admin of a workspace invites users, creates
/// projects and service accounts, allows public projects, grants roles, deactivates
/// and reactivates service accounts, on the names most likely to exist.
fn productive_step() -> impl Strategy<Value = Step> {
    prop::sample::select(&WORKSPACES[..]).prop_flat_map(|(ws, admin)| {
        let member = prop_oneof![Just("carol"), Just("dave"), Just("alice"), Just("bob")];
        let visibility = prop_oneof![
            2 => Just(Visibility::Private),
            1 => Just(Visibility::Workspace),
        ];
        let sa = prop_oneof![Just("ci"), Just("bot")].prop_map(move |name| Sa { ws, name });
        let p = prop_oneof![Just("proj"), Just("beta")].prop_map(move |name| Proj { ws, name });
        let op = prop_oneof![
            3 => (member.clone(), workspace_role(), any::<bool>()).prop_map(
                move |(user, role, all_projects)| Op::Invite { ws, user, role, all_projects }
            ),
            6 => (project_name(), visibility, key()).prop_map(move |(name, visibility, key)| {
                Op::CreateProject {
                    p: Proj { ws, name },
                    form: Form::Qualified,
                    visibility,
                    key,
                }
            }),
            2 => (sa_name(), any::<bool>())
                .prop_map(move |(name, all_projects)| Op::CreateSa { ws, name, all_projects }),
            1 => Just(Op::SetSettings {
                ws,
                allow_public: Some(true),
                limit: None,
            }),
            1 => (1u32..=3).prop_map(move |limit| Op::SetSettings {
                ws,
                allow_public: None,
                limit: Some(limit),
            }),
            2 => (p.clone(), member.clone(), project_role())
                .prop_map(|(p, user, role)| Op::AddMember(p, user, role)),
            1 => (p.clone(), member.clone(), project_role())
                .prop_map(|(p, user, role)| Op::SetMemberRole(p, user, role)),
            1 => (p.clone(), member).prop_map(|(p, user)| Op::RemoveMember(p, user)),
            2 => (p.clone(), sa.clone(), project_role())
                .prop_map(|(p, sa, role)| Op::AddProjectSa(p, sa, role)),
            1 => (p.clone(), sa.clone(), project_role())
                .prop_map(|(p, sa, role)| Op::SetProjectSaRole(p, sa, role)),
            1 => (p, sa.clone()).prop_map(|(p, sa)| Op::RemoveProjectSa(p, sa)),
            1 => sa.clone().prop_map(Op::DeactivateSa),
            1 => sa.prop_map(Op::ReactivateSa),
        ];
        op.prop_map(move |op| Step {
            actor: Actor::User(admin),
            op,
        })
    })
}

/// A short productive prelude, so that later calls find projects, members and
/// service accounts, then random calls mixed with productive ones.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    // Half the time the actor is the first admin of the workspace the call is about,
    // so that calls get past the access checks often enough to change things.
    let random = (actor(), op(), any::<bool>()).prop_map(|(actor, op, to_admin)| {
        let admin = WORKSPACES
            .iter()
            .find(|(ws, _)| Some(*ws) == op.workspace().map(lower).as_deref())
            .map(|(_, admin)| *admin);
        match admin {
            Some(admin) if to_admin => Step {
                actor: Actor::User(admin),
                op,
            },
            _ => Step { actor, op },
        }
    });
    let mixed = prop_oneof![3 => random, 2 => productive_step()];
    (
        prop::collection::vec(productive_step(), 0..=MAX_PRELUDE),
        prop::collection::vec(mixed, 1..=MAX_STEPS - MAX_PRELUDE),
    )
        .prop_map(|(mut prelude, random)| {
            prelude.extend(random);
            prelude
        })
}

// ---------------------------------------------------------------------------------
// Results and error kinds.
// ---------------------------------------------------------------------------------

/// What a call returned, in a form both sides can produce.
#[derive(Debug, PartialEq)]
enum Out {
    Unit,
    Name(String),
    Names(Vec<String>),
    Roles(BTreeMap<String, ProjectRole>),
    WorkspaceRoles(BTreeMap<String, WorkspaceRole>),
    Accounts(Vec<(String, bool)>),
    Status(WorkspaceStatus),
    /// A token was issued (its secret is kept by the harness).
    Token,
    /// How many tokens a revocation revoked.
    Revoked(usize),
}

/// The model's errors: the names of the `turnstile::Error` variants it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InvalidName,
    InvalidProjectName,
    InvalidToken,
    ProjectNotFound,
    WorkspaceNotFound,
    ProjectAlreadyExists,
    ProjectNameConfusable,
    ProjectKeyCollision,
    UserNotFound,
    UserAlreadyHasAccess,
    UserNotExistsOrWithoutAccess,
    UserAlreadyInvited,
    UserNotInWorkspace,
    WorkspaceOrUserNotFound,
    ServiceAccountNotFound,
    ServiceAccountAlreadyExists,
    ServiceAccountAlreadyHasAccess,
    ServiceAccountNotExistsOrWithoutAccess,
    ServiceAccountActive,
    ServiceAccountLimitReached,
    VisibilityRestricted,
    PermissionDenied,
    LastAdmin,
}

/// The variant name of an engine error: its `Debug` form up to the first non-identifier
/// character (`ProjectNotFound { .. }` is `ProjectNotFound`).
fn kind_of(e: &Error) -> String {
    let debug = format!("{e:?}");
    let end = debug
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(debug.len());
    debug[..end].to_owned()
}

fn model_kind<T>(r: &Result<T, Kind>) -> Result<&T, String> {
    r.as_ref().map_err(|k| format!("{k:?}"))
}

fn engine_kind<T>(r: &Result<T, Error>) -> Result<&T, String> {
    r.as_ref().map_err(kind_of)
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------------

#[derive(Debug)]
struct MServiceAccount {
    /// The spelling given at creation.
    display: String,
    active: bool,
    /// Whether the last token issued to it still authenticates.
    token_valid: bool,
}

#[derive(Debug)]
struct MProject {
    /// The spelling given at creation (N3).
    display: String,
    /// An explicit key; generated keys never collide in this universe (they start with
    /// the name's first letter, and the explicit keys start with `K`).
    key: Option<&'static str>,
    visibility: Visibility,
    /// Explicit grants by username.
    users: BTreeMap<String, ProjectRole>,
    /// Explicit grants by service account name (lower-case).
    service_accounts: BTreeMap<String, ProjectRole>,
}

#[derive(Debug)]
struct MWorkspace {
    members: BTreeMap<String, WorkspaceRole>,
    allow_public: bool,
    limit: u32,
    /// By lower-case name.
    service_accounts: BTreeMap<String, MServiceAccount>,
    /// By lower-case name.
    projects: BTreeMap<String, MProject>,
}

impl MWorkspace {
    fn admins(&self) -> usize {
        self.members
            .values()
            .filter(|r| **r == WorkspaceRole::Admin)
            .count()
    }

    fn active_service_accounts(&self) -> u32 {
        self.service_accounts.values().filter(|s| s.active).count() as u32
    }
}

/// Who a model call is made by, or whom a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    User(String),
    /// An existing service account: its workspace and lower-case name.
    Sa {
        ws: String,
        name: String,
    },
    Anonymous,
}

/// What a workspace-level call needs (SPEC §4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum WsNeed {
    /// Create projects: any member user or active SA of the workspace.
    CreateProject,
    /// List members and SAs, read the status: any member or active SA.
    List,
    /// Members, roles, settings, SAs, the audit log: an admin user.
    Admin,
}

#[derive(Debug)]
struct Model {
    workspaces: BTreeMap<String, MWorkspace>,
}

fn project_name_valid(name: &str) -> bool {
    // N3; the pools hold no other kind of invalid name than a too short one.
    (3..=128).contains(&name.chars().count())
}

fn username_valid(name: &str) -> bool {
    // N2; the only invalid usernames in the pools are service account full names (A3).
    !name.contains('@')
}

fn user_exists(name: &str) -> bool {
    USERS.contains(&lower(name).as_str())
}

impl Model {
    fn new() -> Self {
        let workspaces = WORKSPACES
            .iter()
            .map(|(ws, admin)| {
                let w = MWorkspace {
                    members: BTreeMap::from([(admin.to_string(), WorkspaceRole::Admin)]),
                    allow_public: false,
                    limit: 50,
                    service_accounts: BTreeMap::new(),
                    projects: BTreeMap::new(),
                };
                (ws.to_string(), w)
            })
            .collect();
        Self { workspaces }
    }

    fn sa(&self, ws: &str, name: &str) -> Option<&MServiceAccount> {
        self.workspaces.get(ws)?.service_accounts.get(name)
    }

    /// T6: whether a session kept since it was opened still works. A session opened
    /// with a token (`bound`) dies once that token is not the account's live one; a
    /// session the application opened (`session_for`) has no token to die with.
    fn kept_session_live(
        &self,
        key: &str,
        bound: Option<&String>,
        secrets: &HashMap<String, String>,
    ) -> bool {
        let Some(bound) = bound else { return true };
        let (name, ws) = key.split_once('@').expect("a full name");
        secrets.get(key) == Some(bound)
            && self.sa(ws, name).is_some_and(|s| s.active && s.token_valid)
    }

    /// SPEC §3: the highest role the applicable rules give, and the first of R1–R4
    /// giving it.
    fn access(&self, who: &Who, ws_name: &str, p: &MProject) -> Option<(ProjectRole, RoleSource)> {
        let ws = &self.workspaces[ws_name];
        let mut best: Option<(ProjectRole, RoleSource)> = None;
        // Offered in rule order; only a strictly higher role replaces, so ties name
        // the earlier rule.
        let mut offer = |role: ProjectRole, source: RoleSource| {
            if best.is_none_or(|(r, _)| role > r) {
                best = Some((role, source));
            }
        };
        let public = p.visibility == Visibility::Public;
        match who {
            Who::User(u) => {
                let ws_role = ws.members.get(u);
                // R1
                if ws_role == Some(&WorkspaceRole::Admin) {
                    offer(ProjectRole::Owner, RoleSource::WorkspaceAdmin);
                }
                // R2: a user's grant counts only while a member (R7).
                if ws_role.is_some()
                    && let Some(g) = p.users.get(u)
                {
                    offer(*g, RoleSource::ExplicitGrant);
                }
                // R3
                if ws_role.is_some() && p.visibility == Visibility::Workspace {
                    offer(ProjectRole::Owner, RoleSource::WorkspaceVisibility);
                }
            }
            Who::Sa { ws: sa_ws, name } => {
                // R6: a deactivated SA has no role anywhere, not even R4's.
                if !self.sa(sa_ws, name).is_some_and(|s| s.active) {
                    return None;
                }
                // R5, R7: only its own workspace's explicit grants.
                if sa_ws == ws_name
                    && let Some(g) = p.service_accounts.get(name)
                {
                    offer(*g, RoleSource::ExplicitGrant);
                }
            }
            Who::Anonymous => {}
        }
        // R4
        if public {
            offer(ProjectRole::Viewer, RoleSource::Public);
        }
        best
    }

    /// SPEC §4's project rows.
    fn permits(
        &self,
        who: &Who,
        ws_name: &str,
        access: Option<(ProjectRole, RoleSource)>,
        action: Action,
    ) -> bool {
        let role = access.map(|(r, _)| r);
        match action {
            Action::View => role >= Some(ProjectRole::Viewer),
            Action::Edit => role >= Some(ProjectRole::Contributor),
            Action::Manage => role >= Some(ProjectRole::Owner),
            // A3: only a user who is workspace admin.
            Action::Delete => match who {
                Who::User(u) => {
                    self.workspaces[ws_name].members.get(u) == Some(&WorkspaceRole::Admin)
                }
                _ => false,
            },
        }
    }

    /// Parses a project name as typed (N3): its workspace and lower-case name.
    fn parse_project(p: Proj) -> Result<(String, String), Kind> {
        if !project_name_valid(p.name) {
            return Err(Kind::InvalidName);
        }
        Ok((lower(p.ws), project_key(p.name)))
    }

    /// A6: a project the actor cannot view does not exist for it; one it can view but
    /// not act on is `PermissionDenied`. Returns the workspace and project keys.
    fn require_project(
        &self,
        who: &Who,
        p: Proj,
        action: Action,
    ) -> Result<(String, String), Kind> {
        let (wk, pk) = Self::parse_project(p)?;
        let project = self
            .workspaces
            .get(&wk)
            .and_then(|w| w.projects.get(&pk))
            .ok_or(Kind::ProjectNotFound)?;
        let access = self.access(who, &wk, project);
        if !self.permits(who, &wk, access, Action::View) {
            return Err(Kind::ProjectNotFound);
        }
        if !self.permits(who, &wk, access, action) {
            return Err(Kind::PermissionDenied);
        }
        Ok((wk, pk))
    }

    /// A workspace-level call: an outsider gets `not_found`, as if the workspace did
    /// not exist; an insider without the right gets `PermissionDenied`.
    fn require_workspace(
        &self,
        who: &Who,
        ws: &str,
        need: WsNeed,
        not_found: Kind,
    ) -> Result<String, Kind> {
        let wk = lower(ws);
        let w = self.workspaces.get(&wk).ok_or(not_found)?;
        let (inside, admin) = match who {
            Who::User(u) => match w.members.get(u) {
                Some(role) => (true, *role == WorkspaceRole::Admin),
                None => (false, false),
            },
            Who::Sa { ws: sa_ws, name } => {
                let active = self.sa(sa_ws, name).is_some_and(|s| s.active);
                (*sa_ws == wk && active, false)
            }
            Who::Anonymous => (false, false),
        };
        if !inside {
            return Err(not_found);
        }
        if need == WsNeed::Admin && !admin {
            return Err(Kind::PermissionDenied);
        }
        Ok(wk)
    }

    fn project_mut(&mut self, wk: &str, pk: &str) -> &mut MProject {
        self.workspaces
            .get_mut(wk)
            .and_then(|w| w.projects.get_mut(pk))
            .expect("required project exists")
    }

    fn ws_mut(&mut self, wk: &str) -> &mut MWorkspace {
        self.workspaces
            .get_mut(wk)
            .expect("required workspace exists")
    }

    fn status(&self, wk: &str) -> WorkspaceStatus {
        let w = &self.workspaces[wk];
        let deactivated = w.service_accounts.values().filter(|s| !s.active).count();
        WorkspaceStatus {
            workspace: wk.to_owned(),
            admins: w.admins() as u32,
            members: (w.members.len() - w.admins()) as u32,
            projects: w.projects.len() as u32,
            active_service_accounts: w.active_service_accounts(),
            deactivated_service_accounts: deactivated as u32,
            service_account_limit: w.limit,
            allow_public_projects: w.allow_public,
        }
    }

    /// An active service account of the project's workspace (S3), as the assigning
    /// calls need it.
    fn assignable(&self, wk: &str, sa: Sa) -> Result<String, Kind> {
        let name = lower(sa.name);
        if lower(sa.ws) != wk || !self.sa(wk, &name).is_some_and(|s| s.active) {
            return Err(Kind::ServiceAccountNotFound);
        }
        Ok(name)
    }

    /// The session an actor gets (R6, T3, `Engine::session_for`).
    fn session(&self, actor: Actor, mode: SaMode) -> Result<Who, Kind> {
        match actor {
            Actor::User(u) => Ok(Who::User(lower(u))),
            Actor::Sa(sa, _) => {
                let (ws, name) = (lower(sa.ws), lower(sa.name));
                let found = self.sa(&ws, &name);
                match mode {
                    SaMode::Fresh if !found.is_some_and(|s| s.active) => {
                        Err(Kind::ServiceAccountNotFound)
                    }
                    SaMode::Token if !found.is_some_and(|s| s.active && s.token_valid) => {
                        Err(Kind::InvalidToken)
                    }
                    SaMode::OldToken => Err(Kind::InvalidToken),
                    _ => Ok(Who::Sa { ws, name }),
                }
            }
        }
    }

    /// One management call, made by `who`: its result, and its effect on success.
    fn apply(&mut self, who: &Who, op: &Op) -> Result<Out, Kind> {
        // N6: names are parsed before anything else is looked at.
        if op.project().is_some_and(|p| !project_name_valid(p.name))
            || op.username().is_some_and(|u| !username_valid(u))
        {
            return Err(Kind::InvalidName);
        }
        match *op {
            Op::CreateProject {
                p,
                form,
                visibility,
                key,
            } => {
                let ws = match (form, who) {
                    (Form::Qualified | Form::WithWorkspace, _) => lower(p.ws),
                    (Form::Bare, Who::Sa { ws, .. }) => ws.clone(),
                    (Form::Bare, _) => return Err(Kind::InvalidProjectName),
                };
                let wk = self.require_workspace(
                    who,
                    &ws,
                    WsNeed::CreateProject,
                    Kind::WorkspaceNotFound,
                )?;
                let w = self.ws_mut(&wk);
                if visibility == Visibility::Public && !w.allow_public {
                    return Err(Kind::VisibilityRestricted);
                }
                let pk = project_key(p.name);
                if w.projects.contains_key(&pk) {
                    return Err(Kind::ProjectAlreadyExists);
                }
                if w.projects.keys().any(|q| look_alike(q) == look_alike(&pk)) {
                    return Err(Kind::ProjectNameConfusable);
                }
                if key.is_some() && w.projects.values().any(|q| q.key == key) {
                    return Err(Kind::ProjectKeyCollision);
                }
                let mut project = MProject {
                    display: p.name.to_owned(),
                    key,
                    visibility,
                    users: BTreeMap::new(),
                    service_accounts: BTreeMap::new(),
                };
                // A1: the creator owns it.
                match who {
                    Who::User(u) => project.users.insert(u.clone(), ProjectRole::Owner),
                    Who::Sa { name, .. } => project
                        .service_accounts
                        .insert(name.clone(), ProjectRole::Owner),
                    Who::Anonymous => unreachable!("no anonymous sessions"),
                };
                w.projects.insert(pk, project);
                Ok(Out::Name(format!("{wk}/{}", p.name)))
            }
            Op::DeleteProject(p) => {
                let (wk, pk) = self.require_project(who, p, Action::Delete)?;
                self.ws_mut(&wk).projects.remove(&pk);
                Ok(Out::Unit)
            }
            Op::AddMember(p, user, role) => {
                let (wk, pk) = self.require_project(who, p, Action::Manage)?;
                let u = lower(user);
                if !user_exists(&u) {
                    return Err(Kind::UserNotFound);
                }
                // A7
                if !self.workspaces[&wk].members.contains_key(&u) {
                    return Err(Kind::UserNotInWorkspace);
                }
                let project = self.project_mut(&wk, &pk);
                // A8
                if project.visibility == Visibility::Workspace || project.users.contains_key(&u) {
                    return Err(Kind::UserAlreadyHasAccess);
                }
                project.users.insert(u, role);
                Ok(Out::Unit)
            }
            Op::RemoveMember(p, user) => {
                let (wk, pk) = self.require_project(who, p, Action::Manage)?;
                let u = lower(user);
                let member = self.workspaces[&wk].members.contains_key(&u);
                let project = self.project_mut(&wk, &pk);
                // A8: a member's access to a `workspace` project is no removable grant.
                if project.visibility == Visibility::Workspace && member {
                    return Err(Kind::UserNotExistsOrWithoutAccess);
                }
                project
                    .users
                    .remove(&u)
                    .ok_or(Kind::UserNotExistsOrWithoutAccess)?;
                Ok(Out::Unit)
            }
            Op::SetMemberRole(p, user, role) => {
                let (wk, pk) = self.require_project(who, p, Action::Manage)?;
                let grant = self
                    .project_mut(&wk, &pk)
                    .users
                    .get_mut(&lower(user))
                    .ok_or(Kind::UserNotExistsOrWithoutAccess)?;
                *grant = role;
                Ok(Out::Unit)
            }
            Op::Invite {
                ws,
                user,
                role,
                all_projects,
            } => {
                let wk =
                    self.require_workspace(who, ws, WsNeed::Admin, Kind::WorkspaceOrUserNotFound)?;
                let u = lower(user);
                if !user_exists(&u) {
                    return Err(Kind::WorkspaceOrUserNotFound);
                }
                let w = self.ws_mut(&wk);
                if w.members.contains_key(&u) {
                    return Err(Kind::UserAlreadyInvited);
                }
                w.members.insert(u.clone(), role);
                // A9: projects that exist now.
                if all_projects {
                    for project in w.projects.values_mut() {
                        project.users.insert(u.clone(), ProjectRole::Contributor);
                    }
                }
                Ok(Out::Unit)
            }
            Op::RemoveWorkspaceMember(ws, user) => {
                let wk = self.require_workspace(who, ws, WsNeed::Admin, Kind::WorkspaceNotFound)?;
                let u = lower(user);
                let w = self.ws_mut(&wk);
                let role = *w.members.get(&u).ok_or(Kind::UserNotInWorkspace)?;
                // A4
                if role == WorkspaceRole::Admin && w.admins() <= 1 {
                    return Err(Kind::LastAdmin);
                }
                w.members.remove(&u);
                // A7: the grants go with the membership.
                for project in w.projects.values_mut() {
                    project.users.remove(&u);
                }
                Ok(Out::Unit)
            }
            Op::SetWorkspaceRole(ws, user, role) => {
                let wk = self.require_workspace(who, ws, WsNeed::Admin, Kind::WorkspaceNotFound)?;
                let w = self.ws_mut(&wk);
                let admins = w.admins();
                let current = w
                    .members
                    .get_mut(&lower(user))
                    .ok_or(Kind::UserNotInWorkspace)?;
                // A4
                if *current == WorkspaceRole::Admin && role != WorkspaceRole::Admin && admins <= 1 {
                    return Err(Kind::LastAdmin);
                }
                *current = role;
                Ok(Out::Unit)
            }
            Op::SetVisibility(p, visibility) => {
                let (wk, pk) = self.require_project(who, p, Action::Manage)?;
                // A5
                if visibility == Visibility::Public && !self.workspaces[&wk].allow_public {
                    return Err(Kind::VisibilityRestricted);
                }
                self.project_mut(&wk, &pk).visibility = visibility;
                Ok(Out::Unit)
            }
            Op::SetDescription(p) => {
                self.require_project(who, p, Action::Manage)?;
                Ok(Out::Unit)
            }
            Op::SetSettings {
                ws,
                allow_public,
                limit,
            } => {
                let wk = self.require_workspace(who, ws, WsNeed::Admin, Kind::WorkspaceNotFound)?;
                let w = self.ws_mut(&wk);
                w.allow_public = allow_public.unwrap_or(w.allow_public);
                w.limit = limit.unwrap_or(w.limit);
                Ok(Out::Status(self.status(&wk)))
            }
            Op::CreateSa {
                ws,
                name,
                all_projects,
            } => {
                // S1
                let wk = self.require_workspace(who, ws, WsNeed::Admin, Kind::WorkspaceNotFound)?;
                let w = self.ws_mut(&wk);
                let key = lower(name);
                if w.service_accounts.contains_key(&key) {
                    return Err(Kind::ServiceAccountAlreadyExists);
                }
                // S2
                if w.active_service_accounts() >= w.limit {
                    return Err(Kind::ServiceAccountLimitReached);
                }
                let sa = MServiceAccount {
                    display: name.to_owned(),
                    active: true,
                    token_valid: true,
                };
                w.service_accounts.insert(key.clone(), sa);
                if all_projects {
                    for project in w.projects.values_mut() {
                        project
                            .service_accounts
                            .insert(key.clone(), ProjectRole::Contributor);
                    }
                }
                Ok(Out::Token)
            }
            Op::DeactivateSa(sa) => {
                let wk = self.require_workspace(
                    who,
                    sa.ws,
                    WsNeed::Admin,
                    Kind::ServiceAccountNotFound,
                )?;
                let account = self
                    .ws_mut(&wk)
                    .service_accounts
                    .get_mut(&lower(sa.name))
                    .filter(|s| s.active)
                    .ok_or(Kind::ServiceAccountNotFound)?;
                // S3: grants stay, inert; the token is revoked.
                account.active = false;
                account.token_valid = false;
                Ok(Out::Unit)
            }
            Op::ReactivateSa(sa) => {
                let wk = self.require_workspace(
                    who,
                    sa.ws,
                    WsNeed::Admin,
                    Kind::ServiceAccountNotFound,
                )?;
                let w = self.ws_mut(&wk);
                let full = w.active_service_accounts() >= w.limit;
                let account = w
                    .service_accounts
                    .get_mut(&lower(sa.name))
                    .ok_or(Kind::ServiceAccountNotFound)?;
                if account.active {
                    return Err(Kind::ServiceAccountActive);
                }
                // S2
                if full {
                    return Err(Kind::ServiceAccountLimitReached);
                }
                // S4: a new token.
                account.active = true;
                account.token_valid = true;
                Ok(Out::Token)
            }
            Op::IssueSaToken(sa) => {
                let wk = self.require_workspace(
                    who,
                    sa.ws,
                    WsNeed::Admin,
                    Kind::ServiceAccountNotFound,
                )?;
                let account = self
                    .ws_mut(&wk)
                    .service_accounts
                    .get_mut(&lower(sa.name))
                    .filter(|s| s.active)
                    .ok_or(Kind::ServiceAccountNotFound)?;
                account.token_valid = true;
                Ok(Out::Token)
            }
            Op::RevokeSaToken(sa) => {
                let wk = self.require_workspace(
                    who,
                    sa.ws,
                    WsNeed::Admin,
                    Kind::ServiceAccountNotFound,
                )?;
                let account = self
                    .ws_mut(&wk)
                    .service_accounts
                    .get_mut(&lower(sa.name))
                    .ok_or(Kind::ServiceAccountNotFound)?;
                // T5: one current token at most.
                let revoked = usize::from(account.token_valid);
                account.token_valid = false;
                Ok(Out::Revoked(revoked))
            }
            Op::AddProjectSa(p, sa, role) => {
                let (wk, pk) = self.require_project(who, p, Action::Manage)?;
                let name = self.assignable(&wk, sa)?;
                let project = self.project_mut(&wk, &pk);
                // S6
                if project.service_accounts.contains_key(&name) {
                    return Err(Kind::ServiceAccountAlreadyHasAccess);
                }
                project.service_accounts.insert(name, role);
                Ok(Out::Unit)
            }
            Op::RemoveProjectSa(p, sa) => {
                let (wk, pk) = self.require_project(who, p, Action::Manage)?;
                if lower(sa.ws) != wk {
                    return Err(Kind::ServiceAccountNotExistsOrWithoutAccess);
                }
                // S6; a deactivated account's inert grant can be removed too.
                self.project_mut(&wk, &pk)
                    .service_accounts
                    .remove(&lower(sa.name))
                    .ok_or(Kind::ServiceAccountNotExistsOrWithoutAccess)?;
                Ok(Out::Unit)
            }
            Op::SetProjectSaRole(p, sa, role) => {
                let (wk, pk) = self.require_project(who, p, Action::Manage)?;
                let name = self.assignable(&wk, sa)?;
                let grant = self
                    .project_mut(&wk, &pk)
                    .service_accounts
                    .get_mut(&name)
                    .ok_or(Kind::ServiceAccountNotExistsOrWithoutAccess)?;
                *grant = role;
                Ok(Out::Unit)
            }
            Op::ListProjects => Ok(Out::Names(self.visible_projects(who))),
            Op::ProjectMembers(p) => {
                let (wk, pk) = self.require_project(who, p, Action::View)?;
                let w = &self.workspaces[&wk];
                let project = &w.projects[&pk];
                // Explicit grants, and every member of a `workspace` project (R3), each
                // with the effective role.
                let roles = USERS
                    .iter()
                    .filter(|u| {
                        project.users.contains_key(**u)
                            || (project.visibility == Visibility::Workspace
                                && w.members.contains_key(**u))
                    })
                    .filter_map(|u| {
                        let access = self.access(&Who::User(u.to_string()), &wk, project)?;
                        Some((u.to_string(), access.0))
                    })
                    .collect();
                Ok(Out::Roles(roles))
            }
            Op::ProjectSas(p) => {
                let (wk, pk) = self.require_project(who, p, Action::View)?;
                let w = &self.workspaces[&wk];
                let roles = w.projects[&pk]
                    .service_accounts
                    .iter()
                    .filter(|(name, _)| w.service_accounts[*name].active)
                    .map(|(name, role)| {
                        let display = &w.service_accounts[name].display;
                        (format!("{display}@{wk}"), *role)
                    })
                    .collect();
                Ok(Out::Roles(roles))
            }
            Op::WorkspaceMembers(ws) => {
                let wk = self.require_workspace(who, ws, WsNeed::List, Kind::WorkspaceNotFound)?;
                Ok(Out::WorkspaceRoles(self.workspaces[&wk].members.clone()))
            }
            Op::WorkspaceSas(ws) => {
                let wk = self.require_workspace(who, ws, WsNeed::List, Kind::WorkspaceNotFound)?;
                let members = self.accounts(&wk, false).into_iter();
                Ok(Out::WorkspaceRoles(
                    members.map(|(n, _)| (n, WorkspaceRole::Member)).collect(),
                ))
            }
            Op::ServiceAccounts(ws, include_deactivated) => {
                let wk = self.require_workspace(who, ws, WsNeed::List, Kind::WorkspaceNotFound)?;
                Ok(Out::Accounts(self.accounts(&wk, include_deactivated)))
            }
            Op::WorkspaceStatus(ws) => {
                let wk = self.require_workspace(who, ws, WsNeed::List, Kind::WorkspaceNotFound)?;
                Ok(Out::Status(self.status(&wk)))
            }
            Op::AuditLog(ws) => {
                self.require_workspace(who, ws, WsNeed::Admin, Kind::WorkspaceNotFound)?;
                Ok(Out::Unit)
            }
        }
    }

    /// `(full name, active)`, sorted by full name.
    fn accounts(&self, wk: &str, include_deactivated: bool) -> Vec<(String, bool)> {
        let mut list: Vec<(String, bool)> = self.workspaces[wk]
            .service_accounts
            .values()
            .filter(|s| s.active || include_deactivated)
            .map(|s| (format!("{}@{wk}", s.display), s.active))
            .collect();
        list.sort();
        list
    }

    /// `list_projects`: every viewable project, in workspace and project-name order.
    fn visible_projects(&self, who: &Who) -> Vec<String> {
        let mut names = Vec::new();
        for (wk, w) in &self.workspaces {
            for project in w.projects.values() {
                if self.access(who, wk, project).is_some() {
                    names.push(format!("{wk}/{}", project.display));
                }
            }
        }
        names
    }

    /// Who a decision is about, or why `check` fails for an unknown principal.
    fn principal(&self, principal: &str) -> Result<Who, Kind> {
        match principal.split_once('@') {
            Some((name, ws)) => {
                let (ws, name) = (lower(ws), lower(name));
                if self.sa(&ws, &name).is_none() {
                    return Err(Kind::ServiceAccountNotFound);
                }
                Ok(Who::Sa { ws, name })
            }
            None if user_exists(principal) => Ok(Who::User(lower(principal))),
            None => Err(Kind::UserNotFound),
        }
    }

    /// `Engine::session_for`: an existing user, or an existing active SA.
    fn session_for(&self, principal: &str) -> Result<Who, Kind> {
        let who = self.principal(principal)?;
        if let Who::Sa { ws, name } = &who
            && !self.sa(ws, name).is_some_and(|s| s.active)
        {
            return Err(Kind::ServiceAccountNotFound);
        }
        Ok(who)
    }

    /// `explain`: the principal must exist; a project that does not exist is no
    /// access, exactly like one the principal cannot view (A6).
    fn explain(
        &self,
        principal: Option<&str>,
        p: Proj,
    ) -> Result<(Who, Option<(ProjectRole, RoleSource)>), Kind> {
        let (wk, pk) = Self::parse_project(p)?;
        let who = match principal {
            Some(principal) => self.principal(principal)?,
            None => Who::Anonymous,
        };
        let project = self.workspaces.get(&wk).and_then(|w| w.projects.get(&pk));
        let access = project.and_then(|project| self.access(&who, &wk, project));
        Ok((who, access))
    }

    fn check(&self, principal: Option<&str>, p: Proj, action: Action) -> Result<bool, Kind> {
        let (wk, pk) = Self::parse_project(p)?;
        let (who, access) = self.explain(principal, p)?;
        let exists = self
            .workspaces
            .get(&wk)
            .is_some_and(|w| w.projects.contains_key(&pk));
        Ok(exists && self.permits(&who, &lower(p.ws), access, action))
    }
}

// ---------------------------------------------------------------------------------
// The engine side.
// ---------------------------------------------------------------------------------

/// One call on the engine. A token it issues is put in `issued`.
fn run_engine(session: &Session<'_>, op: &Op, issued: &mut Option<String>) -> Result<Out, Error> {
    let mut token = |t: turnstile::IssuedToken| {
        *issued = Some(t.into_secret());
        Out::Token
    };
    Ok(match *op {
        Op::CreateProject {
            p,
            form,
            visibility,
            key,
        } => {
            let (name, workspace) = match form {
                Form::Qualified => (p.qualified(), None),
                Form::WithWorkspace => (p.name.to_owned(), Some(p.ws.to_owned())),
                Form::Bare => (p.name.to_owned(), None),
            };
            let options = ProjectOptions {
                workspace,
                key: key.map(str::to_owned),
                visibility: Some(visibility),
                description: None,
            };
            Out::Name(session.create_project(&name, options)?)
        }
        Op::DeleteProject(p) => {
            session.delete_project(&p.qualified())?;
            Out::Unit
        }
        Op::AddMember(p, user, role) => {
            session.add_project_member(&p.qualified(), user, role)?;
            Out::Unit
        }
        Op::RemoveMember(p, user) => {
            session.remove_project_member(&p.qualified(), user)?;
            Out::Unit
        }
        Op::SetMemberRole(p, user, role) => {
            session.set_project_member_role(&p.qualified(), user, role)?;
            Out::Unit
        }
        Op::Invite {
            ws,
            user,
            role,
            all_projects,
        } => {
            session.invite_to_workspace(ws, user, role, all_projects)?;
            Out::Unit
        }
        Op::RemoveWorkspaceMember(ws, user) => {
            session.remove_workspace_member(ws, user)?;
            Out::Unit
        }
        Op::SetWorkspaceRole(ws, user, role) => {
            session.set_workspace_role(ws, user, role)?;
            Out::Unit
        }
        Op::SetVisibility(p, visibility) => {
            session.set_project_visibility(&p.qualified(), visibility)?;
            Out::Unit
        }
        Op::SetDescription(p) => {
            session.set_project_description(&p.qualified(), "described")?;
            Out::Unit
        }
        Op::SetSettings {
            ws,
            allow_public,
            limit,
        } => {
            let settings = WorkspaceSettings {
                allow_public_projects: allow_public,
                service_account_limit: limit,
            };
            Out::Status(session.set_workspace_settings(ws, settings)?)
        }
        Op::CreateSa {
            ws,
            name,
            all_projects,
        } => token(session.create_service_account(ws, name, all_projects)?),
        Op::DeactivateSa(sa) => {
            session.deactivate_service_account(&sa.full())?;
            Out::Unit
        }
        Op::ReactivateSa(sa) => token(session.reactivate_service_account(&sa.full())?),
        Op::IssueSaToken(sa) => token(session.issue_service_account_token(&sa.full())?),
        Op::RevokeSaToken(sa) => Out::Revoked(session.revoke_service_account_token(&sa.full())?),
        Op::AddProjectSa(p, sa, role) => {
            session.add_project_service_account(&p.qualified(), &sa.full(), role)?;
            Out::Unit
        }
        Op::RemoveProjectSa(p, sa) => {
            session.remove_project_service_account(&p.qualified(), &sa.full())?;
            Out::Unit
        }
        Op::SetProjectSaRole(p, sa, role) => {
            session.set_project_service_account_role(&p.qualified(), &sa.full(), role)?;
            Out::Unit
        }
        Op::ListProjects => Out::Names(session.list_projects()?),
        Op::ProjectMembers(p) => Out::Roles(session.project_members(&p.qualified())?),
        Op::ProjectSas(p) => Out::Roles(session.project_service_accounts(&p.qualified())?),
        Op::WorkspaceMembers(ws) => Out::WorkspaceRoles(session.workspace_members(ws)?),
        Op::WorkspaceSas(ws) => Out::WorkspaceRoles(session.workspace_service_accounts(ws)?),
        Op::ServiceAccounts(ws, include_deactivated) => {
            let mut list: Vec<(String, bool)> = session
                .service_accounts(ws, include_deactivated)?
                .into_iter()
                .map(|s| (s.full_name, s.active))
                .collect();
            list.sort();
            Out::Accounts(list)
        }
        Op::WorkspaceStatus(ws) => Out::Status(session.workspace_status(ws)?),
        Op::AuditLog(ws) => {
            session.audit_log(ws, &AuditQuery::default())?;
            Out::Unit
        }
    })
}

fn setup() -> Result<common::TestEngine, Error> {
    let engine = common::engine()?;
    for user in USERS {
        engine.create_user(user)?;
    }
    for (ws, admin) in WORKSPACES {
        engine.create_workspace(ws, admin)?;
    }
    Ok(engine)
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

fn unexpected(e: Error) -> TestCaseError {
    fail(format!("unexpected error: {e}"))
}

fn compare<T: fmt::Debug + PartialEq>(
    what: &dyn fmt::Display,
    model: Result<&T, String>,
    engine: Result<&T, String>,
) -> Result<(), TestCaseError> {
    if model == engine {
        Ok(())
    } else {
        Err(fail(format!(
            "{what}: model says {model:?}, engine says {engine:?}"
        )))
    }
}

// Per thread: the SQLite and PostgreSQL copies of the test run at once, each on the
// thread its runner runs every case on.
thread_local! {
    static SEQUENCES: Cell<u64> = const { Cell::new(0) };
    static STEPS: Cell<u64> = const { Cell::new(0) };
    /// Outcomes by call and result, printed when `MODEL_STATS` is set.
    static OUTCOMES: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

fn tally(op: &dyn fmt::Debug, outcome: Result<&Out, String>) {
    let name = format!("{op:?}");
    let name = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    let outcome = match outcome {
        Ok(_) => "ok".to_owned(),
        Err(kind) => kind,
    };
    OUTCOMES.with_borrow_mut(|o| *o.entry(format!("{name}: {outcome}")).or_default() += 1);
}

/// Runs one sequence against both sides, comparing after every step and, at the end,
/// every decision.
fn run_sequence(steps: &[Step]) -> Result<(), TestCaseError> {
    SEQUENCES.set(SEQUENCES.get() + 1);
    let engine = setup().map_err(|e| fail(format!("setup: {e}")))?;
    let mut model = Model::new();
    // The last token issued to each service account, by canonical full name.
    let mut secrets: HashMap<String, String> = HashMap::new();
    // The first token issued to each service account, by canonical full name.
    let mut first_secrets: HashMap<String, String> = HashMap::new();
    // The first session opened for each service account, kept for `SaMode::Stale`.
    // With the token it was opened with, if any (T6).
    let mut sessions: HashMap<String, (Session<'_>, Option<String>)> = HashMap::new();

    for (i, step) in steps.iter().enumerate() {
        STEPS.set(STEPS.get() + 1);
        let what = format!("step {i} ({:?} does {:?})", step.actor, step.op);
        // The mode that applies: a token or an earlier session only if there is one.
        let (mode, key) = match step.actor {
            Actor::User(u) => (SaMode::Fresh, u.to_owned()),
            Actor::Sa(sa, mode) => {
                let key = sa.canonical();
                let mode = match mode {
                    SaMode::Token if secrets.contains_key(&key) => SaMode::Token,
                    SaMode::OldToken if first_secrets.get(&key) != secrets.get(&key) => {
                        SaMode::OldToken
                    }
                    SaMode::Stale if sessions.contains_key(&key) => SaMode::Stale,
                    _ => SaMode::Fresh,
                };
                (mode, key)
            }
        };
        let fresh = match (step.actor, mode) {
            (_, SaMode::Stale) => None,
            (Actor::Sa(..), SaMode::Token) => Some(engine.authenticate(&secrets[&key])),
            (Actor::Sa(..), SaMode::OldToken) => Some(engine.authenticate(&first_secrets[&key])),
            (Actor::User(u), _) => {
                Some(engine.session_for(&Principal::User(u.parse().map_err(unexpected)?)))
            }
            (Actor::Sa(sa, _), _) => {
                let principal: Principal = sa.full().parse().map_err(unexpected)?;
                Some(engine.session_for(&principal))
            }
        };
        let model_who = model.session(step.actor, mode);
        let session = match &fresh {
            None => Ok(&sessions[&key].0),
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(kind_of(e)),
        };
        compare(
            &format!("{what}, opening the session"),
            model_kind(&model_who).map(|_| &()),
            session.as_ref().map(|_| &()).map_err(Clone::clone),
        )?;
        if let Actor::Sa(..) = step.actor {
            let outcome = session.as_ref().map(|_| &Out::Unit).map_err(Clone::clone);
            tally(&format_args!("Session{mode:?}"), outcome);
        }
        let (Ok(who), Ok(session)) = (model_who, session) else {
            continue;
        };

        let mut issued = None;
        let engine_out = run_engine(session, &step.op, &mut issued);
        let dead = mode == SaMode::Stale && {
            let bound = sessions[&key].1.as_ref();
            !model.kept_session_live(&key, bound, &secrets)
        };
        let model_out = if dead {
            Err(Kind::InvalidToken)
        } else {
            model.apply(&who, &step.op)
        };
        compare(&what, model_kind(&model_out), engine_kind(&engine_out))?;
        tally(&step.op, engine_kind(&engine_out));
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("{what}: {:?}", engine_kind(&engine_out));
        }
        if let Some(secret) = issued {
            let target = match step.op {
                Op::CreateSa { ws, name, .. } => Sa { ws, name }.canonical(),
                Op::ReactivateSa(sa) | Op::IssueSaToken(sa) => sa.canonical(),
                _ => unreachable!("only these calls issue tokens"),
            };
            first_secrets
                .entry(target.clone())
                .or_insert_with(|| secret.clone());
            secrets.insert(target, secret);
        }
        if let (Actor::Sa(..), Some(Ok(s))) = (step.actor, fresh) {
            let bound = match mode {
                SaMode::Token => secrets.get(&key).cloned(),
                SaMode::OldToken => first_secrets.get(&key).cloned(),
                _ => None,
            };
            sessions.entry(key).or_insert((s, bound));
        }
    }

    compare_decisions(&engine, &model, &sessions, &secrets)
}

/// The end of a sequence: `check`, `check_anonymous`, `explain` and `list_projects`
/// for every principal × project × action.
fn compare_decisions(
    engine: &Engine,
    model: &Model,
    sessions: &HashMap<String, (Session<'_>, Option<String>)>,
    secrets: &HashMap<String, String>,
) -> Result<(), TestCaseError> {
    let mut principals: Vec<String> = USERS.iter().map(|u| u.to_string()).collect();
    principals.push("eve".to_owned());
    for (ws, _) in WORKSPACES {
        for name in ["ci", "bot", "etl"] {
            principals.push(format!("{name}@{ws}"));
        }
    }
    // Other spellings on purpose: lookups are case-insensitive (N1, N3).
    let mut projects = Vec::new();
    for ws in ["ws-a", "WS-B", "ws-c"] {
        for name in ["Proj", "beta", "GAMMA"] {
            projects.push(Proj { ws, name });
        }
    }

    for p in &projects {
        let q = p.qualified();
        for principal in principals.iter().map(Some).chain([None]) {
            let parsed: Option<Principal> = principal
                .map(|s| s.parse())
                .transpose()
                .map_err(unexpected)?;
            let who = principal.map_or("anonymous", String::as_str);
            if let Some(pr) = &parsed {
                let m = model.explain(principal.map(String::as_str), *p);
                let m = m.map(|(_, access)| access);
                let e = engine
                    .explain(pr, &q)
                    .map(|a| a.map(|a| (a.role, a.source)));
                compare(
                    &format!("explain({who}, {q})"),
                    model_kind(&m),
                    engine_kind(&e),
                )?;
            }
            for action in Action::ALL {
                let m = model.check(principal.map(String::as_str), *p, action);
                let e = match &parsed {
                    Some(pr) => engine.check(pr, &q, action),
                    None => engine.check_anonymous(&q, action),
                };
                compare(
                    &format!("check({who}, {q}, {action:?})"),
                    model_kind(&m),
                    engine_kind(&e),
                )?;
            }
        }
    }

    // Every principal's session, and every kept (possibly stale) one: the project list,
    // whole and by pages of two.
    let mut lists = Vec::new();
    for principal in &principals {
        let parsed: Principal = principal.parse().map_err(unexpected)?;
        let m = model.session_for(principal);
        let e = engine.session_for(&parsed);
        compare(
            &format!("session_for({principal})"),
            model_kind(&m).map(|_| &()),
            engine_kind(&e).map(|_| &()),
        )?;
        if let (Ok(who), Ok(session)) = (m, e) {
            lists.push((principal.clone(), who, session));
        }
    }
    let kept = sessions.iter().map(|(key, (session, bound))| {
        let (name, ws) = key.split_once('@').expect("a full name");
        let who = Who::Sa {
            ws: ws.to_owned(),
            name: name.to_owned(),
        };
        let live = model.kept_session_live(key, bound.as_ref(), secrets);
        (
            format!("the session of {key} opened earlier"),
            who,
            session,
            live,
        )
    });
    let fresh = lists
        .iter()
        .map(|(p, who, s)| (p.clone(), who.clone(), s, true));
    for (by, who, session, live) in fresh.chain(kept) {
        if !live {
            let e = session.list_projects();
            compare(
                &format!("list_projects by {by}, whose token died (T6)"),
                model_kind::<Vec<String>>(&Err(Kind::InvalidToken)),
                engine_kind(&e),
            )?;
            continue;
        }
        let m = model.visible_projects(&who);
        let e = session.list_projects();
        compare(&format!("list_projects by {by}"), Ok(&m), engine_kind(&e))?;
        let e = all_pages(session);
        compare(
            &format!("list_projects_page(.., 2) by {by}"),
            Ok(&m),
            engine_kind(&e),
        )?;
    }
    Ok(())
}

/// Every page of `list_projects_page`, two names at a time.
fn all_pages(session: &Session<'_>) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    // More pages than projects can exist means the cursor does not advance.
    for _ in 0..=WORKSPACES.len() * 4 {
        let page = session.list_projects_page(after.as_deref(), 2)?;
        names.extend(page.projects);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(names),
        }
    }
    names.push("<the cursor did not advance>".to_owned());
    Ok(names)
}

// Every test below runs once per backend: `sqlite::name` and `postgres::name` (B1,
// tests/common `backend_tests!`; parentheses, so that rustfmt formats them).
common::backend_tests!(
    /// R1–R7, A1–A9, S1–S6 and the §7 calls: the engine and the model agree on random
    /// sequences of management calls by random actors.
    #[test]
    fn engine_agrees_with_model_on_random_call_sequences() {
        let mut config = Config::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            // On PostgreSQL each case is a new database and every call a SERIALIZABLE
            // transaction over the network: a quarter of the cases keeps the run short.
            config.cases = if common::on_postgres() {
                DEFAULT_CASES / 4
            } else {
                DEFAULT_CASES
            };
        }
        config.failure_persistence = Some(Box::new(FileFailurePersistence::Off));
        let cases = config.cases;
        let start = Instant::now();
        let mut runner = TestRunner::new(config);
        let result = runner.run(&steps(), |steps| run_sequence(&steps));
        eprintln!(
            "model on {}: {} sequences, {} steps ({} cases of up to {} calls) in {:.1?}",
            if common::on_postgres() {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            SEQUENCES.get(),
            STEPS.get(),
            cases,
            MAX_STEPS,
            start.elapsed(),
        );
        if std::env::var_os("MODEL_STATS").is_some() {
            OUTCOMES.with_borrow(|outcomes| {
                for (outcome, n) in outcomes {
                    eprintln!("{n:>8}  {outcome}");
                }
            });
        }
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, steps)) => {
                let steps: Vec<String> = steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| format!("  {i:>2}. {:?} does {:?}", s.actor, s.op))
                    .collect();
                panic!(
                    "the engine and the model disagree: {reason}\nminimal sequence:\n{}",
                    steps.join("\n")
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
);
