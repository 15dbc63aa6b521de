//! Principals: who is acting or being asked about.

use std::fmt;
use std::str::FromStr;

use crate::domain::names::{ServiceAccountFullName, Username};
use crate::error::{Error, Result};

/// A user or a service account.
///
/// Parses from the string a person types: a name with `@` is a service account's
/// full name, any other a username.
///
/// ```
/// use turnstile::Principal;
/// assert!(matches!("alice".parse()?, Principal::User(_)));
/// assert!(matches!("cicd@ml-team".parse()?, Principal::ServiceAccount(_)));
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A human user.
    User(Username),
    /// A service account, by its full name.
    ServiceAccount(ServiceAccountFullName),
}

impl Principal {
    /// Whether this is a service account.
    pub fn is_service_account(&self) -> bool {
        matches!(self, Self::ServiceAccount(_))
    }
}

impl FromStr for Principal {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.contains('@') {
            Ok(Self::ServiceAccount(s.parse()?))
        } else {
            Ok(Self::User(s.parse()?))
        }
    }
}

impl From<Username> for Principal {
    fn from(u: Username) -> Self {
        Self::User(u)
    }
}

impl From<ServiceAccountFullName> for Principal {
    fn from(sa: ServiceAccountFullName) -> Self {
        Self::ServiceAccount(sa)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(u) => u.fmt(f),
            Self::ServiceAccount(sa) => sa.fmt(f),
        }
    }
}
