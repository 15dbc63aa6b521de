//! Token use, recorded in batches (T7).
//!
//! `authenticate`, `authorize` and the checks never write: they note a token's use in
//! memory when its stored `last_used_at` is a minute old or more. A background thread
//! writes the noted uses in one transaction at most once a minute, so a busy service
//! costs every other process's decision cache one invalidation a minute, not one per
//! call; dropping the [`Engine`](crate::Engine) writes what is left.
//!
//! The same thread keeps a coarse clock, so that the hot path asks the system clock
//! only when a use may be due: reading it costs about as much as hashing the token.

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
/// How often the background thread looks for a due batch and advances the coarse clock.
const POLL: Duration = Duration::from_secs(1);
/// How far the coarse clock may lag the system clock and still be trusted to say that
/// no use is due yet: two polls. A thread held up longer only delays the noting of
/// a use, which is then recorded a little late, never a decision.
const COARSE_SLACK_MS: i64 = 2_000;

/// Uses noted since the last batch was written.
#[derive(Default)]
pub(crate) struct TokenUses {
    pending: Mutex<HashMap<TokenId, i64>>,
    /// When the last batch was written, Unix milliseconds; 0 before the first.
    last_flush: AtomicI64,
    /// Unix milliseconds as last seen by the background thread, or 0 while no thread
    /// keeps it (then the system clock is read instead).
    coarse_now: AtomicI64,
}

impl TokenUses {
    /// The recorder of an engine's store, with its background thread, which ends
    /// within [`POLL`] of the recorder being dropped.
    pub(crate) fn start(store: &Store) -> Arc<Self> {
        let uses = Arc::new(Self::default());
        let weak = Arc::downgrade(&uses);
        let writer = store.weak();
        // Without the thread, uses are still written when the engine is dropped, and
        // the coarse clock stays 0, so the system clock is read on every use.
        let spawned = std::thread::Builder::new()
            .name("turnstile-token-uses".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(POLL);
                    let Some(uses) = weak.upgrade() else { return };
                    let now = now_ms();
                    uses.coarse_now.store(now, Ordering::Relaxed);
                    if uses.due(now) {
                        uses.flush(|batch| writer.write(|repo| record(repo, batch)));
                    }
                }
            });
        if spawned.is_ok() {
            uses.coarse_now.store(now_ms(), Ordering::Relaxed);
        }
        uses
    }

    /// `Some(now)` when a use now of a token whose stored last use is `recorded` is to
    /// be noted ([`due`]), `None` otherwise. Reads the system clock only when the
    /// coarse clock says the use may be due, that is about once a minute per token.
    pub(crate) fn due_now(&self, recorded: Option<i64>) -> Option<i64> {
        if let Some(at) = recorded {
            let coarse = self.coarse_now.load(Ordering::Relaxed);
            // The coarse clock lags by a poll or so: a use it calls not due by a margin
            // of COARSE_SLACK_MS is not due by the system clock either (unless the
            // thread was held up for longer, which only delays the note).
            if coarse != 0 && coarse + COARSE_SLACK_MS - at < RESOLUTION_MS {
                return None;
            }
        }
        let now = now_ms();
        due(recorded, now).then_some(now)
    }

    /// Notes a use of `token` now, unless the stored last use (`recorded`) is less
    /// than a minute old. Never writes.
    pub(crate) fn note(&self, token: TokenId, recorded: Option<i64>) {
        if let Some(now) = self.due_now(recorded) {
            self.note_at(token, now);
        }
    }

    /// Notes a use of `token` at `now`, which [`due_now`](Self::due_now) returned.
    pub(crate) fn note_at(&self, token: TokenId, now: i64) {
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
