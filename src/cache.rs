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
//! Keyed by pairs instead, the standard workload's 200,000 checks filled about
//! 197,000 entries at either scale, and a warm check missed the CPU caches twice.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::domain::access::{Action, Standing, decide};
use crate::domain::principal::Principal;
use crate::domain::roles::{ProjectRole, Visibility};
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

/// A shard on cache lines of its own, so that two threads on two shards never write
/// the same line (128 bytes: the pair of lines the CPU's prefetcher fetches together).
#[repr(align(128))]
struct Padded<T>(T);

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

    /// `read` of the entry for `key`, if the entry was read under `stamp`.
    pub(crate) fn get<R>(
        &self,
        stamp: &ChangeStamp,
        key: &[u8],
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let hash = self.hash(key);
        let shard = self.shard(hash, stamp);
        shard.entries.find(hash, |e| e.key() == key).map(read)
    }

    /// Stores an entry read under `stamp` (the stamp taken before the read).
    pub(crate) fn insert(&self, stamp: &ChangeStamp, value: V) {
        let hash = self.hash(value.key());
        let mut shard = self.shard(hash, stamp);
        self.put(&mut shard, hash, value);
    }

    /// Changes the entry for `key` read under `stamp` in place, or stores the one
    /// `change` returns: `change` sees the entry there, if any, and returns a new
    /// entry to take its place, or `None` to keep it as changed.
    pub(crate) fn upsert(
        &self,
        stamp: &ChangeStamp,
        key: &[u8],
        change: impl FnOnce(Option<&mut V>) -> Option<V>,
    ) {
        let hash = self.hash(key);
        let mut shard = self.shard(hash, stamp);
        if let Some(value) = change(shard.entries.find_mut(hash, |e| e.key() == key)) {
            self.put(&mut shard, hash, value);
        }
    }

    fn put(&self, shard: &mut Shard<V>, hash: u64, value: V) {
        let key = value.key();
        if let Some(slot) = shard.entries.find_mut(hash, |e| e.key() == key) {
            *slot = value;
            return;
        }
        if shard.entries.len() >= MAX_PER_SHARD {
            shard.entries.clear();
        }
        shard
            .entries
            .insert_unique(hash, value, |e| self.hash(e.key()));
    }
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

/// [`decide`] of every action, one bit each.
fn decisions(standing: Standing, visibility: Visibility) -> u8 {
    Action::ALL
        .into_iter()
        .filter(|&action| decide(visibility, standing, action))
        .fold(0, |bits, action| bits | decision_bit(action))
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
    /// they were read under `stamp`.
    pub(crate) fn get(
        &self,
        stamp: &ChangeStamp,
        principal: &Principal,
        project: &str,
    ) -> Option<Facts> {
        let mut buffer = [0; 64];
        let key = concat(
            &principal_key(principal, workspace_of(project)?),
            &mut buffer,
        );
        let (tag, basis) = self.principals.get(stamp, &key, |e| (e.tag, e.standing))?;
        self.projects
            .get(stamp, project.as_bytes(), |e| {
                let word = *e.known.iter().find(|&&w| w >> TAG_SHIFT == tag)?;
                Some(Facts {
                    standing: basis.with_grant(grant_of(word >> GRANT_SHIFT)),
                    visibility: e.visibility,
                    decisions: Some(word as u8 & ((1 << DECISION_BITS) - 1)),
                })
            })
            .flatten()
    }

    /// Remembers what storage answered for `principal` (row id `principal_id`) on
    /// `project`: the caller read it under `stamp` and found the stamp unchanged
    /// after the read, so that every entry under one stamp is of one state.
    pub(crate) fn insert(
        &self,
        stamp: &ChangeStamp,
        principal: &Principal,
        principal_id: i64,
        project: &str,
        facts: Facts,
    ) {
        let Facts {
            standing,
            visibility,
            ..
        } = facts;
        let (Some(workspace), Some(tag)) = (workspace_of(project), tag(principal, principal_id))
        else {
            return;
        };
        let mut buffer = [0; 64];
        let key = concat(&principal_key(principal, workspace), &mut buffer);
        let basis = standing.with_grant(None);
        self.principals.upsert(stamp, &key, |found| match found {
            Some(e) if e.tag == tag && e.standing == basis => None,
            _ => Some(PrincipalEntry {
                key: Key::new(&key),
                tag,
                standing: basis,
            }),
        });
        let word = tag << TAG_SHIFT
            | grant_bits(standing.grant()) << GRANT_SHIFT
            | u64::from(decisions(standing, visibility));
        self.projects
            .upsert(stamp, project.as_bytes(), |found| match found {
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
                    key: Key::new(project.as_bytes()),
                    visibility,
                    known: SmallVec::from_slice(&[word]),
                }),
            });
    }
}
