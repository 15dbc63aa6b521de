//! Every name parser on arbitrary input: never a panic, and whatever parses prints back
//! to a spelling that parses to the same name (N1–N6).
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnstile::{
    Action, Principal, ProjectKey, ProjectName, ProjectRole, QualifiedProjectName,
    ServiceAccountFullName, Username, Visibility, WorkspaceName, WorkspaceRole,
};

fn round_trip<T>(s: &str)
where
    T: std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = s.parse::<T>() {
        let again: T = v
            .to_string()
            .parse()
            .unwrap_or_else(|_| panic!("{v} does not parse again"));
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<WorkspaceName>(s);
    round_trip::<Username>(s);
    round_trip::<ProjectName>(s);
    round_trip::<ProjectKey>(s);
    round_trip::<QualifiedProjectName>(s);
    round_trip::<ServiceAccountFullName>(s);
    round_trip::<Principal>(s);
    let _ = s.parse::<ProjectRole>();
    let _ = s.parse::<WorkspaceRole>();
    let _ = s.parse::<Visibility>();
    let _ = s.parse::<Action>();
});
