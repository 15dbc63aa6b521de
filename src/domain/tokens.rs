//! When a token still authenticates (T3, T6, S4): decided here once, for every path
//! that takes a token (authenticate, authorize, a session's every call, the server's
//! access tokens).

/// The stored facts that decide whether a token is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenState {
    /// Whether it was revoked (by its holder, by rotation, or by deactivation).
    pub revoked: bool,
    /// Its expiry, Unix milliseconds.
    pub expires_at: Option<i64>,
    /// `false` once its owner, a service account, is deactivated (R6).
    pub principal_active: bool,
}

impl TokenState {
    /// Whether the token authenticates at `now` (Unix milliseconds). Every cause of
    /// failure gives the same answer, so callers can only say `InvalidToken` (T3).
    pub fn is_live(self, now: i64) -> bool {
        self.is_live_by(|| now)
    }

    /// [`is_live`](Self::is_live), asking `clock` for the time only when the token
    /// expires: the hot path's tokens mostly never do, and the clock is not free.
    pub fn is_live_by(self, clock: impl FnOnce() -> i64) -> bool {
        !self.revoked && self.principal_active && self.expires_at.is_none_or(|e| e > clock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_read_only_for_a_token_that_expires() {
        let live = TokenState {
            revoked: false,
            expires_at: None,
            principal_active: true,
        };
        assert!(live.is_live_by(|| unreachable!("no expiry, no clock")));
        let expiring = TokenState {
            expires_at: Some(1_000),
            ..live
        };
        assert!(expiring.is_live_by(|| 999));
        assert!(!expiring.is_live_by(|| 1_000));
    }

    #[test]
    fn t3_a_token_is_live_only_unrevoked_unexpired_and_of_an_active_owner() {
        let live = TokenState {
            revoked: false,
            expires_at: None,
            principal_active: true,
        };
        assert!(live.is_live(1_000));
        assert!(
            TokenState {
                expires_at: Some(1_001),
                ..live
            }
            .is_live(1_000)
        );
        assert!(
            !TokenState {
                expires_at: Some(1_000),
                ..live
            }
            .is_live(1_000),
            "a token expires at its expiry, not after"
        );
        assert!(
            !TokenState {
                revoked: true,
                ..live
            }
            .is_live(1_000)
        );
        assert!(
            !TokenState {
                principal_active: false,
                ..live
            }
            .is_live(1_000)
        );
    }
}
