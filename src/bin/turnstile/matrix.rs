//! The access matrix (principals × projects → effective role) and the `demo` that
//! prints one. Every cell is the library's answer ([`Engine::explain`]); nothing here
//! decides a rule.

use std::collections::BTreeMap;

use serde::Serialize;
use turnstile::{
    Access, Engine, Principal, ProjectOptions, ProjectRole, Visibility, WorkspaceRole,
    WorkspaceSettings,
};

use clap::Args;

use crate::context::Context;
use crate::output::{Failure, Output, table};

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// only this workspace's projects, members and service accounts
    #[arg(long)]
    workspace: Option<String>,
}

pub fn matrix(ctx: &Context, args: MatrixArgs) -> Result<Output, Failure> {
    let engine = ctx.open_for_reading()?;
    let m = build(&engine, args.workspace.as_deref())?;
    let text = m.render();
    Ok(Output::new(&m, text))
}

/// A principal's row: who, what it is, its effective role on each project.
#[derive(Debug, Serialize)]
pub struct MatrixRow {
    /// The username or service account full name; `null` for the anonymous caller.
    pub principal: Option<String>,
    /// `user`, `service_account` or `anonymous`.
    pub kind: &'static str,
    /// The user's role in the workspace, when the matrix is of one workspace.
    pub workspace_role: Option<WorkspaceRole>,
    /// `false` for a deactivated service account.
    pub active: bool,
    /// Qualified project name → effective role and the rule that gave it, or `null`.
    pub access: BTreeMap<String, Option<Access>>,
}

/// One project's column.
#[derive(Debug, Serialize)]
pub struct MatrixProject {
    pub project: String,
    pub visibility: Visibility,
}

/// The whole matrix.
#[derive(Debug, Serialize)]
pub struct Matrix {
    pub projects: Vec<MatrixProject>,
    pub principals: Vec<MatrixRow>,
}

/// The matrix of every project and principal, or of one workspace's (its members, its
/// service accounts and the anonymous caller).
pub fn build(engine: &Engine, workspace: Option<&str>) -> Result<Matrix, Failure> {
    let snapshot = engine.export()?;
    let wanted: Option<String> = workspace
        .map(|w| w.parse::<turnstile::WorkspaceName>().map(|w| w.to_string()))
        .transpose()?;
    let workspaces: Vec<_> = snapshot
        .workspaces
        .iter()
        .filter(|w| wanted.as_ref().is_none_or(|name| &w.name == name))
        .collect();
    if let Some(name) = &wanted
        && workspaces.is_empty()
    {
        return Err(Failure::not_found(
            "WorkspaceNotFound",
            format!("workspace `{name}` not found"),
        ));
    }

    let mut projects = Vec::new();
    for ws in &workspaces {
        for p in &ws.projects {
            projects.push(MatrixProject {
                project: format!("{}/{}", ws.name, p.name),
                visibility: p.visibility,
            });
        }
    }

    let mut who: Vec<(Principal, &'static str, Option<WorkspaceRole>, bool)> = Vec::new();
    match workspaces.as_slice() {
        [ws] if wanted.is_some() => {
            // Admins first, then members, each by name.
            let mut members: Vec<_> = ws.members.iter().collect();
            members.sort_by_key(|(name, role)| (std::cmp::Reverse(**role), name.to_lowercase()));
            for (name, role) in members {
                who.push((name.parse()?, "user", Some(*role), true));
            }
        }
        _ => {
            for name in &snapshot.users {
                who.push((name.parse()?, "user", None, true));
            }
        }
    }
    for ws in &workspaces {
        for sa in &ws.service_accounts {
            let full = format!("{}@{}", sa.name, ws.name);
            who.push((full.parse()?, "service_account", None, sa.active));
        }
    }

    let mut principals = Vec::new();
    for (principal, kind, workspace_role, active) in who {
        let mut access = BTreeMap::new();
        for p in &projects {
            access.insert(p.project.clone(), engine.explain(&principal, &p.project)?);
        }
        principals.push(MatrixRow {
            principal: Some(principal.to_string()),
            kind,
            workspace_role,
            active,
            access,
        });
    }
    let mut anonymous = BTreeMap::new();
    for p in &projects {
        let cell = engine.explain_anonymous(&p.project)?;
        anonymous.insert(p.project.clone(), cell);
    }
    principals.push(MatrixRow {
        principal: None,
        kind: "anonymous",
        workspace_role: None,
        active: true,
        access: anonymous,
    });
    Ok(Matrix {
        projects,
        principals,
    })
}

impl Matrix {
    /// The matrix as a table for people: a row per principal, a column per project,
    /// `-` for no access.
    pub fn render(&self) -> String {
        let mut headers = vec!["principal", "as"];
        headers.extend(self.projects.iter().map(|p| p.project.as_str()));
        let rows: Vec<Vec<String>> = self
            .principals
            .iter()
            .map(|row| {
                let name = row
                    .principal
                    .clone()
                    .unwrap_or_else(|| "(anonymous)".to_owned());
                let what = match (row.kind, row.workspace_role, row.active) {
                    ("user", Some(role), _) => role.to_string(),
                    ("user", None, _) => "user".to_owned(),
                    ("service_account", _, true) => "service account".to_owned(),
                    ("service_account", _, false) => "service account, deactivated".to_owned(),
                    _ => "anonymous".to_owned(),
                };
                let mut cells = vec![name, what];
                cells.extend(self.projects.iter().map(|p| {
                    match row.access.get(&p.project).copied().flatten() {
                        Some(a) => a.role.to_string(),
                        None => "-".to_owned(),
                    }
                }));
                cells
            })
            .collect();
        table(&headers, &rows, "no principals")
    }

    /// The effective role of `principal` on `project`, as the matrix holds it.
    pub fn role(&self, principal: &str, project: &str) -> Option<ProjectRole> {
        self.principals
            .iter()
            .find(|r| r.principal.as_deref() == Some(principal))
            .and_then(|r| r.access.get(project).copied().flatten())
            .map(|a| a.role)
    }
}

/// The demo's names.
pub const DEMO_WORKSPACE: &str = "ml-team";
pub const DEMO_ADMIN: &str = "alice";
pub const DEMO_MEMBER: &str = "bob";
pub const DEMO_SERVICE_ACCOUNT: &str = "cicd@ml-team";
pub const DEMO_PRIVATE: &str = "ml-team/classification";
pub const DEMO_WORKSPACE_PROJECT: &str = "ml-team/sandbox";
pub const DEMO_PUBLIC: &str = "ml-team/showcase";

/// Builds the scenario of Neptune's service-account documentation, through the
/// library's own calls: workspace `ml-team` with admin `alice` and member `bob`, one
/// project of each visibility, and `cicd@ml-team` assigned to the private one only.
pub fn build_demo(engine: &Engine) -> Result<(), Failure> {
    engine.create_user(DEMO_ADMIN)?;
    engine.create_user(DEMO_MEMBER)?;
    engine.create_workspace(DEMO_WORKSPACE, DEMO_ADMIN)?;
    let alice = engine.session_for(&DEMO_ADMIN.parse()?)?;
    alice.invite_to_workspace(DEMO_WORKSPACE, DEMO_MEMBER, WorkspaceRole::Member, false)?;
    alice.set_workspace_settings(
        DEMO_WORKSPACE,
        WorkspaceSettings {
            allow_public_projects: Some(true),
            ..WorkspaceSettings::default()
        },
    )?;
    for (name, visibility, description) in [
        (DEMO_PRIVATE, Visibility::Private, "image classifiers"),
        (
            DEMO_WORKSPACE_PROJECT,
            Visibility::Workspace,
            "everyone's experiments",
        ),
        (DEMO_PUBLIC, Visibility::Public, "published results"),
    ] {
        alice.create_project(
            name,
            ProjectOptions {
                visibility: Some(visibility),
                description: Some(description.to_owned()),
                ..ProjectOptions::default()
            },
        )?;
    }
    alice.add_project_member(DEMO_PRIVATE, DEMO_MEMBER, ProjectRole::Viewer)?;
    // The demo prints no token: the database is a throwaway, and `check --as`
    // explores it without one.
    drop(alice.create_service_account(DEMO_WORKSPACE, "cicd", false)?);
    alice.add_project_service_account(
        DEMO_PRIVATE,
        DEMO_SERVICE_ACCOUNT,
        ProjectRole::Contributor,
    )?;
    Ok(())
}
