//! Storage behind a trait (SPEC D5). [`Repository`] is what the engine's management
//! calls need from a store, inside one transaction; `sqlite.rs` and `postgres.rs`
//! implement it, and `store.rs` chooses between them (B1).

mod mapped;
pub(crate) mod pg_listen;
mod pg_tls;
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod store;

use std::collections::HashSet;

use crate::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::domain::description::ProjectDescription;
use crate::domain::names::{
    ProjectKey, ProjectName, ServiceAccountFullName, ServiceAccountName, Username, WorkspaceName,
};
use crate::domain::principal::Principal;
use crate::domain::roles::{ProjectRole, Visibility, WorkspaceRole};
use crate::error::Result;
use crate::token::TokenDigest;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident = $what:literal),*) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::error::Error;

            fn from_str(s: &str) -> crate::error::Result<Self> {
                s.parse().map(Self).map_err(|_| {
                    crate::error::Error::invalid_value($what, s, "a whole number")
                })
            }
        }
    )*};
}

id_type!(
    /// A user's row id.
    UserId = "user id",
    /// A workspace's row id.
    WorkspaceId = "workspace id",
    /// A project's row id.
    ProjectId = "project id",
    /// A service account's row id.
    ServiceAccountId = "service account id",
    /// A token's row id; shown to people so they can name a token without its secret.
    TokenId = "token id"
);

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Row id.
    pub id: UserId,
    /// The username, as spelled at creation.
    pub name: Username,
}

/// A stored workspace with its settings.
#[derive(Debug, Clone)]
pub struct WorkspaceRecord {
    /// Row id.
    pub id: WorkspaceId,
    /// The workspace name.
    pub name: WorkspaceName,
    /// Whether projects may be made public (A5).
    pub allow_public_projects: bool,
    /// The most active service accounts allowed at once (S2).
    pub service_account_limit: u32,
}

/// A stored service account.
#[derive(Debug, Clone)]
pub struct ServiceAccountRecord {
    /// Row id.
    pub id: ServiceAccountId,
    /// The workspace it belongs to.
    pub workspace_id: WorkspaceId,
    /// Its name within the workspace.
    pub name: ServiceAccountName,
    /// `false` once deactivated.
    pub active: bool,
}

/// A stored project.
#[derive(Debug, Clone)]
pub struct ProjectRecord {
    /// Row id.
    pub id: ProjectId,
    /// The workspace it belongs to.
    pub workspace_id: WorkspaceId,
    /// Its name, as spelled at creation.
    pub name: ProjectName,
    /// Its key.
    pub key: ProjectKey,
    /// Its visibility.
    pub visibility: Visibility,
    /// Its description.
    pub description: String,
}

/// A project to insert.
#[derive(Debug)]
pub struct NewProject<'a> {
    /// The owning workspace.
    pub workspace_id: WorkspaceId,
    /// The name.
    pub name: &'a ProjectName,
    /// The key, already checked to be free.
    pub key: &'a ProjectKey,
    /// The visibility.
    pub visibility: Visibility,
    /// The description (N8).
    pub description: &'a ProjectDescription,
}

/// The owner of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOwner {
    /// A user's personal token.
    User(UserId),
    /// A service account's token.
    ServiceAccount(ServiceAccountId),
}

/// A stored token, never its secret.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// Row id.
    pub id: TokenId,
    /// Whose it is.
    pub owner: TokenOwner,
    /// Its label.
    pub label: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Last successful authentication, Unix milliseconds, recorded at most once a minute.
    pub last_used_at: Option<i64>,
    /// Revocation time, Unix milliseconds.
    pub revoked_at: Option<i64>,
}

/// What a token authenticates as, with what is needed to decide if it still may.
#[derive(Debug, Clone)]
pub struct TokenLookup {
    /// The token.
    pub token: TokenRecord,
    /// The principal it belongs to.
    pub principal: Principal,
    /// `false` for a deactivated service account's token.
    pub principal_active: bool,
}

impl TokenLookup {
    /// The facts that decide whether the token still authenticates (T3).
    pub fn state(&self) -> crate::domain::tokens::TokenState {
        crate::domain::tokens::TokenState {
            revoked: self.token.revoked_at.is_some(),
            expires_at: self.token.expires_at,
            principal_active: self.principal_active,
        }
    }
}

/// A token and, in the same look-up, the facts about its principal and one project:
/// the whole of `authorize` in one statement.
#[derive(Debug, Clone, Copy)]
pub struct TokenProjectFacts {
    /// The token's id.
    pub token_id: TokenId,
    /// Its expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Its last recorded use, Unix milliseconds.
    pub last_used_at: Option<i64>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// `false` for a deactivated service account's token.
    pub principal_active: bool,
    /// The project's visibility.
    pub visibility: Visibility,
    /// The principal's standing on the project.
    pub standing: crate::domain::access::Standing,
}

impl TokenProjectFacts {
    /// The facts that decide whether the token still authenticates (T3).
    pub fn state(&self) -> crate::domain::tokens::TokenState {
        crate::domain::tokens::TokenState {
            revoked: self.revoked,
            expires_at: self.expires_at,
            principal_active: self.principal_active,
        }
    }
}

/// The facts about one principal and one project that the rules of SPEC §3 decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectFacts {
    /// The project's visibility.
    pub visibility: Visibility,
    /// The principal's standing, or `None` when the principal does not exist.
    pub standing: Option<crate::domain::access::Standing>,
    /// The principal's row id (of `users` or of `service_accounts`), when it exists.
    pub principal_id: Option<i64>,
}

/// A workspace whose projects a principal may list, with the principal's standing
/// there before any grant is counted.
#[derive(Debug, Clone)]
pub struct ListingWorkspace {
    /// Row id.
    pub id: WorkspaceId,
    /// The workspace name.
    pub name: WorkspaceName,
    /// The principal's standing, with `grant: None`.
    pub standing: crate::domain::access::Standing,
}

/// A project in a list.
#[derive(Debug, Clone)]
pub struct ListedProject {
    /// The qualified name, `workspace/project`, the project's part as spelled at
    /// creation: built once, as the row is read, so that a list of many thousands
    /// of projects allocates one string per project.
    pub qualified: String,
    /// The case-folded name: the list's order.
    pub name_key: String,
    /// Its visibility.
    pub visibility: Visibility,
    /// The principal's explicit grant, when the row comes from the grants.
    pub grant: Option<ProjectRole>,
}

/// `workspace/project`, in one allocation of the right size.
pub(crate) fn qualified_name(workspace: &WorkspaceName, project: &str) -> String {
    let workspace = workspace.as_str();
    let mut name = String::with_capacity(workspace.len() + 1 + project.len());
    name.push_str(workspace);
    name.push('/');
    name.push_str(project);
    name
}

/// A user listed on a project, with the facts to compute their effective role.
#[derive(Debug, Clone)]
pub struct ProjectUserRow {
    /// The user.
    pub name: Username,
    /// Their role in the project's workspace, `None` for a non-member.
    pub workspace_role: Option<WorkspaceRole>,
    /// Their explicit grant on the project.
    pub grant: Option<ProjectRole>,
}

/// Counts for `workspace_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkspaceCounts {
    /// Users with the `admin` role.
    pub admins: u32,
    /// Users with the `member` role.
    pub members: u32,
    /// Projects.
    pub projects: u32,
    /// Active service accounts.
    pub active_service_accounts: u32,
    /// Deactivated service accounts.
    pub deactivated_service_accounts: u32,
}

/// What the engine needs from a store. Every method runs inside the transaction the
/// implementation was opened with; the engine opens one per management call.
///
/// Methods fetch facts and write rows; none decides who may do what: that is
/// [`crate::domain`]'s job.
pub trait Repository {
    /// The user with this name, case-insensitively.
    fn user(&self, name: &Username) -> Result<Option<UserRecord>>;
    /// Inserts a user whose name is known to be free.
    fn insert_user(&self, name: &Username, now: i64) -> Result<UserId>;

    /// The workspace with this name.
    fn workspace(&self, name: &WorkspaceName) -> Result<Option<WorkspaceRecord>>;
    /// Inserts a workspace whose name is known to be free, with default settings.
    fn insert_workspace(&self, name: &WorkspaceName, now: i64) -> Result<WorkspaceId>;
    /// Stores a workspace's settings.
    fn update_workspace_settings(
        &self,
        ws: WorkspaceId,
        allow_public: bool,
        limit: u32,
    ) -> Result<()>;
    /// Counts for `workspace_status`.
    fn workspace_counts(&self, ws: WorkspaceId) -> Result<WorkspaceCounts>;

    /// A user's role in a workspace, `None` for a non-member.
    fn workspace_role(&self, ws: WorkspaceId, user: UserId) -> Result<Option<WorkspaceRole>>;
    /// Adds a member or changes a member's role.
    fn put_workspace_member(
        &self,
        ws: WorkspaceId,
        user: UserId,
        role: WorkspaceRole,
    ) -> Result<()>;
    /// Removes a member and their grants on the workspace's projects (A7); returns the
    /// number of grants removed.
    fn delete_workspace_member(&self, ws: WorkspaceId, user: UserId) -> Result<usize>;
    /// Every member and role, by name.
    fn workspace_members(&self, ws: WorkspaceId) -> Result<Vec<(Username, WorkspaceRole)>>;
    /// Every member with the given role.
    fn count_workspace_role(&self, ws: WorkspaceId, role: WorkspaceRole) -> Result<u32>;

    /// The service account with this name in the workspace, active or not.
    fn service_account(
        &self,
        ws: WorkspaceId,
        name: &ServiceAccountName,
    ) -> Result<Option<ServiceAccountRecord>>;
    /// Inserts a service account whose name is known to be free.
    fn insert_service_account(
        &self,
        ws: WorkspaceId,
        name: &ServiceAccountName,
        active: bool,
        now: i64,
    ) -> Result<ServiceAccountId>;
    /// Activates or deactivates a service account.
    fn set_service_account_active(&self, sa: ServiceAccountId, active: bool) -> Result<()>;
    /// The number of active service accounts of a workspace.
    fn count_active_service_accounts(&self, ws: WorkspaceId) -> Result<u32>;
    /// A workspace's service accounts by name, with whether each is active.
    fn service_accounts(&self, ws: WorkspaceId) -> Result<Vec<(ServiceAccountName, bool)>>;

    /// The project with this name in the workspace, case-insensitively.
    fn project(&self, ws: WorkspaceId, name: &ProjectName) -> Result<Option<ProjectRecord>>;
    /// A project of the workspace whose name has this UTS #39 skeleton (N7), if any.
    fn confusable_project(&self, ws: WorkspaceId, skeleton: &str) -> Result<Option<ProjectName>>;
    /// The keys of the workspace's projects that start with `prefix`.
    fn project_keys(&self, ws: WorkspaceId, prefix: &str) -> Result<HashSet<String>>;
    /// Whether a project of the workspace has this key.
    fn project_key_taken(&self, ws: WorkspaceId, key: &ProjectKey) -> Result<bool>;
    /// Inserts a project whose name and key are known to be free.
    fn insert_project(&self, project: &NewProject<'_>, now: i64) -> Result<ProjectId>;
    /// Inserts many projects whose names and keys are known to be free, in few
    /// statements; returns their ids in order.
    fn insert_projects(&self, projects: &[NewProject<'_>], now: i64) -> Result<Vec<ProjectId>>;
    /// Inserts many user grants that do not exist yet, in few statements.
    fn insert_user_grants(&self, grants: &[(ProjectId, UserId, ProjectRole)]) -> Result<()>;
    /// Inserts many service account grants that do not exist yet, in few statements.
    fn insert_service_account_grants(
        &self,
        grants: &[(ProjectId, ServiceAccountId, ProjectRole)],
    ) -> Result<()>;
    /// Deletes a project and its grants.
    fn delete_project(&self, project: ProjectId) -> Result<()>;
    /// Changes a project's visibility.
    fn set_project_visibility(&self, project: ProjectId, visibility: Visibility) -> Result<()>;
    /// Changes a project's description.
    fn set_project_description(
        &self,
        project: ProjectId,
        description: &ProjectDescription,
    ) -> Result<()>;
    /// Every user, by name.
    fn users(&self) -> Result<Vec<Username>>;
    /// Every workspace, by name.
    fn workspaces(&self) -> Result<Vec<WorkspaceRecord>>;
    /// Every project of a workspace, by name.
    fn projects(&self, ws: WorkspaceId) -> Result<Vec<ProjectRecord>>;
    /// Every explicit user grant on the workspace's projects.
    fn user_grants_in_workspace(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(ProjectId, Username, ProjectRole)>>;
    /// Every explicit service account grant on the workspace's projects.
    fn service_account_grants_in_workspace(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(ProjectId, ServiceAccountName, ProjectRole)>>;
    /// The ids of every project of a workspace.
    fn project_ids(&self, ws: WorkspaceId) -> Result<Vec<ProjectId>>;

    /// A user's explicit grant on a project.
    fn user_grant(&self, project: ProjectId, user: UserId) -> Result<Option<ProjectRole>>;
    /// Creates or changes a user's grant.
    fn put_user_grant(&self, project: ProjectId, user: UserId, role: ProjectRole) -> Result<()>;
    /// Removes a user's grant; `false` if there was none.
    fn delete_user_grant(&self, project: ProjectId, user: UserId) -> Result<bool>;
    /// Users with an explicit grant on a project, with their workspace role, and (when
    /// `with_members`) every workspace member without one.
    fn project_users(&self, project: ProjectId, with_members: bool) -> Result<Vec<ProjectUserRow>>;

    /// A service account's explicit grant on a project.
    fn service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
    ) -> Result<Option<ProjectRole>>;
    /// Creates or changes a service account's grant.
    fn put_service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
        role: ProjectRole,
    ) -> Result<()>;
    /// Removes a service account's grant; `false` if there was none.
    fn delete_service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
    ) -> Result<bool>;
    /// Service accounts with a grant on a project: name, active, role.
    fn project_service_accounts(
        &self,
        project: ProjectId,
    ) -> Result<Vec<(ServiceAccountName, bool, ProjectRole)>>;

    /// The facts for one principal and one project, by name; `None` if no such project.
    fn project_facts(
        &self,
        principal: Option<&Principal>,
        workspace: &WorkspaceName,
        project_key: &str,
    ) -> Result<Option<ProjectFacts>>;
    /// The workspaces named `from` or later, in name order, where the principal is a
    /// member (or, for a service account, its own) or which hold a public project.
    fn listing_workspaces(
        &self,
        principal: &Principal,
        from: &str,
    ) -> Result<Vec<ListingWorkspace>>;
    /// Up to `limit` projects of a workspace with this visibility and a name key after
    /// `after`, in name order.
    fn projects_with_visibility(
        &self,
        ws: &ListingWorkspace,
        visibility: Visibility,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ListedProject>>;
    /// Up to `limit` projects of a workspace on which the principal holds an explicit
    /// grant, with a name key after `after`, in name order.
    fn granted_projects(
        &self,
        principal: &Principal,
        ws: &ListingWorkspace,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ListedProject>>;

    /// Stores a token by its digest.
    fn insert_token(
        &self,
        owner: TokenOwner,
        digest: &TokenDigest,
        label: &str,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<TokenId>;
    /// The token with this digest and its principal.
    fn token_by_digest(&self, digest: &TokenDigest) -> Result<Option<TokenLookup>>;
    /// The token with this id and its principal.
    fn token_by_id(&self, id: TokenId) -> Result<Option<TokenLookup>>;
    /// The token with this digest with its principal's facts on one project; `None`
    /// if there is no such token or no such project.
    fn token_project_facts(
        &self,
        digest: &TokenDigest,
        workspace: &WorkspaceName,
        project_key: &str,
    ) -> Result<Option<TokenProjectFacts>>;
    /// Every token of an owner, newest first.
    fn tokens_of(&self, owner: TokenOwner) -> Result<Vec<TokenRecord>>;
    /// Revokes one token; `false` if it was not live.
    fn revoke_token(&self, id: TokenId, now: i64) -> Result<bool>;
    /// Revokes every live token of an owner; returns their records as they were.
    fn revoke_tokens_of(&self, owner: TokenOwner, now: i64) -> Result<Vec<TokenRecord>>;
    /// Records a use of a token at `now`, unless a later one is recorded.
    fn touch_token(&self, id: TokenId, now: i64) -> Result<()>;

    /// Appends an audit event.
    fn append_audit(&self, event: &NewAuditEvent<'_>) -> Result<()>;
    /// Audit events matching a query, newest first.
    fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    /// The oldest key that signs the HTTP server's access tokens (H4), if any.
    fn signing_key(&self) -> Result<Option<Vec<u8>>>;
    /// Stores a signing key (32 bytes).
    fn insert_signing_key(&self, secret: &[u8], now: i64) -> Result<()>;

    /// Before a bulk load inside the current transaction: drops what a bulk load is
    /// faster without (secondary indexes, the second-line triggers that restate checks
    /// the load makes itself), returning what [`restore_secondary_structures`] needs
    /// to put it back in the same transaction. The default keeps everything.
    ///
    /// [`restore_secondary_structures`]: Repository::restore_secondary_structures
    fn suspend_secondary_structures(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Puts back, in the same transaction, what
    /// [`suspend_secondary_structures`](Repository::suspend_secondary_structures) dropped.
    fn restore_secondary_structures(&self, suspended: Vec<String>) -> Result<()> {
        debug_assert!(suspended.is_empty());
        Ok(())
    }

    /// The active service account with this full name and its workspace; fails with
    /// `ServiceAccountNotFound` when there is none or it is deactivated (S3).
    fn active_service_account(
        &self,
        full: &ServiceAccountFullName,
    ) -> Result<(WorkspaceRecord, ServiceAccountRecord)> {
        let not_found = || crate::Error::ServiceAccountNotFound {
            account: full.to_string(),
        };
        let ws = self.workspace(&full.workspace)?.ok_or_else(not_found)?;
        let sa = self
            .service_account(ws.id, &full.name)?
            .filter(|sa| sa.active)
            .ok_or_else(not_found)?;
        Ok((ws, sa))
    }

    /// Whether the user, or the service account (active or not), exists.
    fn principal_exists(&self, principal: &Principal) -> Result<bool> {
        Ok(match principal {
            Principal::User(name) => self.user(name)?.is_some(),
            Principal::ServiceAccount(full) => match self.workspace(&full.workspace)? {
                Some(ws) => self.service_account(ws.id, &full.name)?.is_some(),
                None => false,
            },
        })
    }
}
