//! Validated names (SPEC §2, N1–N6).
//!
//! Every name is parsed once, at the edge, into a newtype; code further in never
//! re-validates a string. Each newtype keeps the spelling to display and a folded
//! key used for case-insensitive uniqueness.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, NameKind, Result};

/// Longest input echoed back in an error: a 10 MB name must not become a 10 MB message.
const MAX_ECHO: usize = 80;

fn invalid(kind: NameKind, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidName {
        kind,
        value: echo(value),
        reason: reason.into(),
    }
}

/// Shortens user input for an error message, on a character boundary.
pub(crate) fn echo(value: &str) -> String {
    if value.len() <= MAX_ECHO {
        return value.to_owned();
    }
    let mut end = MAX_ECHO;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// A workspace name (N1): 2–64 of `a-z 0-9 -`, starting and ending with a letter or
/// digit, case-insensitive and stored lower-case.
///
/// ```
/// use turnstile::WorkspaceName;
/// let ws: WorkspaceName = "ML-Team".parse()?;
/// assert_eq!(ws.as_str(), "ml-team");
/// assert!("-team".parse::<WorkspaceName>().is_err());
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    /// Rebuilds a name read back from the database, where only valid names are written.
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The lower-case name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for WorkspaceName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let kind = NameKind::Workspace;
        let len = s.chars().count();
        if !(2..=64).contains(&len) {
            return Err(invalid(kind, s, "must be 2 to 64 characters long"));
        }
        let lower = s.to_ascii_lowercase();
        if let Some(c) = lower
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(invalid(
                kind,
                s,
                format!("may contain only letters, digits and `-`, found `{c}`"),
            ));
        }
        if lower.starts_with('-') || lower.ends_with('-') {
            return Err(invalid(
                kind,
                s,
                "must start and end with a letter or digit",
            ));
        }
        Ok(Self(lower))
    }
}

/// Validates N2, shared by usernames and service account names.
fn parse_account_name(kind: NameKind, s: &str) -> Result<(String, String)> {
    let len = s.chars().count();
    if !(1..=64).contains(&len) {
        return Err(invalid(kind, s, "must be 1 to 64 characters long"));
    }
    if s.contains('@') {
        let reason = match kind {
            NameKind::Username => {
                "a username cannot contain `@` (names with `@` are service accounts, which hold no workspace role)"
            }
            _ => "cannot contain `@`; the full name `name@workspace` is built from it",
        };
        return Err(invalid(kind, s, reason));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(
            kind,
            s,
            format!("may contain only letters, digits, `-`, `_` and `.`, found `{c}`"),
        ));
    }
    if s.starts_with('.') || s.starts_with('-') {
        return Err(invalid(kind, s, "cannot start with `.` or `-`"));
    }
    Ok((s.to_owned(), s.to_ascii_lowercase()))
}

macro_rules! account_name {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            display: String,
            key: String,
        }

        impl $name {
            /// Rebuilds a name read back from the database, where only valid names are written.
            pub(crate) fn from_stored(display: String) -> Self {
                let key = display.to_ascii_lowercase();
                Self { display, key }
            }

            /// The spelling given when the name was created.
            pub fn as_str(&self) -> &str {
                &self.display
            }

            /// The case-folded form that uniqueness is decided on.
            pub fn key(&self) -> &str {
                &self.key
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                let (display, key) = parse_account_name($kind, s)?;
                Ok(Self { display, key })
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.key == other.key
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.key.hash(state)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.display)
            }
        }
    };
}

account_name!(
    /// A username (N2): 1–64 of `A-Z a-z 0-9 - _ .`, not starting with `.` or `-`,
    /// unique case-insensitively across the engine.
    Username,
    NameKind::Username
);

account_name!(
    /// A service account's short name (N2), unique case-insensitively within its
    /// workspace. It never contains `@`; see [`ServiceAccountFullName`].
    ServiceAccountName,
    NameKind::ServiceAccount
);

/// A service account's full name, `<name>@<workspace>` (e.g. `cicd@ml-team`).
///
/// ```
/// use turnstile::ServiceAccountFullName;
/// let sa: ServiceAccountFullName = "cicd@ML-Team".parse()?;
/// assert_eq!(sa.to_string(), "cicd@ml-team");
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccountFullName {
    /// The account's name within its workspace.
    pub name: ServiceAccountName,
    /// The workspace the account belongs to.
    pub workspace: WorkspaceName,
}

impl FromStr for ServiceAccountFullName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let Some((name, workspace)) = s.split_once('@') else {
            return Err(invalid(
                NameKind::ServiceAccount,
                s,
                "a service account's full name is `name@workspace`",
            ));
        };
        Ok(Self {
            name: name.parse()?,
            workspace: workspace.parse()?,
        })
    }
}

impl fmt::Display for ServiceAccountFullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.workspace)
    }
}

/// A project's name within its workspace (N3): 3–128 characters, none of
/// `/ \ # ? % :`, no control characters, nothing outside the Basic Multilingual
/// Plane. Unique case-insensitively; the spelling given at creation is kept.
#[derive(Debug, Clone)]
pub struct ProjectName {
    display: String,
    key: String,
}

impl ProjectName {
    /// Rebuilds a name read back from the database, where only valid names are written.
    pub(crate) fn from_stored(display: String) -> Self {
        let key = display.to_lowercase();
        Self { display, key }
    }

    /// The spelling given at creation.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-folded form that uniqueness and look-ups use.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl FromStr for ProjectName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let kind = NameKind::Project;
        // Bound the work before counting characters of a hostile 10 MB input.
        if s.len() > 128 * 3 {
            return Err(invalid(kind, s, "must be 3 to 128 characters long"));
        }
        let len = s.chars().count();
        if !(3..=128).contains(&len) {
            return Err(invalid(kind, s, "must be 3 to 128 characters long"));
        }
        for c in s.chars() {
            if matches!(c, '/' | '\\' | '#' | '?' | '%' | ':') {
                return Err(invalid(kind, s, format!("cannot contain `{c}`")));
            }
            if c.is_control() {
                return Err(invalid(kind, s, "cannot contain control characters"));
            }
            if u32::from(c) > 0xFFFF {
                return Err(invalid(
                    kind,
                    s,
                    "cannot contain characters outside the Basic Multilingual Plane",
                ));
            }
        }
        Ok(Self {
            display: s.to_owned(),
            key: s.to_lowercase(),
        })
    }
}

impl PartialEq for ProjectName {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ProjectName {}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// A qualified project name, `workspace/project` (N5).
///
/// ```
/// use turnstile::QualifiedProjectName;
/// let p: QualifiedProjectName = "ML-Team/Classification".parse()?;
/// assert_eq!(p.to_string(), "ml-team/Classification");
/// assert!("ml-team/a/b".parse::<QualifiedProjectName>().is_err());
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedProjectName {
    /// The workspace part.
    pub workspace: WorkspaceName,
    /// The project part.
    pub project: ProjectName,
}

impl FromStr for QualifiedProjectName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(ws), Some(project), None) if !ws.is_empty() && !project.is_empty() => Ok(Self {
                workspace: ws.parse()?,
                project: project.parse()?,
            }),
            _ => Err(Error::InvalidProjectName { value: echo(s) }),
        }
    }
}

impl fmt::Display for QualifiedProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workspace, self.project)
    }
}

impl fmt::Display for WorkspaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A project key (N4): 1–10 of `A-Z 0-9` with at least one letter, unique within
/// the workspace. Given keys are upper-cased before validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectKey(String);

impl ProjectKey {
    /// Rebuilds a key read back from the database, where only valid keys are written.
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Derives the preferred key of a project name: the initials of its words when it
    /// has several (`image-segmentation` → `IS`), else its first three letters or
    /// digits (`classification` → `CLA`); `P` is put in front when no ASCII letter
    /// survives. [`ProjectKey::candidates`] adds numbered variants for collisions.
    pub fn from_name(name: &ProjectName) -> Self {
        let words: Vec<&str> = name
            .as_str()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut key: String = if words.len() >= 2 {
            words
                .iter()
                .filter_map(|w| w.chars().next())
                .take(10)
                .collect()
        } else {
            words
                .first()
                .map(|w| w.chars().take(3).collect())
                .unwrap_or_default()
        };
        key.make_ascii_uppercase();
        if !key.chars().any(|c| c.is_ascii_uppercase()) {
            key.insert(0, 'P');
            key.truncate(10);
        }
        Self(key)
    }

    /// The key itself, then `KEY2`, `KEY3`, … (shortened to stay within 10
    /// characters): the keys tried, in order, when a generated key collides.
    pub fn candidates(&self) -> impl Iterator<Item = ProjectKey> + '_ {
        (0..).map(|n| self.candidate(n))
    }

    /// The `n`th of [`candidates`](Self::candidates), computed directly.
    pub fn candidate(&self, n: usize) -> ProjectKey {
        if n == 0 {
            return self.clone();
        }
        let suffix = (n + 1).to_string();
        let mut base = self.0.clone();
        base.truncate(10 - suffix.len().min(9));
        Self(base + &suffix)
    }
}

impl FromStr for ProjectKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let kind = NameKind::ProjectKey;
        let upper = s.to_ascii_uppercase();
        if !(1..=10).contains(&upper.len()) {
            return Err(invalid(kind, s, "must be 1 to 10 characters long"));
        }
        if let Some(c) = upper
            .chars()
            .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
        {
            return Err(invalid(
                kind,
                s,
                format!("may contain only letters and digits, found `{c}`"),
            ));
        }
        if !upper.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(kind, s, "must contain at least one letter"));
        }
        Ok(Self(upper))
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hands out free project keys within one workspace: a wanted key if free, else the
/// first free numbered variant of it ([`ProjectKey::candidates`]). Remembers where each
/// base left off, so giving out n keys of one base costs O(n), not O(n²).
#[derive(Debug, Default)]
pub struct KeyAllocator {
    taken: HashSet<String>,
    next: HashMap<String, usize>,
}

impl KeyAllocator {
    /// An allocator over the keys already in use.
    pub fn new(taken: HashSet<String>) -> Self {
        Self {
            taken,
            next: HashMap::new(),
        }
    }

    /// Claims an explicitly given key; `false` if it is taken.
    pub fn claim(&mut self, key: &ProjectKey) -> bool {
        self.taken.insert(key.0.clone())
    }

    /// The preferred key if free, else its first free numbered variant.
    pub fn allocate(&mut self, preferred: &ProjectKey) -> ProjectKey {
        let mut n = self.next.get(&preferred.0).copied().unwrap_or(0);
        loop {
            let key = preferred.candidate(n);
            n += 1;
            if self.taken.insert(key.0.clone()) {
                self.next.insert(preferred.0.clone(), n);
                return key;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(err: Error) -> Option<NameKind> {
        match err {
            Error::InvalidName { kind, .. } => Some(kind),
            _ => None,
        }
    }

    #[test]
    fn n1_workspace_names_are_lower_cased_and_bounded() {
        assert_eq!(
            "ML-Team".parse::<WorkspaceName>().unwrap().as_str(),
            "ml-team"
        );
        assert_eq!("a1".parse::<WorkspaceName>().unwrap().as_str(), "a1");
        for bad in ["a", "-ab", "ab-", "a_b", "ab c", "ąb", &"a".repeat(65), ""] {
            let err = bad.parse::<WorkspaceName>().unwrap_err();
            assert_eq!(kind_of(err), Some(NameKind::Workspace), "{bad}");
        }
        assert!("a".repeat(64).parse::<WorkspaceName>().is_ok());
    }

    #[test]
    fn n2_account_names_follow_the_character_rules() {
        for good in ["a", "Alice", "bob.smith", "ci_bot-2", "A.", &"x".repeat(64)] {
            assert!(good.parse::<Username>().is_ok(), "{good}");
            assert!(good.parse::<ServiceAccountName>().is_ok(), "{good}");
        }
        for bad in ["", ".a", "-a", "a b", "a/b", "a@b", "é", &"x".repeat(65)] {
            assert_eq!(
                kind_of(bad.parse::<Username>().unwrap_err()),
                Some(NameKind::Username),
                "{bad}"
            );
        }
        let a: Username = "Alice".parse().unwrap();
        let b: Username = "aLICE".parse().unwrap();
        assert_eq!(a, b, "N2: usernames are case-insensitive");
        assert_eq!(a.as_str(), "Alice");
    }

    #[test]
    fn n2_service_account_full_name_splits_at_the_at_sign() {
        let sa: ServiceAccountFullName = "CICD@ML-team".parse().unwrap();
        assert_eq!(sa.name.as_str(), "CICD");
        assert_eq!(sa.workspace.as_str(), "ml-team");
        assert!("cicd".parse::<ServiceAccountFullName>().is_err());
        assert!("a@b@c".parse::<ServiceAccountFullName>().is_err());
        assert!("cicd@".parse::<ServiceAccountFullName>().is_err());
    }

    #[test]
    fn n3_project_names_reject_forbidden_characters() {
        for good in [
            "cls",
            "Image Segmentation",
            "données",
            "プロジェクト",
            &"x".repeat(128),
        ] {
            assert!(good.parse::<ProjectName>().is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "a/bc",
            "a\\bc",
            "a#bc",
            "a?bc",
            "a%bc",
            "a:bc",
            "ab\u{0}c",
            "ab\nc",
            "ab😀",
            &"x".repeat(129),
        ] {
            assert_eq!(
                kind_of(bad.parse::<ProjectName>().unwrap_err()),
                Some(NameKind::Project),
                "{bad:?}"
            );
        }
        let a: ProjectName = "Classification".parse().unwrap();
        let b: ProjectName = "CLASSIFICATION".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Classification");
    }

    #[test]
    fn n3_huge_project_name_is_rejected_without_echoing_it() {
        let huge = "x".repeat(10 * 1024 * 1024);
        let err = huge.parse::<ProjectName>().unwrap_err();
        assert!(err.to_string().len() < 300);
    }

    #[test]
    fn n4_project_keys() {
        assert_eq!("cls".parse::<ProjectKey>().unwrap().as_str(), "CLS");
        for bad in ["", "123", "AB-C", "ABCDEFGHIJK", "Ä"] {
            assert_eq!(
                kind_of(bad.parse::<ProjectKey>().unwrap_err()),
                Some(NameKind::ProjectKey),
                "{bad}"
            );
        }
        let key = |n: &str| ProjectKey::from_name(&n.parse().unwrap()).0;
        assert_eq!(key("classification"), "CLA");
        assert_eq!(key("image-segmentation"), "IS");
        assert_eq!(key("123"), "P123");
        assert_eq!(key("プロジェクト"), "P");
        let long: ProjectKey = "ABCDEFGHIJ".parse().unwrap();
        let c: Vec<String> = long.candidates().take(3).map(|k| k.0).collect();
        assert_eq!(c, ["ABCDEFGHIJ", "ABCDEFGHI2", "ABCDEFGHI3"]);
        for k in long.candidates().take(200) {
            assert!(k.as_str().parse::<ProjectKey>().is_ok(), "{k}");
        }
    }

    #[test]
    fn n4_key_allocator_skips_taken_keys() {
        let key = |s: &str| s.parse::<ProjectKey>().unwrap();
        let mut keys = KeyAllocator::new(["CLA".to_owned(), "CLA3".to_owned()].into());
        assert_eq!(keys.allocate(&key("CLA")).as_str(), "CLA2");
        assert_eq!(keys.allocate(&key("CLA")).as_str(), "CLA4");
        assert!(!keys.claim(&key("CLA4")));
        assert!(keys.claim(&key("XYZ")));
        assert_eq!(keys.allocate(&key("XYZ")).as_str(), "XYZ2");
    }

    #[test]
    fn n5_qualified_names_need_exactly_one_slash() {
        let q: QualifiedProjectName = "ml-team/classification".parse().unwrap();
        assert_eq!(q.workspace.as_str(), "ml-team");
        for bad in ["classification", "ml-team/a/b", "/cls", "ml-team/", ""] {
            assert!(
                matches!(
                    bad.parse::<QualifiedProjectName>(),
                    Err(Error::InvalidProjectName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn n6_invalid_names_say_what_and_why() {
        let err = "a b".parse::<WorkspaceName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid workspace name `a b`: may contain only letters, digits and `-`, found ` `"
        );
    }
}
