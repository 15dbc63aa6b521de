//! Validated names (SPEC §2, N1–N6).
//!
//! Every name is parsed once, at the edge, into a newtype; code further in never
//! re-validates a string. Each newtype keeps the spelling to display and a folded
//! key used for case-insensitive uniqueness.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use icu_casemap::CaseMapper;
use icu_properties::props::{
    DefaultIgnorableCodePoint, GeneralCategory, NoncharacterCodePoint, WhiteSpace,
};
use icu_properties::{CodePointMapData, CodePointSetData};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc, is_nfkc_quick};

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

/// Shortens user input for an error message, on a character boundary, and writes
/// the characters that would render invisibly or reorder the message (a bidi
/// override, a newline) as `\u{202E}`.
pub(crate) fn echo(value: &str) -> String {
    let mut end = value.len().min(MAX_ECHO);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    for c in value[..end].chars() {
        if invisible_kind(c).is_some() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    if end < value.len() {
        out.push('…');
    }
    out
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
/// `/ \ # ? % :`, nothing outside the Basic Multilingual Plane, and nothing that
/// renders invisibly or reorders text. Stored in NFC; unique by caseless identifier
/// matching ([`fold`], NFKC_Casefold). The spelling given at creation is kept.
///
/// ```
/// use turnstile::ProjectName;
/// let a: ProjectName = "Straße".parse()?;
/// let b: ProjectName = "STRASSE".parse()?;
/// assert_eq!(a, b);
/// assert_eq!(a.key(), "strasse");
/// assert_eq!(a.as_str(), "Straße");
/// assert!("evil\u{202E}txt".parse::<ProjectName>().is_err());
/// # Ok::<(), turnstile::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProjectName {
    display: String,
    /// Computed on first use for names read back from the database, which are
    /// displayed far more often than compared.
    key: OnceLock<String>,
    /// Computed on first use: only creation and import need it (N7), not the check path.
    skeleton: OnceLock<String>,
}

impl ProjectName {
    /// Rebuilds a name read back from the database, where only valid names are written.
    pub(crate) fn from_stored(display: String) -> Self {
        Self {
            display,
            key: OnceLock::new(),
            skeleton: OnceLock::new(),
        }
    }

    /// Rebuilds a name stored before schema version 2, which may not be in NFC.
    pub(crate) fn from_legacy(stored: &str) -> Self {
        Self::from_stored(stored.nfc().collect())
    }

    /// The spelling given at creation, in NFC.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The NFKC_Casefold form that uniqueness and look-ups use (N3).
    pub fn key(&self) -> &str {
        self.key.get_or_init(|| fold(&self.display).into_owned())
    }

    /// The UTS #39 skeleton of [`key`](Self::key): two names of one workspace with the
    /// same skeleton are confusable (N7).
    pub fn skeleton(&self) -> &str {
        self.skeleton.get_or_init(|| skeleton(self.key()))
    }
}

/// Characters N3 forbids anywhere in a project name.
fn is_reserved(c: char) -> bool {
    matches!(c, '/' | '\\' | '#' | '?' | '%' | ':')
}

/// Why N3 forbids a character of a project name, if it does.
fn forbidden_reason(c: char) -> Option<String> {
    if is_reserved(c) {
        return Some(format!("cannot contain `{c}`"));
    }
    if u32::from(c) > 0xFFFF {
        return Some("cannot contain characters outside the Basic Multilingual Plane".to_owned());
    }
    invisible_kind(c).map(|what| format!("cannot contain {what} {}", code_point(c)))
}

/// What kind of character, among those that render invisibly, reorder text or have
/// no agreed rendering at all (N3), `c` is.
fn invisible_kind(c: char) -> Option<&'static str> {
    if c.is_ascii() {
        return c.is_ascii_control().then_some("control character");
    }
    Some(match CodePointMapData::<GeneralCategory>::new().get(c) {
        GeneralCategory::Control => "control character",
        GeneralCategory::Format => "invisible formatting character",
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            "line or paragraph separator"
        }
        GeneralCategory::PrivateUse => "private-use character",
        GeneralCategory::Unassigned
            if CodePointSetData::new::<NoncharacterCodePoint>().contains(c) =>
        {
            "noncharacter"
        }
        GeneralCategory::Unassigned => "unassigned character",
        // Hangul fillers, variation selectors, the combining grapheme joiner: they
        // render as nothing, so two names that look alike could differ by them.
        _ if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) => {
            "invisible character"
        }
        _ => return None,
    })
}

/// `U+202E`, the way a reader can look a character up.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

fn is_white_space(c: char) -> bool {
    if c.is_ascii() {
        c == ' '
    } else {
        CodePointSetData::new::<WhiteSpace>().contains(c)
    }
}

impl FromStr for ProjectName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let kind = NameKind::Project;
        let length = || invalid(kind, s, "must be 3 to 128 characters long");
        // Bound the work before looking at the characters of a hostile 10 MB input.
        if s.len() > 128 * 3 {
            return Err(length());
        }
        let edge_space = || invalid(kind, s, "cannot start or end with white space");
        // Fast path: pure ASCII is already NFC, and its NFKC_Casefold is its ASCII
        // lower case; this is the check path's common case, checked byte by byte.
        if s.is_ascii() {
            let bytes = s.as_bytes();
            if let Some(&b) = bytes
                .iter()
                .find(|b| b.is_ascii_control() || is_reserved(char::from(**b)))
            {
                let reason = forbidden_reason(char::from(b)).unwrap_or_default();
                return Err(invalid(kind, s, reason));
            }
            if bytes.first() == Some(&b' ') || bytes.last() == Some(&b' ') {
                return Err(edge_space());
            }
            if !(3..=128).contains(&s.len()) {
                return Err(length());
            }
            return Ok(Self {
                display: s.to_owned(),
                key: OnceLock::from(s.to_ascii_lowercase()),
                skeleton: OnceLock::new(),
            });
        }
        if let Some(reason) = s.chars().find_map(forbidden_reason) {
            return Err(invalid(kind, s, reason));
        }
        if s.starts_with(is_white_space) || s.ends_with(is_white_space) {
            return Err(edge_space());
        }
        let display: String = if is_nfc(s) {
            s.to_owned()
        } else {
            s.nfc().collect()
        };
        if !(3..=128).contains(&display.chars().count()) {
            return Err(length());
        }
        let key = nfkc_casefold(&display);
        // A compatibility form of a reserved character (full-width `／`, `℀`) would
        // make the key, and so every other spelling of the name, unparseable (N5).
        if key.contains(is_reserved) {
            let c = display
                .chars()
                .find(|c| c.to_string().nfkc().any(is_reserved))
                .unwrap_or('/');
            let reserved: String = c.to_string().nfkc().filter(|c| is_reserved(*c)).collect();
            return Err(invalid(
                kind,
                s,
                format!("cannot contain `{c}`, a form of `{reserved}`"),
            ));
        }
        Ok(Self {
            display,
            key: OnceLock::from(key),
            skeleton: OnceLock::new(),
        })
    }
}

/// Unicode caseless identifier matching (N3): the NFKC_Casefold form of `s`, under
/// which `Straße` = `STRASSE`, `ſtore` = `STORE`, `ΣΑΣ` = `σας`, `ＡＢＣ` = `abc` and a
/// composed `é` = a decomposed one. Pure ASCII takes a fast path (its ASCII lower
/// case, which is its NFKC_Casefold) and is borrowed when already lower-case.
///
/// Any string folds, valid name or not: audit filters fold what they are given (L2).
///
/// ```
/// use turnstile::domain::names::fold;
/// assert_eq!(fold("ML-Team/Straße"), "ml-team/strasse");
/// assert_eq!(fold("ＡＢＣ"), "abc");
/// ```
pub fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(s.to_ascii_lowercase());
        }
        return Cow::Borrowed(s);
    }
    Cow::Owned(nfkc_casefold(s))
}

/// NFKC_Casefold as Unicode derives it (UAX #44, `NFKC_Casefold`): NFKC, full case
/// folding and the removal of default-ignorable code points, repeated until stable.
/// Built from the normalizer of `unicode-normalization` and ICU4X's case mapper and
/// properties, not from a table of our own.
fn nfkc_casefold(s: &str) -> String {
    let case = CaseMapper::new();
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let mut current: String = if is_nfkc_quick(s.chars()) == IsNormalized::Yes {
        s.to_owned()
    } else {
        s.nfkc().collect()
    };
    // Two rounds reach the fixed point for every code point; the bound only guards
    // against a future data change looping.
    for _ in 0..4 {
        let folded = case.fold_string(&current);
        // Already stable: in NFKC, folded, and without default ignorables.
        if matches!(folded, Cow::Borrowed(_)) && !current.chars().any(|c| ignorable.contains(c)) {
            break;
        }
        let next: String = folded
            .chars()
            .filter(|c| !ignorable.contains(*c))
            .nfkc()
            .collect();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// The UTS #39 skeleton of a folded name (N7), from `unicode-security`. Pure ASCII,
/// the common case of a bulk import, maps character by character through a table
/// the same crate computed once.
pub fn skeleton(folded: &str) -> String {
    if folded.is_ascii() {
        let table = ascii_skeletons();
        if let Some(parts) = folded
            .bytes()
            .map(|b| table[usize::from(b)].as_deref())
            .collect::<Option<Vec<&str>>>()
        {
            return parts.concat();
        }
    }
    unicode_security::skeleton(folded).collect()
}

/// The skeleton of each ASCII character where it is ASCII again (all but `%`, which
/// no project name holds): the skeleton of a string of those is the concatenation of
/// its characters' skeletons, since NFD changes no ASCII.
fn ascii_skeletons() -> &'static [Option<String>] {
    static TABLE: OnceLock<Vec<Option<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0u8..128)
            .map(|b| {
                let s: String = unicode_security::skeleton(&char::from(b).to_string()).collect();
                s.is_ascii().then_some(s)
            })
            .collect()
    })
}

impl PartialEq for ProjectName {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
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
    // A seeded fast hash: a bulk import allocates a key per project.
    taken: foldhash::HashSet<String>,
    next: foldhash::HashMap<String, usize>,
}

impl KeyAllocator {
    /// An allocator over the keys already in use.
    pub fn new(taken: HashSet<String>) -> Self {
        Self {
            taken: taken.into_iter().collect(),
            next: foldhash::HashMap::default(),
        }
    }

    /// Room for `additional` more keys without growing: a bulk import knows how many
    /// projects it allocates keys for.
    pub fn reserve(&mut self, additional: usize) {
        self.taken.reserve(additional);
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
                match self.next.get_mut(&preferred.0) {
                    Some(next) => *next = n,
                    None => {
                        self.next.insert(preferred.0.clone(), n);
                    }
                }
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

    fn project(s: &str) -> ProjectName {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn reason(s: &str) -> String {
        match s.parse::<ProjectName>() {
            Err(Error::InvalidName {
                kind: NameKind::Project,
                reason,
                ..
            }) => reason,
            other => panic!("{s:?} should be an invalid project name: {other:?}"),
        }
    }

    #[test]
    fn n3_names_match_by_nfkc_casefold() {
        for (a, b) in [
            ("Straße", "STRASSE"),
            ("Straße", "strasse"),
            ("ſtore", "STORE"),
            ("ΣΑΣ", "σας"),
            ("ΣΑΣ", "σασ"),
            ("ＡＢＣ", "abc"),
            ("caf\u{e9}", "cafe\u{301}"),
            ("CAF\u{c9}", "café"),
            ("ﬁle", "FILE"),
            ("Ⅻ-stage", "xii-stage"),
            ("\u{1e9e}oo", "ssoo"),
        ] {
            assert_eq!(project(a), project(b), "{a} = {b}");
            assert_eq!(project(a).key(), project(b).key(), "{a} = {b}");
        }
        for (a, b) in [("Straße", "Strase"), ("cafe", "café"), ("abc", "abd")] {
            assert_ne!(project(a), project(b), "{a} != {b}");
        }
        // Reference values of the NFKC_Casefold mapping (DerivedNormalizationProps).
        for (name, key) in [
            ("Straße", "strasse"),
            ("ΣΑΣ", "σασ"),
            ("㎒ band", "mhz band"),
            ("ǅemal", "džemal"),
            ("İstanbul", "i\u{307}stanbul"),
            ("\u{390}xy", "\u{390}xy"),
            ("ｶﾀｶﾅ", "カタカナ"),
        ] {
            assert_eq!(project(name).key(), key, "{name}");
            assert_eq!(fold(name), key, "{name}");
        }
    }

    #[test]
    fn n3_fold_is_idempotent_and_its_ascii_fast_path_agrees() {
        for s in [
            "Straße",
            "ΣΑΣ",
            "ＡＢＣ",
            "ﬃ",
            "㍱",
            "Ⅻ",
            "ǅ",
            "İ",
            "ᾈ",
            "ŉ",
            "ΐ",
            "ｶﾞ",
            "①②",
        ] {
            let once = fold(s).into_owned();
            assert_eq!(fold(&once), once, "{s}");
        }
        let ascii: String = (0u8..128).map(char::from).collect();
        assert_eq!(fold(&ascii), nfkc_casefold(&ascii));
        assert!(matches!(fold("ml-team/cls"), Cow::Borrowed(_)));
    }

    #[test]
    fn n3_display_spelling_is_stored_in_nfc() {
        let decomposed = project("cafe\u{301}");
        assert_eq!(decomposed.as_str(), "caf\u{e9}");
        assert_eq!(project("Straße").as_str(), "Straße");
        // Length counts the characters of the NFC form: `e` + U+0301 is one.
        assert!("e\u{301}\u{301}".parse::<ProjectName>().is_err());
        assert!(
            format!("{}e\u{301}", "x".repeat(127))
                .parse::<ProjectName>()
                .is_ok()
        );
    }

    #[test]
    fn n3_invisible_and_reordering_characters_are_rejected() {
        for (bad, why) in [
            (
                "evil\u{202e}gnp.exe",
                "invisible formatting character U+202E",
            ),
            ("zero\u{200b}width", "invisible formatting character U+200B"),
            ("\u{feff}bom", "invisible formatting character U+FEFF"),
            ("join\u{200d}er", "invisible formatting character U+200D"),
            ("ab\u{7}c", "control character U+0007"),
            ("ab\u{85}c", "control character U+0085"),
            ("line\u{2028}sep", "line or paragraph separator U+2028"),
            ("para\u{2029}sep", "line or paragraph separator U+2029"),
            ("priv\u{e000}ate", "private-use character U+E000"),
            ("un\u{378}assigned", "unassigned character U+0378"),
            ("non\u{fdd0}char", "noncharacter U+FDD0"),
            ("non\u{fffe}char", "noncharacter U+FFFE"),
            ("han\u{3164}gul", "invisible character U+3164"),
            ("vari\u{fe0f}ant", "invisible character U+FE0F"),
            ("cgj\u{34f}x", "invisible character U+034F"),
        ] {
            assert_eq!(reason(bad), format!("cannot contain {why}"), "{bad:?}");
        }
        for bad in [
            " lead",
            "trail ",
            "\u{3000}wide",
            "nbsp\u{a0}",
            "\u{2003}em",
        ] {
            assert_eq!(
                reason(bad),
                "cannot start or end with white space",
                "{bad:?}"
            );
        }
        // Inner spaces of any kind stay allowed.
        assert!("a\u{3000}b c".parse::<ProjectName>().is_ok());
        // The echoed value never carries the character itself into the message.
        let err = "evil\u{202e}gnp.exe".parse::<ProjectName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid project name `evil\\u{202e}gnp.exe`: cannot contain invisible formatting character U+202E"
        );
    }

    #[test]
    fn n3_compatibility_forms_of_reserved_characters_are_rejected() {
        assert_eq!(
            reason("a\u{ff0f}bc"),
            "cannot contain `\u{ff0f}`, a form of `/`"
        );
        assert_eq!(
            reason("x\u{2100}y"),
            "cannot contain `\u{2100}`, a form of `/`"
        );
        assert_eq!(
            reason("ab\u{fe55}c"),
            "cannot contain `\u{fe55}`, a form of `:`"
        );
    }

    #[test]
    fn n7_skeletons_equate_look_alikes_of_folded_names() {
        let latin = project("classification");
        let cyrillic = project("\u{441}lassification");
        assert_ne!(latin, cyrillic, "N3 keeps them apart");
        assert_eq!(latin.skeleton(), cyrillic.skeleton(), "N7 sees them alike");
        assert_eq!(project("paypal").skeleton(), project("PAYPAL").skeleton());
        assert_eq!(project("rn-team").skeleton(), project("m-team").skeleton());
        assert_ne!(project("alpha").skeleton(), project("beta").skeleton());
        // The ASCII table gives what the crate gives.
        let ascii: String = (32u8..127).map(char::from).collect();
        let slow: String = unicode_security::skeleton(&ascii).collect();
        assert_eq!(skeleton(&ascii), slow);
        let without_percent = ascii.replace('%', "");
        let slow: String = unicode_security::skeleton(&without_percent).collect();
        assert_eq!(skeleton(&without_percent), slow);
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
