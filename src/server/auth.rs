//! Credentials over HTTP (SPEC H4, T6): API tokens in turnstile's and Neptune's
//! formats, and the short-lived access tokens the server signs for them.
//!
//! An access token is a JWT (HS256) signed with a key kept in the database, so every
//! server process on the same database accepts it. It names the API token it came
//! from (`tid`), and every request re-reads that token's state, so an access token
//! dies with its API token in every process.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::now_ms;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::repo::TokenId;
use crate::session::Session;

/// How long an access token lives: under the hour of H4, far over the 30 s before
/// expiry at which the Neptune client refreshes.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// How long a refresh token lives. It too dies with its API token at once.
pub const REFRESH_TOKEN_SECONDS: i64 = 12 * 60 * 60;

/// The key that signs access tokens.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// The database's signing key, created in the same write transaction that looked
    /// for it, so that server processes starting together agree on one key.
    pub fn load_or_create(engine: &Engine) -> Result<Self> {
        let fresh: [u8; 32] = crate::token::os_random()?;
        let secret = engine.store.write(|repo| {
            if let Some(found) = repo.signing_key()? {
                return Ok(found);
            }
            repo.insert_signing_key(&fresh, now_ms())?;
            Ok(fresh.to_vec())
        })?;
        // The schema's CHECK keeps every secret 32 bytes long; a row edited by hand
        // is a storage error, not a panic.
        let key = <[u8; 32]>::try_from(secret.as_slice()).map_err(|_| {
            std::io::Error::other("the server's signing key in the database is not 32 bytes")
        })?;
        Ok(Self(key))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }

    /// Signs `claims` as a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize to JSON"));
        let signing_input = format!("{header}.{body}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The claims of a JWT this key signed, of kind `typ`, not expired; `None` for
    /// anything else (a forged, altered, expired or foreign token).
    pub fn verify(&self, jwt: &str, typ: &str) -> Option<Claims> {
        let (signing_input, signature) = jwt.rsplit_once('.')?;
        let (header, body) = signing_input.split_once('.')?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "HS256" {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&signature).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (claims.typ == typ && claims.exp > now_ms() / 1000).then_some(claims)
    }

    /// A pair of access and refresh tokens for API token `tid` of `principal`;
    /// `issuer` is the OAuth issuer URL the Neptune client refreshes at.
    pub fn issue(&self, principal: &str, tid: TokenId, issuer: &str) -> TokenPair {
        let now = now_ms() / 1000;
        let claims = |typ: &str, seconds: i64| Claims {
            sub: principal.to_owned(),
            tid: tid.0,
            typ: typ.to_owned(),
            iat: now,
            exp: now + seconds,
            iss: issuer.to_owned(),
            azp: "neptune-client".to_owned(),
        };
        TokenPair {
            access: self.sign(&claims("access", ACCESS_TOKEN_SECONDS)),
            refresh: self.sign(&claims("refresh", REFRESH_TOKEN_SECONDS)),
        }
    }
}

/// An access token and its refresh token. `Debug` does not print them.
pub struct TokenPair {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("access", &"<redacted>")
            .field("refresh", &"<redacted>")
            .finish()
    }
}

/// The claims of turnstile's JWTs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The principal.
    pub sub: String,
    /// The id of the API token this token came from.
    pub tid: i64,
    /// `access` or `refresh`.
    pub typ: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The issuer URL (the Neptune client refreshes at `{iss}/protocol/openid-connect/token`).
    pub iss: String,
    /// The OAuth client id the Neptune client sends back when refreshing.
    pub azp: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Api(_) => "Credential::Api(<redacted>)",
            Self::Jwt(_) => "Credential::Jwt(<redacted>)",
        })
    }
}

/// A credential as presented, before it is checked. `Debug` does not print it.
pub enum Credential {
    /// An API token: turnstile's own, or the `api_key` of a Neptune-format token.
    Api(String),
    /// A JWT (an access token, if it verifies).
    Jwt(String),
}

impl Credential {
    /// Reads a presented credential: a turnstile token, a Neptune-format API token
    /// (base64 of JSON with `api_key`), or a JWT.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        if raw.starts_with(crate::token::PREFIX) {
            return Self::Api(raw.to_owned());
        }
        if raw.bytes().filter(|&b| b == b'.').count() == 2 {
            return Self::Jwt(raw.to_owned());
        }
        match neptune_api_key(raw) {
            Some(key) => Self::Api(key),
            None => Self::Api(raw.to_owned()),
        }
    }

    /// Checks the credential against the database: the session of its principal, bound
    /// to its API token, or `InvalidToken`.
    pub fn authenticate<'e>(
        &self,
        engine: &'e Engine,
        key: &SigningKey,
    ) -> Result<(Session<'e>, TokenId)> {
        match self {
            Self::Api(secret) => authenticate_with_id(engine, secret),
            Self::Jwt(jwt) => {
                let claims = key.verify(jwt, "access").ok_or(Error::InvalidToken)?;
                let session = engine.session_for_token(TokenId(claims.tid))?;
                if session.actor().to_string() != claims.sub {
                    return Err(Error::InvalidToken);
                }
                Ok((session, TokenId(claims.tid)))
            }
        }
    }
}

/// The `api_key` of a Neptune-format API token, if `raw` is one.
pub fn neptune_api_key(raw: &str) -> Option<String> {
    let json = STANDARD.decode(raw.trim()).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    Some(value.get("api_key")?.as_str()?.to_owned())
}

/// A Neptune-format API token for turnstile token `secret` and server `api_url`
/// (SPEC H2): base64 of `{"api_address", "api_url", "api_key"}`.
pub fn neptune_token(api_url: &str, secret: &str) -> String {
    let api_url = api_url.trim_end_matches('/');
    let json = serde_json::json!({
        "api_address": api_url,
        "api_url": api_url,
        "api_key": secret,
    });
    STANDARD.encode(json.to_string())
}

/// Authenticates an API token (T3): its session, bound to it (T6), and its id, which
/// the access tokens derived from it name (H4).
pub(crate) fn authenticate_with_id<'e>(
    engine: &'e Engine,
    secret: &str,
) -> Result<(Session<'e>, TokenId)> {
    let session = engine.authenticate(secret)?;
    let id = session.token_id().ok_or(Error::InvalidToken)?;
    Ok((session, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h4_access_tokens_verify_only_with_their_key_kind_and_time() -> Result<()> {
        let engine = Engine::open_in_memory()?;
        let key = SigningKey::load_or_create(&engine)?;
        let again = SigningKey::load_or_create(&engine)?;
        assert_eq!(key.0, again.0, "one key per database");
        let pair = key.issue("alice", TokenId(7), "http://x/auth");
        let claims = key.verify(&pair.access, "access").expect("valid");
        assert_eq!((claims.tid, claims.sub.as_str()), (7, "alice"));
        assert!(claims.exp - claims.iat <= 3600 && claims.exp - claims.iat > 60);
        assert!(key.verify(&pair.access, "refresh").is_none());
        assert!(key.verify(&pair.refresh, "refresh").is_some());
        // Another key, an altered body, an expired token: all refused.
        let other = SigningKey([1; 32]);
        assert!(other.verify(&pair.access, "access").is_none());
        let mut parts: Vec<&str> = pair.access.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                tid: 8,
                ..claims.clone()
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert!(key.verify(&parts.join("."), "access").is_none());
        let expired = key.sign(&Claims {
            exp: now_ms() / 1000 - 1,
            ..claims.clone()
        });
        assert!(key.verify(&expired, "access").is_none());
        // alg none is refused.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            pair.access.split('.').nth(1).unwrap()
        );
        assert!(key.verify(&none, "access").is_none());
        Ok(())
    }

    #[test]
    fn h2_neptune_tokens_round_trip_and_are_recognised() {
        let t = neptune_token("http://127.0.0.1:9/", "tst_abc");
        assert_eq!(neptune_api_key(&t).as_deref(), Some("tst_abc"));
        assert!(matches!(Credential::parse(&t), Credential::Api(k) if k == "tst_abc"));
        assert!(matches!(Credential::parse(" tst_x "), Credential::Api(k) if k == "tst_x"));
        assert!(matches!(Credential::parse("a.b.c"), Credential::Jwt(_)));
    }
}
