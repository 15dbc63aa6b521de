//! The standard workload of `shared/WORKLOAD.md`, generated deterministically from
//! seed 42: one workspace `bench` with 1,000 users (10 admins), 50 service accounts (45
//! active), P projects (60 % private, 35 % workspace, 5 % public), 5 user grants per
//! project, 20 grants per service account, and 200,000 random checks.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use turnstile::{
    Action, Principal, ProjectRole, ProjectSnapshot, ServiceAccountSnapshot, Snapshot, Visibility,
    WorkspaceRole, WorkspaceSnapshot,
};

pub const USERS: usize = 1_000;
pub const ADMINS: usize = 10;
pub const SERVICE_ACCOUNTS: usize = 50;
pub const ACTIVE_SERVICE_ACCOUNTS: usize = 45;
pub const QUERIES: usize = 200_000;

pub fn user(i: usize) -> String {
    format!("u{i:04}")
}

pub fn service_account(i: usize) -> String {
    format!("sa{i:02}")
}

pub fn project(i: usize) -> String {
    format!("p{i:06}")
}

/// The workload principal's place in a list of users then service accounts (`u0042`
/// is 42, `sa03` is `USERS + 3`): where the benches keep each one's token.
pub fn token_index(p: &Principal) -> usize {
    let digits = |s: &str| {
        s.trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<usize>()
            .unwrap_or(0)
    };
    match p {
        Principal::User(u) => digits(u.as_str()),
        Principal::ServiceAccount(sa) => USERS + digits(sa.name.as_str()),
    }
}

/// One check of the query mix.
pub struct Query {
    pub principal: Principal,
    pub project: String,
    pub action: Action,
}

/// The 200,000 checks of the query mix, from their own generator (also seed 42), so
/// they can be made without building the data.
pub fn queries(projects: usize) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..QUERIES)
        .map(|_| {
            let principal = if rng.random_bool(0.8) {
                user(rng.random_range(0..USERS))
            } else {
                format!(
                    "{}@bench",
                    service_account(rng.random_range(0..SERVICE_ACCOUNTS))
                )
            };
            Query {
                principal: principal.parse().expect("generated names are valid"),
                project: format!("bench/{}", project(rng.random_range(0..projects))),
                action: Action::ALL[rng.random_range(0..4)],
            }
        })
        .collect()
}

/// The data of the workload at `projects` projects, as a snapshot to import.
pub fn generate(projects: usize) -> Snapshot {
    let mut rng = StdRng::seed_from_u64(42);
    let members: Vec<String> = (ADMINS..USERS).map(user).collect();
    let mut ws = WorkspaceSnapshot {
        name: "bench".into(),
        allow_public_projects: true,
        service_account_limit: 50,
        members: (0..USERS)
            .map(|i| {
                let role = if i < ADMINS {
                    WorkspaceRole::Admin
                } else {
                    WorkspaceRole::Member
                };
                (user(i), role)
            })
            .collect(),
        service_accounts: (0..SERVICE_ACCOUNTS)
            .map(|i| ServiceAccountSnapshot {
                name: service_account(i),
                active: i < ACTIVE_SERVICE_ACCOUNTS,
            })
            .collect(),
        projects: Vec::with_capacity(projects),
    };
    for i in 0..projects {
        let roll: f64 = rng.random();
        let visibility = if roll < 0.60 {
            Visibility::Private
        } else if roll < 0.95 {
            Visibility::Workspace
        } else {
            Visibility::Public
        };
        let roles = [
            ProjectRole::Owner,
            ProjectRole::Contributor,
            ProjectRole::Contributor,
            ProjectRole::Contributor,
            ProjectRole::Viewer,
        ];
        let picked = sample(&mut rng, members.len(), roles.len());
        ws.projects.push(ProjectSnapshot {
            name: project(i),
            key: None,
            visibility,
            description: String::new(),
            members: picked
                .iter()
                .zip(roles)
                .map(|(m, role)| (members[m].clone(), role))
                .collect(),
            service_accounts: Default::default(),
        });
    }
    for s in 0..SERVICE_ACCOUNTS {
        for p in sample(&mut rng, projects, 20.min(projects)).iter() {
            let role = ProjectRole::ALL[rng.random_range(0..3)];
            ws.projects[p]
                .service_accounts
                .insert(service_account(s), role);
        }
    }
    Snapshot {
        version: 1,
        users: (0..USERS).map(user).collect(),
        workspaces: vec![ws],
    }
}
