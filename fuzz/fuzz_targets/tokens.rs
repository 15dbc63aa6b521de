//! The token parser on arbitrary input: never a panic, and nothing but a well-formed
//! `tst_` token with a matching checksum is accepted (T1).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = turnstile::token::parse(s);
    assert_eq!(parsed.is_ok(), turnstile::token::well_formed(s));
    if parsed.is_ok() {
        assert!(s.starts_with(turnstile::token::PREFIX));
        assert_eq!(s.len(), turnstile::token::TOKEN_LEN);
    }
});
