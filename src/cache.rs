//! The never-stale decision cache (SPEC T4).
//!
//! Entries are the facts behind a decision and what a token authenticates as. Each
//! shard remembers the [`ChangeStamp`] its entries were read under; a caller presents
//! the stamp it read *before* looking anything up, and a shard whose stamp differs is
//! emptied first. A commit by any connection of any process changes the stamp, so no
//! entry survives a commit: an answer from the cache is the answer SQL would give at
//! that instant.
//!
//! The facts are kept in the shape a decision reads them, so that a warm check touches
//! little memory ([`FactsCache`]): a principal's standing in a workspace (a few
//! thousand entries, hot in the CPU caches), and per project its visibility with the
//! grants of the principals asked about it so far, inline in the project's own entry.
//! Keyed by (principal, project) pairs instead, the standard workload's 200,000 checks
//! filled about 197,000 entries (9 MB) at either scale; this shape holds the same
//! facts in a fraction of that. A warm check still misses the CPU caches on a large
//! model: on the project's line, and on its list of principals once more than three
//! have asked about it.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::domain::access::{Action, Standing, decide, effective_access, permits};
use crate::domain::principal::Principal;
use crate::domain::roles::{ProjectRole, Visibility};
use crate::padded::Padded;
use crate::repo::store::ChangeStamp;

/// Enough shards that threads sharing an engine seldom meet on one lock.
const SHARDS: usize = 64;
/// Entries per shard before the shard is emptied: bounds memory at about 64 × 4,096
/// entries of a few dozen bytes each.
const MAX_PER_SHARD: usize = 4_096;

/// What a cache holds: entries that carry their own full key, so that a hash
/// collision is a miss, never a wrong answer.
pub(crate) trait Entry {
    fn key(&self) -> &[u8];
}

/// A sharded map from keys to entries, each shard valid for one [`ChangeStamp`].
pub(crate) struct Cache<V> {
    shards: Box<[Padded<Mutex<Shard<V>>>]>,
    /// Randomly seeded per cache, so no one can choose keys that collide.
    hasher: foldhash::fast::RandomState,
}

struct Shard<V> {
    stamp: Option<ChangeStamp>,
    /// The hash is not stored: an entry's slot is the entry, no more.
    entries: HashTable<V>,
}

/// A cache entry's full key, inline when short (the common case, one allocation
/// fewer and one cache miss fewer per look-up), on the heap otherwise.
pub(crate) enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

/// 22 bytes hold most keys (`bench/p000042`: 13; `sa03@bench`, a NUL, `bench`: 16)
/// and make a [`Key`] 24 bytes.
const INLINE_KEY: usize = 22;

impl Key {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_KEY {
            let mut inline = [0u8; INLINE_KEY];
            inline[..bytes.len()].copy_from_slice(bytes);
            Key::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Key::Heap(bytes.into())
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(bytes) => bytes,
        }
    }
}

/// The concatenation of `parts`: on the stack when it fits in `buffer`.
fn concat<'a>(parts: &[&str], buffer: &'a mut [u8; 64]) -> Cow<'a, [u8]> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > buffer.len() {
        return Cow::Owned(parts.concat().into_bytes());
    }
    let mut at = 0;
    for p in parts {
        buffer[at..at + p.len()].copy_from_slice(p.as_bytes());
        at += p.len();
    }
    Cow::Borrowed(&buffer[..len])
}

impl<V: Entry> Cache<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        stamp: None,
                        entries: HashTable::new(),
                    }))
                })
                .collect(),
            hasher: Default::default(),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64, stamp: &ChangeStamp) -> MutexGuard<'_, Shard<V>> {
        // Bits 32 and up pick the shard. The table inside takes its bucket from the
        // low bits and its tag from the top 7: had the shard been picked by the low
        // bits, every entry of a shard would share them and crowd into 1/64 of its
        // buckets, each look-up probing group after group.
        let mut shard = self.shards[((hash >> 32) as usize) % SHARDS]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // INVARIANT: T4, entries read under another stamp are dropped before any answer.
        if shard.stamp.as_ref() != Some(stamp) {
            shard.entries.clear();
            shard.stamp = Some(*stamp);
        }
        shard
    }

    /// `key` with its hash, for a look-up and then perhaps an update of one key.
    pub(crate) fn probe<'k>(&self, key: impl Into<Cow<'k, [u8]>>) -> Probe<'k> {
        let key = key.into();
        Probe {
            hash: self.hash(&key),
            key,
        }
    }

    /// `read` of the entry for `key`, if the entry was read under `stamp`.
    pub(crate) fn get<R>(
        &self,
        stamp: &ChangeStamp,
        key: &[u8],
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        self.get_probed(stamp, &self.probe(key), read)
    }

    /// [`get`](Self::get) of a probe.
    pub(crate) fn get_probed<R>(
        &self,
        stamp: &ChangeStamp,
        probe: &Probe<'_>,
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let shard = self.shard(probe.hash, stamp);
        shard
            .entries
            .find(probe.hash, |e| e.key() == &*probe.key)
            .map(read)
    }

    /// Stores an entry read under `stamp` (the stamp taken before the read).
    pub(crate) fn insert(&self, stamp: &ChangeStamp, value: V) {
        let hash = self.hash(value.key());
        let mut shard = self.shard(hash, stamp);
        match shard.entries.find_mut(hash, |e| e.key() == value.key()) {
            Some(slot) => *slot = value,
            None => self.add(&mut shard, hash, value),
        }
    }

    /// Changes the entry for `probe` read under `stamp` in place, or stores the one
    /// `change` returns: `change` sees the entry there, if any, and returns a new
    /// entry to take its place, or `None` to keep it as changed.
    pub(crate) fn upsert(
        &self,
        stamp: &ChangeStamp,
        probe: &Probe<'_>,
        change: impl FnOnce(Option<&mut V>) -> Option<V>,
    ) {
        let mut shard = self.shard(probe.hash, stamp);
        match shard
            .entries
            .find_mut(probe.hash, |e| e.key() == &*probe.key)
        {
            Some(slot) => {
                if let Some(value) = change(Some(slot)) {
                    *slot = value;
                }
            }
            None => {
                if let Some(value) = change(None) {
                    self.add(&mut shard, probe.hash, value);
                }
            }
        }
    }

    /// Adds an entry not in `shard`.
    fn add(&self, shard: &mut Shard<V>, hash: u64, value: V) {
        if shard.entries.len() >= MAX_PER_SHARD {
            shard.entries.clear();
        }
        shard
            .entries
            .insert_unique(hash, value, |e| self.hash(e.key()));
    }
}

/// A key and its hash.
pub(crate) struct Probe<'k> {
    key: Cow<'k, [u8]>,
    hash: u64,
}

/// The facts behind decisions (SPEC R1-R7 read them; `decide` rules on them), cached
/// in two maps that one stamp vouches for.
pub(crate) struct FactsCache {
    /// A principal's standing in a workspace, without any grant: whether the
    /// principal is a member, an admin, an active account of that workspace.
    principals: Cache<PrincipalEntry>,
    /// A project's visibility, and the grants of the principals asked about it.
    projects: Cache<ProjectEntry>,
}

struct PrincipalEntry {
    /// [`principal_key`]'s parts, concatenated.
    key: Key,
    /// The principal's row id and kind: see [`tag`].
    tag: u64,
    /// The standing in the workspace, its grant left out.
    standing: Standing,
}

/// One cache line: a warm check reads the project's name, visibility and grants
/// from the one line its look-up lands on.
#[repr(align(64))]
struct ProjectEntry {
    /// The project's name as asked.
    key: Key,
    visibility: Visibility,
    /// One word per principal asked about: its [`tag`], two bits of its grant
    /// ([`grant_bits`]) and one bit per action, whether [`decide`] allows it: a warm
    /// check tests a bit. Inline up to three: about nine entries in ten of a large
    /// model, where few principals ask about any one project.
    known: SmallVec<[u64; 3]>,
}

const _: () = assert!(size_of::<ProjectEntry>() == 64);

impl Entry for PrincipalEntry {
    fn key(&self) -> &[u8] {
        self.key.bytes()
    }
}

impl Entry for ProjectEntry {
    fn key(&self) -> &[u8] {
        self.key.bytes()
    }
}

/// Principals remembered per project before its list starts over: bounds an entry.
const MAX_KNOWN: usize = 64;

/// A known word's layout: the [`tag`] above the grant's two bits above one bit per
/// action of [`Action::ALL`].
const DECISION_BITS: u32 = 4;
const GRANT_SHIFT: u32 = DECISION_BITS;
const TAG_SHIFT: u32 = GRANT_SHIFT + 2;

/// The facts of a principal on a project, as [`FactsCache::get`] or storage found them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    pub(crate) standing: Standing,
    pub(crate) visibility: Visibility,
    /// One bit per action, whether [`decide`] allows it: `None` when not worked out.
    decisions: Option<u8>,
}

impl Facts {
    pub(crate) fn new(standing: Standing, visibility: Visibility) -> Self {
        Self {
            standing,
            visibility,
            decisions: None,
        }
    }

    /// [`decide`] on these facts.
    pub(crate) fn permits(&self, action: Action) -> bool {
        match self.decisions {
            Some(bits) => bits & decision_bit(action) != 0,
            None => decide(self.visibility, self.standing, action),
        }
    }
}

fn decision_bit(action: Action) -> u8 {
    match action {
        Action::View => 1,
        Action::Edit => 2,
        Action::Manage => 4,
        Action::Delete => 8,
    }
}

/// [`decide`] of every action, one bit each: the effective access worked out once.
fn decisions(standing: Standing, visibility: Visibility) -> u8 {
    let access = effective_access(visibility, standing);
    Action::ALL
        .into_iter()
        .filter(|&action| permits(standing, access, action))
        .fold(0, |bits, action| bits | decision_bit(action))
}

/// A principal's known word on a project: its [`tag`], its grant and [`decisions`].
fn known_word(tag: u64, standing: Standing, visibility: Visibility) -> u64 {
    tag << TAG_SHIFT
        | grant_bits(standing.grant()) << GRANT_SHIFT
        | u64::from(decisions(standing, visibility))
}

/// The facts a [`known_word`] stands for, with the principal's standing in the
/// workspace (`basis`, no grant) and the project's visibility.
fn facts_of_word(word: u64, basis: Standing, visibility: Visibility) -> Facts {
    Facts {
        standing: basis.with_grant(grant_of(word >> GRANT_SHIFT)),
        visibility,
        decisions: Some(word as u8 & ((1 << DECISION_BITS) - 1)),
    }
}

/// The parts of a principal's key: its case-folded name, a NUL (which no name
/// contains), the workspace part of the project asked about.
fn principal_key<'a>(principal: &'a Principal, workspace: &'a str) -> [&'a str; 5] {
    match principal {
        Principal::User(u) => [u.key(), "", "", "\0", workspace],
        Principal::ServiceAccount(sa) => {
            [sa.name.key(), "@", sa.workspace.as_str(), "\0", workspace]
        }
    }
}

/// A principal's row id and kind in one word; `None` for an id too large to shift
/// (never a SQLite or PostgreSQL row id in practice: it is then just not cached).
fn tag(principal: &Principal, id: i64) -> Option<u64> {
    let id = u64::try_from(id)
        .ok()
        .filter(|&id| id < 1 << (63 - TAG_SHIFT))?;
    Some(id << 1 | u64::from(matches!(principal, Principal::ServiceAccount(_))))
}

fn grant_bits(grant: Option<ProjectRole>) -> u64 {
    match grant {
        None => 0,
        Some(ProjectRole::Viewer) => 1,
        Some(ProjectRole::Contributor) => 2,
        Some(ProjectRole::Owner) => 3,
    }
}

fn grant_of(bits: u64) -> Option<ProjectRole> {
    match bits & 3 {
        1 => Some(ProjectRole::Viewer),
        2 => Some(ProjectRole::Contributor),
        3 => Some(ProjectRole::Owner),
        _ => None,
    }
}

/// The workspace part of a project's name, `None` for a name without one (which
/// the storage path then refuses). A plain loop: names are short, and `memchr`'s
/// set-up costs more than the search.
fn workspace_of(project: &str) -> Option<&str> {
    let slash = project.bytes().position(|b| b == b'/')?;
    Some(&project[..slash])
}

impl FactsCache {
    pub(crate) fn new() -> Self {
        Self {
            principals: Cache::new(),
            projects: Cache::new(),
        }
    }

    /// The facts of `principal` on `project`, with every action's decision, when
    /// they were read under `stamp`; else what [`insert`](Self::insert) needs.
    pub(crate) fn get<'k>(
        &self,
        stamp: &ChangeStamp,
        principal: &Principal,
        project: &'k str,
        buffer: &'k mut [u8; 64],
    ) -> Result<Facts, Miss<'k>> {
        let Some(workspace) = workspace_of(project) else {
            return Err(Miss::Unkeyed);
        };
        let key = concat(&principal_key(principal, workspace), buffer);
        let principal_probe = self.principals.probe(key);
        let project_probe = self.projects.probe(project.as_bytes());
        let Some((tag, basis)) = self
            .principals
            .get_probed(stamp, &principal_probe, |e| (e.tag, e.standing))
        else {
            return Err(Miss::Keyed {
                principal: principal_probe,
                project: project_probe,
                known: None,
            });
        };
        let hit = self.projects.get_probed(stamp, &project_probe, |e| {
            let word = *e.known.iter().find(|&&w| w >> TAG_SHIFT == tag)?;
            Some(facts_of_word(word, basis, e.visibility))
        });
        hit.flatten().ok_or(Miss::Keyed {
            principal: principal_probe,
            project: project_probe,
            known: Some((tag, basis)),
        })
    }

    /// Remembers what storage answered for `principal` (row id `principal_id`) after
    /// `miss`: the caller read it under `stamp` and found the stamp unchanged after
    /// the read, so that every entry under one stamp is of one state.
    pub(crate) fn insert(
        &self,
        stamp: &ChangeStamp,
        miss: Miss<'_>,
        principal: &Principal,
        principal_id: i64,
        facts: Facts,
    ) {
        let (
            Miss::Keyed {
                principal: principal_probe,
                project: project_probe,
                known,
            },
            Some(tag),
        ) = (miss, tag(principal, principal_id))
        else {
            return;
        };
        let Facts {
            standing,
            visibility,
            ..
        } = facts;
        let basis = standing.with_grant(None);
        if known != Some((tag, basis)) {
            self.principals.upsert(stamp, &principal_probe, |_| {
                Some(PrincipalEntry {
                    key: Key::new(&principal_probe.key),
                    tag,
                    standing: basis,
                })
            });
        }
        let word = known_word(tag, standing, visibility);
        self.projects
            .upsert(stamp, &project_probe, |found| match found {
                Some(e) if e.visibility == visibility => {
                    if !e.known.iter().any(|&w| w >> TAG_SHIFT == tag) {
                        if e.known.len() >= MAX_KNOWN {
                            e.known.clear();
                        }
                        e.known.push(word);
                    }
                    None
                }
                _ => Some(ProjectEntry {
                    key: Key::new(&project_probe.key),
                    visibility,
                    known: SmallVec::from_slice(&[word]),
                }),
            });
    }
}

/// Why [`FactsCache::get`] had no answer, with what it had worked out already.
pub(crate) enum Miss<'k> {
    /// A project name without a workspace part: storage refuses it.
    Unkeyed,
    /// The entries looked for, and the principal's tag and standing if found.
    Keyed {
        principal: Probe<'k>,
        project: Probe<'k>,
        known: Option<(u64, Standing)>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::roles::WorkspaceRole;

    /// Every standing the rules distinguish, each with every grant.
    fn standings() -> Vec<Standing> {
        let grants = [
            None,
            Some(ProjectRole::Viewer),
            Some(ProjectRole::Contributor),
            Some(ProjectRole::Owner),
        ];
        let mut all = vec![Standing::Anonymous];
        for grant in grants {
            for workspace_role in [
                None,
                Some(WorkspaceRole::Member),
                Some(WorkspaceRole::Admin),
            ] {
                all.push(Standing::User {
                    workspace_role,
                    grant,
                });
            }
            for (active, in_workspace) in [(true, true), (true, false), (false, true)] {
                all.push(Standing::ServiceAccount {
                    active,
                    in_workspace,
                    grant,
                });
            }
        }
        all
    }

    #[test]
    fn a_known_word_carries_the_grant_and_exactly_the_decisions_of_decide() {
        for standing in standings() {
            for visibility in Visibility::ALL {
                let word = known_word(5, standing, visibility);
                let facts = facts_of_word(word, standing.with_grant(None), visibility);
                assert_eq!(word >> TAG_SHIFT, 5);
                assert_eq!(facts.standing, standing);
                for action in Action::ALL {
                    assert_eq!(
                        facts.permits(action),
                        decide(visibility, standing, action),
                        "{standing:?} {visibility:?} {action:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_user_and_a_service_account_of_the_same_row_id_have_two_tags() {
        let user: Principal = "alice".parse().expect("a user name");
        let account: Principal = "ci@ml-team".parse().expect("an account name");
        assert_ne!(tag(&user, 7), tag(&account, 7));
        assert_eq!(tag(&user, -1), None);
        assert_eq!(tag(&user, i64::MAX), None);
    }
}
