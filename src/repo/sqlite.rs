//! The SQLite implementation of [`Repository`], and the connections it runs on.
//!
//! One writer connection behind a mutex takes every write transaction, begun with
//! `BEGIN IMMEDIATE` so two writers never deadlock on a lock upgrade. Reads take a
//! connection from a small pool, so readers never wait on each other or on the
//! writer (WAL). An in-memory database has a single connection for both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior, params};

use super::mapped::MappedWords;
use super::*;
use crate::audit::Outcome;
use crate::domain::access::Standing;
use crate::domain::names::fold;
use crate::error::Error;
use crate::padded::Padded;

/// The schema, applied whole to a new database (D1).
pub(crate) const SCHEMA: &str = include_str!("../../schema.sql");
/// The schema version this build writes; `PRAGMA user_version` holds it.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// One step of a migration: SQL, or Rust where the new values need the domain's
/// functions (name keys, for instance).
enum Upgrade {
    Sql(&'static str),
    Rust(fn(&Connection) -> Result<()>),
}

/// `UPGRADES[n - 1]` brings version `n` to version `n + 1`, in order; a new database
/// (version 0) gets [`SCHEMA`] whole instead.
const UPGRADES: [&[Upgrade]; SCHEMA_VERSION as usize - 1] = [
    // 1 -> 2: project names in NFC, keyed by Unicode caseless matching (N3), with
    // their skeletons (N7); audit actor and target keys (L2); the server's signing
    // keys (H4).
    &[
        Upgrade::Sql(
            "ALTER TABLE projects ADD COLUMN name_skeleton TEXT NOT NULL DEFAULT '';
             ALTER TABLE audit_events ADD COLUMN actor_key TEXT NOT NULL DEFAULT '';
             ALTER TABLE audit_events ADD COLUMN target_key TEXT NOT NULL DEFAULT '';",
        ),
        Upgrade::Rust(rekey_project_names),
        Upgrade::Rust(key_audit_events),
        Upgrade::Sql(
            "CREATE INDEX projects_by_skeleton ON projects (workspace_id, name_skeleton);
             CREATE TABLE signing_keys (
                id          INTEGER PRIMARY KEY,
                secret      BLOB    NOT NULL CHECK (length(secret) = 32),
                created_at  INTEGER NOT NULL
            );",
        ),
    ],
    // 2 -> 3: the check's covering index.
    &[Upgrade::Sql(
        "CREATE INDEX projects_by_name ON projects (workspace_id, name_key, visibility);",
    )],
];

/// Rewrites every project's name in NFC and recomputes its `name_key` (N3) and
/// `name_skeleton` (N7). Refuses, with both names, a database in which two names of
/// one workspace now fold alike: the owner must rename one with the old turnstile
/// first. Look-alikes already there are kept: N7 checks only new names.
fn rekey_project_names(conn: &Connection) -> Result<()> {
    let mut seen: HashMap<(i64, String), String> = HashMap::new();
    let mut rows = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT p.id, p.workspace_id, w.name, p.name FROM projects p JOIN workspaces w ON w.id = p.workspace_id")?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let (id, ws, ws_name, stored): (i64, i64, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let name = ProjectName::from_legacy(&stored);
            if let Some(other) = seen.insert((ws, name.key().to_owned()), stored.clone()) {
                return Err(std::io::Error::other(format!(
                    "cannot upgrade the database: projects `{ws_name}/{other}` and `{ws_name}/{stored}` \
                     now have the same name (SPEC N3 compares names by Unicode case folding); \
                     rename one of them with the previous turnstile version, then open the database again"
                ))
                .into());
            }
            rows.push((id, name));
        }
    }
    // Two passes, so that a key moving to a value another row still holds never
    // breaks the UNIQUE constraint midway.
    conn.execute("UPDATE projects SET name_key = '\u{1}' || id", [])?;
    let mut update = conn.prepare(
        "UPDATE projects SET name = ?2, name_key = ?3, name_skeleton = ?4 WHERE id = ?1",
    )?;
    for (id, name) in rows {
        update.execute(params![id, name.as_str(), name.key(), name.skeleton()])?;
    }
    Ok(())
}

/// Fills the audit filters' keys (L2) of the events written before version 2. The
/// append-only trigger is lifted for this one update and put back as it was, in the
/// same transaction.
fn key_audit_events(conn: &Connection) -> Result<()> {
    let trigger: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_update'",
        [],
        |r| r.get(0),
    )?;
    conn.execute_batch("DROP TRIGGER audit_events_no_update")?;
    {
        let mut stmt = conn.prepare("SELECT id, actor, target FROM audit_events")?;
        let mut update =
            conn.prepare("UPDATE audit_events SET actor_key = ?2, target_key = ?3 WHERE id = ?1")?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let (id, actor, target): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            update.execute(params![id, fold(&actor), fold(&target)])?;
        }
    }
    conn.execute_batch(&trigger)?;
    Ok(())
}
/// How long a call waits for another writer before giving up (D2), unless the
/// engine's options say otherwise. Long, because callers must never see `SQLITE_BUSY`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// The write-ahead log is truncated to this size once it has been checkpointed (D6).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How a [`Store`] opens its database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOptions {
    /// How long a write waits for another writer before failing with `Busy`.
    pub busy_timeout: Duration,
    /// Open for reading only: no file is created or changed, and every write fails.
    pub read_only: bool,
}

/// Read connections kept for reuse, at most: one per thread for up to this many threads.
const READER_SLOTS: usize = 8;

/// The connections of one database.
pub(crate) struct Store {
    writer: Arc<Mutex<Connection>>,
    options: OpenOptions,
    /// `None` for an in-memory database, whose reads use the writer.
    readers: Option<Arc<ReaderPool>>,
}

/// A value that changes whenever any connection of any process commits to the
/// database: see [`ChangeProbe`]. The WAL-index header's first copy (12 words), then
/// the database header's file change counter.
pub(crate) type ChangeStamp = [u32; STAMP_WORDS];

const HEADER_WORDS: usize = 12;
pub(crate) const STAMP_WORDS: usize = HEADER_WORDS + 1;
/// The database header's file change counter: bytes 24..28, word 6.
const CHANGE_COUNTER_WORD: usize = 6;

/// Tells, without a lock and without a system call, whether anything was committed to
/// the database since a [`ChangeStamp`] was taken: the basis of the never-stale cache (T4).
///
/// In WAL mode every commit rewrites the WAL-index header at the start of the `-shm`
/// file (SQLite's documented "WAL-index format": 48 bytes written twice, the second copy
/// first, holding `iChange`, a counter incremented by every transaction, and `mxFrame`).
/// A stamp is both copies compared equal, followed by the database header's file change
/// counter (offset 24), which every commit in rollback-journal mode increments, so that
/// a foreign tool switching the file out of WAL mode cannot make the cache stale either.
/// Unequal copies (a header being written) yield no stamp, and the caller goes to SQL.
///
/// The words are read through read-only shared memory maps of the two files
/// ([`MappedWords`]), as SQLite reads the `-shm` itself; where a file cannot be mapped
/// the probe falls back to two `pread`s. A mapped file must not shrink below the
/// mapped words while the probe is read (an access past its end is `SIGBUS`). It does
/// not: a probe is read only through an open [`Store`], whose connections hold SQLite's
/// shared "dead man switch" lock on the `-shm` for as long as they are open, and only the
/// holder of that lock exclusively (the first connection of all, or the last to close)
/// truncates or deletes the `-shm`; the database file never shrinks below its first
/// page. A `-shm` deleted and recreated by SQLite is a new file, and the probe of the old
/// one is retired (see [`ChangeProbe::of`]) rather than read.
pub(crate) struct ChangeProbe {
    db: std::fs::File,
    shm: std::fs::File,
    /// The `-shm` file this probe reads.
    shm_id: FileId,
    /// The first [`HEADER_WORDS`] * 2 words of `shm` and the first words of `db`, when
    /// both could be mapped.
    mapped: Option<(MappedWords, MappedWords)>,
}

/// Every probe this process opened, by the database file's device and inode, and the
/// probes it retired. Never closed: closing any descriptor of a file drops every POSIX
/// lock the process holds on it, SQLite's included ("How To Corrupt An SQLite
/// Database", 2.2), so a probe's descriptors stay open for the life of the process.
static PROBES: Mutex<Option<Probes>> = Mutex::new(None);

#[derive(Default)]
struct Probes {
    current: HashMap<FileId, Arc<ChangeProbe>>,
    retired: Vec<Arc<ChangeProbe>>,
}

/// A file's device and inode numbers.
type FileId = (u64, u64);

fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl ChangeProbe {
    /// The probe of the database at `path`, which the caller holds open in WAL mode.
    /// SQLite deletes the `-shm` file when the last connection of the last process
    /// closes; a probe still reading a deleted `-shm` would never see a change again,
    /// so a probe made for an earlier `-shm` is retired and a new one opened. While
    /// the caller's connection is open, the `-shm` it checked cannot be replaced.
    fn of(path: &Path) -> Result<Arc<Self>> {
        // SQLite resolves symbolic links and keeps `-shm` beside the real file.
        let path = std::fs::canonicalize(path)?;
        let mut shm_path = path.as_os_str().to_owned();
        shm_path.push("-shm");
        let db_id = file_id(&std::fs::metadata(&path)?);
        let shm_id = file_id(&std::fs::metadata(&shm_path)?);
        let mut probes = lock(&PROBES);
        let probes = probes.get_or_insert_with(Probes::default);
        if let Some(probe) = probes.current.get(&db_id)
            && probe.shm_id == shm_id
        {
            return Ok(probe.clone());
        }
        let shm = std::fs::File::open(&shm_path)?;
        let db = std::fs::File::open(&path)?;
        let mapped = MappedWords::new(&shm, 2 * HEADER_WORDS)
            .and_then(|shm| Ok((shm, MappedWords::new(&db, CHANGE_COUNTER_WORD + 1)?)))
            .ok();
        let probe = Arc::new(Self {
            db,
            shm_id: file_id(&shm.metadata()?),
            shm,
            mapped,
        });
        if let Some(old) = probes.current.insert(db_id, probe.clone()) {
            probes.retired.push(old);
        }
        Ok(probe)
    }

    /// The current stamp, or `None` if it cannot be read consistently right now.
    pub(crate) fn stamp(&self) -> Option<ChangeStamp> {
        let mut stamp = [0u32; STAMP_WORDS];
        if let Some((shm, db)) = &self.mapped {
            // SQLite's reader order: the first copy, then the second; its writer stores
            // the second, then the first, so equal copies are one whole header.
            use std::sync::atomic::Ordering::Acquire;
            let (first, second) = shm.words().split_at(HEADER_WORDS);
            for (word, mapped) in stamp.iter_mut().zip(first) {
                *word = mapped.load(Acquire);
            }
            if stamp.iter().zip(second).any(|(w, m)| *w != m.load(Acquire)) {
                return None;
            }
            stamp[HEADER_WORDS] = db.words()[CHANGE_COUNTER_WORD].load(Acquire);
            return Some(stamp);
        }
        use std::os::unix::fs::FileExt;
        let mut header = [0u8; 8 * HEADER_WORDS];
        self.shm.read_exact_at(&mut header, 0).ok()?;
        if header[..4 * HEADER_WORDS] != header[4 * HEADER_WORDS..] {
            return None;
        }
        let word = |b: &[u8]| u32::from_ne_bytes(b.try_into().expect("4 bytes"));
        for (i, chunk) in header[..4 * HEADER_WORDS].chunks_exact(4).enumerate() {
            stamp[i] = word(chunk);
        }
        let mut counter = [0u8; 4];
        self.db
            .read_exact_at(&mut counter, 4 * CHANGE_COUNTER_WORD as u64)
            .ok()?;
        stamp[HEADER_WORDS] = word(&counter);
        Some(stamp)
    }
}

struct ReaderPool {
    path: PathBuf,
    options: OpenOptions,
    /// Pooled readers, one per slot. A thread starts at a slot of its own (see
    /// [`home_slot`]) and so, while there are no more threads than slots, always gets
    /// back the connection it used last: no lock shared with another thread, and the
    /// connection's memory still in this core's caches.
    slots: Box<[Padded<Mutex<Option<Reader>>>]>,
    probe: Arc<ChangeProbe>,
    /// Whether idle readers may keep their snapshot: only while the janitor runs.
    keep_snapshots: std::sync::atomic::AtomicBool,
}

/// How often the janitor ends the stale snapshots of idle readers. An open snapshot
/// keeps the checkpointer from copying later commits into the database file, so this
/// bounds how long an idle reader can hold the log back: a commit by any process is
/// followed within this period by the release of every idle reader's older snapshot.
const JANITOR_PERIOD: Duration = Duration::from_millis(50);
/// The janitor looks at the log's size every this many periods (one second).
const WAL_CHECK_TICKS: u64 = 20;

/// D6: once no reader holds it back, a log grown past [`WAL_SIZE_LIMIT`] is
/// checkpointed and truncated, even if no later commit comes to do it. Never waits:
/// if a writer or a reader is in the way, the next look tries again.
fn shrink_log(wal: &Path, writer: &WeakWriter, options: OpenOptions) {
    let oversized = std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_SIZE_LIMIT as u64);
    let Some(writer) = oversized.then(|| writer.0.upgrade()).flatten() else {
        return;
    };
    let Ok(conn) = writer.try_lock() else { return };
    if conn.busy_timeout(Duration::ZERO).is_ok() {
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    let _ = conn.busy_timeout(options.busy_timeout);
}

/// A pooled read connection. Between calls it may keep a read transaction open,
/// together with the [`ChangeStamp`] read just before that transaction began: while the
/// stamp is unchanged, nothing has been committed since, the open snapshot is the
/// current state, and a check reuses it without taking SQLite's file locks again.
struct Reader {
    conn: Connection,
    snapshot: Option<ChangeStamp>,
}

impl Reader {
    /// Ends the open read transaction, if any.
    fn release(&mut self) -> Result<()> {
        self.snapshot = None;
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-written change: the
    // transaction is rolled back when dropped. The connection is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    pub(crate) fn open(path: &Path, options: OpenOptions) -> Result<Self> {
        refuse_non_regular(path, options.read_only)?;
        if options.read_only {
            return Self::open_read_only(path, options);
        }
        Self::open_writable(path, options).map_err(|e| match e {
            Error::Storage(cause) if is_cant_open_cause(&cause) => std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "cannot open database `{}` for writing (is its directory read-only?): {cause}",
                    path.display()
                ),
            )
            .into(),
            e => e,
        })
    }

    fn open_writable(path: &Path, options: OpenOptions) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(options.busy_timeout)?;
        // D1: refuse a newer database before anything writes to it, WAL mode included.
        refuse_newer(&conn)?;
        enable_wal(&conn, options.busy_timeout)?;
        configure(&conn, options)?;
        // The writer alone gets a large page cache, so that a bulk import does not
        // spill half-written pages into the log mid-transaction; `checkpoint` gives
        // the memory back afterwards.
        conn.pragma_update(None, "cache_size", -32 * 1024)?;
        migrate(&conn)?;
        let writer = Arc::new(Mutex::new(conn));
        let readers = ReaderPool::start(path, options, WeakWriter(Arc::downgrade(&writer)))?;
        Ok(Self {
            writer,
            options,
            readers: Some(readers),
        })
    }

    /// A store that only reads: it creates nothing beside the file (a read-only
    /// directory is fine) and never migrates. Reads take a fresh transaction each
    /// time, since there is no janitor to end kept ones.
    fn open_read_only(path: &Path, options: OpenOptions) -> Result<Self> {
        if !path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("database `{}` does not exist", path.display()),
            )
            .into());
        }
        // D1: a newer file is refused before SQLite opens it, since a read-only
        // connection to a WAL database leaves its `-wal` and `-shm` files behind.
        if !has_log(path)
            && let Some(found) = header_user_version(path)
            && found > SCHEMA_VERSION
        {
            return Err(Error::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let conn = match open_connection(path, options).and_then(|c| {
            user_version(&c)?;
            Ok(c)
        }) {
            Ok(conn) => conn,
            // A WAL database whose `-shm` is gone (its last writer closed cleanly) in a
            // directory this process cannot write: SQLite cannot make the shared-memory
            // file it reads through. With no log either, the file alone is the whole
            // database, and it is read as an immutable file.
            Err(e) if is_cant_open(&e) && !has_log(path) => open_immutable(path, options)?,
            Err(e) => return Err(e),
        };
        refuse_newer(&conn)?;
        let found = user_version(&conn)?;
        if found < SCHEMA_VERSION {
            return Err(Error::SchemaNeedsUpgrade {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Self {
            writer: Arc::new(Mutex::new(conn)),
            options,
            readers: None,
        })
    }

    /// The change probe of a file database; `None` in memory.
    pub(crate) fn probe(&self) -> Option<Arc<ChangeProbe>> {
        self.readers.as_ref().map(|pool| pool.probe.clone())
    }

    pub(crate) fn open_in_memory() -> Result<Self> {
        let options = OpenOptions {
            busy_timeout: BUSY_TIMEOUT,
            read_only: false,
        };
        let conn = Connection::open_in_memory()?;
        configure(&conn, options)?;
        migrate(&conn)?;
        Ok(Self {
            writer: Arc::new(Mutex::new(conn)),
            options,
            readers: None,
        })
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`), committed only if `f`
    /// succeeds. An early `?` in `f` drops the transaction, which rolls back (E3).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&SqliteRepo<'_>) -> Result<T>) -> Result<T> {
        if self.options.read_only {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the database was opened read-only",
            )
            .into());
        }
        write_on(&self.writer, f)
    }

    /// [`write`](Self::write), waiting at most `wait` for another process's writer:
    /// for bookkeeping that must not hold up its caller (the last token uses written
    /// when an engine is dropped).
    pub(crate) fn write_within<T>(
        &self,
        wait: Duration,
        f: impl FnOnce(&SqliteRepo<'_>) -> Result<T>,
    ) -> Result<T> {
        if self.options.read_only {
            return self.write(f);
        }
        lock(&self.writer).busy_timeout(wait)?;
        let out = write_on(&self.writer, f);
        lock(&self.writer).busy_timeout(self.options.busy_timeout)?;
        out
    }

    /// A handle to the writer for a background thread, which must not keep the
    /// database open once the engine is dropped.
    pub(crate) fn weak_writer(&self) -> WeakWriter {
        WeakWriter(Arc::downgrade(&self.writer))
    }

    /// Copies the write-ahead log into the database file, so that reads after a bulk
    /// load find pages in the file (and its memory map) rather than searching the log.
    /// Passive: it copies what no reader's snapshot still needs and never waits, so it
    /// can neither block writers nor fail a call.
    pub(crate) fn checkpoint(&self) {
        if let Some(pool) = &self.readers {
            pool.release_idle();
            let conn = lock(&self.writer);
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            let _ = conn.execute_batch("PRAGMA shrink_memory");
        }
    }

    /// Runs `f` in one read transaction: a consistent snapshot, not blocking writers.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&SqliteRepo<'_>) -> Result<T>) -> Result<T> {
        let Some(pool) = &self.readers else {
            return read_in(&lock(&self.writer), f);
        };
        pool.with_reader(|reader| {
            reader.release()?;
            read_in(&reader.conn, f)
        })
    }

    /// Runs `f`, a single statement, on the current state of the database. On a file
    /// database it runs in a read transaction kept open from earlier calls while no
    /// commit has happened since (see [`Reader`]), else in a new one.
    pub(crate) fn with_connection<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(pool) = &self.readers else {
            return f(&lock(&self.writer));
        };
        pool.with_reader(|reader| {
            // INVARIANT: T4, the stamp is read before the snapshot it vouches for is
            // taken, so an unchanged stamp proves that no commit came after the snapshot.
            let now = pool.probe.stamp();
            if reader.snapshot.is_none() || reader.snapshot != now {
                reader.release()?;
                if let Some(now) = now {
                    reader.conn.execute_batch("BEGIN")?;
                    reader.snapshot = Some(now);
                }
            }
            let out = f(&reader.conn);
            if out.is_err() {
                // An error may have ended the transaction; start afresh next time.
                let _ = reader.release();
            }
            out
        })
    }
}

/// The writer connection of a [`Store`], held weakly by a background thread.
pub(crate) struct WeakWriter(std::sync::Weak<Mutex<Connection>>);

impl WeakWriter {
    /// [`Store::write`], or an error once the store is gone.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&SqliteRepo<'_>) -> Result<T>) -> Result<T> {
        let writer = self
            .0
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the database was closed"))?;
        write_on(&writer, f)
    }
}

/// One write transaction on `writer`. Waiting for another process's writer past the
/// busy timeout is `Busy { waited }`, never a raw storage error (D2).
fn write_on<T>(
    writer: &Mutex<Connection>,
    f: impl FnOnce(&SqliteRepo<'_>) -> Result<T>,
) -> Result<T> {
    let mut conn = lock(writer);
    let started = std::time::Instant::now();
    let busy = |e: rusqlite::Error| {
        if is_busy(&e) {
            Error::Busy {
                waited: started.elapsed(),
            }
        } else {
            Error::from(e)
        }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(busy)?;
    let out = f(&SqliteRepo { conn: &tx })?;
    tx.commit().map_err(busy)?;
    Ok(out)
}

/// D6: a path that exists and is not a regular file (a directory, a device, a FIFO,
/// a socket; a symbolic link is followed) is refused before SQLite creates anything
/// beside it. A missing path is fine, unless the store is to be read-only.
fn refuse_non_regular(path: &Path, read_only: bool) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => {
            let what = if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("database path `{}` is {what}", path.display()),
            )
            .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !read_only => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn read_in<T>(conn: &Connection, f: impl FnOnce(&SqliteRepo<'_>) -> Result<T>) -> Result<T> {
    let tx = conn.unchecked_transaction()?;
    let out = f(&SqliteRepo { conn: &tx })?;
    tx.finish()?;
    Ok(out)
}

impl ReaderPool {
    /// A pool for the database at `path`, with its janitor thread, which ends when the
    /// pool is dropped.
    fn start(path: &Path, options: OpenOptions, writer: WeakWriter) -> Result<Arc<Self>> {
        let pool = Arc::new(Self {
            path: path.to_owned(),
            options,
            slots: (0..READER_SLOTS)
                .map(|_| Padded(Mutex::new(None)))
                .collect(),
            probe: ChangeProbe::of(path)?,
            keep_snapshots: std::sync::atomic::AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&pool);
        let wal = {
            let mut wal = std::fs::canonicalize(path)?.into_os_string();
            wal.push("-wal");
            PathBuf::from(wal)
        };
        let janitor = std::thread::Builder::new()
            .name("turnstile-readers".into())
            .spawn(move || {
                for tick in 1u64.. {
                    std::thread::sleep(JANITOR_PERIOD);
                    let Some(pool) = weak.upgrade() else { return };
                    pool.release_stale();
                    if tick % WAL_CHECK_TICKS == 0 {
                        shrink_log(&wal, &writer, options);
                    }
                }
            });
        // Without a janitor, readers end their snapshot at the end of every call.
        pool.keep_snapshots
            .store(janitor.is_ok(), std::sync::atomic::Ordering::Relaxed);
        Ok(pool)
    }

    /// Ends the snapshots of idle readers that a commit has made stale.
    fn release_stale(&self) {
        let now = self.probe.stamp();
        self.for_each_idle(|reader| {
            if now.is_none() || reader.snapshot != now {
                let _ = reader.release();
            }
        });
    }

    /// `f` on every pooled reader not in use (a slot in use is locked by its call).
    fn for_each_idle(&self, mut f: impl FnMut(&mut Reader)) {
        for slot in &self.slots {
            if let Some(mut idle) = try_lock(&slot.0)
                && let Some(reader) = idle.as_mut()
            {
                f(reader);
            }
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&mut Reader) -> Result<T>) -> Result<T> {
        let home = home_slot();
        let free = (0..self.slots.len())
            .find_map(|i| try_lock(&self.slots[(home + i) % self.slots.len()].0));
        let Some(mut slot) = free else {
            // Every slot is in use: a connection for this call alone.
            return f(&mut self.open_reader()?);
        };
        let mut reader = match slot.take() {
            Some(reader) => reader,
            None => self.open_reader()?,
        };
        let out = f(&mut reader);
        if !self
            .keep_snapshots
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let _ = reader.release();
        }
        // A reader left inside a transaction it does not account for is dropped, not
        // pooled, so that no later call inherits it.
        if reader.snapshot.is_some() || reader.conn.is_autocommit() {
            *slot = Some(reader);
        }
        out
    }

    fn open_reader(&self) -> Result<Reader> {
        Ok(Reader {
            conn: open_connection(&self.path, self.options)?,
            snapshot: None,
        })
    }

    /// Ends the read transactions of idle connections, so that none pins the log.
    fn release_idle(&self) {
        self.for_each_idle(|reader| {
            let _ = reader.release();
        });
    }
}

/// The pool slot a thread tries first: threads are handed slots in turn.
fn home_slot() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static HOME: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    HOME.with(|home| *home)
}

/// The lock if free now; a poisoned lock is taken like a free one (see [`lock`]).
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Whether an error is SQLite's "busy" or "locked", which waiting can cure.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Puts the database in WAL mode (D2). Switching a file's journal mode needs it to
/// itself, and SQLite reports `SQLITE_BUSY` at once rather than waiting out the busy
/// timeout, so when several processes open a new file together the switch is retried,
/// with backoff, until one of them has made it or [`BUSY_TIMEOUT`] passes.
fn enable_wal(conn: &Connection, busy_timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let mode = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                }
            });
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(std::io::Error::other(format!(
                    "the database refused WAL mode (journal mode `{mode}`)"
                ))
                .into());
            }
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_cant_open(e: &Error) -> bool {
    matches!(e, Error::Storage(cause) if is_cant_open_cause(cause))
}

fn is_cant_open_cause(cause: &crate::error::StorageError) -> bool {
    matches!(&cause.0, crate::error::StorageCause::Sqlite(e)
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen))
}

/// The `user_version` in the database file's header (offset 60, big-endian), which is
/// the current one when the log is empty; `None` for a file that is not a database.
fn header_user_version(path: &Path) -> Option<i64> {
    use std::io::Read;
    let mut header = [0u8; 64];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    header.starts_with(b"SQLite format 3\0").then(|| {
        i64::from(i32::from_be_bytes(
            header[60..64].try_into().expect("4 bytes"),
        ))
    })
}

/// Whether the database has a write-ahead log with anything in it.
fn has_log(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// A read-only connection that reads the file as it is and takes no lock: only for a
/// database with no log, in a directory no one can write (see [`Store::open_read_only`]).
fn open_immutable(path: &Path, options: OpenOptions) -> Result<Connection> {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn, options)?;
    Ok(conn)
}

/// A connection to an existing database: a pooled reader, or a read-only store's only one.
fn open_connection(path: &Path, options: OpenOptions) -> Result<Connection> {
    let access = if options.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    configure(&conn, options)?;
    Ok(conn)
}

fn configure(conn: &Connection, options: OpenOptions) -> Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    // D6: once checkpointed, the log is cut back to this size rather than kept at
    // whatever size a reader holding it back let it grow to.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Reads straight from the mapped file instead of copying pages into the cache.
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    // Statement journals (triggers, upserts) in memory, not in temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Without the planner stability guarantee, prepare_cached re-prepares statements
    // and a check costs ten times as much.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn refuse_newer(conn: &Connection) -> Result<()> {
    let found = user_version(conn)?;
    if found < 0 {
        return Err(std::io::Error::other(format!(
            "database schema version {found} was not written by turnstile"
        ))
        .into());
    }
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction (D1). Another process
/// may be migrating at the same time: the version is read again under the lock.
fn migrate(conn: &Connection) -> Result<()> {
    if user_version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let mut version = user_version(conn)?;
        if version > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 {
            conn.execute_batch(SCHEMA)?;
            version = SCHEMA_VERSION;
        }
        while version < SCHEMA_VERSION {
            let steps = usize::try_from(version - 1)
                .ok()
                .and_then(|v| UPGRADES.get(v))
                .ok_or_else(|| {
                    std::io::Error::other(format!("no migration from schema version {version}"))
                })?;
            for step in *steps {
                match step {
                    Upgrade::Sql(sql) => conn.execute_batch(sql)?,
                    Upgrade::Rust(f) => f(conn)?,
                }
            }
            version += 1;
        }
        conn.pragma_update(None, "user_version", version)?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

// Enumerations are stored as small integers (see schema.sql).

impl ToSql for ProjectRole {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(match self {
            Self::Viewer => 1i64,
            Self::Contributor => 2,
            Self::Owner => 3,
        }))
    }
}

impl FromSql for ProjectRole {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_i64()? {
            1 => Ok(Self::Viewer),
            2 => Ok(Self::Contributor),
            3 => Ok(Self::Owner),
            n => Err(FromSqlError::OutOfRange(n)),
        }
    }
}

impl ToSql for WorkspaceRole {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(match self {
            Self::Member => 1i64,
            Self::Admin => 2,
        }))
    }
}

impl FromSql for WorkspaceRole {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_i64()? {
            1 => Ok(Self::Member),
            2 => Ok(Self::Admin),
            n => Err(FromSqlError::OutOfRange(n)),
        }
    }
}

impl ToSql for Visibility {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(match self {
            Self::Private => 0i64,
            Self::Workspace => 1,
            Self::Public => 2,
        }))
    }
}

impl FromSql for Visibility {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_i64()? {
            0 => Ok(Self::Private),
            1 => Ok(Self::Workspace),
            2 => Ok(Self::Public),
            n => Err(FromSqlError::OutOfRange(n)),
        }
    }
}

/// [`Repository`] over one SQLite connection, inside the transaction its caller opened.
pub(crate) struct SqliteRepo<'c> {
    pub(crate) conn: &'c Connection,
}

impl SqliteRepo<'_> {
    /// The one token matching `filter` (on `tokens t`, with `?1` bound to `key`) and
    /// its principal.
    fn token_lookup(&self, filter: &str, key: &dyn ToSql) -> Result<Option<TokenLookup>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, u.name, s.name, sw.name, s.active
             FROM tokens t
             LEFT JOIN users u ON u.id = t.user_id
             LEFT JOIN service_accounts s ON s.id = t.service_account_id
             LEFT JOIN workspaces sw ON sw.id = s.workspace_id
             WHERE {filter}"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([key], |r| {
                let token = Self::token_row(r)?;
                let (principal, principal_active) = match token.owner {
                    TokenOwner::User(_) => {
                        (Principal::User(Username::from_stored(r.get(8)?)), true)
                    }
                    TokenOwner::ServiceAccount(_) => (
                        Principal::ServiceAccount(crate::domain::names::ServiceAccountFullName {
                            name: ServiceAccountName::from_stored(r.get(9)?),
                            workspace: WorkspaceName::from_stored(r.get(10)?),
                        }),
                        r.get(11)?,
                    ),
                };
                Ok(TokenLookup {
                    token,
                    principal,
                    principal_active,
                })
            })
            .optional()?)
    }

    fn count(&self, sql: &str, params: impl rusqlite::Params) -> Result<u32> {
        let n: i64 = self
            .conn
            .prepare_cached(sql)?
            .query_row(params, |r| r.get(0))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn workspace_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkspaceRecord> {
        Ok(WorkspaceRecord {
            id: WorkspaceId(r.get(0)?),
            name: WorkspaceName::from_stored(r.get(1)?),
            allow_public_projects: r.get(2)?,
            service_account_limit: r.get(3)?,
        })
    }

    fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRecord> {
        Ok(ProjectRecord {
            id: ProjectId(r.get(0)?),
            workspace_id: WorkspaceId(r.get(1)?),
            name: ProjectName::from_stored(r.get(2)?),
            key: ProjectKey::from_stored(r.get(3)?),
            visibility: r.get(4)?,
            description: r.get(5)?,
        })
    }

    fn service_account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ServiceAccountRecord> {
        Ok(ServiceAccountRecord {
            id: ServiceAccountId(row.get(0)?),
            workspace_id: WorkspaceId(row.get(1)?),
            name: ServiceAccountName::from_stored(row.get(2)?),
            active: row.get(3)?,
        })
    }

    fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
        let user: Option<i64> = row.get(1)?;
        let sa: Option<i64> = row.get(2)?;
        let owner = match (user, sa) {
            (Some(u), _) => TokenOwner::User(UserId(u)),
            (None, Some(s)) => TokenOwner::ServiceAccount(ServiceAccountId(s)),
            (None, None) => {
                return Err(rusqlite::Error::InvalidColumnType(
                    1,
                    "owner".into(),
                    rusqlite::types::Type::Null,
                ));
            }
        };
        Ok(TokenRecord {
            id: TokenId(row.get(0)?),
            owner,
            label: row.get(3)?,
            created_at: row.get(4)?,
            expires_at: row.get(5)?,
            last_used_at: row.get(6)?,
            revoked_at: row.get(7)?,
        })
    }
}

/// SQLite's `LIMIT` for an optional limit: -1 is none.
/// Column `i` of a row as text, borrowed from SQLite: no copy until the caller makes one.
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?.as_str().map_err(|e| match e {
        FromSqlError::InvalidType => rusqlite::Error::InvalidColumnType(
            i,
            String::new(),
            r.get_ref(i)
                .map_or(rusqlite::types::Type::Null, |v| v.data_type()),
        ),
        other => rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(other),
        ),
    })
}

fn sql_limit(limit: Option<usize>) -> i64 {
    limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Rows per statement of a bulk insert: few statements, well under SQLite's limit of
/// bound variables.
const BULK_ROWS: usize = 256;

/// `INSERT INTO <table (columns)> VALUES (?, ...), ... <suffix>` for `rows` rows.
fn bulk_insert_sql(table: &str, columns: usize, rows: usize, suffix: &str) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::with_capacity(table.len() + rows * (row.len() + 2) + suffix.len() + 20);
    sql.push_str("INSERT INTO ");
    sql.push_str(table);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql.push_str(suffix);
    sql
}

/// Inserts `rows` in statements of at most [`BULK_ROWS`] rows, `columns` values each,
/// as `values` binds them. The text of a full statement is built once per call: a
/// bulk load makes 20,000 of them, and building each anew cost more than running it.
fn bulk_insert<T>(
    conn: &Connection,
    table: &str,
    columns: usize,
    suffix: &str,
    rows: &[T],
    mut run: impl FnMut(&mut rusqlite::CachedStatement<'_>, &[T]) -> Result<()>,
) -> Result<()> {
    let mut full = None;
    for chunk in rows.chunks(BULK_ROWS) {
        let partial;
        let sql = if chunk.len() == BULK_ROWS {
            full.get_or_insert_with(|| bulk_insert_sql(table, columns, BULK_ROWS, suffix))
        } else {
            partial = bulk_insert_sql(table, columns, chunk.len(), suffix);
            &partial
        };
        run(&mut conn.prepare_cached(sql)?, chunk)?;
    }
    Ok(())
}

/// Inserts grant rows (project, principal, role) into `table (columns)`; `id` is the
/// principal's row id.
fn insert_grants<T>(
    conn: &Connection,
    table: &str,
    grants: &[(ProjectId, T, ProjectRole)],
    id: fn(&T) -> &i64,
) -> Result<()> {
    bulk_insert(conn, table, 3, "", grants, |stmt, chunk| {
        let values: Vec<&dyn ToSql> = chunk
            .iter()
            .flat_map(|(p, a, r)| [&p.0 as &dyn ToSql, id(a), r])
            .collect();
        stmt.execute(values.as_slice())?;
        Ok(())
    })
}

const TOKEN_COLUMNS: &str = "t.id, t.user_id, t.service_account_id, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at";

fn owner_params(owner: TokenOwner) -> (Option<i64>, Option<i64>) {
    match owner {
        TokenOwner::User(u) => (Some(u.0), None),
        TokenOwner::ServiceAccount(s) => (None, Some(s.0)),
    }
}

/// The page cache, in KiB as `PRAGMA cache_size` takes it (negative), while a bulk load
/// rebuilds its indexes: it also sizes the sorter's in-memory runs, and runs this small
/// fit the CPU caches (measured on 5,000,000 grants: 1 MiB 1.5 s of CPU, 4 MiB 2.0 s,
/// 32 MiB 3.9 s, everything in memory 8.0 s).
const INDEX_BUILD_CACHE_KIB: i64 = -1024;

/// What a bulk load drops and puts back (see
/// [`Repository::suspend_secondary_structures`]): the indexes that inserts in
/// project order would update at random, rebuilt by one sort each at the end, and the
/// triggers that restate A7 and R7 for every grant, which the load checks itself.
const BULK_SUSPENDED: [&str; 7] = [
    "user_grants_by_user",
    "service_account_grants_by_account",
    "projects_by_visibility",
    "projects_by_skeleton",
    "projects_by_name",
    "user_grant_needs_membership",
    "service_account_grant_in_own_workspace",
];

impl Repository for SqliteRepo<'_> {
    fn suspend_secondary_structures(&self) -> Result<Vec<String>> {
        let mut saved = Vec::new();
        for name in BULK_SUSPENDED {
            let found: Option<(String, String)> = self
                .conn
                .query_row(
                    "SELECT type, sql FROM sqlite_master WHERE name = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((kind, sql)) = found {
                let drop = if kind == "index" { "INDEX" } else { "TRIGGER" };
                self.conn.execute_batch(&format!("DROP {drop} {name}"))?;
                saved.push(sql);
            }
        }
        Ok(saved)
    }

    fn restore_secondary_structures(&self, suspended: Vec<String>) -> Result<()> {
        if suspended.is_empty() {
            return Ok(());
        }
        // With `temp_store = MEMORY` SQLite's index sorter never spills: it sorts all
        // the rows of an index (5,000,000 grants at 1,000,000 projects) as one linked
        // list, whose merge passes miss the CPU caches on every step (8 s of CPU for
        // `user_grants_by_user` alone). Allowed temporary files and a small cache, it
        // sorts runs of about 1 MB in cache and merges them sequentially (1.5 s).
        // Best effort: SQLite refuses to change `temp_store` once this connection has
        // temporary tables, and the rebuild is then merely slower.
        let cache: i64 = self.conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        let temp: i64 = self.conn.query_row("PRAGMA temp_store", [], |r| r.get(0))?;
        let spilling = self.conn.pragma_update(None, "temp_store", "FILE").is_ok();
        self.conn
            .pragma_update(None, "cache_size", INDEX_BUILD_CACHE_KIB)?;
        let built = suspended
            .iter()
            .try_for_each(|sql| self.conn.execute_batch(sql));
        self.conn.pragma_update(None, "cache_size", cache)?;
        if spilling {
            self.conn.pragma_update(None, "temp_store", temp)?;
        }
        Ok(built?)
    }

    fn user(&self, name: &Username) -> Result<Option<UserRecord>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name FROM users WHERE name_key = ?1")?
            .query_row([name.key()], |r| {
                Ok(UserRecord {
                    id: UserId(r.get(0)?),
                    name: Username::from_stored(r.get(1)?),
                })
            })
            .optional()?)
    }

    fn insert_user(&self, name: &Username, now: i64) -> Result<UserId> {
        self.conn
            .prepare_cached("INSERT INTO users (name, name_key, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![name.as_str(), name.key(), now])?;
        Ok(UserId(self.conn.last_insert_rowid()))
    }

    fn workspace(&self, name: &WorkspaceName) -> Result<Option<WorkspaceRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, name, allow_public_projects, service_account_limit
                 FROM workspaces WHERE name = ?1",
            )?
            .query_row([name.as_str()], Self::workspace_row)
            .optional()?)
    }

    fn insert_workspace(&self, name: &WorkspaceName, now: i64) -> Result<WorkspaceId> {
        self.conn
            .prepare_cached("INSERT INTO workspaces (name, created_at) VALUES (?1, ?2)")?
            .execute(params![name.as_str(), now])?;
        Ok(WorkspaceId(self.conn.last_insert_rowid()))
    }

    fn update_workspace_settings(
        &self,
        ws: WorkspaceId,
        allow_public: bool,
        limit: u32,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE workspaces SET allow_public_projects = ?2, service_account_limit = ?3
                 WHERE id = ?1",
            )?
            .execute(params![ws.0, allow_public, limit])?;
        Ok(())
    }

    fn workspace_counts(&self, ws: WorkspaceId) -> Result<WorkspaceCounts> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT
                   (SELECT count(*) FROM workspace_members WHERE workspace_id = ?1 AND role = 2),
                   (SELECT count(*) FROM workspace_members WHERE workspace_id = ?1 AND role = 1),
                   (SELECT count(*) FROM projects WHERE workspace_id = ?1),
                   (SELECT count(*) FROM service_accounts WHERE workspace_id = ?1 AND active = 1),
                   (SELECT count(*) FROM service_accounts WHERE workspace_id = ?1 AND active = 0)",
            )?
            .query_row([ws.0], |r| {
                Ok(WorkspaceCounts {
                    admins: r.get(0)?,
                    members: r.get(1)?,
                    projects: r.get(2)?,
                    active_service_accounts: r.get(3)?,
                    deactivated_service_accounts: r.get(4)?,
                })
            })?)
    }

    fn workspace_role(&self, ws: WorkspaceId, user: UserId) -> Result<Option<WorkspaceRole>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT role FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
            )?
            .query_row([ws.0, user.0], |r| r.get(0))
            .optional()?)
    }

    fn put_workspace_member(
        &self,
        ws: WorkspaceId,
        user: UserId,
        role: WorkspaceRole,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
            )?
            .execute(params![ws.0, user.0, role])?;
        Ok(())
    }

    fn delete_workspace_member(&self, ws: WorkspaceId, user: UserId) -> Result<usize> {
        let grants = self
            .conn
            .prepare_cached(
                "DELETE FROM user_grants WHERE user_id = ?2
                 AND project_id IN (SELECT id FROM projects WHERE workspace_id = ?1)",
            )?
            .execute([ws.0, user.0])?;
        self.conn
            .prepare_cached(
                "DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
            )?
            .execute([ws.0, user.0])?;
        Ok(grants)
    }

    fn workspace_members(&self, ws: WorkspaceId) -> Result<Vec<(Username, WorkspaceRole)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.name, m.role FROM workspace_members m JOIN users u ON u.id = m.user_id
             WHERE m.workspace_id = ?1 ORDER BY u.name_key",
        )?;
        let rows = stmt.query_map([ws.0], |r| {
            Ok((Username::from_stored(r.get(0)?), r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_workspace_role(&self, ws: WorkspaceId, role: WorkspaceRole) -> Result<u32> {
        self.count(
            "SELECT count(*) FROM workspace_members WHERE workspace_id = ?1 AND role = ?2",
            params![ws.0, role],
        )
    }

    fn service_account(
        &self,
        ws: WorkspaceId,
        name: &ServiceAccountName,
    ) -> Result<Option<ServiceAccountRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, workspace_id, name, active FROM service_accounts
                 WHERE workspace_id = ?1 AND name_key = ?2",
            )?
            .query_row(params![ws.0, name.key()], Self::service_account_row)
            .optional()?)
    }

    fn insert_service_account(
        &self,
        ws: WorkspaceId,
        name: &ServiceAccountName,
        active: bool,
        now: i64,
    ) -> Result<ServiceAccountId> {
        self.conn
            .prepare_cached(
                "INSERT INTO service_accounts (workspace_id, name, name_key, active, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![ws.0, name.as_str(), name.key(), active, now])?;
        Ok(ServiceAccountId(self.conn.last_insert_rowid()))
    }

    fn set_service_account_active(&self, sa: ServiceAccountId, active: bool) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE service_accounts SET active = ?2 WHERE id = ?1")?
            .execute(params![sa.0, active])?;
        Ok(())
    }

    fn count_active_service_accounts(&self, ws: WorkspaceId) -> Result<u32> {
        self.count(
            "SELECT count(*) FROM service_accounts WHERE workspace_id = ?1 AND active = 1",
            [ws.0],
        )
    }

    fn service_accounts(&self, ws: WorkspaceId) -> Result<Vec<(ServiceAccountName, bool)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, active FROM service_accounts WHERE workspace_id = ?1 ORDER BY name_key",
        )?;
        let rows = stmt.query_map([ws.0], |r| {
            Ok((ServiceAccountName::from_stored(r.get(0)?), r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn project(&self, ws: WorkspaceId, name: &ProjectName) -> Result<Option<ProjectRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, workspace_id, name, key, visibility, description FROM projects
                 WHERE workspace_id = ?1 AND name_key = ?2",
            )?
            .query_row(params![ws.0, name.key()], Self::project_row)
            .optional()?)
    }

    fn confusable_project(&self, ws: WorkspaceId, skeleton: &str) -> Result<Option<ProjectName>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT name FROM projects WHERE workspace_id = ?1 AND name_skeleton = ?2 LIMIT 1",
            )?
            .query_row(params![ws.0, skeleton], |r| {
                Ok(ProjectName::from_stored(r.get(0)?))
            })
            .optional()?)
    }

    fn projects(&self, ws: WorkspaceId) -> Result<Vec<ProjectRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, workspace_id, name, key, visibility, description FROM projects
             WHERE workspace_id = ?1 ORDER BY name_key",
        )?;
        let rows = stmt.query_map([ws.0], Self::project_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn project_keys(&self, ws: WorkspaceId, prefix: &str) -> Result<HashSet<String>> {
        // Keys are `A-Z 0-9` only, so the prefix needs no LIKE escaping; `>=`/`<`
        // keeps the look-up on the (workspace_id, key) index.
        let mut stmt = self.conn.prepare_cached(
            "SELECT key FROM projects WHERE workspace_id = ?1 AND key >= ?2 AND key < ?2 || '~'",
        )?;
        let rows = stmt.query_map(params![ws.0, prefix], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn users(&self) -> Result<Vec<Username>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM users ORDER BY name_key")?;
        let rows = stmt.query_map([], |r| Ok(Username::from_stored(r.get(0)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn workspaces(&self) -> Result<Vec<WorkspaceRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, allow_public_projects, service_account_limit FROM workspaces ORDER BY name",
        )?;
        let rows = stmt.query_map([], Self::workspace_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn user_grants_in_workspace(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(ProjectId, Username, ProjectRole)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT g.project_id, u.name, g.role FROM user_grants g
             JOIN projects p ON p.id = g.project_id JOIN users u ON u.id = g.user_id
             WHERE p.workspace_id = ?1",
        )?;
        let rows = stmt.query_map([ws.0], |r| {
            Ok((
                ProjectId(r.get(0)?),
                Username::from_stored(r.get(1)?),
                r.get(2)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn service_account_grants_in_workspace(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(ProjectId, ServiceAccountName, ProjectRole)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT g.project_id, s.name, g.role FROM service_account_grants g
             JOIN projects p ON p.id = g.project_id
             JOIN service_accounts s ON s.id = g.service_account_id
             WHERE p.workspace_id = ?1",
        )?;
        let rows = stmt.query_map([ws.0], |r| {
            Ok((
                ProjectId(r.get(0)?),
                ServiceAccountName::from_stored(r.get(1)?),
                r.get(2)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn project_key_taken(&self, ws: WorkspaceId, key: &ProjectKey) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM projects WHERE workspace_id = ?1 AND key = ?2")?
            .exists(params![ws.0, key.as_str()])?)
    }

    fn insert_project(&self, p: &NewProject<'_>, now: i64) -> Result<ProjectId> {
        self.conn
            .prepare_cached(
                "INSERT INTO projects (workspace_id, name, name_key, key, visibility, description, created_at, name_skeleton)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                p.workspace_id.0,
                p.name.as_str(),
                p.name.key(),
                p.key.as_str(),
                p.visibility,
                p.description.as_str(),
                now,
                p.name.skeleton()
            ])?;
        Ok(ProjectId(self.conn.last_insert_rowid()))
    }

    fn insert_projects(&self, projects: &[NewProject<'_>], now: i64) -> Result<Vec<ProjectId>> {
        let mut ids = Vec::with_capacity(projects.len());
        bulk_insert(
            self.conn,
            "projects (workspace_id, name, name_key, key, visibility, description, created_at, name_skeleton)",
            8,
            " RETURNING id",
            projects,
            |stmt, chunk| {
                let texts: Vec<[&str; 5]> = chunk
                    .iter()
                    .map(|p| {
                        [
                            p.name.as_str(),
                            p.name.key(),
                            p.key.as_str(),
                            p.description.as_str(),
                            p.name.skeleton(),
                        ]
                    })
                    .collect();
                let mut values: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 8);
                for (p, [name, name_key, key, description, skeleton]) in chunk.iter().zip(&texts) {
                    values.extend([
                        &p.workspace_id.0 as &dyn ToSql,
                        name,
                        name_key,
                        key,
                        &p.visibility,
                        description,
                        &now,
                        skeleton,
                    ]);
                }
                let rows = stmt.query_map(values.as_slice(), |r| Ok(ProjectId(r.get(0)?)))?;
                for id in rows {
                    ids.push(id?);
                }
                Ok(())
            },
        )?;
        Ok(ids)
    }

    fn insert_user_grants(&self, grants: &[(ProjectId, UserId, ProjectRole)]) -> Result<()> {
        insert_grants(
            self.conn,
            "user_grants (project_id, user_id, role)",
            grants,
            |u| &u.0,
        )
    }

    fn insert_service_account_grants(
        &self,
        grants: &[(ProjectId, ServiceAccountId, ProjectRole)],
    ) -> Result<()> {
        insert_grants(
            self.conn,
            "service_account_grants (project_id, service_account_id, role)",
            grants,
            |a| &a.0,
        )
    }

    fn delete_project(&self, project: ProjectId) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM projects WHERE id = ?1")?
            .execute([project.0])?;
        Ok(())
    }

    fn set_project_visibility(&self, project: ProjectId, visibility: Visibility) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE projects SET visibility = ?2 WHERE id = ?1")?
            .execute(params![project.0, visibility])?;
        Ok(())
    }

    fn set_project_description(
        &self,
        project: ProjectId,
        description: &ProjectDescription,
    ) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE projects SET description = ?2 WHERE id = ?1")?
            .execute(params![project.0, description.as_str()])?;
        Ok(())
    }

    fn project_ids(&self, ws: WorkspaceId) -> Result<Vec<ProjectId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM projects WHERE workspace_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([ws.0], |r| Ok(ProjectId(r.get(0)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn user_grant(&self, project: ProjectId, user: UserId) -> Result<Option<ProjectRole>> {
        Ok(self
            .conn
            .prepare_cached("SELECT role FROM user_grants WHERE project_id = ?1 AND user_id = ?2")?
            .query_row([project.0, user.0], |r| r.get(0))
            .optional()?)
    }

    fn put_user_grant(&self, project: ProjectId, user: UserId, role: ProjectRole) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO user_grants (project_id, user_id, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
            )?
            .execute(params![project.0, user.0, role])?;
        Ok(())
    }

    fn delete_user_grant(&self, project: ProjectId, user: UserId) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM user_grants WHERE project_id = ?1 AND user_id = ?2")?
            .execute([project.0, user.0])?
            > 0)
    }

    fn project_users(&self, project: ProjectId, with_members: bool) -> Result<Vec<ProjectUserRow>> {
        // The grantees, and with `with_members` the workspace's members: never a
        // walk over every user of the database.
        let mut stmt = self.conn.prepare_cached(
            "WITH p(id, workspace_id) AS (SELECT id, workspace_id FROM projects WHERE id = ?1),
                  listed(user_id) AS (
                    SELECT user_id FROM user_grants WHERE project_id = ?1
                    UNION
                    SELECT m.user_id FROM workspace_members m, p
                    WHERE ?2 AND m.workspace_id = p.workspace_id)
             SELECT u.name, m.role, g.role
             FROM listed l
             JOIN users u ON u.id = l.user_id
             JOIN p
             LEFT JOIN workspace_members m ON m.workspace_id = p.workspace_id AND m.user_id = u.id
             LEFT JOIN user_grants g ON g.project_id = p.id AND g.user_id = u.id
             ORDER BY u.name_key",
        )?;
        let rows = stmt.query_map(params![project.0, with_members], |r| {
            Ok(ProjectUserRow {
                name: Username::from_stored(r.get(0)?),
                workspace_role: r.get(1)?,
                grant: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
    ) -> Result<Option<ProjectRole>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT role FROM service_account_grants WHERE project_id = ?1 AND service_account_id = ?2",
            )?
            .query_row([project.0, sa.0], |r| r.get(0))
            .optional()?)
    }

    fn put_service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
        role: ProjectRole,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO service_account_grants (project_id, service_account_id, role)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, service_account_id) DO UPDATE SET role = excluded.role",
            )?
            .execute(params![project.0, sa.0, role])?;
        Ok(())
    }

    fn delete_service_account_grant(
        &self,
        project: ProjectId,
        sa: ServiceAccountId,
    ) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM service_account_grants WHERE project_id = ?1 AND service_account_id = ?2",
            )?
            .execute([project.0, sa.0])?
            > 0)
    }

    fn project_service_accounts(
        &self,
        project: ProjectId,
    ) -> Result<Vec<(ServiceAccountName, bool, ProjectRole)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.name, s.active, g.role
             FROM service_account_grants g JOIN service_accounts s ON s.id = g.service_account_id
             WHERE g.project_id = ?1 ORDER BY s.name_key",
        )?;
        let rows = stmt.query_map([project.0], |r| {
            Ok((
                ServiceAccountName::from_stored(r.get(0)?),
                r.get(1)?,
                r.get(2)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn project_facts(
        &self,
        principal: Option<&Principal>,
        workspace: &WorkspaceName,
        project_key: &str,
    ) -> Result<Option<ProjectFacts>> {
        // One statement from names to facts: the check path (WORKLOAD.md).
        let facts = match principal {
            None => self
                .conn
                .prepare_cached(
                    "SELECT p.visibility FROM workspaces w
                     JOIN projects p INDEXED BY projects_by_name
                          ON p.workspace_id = w.id AND p.name_key = ?2
                     WHERE w.name = ?1",
                )?
                .query_row(params![workspace.as_str(), project_key], |r| {
                    Ok(ProjectFacts {
                        visibility: r.get(0)?,
                        standing: Some(Standing::Anonymous),
                        principal_id: None,
                    })
                })
                .optional()?,
            Some(Principal::User(user)) => self
                .conn
                .prepare_cached(
                    "SELECT p.visibility, u.id, m.role, g.role
                     FROM workspaces w
                     JOIN projects p INDEXED BY projects_by_name
                          ON p.workspace_id = w.id AND p.name_key = ?2
                     LEFT JOIN users u ON u.name_key = ?3
                     LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = u.id
                     LEFT JOIN user_grants g ON g.project_id = p.id AND g.user_id = u.id
                     WHERE w.name = ?1",
                )?
                .query_row(params![workspace.as_str(), project_key, user.key()], |r| {
                    let principal_id = r.get::<_, Option<i64>>(1)?;
                    Ok(ProjectFacts {
                        visibility: r.get(0)?,
                        standing: principal_id.is_some().then_some(Standing::User {
                            workspace_role: r.get(2)?,
                            grant: r.get(3)?,
                        }),
                        principal_id,
                    })
                })
                .optional()?,
            Some(Principal::ServiceAccount(sa)) => self
                .conn
                .prepare_cached(
                    "SELECT p.visibility, s.id, s.active, s.workspace_id = w.id, g.role
                     FROM workspaces w
                     JOIN projects p INDEXED BY projects_by_name
                          ON p.workspace_id = w.id AND p.name_key = ?2
                     LEFT JOIN workspaces sw ON sw.name = ?3
                     LEFT JOIN service_accounts s ON s.workspace_id = sw.id AND s.name_key = ?4
                     LEFT JOIN service_account_grants g
                            ON g.project_id = p.id AND g.service_account_id = s.id
                     WHERE w.name = ?1",
                )?
                .query_row(
                    params![
                        workspace.as_str(),
                        project_key,
                        sa.workspace.as_str(),
                        sa.name.key()
                    ],
                    |r| {
                        let principal_id = r.get::<_, Option<i64>>(1)?;
                        Ok(ProjectFacts {
                            visibility: r.get(0)?,
                            standing: if principal_id.is_some() {
                                Some(Standing::ServiceAccount {
                                    active: r.get(2)?,
                                    in_workspace: r.get(3)?,
                                    grant: r.get(4)?,
                                })
                            } else {
                                None
                            },
                            principal_id,
                        })
                    },
                )
                .optional()?,
        };
        Ok(facts)
    }

    fn listing_workspaces(
        &self,
        principal: &Principal,
        from: &str,
    ) -> Result<Vec<ListingWorkspace>> {
        match principal {
            Principal::User(user) => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT w.id, w.name, m.role FROM workspaces w
                     LEFT JOIN workspace_members m ON m.workspace_id = w.id
                          AND m.user_id = (SELECT id FROM users WHERE name_key = ?1)
                     WHERE w.name >= ?2
                       AND (m.role IS NOT NULL OR EXISTS (
                            SELECT 1 FROM projects p WHERE p.workspace_id = w.id AND p.visibility = 2))
                     ORDER BY w.name",
                )?;
                let rows = stmt.query_map(params![user.key(), from], |r| {
                    Ok(ListingWorkspace {
                        id: WorkspaceId(r.get(0)?),
                        name: WorkspaceName::from_stored(r.get(1)?),
                        standing: Standing::User {
                            workspace_role: r.get(2)?,
                            grant: None,
                        },
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            Principal::ServiceAccount(sa) => {
                let mut stmt = self.conn.prepare_cached(
                    "WITH me(workspace_id, active) AS (
                        SELECT s.workspace_id, s.active FROM service_accounts s
                        JOIN workspaces w ON w.id = s.workspace_id
                        WHERE w.name = ?1 AND s.name_key = ?2)
                     SELECT w.id, w.name, coalesce((SELECT active FROM me), 0),
                            w.id IS (SELECT workspace_id FROM me)
                     FROM workspaces w
                     WHERE w.name >= ?3
                       AND (w.id IS (SELECT workspace_id FROM me) OR EXISTS (
                            SELECT 1 FROM projects p WHERE p.workspace_id = w.id AND p.visibility = 2))
                     ORDER BY w.name",
                )?;
                let rows =
                    stmt.query_map(params![sa.workspace.as_str(), sa.name.key(), from], |r| {
                        Ok(ListingWorkspace {
                            id: WorkspaceId(r.get(0)?),
                            name: WorkspaceName::from_stored(r.get(1)?),
                            standing: Standing::ServiceAccount {
                                active: r.get(2)?,
                                in_workspace: r.get(3)?,
                                grant: None,
                            },
                        })
                    })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
        }
    }

    fn projects_with_visibility(
        &self,
        ws: &ListingWorkspace,
        visibility: Visibility,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ListedProject>> {
        // A range scan of the covering index projects_by_visibility.
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, name_key FROM projects
             WHERE workspace_id = ?1 AND visibility = ?2 AND name_key > ?3
             ORDER BY name_key LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![ws.id.0, visibility, after, sql_limit(limit)], |r| {
            Ok(ListedProject {
                qualified: qualified_name(&ws.name, text(r, 0)?),
                name_key: r.get(1)?,
                visibility,
                grant: None,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn granted_projects(
        &self,
        principal: &Principal,
        ws: &ListingWorkspace,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ListedProject>> {
        // CROSS JOIN keeps the grants (a few per principal) as the outer loop: the
        // planner would otherwise walk the workspace's projects in name order to
        // serve ORDER BY ... LIMIT, probing for a grant at each.
        let row = |r: &rusqlite::Row<'_>| {
            Ok(ListedProject {
                qualified: qualified_name(&ws.name, text(r, 0)?),
                name_key: r.get(1)?,
                visibility: r.get(2)?,
                grant: r.get(3)?,
            })
        };
        let rows = match principal {
            Principal::User(user) => self
                .conn
                .prepare_cached(
                    "SELECT p.name, p.name_key, p.visibility, g.role
                     FROM user_grants g CROSS JOIN projects p ON p.id = g.project_id
                     WHERE g.user_id = (SELECT id FROM users WHERE name_key = ?1)
                       AND p.workspace_id = ?2 AND p.name_key > ?3
                     ORDER BY p.name_key LIMIT ?4",
                )?
                .query_map(params![user.key(), ws.id.0, after, sql_limit(limit)], row)?
                .collect::<rusqlite::Result<_>>()?,
            Principal::ServiceAccount(sa) => self
                .conn
                .prepare_cached(
                    "SELECT p.name, p.name_key, p.visibility, g.role
                     FROM service_account_grants g CROSS JOIN projects p ON p.id = g.project_id
                     WHERE g.service_account_id = (
                            SELECT s.id FROM service_accounts s JOIN workspaces w ON w.id = s.workspace_id
                            WHERE w.name = ?1 AND s.name_key = ?2)
                       AND p.workspace_id = ?3 AND p.name_key > ?4
                     ORDER BY p.name_key LIMIT ?5",
                )?
                .query_map(
                    params![
                        sa.workspace.as_str(),
                        sa.name.key(),
                        ws.id.0,
                        after,
                        sql_limit(limit)
                    ],
                    row,
                )?
                .collect::<rusqlite::Result<_>>()?,
        };
        Ok(rows)
    }

    fn insert_token(
        &self,
        owner: TokenOwner,
        digest: &TokenDigest,
        label: &str,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<TokenId> {
        let (user, sa) = owner_params(owner);
        self.conn
            .prepare_cached(
                "INSERT INTO tokens (digest, user_id, service_account_id, label, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![&digest.as_bytes()[..], user, sa, label, now, expires_at])?;
        Ok(TokenId(self.conn.last_insert_rowid()))
    }

    fn token_by_digest(&self, digest: &TokenDigest) -> Result<Option<TokenLookup>> {
        self.token_lookup("t.digest = ?1", &&digest.as_bytes()[..])
    }

    fn token_by_id(&self, id: TokenId) -> Result<Option<TokenLookup>> {
        self.token_lookup("t.id = ?1", &id.0)
    }

    fn token_project_facts(
        &self,
        digest: &TokenDigest,
        workspace: &WorkspaceName,
        project_key: &str,
    ) -> Result<Option<TokenProjectFacts>> {
        // Without the indentation (`\` continuations): `prepare_cached` hashes the text
        // twice and compares it once on every call, and this is `authorize`'s hot path.
        Ok(self
            .conn
            .prepare_cached(
                "SELECT t.id, t.expires_at, t.last_used_at, t.revoked_at IS NOT NULL, \
                 t.service_account_id IS NOT NULL, coalesce(s.active, 1), \
                 s.workspace_id IS w.id, p.visibility, m.role, ug.role, sg.role \
                 FROM tokens t \
                 JOIN workspaces w ON w.name = ?2 \
                 JOIN projects p INDEXED BY projects_by_name \
                 ON p.workspace_id = w.id AND p.name_key = ?3 \
                 LEFT JOIN service_accounts s ON s.id = t.service_account_id \
                 LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = t.user_id \
                 LEFT JOIN user_grants ug ON ug.project_id = p.id AND ug.user_id = t.user_id \
                 LEFT JOIN service_account_grants sg \
                 ON sg.project_id = p.id AND sg.service_account_id = t.service_account_id \
                 WHERE t.digest = ?1",
            )?
            .query_row(
                params![&digest.as_bytes()[..], workspace.as_str(), project_key],
                |r| {
                    let is_sa: bool = r.get(4)?;
                    let active: bool = r.get(5)?;
                    let standing = if is_sa {
                        Standing::ServiceAccount {
                            active,
                            in_workspace: r.get(6)?,
                            grant: r.get(10)?,
                        }
                    } else {
                        Standing::User {
                            workspace_role: r.get(8)?,
                            grant: r.get(9)?,
                        }
                    };
                    Ok(TokenProjectFacts {
                        token_id: TokenId(r.get(0)?),
                        expires_at: r.get(1)?,
                        last_used_at: r.get(2)?,
                        revoked: r.get(3)?,
                        principal_active: active,
                        visibility: r.get(7)?,
                        standing,
                    })
                },
            )
            .optional()?)
    }

    fn tokens_of(&self, owner: TokenOwner) -> Result<Vec<TokenRecord>> {
        let (user, sa) = owner_params(owner);
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t
             WHERE t.user_id IS ?1 AND t.service_account_id IS ?2 ORDER BY t.id DESC"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![user, sa], Self::token_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_token(&self, id: TokenId, now: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute([id.0, now])?
            > 0)
    }

    fn revoke_tokens_of(&self, owner: TokenOwner, now: i64) -> Result<Vec<TokenRecord>> {
        let live: Vec<TokenRecord> = self
            .tokens_of(owner)?
            .into_iter()
            .filter(|t| t.revoked_at.is_none())
            .collect();
        for t in &live {
            self.revoke_token(t.id, now)?;
        }
        Ok(live)
    }

    fn touch_token(&self, id: TokenId, now: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
            )?
            .execute([id.0, now])?;
        Ok(())
    }

    fn append_audit(&self, e: &NewAuditEvent<'_>) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit_events (at, workspace, actor, action, target, outcome, details, actor_key, target_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.at,
                e.workspace,
                e.actor,
                e.action,
                e.target,
                e.outcome.as_str(),
                e.details.to_string(),
                fold(e.actor),
                fold(e.target)
            ])?;
        Ok(())
    }

    fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, workspace, actor, action, target, outcome, details FROM audit_events
             WHERE (?1 IS NULL OR workspace = ?1)
               AND (?2 IS NULL OR actor_key = ?2)
               AND (?3 IS NULL OR target_key = ?3)
               AND (?4 IS NULL OR at >= ?4)
               AND (?5 IS NULL OR at < ?5)
             ORDER BY id DESC LIMIT ?6",
        )?;
        let limit = sql_limit(q.limit);
        let rows = stmt.query_map(
            params![
                q.workspace.as_deref().map(str::to_ascii_lowercase),
                q.actor.as_deref().map(fold),
                q.target.as_deref().map(fold),
                q.since.map(|t| t.timestamp_millis()),
                q.until.map(|t| t.timestamp_millis()),
                limit
            ],
            |r| {
                let at: i64 = r.get(1)?;
                let outcome: String = r.get(6)?;
                let details: String = r.get(7)?;
                Ok(AuditEvent {
                    id: r.get(0)?,
                    at: chrono::DateTime::from_timestamp_millis(at).unwrap_or_default(),
                    workspace: r.get(2)?,
                    actor: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    outcome: if outcome == "denied" {
                        Outcome::Denied
                    } else {
                        Outcome::Ok
                    },
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn signing_key(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT secret FROM signing_keys ORDER BY id LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    fn insert_signing_key(&self, secret: &[u8], now: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO signing_keys (secret, created_at) VALUES (?1, ?2)")?
            .execute(params![secret, now])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(
            &dir.path().join("pool.db"),
            OpenOptions {
                busy_timeout: Duration::from_secs(1),
                read_only: false,
            },
        )
        .expect("open");
        (dir, store)
    }

    /// Which connection `conn` is: a number it keeps in a table of its own (a TEMP
    /// table is private to its connection).
    fn identity(conn: &Connection) -> Result<i64> {
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS identity(id INTEGER);
             INSERT INTO identity SELECT random() WHERE NOT EXISTS (SELECT 1 FROM identity);",
        )?;
        Ok(conn.query_row("SELECT id FROM identity", [], |r| r.get(0))?)
    }

    /// Reads nested deeper than the pool has slots each get a connection of their own:
    /// a slot in use is skipped, and when none is free the call opens one for itself.
    #[test]
    fn nested_reads_deeper_than_the_pool_each_get_a_connection() {
        let (_dir, store) = store();
        fn nest(store: &Store, depth: usize, seen: &mut Vec<i64>) -> Result<()> {
            store.with_connection(|conn| {
                seen.push(identity(conn)?);
                if depth > 0 {
                    nest(store, depth - 1, seen)?;
                }
                Ok(())
            })
        }
        let mut seen = Vec::new();
        nest(&store, READER_SLOTS + 2, &mut seen).expect("nested reads");
        let distinct: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), READER_SLOTS + 3);
    }

    /// A thread gets back the connection it used last, not the one another thread left
    /// in the pool a moment before.
    #[test]
    fn a_thread_gets_back_its_own_connection() {
        let (_dir, store) = store();
        let handle = || store.with_connection(identity).expect("read");
        let home = home_slot() % READER_SLOTS;
        let main_first = handle();
        // A thread whose home slot is not this one's (threads get slots in turn, so
        // the first or the next few are).
        let (other_first, other_second) = std::thread::scope(|s| {
            loop {
                let spawned =
                    s.spawn(|| (home_slot() % READER_SLOTS != home).then(|| (handle(), handle())));
                if let Some(pair) = spawned.join().expect("a reader thread") {
                    return pair;
                }
            }
        });
        let main_second = handle();
        assert_ne!(
            main_first, other_first,
            "the other thread took this one's connection"
        );
        assert_eq!(other_first, other_second);
        assert_eq!(main_first, main_second);
    }
}
