//! Read-only listings for front ends: every user with their workspaces, every
//! workspace with its counts (the embedding application's view, like
//! [`Engine::export`]), and a project's details as one actor sees them
//! ([`Session::project_info`], which answers as [`Session::project_members`] does for a
//! project the actor cannot view: `ProjectNotFound`, A6).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::access::{Access, Action, RoleSource, effective_access, permits};
use crate::domain::names::QualifiedProjectName;
use crate::domain::roles::{ProjectRole, Visibility, WorkspaceRole};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::session::{Session, WorkspaceStatus};

/// A user and the workspaces they belong to, as listed by [`Engine::list_users`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The username, as spelled at creation.
    pub user: String,
    /// The user's workspaces, in name order.
    pub workspaces: Vec<Membership>,
}

/// A principal's role in one workspace: a user's membership, or a service account's own workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The workspace.
    pub workspace: String,
    /// The principal's role there; a service account is always a member.
    pub role: WorkspaceRole,
}

/// A project's details as one actor sees them ([`Session::project_info`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectInfo {
    /// `workspace/Project`, as spelled at creation.
    pub project: String,
    /// The project key (N4).
    pub key: String,
    /// Its visibility.
    pub visibility: Visibility,
    /// Its description.
    pub description: String,
    /// The actor's effective role on it.
    pub role: ProjectRole,
    /// The rule that gave the actor that role.
    pub source: RoleSource,
}

impl Engine {
    /// Every user, in name order, with the workspaces each belongs to. An embedding
    /// application's view (like [`export`](Self::export)): no actor, no access rule.
    ///
    /// ```
    /// # use turnstile::Engine;
    /// let engine = Engine::open_in_memory()?;
    /// engine.create_user("alice")?;
    /// engine.create_user("bob")?;
    /// engine.create_workspace("ml-team", "alice")?;
    /// let users = engine.list_users()?;
    /// assert_eq!(users[0].user, "alice");
    /// assert_eq!(users[0].workspaces[0].workspace, "ml-team");
    /// assert!(users[1].workspaces.is_empty());
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn list_users(&self) -> Result<Vec<UserInfo>> {
        self.store.read(|repo| {
            let mut memberships: BTreeMap<String, Vec<Membership>> = BTreeMap::new();
            for ws in repo.workspaces()? {
                for (user, role) in repo.workspace_members(ws.id)? {
                    memberships
                        .entry(user.key().to_owned())
                        .or_default()
                        .push(Membership {
                            workspace: ws.name.to_string(),
                            role,
                        });
                }
            }
            // Workspaces come in name order, so each user's list is in name order too.
            Ok(repo
                .users()?
                .into_iter()
                .map(|u| UserInfo {
                    workspaces: memberships.remove(u.key()).unwrap_or_default(),
                    user: u.to_string(),
                })
                .collect())
        })
    }

    /// Every workspace, in name order, with its settings and counts. An embedding
    /// application's view: no actor, no access rule.
    ///
    /// ```
    /// # use turnstile::Engine;
    /// let engine = Engine::open_in_memory()?;
    /// engine.create_user("alice")?;
    /// engine.create_workspace("ml-team", "alice")?;
    /// let all = engine.list_workspaces()?;
    /// assert_eq!(all[0].workspace, "ml-team");
    /// assert_eq!(all[0].admins, 1);
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn list_workspaces(&self) -> Result<Vec<WorkspaceStatus>> {
        self.store.read(|repo| {
            repo.workspaces()?
                .iter()
                .map(|ws| crate::session::status_of(repo, ws))
                .collect()
        })
    }
}

impl Session<'_> {
    /// The project's key, visibility and description, and the actor's effective role
    /// on it. A project the actor cannot view is `ProjectNotFound`, exactly as one that
    /// does not exist (A6).
    ///
    /// ```
    /// # use turnstile::{Engine, ProjectRole, RoleSource};
    /// # let engine = Engine::open_in_memory()?;
    /// # engine.create_user("alice")?;
    /// # engine.create_user("bob")?;
    /// # engine.create_workspace("ml-team", "alice")?;
    /// let alice = engine.session_for(&"alice".parse()?)?;
    /// alice.create_project("ml-team/Classification", Default::default())?;
    /// let info = alice.project_info("ml-team/classification")?;
    /// assert_eq!(info.project, "ml-team/Classification");
    /// assert_eq!((info.role, info.source), (ProjectRole::Owner, RoleSource::WorkspaceAdmin));
    /// let bob = engine.session_for(&"bob".parse()?)?;
    /// assert!(matches!(
    ///     bob.project_info("ml-team/classification"),
    ///     Err(turnstile::Error::ProjectNotFound { .. })
    /// ));
    /// # Ok::<(), turnstile::Error>(())
    /// ```
    pub fn project_info(&self, project: &str) -> Result<ProjectInfo> {
        let name: QualifiedProjectName = project.parse()?;
        self.read_live(|repo| visible_project(repo, &self.actor, &name))?
            .ok_or_else(|| Error::ProjectNotFound {
                project: name.to_string(),
            })
    }

    /// [`project_info`](Self::project_info) of each project named, read on one
    /// snapshot, in the order given; a project the actor cannot view (or that no
    /// longer exists) is left out. For lists: pass a page of
    /// [`list_projects_page`](Self::list_projects_page).
    pub fn project_infos(&self, projects: &[String]) -> Result<Vec<ProjectInfo>> {
        let names = projects
            .iter()
            .map(|p| p.parse::<QualifiedProjectName>())
            .collect::<Result<Vec<_>>>()?;
        self.read_live(|repo| {
            let mut infos = Vec::with_capacity(names.len());
            for name in &names {
                infos.extend(visible_project(repo, &self.actor, name)?);
            }
            Ok(infos)
        })
    }
}

/// The project's details if `actor` can view it; `None` when it cannot or the project
/// does not exist, which the caller must not tell apart (A6).
fn visible_project<R: Repository + ?Sized>(
    repo: &R,
    actor: &crate::Principal,
    name: &QualifiedProjectName,
) -> Result<Option<ProjectInfo>> {
    let Some(facts) = repo.project_facts(Some(actor), &name.workspace, name.project.key())? else {
        return Ok(None);
    };
    let Some(standing) = facts.standing else {
        return Ok(None);
    };
    let access: Option<Access> = effective_access(facts.visibility, standing);
    // INVARIANT: A6, a project the actor cannot view is reported as absent.
    let (Some(access), true) = (access, permits(standing, access, Action::View)) else {
        return Ok(None);
    };
    let Some(ws) = repo.workspace(&name.workspace)? else {
        return Ok(None);
    };
    let Some(p) = repo.project(ws.id, &name.project)? else {
        return Ok(None);
    };
    Ok(Some(ProjectInfo {
        project: format!("{}/{}", ws.name, p.name),
        key: p.key.to_string(),
        visibility: p.visibility,
        description: p.description,
        role: access.role,
        source: access.source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProjectOptions, Visibility};

    fn team() -> Result<Engine> {
        let engine = Engine::open_in_memory()?;
        for u in ["alice", "bob", "carol"] {
            engine.create_user(u)?;
        }
        engine.create_workspace("ml-team", "alice")?;
        let alice = engine.session_for(&"alice".parse()?)?;
        alice.invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false)?;
        alice.create_project("ml-team/hidden", ProjectOptions::default())?;
        alice.create_project(
            "ml-team/Shared",
            ProjectOptions {
                key: Some("SHR".into()),
                visibility: Some(Visibility::Workspace),
                description: Some("for everyone".into()),
                ..ProjectOptions::default()
            },
        )?;
        alice.create_service_account("ml-team", "cicd", false)?;
        Ok(engine)
    }

    #[test]
    fn a6_project_info_of_a_hidden_project_is_project_not_found_like_an_absent_one() -> Result<()> {
        let engine = team()?;
        let bob = engine.session_for(&"bob".parse()?)?;
        let hidden = bob.project_info("ml-team/hidden").unwrap_err();
        let absent = bob.project_info("ml-team/absent").unwrap_err();
        assert!(
            matches!(hidden, Error::ProjectNotFound { .. }),
            "{hidden:?}"
        );
        assert!(
            matches!(absent, Error::ProjectNotFound { .. }),
            "{absent:?}"
        );
        // An outsider's answer is the same as for an absent project too.
        let carol = engine.session_for(&"carol".parse()?)?;
        assert!(matches!(
            carol.project_info("ml-team/shared"),
            Err(Error::ProjectNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn project_info_gives_the_details_and_the_actors_role_by_any_spelling() -> Result<()> {
        let engine = team()?;
        let bob = engine.session_for(&"bob".parse()?)?;
        let info = bob.project_info("ML-Team/SHARED")?;
        assert_eq!(
            info,
            ProjectInfo {
                project: "ml-team/Shared".into(),
                key: "SHR".into(),
                visibility: Visibility::Workspace,
                description: "for everyone".into(),
                role: ProjectRole::Owner,
                source: RoleSource::WorkspaceVisibility,
            }
        );
        Ok(())
    }

    #[test]
    fn r5_a_service_account_gets_no_details_of_a_workspace_visibility_project() -> Result<()> {
        let engine = team()?;
        let sa = engine.session_for(&"cicd@ml-team".parse()?)?;
        assert!(matches!(
            sa.project_info("ml-team/shared"),
            Err(Error::ProjectNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn project_infos_leave_out_what_the_actor_cannot_view() -> Result<()> {
        let engine = team()?;
        let bob = engine.session_for(&"bob".parse()?)?;
        let names = ["ml-team/hidden".to_owned(), "ml-team/Shared".to_owned()];
        let infos = bob.project_infos(&names)?;
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].project, "ml-team/Shared");
        let alice = engine.session_for(&"alice".parse()?)?;
        assert_eq!(alice.project_infos(&names)?.len(), 2);
        Ok(())
    }

    #[test]
    fn t6_project_info_fails_once_the_sessions_token_is_revoked() -> Result<()> {
        let engine = team()?;
        let token = engine.issue_user_token("bob", "laptop", None)?;
        let bob = engine.authenticate(token.secret())?;
        bob.project_info("ml-team/shared")?;
        bob.revoke_token(token.id)?;
        assert!(matches!(
            bob.project_info("ml-team/shared"),
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            bob.project_infos(&["ml-team/shared".to_owned()]),
            Err(Error::InvalidToken)
        ));
        Ok(())
    }

    #[test]
    fn users_and_workspaces_are_listed_with_memberships_and_counts() -> Result<()> {
        let engine = team()?;
        let users = engine.list_users()?;
        let names: Vec<_> = users.iter().map(|u| u.user.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        assert_eq!(
            users[1].workspaces,
            [Membership {
                workspace: "ml-team".into(),
                role: WorkspaceRole::Member
            }]
        );
        assert!(users[2].workspaces.is_empty());
        let all = engine.list_workspaces()?;
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].admins, all[0].members, all[0].projects), (1, 1, 2));
        assert_eq!(all[0].active_service_accounts, 1);
        Ok(())
    }
}
