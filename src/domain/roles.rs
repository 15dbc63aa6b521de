//! Roles and visibility (SPEC §1), parsed from Neptune's strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A project role. Ordered: `Viewer < Contributor < Owner`, so `max` and `>=` read
/// like the spec.
///
/// ```
/// use turnstile::ProjectRole;
/// assert!(ProjectRole::Owner > ProjectRole::Contributor);
/// assert_eq!("contributor".parse::<ProjectRole>()?, ProjectRole::Contributor);
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    /// May view the project, its members and service accounts.
    Viewer,
    /// May also change the project's content.
    Contributor,
    /// May also manage the project's members, service accounts and settings.
    Owner,
}

impl ProjectRole {
    /// Every role, lowest first.
    pub const ALL: [ProjectRole; 3] = [Self::Viewer, Self::Contributor, Self::Owner];

    /// Neptune's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Contributor => "contributor",
            Self::Owner => "owner",
        }
    }
}

impl FromStr for ProjectRole {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "viewer" => Ok(Self::Viewer),
            "contributor" => Ok(Self::Contributor),
            "owner" => Ok(Self::Owner),
            _ => Err(Error::invalid_value(
                "project role",
                s,
                "`viewer`, `contributor` or `owner`",
            )),
        }
    }
}

/// A user's role in a workspace. Service accounts hold none (A3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceRole {
    /// A member of the workspace.
    Member,
    /// An administrator: owner of every project of the workspace (R1).
    Admin,
}

impl WorkspaceRole {
    /// Neptune's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for WorkspaceRole {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "member" => Ok(Self::Member),
            "admin" => Ok(Self::Admin),
            _ => Err(Error::invalid_value(
                "workspace role",
                s,
                "`admin` or `member`",
            )),
        }
    }
}

/// Who can see a project without an explicit grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Only explicit grants and workspace admins.
    Private,
    /// Also every user who is a member of the workspace, as owner (R3).
    Workspace,
    /// Also everyone, anonymous callers included, as viewer (R4).
    Public,
}

impl Visibility {
    /// Every visibility.
    pub const ALL: [Visibility; 3] = [Self::Private, Self::Workspace, Self::Public];

    /// Neptune's long spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Workspace => "workspace",
            Self::Public => "public",
        }
    }
}

impl FromStr for Visibility {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "priv" | "private" => Ok(Self::Private),
            "workspace" => Ok(Self::Workspace),
            "pub" | "public" => Ok(Self::Public),
            _ => Err(Error::invalid_value(
                "visibility",
                s,
                "`private` (`priv`), `workspace` or `public` (`pub`)",
            )),
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(ProjectRole, WorkspaceRole, Visibility);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_viewer_contributor_owner() {
        use ProjectRole::*;
        assert!(Viewer < Contributor && Contributor < Owner);
        assert_eq!(Viewer.max(Owner), Owner);
    }

    #[test]
    fn neptune_strings_parse_and_round_trip() -> Result<()> {
        assert_eq!("priv".parse::<Visibility>()?, Visibility::Private);
        assert_eq!("pub".parse::<Visibility>()?, Visibility::Public);
        assert_eq!("Workspace".parse::<Visibility>()?, Visibility::Workspace);
        assert_eq!("admin".parse::<WorkspaceRole>()?, WorkspaceRole::Admin);
        for r in ProjectRole::ALL {
            assert_eq!(r.to_string().parse::<ProjectRole>()?, r);
        }
        let err = "superuser".parse::<ProjectRole>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid project role `superuser`: expected `viewer`, `contributor` or `owner`"
        );
        Ok(())
    }
}
