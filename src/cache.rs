//! The never-stale decision cache (SPEC T4).
//!
//! Entries are the facts behind a decision (a principal's standing on a project and the
//! project's visibility) and what a token authenticates as. Each shard remembers the
//! [`ChangeStamp`] its entries were read under; a caller presents the stamp it read
//! *before* looking anything up, and a shard whose stamp differs is emptied first. A
//! commit by any connection of any process changes the stamp, so no entry survives a
//! commit: an answer from the cache is the answer SQL would give at that instant.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use crate::repo::store::ChangeStamp;

/// Enough shards that threads sharing an engine seldom meet on one lock.
const SHARDS: usize = 64;
/// Entries per shard before the shard is emptied: bounds memory at about 64 × 4,096
/// entries of a few dozen bytes each.
const MAX_PER_SHARD: usize = 4_096;

/// A sharded map from a 64-bit hash to entries that carry their own full key, so a
/// hash collision is a miss, never a wrong answer.
pub(crate) struct Cache<V> {
    shards: Vec<Mutex<Shard<V>>>,
    /// Randomly seeded per cache, so no one can choose keys that collide.
    hasher: foldhash::fast::RandomState,
}

struct Shard<V> {
    stamp: Option<ChangeStamp>,
    entries: HashMap<u64, V, BuildHasherDefault<Identity>>,
}

/// The map's keys are already seeded hashes: hashing them again would only cost time.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A cache entry's full key, inline when short (the common case, one allocation
/// fewer and one cache miss fewer per look-up), on the heap otherwise.
pub(crate) enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

/// 30 bytes hold the standard workload's keys (`u0042`, a NUL, `bench/p000042`: 19;
/// `sa03@bench`, a NUL, the project: 24) and make a [`Key`] 32 bytes, so that a slot of
/// the facts map is 48 bytes rather than 64: a quarter less memory for the look-up to
/// miss in.
const INLINE_KEY: usize = 30;

impl Key {
    /// The concatenation of `parts`.
    pub(crate) fn new(parts: &[&str]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            let mut at = 0;
            for p in parts {
                bytes[at..at + p.len()].copy_from_slice(p.as_bytes());
                at += p.len();
            }
            Key::Inline {
                len: len as u8,
                bytes,
            }
        } else {
            Key::Heap(parts.concat().into_bytes().into_boxed_slice())
        }
    }

    /// Whether this key is exactly the concatenation of `parts`, without building it.
    pub(crate) fn matches(&self, parts: &[&str]) -> bool {
        let mut rest = match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(bytes) => bytes,
        };
        for part in parts {
            match rest.strip_prefix(part.as_bytes()) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

impl<V> Cache<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        stamp: None,
                        entries: HashMap::default(),
                    })
                })
                .collect(),
            hasher: Default::default(),
        }
    }

    /// The hash of the concatenation of `parts` (empty parts may be left out). Two
    /// splittings of the same bytes may hash apart: that is a miss, never a wrong
    /// answer, since an entry is returned only when its full key matches.
    pub(crate) fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for part in parts {
            hasher.write(part);
        }
        hasher.finish()
    }

    fn shard(&self, hash: u64, stamp: &ChangeStamp) -> MutexGuard<'_, Shard<V>> {
        // Bits 32 and up pick the shard. The map inside takes its bucket from the low
        // bits and its tag from the top 7: had the shard been picked by the low bits,
        // every entry of a shard would share them and crowd into 1/64 of its buckets,
        // each look-up probing group after group.
        let mut shard = self.shards[((hash >> 32) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // INVARIANT: T4, entries read under another stamp are dropped before any answer.
        if shard.stamp.as_ref() != Some(stamp) {
            shard.entries.clear();
            shard.stamp = Some(*stamp);
        }
        shard
    }

    /// `read` of the entry for `hash`, if the entry was read under `stamp`; `read`
    /// returns `None` when the entry's full key is not the one looked for.
    pub(crate) fn get<R>(
        &self,
        stamp: &ChangeStamp,
        hash: u64,
        read: impl FnOnce(&V) -> Option<R>,
    ) -> Option<R> {
        let shard = self.shard(hash, stamp);
        shard.entries.get(&hash).and_then(read)
    }

    /// Stores an entry read under `stamp` (the stamp taken before the read).
    pub(crate) fn insert(&self, stamp: &ChangeStamp, hash: u64, value: V) {
        let mut shard = self.shard(hash, stamp);
        if shard.entries.len() >= MAX_PER_SHARD {
            shard.entries.clear();
        }
        shard.entries.insert(hash, value);
    }
}
