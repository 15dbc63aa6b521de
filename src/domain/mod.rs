//! The pure domain core (SPEC D5): names, roles, visibility, principals, actions and
//! the effective-role rules. No SQL and no I/O: "who may do what?" is answered here.

pub mod access;
pub mod description;
pub mod invariants;
pub mod names;
pub mod principal;
pub mod roles;
pub mod tokens;
