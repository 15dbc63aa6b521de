//! The documented Neptune scenarios, end to end, against an in-memory engine.
//!
//! Each test walks one story the way an embedding application would: bootstrap users
//! and a workspace, then act through sessions and ask `check` what is allowed. The
//! comments name the SPEC rules each step holds.

use std::collections::BTreeMap;

use turnstile::{
    Action, Error, NameKind, ProjectOptions, ProjectRole, Result, Visibility, WorkspaceRole,
    WorkspaceSettings,
};

mod common;
use common::{who, with_visibility};

/// `alice` is admin of `ml-team`; `bob` and `carol` are members; `dave` is a user of
/// no workspace.
fn ml_team() -> Result<common::TestEngine> {
    let engine = common::engine()?;
    for user in ["alice", "bob", "carol", "dave"] {
        engine.create_user(user)?;
    }
    engine.create_workspace("ml-team", "alice")?;
    let alice = engine.session_for(&who("alice"))?;
    for member in ["bob", "carol"] {
        alice.invite_to_workspace("ml-team", member, WorkspaceRole::Member, false)?;
    }
    Ok(engine)
}

// Every test below runs once per backend: `sqlite::name` and `postgres::name` (B1,
// tests/common `backend_tests!`; parentheses, so that rustfmt formats them).
common::backend_tests!(
    #[test]
    fn private_project_is_seen_only_through_explicit_grants() -> Result<()> {
        let engine = ml_team()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let project = "ml-team/classification";

        let created = alice.create_project(project, with_visibility(Visibility::Private))?;
        assert_eq!(created, project);
        let ci = alice.create_service_account("ml-team", "cicd", false)?;
        let cicd = who("cicd@ml-team");

        // Private: a plain member and a fresh service account see nothing.
        assert_eq!(bob.list_projects()?, Vec::<String>::new());
        assert!(!engine.check(&cicd, project, Action::View)?);

        // R2: explicit grants give their roles.
        alice.add_project_member(project, "bob", ProjectRole::Contributor)?;
        alice.add_project_service_account(project, "cicd@ml-team", ProjectRole::Contributor)?;
        assert_eq!(bob.list_projects()?, vec![project.to_owned()]);
        assert!(engine.check(&who("bob"), project, Action::Edit)?);
        assert!(!engine.check(&who("bob"), project, Action::Manage)?);
        assert!(engine.authorize(ci.secret(), project, Action::Edit)?);
        assert!(!engine.authorize(ci.secret(), project, Action::Manage)?);
        assert_eq!(
            alice.project_members(project)?,
            BTreeMap::from([
                ("alice".to_owned(), ProjectRole::Owner), // A1: the creator's grant
                ("bob".to_owned(), ProjectRole::Contributor),
            ])
        );
        assert_eq!(
            bob.project_service_accounts(project)?,
            BTreeMap::from([("cicd@ml-team".to_owned(), ProjectRole::Contributor)])
        );

        // Removing both grants hides the project again.
        alice.remove_project_member(project, "bob")?;
        alice.remove_project_service_account(project, "cicd@ml-team")?;
        assert_eq!(bob.list_projects()?, Vec::<String>::new());
        assert!(!engine.check(&cicd, project, Action::View)?);
        // A6: bob can no longer see it, so it is "not found" to him.
        assert!(matches!(
            bob.project_members(project),
            Err(Error::ProjectNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn workspace_visibility_project_makes_members_owners_but_not_service_accounts() -> Result<()> {
        let engine = ml_team()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = "ml-team/shared";
        alice.create_project(project, with_visibility(Visibility::Workspace))?;
        alice.create_service_account("ml-team", "cicd", false)?;
        let cicd = who("cicd@ml-team");

        // R3: every workspace member is listed, as owner.
        let owners: BTreeMap<String, ProjectRole> = ["alice", "bob", "carol"]
            .into_iter()
            .map(|u| (u.to_owned(), ProjectRole::Owner))
            .collect();
        assert_eq!(alice.project_members(project)?, owners);
        // R5: no service account reaches it through visibility.
        assert_eq!(alice.project_service_accounts(project)?, BTreeMap::new());
        assert!(!engine.check(&cicd, project, Action::View)?);
        // dave is in no workspace (R7).
        assert!(!engine.check(&who("dave"), project, Action::View)?);

        // A8: members cannot be removed from it nor added to it.
        assert!(matches!(
            alice.remove_project_member(project, "bob"),
            Err(Error::UserNotExistsOrWithoutAccess { .. })
        ));
        assert!(matches!(
            alice.add_project_member(project, "bob", ProjectRole::Viewer),
            Err(Error::UserAlreadyHasAccess {
                role: ProjectRole::Owner,
                ..
            })
        ));

        // A8: service accounts are still added and removed explicitly.
        alice.add_project_service_account(project, "cicd@ml-team", ProjectRole::Viewer)?;
        assert_eq!(
            alice.project_service_accounts(project)?,
            BTreeMap::from([("cicd@ml-team".to_owned(), ProjectRole::Viewer)])
        );
        assert!(engine.check(&cicd, project, Action::View)?);
        assert!(!engine.check(&cicd, project, Action::Edit)?);
        alice.remove_project_service_account(project, "cicd@ml-team")?;
        assert!(!engine.check(&cicd, project, Action::View)?);
        Ok(())
    }

    #[test]
    fn members_and_service_accounts_create_and_manage_projects() -> Result<()> {
        let engine = ml_team()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;

        // A1: a member creates a project and owns it.
        let project = bob.create_project("ml-team/bobs-models", ProjectOptions::default())?;
        assert_eq!(
            engine
                .explain(&who("bob"), &project)?
                .map(|a| (a.role, a.source)),
            Some((ProjectRole::Owner, turnstile::RoleSource::ExplicitGrant))
        );
        assert!(engine.check(&who("bob"), &project, Action::Manage)?);

        // A2: an SA with the owner role manages the project's members.
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        bob.add_project_service_account(&project, "cicd@ml-team", ProjectRole::Owner)?;
        let ci = engine.authenticate(token.secret())?;
        assert_eq!(ci.actor(), &who("cicd@ml-team"));
        ci.add_project_member(&project, "carol", ProjectRole::Viewer)?;
        assert!(engine.check(&who("carol"), &project, Action::View)?);
        assert_eq!(
            engine.session_for(&who("carol"))?.list_projects()?,
            vec![project.clone()]
        );

        // A1: an SA creates a project in its own workspace and owns it.
        let ci_runs = ci.create_project("ci-runs", ProjectOptions::default())?;
        assert_eq!(ci_runs, "ml-team/ci-runs");
        assert_eq!(
            alice.project_service_accounts(&ci_runs)?,
            BTreeMap::from([("cicd@ml-team".to_owned(), ProjectRole::Owner)])
        );

        // A3: an SA never deletes a project, even one it owns; nor does a member owner.
        for p in [&project, &ci_runs] {
            assert!(matches!(
                ci.delete_project(p),
                Err(Error::PermissionDenied { .. })
            ));
            assert!(!engine.check(&who("cicd@ml-team"), p, Action::Delete)?);
        }
        assert!(matches!(
            bob.delete_project(&project),
            Err(Error::PermissionDenied { .. })
        ));

        // A3: no call makes an SA an admin: its full name is not a username.
        assert!(matches!(
            alice.invite_to_workspace("ml-team", "cicd@ml-team", WorkspaceRole::Admin, false),
            Err(Error::InvalidName {
                kind: NameKind::Username,
                ..
            })
        ));
        assert!(matches!(
            alice.set_workspace_role("ml-team", "cicd@ml-team", WorkspaceRole::Admin),
            Err(Error::InvalidName {
                kind: NameKind::Username,
                ..
            })
        ));

        // A3: the admin user deletes.
        alice.delete_project(&ci_runs)?;
        assert!(!engine.check(&who("alice"), &ci_runs, Action::View)?);
        assert!(matches!(
            alice.project_members(&ci_runs),
            Err(Error::ProjectNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn public_projects_and_invitations_follow_workspace_settings() -> Result<()> {
        let engine = ml_team()?;
        let alice = engine.session_for(&who("alice"))?;

        // A5: public is refused while the workspace forbids it, at creation and later.
        assert!(matches!(
            alice.create_project("ml-team/open-data", with_visibility(Visibility::Public)),
            Err(Error::VisibilityRestricted { .. })
        ));
        alice.create_project("ml-team/open-data", ProjectOptions::default())?;
        assert!(matches!(
            alice.set_project_visibility("ml-team/open-data", Visibility::Public),
            Err(Error::VisibilityRestricted { .. })
        ));

        let status = alice.set_workspace_settings(
            "ml-team",
            WorkspaceSettings {
                allow_public_projects: Some(true),
                ..Default::default()
            },
        )?;
        assert!(status.allow_public_projects);
        alice.set_project_visibility("ml-team/open-data", Visibility::Public)?;
        alice.create_project("ml-team/open-models", with_visibility(Visibility::Public))?;

        // R4: everyone, anonymous callers included, views a public project.
        let dave = engine.session_for(&who("dave"))?;
        assert_eq!(
            dave.list_projects()?,
            vec![
                "ml-team/open-data".to_owned(),
                "ml-team/open-models".to_owned()
            ]
        );
        assert!(engine.check(&who("dave"), "ml-team/open-data", Action::View)?);
        assert!(!engine.check(&who("dave"), "ml-team/open-data", Action::Edit)?);
        assert!(engine.check_anonymous("ml-team/open-data", Action::View)?);
        assert!(!engine.check_anonymous("ml-team/open-data", Action::Edit)?);

        // Invitations: an existing member, an unknown user.
        assert!(matches!(
            alice.invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false),
            Err(Error::UserAlreadyInvited { .. })
        ));
        assert!(matches!(
            alice.invite_to_workspace("ml-team", "nobody", WorkspaceRole::Member, false),
            Err(Error::WorkspaceOrUserNotFound { .. })
        ));
        alice.invite_to_workspace("ml-team", "dave", WorkspaceRole::Member, false)?;
        assert_eq!(
            alice.workspace_members("ml-team")?.get("dave"),
            Some(&WorkspaceRole::Member)
        );
        Ok(())
    }

    #[test]
    fn fifty_first_service_account_is_refused_until_one_is_deactivated() -> Result<()> {
        let engine = ml_team()?;
        let alice = engine.session_for(&who("alice"))?;
        for n in 0..50 {
            alice.create_service_account("ml-team", &format!("runner-{n:02}"), false)?;
        }
        // S2: the default limit is 50 active accounts.
        assert!(matches!(
            alice.create_service_account("ml-team", "runner-50", false),
            Err(Error::ServiceAccountLimitReached { limit: 50, .. })
        ));
        assert_eq!(alice.workspace_service_accounts("ml-team")?.len(), 50);

        // S3: deactivating one frees a slot.
        alice.deactivate_service_account("runner-00@ml-team")?;
        alice.create_service_account("ml-team", "runner-50", false)?;
        let status = alice.workspace_status("ml-team")?;
        assert_eq!(status.active_service_accounts, 50);
        assert_eq!(status.deactivated_service_accounts, 1);
        assert_eq!(status.service_account_limit, 50);

        // S2: reactivating past the limit is refused too.
        assert!(matches!(
            alice.reactivate_service_account("runner-00@ml-team"),
            Err(Error::ServiceAccountLimitReached { limit: 50, .. })
        ));
        Ok(())
    }

    #[test]
    fn the_last_admin_cannot_leave_or_step_down() -> Result<()> {
        let engine = ml_team()?;
        let alice = engine.session_for(&who("alice"))?;

        // A4: alice is the only admin.
        assert!(matches!(
            alice.remove_workspace_member("ml-team", "alice"),
            Err(Error::LastAdmin { .. })
        ));
        assert!(matches!(
            alice.set_workspace_role("ml-team", "alice", WorkspaceRole::Member),
            Err(Error::LastAdmin { .. })
        ));

        // With a second admin she may step down, and then bob is the last one.
        alice.set_workspace_role("ml-team", "bob", WorkspaceRole::Admin)?;
        alice.set_workspace_role("ml-team", "alice", WorkspaceRole::Member)?;
        let bob = engine.session_for(&who("bob"))?;
        assert!(matches!(
            bob.set_workspace_role("ml-team", "bob", WorkspaceRole::Member),
            Err(Error::LastAdmin { .. })
        ));
        assert!(matches!(
            bob.remove_workspace_member("ml-team", "bob"),
            Err(Error::LastAdmin { .. })
        ));
        bob.remove_workspace_member("ml-team", "alice")?;
        assert_eq!(
            bob.workspace_members("ml-team")?,
            BTreeMap::from([
                ("bob".to_owned(), WorkspaceRole::Admin),
                ("carol".to_owned(), WorkspaceRole::Member),
            ])
        );
        Ok(())
    }
);
