//! Token format and digest (SPEC T1, T2). Pure: no database here.
//!
//! A token reads `tst_<body><check>`:
//! - `tst_`: a fixed prefix, so secret scanners can recognise a leaked token;
//! - `<body>`: 32 bytes (256 bits) from the operating system's generator, in URL-safe
//!   base64 without padding (43 characters);
//! - `<check>`: the CRC32 of the body in 6 base62 digits, so a mistyped or made-up
//!   token is rejected without a database look-up (as GitHub's tokens do).
//!
//! Only the SHA-256 digest of the whole token is ever stored.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use sha2::{Digest as _, Sha256};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::to_time;
use crate::domain::principal::Principal;
use crate::error::{Error, Result};
use crate::repo::{TokenId, TokenRecord};

/// The prefix of every turnstile token.
pub const PREFIX: &str = "tst_";
const RANDOM_BYTES: usize = 32;
const BODY_LEN: usize = 43;
const CHECK_LEN: usize = 6;
/// The length of every turnstile token.
pub const TOKEN_LEN: usize = PREFIX.len() + BODY_LEN + CHECK_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The SHA-256 digest of a token: what the database stores and looks tokens up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest(pub(crate) [u8; 32]);

impl TokenDigest {
    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A token as issued: the only time its secret is available (T2).
///
/// `Debug` does not print the secret.
pub struct IssuedToken {
    /// The token's id, by which it is listed, audited and revoked.
    pub id: TokenId,
    /// The principal it authenticates.
    pub principal: Principal,
    /// Its label.
    pub label: String,
    /// When it expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    pub(crate) secret: String,
}

impl IssuedToken {
    /// The secret, to hand to its holder once. turnstile keeps only its digest.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The secret, by value.
    pub fn into_secret(self) -> String {
        self.secret
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("label", &self.label)
            .field("expires_at", &self.expires_at)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A token as listed: everything but the secret, which is not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The token's id.
    pub id: TokenId,
    /// Its label.
    pub label: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was last used to authenticate (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id,
            label: t.label,
            created_at: to_time(t.created_at),
            last_used_at: t.last_used_at.map(to_time),
            expires_at: t.expires_at.map(to_time),
            revoked_at: t.revoked_at.map(to_time),
        }
    }
}

/// A freshly generated token: its secret text and its digest.
pub(crate) struct NewToken {
    pub secret: String,
    pub digest: TokenDigest,
}

/// `N` bytes from the operating system's generator: token secrets, keys.
pub(crate) fn os_random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Random {
            reason: e.to_string(),
        })?;
    Ok(bytes)
}

/// Generates a token from 256 bits of the operating system's randomness.
pub(crate) fn generate() -> Result<NewToken> {
    let random: [u8; RANDOM_BYTES] = os_random()?;
    let body = URL_SAFE_NO_PAD.encode(random);
    let secret = format!("{PREFIX}{body}{}", checksum(body.as_bytes()));
    let digest = digest(&secret);
    Ok(NewToken { secret, digest })
}

/// Checks a token's shape and checksum and returns its digest, or `InvalidToken`.
/// Touches no database: a malformed or mistyped token costs a few hundred nanoseconds.
pub fn parse(token: &str) -> Result<TokenDigest> {
    if !well_formed(token) {
        return Err(Error::InvalidToken);
    }
    Ok(digest(token))
}

/// Whether a token has the `tst_` shape and a matching checksum.
pub fn well_formed(token: &str) -> bool {
    let bytes = token.as_bytes();
    if bytes.len() != TOKEN_LEN || !token.starts_with(PREFIX) {
        return false;
    }
    let body = &bytes[PREFIX.len()..PREFIX.len() + BODY_LEN];
    let check = &bytes[PREFIX.len() + BODY_LEN..];
    // The last base64 character of a 32-byte body carries 4 bits of padding; a body
    // that does not decode to exactly 32 bytes was not made here. Decoded on the stack:
    // this runs on every `authorize`.
    let mut raw = [0u8; RANDOM_BYTES + 3];
    let decodes = URL_SAFE_NO_PAD
        .decode_slice(body, &mut raw)
        .is_ok_and(|len| len == RANDOM_BYTES);
    decodes && checksum_digits(body) == check
}

fn checksum(body: &[u8]) -> String {
    checksum_digits(body).iter().map(|&b| b as char).collect()
}

/// The CRC32 of `body` in [`CHECK_LEN`] base62 digits.
fn checksum_digits(body: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

fn digest(token: &str) -> TokenDigest {
    TokenDigest(Sha256::digest(token.as_bytes()).into())
}

/// A keyed fingerprint of presented tokens, for recognising a token met before without
/// hashing it with SHA-256 again (about a third of the cost, this machine, SHA-NI on).
///
/// The fingerprint is SipHash-2-4 with its 128-bit output, keyed by 128 bits from the
/// operating system's generator that never leave this value: a pseudo-random function
/// of the whole presented string. Two different strings share a fingerprint with
/// probability 2^-128 each, and without the key no one can do better than guess, so an
/// equal fingerprint stands for an equal string: a cached token's entry can answer only
/// for the very string it was made from, which was well-formed (T1) and whose SHA-256
/// digest found the stored token (T2). Like the digest, the fingerprint tells nothing
/// about the secret: no secret is kept in memory (T2).
pub(crate) struct Fingerprints {
    key: (u64, u64),
}

/// A token's [`Fingerprints::of`], as bytes: the token cache's key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 16]);

impl Fingerprint {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Fingerprints {
    /// Fingerprints under a fresh random key.
    pub(crate) fn new() -> Result<Self> {
        let key: [u8; 16] = os_random()?;
        let half = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 of 16 bytes"));
        Ok(Self {
            key: (half(&key[..8]), half(&key[8..])),
        })
    }

    /// The fingerprint of a presented token, well-formed or not.
    pub(crate) fn of(&self, token: &str) -> Fingerprint {
        use siphasher::sip128::Hasher128 as _;
        use std::hash::Hasher as _;
        let mut h = siphasher::sip128::SipHasher24::new_with_keys(self.key.0, self.key.1);
        h.write(token.as_bytes());
        Fingerprint(h.finish128().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn t1_generated_tokens_have_the_documented_shape() -> Result<()> {
        let t = generate()?;
        assert!(t.secret.starts_with("tst_"));
        assert_eq!(t.secret.len(), TOKEN_LEN);
        assert!(
            t.secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert_eq!(parse(&t.secret)?, t.digest);
        assert_ne!(generate()?.secret, t.secret);
        Ok(())
    }

    #[test]
    fn t1_malformed_tokens_are_rejected() {
        let good = generate().unwrap().secret;
        for bad in [
            "",
            "tst_",
            "ghp_abc",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replacen("tst_", "TST_", 1),
            &format!("{}…", &good[..good.len() - 3]),
        ] {
            assert!(matches!(parse(bad), Err(Error::InvalidToken)), "{bad}");
        }
    }

    #[test]
    fn t2_digest_is_sha256_of_the_whole_token() {
        let t = generate().unwrap();
        let expected: [u8; 32] = Sha256::digest(t.secret.as_bytes()).into();
        assert_eq!(t.digest.as_bytes(), &expected);
    }

    #[test]
    fn fingerprints_tell_tokens_apart_and_depend_on_the_key() -> Result<()> {
        let (a, b) = (generate()?.secret, generate()?.secret);
        let one = Fingerprints::new()?;
        let other = Fingerprints::new()?;
        assert!(one.of(&a) == one.of(&a));
        assert!(one.of(&a) != one.of(&b));
        assert!(
            one.of(&a) != other.of(&a),
            "keyed: another key, another fingerprint"
        );
        let mut changed = a.clone().into_bytes();
        changed[10] ^= 1;
        let changed = String::from_utf8(changed).expect("ASCII");
        assert!(one.of(&a) != one.of(&changed));
        Ok(())
    }

    proptest! {
        #[test]
        fn t1_any_single_character_change_is_rejected(pos in 0usize..TOKEN_LEN, c in any::<char>()) {
            let t = generate().unwrap();
            let mut chars: Vec<char> = t.secret.chars().collect();
            prop_assume!(chars[pos] != c);
            chars[pos] = c;
            let mutated: String = chars.into_iter().collect();
            prop_assert!(parse(&mutated).is_err());
        }

        #[test]
        fn t1_round_trip_always_parses(_seed in any::<u64>()) {
            let t = generate().unwrap();
            prop_assert_eq!(parse(&t.secret).unwrap(), t.digest);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".*") {
            let _ = parse(&s);
        }
    }
}
