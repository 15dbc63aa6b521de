//! The invariants every change must keep (SPEC A4, A5, A7, A8, S2), each decided once
//! here for the management calls and for bulk imports alike. Each check returns the
//! error that names the breach. Storage gathers the counts; the SQL triggers restate
//! what they can as a second line of defence (D3).

use crate::domain::access::{RoleSource, Standing, effective_access};
use crate::domain::names::{Username, WorkspaceName};
use crate::domain::roles::{ProjectRole, Visibility, WorkspaceRole};
use crate::error::{Error, Result};

/// A4: a workspace keeps at least one admin; `admins_after` is how many it has once
/// the change is made.
pub fn keeps_an_admin(workspace: &WorkspaceName, admins_after: u32) -> Result<()> {
    if admins_after == 0 {
        return Err(Error::LastAdmin {
            workspace: workspace.to_string(),
        });
    }
    Ok(())
}

/// A5: a project may be public only while its workspace allows public projects.
pub fn visibility_allowed(
    workspace: &WorkspaceName,
    visibility: Visibility,
    allow_public_projects: bool,
) -> Result<()> {
    if visibility == Visibility::Public && !allow_public_projects {
        return Err(Error::VisibilityRestricted {
            workspace: workspace.to_string(),
        });
    }
    Ok(())
}

/// S2: at most `limit` active service accounts; `active_after` is how many are
/// active once the change is made.
pub fn within_service_account_limit(
    workspace: &WorkspaceName,
    active_after: u32,
    limit: u32,
) -> Result<()> {
    if active_after > limit {
        return Err(Error::ServiceAccountLimitReached {
            workspace: workspace.to_string(),
            limit,
        });
    }
    Ok(())
}

/// A7: a user holds project grants only while a member of the project's workspace.
pub fn may_hold_grant(user: &Username, workspace: &WorkspaceName, is_member: bool) -> Result<()> {
    if !is_member {
        return Err(Error::UserNotInWorkspace {
            user: user.to_string(),
            workspace: workspace.to_string(),
        });
    }
    Ok(())
}

/// A8: the role a user holds on a project through its visibility alone, which no
/// grant can add to or take away: owner for every member on a `workspace`-visibility
/// project (R3), as [`effective_access`] gives it.
pub fn role_through_visibility(
    visibility: Visibility,
    workspace_role: Option<WorkspaceRole>,
) -> Option<ProjectRole> {
    // As a plain member without a grant, so that R1 and R2 do not answer instead.
    let standing = Standing::User {
        workspace_role: workspace_role.map(|_| WorkspaceRole::Member),
        grant: None,
    };
    effective_access(visibility, standing)
        .filter(|a| a.source == RoleSource::WorkspaceVisibility)
        .map(|a| a.role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> WorkspaceName {
        "ml-team".parse().expect("a workspace name")
    }

    #[test]
    fn a4_the_last_admin_stays() {
        assert!(keeps_an_admin(&ws(), 1).is_ok());
        assert!(matches!(
            keeps_an_admin(&ws(), 0),
            Err(Error::LastAdmin { .. })
        ));
    }

    #[test]
    fn a5_public_only_when_allowed() {
        assert!(visibility_allowed(&ws(), Visibility::Public, true).is_ok());
        assert!(visibility_allowed(&ws(), Visibility::Workspace, false).is_ok());
        assert!(matches!(
            visibility_allowed(&ws(), Visibility::Public, false),
            Err(Error::VisibilityRestricted { .. })
        ));
    }

    #[test]
    fn s2_the_limit_counts_active_accounts_after_the_change() {
        assert!(within_service_account_limit(&ws(), 50, 50).is_ok());
        assert!(matches!(
            within_service_account_limit(&ws(), 51, 50),
            Err(Error::ServiceAccountLimitReached { limit: 50, .. })
        ));
    }

    #[test]
    fn a7_only_members_hold_grants() {
        let bob: Username = "bob".parse().expect("a username");
        assert!(may_hold_grant(&bob, &ws(), true).is_ok());
        assert!(matches!(
            may_hold_grant(&bob, &ws(), false),
            Err(Error::UserNotInWorkspace { .. })
        ));
    }

    #[test]
    fn a8_members_own_workspace_visibility_projects_through_r3_alone() {
        for role in [WorkspaceRole::Member, WorkspaceRole::Admin] {
            assert_eq!(
                role_through_visibility(Visibility::Workspace, Some(role)),
                Some(ProjectRole::Owner)
            );
            assert_eq!(
                role_through_visibility(Visibility::Private, Some(role)),
                None
            );
            assert_eq!(
                role_through_visibility(Visibility::Public, Some(role)),
                None
            );
        }
        assert_eq!(role_through_visibility(Visibility::Workspace, None), None);
    }
}
