//! LEAD-MERGE: stand-ins for the T6 API that the lead is adding to the engine
//! (`Engine::session_for_token`, `Session::token_id`). The server calls only these two
//! functions, so replacing their bodies with the engine's own calls is the whole merge.

use rusqlite::OptionalExtension;

use crate::domain::names::{ServiceAccountFullName, ServiceAccountName, Username, WorkspaceName};
use crate::domain::principal::Principal;
use crate::engine::{Engine, now_ms};
use crate::error::{Error, Result};
use crate::repo::sqlite::SqliteRepo;
use crate::repo::{Repository, TokenId};
use crate::session::Session;
use crate::token;

/// Authenticates an API token (T3) and returns its session with the token's id.
// LEAD-MERGE: becomes `engine.authenticate(token)` and `session.token_id()`.
pub(crate) fn authenticate_with_id<'e>(
    engine: &'e Engine,
    secret: &str,
) -> Result<(Session<'e>, TokenId)> {
    let digest = token::parse(secret)?;
    let session = engine.authenticate(secret)?;
    let found = engine
        .store
        .with_connection(|conn| SqliteRepo { conn }.token_by_digest(&digest))?
        .ok_or(Error::InvalidToken)?;
    Ok((session, found.token.id))
}

/// A session bound to API token `id`, or `InvalidToken` if that token is revoked,
/// rotated, expired, or its owner deactivated (T6).
// LEAD-MERGE: becomes `engine.session_for_token(id)`.
pub(crate) fn session_for_token(engine: &Engine, id: TokenId) -> Result<Session<'_>> {
    let row = engine.store.with_connection(|conn| {
        Ok(conn
            .prepare_cached(
                "SELECT t.revoked_at, t.expires_at, u.name, s.name, w.name, s.active
                 FROM tokens t
                 LEFT JOIN users u ON u.id = t.user_id
                 LEFT JOIN service_accounts s ON s.id = t.service_account_id
                 LEFT JOIN workspaces w ON w.id = s.workspace_id
                 WHERE t.id = ?1",
            )?
            .query_row([id.0], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<bool>>(5)?,
                ))
            })
            .optional()?)
    })?;
    let Some((revoked, expires, user, sa, ws, active)) = row else {
        return Err(Error::InvalidToken);
    };
    // INVARIANT: T3/T6, every cause of failure is the same `InvalidToken`.
    if revoked.is_some() || expires.is_some_and(|e| e <= now_ms()) {
        return Err(Error::InvalidToken);
    }
    let principal = match (user, sa, ws, active) {
        (Some(u), _, _, _) => Principal::User(Username::from_stored(u)),
        (None, Some(s), Some(w), Some(true)) => Principal::ServiceAccount(ServiceAccountFullName {
            name: ServiceAccountName::from_stored(s),
            workspace: WorkspaceName::from_stored(w),
        }),
        _ => return Err(Error::InvalidToken),
    };
    Ok(Session {
        engine,
        actor: principal,
    })
}
