//! Token use, recorded in batches (T7).
//!
//! `authenticate`, `authorize` and the checks never write: they note a token's use in
//! memory when its stored `last_used_at` is a minute old or more. A background thread
//! writes the noted uses in one transaction at most once a minute, so a busy service
//! costs every other process's decision cache one invalidation a minute, not one per
//! call; dropping the [`Engine`](crate::Engine) writes what is left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::now_ms;
use crate::repo::store::Store;
use crate::repo::{Repository, TokenId};

/// How often, at most, a token's `last_used_at` is written, and how often, at most,
/// one process commits its batch of uses.
pub(crate) const RESOLUTION_MS: i64 = 60_000;
/// How often the background thread looks for a due batch.
const POLL: Duration = Duration::from_secs(1);

/// Uses noted since the last batch was written.
#[derive(Default)]
pub(crate) struct TokenUses {
    pending: Mutex<HashMap<TokenId, i64>>,
    /// When the last batch was written, Unix milliseconds; 0 before the first.
    last_flush: AtomicI64,
}

impl TokenUses {
    /// The recorder of an engine's store, with its background thread, which ends
    /// within [`POLL`] of the recorder being dropped.
    pub(crate) fn start(store: &Store) -> Arc<Self> {
        let uses = Arc::new(Self::default());
        let weak = Arc::downgrade(&uses);
        let writer = store.weak();
        // Without the thread, uses are still written when the engine is dropped.
        let _ = std::thread::Builder::new()
            .name("turnstile-token-uses".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(POLL);
                    let Some(uses) = weak.upgrade() else { return };
                    if uses.due(now_ms()) {
                        uses.flush(|batch| writer.write(|repo| record(repo, batch)));
                    }
                }
            });
        uses
    }

    /// Notes a use of `token` at `now`, unless the stored last use (`recorded`) is
    /// less than a minute old. Never writes.
    pub(crate) fn note(&self, token: TokenId, recorded: Option<i64>, now: i64) {
        if !due(recorded, now) {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.entry(token).or_insert(now);
    }

    /// The use of `token` noted in this process and not yet written.
    pub(crate) fn pending(&self, token: TokenId) -> Option<i64> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.get(&token).copied()
    }

    fn due(&self, now: i64) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        !pending.is_empty() && now - self.last_flush.load(Ordering::Relaxed) >= RESOLUTION_MS
    }

    /// Hands the noted uses to `write`, which stores them in one transaction (see
    /// [`record`]). Bookkeeping only: on failure the uses are kept for the next batch,
    /// and no caller sees the error.
    pub(crate) fn flush(&self, write: impl FnOnce(&HashMap<TokenId, i64>) -> crate::Result<()>) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return;
        }
        let written = write(&batch);
        self.last_flush.store(now_ms(), Ordering::Relaxed);
        if written.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (token, at) in batch {
                pending.entry(token).or_insert(at);
            }
        }
    }
}

/// Whether a use at `now` of a token whose stored last use is `recorded` is to be
/// noted: no use stored, or the stored one a minute old or more.
pub(crate) fn due(recorded: Option<i64>, now: i64) -> bool {
    recorded.is_none_or(|at| now - at >= RESOLUTION_MS)
}

/// Stores a batch of uses, inside the caller's transaction.
pub(crate) fn record(
    repo: &(impl Repository + ?Sized),
    batch: &HashMap<TokenId, i64>,
) -> crate::Result<()> {
    for (&token, &at) in batch {
        repo.touch_token(token, at)?;
    }
    Ok(())
}
