//! Property tests for the effective-role rules (SPEC §3, R1–R7) and the action table
//! (SPEC §4), run against the real engine.
//!
//! Each case generates a random world (workspaces, users with random workspace roles,
//! service accounts, some deactivated, projects with random visibility and random
//! explicit grants), builds it through the public management API on a fresh engine
//! (in memory on SQLite, a new database on PostgreSQL), and keeps a plain record of the facts it created. The properties then
//! compare what the engine answers with what SPEC.md says those facts imply.
//!
//! Case count: 64 per property by default, to keep the file fast in debug builds. Set
//! `PROPTEST_CASES` to run more (or fewer): `ProptestConfig::default()` reads it, and
//! [`config`] keeps its value when it is set.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use turnstile::domain::access::{Standing, decide};
use turnstile::{
    Action, Engine, Error, Principal, ProjectOptions, ProjectRole, Visibility, WorkspaceRole,
    WorkspaceSettings,
};

const MAX_WORKSPACES: usize = 3;
/// Users besides `root`, who creates every workspace and so is admin of each.
const MAX_EXTRA_USERS: usize = 4;
const MAX_SERVICE_ACCOUNTS: usize = 6;
const MAX_PROJECTS: usize = 6;
const DEFAULT_CASES: u32 = 64;

/// 64 cases unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        config
    } else {
        ProptestConfig {
            cases: DEFAULT_CASES,
            ..config
        }
    }
}

// ---------------------------------------------------------------------------------
// The plan: what the generator decides.

/// What an extra user is to one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    Outsider,
    Member,
    Admin,
    /// Invited as a member, given grants, then removed from the workspace (A7: the
    /// removal deletes those grants).
    Removed,
}

/// What becomes of a service account after the grants are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaFate {
    Active,
    /// Deactivated: its grants stay, inert (R6, S3).
    Deactivated,
    /// Deactivated then reactivated: its grants count again (S3).
    Reactivated,
}

/// Who creates a project. An ineligible choice (a user who is not a member of the
/// project's workspace, an account of another workspace) falls back to `root`.
#[derive(Debug, Clone, Copy)]
enum Creator {
    Root,
    /// An index into all users (0 is `root`).
    User(usize),
    /// An index into the service accounts.
    ServiceAccount(usize),
}

#[derive(Debug, Clone)]
struct ProjectPlan {
    /// Taken modulo the number of workspaces.
    workspace: usize,
    creator: Creator,
    visibility: Visibility,
    /// Indexed by user (0 is `root`); a grant to a non-member is not attempted.
    user_grants: Vec<Option<ProjectRole>>,
    /// Indexed by service account; a grant to another workspace's account is not
    /// attempted.
    sa_grants: Vec<Option<ProjectRole>>,
}

#[derive(Debug, Clone)]
struct WorldPlan {
    workspaces: usize,
    /// Per workspace: whether `allow_public_projects` is turned on. Where it is off, a
    /// project planned `public` must be refused (A5) and stays private.
    allow_public: Vec<bool>,
    /// Per extra user, per workspace.
    users: Vec<Vec<Membership>>,
    /// Per service account: its workspace (modulo the number of workspaces), its fate.
    service_accounts: Vec<(usize, SaFate)>,
    projects: Vec<ProjectPlan>,
}

fn role() -> impl Strategy<Value = ProjectRole> {
    prop_oneof![
        Just(ProjectRole::Viewer),
        Just(ProjectRole::Contributor),
        Just(ProjectRole::Owner),
    ]
}

fn visibility() -> impl Strategy<Value = Visibility> {
    prop_oneof![
        Just(Visibility::Private),
        Just(Visibility::Workspace),
        Just(Visibility::Public),
    ]
}

fn membership() -> impl Strategy<Value = Membership> {
    prop_oneof![
        Just(Membership::Outsider),
        Just(Membership::Member),
        Just(Membership::Admin),
        Just(Membership::Removed),
    ]
}

fn sa_fate() -> impl Strategy<Value = SaFate> {
    prop_oneof![
        2 => Just(SaFate::Active),
        1 => Just(SaFate::Deactivated),
        1 => Just(SaFate::Reactivated),
    ]
}

fn creator() -> impl Strategy<Value = Creator> {
    prop_oneof![
        Just(Creator::Root),
        (0..=MAX_EXTRA_USERS).prop_map(Creator::User),
        (0..MAX_SERVICE_ACCOUNTS).prop_map(Creator::ServiceAccount),
    ]
}

fn project_plan() -> impl Strategy<Value = ProjectPlan> {
    (
        0..MAX_WORKSPACES,
        creator(),
        visibility(),
        prop::collection::vec(prop::option::of(role()), MAX_EXTRA_USERS + 1),
        prop::collection::vec(prop::option::of(role()), MAX_SERVICE_ACCOUNTS),
    )
        .prop_map(
            |(workspace, creator, visibility, user_grants, sa_grants)| ProjectPlan {
                workspace,
                creator,
                visibility,
                user_grants,
                sa_grants,
            },
        )
}

fn world_plan() -> impl Strategy<Value = WorldPlan> {
    (
        1..=MAX_WORKSPACES,
        prop::collection::vec(prop::bool::weighted(0.7), MAX_WORKSPACES),
        prop::collection::vec(
            prop::collection::vec(membership(), MAX_WORKSPACES),
            1..=MAX_EXTRA_USERS,
        ),
        prop::collection::vec((0..MAX_WORKSPACES, sa_fate()), 0..=MAX_SERVICE_ACCOUNTS),
        prop::collection::vec(project_plan(), 1..=MAX_PROJECTS),
    )
        .prop_map(
            |(workspaces, allow_public, users, service_accounts, projects)| WorldPlan {
                workspaces,
                allow_public,
                users,
                service_accounts,
                projects,
            },
        )
}

// ---------------------------------------------------------------------------------
// The record: the facts the built world holds, kept independently of the engine.

#[derive(Debug)]
struct UserFacts {
    name: String,
    /// Per workspace.
    roles: Vec<Option<WorkspaceRole>>,
}

#[derive(Debug)]
struct SaFacts {
    full_name: String,
    workspace: usize,
    active: bool,
}

#[derive(Debug)]
struct ProjectFacts {
    name: String,
    workspace: usize,
    visibility: Visibility,
    /// By user index.
    user_grants: BTreeMap<usize, ProjectRole>,
    /// By service-account index.
    sa_grants: BTreeMap<usize, ProjectRole>,
}

#[derive(Debug)]
struct Model {
    users: Vec<UserFacts>,
    service_accounts: Vec<SaFacts>,
    projects: Vec<ProjectFacts>,
}

impl Model {
    /// The standing of user `u` towards project `p`, from the record alone.
    fn user_standing(&self, u: usize, p: &ProjectFacts) -> Standing {
        Standing::User {
            workspace_role: self.users[u].roles[p.workspace],
            grant: p.user_grants.get(&u).copied(),
        }
    }

    /// The standing of service account `s` towards project `p`, from the record alone.
    fn sa_standing(&self, s: usize, p: &ProjectFacts) -> Standing {
        let sa = &self.service_accounts[s];
        Standing::ServiceAccount {
            active: sa.active,
            in_workspace: sa.workspace == p.workspace,
            grant: p.sa_grants.get(&s).copied(),
        }
    }

    /// Every principal of the world with its standing towards `p`.
    fn principals(&self, p: &ProjectFacts) -> Result<Vec<(Principal, Standing)>, Error> {
        let mut out = Vec::new();
        for (u, user) in self.users.iter().enumerate() {
            out.push((user.name.parse()?, self.user_standing(u, p)));
        }
        for (s, sa) in self.service_accounts.iter().enumerate() {
            out.push((sa.full_name.parse()?, self.sa_standing(s, p)));
        }
        Ok(out)
    }
}

fn workspace_name(w: usize) -> String {
    format!("ws{w}")
}

/// Builds the planned world through the management API and returns the engine with
/// the record of what it holds.
fn build(plan: &WorldPlan) -> Result<(common::TestEngine, Model), TestCaseError> {
    let engine = common::engine()?;
    let n = plan.workspaces;

    let mut users = vec![UserFacts {
        name: "root".to_owned(),
        roles: vec![Some(WorkspaceRole::Admin); n],
    }];
    engine.create_user("root")?;
    for (i, _) in plan.users.iter().enumerate() {
        let name = format!("user{}", i + 1);
        engine.create_user(&name)?;
        users.push(UserFacts {
            name,
            roles: vec![None; n],
        });
    }
    for w in 0..n {
        engine.create_workspace(&workspace_name(w), "root")?;
    }
    let root = engine.session_for(&"root".parse()?)?;
    for w in 0..n {
        if plan.allow_public[w] {
            root.set_workspace_settings(
                &workspace_name(w),
                WorkspaceSettings {
                    allow_public_projects: Some(true),
                    ..Default::default()
                },
            )?;
        }
    }
    for (i, memberships) in plan.users.iter().enumerate() {
        let u = i + 1;
        for (w, m) in memberships.iter().take(n).enumerate() {
            let role = match m {
                Membership::Outsider => continue,
                Membership::Member | Membership::Removed => WorkspaceRole::Member,
                Membership::Admin => WorkspaceRole::Admin,
            };
            root.invite_to_workspace(&workspace_name(w), &users[u].name, role, false)?;
            users[u].roles[w] = Some(role);
        }
    }

    let mut service_accounts = Vec::new();
    for (s, &(w, _)) in plan.service_accounts.iter().enumerate() {
        let w = w % n;
        let name = format!("sa{s}");
        root.create_service_account(&workspace_name(w), &name, false)?;
        service_accounts.push(SaFacts {
            full_name: format!("{name}@{}", workspace_name(w)),
            workspace: w,
            active: true,
        });
    }

    let mut projects = Vec::new();
    for (j, pp) in plan.projects.iter().enumerate() {
        let w = pp.workspace % n;
        let name = format!("{}/exp-{j}", workspace_name(w));
        let mut facts = ProjectFacts {
            name: name.clone(),
            workspace: w,
            visibility: Visibility::Private,
            user_grants: BTreeMap::new(),
            sa_grants: BTreeMap::new(),
        };
        // A1: the creator receives an explicit owner grant.
        let creator = match pp.creator {
            Creator::User(u) if u < users.len() && users[u].roles[w].is_some() => {
                facts.user_grants.insert(u, ProjectRole::Owner);
                users[u].name.clone()
            }
            Creator::ServiceAccount(s)
                if s < service_accounts.len() && service_accounts[s].workspace == w =>
            {
                facts.sa_grants.insert(s, ProjectRole::Owner);
                service_accounts[s].full_name.clone()
            }
            Creator::Root | Creator::User(_) | Creator::ServiceAccount(_) => {
                facts.user_grants.insert(0, ProjectRole::Owner);
                "root".to_owned()
            }
        };
        let created = engine
            .session_for(&creator.parse()?)?
            .create_project(&name, ProjectOptions::default())?;
        prop_assert_eq!(&created, &name);

        // Grants go in while the project is private: on a `workspace` project members
        // cannot be added (A8).
        for (u, grant) in pp.user_grants.iter().enumerate().take(users.len()) {
            if let Some(role) = *grant
                && users[u].roles[w].is_some()
                && !facts.user_grants.contains_key(&u)
            {
                root.add_project_member(&name, &users[u].name, role)?;
                facts.user_grants.insert(u, role);
            }
        }
        for (s, grant) in pp.sa_grants.iter().enumerate().take(service_accounts.len()) {
            if let Some(role) = *grant
                && service_accounts[s].workspace == w
                && !facts.sa_grants.contains_key(&s)
            {
                root.add_project_service_account(&name, &service_accounts[s].full_name, role)?;
                facts.sa_grants.insert(s, role);
            }
        }

        match pp.visibility {
            Visibility::Private => {}
            Visibility::Public if !plan.allow_public[w] => {
                // A5: refused, and the project stays private.
                let refused = root.set_project_visibility(&name, Visibility::Public);
                prop_assert!(
                    matches!(refused, Err(Error::VisibilityRestricted { .. })),
                    "A5: making {} public without allow_public_projects gave {:?}",
                    name,
                    refused
                );
            }
            v => {
                root.set_project_visibility(&name, v)?;
                facts.visibility = v;
            }
        }
        projects.push(facts);
    }

    // A7: removing a user from a workspace deletes their grants in its projects.
    for (i, memberships) in plan.users.iter().enumerate() {
        let u = i + 1;
        for (w, m) in memberships.iter().take(n).enumerate() {
            if *m == Membership::Removed {
                root.remove_workspace_member(&workspace_name(w), &users[u].name)?;
                users[u].roles[w] = None;
                for p in projects.iter_mut().filter(|p| p.workspace == w) {
                    p.user_grants.remove(&u);
                }
            }
        }
    }

    // R6, S3: deactivation leaves grants in place but inert; reactivation revives them.
    for (s, &(_, fate)) in plan.service_accounts.iter().enumerate() {
        let full_name = &service_accounts[s].full_name;
        match fate {
            SaFate::Active => {}
            SaFate::Deactivated => {
                root.deactivate_service_account(full_name)?;
                service_accounts[s].active = false;
            }
            SaFate::Reactivated => {
                root.deactivate_service_account(full_name)?;
                root.reactivate_service_account(full_name)?;
            }
        }
    }

    Ok((
        engine,
        Model {
            users,
            service_accounts,
            projects,
        },
    ))
}

fn role_of(engine: &Engine, who: &Principal, project: &str) -> Result<Option<ProjectRole>, Error> {
    Ok(engine.explain(who, project)?.map(|a| a.role))
}

// ---------------------------------------------------------------------------------
// The properties.

// Every property runs once per backend: `sqlite::name` and `postgres::name` (B1,
// tests/common `backend_tests!`). Each runs its cases on the test's thread.
common::backend_tests!(
    /// R5 (with R2, R4, R6, R7): an SA's effective role is exactly the higher of its
    /// explicit grant (counted only while active and in the project's workspace) and
    /// `viewer` on a public project. Workspace roles and `workspace` visibility never
    /// reach it; a deactivated SA has no role at all.
    #[test]
    fn r5_service_account_role_is_exactly_grant_or_public_viewer() {
        proptest!(config(), |(plan in world_plan())| {
            let (engine, model) = build(&plan)?;
            for (s, sa) in model.service_accounts.iter().enumerate() {
                let who: Principal = sa.full_name.parse()?;
                for p in &model.projects {
                    let expected = if sa.active {
                        let grant = p
                            .sa_grants
                            .get(&s)
                            .copied()
                            .filter(|_| sa.workspace == p.workspace);
                        let public =
                            (p.visibility == Visibility::Public).then_some(ProjectRole::Viewer);
                        grant.max(public)
                    } else {
                        None
                    };
                    let got = role_of(&engine, &who, &p.name)?;
                    prop_assert_eq!(
                        got, expected,
                        "R5: {} on {} ({:?}, grant {:?}, active {})",
                        &sa.full_name, &p.name, p.visibility, p.sa_grants.get(&s), sa.active
                    );
                }
            }
        });
    }

    /// R6: a deactivated SA has no role and may do nothing anywhere, public projects
    /// included, and no session can be opened for it.
    #[test]
    fn r6_deactivated_service_account_has_no_role_and_no_session() {
        proptest!(config(), |(plan in world_plan())| {
            let (engine, model) = build(&plan)?;
            for sa in model.service_accounts.iter().filter(|sa| !sa.active) {
                let who: Principal = sa.full_name.parse()?;
                prop_assert!(
                    engine.session_for(&who).is_err(),
                    "R6: a session opened for deactivated {}",
                    &sa.full_name
                );
                for p in &model.projects {
                    prop_assert_eq!(
                        role_of(&engine, &who, &p.name)?,
                        None,
                        "R6: {} on {}",
                        &sa.full_name, &p.name
                    );
                    for action in Action::ALL {
                        prop_assert!(
                            !engine.check(&who, &p.name, action)?,
                            "R6: deactivated {} may {} {}",
                            &sa.full_name, action, &p.name
                        );
                    }
                }
            }
        });
    }

    /// R7 (with R4): a principal outside the project's workspace (a non-member user,
    /// another workspace's SA) is exactly `viewer` on a public project and has nothing
    /// on any other, whatever grants it held before (A7) or holds elsewhere.
    #[test]
    fn r7_outsider_gets_at_most_viewer_and_only_on_public() {
        proptest!(config(), |(plan in world_plan())| {
            let (engine, model) = build(&plan)?;
            for p in &model.projects {
                let public = p.visibility == Visibility::Public;
                let mut outsiders: Vec<Principal> = Vec::new();
                for user in model.users.iter().filter(|u| u.roles[p.workspace].is_none()) {
                    outsiders.push(user.name.parse()?);
                }
                for sa in model
                    .service_accounts
                    .iter()
                    .filter(|sa| sa.active && sa.workspace != p.workspace)
                {
                    outsiders.push(sa.full_name.parse()?);
                }
                for who in &outsiders {
                    let expected = public.then_some(ProjectRole::Viewer);
                    prop_assert_eq!(
                        role_of(&engine, who, &p.name)?,
                        expected,
                        "R7: {} on {}",
                        who, &p.name
                    );
                    for action in Action::ALL {
                        prop_assert_eq!(
                            engine.check(who, &p.name, action)?,
                            public && action == Action::View,
                            "R7: {} {} {} ({:?})",
                            who, action, &p.name, p.visibility
                        );
                    }
                }
            }
        });
    }

    /// R1 (with A3): a workspace admin is owner of every project of the workspace,
    /// whatever its visibility and grants, and may do everything to it, delete included.
    #[test]
    fn r1_workspace_admin_is_owner_of_every_project() {
        proptest!(config(), |(plan in world_plan())| {
            let (engine, model) = build(&plan)?;
            for p in &model.projects {
                for user in model
                    .users
                    .iter()
                    .filter(|u| u.roles[p.workspace] == Some(WorkspaceRole::Admin))
                {
                    let who: Principal = user.name.parse()?;
                    prop_assert_eq!(
                        role_of(&engine, &who, &p.name)?,
                        Some(ProjectRole::Owner),
                        "R1: admin {} on {}",
                        &user.name, &p.name
                    );
                    for action in Action::ALL {
                        prop_assert!(
                            engine.check(&who, &p.name, action)?,
                            "R1: admin {} may not {} {}",
                            &user.name, action, &p.name
                        );
                    }
                }
            }
        });
    }

    /// R1–R7 and the action table (§4, A3): `Engine::check` gives, for every principal,
    /// project and action, the answer of the pure rule applied to the recorded facts.
    #[test]
    fn check_agrees_with_pure_decide_on_recorded_facts() {
        proptest!(config(), |(plan in world_plan())| {
            let (engine, model) = build(&plan)?;
            for p in &model.projects {
                for (who, standing) in model.principals(p)? {
                    for action in Action::ALL {
                        let expected = decide(p.visibility, standing, action);
                        prop_assert_eq!(
                            engine.check(&who, &p.name, action)?,
                            expected,
                            "{} {} {} ({:?}, {:?})",
                            &who, action, &p.name, p.visibility, standing
                        );
                    }
                }
            }
        });
    }

    /// §4 (view), R1–R7: `list_projects` of every principal that can open a session
    /// lists exactly the projects it may view, each once, in workspace and
    /// project-name order.
    #[test]
    fn list_projects_is_exactly_the_viewable_projects_sorted() {
        proptest!(config(), |(plan in world_plan())| {
            let (engine, model) = build(&plan)?;
            let mut principals: Vec<Principal> = Vec::new();
            for user in &model.users {
                principals.push(user.name.parse()?);
            }
            for sa in model.service_accounts.iter().filter(|sa| sa.active) {
                principals.push(sa.full_name.parse()?);
            }
            for who in &principals {
                let listed = engine.session_for(who)?.list_projects()?;
                let mut viewable = BTreeSet::new();
                for p in &model.projects {
                    if engine.check(who, &p.name, Action::View)? {
                        viewable.insert(p.name.clone());
                    }
                }
                let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
                prop_assert_eq!(
                    listed_set.len(),
                    listed.len(),
                    "{} listed a project twice: {:?}",
                    who, &listed
                );
                prop_assert_eq!(&listed_set, &viewable, "list_projects of {}", who);
                let order = |name: &String| -> (String, String) {
                    let (w, p) = name.split_once('/').unwrap_or((name, ""));
                    (w.to_owned(), p.to_lowercase())
                };
                prop_assert!(
                    listed.windows(2).all(|pair| order(&pair[0]) < order(&pair[1])),
                    "list_projects of {} is not sorted: {:?}",
                    who, &listed
                );
                // Pages of any size concatenate to the complete list, with no gap or repeat.
                for size in [1, 2, 5] {
                    let mut paged = Vec::new();
                    let mut after: Option<String> = None;
                    loop {
                        let page = engine.session_for(who)?.list_projects_page(after.as_deref(), size)?;
                        prop_assert!(page.projects.len() <= size);
                        paged.extend(page.projects);
                        match page.next {
                            Some(next) => after = Some(next),
                            None => break,
                        }
                    }
                    prop_assert_eq!(&paged, &listed, "pages of {} for {}", size, who);
                }
            }
        });
    }

    /// R4: an anonymous caller may view exactly the public projects and do nothing else.
    #[test]
    fn r4_anonymous_views_exactly_public_projects() {
        proptest!(config(), |(plan in world_plan())| {
            let (engine, model) = build(&plan)?;
            for p in &model.projects {
                for action in Action::ALL {
                    let expected = action == Action::View && p.visibility == Visibility::Public;
                    prop_assert_eq!(
                        engine.check_anonymous(&p.name, action)?,
                        expected,
                        "R4: anonymous {} {} ({:?})",
                        action, &p.name, p.visibility
                    );
                    prop_assert_eq!(
                        decide(p.visibility, Standing::Anonymous, action),
                        expected,
                        "R4, pure rule: anonymous {} on {:?}",
                        action, p.visibility
                    );
                }
            }
        });
    }
);
