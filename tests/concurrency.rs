//! Races across OS processes and threads on one database, a SQLite file or a PostgreSQL
//! database (SPEC B1, D2, D3, S2, A4, T4): the invariants hold whoever commits first,
//! and readers never see an error or a state that was never committed.
//!
//! Each race re-runs this test binary as worker processes (`--exact child_worker`).
//! A worker opens the database (the parent's file path or URL) with `Engine::open`,
//! runs one thread per job, signals that it is ready and waits for a "go" file, so that
//! every worker starts at once. Workers print one `OUTCOME=` line per job, which the
//! parent asserts on. Sleeps only poll the barrier or randomise timing; no assertion
//! depends on them.
//!
//! Longer runs: `TURNSTILE_RACE_ROUNDS` (default 4) repeats each race, and
//! `TURNSTILE_RACE_CYCLES` (default 40) sets how many changes each writer of the
//! reader/writer test commits, e.g.
//! `TURNSTILE_RACE_ROUNDS=50 TURNSTILE_RACE_CYCLES=500 cargo test --release --test concurrency`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

mod common;
use turnstile::{
    Action, Engine, Error, Options, Principal, ProjectOptions, ProjectRole, Result, RoleSource,
    Session, Visibility, WorkspaceRole, WorkspaceSettings,
};

const ENV_DB: &str = "TURNSTILE_RACE_DB";
const ENV_SYNC: &str = "TURNSTILE_RACE_SYNC";
const ENV_ID: &str = "TURNSTILE_RACE_ID";
const ENV_JOBS: &str = "TURNSTILE_RACE_JOBS";
const ENV_CACHE: &str = "TURNSTILE_RACE_CACHE";

/// How long a barrier or a worker may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(180);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rounds() -> usize {
    env_number("TURNSTILE_RACE_ROUNDS", 4).max(1)
}

fn cycles() -> usize {
    env_number("TURNSTILE_RACE_CYCLES", 40).max(1)
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("write a barrier file");
}

// ---------------------------------------------------------------------------------
// The worker side.

/// The worker half of every race: runs the jobs in `TURNSTILE_RACE_JOBS` (separated by
/// `|`), one thread each, on `TURNSTILE_RACE_DB`, after the barrier in
/// `TURNSTILE_RACE_SYNC`. Does nothing when run directly.
#[test]
fn child_worker() {
    let (Ok(db), Ok(sync), Ok(id), Ok(jobs)) = (
        std::env::var(ENV_DB),
        std::env::var(ENV_SYNC),
        std::env::var(ENV_ID),
        std::env::var(ENV_JOBS),
    ) else {
        return;
    };
    let sync = PathBuf::from(sync);
    let options = Options {
        decision_cache: std::env::var(ENV_CACHE).is_ok_and(|v| v == "1"),
        ..Default::default()
    };
    let jobs: Vec<&str> = jobs.split('|').collect();
    // Jobs on a new database open it themselves, after the barrier.
    let engine = (!jobs.iter().all(|j| j.starts_with("fresh_")))
        .then(|| Engine::open_with(&db, options).expect("a worker opens the database"));
    let ready = std::sync::Barrier::new(jobs.len() + 1);
    let outcomes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| {
                let (engine, sync, ready, db) = (&engine, &sync, &ready, &db);
                s.spawn(move || {
                    ready.wait();
                    wait_for(&sync.join("go"), "the go signal");
                    match engine {
                        Some(engine) => run_job(engine, job, sync),
                        None => fresh_job(Path::new(db), job),
                    }
                })
            })
            .collect();
        ready.wait();
        touch(&sync.join(format!("ready-{id}")));
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| "panic".to_owned()))
            .collect()
    });
    for (job, outcome) in jobs.iter().zip(outcomes) {
        println!("OUTCOME={outcome}\tJOB={job}");
    }
}

/// `ok`, or `err:<Variant>:<message>`.
fn outcome<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => {
            let debug = format!("{e:?}");
            let variant = debug
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_owned();
            format!("err:{variant}:{e}")
        }
    }
}

fn session<'e>(engine: &'e Engine, actor: &str) -> Result<Session<'e>> {
    engine.session_for(&actor.parse()?)
}

/// A short random pause, to vary the interleaving (never relied on for correctness).
fn jitter(max_ms: u64) {
    let ms = rand::rng().random_range(0..=max_ms);
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn run_job(engine: &Engine, job: &str, sync: &Path) -> String {
    let words: Vec<&str> = job.split_whitespace().collect();
    let number = |i: usize| -> usize { words[i].parse().expect("a number in a job") };
    match words.as_slice() {
        ["create_sa", actor, ws, name] => {
            outcome(session(engine, actor).and_then(|s| s.create_service_account(ws, name, false)))
        }
        ["reactivate_sa", actor, full] => {
            outcome(session(engine, actor).and_then(|s| s.reactivate_service_account(full)))
        }
        ["set_ws_role", actor, ws, user, role] => outcome(
            session(engine, actor).and_then(|s| s.set_workspace_role(ws, user, role.parse()?)),
        ),
        ["remove_ws_member", actor, ws, user] => {
            outcome(session(engine, actor).and_then(|s| s.remove_workspace_member(ws, user)))
        }
        ["create_project", actor, name] => outcome(
            session(engine, actor).and_then(|s| s.create_project(name, ProjectOptions::default())),
        ),
        ["toggle_member", actor, ws, user, _] => writer(sync, || {
            let s = session(engine, actor)?;
            for _ in 0..number(4) {
                s.invite_to_workspace(ws, user, WorkspaceRole::Member, true)?;
                jitter(2);
                s.remove_workspace_member(ws, user)?;
                jitter(2);
            }
            Ok(())
        }),
        ["grant_in_order", actor, user, prefix, _] => writer(sync, || {
            let s = session(engine, actor)?;
            for i in 1..=number(4) {
                s.add_project_member(&format!("{prefix}{i}"), user, ProjectRole::Viewer)?;
                jitter(3);
            }
            Ok(())
        }),
        ["toggle_visibility", actor, project, _] => writer(sync, || {
            let s = session(engine, actor)?;
            for _ in 0..number(3) {
                s.set_project_visibility(project, Visibility::Workspace)?;
                jitter(2);
                s.set_project_visibility(project, Visibility::Private)?;
                jitter(2);
            }
            Ok(())
        }),
        ["read", _, _, _] => {
            read_until_writers_finish(engine, number(1), number(2), number(3), sync)
        }
        _ => panic!("unknown job `{job}`"),
    }
}

/// `fresh_user NAME`: opens (and so creates and migrates) the database, then creates
/// user NAME and workspace `ws-NAME` with NAME as its admin.
fn fresh_job(db: &Path, job: &str) -> String {
    let Some(name) = job.strip_prefix("fresh_user ") else {
        panic!("unknown job `{job}`");
    };
    let engine = match Engine::open(db) {
        Ok(engine) => engine,
        Err(e) => return format!("{} (in Engine::open)", outcome::<()>(Err(e))),
    };
    if let Err(e) = engine.create_user(name) {
        return format!("{} (in create_user)", outcome::<()>(Err(e)));
    }
    outcome(engine.create_workspace(&format!("ws-{name}"), name))
}

/// Runs a writer's calls, then leaves a `done-` file for the readers to count.
fn writer(sync: &Path, calls: impl FnOnce() -> Result<()>) -> String {
    let result = outcome(calls());
    let id: u64 = rand::random();
    touch(&sync.join(format!("done-{id:016x}")));
    result
}

fn writers_done(sync: &Path) -> usize {
    std::fs::read_dir(sync)
        .expect("list the barrier directory")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("done-"))
        })
        .count()
}

// ---------------------------------------------------------------------------------
// The parent side.

/// One worker process: its jobs, one thread each, and whether it caches decisions.
struct Worker {
    jobs: Vec<String>,
    cache: bool,
}

impl Worker {
    fn new(jobs: &[String]) -> Self {
        Self {
            jobs: jobs.to_vec(),
            cache: false,
        }
    }
}

/// Started workers, all past the barrier.
struct Race {
    sync: tempfile::TempDir,
    children: Vec<Child>,
}

/// Spawns the workers, waits until every one has opened the database and is waiting,
/// then lets them all go at once.
fn start(db: &Path, workers: &[Worker]) -> Race {
    let sync = tempfile::tempdir().expect("a barrier directory");
    let exe = std::env::current_exe().expect("the test binary's path");
    let children = workers
        .iter()
        .enumerate()
        .map(|(id, w)| {
            Command::new(&exe)
                .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
                .env(ENV_DB, db)
                .env(ENV_SYNC, sync.path())
                .env(ENV_ID, id.to_string())
                .env(ENV_JOBS, w.jobs.join("|"))
                .env(ENV_CACHE, if w.cache { "1" } else { "0" })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a worker process")
        })
        .collect();
    for id in 0..workers.len() {
        wait_for(
            &sync.path().join(format!("ready-{id}")),
            "workers to be ready",
        );
    }
    touch(&sync.path().join("go"));
    Race { sync, children }
}

/// The outcomes printed by one finished worker, in job order.
fn outcomes_of(output: Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "worker failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.split_once("OUTCOME=").map(|(_, o)| o))
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .collect();
    assert!(!found.is_empty(), "worker printed no outcome: {stdout}");
    found
}

fn finish(child: Child) -> Vec<String> {
    outcomes_of(child.wait_with_output().expect("wait for a worker"))
}

/// Runs the workers to the end; every job's outcome, in worker and job order.
fn race(db: &Path, workers: &[Worker]) -> Vec<String> {
    let race = start(db, workers);
    let outcomes = race.children.into_iter().flat_map(finish).collect();
    drop(race.sync);
    outcomes
}

fn is_ok(o: &str) -> bool {
    o == "ok"
}

fn is_err(o: &str, variant: &str) -> bool {
    o.strip_prefix("err:")
        .and_then(|rest| rest.split(':').next())
        .is_some_and(|v| v == variant)
}

/// A fresh database of the run's backend (B1): a file, or a PostgreSQL database.
fn new_db() -> (common::TestDb, PathBuf) {
    let db = common::TestDb::fresh();
    let target = db.target().to_owned();
    (db, target)
}

fn count<'a>(db: &Path, sql: &str, params: impl AsRef<[&'a str]>) -> i64 {
    common::query_value(db, sql, params.as_ref())
}

/// Where the readers of a race find frank's token: beside neither a file nor a URL,
/// but at a name both sides derive from the database.
fn token_file(db: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    db.hash(&mut h);
    std::env::temp_dir().join(format!("turnstile-race-{:016x}.token", h.finish()))
}

/// Makes `alice` and `bob` both admins again, whoever of them is left.
fn restore_admins(engine: &Engine) -> Result<()> {
    let snapshot = engine.export()?;
    let ws = &snapshot.workspaces[0];
    let admin = ws
        .members
        .iter()
        .find(|(_, r)| **r == WorkspaceRole::Admin)
        .map(|(u, _)| u.clone())
        .expect("A4: the workspace has an admin");
    let s = session(engine, &admin)?;
    for user in ["alice", "bob"] {
        match ws.members.get(user) {
            Some(WorkspaceRole::Admin) => {}
            Some(WorkspaceRole::Member) => {
                s.set_workspace_role("ml-team", user, WorkspaceRole::Admin)?
            }
            None => s.invite_to_workspace("ml-team", user, WorkspaceRole::Admin, false)?,
        }
    }
    Ok(())
}

/// Projects `p-1..=p-PLAIN` and `q-1..=q-ORDERED` of `ml-team`.
const PLAIN: usize = 4;
const ORDERED: usize = 32;

/// A reader's loop, until all `writers` are done: every call must succeed, and no
/// answer may come from a state that was never committed.
///
/// - `dave` is invited with `add_to_all_projects` and removed, again and again: one
///   call grants or removes `contributor` on every project at once, so a list of his
///   projects (one read transaction) holds all of them or none.
/// - `frank` is granted `viewer` on `q-1`, `q-2`, ... in that order, one commit each:
///   once a reader has seen his grant on `q-j`, a later check of `q-i`, `i <= j`, that
///   denies him would be an uncommitted order or a stale answer (T4).
/// - `p-1` flips between `private` and `workspace`; on the other plain projects dave
///   is never more than `contributor`.
fn read_until_writers_finish(
    engine: &Engine,
    plain: usize,
    ordered: usize,
    writers: usize,
    sync: &Path,
) -> String {
    let mut passes = 0u64;
    let mut frank_seen_up_to = 0;
    let started = Instant::now();
    let result = (|| -> std::result::Result<(), String> {
        let dave: Principal = "dave".parse().map_err(|e| format!("{e}"))?;
        let frank: Principal = "frank".parse().map_err(|e| format!("{e}"))?;
        let erin: Principal = "erin".parse().map_err(|e| format!("{e}"))?;
        // Beside the database: see the test.
        let db = PathBuf::from(std::env::var(ENV_DB).map_err(|e| e.to_string())?);
        let token =
            std::fs::read_to_string(token_file(&db)).map_err(|e| format!("frank's token: {e}"))?;
        let err = |what: &str, e: Error| format!("error from {what}: {e:?}");
        loop {
            // Whether the writers had all finished before this pass began.
            let last = writers_done(sync) == writers;
            if started.elapsed() > PATIENCE {
                return Err("the writers never finished".into());
            }
            let dave_session = engine
                .session_for(&dave)
                .map_err(|e| err("session_for", e))?;
            let seen = dave_session
                .list_projects()
                .map_err(|e| err("list_projects", e))?;
            if !(seen.is_empty() || seen.len() == plain + ordered) {
                return Err(format!(
                    "dave sees {} of {} projects: {seen:?}",
                    seen.len(),
                    plain + ordered
                ));
            }
            for i in (1..=ordered).rev() {
                let project = format!("ml-team/q-{i}");
                let granted = engine
                    .check(&frank, &project, Action::View)
                    .map_err(|e| err("check", e))?;
                if granted {
                    frank_seen_up_to = frank_seen_up_to.max(i);
                } else if i <= frank_seen_up_to {
                    return Err(format!(
                        "frank was seen granted on q-{frank_seen_up_to}, then not on q-{i}"
                    ));
                }
            }
            for k in 2..=plain {
                let project = format!("ml-team/p-{k}");
                let access = engine
                    .explain(&dave, &project)
                    .map_err(|e| err("explain", e))?;
                if let Some(a) = access
                    && (a.role != ProjectRole::Contributor || a.source != RoleSource::ExplicitGrant)
                {
                    return Err(format!("dave has {a:?} on {project}"));
                }
                if engine
                    .check(&dave, &project, Action::Manage)
                    .map_err(|e| err("check", e))?
                {
                    return Err(format!("dave may manage {project}"));
                }
            }
            engine
                .authorize(token.trim(), "ml-team/q-1", Action::View)
                .map_err(|e| err("authorize", e))?;
            engine
                .check(&erin, "ml-team/p-1", Action::Manage)
                .map_err(|e| err("check", e))?;
            passes += 1;
            if last {
                // Every writer has committed its last change: the final state.
                if frank_seen_up_to != ordered {
                    return Err(format!(
                        "after the writers finished, frank is seen only up to q-{frank_seen_up_to}"
                    ));
                }
                if !seen.is_empty() {
                    return Err("after the writers finished, dave still sees projects".into());
                }
                return Ok(());
            }
        }
    })();
    match result {
        Ok(()) => format!("ok passes={passes}"),
        Err(violation) => format!("violation after {passes} passes: {violation}"),
    }
}

// Every test below runs once per backend: `sqlite::name` and `postgres::name` (B1,
// tests/common `backend_tests!`; parentheses, so that rustfmt formats them).
common::backend_tests!(
    // ---------------------------------------------------------------------------------
    // D1, D2: a new database.

    #[test]
    fn d2_processes_and_threads_creating_one_new_database_at_once_all_succeed() -> Result<()> {
        // Four processes of sixteen threads, each thread with its own engine: 64 opens
        // of one file that does not exist yet, all at once, repeated on a new file. Each
        // round catches a lost race only sometimes (about one in six on a 2-core machine),
        // hence the many rounds.
        const PROCESSES: usize = 4;
        const THREADS: usize = 16;
        let openers = PROCESSES * THREADS;
        for r in 0..rounds() * 4 {
            let (_dir, db) = new_db();
            let jobs: Vec<String> = (0..openers).map(|i| format!("fresh_user u{i}")).collect();
            let workers: Vec<Worker> = jobs.chunks(THREADS).map(Worker::new).collect();
            let outcomes = race(&db, &workers);
            let failures: Vec<&String> = outcomes.iter().filter(|o| !is_ok(o)).collect();
            assert!(
                failures.is_empty(),
                "round {r}: D2, every opener opens the new file, migrates it or sees it \
                 migrated, and writes, without ever seeing SQLITE_BUSY: {failures:#?}"
            );
            let engine = Engine::open(&db)?;
            let snapshot = engine.export()?;
            assert_eq!(snapshot.users.len(), openers, "round {r}");
            assert_eq!(snapshot.workspaces.len(), openers, "round {r}");
            if _dir.is_postgres() {
                continue;
            }
            let conn = rusqlite::Connection::open(&db).expect("open with rusqlite");
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                .expect("the journal mode");
            assert_eq!(mode, "wal", "round {r}: D2");
            let integrity: String = conn
                .query_row("PRAGMA integrity_check", [], |row| row.get(0))
                .expect("integrity_check");
            assert_eq!(integrity, "ok", "round {r}");
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // S2: the last service account slot.

    #[test]
    fn s2_eight_processes_race_for_the_last_service_account_slot() -> Result<()> {
        let (_dir, db) = new_db();
        let engine = Engine::open(&db)?;
        engine.create_user("alice")?;
        engine.create_workspace("ml-team", "alice")?;
        let alice = session(&engine, "alice")?;
        for name in ["sa-0", "sa-1", "d-0", "d-1", "d-2", "d-3"] {
            alice.create_service_account("ml-team", name, false)?;
        }
        for r in 0..rounds() {
            // Every `d-*` account deactivated again, and exactly one slot left.
            for d in 0..4 {
                match alice.deactivate_service_account(&format!("d-{d}@ml-team")) {
                    Ok(()) | Err(Error::ServiceAccountNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let active = alice.workspace_status("ml-team")?.active_service_accounts;
            let limit = active + 1;
            alice.set_workspace_settings(
                "ml-team",
                WorkspaceSettings {
                    service_account_limit: Some(limit),
                    ..Default::default()
                },
            )?;
            // Round 0, 3, ...: eight processes create new accounts. Round 1, 4, ...: four
            // create and four reactivate deactivated ones. Round 2, 5, ...: the same eight
            // jobs as four processes of two threads.
            let creators = if r % 3 == 0 { 8 } else { 4 };
            let jobs: Vec<String> = (0..creators)
                .map(|i| format!("create_sa alice ml-team r{r}-c{i}"))
                .chain((creators..8).map(|i| format!("reactivate_sa alice d-{}@ml-team", i - 4)))
                .collect();
            let workers: Vec<Worker> = if r % 3 == 2 {
                let (creators, reactivators) = jobs.split_at(4);
                creators
                    .iter()
                    .zip(reactivators)
                    .map(|(c, a)| Worker::new(&[c.clone(), a.clone()]))
                    .collect()
            } else {
                jobs.chunks(1).map(Worker::new).collect()
            };
            let outcomes = race(&db, &workers);
            assert_eq!(outcomes.len(), 8);
            let winners = outcomes.iter().filter(|o| is_ok(o)).count();
            assert_eq!(
                winners, 1,
                "round {r}: exactly one takes the slot: {outcomes:#?}"
            );
            assert!(
                outcomes
                    .iter()
                    .all(|o| is_ok(o) || is_err(o, "ServiceAccountLimitReached")),
                "round {r}: the others are refused with ServiceAccountLimitReached: {outcomes:#?}"
            );
            assert_eq!(
                alice.workspace_status("ml-team")?.active_service_accounts,
                limit
            );
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM service_accounts WHERE active",
                    []
                ),
                i64::from(limit),
                "round {r}: the table agrees"
            );
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM audit_events WHERE outcome = 'ok'
                     AND action IN ('service_account.create', 'service_account.reactivate')
                     AND id > (SELECT max(id) FROM audit_events
                               WHERE action = 'workspace.settings.set')",
                    []
                ),
                1,
                "round {r}: one success, one event"
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // A4: the last admin.

    #[test]
    fn a4_two_admins_demoting_or_removing_at_once_leave_one_admin() -> Result<()> {
        let (_dir, db) = new_db();
        let engine = Engine::open(&db)?;
        for u in ["alice", "bob", "carol"] {
            engine.create_user(u)?;
        }
        engine.create_workspace("ml-team", "alice")?;
        session(&engine, "alice")?.invite_to_workspace(
            "ml-team",
            "carol",
            WorkspaceRole::Member,
            false,
        )?;
        // (mode, alice's job, bob's job, the error the loser must get)
        let modes: [(&str, &str, &str, &[&str]); 4] = [
            (
                "demote each other",
                "set_ws_role alice ml-team bob member",
                "set_ws_role bob ml-team alice member",
                &["LastAdmin", "PermissionDenied", "WorkspaceNotFound"],
            ),
            (
                "demote themselves",
                "set_ws_role alice ml-team alice member",
                "set_ws_role bob ml-team bob member",
                &["LastAdmin"],
            ),
            (
                "remove each other",
                "remove_ws_member alice ml-team bob",
                "remove_ws_member bob ml-team alice",
                &["LastAdmin", "PermissionDenied", "WorkspaceNotFound"],
            ),
            (
                "remove themselves",
                "remove_ws_member alice ml-team alice",
                "remove_ws_member bob ml-team bob",
                &["LastAdmin"],
            ),
        ];
        for r in 0..rounds() {
            for (mode, a, b, loser_errors) in modes {
                restore_admins(&engine)?;
                let admins = "SELECT count(*) FROM workspace_members WHERE role = 2";
                assert_eq!(count(&db, admins, []), 2);
                let outcomes = race(
                    &db,
                    &[Worker::new(&[a.to_owned()]), Worker::new(&[b.to_owned()])],
                );
                let winners = outcomes.iter().filter(|o| is_ok(o)).count();
                assert_eq!(winners, 1, "round {r}, {mode}: one succeeds: {outcomes:#?}");
                let loser = outcomes.iter().find(|o| !is_ok(o)).expect("a loser");
                assert!(
                    loser_errors.iter().any(|v| is_err(loser, v)),
                    "round {r}, {mode}: the loser is refused with one of {loser_errors:?}: {loser}"
                );
                assert_eq!(
                    count(&db, admins, []),
                    1,
                    "round {r}, {mode}: A4, the workspace keeps exactly one admin"
                );
                let snapshot = engine.export()?;
                assert_eq!(
                    snapshot.workspaces[0]
                        .members
                        .values()
                        .filter(|r| **r == WorkspaceRole::Admin)
                        .count(),
                    1,
                    "round {r}, {mode}: the API agrees"
                );
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Project names.

    #[test]
    fn two_creators_race_for_one_project_name_and_one_wins() -> Result<()> {
        let (_dir, db) = new_db();
        let engine = Engine::open(&db)?;
        for u in ["alice", "bob"] {
            engine.create_user(u)?;
        }
        engine.create_workspace("ml-team", "alice")?;
        session(&engine, "alice")?.invite_to_workspace(
            "ml-team",
            "bob",
            WorkspaceRole::Member,
            false,
        )?;
        for r in 0..rounds() {
            // The same name in different spellings (N3: case-insensitive). Every other
            // round each process races with two threads.
            let spell = |s: &str| format!("ml-team/{s}-{r}");
            let (alice_jobs, bob_jobs) = if r % 2 == 0 {
                (
                    vec![format!("create_project alice {}", spell("Race"))],
                    vec![format!("create_project bob {}", spell("race"))],
                )
            } else {
                (
                    vec![
                        format!("create_project alice {}", spell("Race")),
                        format!("create_project alice {}", spell("RACE")),
                    ],
                    vec![
                        format!("create_project bob {}", spell("race")),
                        format!("create_project bob {}", spell("rAcE")),
                    ],
                )
            };
            let outcomes = race(&db, &[Worker::new(&alice_jobs), Worker::new(&bob_jobs)]);
            let winners = outcomes.iter().filter(|o| is_ok(o)).count();
            assert_eq!(winners, 1, "round {r}: one creator wins: {outcomes:#?}");
            assert!(
                outcomes
                    .iter()
                    .all(|o| is_ok(o) || is_err(o, "ProjectAlreadyExists")),
                "round {r}: the others get ProjectAlreadyExists: {outcomes:#?}"
            );
            let key = format!("race-{r}");
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM projects WHERE name_key = ?1",
                    [key.as_str()]
                ),
                1,
                "round {r}: one project"
            );
            let creator: String = common::query_value(
                &db,
                "SELECT actor FROM audit_events WHERE action = 'project.create'
                 AND outcome = 'ok' AND lower(target) = ?1",
                &[format!("ml-team/{key}").as_str()],
            );
            // A1: the winner, and only the winner, holds the owner grant.
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM user_grants g JOIN projects p ON p.id = g.project_id
                     JOIN users u ON u.id = g.user_id
                     WHERE p.name_key = ?1 AND g.role = 3 AND u.name = ?2",
                    [key.as_str(), creator.as_str()]
                ),
                1,
                "round {r}: {creator} owns what it created"
            );
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM user_grants g JOIN projects p ON p.id = g.project_id
                     WHERE p.name_key = ?1",
                    [key.as_str()]
                ),
                1,
                "round {r}: the loser left no grant behind"
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Readers during writes.

    #[test]
    fn d2_readers_never_fail_nor_see_uncommitted_states_while_writers_change_grants() -> Result<()>
    {
        let (dir, db) = new_db();
        let engine = Engine::open(&db)?;
        for u in ["alice", "dave", "erin", "frank"] {
            engine.create_user(u)?;
        }
        engine.create_workspace("ml-team", "alice")?;
        let alice = session(&engine, "alice")?;
        for u in ["erin", "frank"] {
            alice.invite_to_workspace("ml-team", u, WorkspaceRole::Member, false)?;
        }
        for i in 1..=PLAIN {
            alice.create_project(&format!("ml-team/p-{i}"), ProjectOptions::default())?;
        }
        for i in 1..=ORDERED {
            alice.create_project(&format!("ml-team/q-{i}"), ProjectOptions::default())?;
        }
        let token = engine.issue_user_token("frank", "reader", None)?;
        let _db_guard = &dir;
        std::fs::write(token_file(&db), token.secret()).expect("write the token");

        let cycles = cycles();
        let writers = [
            format!("toggle_member alice ml-team dave {cycles}"),
            format!("grant_in_order alice frank ml-team/q- {ORDERED}"),
            format!("toggle_visibility alice ml-team/p-1 {cycles}"),
        ];
        let read = format!("read {PLAIN} {ORDERED} {}", writers.len());
        // Each writer process also reads on a second thread, through the same engine;
        // two more processes only read, on two threads each: one through SQL, one
        // through the never-stale decision cache.
        let mut workers: Vec<Worker> = writers
            .iter()
            .map(|w| Worker::new(&[w.clone(), read.clone()]))
            .collect();
        for cache in [false, true] {
            workers.push(Worker {
                jobs: vec![read.clone(), read.clone()],
                cache,
            });
        }
        let outcomes = race(&db, &workers);
        let _ = std::fs::remove_file(token_file(&db));
        let (writer_outcomes, reader_outcomes): (Vec<&String>, Vec<&String>) =
            outcomes.iter().partition(|o| !o.starts_with("ok passes="));
        assert_eq!(
            writer_outcomes,
            vec!["ok"; writers.len()],
            "every writer's call succeeds, and every reader passes: {outcomes:#?}"
        );
        assert_eq!(reader_outcomes.len(), 7, "{outcomes:#?}");
        // The final state, as the parent's engine sees it.
        let frank: Principal = "frank".parse()?;
        for i in 1..=ORDERED {
            assert!(engine.check(&frank, &format!("ml-team/q-{i}"), Action::View)?);
        }
        assert!(session(&engine, "dave")?.list_projects()?.is_empty());
        eprintln!("readers: {reader_outcomes:?}");
        Ok(())
    }
);
