//! The one error type of turnstile (SPEC §8).

use std::fmt;

use crate::domain::roles::ProjectRole;

/// `Result` with turnstile's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which kind of name an [`Error::InvalidName`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A workspace name (N1).
    Workspace,
    /// A username (N2).
    Username,
    /// A service account name (N2).
    ServiceAccount,
    /// A project name (N3).
    Project,
    /// A project key (N4).
    ProjectKey,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Workspace => "workspace name",
            Self::Username => "username",
            Self::ServiceAccount => "service account name",
            Self::Project => "project name",
            Self::ProjectKey => "project key",
        })
    }
}

/// Everything that can go wrong in turnstile. Variants carry Neptune's names where
/// Neptune has one, and the facts a caller needs to act on them. Messages are
/// lower-case and put user input in backticks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name breaks the rules of SPEC §2 (N6).
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidName {
        /// What kind of name.
        kind: NameKind,
        /// The input, shortened if very long.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A qualified project name is not `workspace/project` (N5).
    #[error("invalid project name `{value}`: expected `workspace/project`")]
    InvalidProjectName {
        /// The input, shortened if very long.
        value: String,
    },
    /// A role, visibility, action or other enumerated value did not parse.
    #[error("invalid {what} `{value}`: expected {expected}")]
    InvalidValue {
        /// What was being parsed.
        what: &'static str,
        /// The input.
        value: String,
        /// The accepted spellings.
        expected: &'static str,
    },
    /// The project does not exist, or the actor may not view it (A6).
    #[error("project `{project}` not found")]
    ProjectNotFound {
        /// The qualified name asked for.
        project: String,
    },
    /// The workspace does not exist, or the actor is not in it.
    #[error("workspace `{workspace}` not found")]
    WorkspaceNotFound {
        /// The workspace asked for.
        workspace: String,
    },
    /// A project with this name (case-insensitively) exists in the workspace.
    #[error("project `{project}` already exists")]
    ProjectAlreadyExists {
        /// The qualified name.
        project: String,
    },
    /// The user already has a role on the project (explicitly, or as owner through
    /// `workspace` visibility, A8).
    #[error("user `{user}` already has {role} access to project `{project}`")]
    UserAlreadyHasAccess {
        /// The user.
        user: String,
        /// The project.
        project: String,
        /// The role the user has.
        role: ProjectRole,
    },
    /// The user does not exist or has no explicit grant to remove (A8).
    #[error("user `{user}` does not exist or has no access to project `{project}`")]
    UserNotExistsOrWithoutAccess {
        /// The user.
        user: String,
        /// The project.
        project: String,
    },
    /// The user is already a member of the workspace.
    #[error("user `{user}` is already a member of workspace `{workspace}`")]
    UserAlreadyInvited {
        /// The user.
        user: String,
        /// The workspace.
        workspace: String,
    },
    /// The workspace or the user of an invitation does not exist.
    #[error("workspace `{workspace}` or user `{user}` not found")]
    WorkspaceOrUserNotFound {
        /// The workspace.
        workspace: String,
        /// The user.
        user: String,
    },
    /// No user has this name.
    #[error("user `{user}` not found")]
    UserNotFound {
        /// The username.
        user: String,
    },
    /// A user with this name (case-insensitively) exists.
    #[error("user `{user}` already exists")]
    UserAlreadyExists {
        /// The username.
        user: String,
    },
    /// A workspace with this name exists.
    #[error("workspace `{workspace}` already exists")]
    WorkspaceAlreadyExists {
        /// The workspace.
        workspace: String,
    },
    /// The user is not a member of the workspace (A7).
    #[error("user `{user}` is not a member of workspace `{workspace}`")]
    UserNotInWorkspace {
        /// The user.
        user: String,
        /// The workspace.
        workspace: String,
    },
    /// No active service account has this full name (S3).
    #[error("service account `{account}` not found")]
    ServiceAccountNotFound {
        /// The full name.
        account: String,
    },
    /// A service account with this name (case-insensitively) exists in the workspace.
    #[error("service account `{account}` already exists")]
    ServiceAccountAlreadyExists {
        /// The full name.
        account: String,
    },
    /// The service account already has a grant on the project (S6).
    #[error("service account `{account}` already has {role} access to project `{project}`")]
    ServiceAccountAlreadyHasAccess {
        /// The full name.
        account: String,
        /// The project.
        project: String,
        /// The role it has.
        role: ProjectRole,
    },
    /// The service account has no grant on the project (S6).
    #[error("service account `{account}` does not exist or has no access to project `{project}`")]
    ServiceAccountNotExistsOrWithoutAccess {
        /// The full name.
        account: String,
        /// The project.
        project: String,
    },
    /// The workspace does not allow public projects (A5).
    #[error("workspace `{workspace}` does not allow public projects")]
    VisibilityRestricted {
        /// The workspace.
        workspace: String,
    },
    /// The project key is taken in the workspace (N4).
    #[error("project key `{key}` is already used in workspace `{workspace}`")]
    ProjectKeyCollision {
        /// The key.
        key: String,
        /// The workspace.
        workspace: String,
    },
    /// No live token of the actor has this id (revoking a token by id).
    #[error("no live token with id `{id}` among yours")]
    TokenNotFound {
        /// The id asked for.
        id: crate::repo::TokenId,
    },
    /// A token did not authenticate, whatever the reason (T3: no oracle).
    #[error("invalid token")]
    InvalidToken,
    /// The actor can see the target but may not perform the action (A6).
    #[error("permission denied: `{actor}` may not {action} in `{target}`")]
    PermissionDenied {
        /// The acting principal.
        actor: String,
        /// What it tried to do.
        action: String,
        /// The project or workspace it tried to do it in.
        target: String,
    },
    /// The call would leave the workspace without an admin (A4).
    #[error("workspace `{workspace}` must keep at least one admin")]
    LastAdmin {
        /// The workspace.
        workspace: String,
    },
    /// The workspace has as many active service accounts as it allows (S2).
    #[error("workspace `{workspace}` has reached its limit of {limit} active service accounts")]
    ServiceAccountLimitReached {
        /// The workspace.
        workspace: String,
        /// Its `service_account_limit`.
        limit: u32,
    },
    /// `reactivate_service_account` was asked for an account that is active.
    #[error("service account `{account}` is already active")]
    ServiceAccountActive {
        /// The full name.
        account: String,
    },
    /// The operating system's random generator failed while making a token.
    #[error("the operating system's random generator failed: {reason}")]
    Random {
        /// What the operating system said.
        reason: String,
    },
    /// The database was written by a newer turnstile (D1); it was left untouched.
    #[error(
        "database schema version {found} is newer than this turnstile supports ({supported}); upgrade turnstile"
    )]
    SchemaTooNew {
        /// The database's `user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A new project's name looks like an existing project's name in the same
    /// workspace (their Unicode UTS #39 skeletons are equal, N7).
    #[error("project name `{project}` is confusable with existing project `{existing}`")]
    ProjectNameConfusable {
        /// The qualified name asked for.
        project: String,
        /// The existing project it could be mistaken for.
        existing: String,
    },
    /// Another writer held the database's write lock for longer than the busy
    /// timeout (D2). Nothing was written; the call may be retried.
    #[error("database is busy: another writer held it for {} ms; nothing was written", waited.as_millis())]
    Busy {
        /// How long the call waited for the lock.
        waited: std::time::Duration,
    },
    /// A read-only engine was asked to open a database written by an older turnstile,
    /// which only a writable open upgrades (D1).
    #[error(
        "database schema version {found} is older than this turnstile's ({supported}); open it once for writing to upgrade it"
    )]
    SchemaNeedsUpgrade {
        /// The database's `user_version`.
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// The database failed: I/O, corruption, a full disk, a read-only file.
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
}

/// The groups of [`Error`] (E1): front ends map a kind, never a variant, to an exit
/// code or an HTTP status, so that a new variant needs one decision here only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input breaks a rule of its own (a name, a role, a value): fix the input.
    InvalidInput,
    /// The caller's token did not authenticate (T3).
    Unauthenticated,
    /// The thing asked for does not exist, or the caller may not see it (A6).
    NotFound,
    /// The caller sees the thing but may not perform the action (A6).
    Denied,
    /// The call conflicts with the current state: a duplicate, the last admin, a
    /// full limit, a restricted visibility.
    Conflict,
    /// The database was busy for longer than the busy timeout; retrying may succeed.
    Busy,
    /// The storage or the operating system under it failed.
    Storage,
}

impl ErrorKind {
    /// A stable, machine-readable name (`invalid_input`, `not_found`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound => "not_found",
            Self::Denied => "denied",
            Self::Conflict => "conflict",
            Self::Busy => "busy",
            Self::Storage => "storage",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// Which group the error belongs to (E1).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidName { .. }
            | Self::InvalidProjectName { .. }
            | Self::InvalidValue { .. } => ErrorKind::InvalidInput,
            Self::InvalidToken => ErrorKind::Unauthenticated,
            Self::ProjectNotFound { .. }
            | Self::WorkspaceNotFound { .. }
            | Self::WorkspaceOrUserNotFound { .. }
            | Self::UserNotFound { .. }
            | Self::ServiceAccountNotFound { .. }
            | Self::TokenNotFound { .. }
            | Self::UserNotExistsOrWithoutAccess { .. }
            | Self::ServiceAccountNotExistsOrWithoutAccess { .. } => ErrorKind::NotFound,
            Self::PermissionDenied { .. } => ErrorKind::Denied,
            Self::ProjectAlreadyExists { .. }
            | Self::UserAlreadyHasAccess { .. }
            | Self::UserAlreadyInvited { .. }
            | Self::UserAlreadyExists { .. }
            | Self::WorkspaceAlreadyExists { .. }
            | Self::UserNotInWorkspace { .. }
            | Self::ServiceAccountAlreadyExists { .. }
            | Self::ServiceAccountAlreadyHasAccess { .. }
            | Self::VisibilityRestricted { .. }
            | Self::ProjectKeyCollision { .. }
            | Self::ProjectNameConfusable { .. }
            | Self::LastAdmin { .. }
            | Self::ServiceAccountLimitReached { .. }
            | Self::ServiceAccountActive { .. } => ErrorKind::Conflict,
            Self::Busy { .. } => ErrorKind::Busy,
            Self::Random { .. }
            | Self::SchemaTooNew { .. }
            | Self::SchemaNeedsUpgrade { .. }
            | Self::Storage(_) => ErrorKind::Storage,
        }
    }

    /// The variant's name, as Neptune spells it where Neptune has one
    /// (`ProjectNotFound`, `UserAlreadyHasAccess`, ...): a stable identifier for
    /// machine-readable error documents.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "InvalidName",
            Self::InvalidProjectName { .. } => "InvalidProjectName",
            Self::InvalidValue { .. } => "InvalidValue",
            Self::ProjectNotFound { .. } => "ProjectNotFound",
            Self::WorkspaceNotFound { .. } => "WorkspaceNotFound",
            Self::ProjectAlreadyExists { .. } => "ProjectAlreadyExists",
            Self::UserAlreadyHasAccess { .. } => "UserAlreadyHasAccess",
            Self::UserNotExistsOrWithoutAccess { .. } => "UserNotExistsOrWithoutAccess",
            Self::UserAlreadyInvited { .. } => "UserAlreadyInvited",
            Self::WorkspaceOrUserNotFound { .. } => "WorkspaceOrUserNotFound",
            Self::UserNotFound { .. } => "UserNotFound",
            Self::UserAlreadyExists { .. } => "UserAlreadyExists",
            Self::WorkspaceAlreadyExists { .. } => "WorkspaceAlreadyExists",
            Self::UserNotInWorkspace { .. } => "UserNotInWorkspace",
            Self::ServiceAccountNotFound { .. } => "ServiceAccountNotFound",
            Self::ServiceAccountAlreadyExists { .. } => "ServiceAccountAlreadyExists",
            Self::ServiceAccountAlreadyHasAccess { .. } => "ServiceAccountAlreadyHasAccess",
            Self::ServiceAccountNotExistsOrWithoutAccess { .. } => {
                "ServiceAccountNotExistsOrWithoutAccess"
            }
            Self::VisibilityRestricted { .. } => "VisibilityRestricted",
            Self::ProjectKeyCollision { .. } => "ProjectKeyCollision",
            Self::TokenNotFound { .. } => "TokenNotFound",
            Self::InvalidToken => "InvalidToken",
            Self::PermissionDenied { .. } => "PermissionDenied",
            Self::LastAdmin { .. } => "LastAdmin",
            Self::ServiceAccountLimitReached { .. } => "ServiceAccountLimitReached",
            Self::ServiceAccountActive { .. } => "ServiceAccountActive",
            Self::ProjectNameConfusable { .. } => "ProjectNameConfusable",
            Self::Random { .. } => "Random",
            Self::SchemaTooNew { .. } => "SchemaTooNew",
            Self::SchemaNeedsUpgrade { .. } => "SchemaNeedsUpgrade",
            Self::Busy { .. } => "Busy",
            Self::Storage(_) => "Storage",
        }
    }

    pub(crate) fn invalid_value(what: &'static str, value: &str, expected: &'static str) -> Self {
        Self::InvalidValue {
            what,
            value: crate::domain::names::echo(value),
            expected,
        }
    }
}

/// The database's own error, kept opaque so that no `rusqlite` type is part of
/// turnstile's API.
#[derive(Debug)]
pub struct StorageError(pub(crate) StorageCause);

#[derive(Debug)]
pub(crate) enum StorageCause {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    Io(std::io::Error),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            StorageCause::Sqlite(rusqlite::Error::SqliteFailure(_, Some(msg))) => f.write_str(msg),
            StorageCause::Sqlite(rusqlite::Error::SqliteFailure(e, None)) => write!(f, "{e}"),
            StorageCause::Sqlite(other) => write!(f, "{other}"),
            StorageCause::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}", db.message()),
                None => write!(f, "{e}"),
            },
            StorageCause::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            StorageCause::Sqlite(e) => Some(e),
            StorageCause::Postgres(e) => Some(e),
            StorageCause::Io(e) => Some(e),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Storage(StorageError(StorageCause::Sqlite(e)))
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Self::Storage(StorageError(StorageCause::Postgres(e)))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Storage(StorageError(StorageCause::Io(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e1_kinds_group_the_variants_for_front_ends() {
        let not_found = Error::ProjectNotFound {
            project: "ws/p".into(),
        };
        assert_eq!(not_found.kind(), ErrorKind::NotFound);
        assert_eq!(not_found.name(), "ProjectNotFound");
        assert_eq!(Error::InvalidToken.kind(), ErrorKind::Unauthenticated);
        let busy = Error::Busy {
            waited: std::time::Duration::from_millis(1500),
        };
        assert_eq!(busy.kind(), ErrorKind::Busy);
        assert_eq!(
            busy.to_string(),
            "database is busy: another writer held it for 1500 ms; nothing was written"
        );
        let denied = Error::PermissionDenied {
            actor: "bob".into(),
            action: "delete".into(),
            target: "ws/p".into(),
        };
        assert_eq!(denied.kind(), ErrorKind::Denied);
        assert_eq!(
            Error::invalid_value("role", "x", "owner").kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Error::LastAdmin {
                workspace: "ws".into()
            }
            .kind()
            .as_str(),
            "conflict"
        );
    }
}
