//! (e) turnstile, the project under test (the checkout this harness sits in,
//! `..`): the workload is imported through its public bulk API
//! (`Engine::import` of a `Snapshot`) into a fresh database file in a temp
//! dir, and each check is `Engine::check(&principal, "bench/p000042", action)`
//! with names as strings, the way an application calls it.
//!
//! Two variants: `turnstile` (`Engine::open`, the default) and
//! `turnstile-cached` (`Engine::open_with(.., Options { decision_cache: true })`,
//! the never-stale decision cache).
//!
//! Mapping of the workload onto turnstile's names and data model:
//! * workspace 0 is `bench`, further workspaces (adversarial tests only) `ws1`,
//!   `ws2`, ...; user `u` is `u0007`; service account `s` is `sa03@<its workspace>`;
//!   project `p` is `<its workspace>/p000042`.
//! * actions: view -> `Action::View`, edit -> `Action::Edit`, manage_members ->
//!   `Action::Manage`, delete_project -> `Action::Delete`.
//! * Two kinds of grant cannot be stored in turnstile, and are left out of the
//!   snapshot (`representable`): a user's grant on a project of a workspace the
//!   user is not a member of (SPEC A7; such a grant is inert under the peers'
//!   policy too, so no decision changes), and a service account's grant on a
//!   project of another workspace (SPEC R7 and turnstile's schema: an SA holds
//!   grants only in its own workspace; the peers' policy lets such a grant
//!   count, so decisions do change). Only the adversarial test workloads have
//!   either; the benchmark workload (one workspace, every user a member) has
//!   none.
//! * A workspace of the adversarial workloads that has no admin gets a
//!   synthetic admin user `zz-admin` (SPEC A4: an import needs one); it is
//!   never queried.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use turnstile::{
    Options, ProjectRole, ProjectSnapshot, ServiceAccountSnapshot, Snapshot, Visibility as TsVisibility, WorkspaceRole,
    WorkspaceSnapshot,
};

use crate::Engine;
use crate::workload::*;

/// The synthetic admin of a workspace that has none (never queried).
const SYNTHETIC_ADMIN: &str = "zz-admin";

pub fn workspace_name(ws: u32) -> String {
    if ws == 0 { "bench".to_string() } else { format!("ws{ws}") }
}

pub fn user_name(u: u32) -> String {
    format!("u{u:04}")
}

pub fn sa_short_name(s: u32) -> String {
    format!("sa{s:02}")
}

pub fn project_short_name(p: u32) -> String {
    format!("p{p:06}")
}

pub fn action(a: crate::workload::Action) -> turnstile::Action {
    match a {
        crate::workload::Action::View => turnstile::Action::View,
        crate::workload::Action::Edit => turnstile::Action::Edit,
        crate::workload::Action::ManageMembers => turnstile::Action::Manage,
        crate::workload::Action::DeleteProject => turnstile::Action::Delete,
    }
}

fn role(r: Role) -> ProjectRole {
    match r {
        Role::Viewer => ProjectRole::Viewer,
        Role::Contributor => ProjectRole::Contributor,
        Role::Owner => ProjectRole::Owner,
    }
}

fn visibility(v: Visibility) -> TsVisibility {
    match v {
        Visibility::Private => TsVisibility::Private,
        Visibility::Workspace => TsVisibility::Workspace,
        Visibility::Public => TsVisibility::Public,
    }
}

/// Whether turnstile can store this grant (see the module comment).
pub fn grant_representable(w: &Workload, g: &Grant) -> bool {
    let ws = w.projects[g.project as usize].workspace;
    match g.principal {
        Principal::User(u) => w.memberships.iter().any(|m| m.user == u && m.workspace == ws),
        Principal::Sa(s) => w.service_accounts[s as usize].workspace == ws,
    }
}

/// The workload restricted to the grants turnstile can store. For the
/// benchmark workload this is the workload itself.
#[cfg_attr(not(test), allow(dead_code))]
pub fn representable(w: &Workload) -> Workload {
    Workload {
        workspaces: w.workspaces,
        users: w.users,
        memberships: w.memberships.clone(),
        service_accounts: w.service_accounts.clone(),
        projects: w.projects.clone(),
        grants: w.grants.iter().filter(|g| grant_representable(w, g)).copied().collect(),
        queries: w.queries.clone(),
    }
}

/// The workload as a turnstile snapshot.
pub fn snapshot(w: &Workload) -> Snapshot {
    // Membership lookups by (user, workspace), for grant filtering.
    let mut member = vec![false; (w.users * w.workspaces) as usize];
    for m in &w.memberships {
        member[(m.workspace * w.users + m.user) as usize] = true;
    }
    let mut users: Vec<String> = (0..w.users).map(user_name).collect();
    let mut workspaces: Vec<WorkspaceSnapshot> = (0..w.workspaces)
        .map(|ws| WorkspaceSnapshot {
            name: workspace_name(ws),
            allow_public_projects: true,
            service_account_limit: 50.max(w.service_accounts.iter().filter(|s| s.workspace == ws).count() as u32),
            members: Default::default(),
            service_accounts: Vec::new(),
            projects: Vec::new(),
        })
        .collect();
    for m in &w.memberships {
        let r = if m.role == WsRole::Admin { WorkspaceRole::Admin } else { WorkspaceRole::Member };
        workspaces[m.workspace as usize].members.insert(user_name(m.user), r);
    }
    if workspaces.iter().any(|ws| !ws.members.values().any(|r| *r == WorkspaceRole::Admin)) {
        users.push(SYNTHETIC_ADMIN.to_string());
        for ws in &mut workspaces {
            if !ws.members.values().any(|r| *r == WorkspaceRole::Admin) {
                ws.members.insert(SYNTHETIC_ADMIN.to_string(), WorkspaceRole::Admin);
            }
        }
    }
    for (s, sa) in w.service_accounts.iter().enumerate() {
        workspaces[sa.workspace as usize]
            .service_accounts
            .push(ServiceAccountSnapshot { name: sa_short_name(s as u32), active: sa.active });
    }
    // Project p's position in its workspace's project list.
    let mut position = Vec::with_capacity(w.projects.len());
    for (p, project) in w.projects.iter().enumerate() {
        let projects = &mut workspaces[project.workspace as usize].projects;
        position.push(projects.len());
        projects.push(ProjectSnapshot {
            name: project_short_name(p as u32),
            key: None,
            visibility: visibility(project.visibility),
            description: String::new(),
            members: Default::default(),
            service_accounts: Default::default(),
        });
    }
    for g in &w.grants {
        let ws = w.projects[g.project as usize].workspace;
        let project = &mut workspaces[ws as usize].projects[position[g.project as usize]];
        match g.principal {
            Principal::User(u) if member[(ws * w.users + u) as usize] => {
                project.members.insert(user_name(u), role(g.role));
            }
            Principal::Sa(s) if w.service_accounts[s as usize].workspace == ws => {
                project.service_accounts.insert(sa_short_name(s), role(g.role));
            }
            _ => {} // not representable in turnstile (module comment)
        }
    }
    Snapshot { version: turnstile::SNAPSHOT_VERSION, users, workspaces }
}

pub struct TurnstileEngine {
    /// `None` only while dropping (the engine closes before its files are removed).
    engine: Option<turnstile::Engine>,
    dir: PathBuf,
    users: Vec<turnstile::Principal>,
    sas: Vec<turnstile::Principal>,
    /// Qualified project names, `bench/p000042`.
    projects: Vec<String>,
}

impl TurnstileEngine {
    pub fn new(w: &Workload, decision_cache: bool) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("peers-turnstile-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let engine =
            turnstile::Engine::open_with(dir.join("acl.db"), Options { decision_cache, ..Options::default() }).expect("open turnstile");
        let summary = engine.import(&snapshot(w)).expect("turnstile import");
        assert_eq!(summary.projects, w.projects.len());
        // Names as an application holds them, built once (the other engines'
        // id tables are built at setup too).
        let users = (0..w.users).map(|u| user_name(u).parse().expect("user name")).collect();
        let sas = w
            .service_accounts
            .iter()
            .enumerate()
            .map(|(s, sa)| {
                format!("{}@{}", sa_short_name(s as u32), workspace_name(sa.workspace)).parse().expect("SA name")
            })
            .collect();
        let projects = w
            .projects
            .iter()
            .enumerate()
            .map(|(p, project)| format!("{}/{}", workspace_name(project.workspace), project_short_name(p as u32)))
            .collect();
        TurnstileEngine { engine: Some(engine), dir, users, sas, projects }
    }

    fn engine(&self) -> &turnstile::Engine {
        self.engine.as_ref().expect("open")
    }

    fn principal(&self, p: Principal) -> &turnstile::Principal {
        match p {
            Principal::User(u) => &self.users[u as usize],
            Principal::Sa(s) => &self.sas[s as usize],
        }
    }

    pub fn check(&self, q: &Query) -> bool {
        self.engine()
            .check(self.principal(q.principal), &self.projects[q.project as usize], action(q.action))
            .expect("turnstile check")
    }
}

impl Engine for TurnstileEngine {
    fn check_batch(&mut self, queries: &[Query], out: &mut [bool]) {
        for (q, o) in queries.iter().zip(out.iter_mut()) {
            *o = self.check(q);
        }
    }

    /// The complete `Session::list_projects()` of `principal`; the session is
    /// made once, outside the timing (an application authenticates the caller
    /// once per request). Only the call is timed; mapping the names back to
    /// project ids is not.
    fn time_list(&mut self, principal: Principal, _view_queries: &[Query]) -> (f64, Vec<u32>) {
        let session = self.engine().session_for(self.principal(principal)).expect("session");
        let t = Instant::now();
        let names = session.list_projects().expect("list_projects");
        let ns = t.elapsed().as_nanos() as f64;
        let mut ids: Vec<u32> = names
            .iter()
            .map(|n| {
                let short = n.rsplit('/').next().unwrap();
                short.strip_prefix('p').and_then(|d| d.parse().ok()).unwrap_or_else(|| panic!("listed {n:?}"))
            })
            .collect();
        ids.sort_unstable();
        (ns, ids)
    }
}

impl Drop for TurnstileEngine {
    fn drop(&mut self) {
        drop(self.engine.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
