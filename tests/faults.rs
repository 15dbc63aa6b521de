//! Storage faults (SPEC D1, E3, D4): a database of a newer schema is refused and left
//! byte for byte as it was; a read-only file gives a clear error and stays as it was; a
//! full disk fails the call that needs the space, cleanly, and leaves the database
//! as it was before that call.
//!
//! The full disk is made two ways, in a child re-run of this test binary:
//! - `RLIMIT_FSIZE` (`ulimit -f` in `/bin/sh`, with `SIGXFSZ` ignored), which works for
//!   any user on any Unix;
//! - a tiny tmpfs mounted in a private mount namespace (`unshare`), when the machine
//!   allows it (root, or unprivileged user namespaces). There the call is retried after
//!   space is freed, and must then succeed. Skipped, with a note, where not allowed.
//!
//! The read-only file is made with `chmod 0444`, or for root (who writes regardless of
//! the mode) with `chattr +i`; skipped, with a note, where neither works.
//!
//! Longer runs: `TURNSTILE_FAULT_DESCRIPTION_KB` (default 16, capped at 12 by N8's
//! 4,096 characters) sets how much each call writes while filling the disk; smaller
//! values take more calls to fill it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use turnstile::{Action, AuditQuery, Engine, Error, Principal, ProjectOptions, Result, Snapshot};

const ENV_DB: &str = "TURNSTILE_FAULT_DB";
const ENV_SETUP: &str = "TURNSTILE_FAULT_SETUP";

fn world(engine: &Engine) -> Result<()> {
    engine.create_user("alice")?;
    engine.create_workspace("ml-team", "alice")?;
    let alice = engine.session_for(&"alice".parse()?)?;
    alice.create_project("ml-team/cls", ProjectOptions::default())?;
    Ok(())
}

/// A closed database with [`world`] in it, in its own directory.
fn closed_world() -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("acl.db");
    world(&Engine::open(&db)?)?;
    Ok((dir, db))
}

/// Every file of a directory, by name, with its bytes.
fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| {
            let e = e.expect("a directory entry");
            let bytes = std::fs::read(e.path()).expect("read a file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

mod common;
use common::raw;

fn integrity(db: &Path) -> String {
    raw(db)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("run integrity_check")
}

// ---------------------------------------------------------------------------------
// D1: a newer schema.

#[test]
fn d1_a_newer_database_is_refused_and_left_byte_for_byte_untouched() -> Result<()> {
    // A newer turnstile may have written the file in either journal mode.
    for journal in ["wal", "delete"] {
        let (dir, db) = closed_world()?;
        let current: i64 = raw(&db)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("the version");
        assert!(current >= 1, "a turnstile database is versioned");
        let newer = current + 1;
        {
            let conn = raw(&db);
            conn.pragma_update(None, "user_version", newer)
                .expect("set the version");
            let mode: String = conn
                .query_row(&format!("PRAGMA journal_mode = {journal}"), [], |r| {
                    r.get(0)
                })
                .expect("set the journal mode");
            assert_eq!(mode, journal);
        }
        let before = files_in(dir.path());
        assert_eq!(
            before.len(),
            1,
            "{journal}: only the database file: {:?}",
            { before.keys().collect::<Vec<_>>() }
        );

        for cached in [false, true] {
            let options = turnstile::Options {
                decision_cache: cached,
                ..Default::default()
            };
            match Engine::open_with(&db, options) {
                Err(e @ Error::SchemaTooNew { found, supported }) => {
                    assert_eq!((found, supported), (newer, current), "{journal}");
                    let message = e.to_string();
                    assert!(
                        message.contains("newer") && message.contains(&newer.to_string()),
                        "{journal}: the message says what is wrong: {message}"
                    );
                }
                Err(e) => panic!("{journal}: refused with the wrong error: {e:?}"),
                Ok(_) => panic!("{journal}: a newer database was opened"),
            }
            assert_eq!(
                files_in(dir.path()),
                before,
                "{journal}: the refused database is left byte for byte as it was"
            );
        }

        // The command-line tool refuses it too, with the storage exit code.
        let out = Command::new(env!("CARGO_BIN_EXE_turnstile"))
            .arg("--db")
            .arg(&db)
            .args(["check", "--as", "alice", "ml-team/cls", "view"])
            .output()
            .expect("run the turnstile binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{journal}: exit code: {stderr}");
        assert!(stderr.contains("newer"), "{journal}: {stderr}");
        assert_eq!(
            files_in(dir.path()),
            before,
            "{journal}: the tool leaves it as it was"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// A read-only file.

use common::Immutable;

/// Makes `db` read-only for this process: `None` if this machine offers no way to.
fn make_read_only(db: &Path) -> Option<Option<Immutable>> {
    use std::os::unix::fs::PermissionsExt;
    let writable = |p: &Path| std::fs::OpenOptions::new().write(true).open(p).is_ok();
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o444)).ok()?;
    if !writable(db) {
        return Some(None);
    }
    // Root writes whatever the mode; an immutable file stops root too.
    let status = Command::new("chattr").arg("+i").arg(db).status().ok()?;
    let guard = common::Immutable::adopt(db);
    (status.success() && !writable(db)).then_some(Some(guard))
}

fn says_read_only(e: &Error) -> bool {
    let message = e.to_string().to_lowercase();
    ["read-only", "readonly", "read only", "permission"]
        .iter()
        .any(|w| message.contains(w))
}

#[test]
fn a_read_only_database_file_gives_a_clear_error_and_stays_as_it_was() -> Result<()> {
    let (_dir, db) = closed_world()?;
    let before = std::fs::read(&db).expect("read the database");
    let Some(_guard) = make_read_only(&db) else {
        eprintln!("SKIPPED: this machine cannot make a file read-only for this user");
        return Ok(());
    };
    match Engine::open(&db) {
        // Refused at once: with a storage error that says why.
        Err(e) => {
            eprintln!("read-only: refused on open: {e}");
            assert!(
                matches!(e, Error::Storage(_)) && says_read_only(&e),
                "a clear error on open: {e:?} / {e}"
            );
        }
        // Or opened for reading: then every write fails with a storage error that
        // says why, and changes nothing.
        Ok(engine) => {
            let alice = engine.session_for(&"alice".parse()?)?;
            let calls: [(&str, Result<()>); 3] = [
                (
                    "create_project",
                    alice
                        .create_project("ml-team/new", ProjectOptions::default())
                        .map(drop),
                ),
                ("create_user", engine.create_user("bob").map(drop)),
                (
                    "set_project_description",
                    alice.set_project_description("ml-team/cls", "changed"),
                ),
            ];
            for (call, result) in calls {
                match result {
                    Err(e) => {
                        eprintln!("read-only: {call} refused: {e}");
                        assert!(
                            matches!(e, Error::Storage(_)) && says_read_only(&e),
                            "{call}: a clear error: {e:?} / {e}"
                        );
                    }
                    Ok(()) => panic!("{call}: wrote to a read-only database"),
                }
            }
        }
    }
    assert_eq!(
        std::fs::read(&db).expect("read the database"),
        before,
        "the read-only file is left byte for byte as it was"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// A full disk.

/// What the child prints about one call that filled the disk.
#[derive(Debug, Default)]
struct FillReport {
    created: Vec<String>,
    failed: Option<String>,
    error: String,
    unchanged: bool,
    reads_after: String,
    retry: Option<String>,
    integrity: Option<String>,
}

fn report_of(out: &Output) -> FillReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut r = FillReport::default();
    for line in stdout.lines() {
        let Some((_, rest)) = line.split_once("FILL ") else {
            continue;
        };
        let (tag, value) = rest.split_once(' ').unwrap_or((rest, ""));
        let value = value.to_owned();
        match tag {
            "created" => r.created.push(value),
            "failed" => r.failed = Some(value),
            "error" => r.error = value,
            "unchanged" => r.unchanged = value == "true",
            "reads" => r.reads_after = value,
            "retry" => r.retry = Some(value),
            "integrity" => r.integrity = Some(value),
            _ => {}
        }
    }
    r
}

fn description() -> String {
    let kb: usize = std::env::var("TURNSTILE_FAULT_DESCRIPTION_KB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
        .max(1);
    // Varied text, so that nothing along the way could shrink it. N8 allows 4,096
    // characters: CJK ideographs, 3 bytes each in UTF-8, carry 12 KB.
    let chars = (kb * 1024 / 3).clamp(1, 4096);
    (0..chars)
        .map(|i| {
            let offset = u32::try_from((i * 7919 + i / 26) % 2000).expect("below 2000");
            char::from_u32(0x4E00 + offset).expect("a CJK ideograph")
        })
        .collect()
}

/// Everything a failed call must leave as it was: the model and the audit log.
fn state(engine: &Engine) -> Result<(Snapshot, usize)> {
    Ok((
        engine.export()?,
        engine.audit_log(&AuditQuery::default())?.len(),
    ))
}

/// Creates projects with long descriptions until a call fails; prints a `FILL` line
/// per fact for the parent. Returns the name of the project whose creation failed.
fn fill_until_full(engine: &Engine) -> Result<Option<String>> {
    let alice = engine.session_for(&"alice".parse()?)?;
    let description = description();
    for n in 0..100_000 {
        let name = format!("ml-team/fill-{n}");
        let before = state(engine)?;
        let options = ProjectOptions {
            description: Some(description.clone()),
            ..Default::default()
        };
        match alice.create_project(&name, options) {
            Ok(_) => println!("FILL created {name}"),
            Err(e) => {
                println!("FILL failed {name}");
                println!("FILL error {e:?} / {e}");
                // Reads still work, and show the state from before the call.
                let after = state(engine);
                println!(
                    "FILL unchanged {}",
                    after.as_ref().is_ok_and(|after| *after == before)
                );
                let alice: Principal = "alice".parse()?;
                println!(
                    "FILL reads {:?}",
                    engine.check(&alice, "ml-team/cls", Action::Manage)
                );
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}

/// The child of the full-disk tests. With `TURNSTILE_FAULT_SETUP=tmpfs` it builds the
/// world itself (its directory is a fresh tmpfs), takes part of the space with a
/// filler file, fills the rest, then deletes the filler and retries the failed call.
#[test]
fn child_fill_the_disk() -> Result<()> {
    let Ok(db) = std::env::var(ENV_DB) else {
        return Ok(());
    };
    let db = PathBuf::from(db);
    let tmpfs = std::env::var(ENV_SETUP).is_ok_and(|v| v == "tmpfs");
    let filler = db.with_file_name("filler");
    if tmpfs {
        world(&Engine::open(&db)?)?;
        std::fs::write(&filler, vec![7u8; 64 * 1024]).expect("write the filler");
    }
    let engine = Engine::open(&db)?;
    let failed = fill_until_full(&engine)?;
    if tmpfs && let Some(name) = failed {
        std::fs::remove_file(&filler).expect("free the filler's space");
        let alice = engine.session_for(&"alice".parse()?)?;
        let retry = alice.create_project(
            &name,
            ProjectOptions {
                description: Some(description()),
                ..Default::default()
            },
        );
        println!("FILL retry {retry:?}");
        drop(engine);
        println!("FILL integrity {}", integrity(&db));
    }
    Ok(())
}

/// The checks common to both ways of filling the disk, once the child is done.
fn assert_failed_cleanly(report: &FillReport, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        report.failed.is_some(),
        "the disk never filled: {} projects created\n{stderr}",
        report.created.len()
    );
    assert!(
        !report.created.is_empty(),
        "the disk was full from the start, nothing was tested"
    );
    assert!(
        report.error.starts_with("Storage("),
        "a full disk is a storage error: {}",
        report.error
    );
    let message = report.error.to_lowercase();
    assert!(
        message.contains("full") || message.contains("disk") || message.contains("i/o"),
        "the message says what happened: {}",
        report.error
    );
    assert!(
        report.unchanged,
        "E3: the failed call left the model and the audit log as they were"
    );
    assert_eq!(report.reads_after, "Ok(true)", "reads go on working");
}

/// The database after the child, opened without any limit: whole, holding exactly the
/// calls that succeeded, and writable again.
fn assert_database_as_it_was(db: &Path, report: &FillReport, retried: bool) -> Result<()> {
    assert_eq!(integrity(db), "ok");
    let engine = Engine::open(db)?;
    let mut expected: Vec<String> = report.created.clone();
    expected.push("ml-team/cls".to_owned());
    let failed = report.failed.clone().expect("a failed call");
    if retried {
        expected.push(failed.clone());
    }
    expected.sort();
    let mut projects = engine.session_for(&"alice".parse()?)?.list_projects()?;
    projects.sort();
    assert_eq!(projects, expected, "exactly the calls that succeeded");
    let created_events = engine
        .audit_log(&AuditQuery::default())?
        .into_iter()
        .filter(|e| e.action == "project.create")
        .count();
    assert_eq!(created_events, expected.len(), "one event per project");
    let alice = engine.session_for(&"alice".parse()?)?;
    alice.create_project("ml-team/after", ProjectOptions::default())?;
    assert!(engine.check(&"alice".parse()?, "ml-team/after", Action::Delete)?);
    Ok(())
}

#[test]
fn a_full_disk_fails_the_call_cleanly_and_leaves_the_database_as_it_was() -> Result<()> {
    let (_dir, db) = closed_world()?;
    // Room for the file as it is and 512 KiB more, in 512-byte blocks.
    let size = std::fs::metadata(&db).expect("the database's size").len();
    let blocks = (size + 512 * 1024) / 512;
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f \"$1\" || exit 97; shift; exec \"$@\"",
            "sh",
        ])
        .arg(blocks.to_string())
        .arg(&exe)
        .args([
            "--exact",
            "child_fill_the_disk",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DB, &db)
        .output()
        .expect("run the child under a file size limit");
    let report = report_of(&out);
    assert_failed_cleanly(&report, &out);
    eprintln!(
        "file size limit: {} calls succeeded, then {}",
        report.created.len(),
        report.error
    );
    assert_database_as_it_was(&db, &report, false)
}

#[test]
fn a_full_tmpfs_fails_the_call_cleanly_and_the_call_succeeds_once_space_is_freed() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("acl.db");
    let exe = std::env::current_exe().expect("the test binary's path");
    // Unprivileged user namespaces first, then root's plain mount namespace.
    for unshare in [&["--user", "--map-root-user", "--mount"][..], &["--mount"]] {
        let out = Command::new("unshare")
            .args(unshare)
            .args([
                "/bin/sh",
                "-c",
                "mount -t tmpfs -o size=512k tmpfs \"$1\" || exit 97; shift; exec \"$@\"",
                "sh",
            ])
            .arg(dir.path())
            .arg(&exe)
            .args([
                "--exact",
                "child_fill_the_disk",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DB, &db)
            .env(ENV_SETUP, "tmpfs")
            .output();
        let Ok(out) = out else {
            break; // No `unshare` at all.
        };
        let ran = String::from_utf8_lossy(&out.stdout).contains("running 1 test");
        if !ran {
            continue; // The namespace or the mount was not allowed.
        }
        let report = report_of(&out);
        assert_failed_cleanly(&report, &out);
        let message = report.error.to_lowercase();
        assert!(
            message.contains("full"),
            "ENOSPC reads as a full disk: {}",
            report.error
        );
        assert_eq!(
            report.retry.as_deref(),
            Some(format!("Ok({:?})", report.failed.as_deref().unwrap_or_default()).as_str()),
            "once space is freed the same call succeeds"
        );
        assert_eq!(report.integrity.as_deref(), Some("ok"));
        eprintln!(
            "tmpfs: {} calls succeeded, then {}",
            report.created.len(),
            report.error
        );
        return Ok(());
    }
    eprintln!("SKIPPED: this machine does not let the test mount a private tmpfs");
    Ok(())
}

#[test]
fn e4_a_negative_schema_version_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("neg.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", -1)
            .expect("set version");
    }
    let opened = std::panic::catch_unwind(|| turnstile::Engine::open(&path));
    let err = opened.expect("no panic").expect_err("refused");
    assert!(matches!(err, turnstile::Error::Storage(_)), "{err}");
    assert!(err.to_string().contains("-1"), "{err}");
}

// ---------------------------------------------------------------------------------
// Read-only directories, non-regular paths, a held writer lock, an oversized log.

/// Defect 12: with the database's directory read-only (immutable, so that root is
/// stopped too), a read-only engine serves decisions, sessions and lists and creates
/// nothing; its writes fail with a storage error that says why.
#[test]
fn a_read_only_directory_serves_reads_through_a_read_only_engine() -> Result<()> {
    let (dir, db) = closed_world()?;
    let token = {
        let engine = Engine::open(&db)?;
        engine
            .issue_user_token("alice", "laptop", None)?
            .into_secret()
    };
    let before = files_in(dir.path());
    let _guard = Immutable::make(dir.path());
    assert!(
        std::fs::write(dir.path().join("probe"), b"x").is_err(),
        "the directory is read-only"
    );

    let options = turnstile::Options {
        read_only: true,
        ..Default::default()
    };
    let engine = Engine::open_with(&db, options)?;
    let alice: Principal = "alice".parse()?;
    assert!(engine.check(&alice, "ml-team/cls", Action::Delete)?);
    assert!(engine.authorize(&token, "ml-team/cls", Action::View)?);
    let session = engine.authenticate(&token)?;
    assert_eq!(session.list_projects()?, ["ml-team/cls"]);
    let refused = session
        .create_project("ml-team/new", ProjectOptions::default())
        .expect_err("a read-only engine writes nothing");
    assert!(says_read_only(&refused), "{refused}");
    drop(session);
    drop(engine);
    assert_eq!(files_in(dir.path()), before, "nothing created or changed");
    Ok(())
}

#[test]
fn d6_paths_that_are_not_regular_files_are_refused_before_anything_is_created() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("a directory");
    for (path, says) in [
        (fifo.as_path(), "not a regular file"),
        (sub.as_path(), "a directory"),
        (Path::new("/dev/null"), "not a regular file"),
    ] {
        let e = Engine::open(path).expect_err("refused");
        assert!(matches!(e, Error::Storage(_)), "{e:?}");
        assert!(e.to_string().contains(says), "{path:?}: {e}");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "nothing created beside them: {names:?}");
    for suffix in ["-journal", "-wal", "-shm"] {
        assert!(!Path::new(&format!("/dev/null{suffix}")).exists());
    }
    Ok(())
}

/// D2: a write that waits past the busy timeout for another process's writer fails
/// with `Busy { waited }`, writes nothing, and the same call succeeds once the lock is
/// free.
#[test]
fn d2_a_writer_held_past_the_busy_timeout_is_busy_not_a_storage_error() -> Result<()> {
    let (_dir, db) = closed_world()?;
    let options = turnstile::Options {
        busy_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let engine = Engine::open_with(&db, options)?;
    let other = raw(&db);
    other.execute_batch("BEGIN IMMEDIATE").expect("the lock");
    let e = engine.create_user("bob").expect_err("the lock is held");
    match &e {
        Error::Busy { waited } => assert!(waited.as_millis() >= 250, "{waited:?}"),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(e.kind(), turnstile::ErrorKind::Busy);
    assert!(e.to_string().contains("busy"), "{e}");
    other.execute_batch("COMMIT").expect("released");
    engine.create_user("bob")?;
    Ok(())
}

/// A workspace `bulk` of `projects` projects with this description, for one import.
fn bulk_snapshot(projects: usize, description: &str) -> Snapshot {
    let projects: Vec<_> = (0..projects)
        .map(|i| serde_json::json!({ "name": format!("p{i:06}"), "description": description }))
        .collect();
    serde_json::from_value(serde_json::json!({
        "users": ["importer"],
        "workspaces": [{
            "name": "bulk",
            "members": { "importer": "admin" },
            "projects": projects,
        }],
    }))
    .expect("a valid snapshot")
}

/// D2: a bulk import in one engine holds the writer lock for the whole import, and
/// another engine's ordinary write waits for it and succeeds (default timeout).
#[test]
fn d2_an_ordinary_write_waits_out_a_bulk_import_and_succeeds() -> Result<()> {
    let (_dir, db) = closed_world()?;
    let snapshot = bulk_snapshot(30_000, "");
    let importer = Engine::open(&db)?;
    let writer = Engine::open(&db)?;
    std::thread::scope(|s| -> Result<()> {
        let import = s.spawn(|| importer.import(&snapshot));
        // Wait until the import holds the lock, then write.
        std::thread::sleep(std::time::Duration::from_millis(50));
        writer.create_user("bob")?;
        import.join().expect("the import thread")?;
        Ok(())
    })?;
    let users = writer.export()?.users;
    assert!(users.iter().any(|u| u == "bob"), "{users:?}");
    Ok(())
}

/// D6: a foreign reader holding an old snapshot lets the log grow past 64 MiB; once it
/// lets go, the log is checkpointed and cut back to at most 64 MiB without waiting for
/// any later write.
#[test]
fn d6_the_log_shrinks_once_a_foreign_reader_lets_go() -> Result<()> {
    let (dir, db) = closed_world()?;
    let engine = Engine::open(&db)?;
    let reader = raw(&db);
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM projects;")
        .expect("a held snapshot");
    let snapshot = bulk_snapshot(20_000, &"d".repeat(4_000));
    engine.import(&snapshot)?;
    let wal = dir.path().join("acl.db-wal");
    let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    const LIMIT: u64 = 64 * 1024 * 1024;
    assert!(
        size() > LIMIT,
        "the held reader let the log grow: {}",
        size()
    );
    reader.execute_batch("COMMIT").expect("the reader lets go");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while size() > LIMIT && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(size() <= LIMIT, "the log stayed at {} bytes", size());
    assert_eq!(integrity(&db), "ok");
    Ok(())
}

/// A large import drops the secondary indexes and the A7/R7 triggers for the length of
/// its transaction and puts them back before it commits: after it, or after it fails,
/// the schema is exactly as before, and the triggers refuse what they refused.
#[test]
fn d3_a_bulk_import_puts_back_every_index_and_trigger() -> Result<()> {
    let (_dir, db) = closed_world()?;
    let schema = || -> Vec<(String, String)> {
        let conn = raw(&db);
        let mut stmt = conn
            .prepare("SELECT name, coalesce(sql, '') FROM sqlite_master ORDER BY name")
            .expect("a query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .map(|r| r.expect("a row"))
            .collect()
    };
    let before = schema();
    let engine = Engine::open(&db)?;
    let mut bad = bulk_snapshot(50_000, "");
    let again = bad.workspaces[0].projects[7].clone();
    bad.workspaces[0].projects.push(again);
    assert!(matches!(
        engine.import(&bad),
        Err(Error::ProjectAlreadyExists { .. })
    ));
    assert_eq!(
        schema(),
        before,
        "a failed bulk import leaves the schema as it was"
    );
    engine.import(&bulk_snapshot(50_000, ""))?;
    assert_eq!(schema(), before, "a bulk import puts everything back");
    // The A7 trigger is back: a grant for a user outside the workspace is refused.
    let refused = raw(&db).execute(
        "INSERT INTO user_grants (project_id, user_id, role)
         SELECT p.id, u.id, 1 FROM projects p, users u
         WHERE p.name = 'p000001' AND u.name = 'alice'",
        [],
    );
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(integrity(&db), "ok");
    Ok(())
}

/// A bulk snapshot whose every project grants `grantee` a role and the workspace's one
/// service account another, in workspace `workspace`.
fn bulk_snapshot_with_grants(workspace: &str, projects: usize) -> Snapshot {
    let projects: Vec<_> = (0..projects)
        .map(|i| {
            serde_json::json!({
                "name": format!("p{i:06}"),
                "members": { "grantee": "contributor" },
                "service_accounts": { "ci": "viewer" },
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "users": ["importer", "grantee"],
        "workspaces": [{
            "name": workspace,
            "members": { "importer": "admin", "grantee": "member" },
            "service_accounts": [{ "name": "ci" }],
            "projects": projects,
        }],
    }))
    .expect("a valid snapshot")
}

/// Grants whose project, user or service account does not exist.
fn orphan_grants(db: &Path) -> i64 {
    raw(db)
        .query_row(
            "SELECT (SELECT count(*) FROM user_grants g
                     WHERE g.project_id NOT IN (SELECT id FROM projects)
                        OR g.user_id NOT IN (SELECT id FROM users))
                  + (SELECT count(*) FROM service_account_grants g
                     WHERE g.project_id NOT IN (SELECT id FROM projects)
                        OR g.service_account_id NOT IN (SELECT id FROM service_accounts))",
            [],
            |r| r.get(0),
        )
        .expect("count orphan grants")
}

/// D2, D3: a bulk import (indexes and triggers suspended, see above) writes only
/// references to rows that exist, exactly the grants of the snapshot; a bad snapshot
/// fails with the same error as a small one and leaves nothing; and afterwards, whether
/// the import succeeded or failed, the engine's connection enforces foreign keys:
/// deleting a project takes its grants with it (ON DELETE CASCADE, which does nothing
/// while foreign keys are off).
#[test]
fn d3_a_bulk_import_writes_only_valid_references_and_foreign_keys_stay_enforced() -> Result<()> {
    let (_dir, db) = closed_world()?;
    let engine = Engine::open(&db)?;
    let snapshot = bulk_snapshot_with_grants("bulk", 50_000);
    engine.import(&snapshot)?;
    let violations: Vec<String> = {
        let conn = raw(&db);
        let mut stmt = conn.prepare("PRAGMA foreign_key_check").expect("a query");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("rows")
            .map(|r| r.expect("a row"))
            .collect()
    };
    assert!(violations.is_empty(), "{violations:?}");
    let exported = engine.export()?;
    let bulk = exported
        .workspaces
        .iter()
        .find(|w| w.name == "bulk")
        .expect("the imported workspace");
    assert_eq!(bulk.projects.len(), 50_000);
    for (got, wanted) in bulk.projects.iter().zip(&snapshot.workspaces[0].projects) {
        assert_eq!(
            (&got.name, &got.members, &got.service_accounts),
            (&wanted.name, &wanted.members, &wanted.service_accounts)
        );
    }
    let importer = engine.session_for(&"importer".parse()?)?;
    let grants = |project: &str| -> i64 {
        raw(&db)
            .query_row(
                "SELECT (SELECT count(*) FROM user_grants)
                      + (SELECT count(*) FROM service_account_grants)",
                [],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("count grants before deleting {project}: {e}"))
    };
    let before = grants("p000001");
    importer.delete_project("bulk/p000001")?;
    assert_eq!(
        grants("p000001"),
        before - 2,
        "the project's two grants went"
    );
    assert_eq!(orphan_grants(&db), 0);

    // A bad bulk snapshot: the error a small one gives, nothing written, and foreign
    // keys enforced again after the rollback.
    let mut bad = bulk_snapshot_with_grants("bulk-two", 50_000);
    bad.workspaces[0].projects[40_000]
        .members
        .insert("stranger".into(), turnstile::ProjectRole::Viewer);
    let mut small = bulk_snapshot_with_grants("bulk-two", 2);
    small.workspaces[0].projects[1]
        .members
        .insert("stranger".into(), turnstile::ProjectRole::Viewer);
    let (big_err, small_err) = (engine.import(&bad), engine.import(&small));
    assert!(
        matches!(&big_err, Err(Error::UserNotInWorkspace { .. })),
        "{big_err:?}"
    );
    assert_eq!(
        big_err.map_err(|e| e.to_string()),
        small_err.map_err(|e| e.to_string())
    );
    let left: i64 = raw(&db)
        .query_row(
            "SELECT (SELECT count(*) FROM workspaces WHERE name = 'bulk-two')
                  + (SELECT count(*) FROM users WHERE name = 'stranger')",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(left, 0, "the failed imports left nothing");
    let before = grants("p000002");
    importer.delete_project("bulk/p000002")?;
    assert_eq!(
        grants("p000002"),
        before - 2,
        "the project's two grants went"
    );
    assert_eq!(orphan_grants(&db), 0);
    assert_eq!(integrity(&db), "ok");
    Ok(())
}
