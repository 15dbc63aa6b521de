//! turnstile: an access-control engine for Neptune-style workspaces, users, service
//! accounts and projects, backed by one SQLite file or by PostgreSQL, with a CLI and an
//! HTTP server (feature `server`) that speaks Neptune's management API.
//!
//! - [`Engine`] opens the database, bootstraps users and workspaces, authenticates
//!   tokens and answers [`Engine::check`]: may this principal do this to this project?
//! - [`Session`] makes the management calls of Neptune's API on behalf of an actor.
//! - [`domain`] holds the rules themselves, as pure functions.
//!
//! ```
//! use turnstile::{Action, Engine, ProjectOptions, ProjectRole, Visibility};
//!
//! let engine = Engine::open_in_memory()?;
//! engine.create_user("alice")?;
//! engine.create_user("bob")?;
//! engine.create_workspace("ml-team", "alice")?;
//!
//! let alice = engine.session_for(&"alice".parse()?)?;
//! alice.invite_to_workspace("ml-team", "bob", "member".parse()?, false)?;
//! alice.create_project("ml-team/classification", ProjectOptions::default())?;
//! let ci = alice.create_service_account("ml-team", "cicd", false)?;
//! alice.add_project_service_account("ml-team/classification", "cicd@ml-team", ProjectRole::Contributor)?;
//!
//! // The service account's token authorizes it to log runs, not to manage members.
//! assert!(engine.authorize(ci.secret(), "ml-team/classification", Action::Edit)?);
//! assert!(!engine.authorize(ci.secret(), "ml-team/classification", Action::Manage)?);
//! // Bob is a member, but the project is private.
//! assert!(!engine.check(&"bob".parse()?, "ml-team/classification", Action::View)?);
//! alice.set_project_visibility("ml-team/classification", Visibility::Workspace)?;
//! assert!(engine.check(&"bob".parse()?, "ml-team/classification", Action::Manage)?);
//! # Ok::<(), turnstile::Error>(())
//! ```

#![warn(missing_docs)]
// `unsafe` only in src/repo/mapped.rs, the memory-mapped change stamp (issue 12).
#![deny(unsafe_code)]

pub mod audit;
mod cache;
mod clock;
pub mod decisions;
pub mod domain;
mod engine;
mod error;
mod info;
mod padded;
pub mod repo;
#[cfg(feature = "server")]
pub mod server;
mod session;
mod snapshot;
pub mod token;
mod uses;

pub use audit::{AuditEvent, AuditQuery, Outcome};
pub use domain::access::{Access, Action, RoleSource};
pub use domain::description::ProjectDescription;
pub use domain::names::{
    ProjectKey, ProjectName, QualifiedProjectName, ServiceAccountFullName, ServiceAccountName,
    Username, WorkspaceName,
};
pub use domain::principal::Principal;
pub use domain::roles::{ProjectRole, Visibility, WorkspaceRole};
pub use engine::{Engine, Options};
pub use error::{Error, ErrorKind, NameKind, Result, StorageError};
pub use info::{Membership, ProjectInfo, UserInfo};
pub use repo::TokenId;
pub use session::{
    ProjectOptions, ProjectPage, ServiceAccountInfo, Session, WorkspaceSettings, WorkspaceStatus,
};
pub use snapshot::{
    ImportSummary, ProjectSnapshot, SNAPSHOT_VERSION, ServiceAccountSnapshot, Snapshot,
    WorkspaceSnapshot,
};
pub use token::{IssuedToken, TokenInfo};

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
