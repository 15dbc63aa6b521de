//! Crash consistency (SPEC D4, E3, L1, and the invariants of D3: S2, A4, A7): a child
//! process makes random management calls on two threads and is killed with SIGKILL at
//! a random moment, again and again. After every kill the database opens, `PRAGMA
//! integrity_check` says `ok`, every invariant holds, and replaying the audit log
//! from the start rebuilds exactly the model the database holds: every change has its
//! event and no event lacks its change. Nothing the child saw committed is lost. A
//! reader process runs beside all of it, across every kill, and must never get an
//! error nor read a snapshot that breaks an invariant.
//!
//! The child re-runs this test binary (`--exact child_churn`). Longer runs:
//! `TURNSTILE_CRASH_KILLS` (default 30) sets the number of kills, and
//! `TURNSTILE_CRASH_SEED` replays a run (the seed is printed), e.g.
//! `TURNSTILE_CRASH_KILLS=1000 cargo test --release --test crash -- --nocapture`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use turnstile::{
    AuditQuery, Engine, Error, Outcome, ProjectOptions, ProjectRole, Result, Snapshot, Visibility,
    WorkspaceRole, WorkspaceSettings,
};

const ENV_DB: &str = "TURNSTILE_CRASH_DB";
const ENV_ROUND: &str = "TURNSTILE_CRASH_ROUND";
const ENV_SEED: &str = "TURNSTILE_CRASH_CHILD_SEED";
const ENV_STOP: &str = "TURNSTILE_CRASH_READER_STOP";

const WORKSPACES: [&str; 2] = ["ml-team", "cv-team"];
const USERS: [&str; 5] = ["alice", "u1", "u2", "u3", "u4"];
const SERVICE_ACCOUNTS: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];
/// Small, so that the churn runs into it often (S2).
const SA_LIMIT: u32 = 3;
/// Threads of the child, each making calls.
const THREADS: usize = 2;

// ---------------------------------------------------------------------------------
// The child: random management calls until killed.

/// The child half: opens `TURNSTILE_CRASH_DB`, marks that it started, and makes random
/// management calls on [`THREADS`] threads until it is killed. Prints `OK` after every
/// call that succeeded, and `FATAL` (then exits) on any error that is not a refusal.
#[test]
fn child_churn() {
    let (Ok(db), Ok(round), Ok(seed)) = (
        std::env::var(ENV_DB),
        std::env::var(ENV_ROUND),
        std::env::var(ENV_SEED),
    ) else {
        return;
    };
    let seed: u64 = seed.parse().expect("a numeric seed");
    let engine = match Engine::open(&db) {
        Ok(engine) => engine,
        Err(e) => fatal(&format!("open: {e:?}")),
    };
    std::fs::write(format!("{db}.started-{round}"), b"").expect("write the start mark");
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let engine = &engine;
            let round = &round;
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(thread as u64));
                for n in 0.. {
                    let name = format!("p{round}x{thread}x{n}");
                    match churn(engine, &mut rng, &name) {
                        Ok(()) => println!("OK"),
                        Err(e) if is_refusal(&e) => println!("REFUSED"),
                        Err(e) => fatal(&format!("{e:?}")),
                    }
                }
            });
        }
    });
}

fn fatal(what: &str) -> ! {
    println!("FATAL {what}");
    std::process::exit(3)
}

/// An error the engine answers a call with, as opposed to a failure of storage.
fn is_refusal(e: &Error) -> bool {
    !matches!(e, Error::Storage(_) | Error::Random { .. })
}

/// Nothing to aim a call at (no project, no account): counted as a refused call.
fn nothing() -> Error {
    Error::InvalidToken
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> Option<&'a T> {
    items.choose(rng)
}

fn role(rng: &mut StdRng) -> ProjectRole {
    *[
        ProjectRole::Viewer,
        ProjectRole::Contributor,
        ProjectRole::Owner,
    ]
    .choose(rng)
    .expect("three roles")
}

/// One random management call, aimed at what exists (read from a fresh export) so
/// that most calls succeed.
fn churn(engine: &Engine, rng: &mut StdRng, new_project: &str) -> Result<()> {
    let snapshot = engine.export()?;
    let ws_name = *pick(rng, &WORKSPACES).expect("workspaces");
    let ws = snapshot
        .workspaces
        .iter()
        .find(|w| w.name == ws_name)
        .expect("the workspace exists");
    let admins: Vec<&String> = ws
        .members
        .iter()
        .filter(|(_, r)| **r == WorkspaceRole::Admin)
        .map(|(u, _)| u)
        .collect();
    let admin = pick(rng, &admins).expect("A4: a workspace has an admin");
    let admin = engine.session_for(&admin.parse()?)?;
    let members: Vec<&String> = ws.members.keys().collect();
    let non_members: Vec<&str> = USERS
        .iter()
        .copied()
        .filter(|u| !ws.members.contains_key(*u))
        .collect();
    let projects: Vec<String> = ws
        .projects
        .iter()
        .map(|p| format!("{}/{}", ws.name, p.name))
        .collect();
    let active: Vec<String> = ws
        .service_accounts
        .iter()
        .filter(|sa| sa.active)
        .map(|sa| format!("{}@{}", sa.name, ws.name))
        .collect();
    let inactive: Vec<String> = ws
        .service_accounts
        .iter()
        .filter(|sa| !sa.active)
        .map(|sa| format!("{}@{}", sa.name, ws.name))
        .collect();
    let project = pick(rng, &projects).cloned();
    // Keep the number of projects around a dozen.
    let op = if projects.len() > 12 && rng.random_bool(0.5) {
        1
    } else {
        rng.random_range(0..16)
    };
    let any_user = *pick(rng, &USERS).expect("users");
    let project = || project.clone().ok_or_else(nothing);
    match op {
        0 => {
            // A1: created by an admin, a member or an active service account.
            let creator = match rng.random_range(0..3) {
                0 => pick(rng, &members).map(|m| m.to_string()),
                1 => pick(rng, &active).cloned(),
                _ => None,
            };
            let options = ProjectOptions {
                workspace: Some(ws.name.clone()),
                visibility: Some(if rng.random_bool(0.3) {
                    Visibility::Workspace
                } else {
                    Visibility::Private
                }),
                ..Default::default()
            };
            match creator {
                Some(c) => engine
                    .session_for(&c.parse()?)?
                    .create_project(new_project, options),
                None => admin.create_project(new_project, options),
            }
            .map(drop)
        }
        1 => admin.delete_project(&project()?),
        2 => admin.set_project_visibility(
            &project()?,
            if rng.random_bool(0.5) {
                Visibility::Workspace
            } else {
                Visibility::Private
            },
        ),
        3 | 4 => admin.add_project_member(&project()?, any_user, role(rng)),
        5 => admin.remove_project_member(&project()?, any_user),
        6 => admin.set_project_member_role(&project()?, any_user, role(rng)),
        7 => {
            let user = pick(rng, &non_members).ok_or_else(nothing)?;
            let role = if rng.random_bool(0.3) {
                WorkspaceRole::Admin
            } else {
                WorkspaceRole::Member
            };
            admin.invite_to_workspace(&ws.name, user, role, rng.random_bool(0.5))
        }
        8 => admin.remove_workspace_member(&ws.name, any_user),
        9 => {
            let role = if rng.random_bool(0.5) {
                WorkspaceRole::Admin
            } else {
                WorkspaceRole::Member
            };
            admin.set_workspace_role(&ws.name, any_user, role)
        }
        10 => {
            let name = *pick(rng, &SERVICE_ACCOUNTS).expect("names");
            admin
                .create_service_account(&ws.name, name, rng.random_bool(0.5))
                .map(drop)
        }
        11 => admin.deactivate_service_account(pick(rng, &active).ok_or_else(nothing)?),
        12 => admin
            .reactivate_service_account(pick(rng, &inactive).ok_or_else(nothing)?)
            .map(drop),
        13 => {
            let sa = pick(rng, &active).ok_or_else(nothing)?;
            admin.add_project_service_account(&project()?, sa, role(rng))
        }
        14 => {
            let sa = pick(rng, &active).ok_or_else(nothing)?;
            if rng.random_bool(0.5) {
                admin.remove_project_service_account(&project()?, sa)
            } else {
                admin.set_project_service_account_role(&project()?, sa, role(rng))
            }
        }
        _ => admin
            .issue_service_account_token(pick(rng, &active).ok_or_else(nothing)?)
            .map(drop),
    }
}

/// The reader beside the churn, alive across every kill: reads until the file named
/// by `TURNSTILE_CRASH_READER_STOP` appears. Every read must succeed (D2), and every
/// snapshot it reads must satisfy the invariants (a reader never sees a half call).
/// Prints `READS n`, or `FATAL` and exits.
#[test]
fn child_reader() {
    let (Ok(db), Ok(stop)) = (std::env::var(ENV_DB), std::env::var(ENV_STOP)) else {
        return;
    };
    let engine = Engine::open(&db).unwrap_or_else(|e| fatal(&format!("open: {e:?}")));
    let alice: turnstile::Principal = "alice".parse().expect("a username");
    let mut reads = 0u64;
    loop {
        let last = Path::new(&stop).exists();
        let snapshot = engine
            .export()
            .unwrap_or_else(|e| fatal(&format!("export: {e:?}")));
        for ws in &snapshot.workspaces {
            if !ws.members.values().any(|r| *r == WorkspaceRole::Admin) {
                fatal(&format!("A4: {} has no admin", ws.name));
            }
            let active = ws.service_accounts.iter().filter(|sa| sa.active).count();
            if active > SA_LIMIT as usize {
                fatal(&format!("S2: {} has {active} active accounts", ws.name));
            }
            for p in &ws.projects {
                if let Some(u) = p.members.keys().find(|u| !ws.members.contains_key(*u)) {
                    fatal(&format!("A7: {u} holds a grant on {} unasked", p.name));
                }
                let project = format!("{}/{}", ws.name, p.name);
                match engine.check(&alice, &project, turnstile::Action::View) {
                    // Deleted since the snapshot: an answer, not a failure.
                    Ok(_) | Err(Error::ProjectNotFound { .. }) => {}
                    Err(e) => fatal(&format!("check {project}: {e:?}")),
                }
            }
        }
        if let Err(e) = engine.session_for(&alice).and_then(|s| s.list_projects()) {
            fatal(&format!("list_projects: {e:?}"));
        }
        reads += 1;
        if last {
            break;
        }
    }
    println!("READS {reads}");
}

// ---------------------------------------------------------------------------------
// The parent: kill, reopen, check.

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn setup(db: &Path) -> Result<()> {
    let engine = Engine::open(db)?;
    for u in USERS {
        engine.create_user(u)?;
    }
    for ws in WORKSPACES {
        engine.create_workspace(ws, "alice")?;
        engine
            .session_for(&"alice".parse()?)?
            .set_workspace_settings(
                ws,
                WorkspaceSettings {
                    service_account_limit: Some(SA_LIMIT),
                    ..Default::default()
                },
            )?;
    }
    Ok(())
}

#[test]
fn d4_killed_at_random_moments_the_database_stays_consistent() -> Result<()> {
    let kills = env_number("TURNSTILE_CRASH_KILLS").unwrap_or(30).max(1);
    let seed = env_number("TURNSTILE_CRASH_SEED").unwrap_or_else(rand::random);
    eprintln!("crash test: {kills} kills, TURNSTILE_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("crash.db");
    setup(&db)?;
    let exe = std::env::current_exe().expect("the test binary's path");
    let stop = dir.path().join("stop-reader");
    let mut reader = KillOnDrop(Some(
        Command::new(&exe)
            .args(["--exact", "child_reader", "--nocapture", "--test-threads=1"])
            .env(ENV_DB, &db)
            .env(ENV_STOP, &stop)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the reader"),
    ));
    let started = Instant::now();
    let mut committed_calls = 0;
    let mut refused_calls = 0;
    for round in 0..kills {
        let ok_events_before = ok_events(&db);
        let mut guard = KillOnDrop(Some(
            Command::new(&exe)
                .args(["--exact", "child_churn", "--nocapture", "--test-threads=1"])
                .env(ENV_DB, &db)
                .env(ENV_ROUND, round.to_string())
                .env(ENV_SEED, rng.random::<u64>().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn the child"),
        ));
        let child = guard.0.as_mut().expect("the child");
        // Mostly kill during the calls; sometimes while it is still starting.
        if rng.random_bool(0.85) {
            let mark = PathBuf::from(format!("{}.started-{round}", db.display()));
            let deadline = Instant::now() + Duration::from_secs(120);
            while !mark.exists() {
                if child.try_wait().expect("poll the child").is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "the child never started");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=50)));
        let exited_early = child.try_wait().expect("poll the child");
        if exited_early.is_none() {
            child.kill().expect("SIGKILL the child");
        }
        let status = child.wait().expect("reap the child");
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut stdout)
            .expect("the child's output");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)
            .expect("the child's errors");
        assert!(
            exited_early.is_none() && !stdout.contains("FATAL"),
            "round {round}: the child failed on its own ({status}):\n{stdout}\n{stderr}"
        );
        let printed = stdout.lines().filter(|l| l.ends_with("OK")).count() as i64;
        committed_calls += printed;
        refused_calls += stdout.lines().filter(|l| l.ends_with("REFUSED")).count();

        // The database opens, and is whole.
        let engine = Engine::open(&db)
            .unwrap_or_else(|e| panic!("round {round}: the database does not open: {e}"));
        check_storage(&db, round);
        check_invariants(&db, round);
        // D4: what the child saw committed is there; at most one call per thread
        // committed without having been reported before the kill.
        let gained = ok_events(&db) - ok_events_before;
        assert!(
            (printed..=printed + THREADS as i64).contains(&gained),
            "round {round}: {printed} calls reported committed, {gained} events appended"
        );
        check_audit_replays_to_the_model(&engine, round)?;
    }
    std::fs::write(&stop, b"").expect("stop the reader");
    let reader = reader
        .0
        .take()
        .expect("the reader")
        .wait_with_output()
        .expect("wait for the reader");
    let reader_out = String::from_utf8_lossy(&reader.stdout);
    assert!(
        reader.status.success() && !reader_out.contains("FATAL"),
        "the reader beside the crashes failed ({}):\n{reader_out}\n{}",
        reader.status,
        String::from_utf8_lossy(&reader.stderr)
    );
    let reads = reader_out
        .lines()
        .find_map(|l| l.split_once("READS ").map(|(_, n)| n.trim().to_owned()))
        .unwrap_or_default();
    eprintln!(
        "crash test: {kills} kills, {committed_calls} committed and {refused_calls} refused calls, \
         {reads} consistent reads beside them, {:.1?}",
        started.elapsed()
    );
    assert!(
        committed_calls >= kills as i64,
        "the child committed too few calls ({committed_calls}) for the kills to mean much"
    );
    Ok(())
}

/// A child process that must not outlive a failed test.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

mod common;
use common::raw;

fn ok_events(db: &Path) -> i64 {
    raw(db)
        .query_row(
            "SELECT count(*) FROM audit_events WHERE outcome = 'ok'",
            [],
            |r| r.get(0),
        )
        .expect("count events")
}

fn check_storage(db: &Path, round: u64) {
    let conn = raw(db);
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("run integrity_check");
    assert_eq!(integrity, ["ok"], "round {round}: integrity_check");
    let dangling: i64 = conn
        .prepare("PRAGMA foreign_key_check")
        .and_then(|mut s| Ok(s.query_map([], |_| Ok(()))?.count() as i64))
        .expect("run foreign_key_check");
    assert_eq!(dangling, 0, "round {round}: foreign_key_check");
}

/// Each query counts violations of one invariant.
const INVARIANTS: [(&str, &str); 7] = [
    (
        "no user grant of a deleted project",
        "SELECT count(*) FROM user_grants WHERE project_id NOT IN (SELECT id FROM projects)",
    ),
    (
        "no service account grant of a deleted project",
        "SELECT count(*) FROM service_account_grants
         WHERE project_id NOT IN (SELECT id FROM projects)",
    ),
    (
        "A7: a user's grant needs membership of the project's workspace",
        "SELECT count(*) FROM user_grants g JOIN projects p ON p.id = g.project_id
         WHERE NOT EXISTS (SELECT 1 FROM workspace_members m
                           WHERE m.workspace_id = p.workspace_id AND m.user_id = g.user_id)",
    ),
    (
        "R7: a service account's grants are in its own workspace",
        "SELECT count(*) FROM service_account_grants g
         JOIN projects p ON p.id = g.project_id
         JOIN service_accounts s ON s.id = g.service_account_id
         WHERE p.workspace_id <> s.workspace_id",
    ),
    (
        "S2: no more active service accounts than the limit",
        "SELECT count(*) FROM workspaces w
         WHERE (SELECT count(*) FROM service_accounts s
                WHERE s.workspace_id = w.id AND s.active = 1) > w.service_account_limit",
    ),
    (
        "A4: every workspace has an admin",
        "SELECT count(*) FROM workspaces w
         WHERE NOT EXISTS (SELECT 1 FROM workspace_members m
                           WHERE m.workspace_id = w.id AND m.role = 2)",
    ),
    (
        "S4, S5: an active service account has one live token, a deactivated one none",
        "SELECT count(*) FROM service_accounts s
         WHERE (SELECT count(*) FROM tokens t
                WHERE t.service_account_id = s.id AND t.revoked_at IS NULL) <> s.active",
    ),
];

fn check_invariants(db: &Path, round: u64) {
    let conn = raw(db);
    for (rule, sql) in INVARIANTS {
        let violations: i64 = conn
            .query_row(sql, [], |r| r.get(0))
            .expect("an invariant query");
        assert_eq!(violations, 0, "round {round}: {rule}");
    }
    let limits: i64 = conn
        .query_row(
            "SELECT count(*) FROM workspaces WHERE service_account_limit <> ?1",
            [SA_LIMIT],
            |r| r.get(0),
        )
        .expect("the limits");
    assert_eq!(limits, 0, "round {round}: the limits were not changed");
}

// ---------------------------------------------------------------------------------
// Replaying the audit log.

#[derive(Debug, Default, PartialEq)]
struct ModelWorkspace {
    members: BTreeMap<String, WorkspaceRole>,
    /// Short name → active.
    service_accounts: BTreeMap<String, bool>,
    projects: BTreeMap<String, ModelProject>,
}

#[derive(Debug, PartialEq)]
struct ModelProject {
    visibility: Visibility,
    members: BTreeMap<String, ProjectRole>,
    /// Short name → role.
    service_accounts: BTreeMap<String, ProjectRole>,
}

fn field<T: serde::de::DeserializeOwned>(details: &Value, name: &str, event: &str) -> T {
    serde_json::from_value(details[name].clone())
        .unwrap_or_else(|e| panic!("event {event}: field `{name}` of {details}: {e}"))
}

fn short(full: &str) -> String {
    full.split('@').next().unwrap_or_default().to_owned()
}

/// Rebuilds workspaces, members, service accounts, projects and grants from the
/// successful events alone, oldest first, and compares them with the database.
fn check_audit_replays_to_the_model(engine: &Engine, round: u64) -> Result<()> {
    let mut events = engine.audit_log(&AuditQuery::default())?;
    events.reverse();
    let mut model: BTreeMap<String, ModelWorkspace> = BTreeMap::new();
    for e in events.iter().filter(|e| e.outcome == Outcome::Ok) {
        let id = format!("#{} {} {}", e.id, e.action, e.target);
        let d = &e.details;
        let ws_name = e.workspace.clone().unwrap_or_default();
        let (project_ws, project_name) = e.target.split_once('/').unwrap_or_default();
        let ws = model.entry(ws_name.clone()).or_default();
        match e.action.as_str() {
            "user.create" | "workspace.settings.set" | "service_account.token.issue" => {}
            "workspace.create" => {
                ws.members
                    .insert(field(d, "first_admin", &id), WorkspaceRole::Admin);
            }
            "project.create" => {
                assert_eq!(project_ws, ws_name, "{id}: the event's workspace");
                let mut p = ModelProject {
                    visibility: field(d, "visibility", &id),
                    members: BTreeMap::new(),
                    service_accounts: BTreeMap::new(),
                };
                if e.actor.contains('@') {
                    p.service_accounts
                        .insert(short(&e.actor), ProjectRole::Owner);
                } else {
                    p.members.insert(e.actor.clone(), ProjectRole::Owner);
                }
                let before = ws.projects.insert(project_name.to_owned(), p);
                assert!(before.is_none(), "{id}: created twice");
            }
            "project.delete" => {
                existing(ws, &id, project_ws == ws_name, project_name);
                ws.projects.remove(project_name);
            }
            "project.visibility.set" => {
                existing(ws, &id, project_ws == ws_name, project_name).visibility =
                    field(d, "to", &id)
            }
            "project.member.add" => {
                let user: String = field(d, "user", &id);
                let before = existing(ws, &id, project_ws == ws_name, project_name)
                    .members
                    .insert(user, field(d, "role", &id));
                assert!(before.is_none(), "{id}: added twice");
            }
            "project.member.set_role" => {
                let user: String = field(d, "user", &id);
                let before = existing(ws, &id, project_ws == ws_name, project_name)
                    .members
                    .insert(user, field(d, "to", &id));
                assert_eq!(before, Some(field(d, "from", &id)), "{id}: from");
            }
            "project.member.remove" => {
                let user: String = field(d, "user", &id);
                assert!(
                    existing(ws, &id, project_ws == ws_name, project_name)
                        .members
                        .remove(&user)
                        .is_some(),
                    "{id}: no grant"
                );
            }
            "project.service_account.add" => {
                let sa = short(&field::<String>(d, "service_account", &id));
                let before = existing(ws, &id, project_ws == ws_name, project_name)
                    .service_accounts
                    .insert(sa, field(d, "role", &id));
                assert!(before.is_none(), "{id}: added twice");
            }
            "project.service_account.set_role" => {
                let sa = short(&field::<String>(d, "service_account", &id));
                let before = existing(ws, &id, project_ws == ws_name, project_name)
                    .service_accounts
                    .insert(sa, field(d, "to", &id));
                assert_eq!(before, Some(field(d, "from", &id)), "{id}: from");
            }
            "project.service_account.remove" => {
                let sa = short(&field::<String>(d, "service_account", &id));
                let removed = existing(ws, &id, project_ws == ws_name, project_name)
                    .service_accounts
                    .remove(&sa);
                assert!(removed.is_some(), "{id}: no grant");
            }
            "workspace.member.invite" => {
                let user: String = field(d, "user", &id);
                let before = ws.members.insert(user.clone(), field(d, "role", &id));
                assert!(before.is_none(), "{id}: invited twice");
                let granted: usize = field(d, "projects_granted", &id);
                if granted > 0 {
                    assert_eq!(granted, ws.projects.len(), "{id}: A9, every project");
                    for p in ws.projects.values_mut() {
                        p.members.insert(user.clone(), ProjectRole::Contributor);
                    }
                }
            }
            "workspace.member.set_role" => {
                let user: String = field(d, "user", &id);
                let before = ws.members.insert(user, field(d, "to", &id));
                assert_eq!(before, Some(field(d, "from", &id)), "{id}: from");
            }
            "workspace.member.remove" => {
                let user: String = field(d, "user", &id);
                assert!(ws.members.remove(&user).is_some(), "{id}: not a member");
                let mut removed = 0;
                for p in ws.projects.values_mut() {
                    removed += usize::from(p.members.remove(&user).is_some());
                }
                let reported: usize = field(d, "grants_removed", &id);
                assert_eq!(removed, reported, "{id}: A7, grants removed");
            }
            "service_account.create" => {
                let name = short(&e.target);
                let before = ws.service_accounts.insert(name.clone(), true);
                assert!(before.is_none(), "{id}: created twice");
                let granted: usize = field(d, "projects_granted", &id);
                if granted > 0 {
                    assert_eq!(granted, ws.projects.len(), "{id}: S1, every project");
                    for p in ws.projects.values_mut() {
                        p.service_accounts
                            .insert(name.clone(), ProjectRole::Contributor);
                    }
                }
            }
            "service_account.deactivate" | "service_account.reactivate" => {
                let active = e.action == "service_account.reactivate";
                let before = ws.service_accounts.insert(short(&e.target), active);
                assert_eq!(before, Some(!active), "{id}: was {}", !active);
            }
            other => panic!("{id}: the replay does not know `{other}`"),
        }
    }
    model.remove("");
    let actual = model_of(&engine.export()?);
    assert_eq!(
        actual, model,
        "round {round}: the database differs from its replayed audit log"
    );
    Ok(())
}

/// The project an event names, which must exist in the event's workspace.
fn existing<'w>(
    ws: &'w mut ModelWorkspace,
    id: &str,
    in_its_workspace: bool,
    name: &str,
) -> &'w mut ModelProject {
    assert!(
        in_its_workspace,
        "{id}: names a project of another workspace"
    );
    ws.projects
        .get_mut(name)
        .unwrap_or_else(|| panic!("{id}: names a project that does not exist"))
}

fn model_of(snapshot: &Snapshot) -> BTreeMap<String, ModelWorkspace> {
    snapshot
        .workspaces
        .iter()
        .map(|ws| {
            let model = ModelWorkspace {
                members: ws.members.clone(),
                service_accounts: ws
                    .service_accounts
                    .iter()
                    .map(|sa| (sa.name.clone(), sa.active))
                    .collect(),
                projects: ws
                    .projects
                    .iter()
                    .map(|p| {
                        let project = ModelProject {
                            visibility: p.visibility,
                            members: p.members.clone(),
                            service_accounts: p.service_accounts.clone(),
                        };
                        (p.name.clone(), project)
                    })
                    .collect(),
            };
            (ws.name.clone(), model)
        })
        .collect()
}
