//! The never-stale decision cache (SPEC T4).
//!
//! Entries are the facts behind a decision (a principal's standing on a project and the
//! project's visibility) and what a token authenticates as. Each shard remembers the
//! [`ChangeStamp`] its entries were read under; a caller presents the stamp it read
//! *before* looking anything up, and a shard whose stamp differs is emptied first. A
//! commit by any connection of any process changes the stamp, so no entry survives a
//! commit: an answer from the cache is the answer SQL would give at that instant.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

use crate::repo::sqlite::ChangeStamp;

const SHARDS: usize = 16;
/// Entries per shard before the shard is emptied: bounds memory at about 16 × 16,384
/// entries of a few dozen bytes each.
const MAX_PER_SHARD: usize = 16_384;

/// A sharded map from a 64-bit hash to entries that carry their own full key, so a
/// hash collision is a miss, never a wrong answer.
pub(crate) struct Cache<V> {
    shards: Vec<Mutex<Shard<V>>>,
    hasher: std::collections::hash_map::RandomState,
}

struct Shard<V> {
    stamp: Option<ChangeStamp>,
    entries: HashMap<u64, V>,
}

impl<V> Cache<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        stamp: None,
                        entries: HashMap::new(),
                    })
                })
                .collect(),
            hasher: Default::default(),
        }
    }

    /// The hash of a key made of hashable parts.
    pub(crate) fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64, stamp: &ChangeStamp) -> MutexGuard<'_, Shard<V>> {
        let mut shard = self.shards[(hash as usize) % SHARDS]
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
