//! The effective-role rules (SPEC §3, R1–R7) and the action table (SPEC §4), as pure
//! functions over facts. Storage gathers the facts; this module alone decides.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::domain::principal::Principal;
use crate::domain::roles::{ProjectRole, Visibility, WorkspaceRole};
use crate::error::{Error, Result};

/// What a principal is to the workspace that owns a project: everything R1–R7 need
/// besides the project's visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A caller with no identity.
    Anonymous,
    /// A user: their role in the project's workspace (`None` when not a member) and
    /// their explicit grant on the project, if any.
    User {
        /// The user's workspace role, `None` for a non-member.
        workspace_role: Option<WorkspaceRole>,
        /// The user's explicit grant on the project.
        grant: Option<ProjectRole>,
    },
    /// A service account: whether it is active, whether it belongs to the project's
    /// workspace, and its explicit grant on the project, if any.
    ServiceAccount {
        /// `false` once deactivated (R6).
        active: bool,
        /// `false` for an account of another workspace (R7).
        in_workspace: bool,
        /// The account's explicit grant on the project.
        grant: Option<ProjectRole>,
    },
}

impl Standing {
    /// The explicit grant on the project, if any (an anonymous caller holds none).
    pub fn grant(self) -> Option<ProjectRole> {
        match self {
            Self::Anonymous => None,
            Self::User { grant, .. } | Self::ServiceAccount { grant, .. } => grant,
        }
    }

    /// The same standing with its explicit grant replaced by `grant` (an anonymous
    /// caller holds none).
    pub fn with_grant(self, grant: Option<ProjectRole>) -> Self {
        match self {
            Self::Anonymous => Self::Anonymous,
            Self::User { workspace_role, .. } => Self::User {
                workspace_role,
                grant,
            },
            Self::ServiceAccount {
                active,
                in_workspace,
                ..
            } => Self::ServiceAccount {
                active,
                in_workspace,
                grant,
            },
        }
    }
}

/// The rule that gave an effective role, for [`explain`](crate::Engine::explain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleSource {
    /// R1: the user is an admin of the project's workspace.
    WorkspaceAdmin,
    /// R2: an explicit grant on the project.
    ExplicitGrant,
    /// R3: the project has `workspace` visibility and the user is a member.
    WorkspaceVisibility,
    /// R4: the project is public.
    Public,
}

impl RoleSource {
    /// A short phrase for people.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkspaceAdmin => "workspace admin",
            Self::ExplicitGrant => "explicit grant",
            Self::WorkspaceVisibility => "workspace visibility",
            Self::Public => "public project",
        }
    }
}

/// An effective role and the rule that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Access {
    /// The effective role.
    pub role: ProjectRole,
    /// The rule it came from. When several rules give the same highest role, the
    /// first of R1, R2, R3, R4 is named.
    pub source: RoleSource,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.role, self.source.as_str())
    }
}

/// The effective role of a principal on a project: the highest role any rule of
/// R1–R7 gives, or `None` for no access.
pub fn effective_access(visibility: Visibility, standing: Standing) -> Option<Access> {
    // Candidates in precedence order; a later one wins only with a strictly higher role.
    let mut candidates: [Option<Access>; 4] = [None; 4];
    let at = |role, source| Some(Access { role, source });
    match standing {
        Standing::Anonymous => {}
        Standing::User {
            workspace_role,
            grant,
        } => {
            // INVARIANT: R7, a non-member gains nothing but R4; R2, a user's grant
            // counts only while the user is a member.
            if let Some(ws_role) = workspace_role {
                if ws_role == WorkspaceRole::Admin {
                    candidates[0] = at(ProjectRole::Owner, RoleSource::WorkspaceAdmin);
                }
                candidates[1] = grant.and_then(|g| at(g, RoleSource::ExplicitGrant));
                if visibility == Visibility::Workspace {
                    candidates[2] = at(ProjectRole::Owner, RoleSource::WorkspaceVisibility);
                }
            }
        }
        Standing::ServiceAccount {
            active,
            in_workspace,
            grant,
        } => {
            // INVARIANT: R6, a deactivated SA has no role anywhere, public included.
            if !active {
                return None;
            }
            // INVARIANT: R5, an SA never gains a role from R1 or R3: only its grant
            // (R2, and only in its own workspace, R7) and R4 reach it.
            if in_workspace {
                candidates[1] = grant.and_then(|g| at(g, RoleSource::ExplicitGrant));
            }
        }
    }
    if visibility == Visibility::Public {
        candidates[3] = at(ProjectRole::Viewer, RoleSource::Public);
    }
    candidates
        .into_iter()
        .flatten()
        .fold(None, |best, c| match best {
            Some(b) if b.role >= c.role => Some(b),
            _ => Some(c),
        })
}

/// How to list what a principal can see in one workspace, derived from
/// [`effective_access`] alone: the visibilities whose every project it sees whatever
/// its grants, and whether its explicit grants can add projects of other visibilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingPlan {
    /// Visibilities seen without a grant.
    pub visible: Vec<Visibility>,
    /// Whether a grant can make a project of another visibility visible.
    pub grants_add: bool,
}

/// The [`ListingPlan`] of a principal whose standing in a workspace, grants not
/// counted, is `standing` (its `grant` is ignored).
pub fn listing_plan(standing: Standing) -> ListingPlan {
    let with_grant = |grant| standing.with_grant(grant);
    let visible: Vec<Visibility> = Visibility::ALL
        .into_iter()
        .filter(|v| effective_access(*v, with_grant(None)).is_some())
        .collect();
    let grants_add = Visibility::ALL.into_iter().any(|v| {
        !visible.contains(&v)
            && effective_access(v, with_grant(Some(ProjectRole::Viewer))).is_some()
    });
    ListingPlan {
        visible,
        grants_add,
    }
}

/// An action on a project, the subject of [`check`](crate::Engine::check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// View the project, its members and service accounts.
    View,
    /// Change the project's content (log runs, change data).
    Edit,
    /// Manage the project's members and service accounts, visibility and description.
    Manage,
    /// Delete the project.
    Delete,
}

impl Action {
    /// Every project action.
    pub const ALL: [Action; 4] = [Self::View, Self::Edit, Self::Manage, Self::Delete];

    /// The name used in messages and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Edit => "edit",
            Self::Manage => "manage",
            Self::Delete => "delete",
        }
    }
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "view" | "read" => Ok(Self::View),
            "edit" | "write" | "contribute" => Ok(Self::Edit),
            "manage" | "manage-members" | "manage_members" | "admin" => Ok(Self::Manage),
            "delete" => Ok(Self::Delete),
            _ => Err(Error::invalid_value(
                "action",
                s,
                "`view`, `edit`, `manage` or `delete`",
            )),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The least role each action needs, per the SPEC §4 table. `Delete` needs more than
/// a role: see [`permits`].
pub fn required_role(action: Action) -> ProjectRole {
    match action {
        Action::View => ProjectRole::Viewer,
        Action::Edit => ProjectRole::Contributor,
        Action::Manage | Action::Delete => ProjectRole::Owner,
    }
}

/// Whether a principal with this standing and effective access may perform `action`.
pub fn permits(standing: Standing, access: Option<Access>, action: Action) -> bool {
    let Some(access) = access else {
        return false;
    };
    if action == Action::Delete {
        // INVARIANT: A3, only a user who is workspace admin deletes a project; an SA
        // never does, whatever its role.
        return matches!(
            standing,
            Standing::User {
                workspace_role: Some(WorkspaceRole::Admin),
                ..
            }
        );
    }
    access.role >= required_role(action)
}

/// [`effective_access`] then [`permits`]: the whole decision for one check.
pub fn decide(visibility: Visibility, standing: Standing, action: Action) -> bool {
    permits(standing, effective_access(visibility, standing), action)
}

/// H5: over the network a principal asks decisions about itself; a workspace admin (a
/// user, A3) may also ask about any principal of its workspace. May `actor` ask about `subject`'s access to a project of a
/// workspace in which `actor_is_admin` and of which `subject_in_workspace`?
pub fn may_ask(
    actor: &Principal,
    subject: &Principal,
    actor_is_admin: bool,
    subject_in_workspace: bool,
) -> bool {
    // INVARIANT: A3, only a user can be a workspace admin; `actor_is_admin` is false
    // for a service account whatever the caller passes.
    actor == subject || (!actor.is_service_account() && actor_is_admin && subject_in_workspace)
}

/// What a principal is to a workspace, for the workspace-level rows of the SPEC §4 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceStanding {
    /// A user with the `admin` role.
    Admin,
    /// A user with the `member` role.
    Member,
    /// An active service account of the workspace.
    ServiceAccount,
    /// Anyone else: another workspace's principal, a deactivated account.
    Outsider,
}

impl WorkspaceStanding {
    /// The standing of a user with this workspace role (`None`: not a member).
    pub fn of_user(role: Option<WorkspaceRole>) -> Self {
        match role {
            Some(WorkspaceRole::Admin) => Self::Admin,
            Some(WorkspaceRole::Member) => Self::Member,
            None => Self::Outsider,
        }
    }
}

/// A workspace-level action (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkspaceAction {
    /// Create a project in the workspace.
    CreateProject,
    /// List the workspace's members and service accounts, read its status.
    ListMembers,
    /// Invite and remove members, change workspace roles and settings.
    ManageMembers,
    /// Create, deactivate and reactivate service accounts; issue and revoke their tokens.
    ManageServiceAccounts,
    /// Read the audit log.
    ReadAudit,
}

impl WorkspaceAction {
    /// The phrase used in `PermissionDenied` messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateProject => "create projects",
            Self::ListMembers => "list members",
            Self::ManageMembers => "manage members and settings",
            Self::ManageServiceAccounts => "manage service accounts",
            Self::ReadAudit => "read the audit log",
        }
    }
}

/// Whether a principal with this standing may perform a workspace-level action.
pub fn workspace_permits(standing: WorkspaceStanding, action: WorkspaceAction) -> bool {
    use WorkspaceStanding::*;
    match action {
        WorkspaceAction::CreateProject | WorkspaceAction::ListMembers => {
            matches!(standing, Admin | Member | ServiceAccount)
        }
        // INVARIANT: A3, an SA is never a workspace admin, so it never manages the
        // workspace, its service accounts or reads the audit log.
        WorkspaceAction::ManageMembers
        | WorkspaceAction::ManageServiceAccounts
        | WorkspaceAction::ReadAudit => standing == Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProjectRole::*;
    use Visibility::*;

    fn user(ws: Option<WorkspaceRole>, grant: Option<ProjectRole>) -> Standing {
        Standing::User {
            workspace_role: ws,
            grant,
        }
    }

    fn sa(active: bool, grant: Option<ProjectRole>) -> Standing {
        Standing::ServiceAccount {
            active,
            in_workspace: true,
            grant,
        }
    }

    fn role(v: Visibility, s: Standing) -> Option<ProjectRole> {
        effective_access(v, s).map(|a| a.role)
    }

    #[test]
    fn r1_workspace_admin_owns_every_project() {
        for v in [Private, Workspace, Public] {
            let a = effective_access(v, user(Some(WorkspaceRole::Admin), Some(Viewer)));
            assert_eq!(
                a,
                Some(Access {
                    role: Owner,
                    source: RoleSource::WorkspaceAdmin
                })
            );
        }
    }

    #[test]
    fn r2_grant_counts_only_for_members_and_active_accounts() {
        assert_eq!(
            role(
                Private,
                user(Some(WorkspaceRole::Member), Some(Contributor))
            ),
            Some(Contributor)
        );
        assert_eq!(role(Private, user(None, Some(Owner))), None);
        assert_eq!(
            role(Private, sa(true, Some(Contributor))),
            Some(Contributor)
        );
        assert_eq!(role(Private, sa(false, Some(Owner))), None);
    }

    #[test]
    fn r3_workspace_visibility_makes_every_member_owner() {
        let a = effective_access(Workspace, user(Some(WorkspaceRole::Member), Some(Viewer)));
        assert_eq!(
            a.map(|a| (a.role, a.source)),
            Some((Owner, RoleSource::WorkspaceVisibility))
        );
        assert_eq!(role(Private, user(Some(WorkspaceRole::Member), None)), None);
    }

    #[test]
    fn r4_public_gives_everyone_viewer() {
        assert_eq!(role(Public, Standing::Anonymous), Some(Viewer));
        assert_eq!(role(Public, user(None, None)), Some(Viewer));
        assert_eq!(role(Private, Standing::Anonymous), None);
        // A higher grant still wins over the public floor.
        assert_eq!(role(Public, sa(true, Some(Owner))), Some(Owner));
    }

    #[test]
    fn r5_service_account_never_inherits_workspace_visibility() {
        assert_eq!(role(Workspace, sa(true, None)), None);
        assert_eq!(role(Workspace, sa(true, Some(Viewer))), Some(Viewer));
    }

    #[test]
    fn r6_deactivated_service_account_has_no_role_even_on_public() {
        assert_eq!(role(Public, sa(false, None)), None);
    }

    #[test]
    fn r7_other_workspace_principals_get_only_public() {
        let foreign = Standing::ServiceAccount {
            active: true,
            in_workspace: false,
            grant: Some(Owner),
        };
        assert_eq!(role(Private, foreign), None);
        assert_eq!(role(Public, foreign), Some(Viewer));
        assert_eq!(role(Workspace, user(None, None)), None);
    }

    #[test]
    fn listing_plan_follows_the_rules() {
        use WorkspaceRole::*;
        let plan = |s| listing_plan(s);
        assert_eq!(
            plan(user(Some(Admin), None)),
            ListingPlan {
                visible: vec![Private, Workspace, Public],
                grants_add: false
            }
        );
        assert_eq!(
            plan(user(Some(Member), None)),
            ListingPlan {
                visible: vec![Workspace, Public],
                grants_add: true
            }
        );
        let outsider = plan(user(None, None));
        assert_eq!(
            (outsider.visible, outsider.grants_add),
            (vec![Public], false)
        );
        let sa_plan = plan(sa(true, None));
        assert_eq!(
            (sa_plan.visible, sa_plan.grants_add),
            (vec![Public], true),
            "R5"
        );
        let gone = plan(sa(false, None));
        assert_eq!((gone.visible, gone.grants_add), (vec![], false), "R6");
    }

    #[test]
    fn a3_only_an_admin_user_deletes() {
        let admin = user(Some(WorkspaceRole::Admin), None);
        assert!(decide(Private, admin, Action::Delete));
        assert!(!decide(
            Workspace,
            user(Some(WorkspaceRole::Member), None),
            Action::Delete
        ));
        assert!(!decide(Private, sa(true, Some(Owner)), Action::Delete));
        assert!(decide(Private, sa(true, Some(Owner)), Action::Manage), "A2");
    }

    #[test]
    fn action_table_follows_roles() {
        let member = |g| user(Some(WorkspaceRole::Member), Some(g));
        assert!(decide(Private, member(Viewer), Action::View));
        assert!(!decide(Private, member(Viewer), Action::Edit));
        assert!(decide(Private, member(Contributor), Action::Edit));
        assert!(!decide(Private, member(Contributor), Action::Manage));
        assert!(decide(Private, member(Owner), Action::Manage));
        assert!(!decide(
            Private,
            user(Some(WorkspaceRole::Member), None),
            Action::View
        ));
    }

    #[test]
    fn workspace_actions_follow_the_table() {
        use WorkspaceAction::*;
        use WorkspaceStanding as S;
        for a in [CreateProject, ListMembers] {
            assert!(workspace_permits(S::Member, a));
            assert!(workspace_permits(S::ServiceAccount, a));
            assert!(!workspace_permits(S::Outsider, a));
        }
        for a in [ManageMembers, ManageServiceAccounts, ReadAudit] {
            assert!(workspace_permits(S::Admin, a));
            assert!(!workspace_permits(S::Member, a));
            assert!(!workspace_permits(S::ServiceAccount, a));
        }
    }
}
