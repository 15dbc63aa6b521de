//! Freshness of the decision cache on PostgreSQL (SPEC B3): one connection per engine
//! that LISTENs for the notification every commit sends, and a heartbeat that bounds
//! how late a commit can be heard.
//!
//! Every statement that changes a table a decision reads sends a notification on
//! [`CHANNEL`] (statement triggers in `schema_postgres.sql`), delivered when its
//! transaction commits. The listener counts them: the count is the change stamp the
//! decision cache compares (as it compares SQLite's WAL-index header), so an entry read
//! before a change that the listener has heard is never used after it.
//!
//! A notification is heard a little after its commit, so the cache could answer from
//! an entry that a commit on another machine has just made stale. The heartbeat bounds
//! that: the listener notifies its own channel every quarter of the bound and notes
//! when each heartbeat was *sent* once it comes back. PostgreSQL delivers the
//! notifications of different transactions in the order they committed, so when a
//! heartbeat sent at instant `s` comes back, every commit completed before `s` has
//! been heard. A stamp is given out only while the last returned heartbeat was sent
//! less than the bound ago; otherwise (a slow or lost connection, a stalled server)
//! decisions read the database. So an answer from memory at instant `t` reflects every
//! commit completed before `t - bound`: the bound holds by construction, whatever the
//! network does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::postgres::Client;
use ::postgres::fallible_iterator::FallibleIterator;

use super::store::{ChangeStamp, STAMP_WORDS};

/// The channel every change is notified on.
pub(crate) const CHANNEL: &str = "turnstile_changes";

/// The shortest bound accepted: a heartbeat every quarter of it must stay cheap.
pub(crate) const MIN_BOUND: Duration = Duration::from_millis(4);

/// What the listener thread and the engine's readers share.
struct Shared {
    /// Changes heard since the listener started, plus one for every (re)connection,
    /// since changes made while no connection listened were not heard.
    generation: AtomicU64,
    /// When the last returned heartbeat was sent, in nanoseconds since `base`; 0
    /// until one has come back on the current connection.
    confirmed: AtomicU64,
    base: Instant,
    bound: Duration,
    stop: AtomicBool,
}

impl Shared {
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// The listener of one engine. Dropping it stops its thread.
pub(crate) struct Listener {
    shared: Arc<Shared>,
    /// Closed by the thread when it ends.
    ended: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Listener {
    /// Starts listening on connections made by `connect`; stamps are given out only
    /// while every commit older than `bound` is known to have been heard.
    pub(crate) fn start(
        bound: Duration,
        connect: impl Fn() -> crate::error::Result<Client> + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            base: Instant::now(),
            bound: bound.max(MIN_BOUND),
            stop: AtomicBool::new(false),
        });
        let (ending, ended) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("turnstile-listen".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    listen(&shared, &connect);
                    drop(ending);
                }
            })?;
        Ok(Self {
            shared,
            ended: std::sync::Mutex::new(ended),
        })
    }

    /// The change stamp, or `None` while the listener cannot vouch for every commit
    /// older than the bound (not yet connected, or no heartbeat back in time).
    pub(crate) fn stamp(&self) -> Option<ChangeStamp> {
        let shared = &*self.shared;
        // Acquire: every change the listener counted before it confirmed this
        // heartbeat is seen by the load of `generation` below.
        let confirmed = shared.confirmed.load(Ordering::Acquire);
        if confirmed == 0 {
            return None;
        }
        let now = shared.nanos(Instant::now());
        if now.saturating_sub(confirmed) >= bound_nanos(shared.bound) {
            return None;
        }
        let generation = shared.generation.load(Ordering::Acquire);
        let mut stamp = [0u32; STAMP_WORDS];
        stamp[0] = generation as u32;
        stamp[1] = (generation >> 32) as u32;
        Some(stamp)
    }
}

impl Drop for Listener {
    /// Stops the thread, and waits a moment for it to close its connection; a thread
    /// held up connecting to a server that does not answer is left to end on its own.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Ok(ended) = self.ended.get_mut() {
            let _ = ended.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// How long a heartbeat may stay out before the connection is given up.
pub(crate) fn reconnect_after(bound: Duration) -> Duration {
    (bound * 10).max(Duration::from_secs(10))
}

fn bound_nanos(bound: Duration) -> u64 {
    u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX)
}

/// The listener thread: connects, listens, and reconnects after any failure until
/// the engine is dropped.
fn listen(shared: &Shared, connect: &dyn Fn() -> crate::error::Result<Client>) {
    let heartbeat = shared.bound / 4;
    // The thread looks at `stop` at least this often.
    let poll = heartbeat.min(Duration::from_millis(50));
    let mut failures = 0u32;
    while !shared.stop.load(Ordering::Acquire) {
        match connect() {
            Ok(mut client) => {
                failures = 0;
                let _ = listen_on(shared, &mut client, heartbeat, poll);
            }
            Err(_) => {
                // A server that is down is asked again at most once a second.
                failures = failures.saturating_add(1);
                let wait = (poll * failures).min(Duration::from_secs(1));
                let until = Instant::now() + wait;
                while Instant::now() < until && !shared.stop.load(Ordering::Acquire) {
                    std::thread::sleep(poll.min(until - Instant::now()));
                }
            }
        }
        // Whatever was heard on the lost connection vouches for nothing now.
        shared.confirmed.store(0, Ordering::Release);
    }
}

fn listen_on(
    shared: &Shared,
    client: &mut Client,
    heartbeat: Duration,
    poll: Duration,
) -> Result<(), ::postgres::Error> {
    // Each listener beats on a channel of its own, so that engines do not hear each
    // other's heartbeats.
    let beat_channel = format!("turnstile_heartbeat_{:016x}", rand::random::<u64>());
    client.batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {beat_channel}"))?;
    // Changes committed while no connection listened were not heard.
    shared.generation.fetch_add(1, Ordering::Release);
    let mut beat: u64 = 0;
    // The heartbeat in flight: its number and when it was sent.
    let mut in_flight: Option<(u64, Instant)> = None;
    let mut next_beat = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= next_beat && in_flight.is_none() {
            beat += 1;
            in_flight = Some((beat, now));
            client.batch_execute(&format!("NOTIFY {beat_channel}, '{beat}'"))?;
            next_beat = now + heartbeat;
        }
        let wait = next_beat
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), poll);
        {
            let mut notifications = client.notifications();
            let mut heard = notifications.timeout_iter(wait);
            while let Some(note) = heard.next()? {
                if note.channel() == CHANNEL {
                    shared.generation.fetch_add(1, Ordering::Release);
                } else if let Some((number, sent)) = in_flight
                    && note.payload() == number.to_string()
                {
                    // Release: the changes counted above are seen by whoever sees this.
                    shared
                        .confirmed
                        .store(shared.nanos(sent), Ordering::Release);
                    in_flight = None;
                }
                if Instant::now() >= next_beat {
                    break;
                }
            }
        }
        if client.is_closed() {
            return Ok(());
        }
        // A heartbeat that does not come back means a connection that is gone
        // without saying so: make a new one.
        if in_flight.is_some_and(|(_, sent)| sent.elapsed() > reconnect_after(shared.bound)) {
            return Ok(());
        }
    }
    Ok(())
}
