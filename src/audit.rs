//! The audit log (SPEC L1, L2): one event per management call, written in the same
//! transaction as the change; denied calls leave a denial event.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Whether the audited call succeeded or was refused for lack of a right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The call succeeded and its change was committed.
    Ok,
    /// The call was refused (`PermissionDenied`, or a project the actor cannot see).
    Denied,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
        }
    }
}

/// The actor recorded for calls the embedding application makes without a session.
pub const APPLICATION: &str = "application";

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewAuditEvent<'a> {
    /// Unix milliseconds.
    pub at: i64,
    /// The workspace the event belongs to, for filtering and for admins' access.
    pub workspace: Option<&'a str>,
    /// The acting principal, or [`APPLICATION`].
    pub actor: &'a str,
    /// What was done, e.g. `project.member.add`.
    pub action: &'a str,
    /// What it was done to, e.g. `ml-team/cls`.
    pub target: &'a str,
    /// Success or denial.
    pub outcome: Outcome,
    /// Further facts, as a JSON object. Never a token's secret.
    pub details: serde_json::Value,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Position in the log; increases with time.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The workspace it belongs to.
    pub workspace: Option<String>,
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Success or denial.
    pub outcome: Outcome,
    /// Further facts.
    pub details: serde_json::Value,
}

/// A filter over the audit log. Empty fields match everything.
///
/// ```
/// use turnstile::AuditQuery;
/// let q = AuditQuery { actor: Some("alice".into()), limit: Some(20), ..Default::default() };
/// # let _ = q;
/// ```
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events of this workspace.
    pub workspace: Option<String>,
    /// Only events by this actor.
    pub actor: Option<String>,
    /// Only events about this target.
    pub target: Option<String>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many events (newest first).
    pub limit: Option<usize>,
}
