//! What only PostgreSQL has to prove (SPEC B1–B4): URLs choose the backend, a newer
//! schema is refused untouched, serializable writes retried under contention keep the
//! invariants, a revocation holds for the very next call of another engine, and
//! `turnstile migrate` round-trips the standard workload between the backends.
//!
//! Every test here needs `TURNSTILE_TEST_POSTGRES_URL` (see `scripts/pg-throwaway.sh`).
//! Without it each says `SKIPPED` on stderr; under `CI=true` each fails instead.

mod common;

#[path = "../benches/standard/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::process::Command;
use std::time::{Duration, Instant};

use turnstile::{Action, Engine, Error, Options, Result, WorkspaceRole, WorkspaceSettings};

#[test]
fn b1_engine_open_takes_postgres_and_sqlite_urls() -> Result<()> {
    // A `sqlite:` URL is a file, on any machine.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("acl.db");
    let engine = Engine::open(format!("sqlite:{}", file.display()))?;
    engine.create_user("alice")?;
    drop(engine);
    assert!(file.exists(), "B1: `sqlite:PATH` opens the file PATH");

    let Some(server) = common::require_postgres("b1_engine_open_takes_postgres_and_sqlite_urls")
    else {
        return Ok(());
    };
    let db = common::TestDb::postgres(&server);
    let url = db.target().to_str().expect("a URL").to_owned();
    assert!(url.starts_with("postgres://"));
    let engine = Engine::open(&url)?;
    engine.create_user("alice")?;
    engine.create_workspace("ml-team", "alice")?;
    let other = Engine::open(url.replacen("postgres://", "postgresql://", 1))?;
    assert_eq!(other.export()?.users, ["alice"], "B1: both URL schemes");
    Ok(())
}

#[test]
fn b4_newer_postgres_schema_is_refused_and_left_untouched() -> Result<()> {
    let Some(server) =
        common::require_postgres("b4_newer_postgres_schema_is_refused_and_left_untouched")
    else {
        return Ok(());
    };
    let db = common::TestDb::postgres(&server);
    let engine = db.open()?;
    engine.create_user("alice")?;
    drop(engine);
    let url = db.target().to_str().expect("a URL").to_owned();
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    raw.batch_execute("UPDATE turnstile_schema SET version = 99")
        .expect("pretend a newer turnstile wrote it");
    for read_only in [false, true] {
        let options = Options {
            read_only,
            ..Options::default()
        };
        match Engine::open_with(&url, options) {
            Err(Error::SchemaTooNew { found: 99, .. }) => {}
            other => panic!("B4: a newer schema is refused, got {other:?}"),
        }
    }
    let version: i32 = raw
        .query_one("SELECT version FROM turnstile_schema", &[])
        .expect("the version")
        .get(0);
    let users: i64 = raw
        .query_one("SELECT count(*) FROM users", &[])
        .expect("the users")
        .get(0);
    assert_eq!((version, users), (99, 1), "B4: left untouched");
    Ok(())
}

#[test]
fn b4_a_version_2_postgres_schema_gets_the_check_index_and_the_notifications() -> Result<()> {
    let test = "b4_a_version_2_postgres_schema_gets_the_check_index_and_the_notifications";
    let Some(server) = common::require_postgres(test) else {
        return Ok(());
    };
    let db = common::TestDb::postgres(&server);
    let engine = db.open()?;
    engine.create_user("alice")?;
    engine.create_workspace("ml-team", "alice")?;
    engine
        .session_for(&"alice".parse()?)?
        .create_project("ml-team/Classification", Default::default())?;
    drop(engine);
    let url = db.target().to_str().expect("a URL").to_owned();
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let notifying = |raw: &mut postgres::Client| -> i64 {
        raw.query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%\\_notify'",
            &[],
        )
        .expect("count the triggers")
        .get(0)
    };
    assert_eq!(notifying(&mut raw), 8, "B3: every table a decision reads");
    raw.batch_execute(
        "DROP INDEX projects_by_name;
         DROP FUNCTION turnstile_notify_change() CASCADE;
         UPDATE turnstile_schema SET version = 2",
    )
    .expect("back to version 2");
    assert_eq!(notifying(&mut raw), 0);

    let engine = Engine::open(&url)?;
    let version: i32 = raw
        .query_one("SELECT version FROM turnstile_schema", &[])
        .expect("the version")
        .get(0);
    let index: Option<String> = raw
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'projects_by_name'",
            &[],
        )
        .map(|r| r.get(0))
        .ok();
    assert_eq!((version, notifying(&mut raw)), (4, 8), "B4: migrated");
    assert!(
        index
            .as_deref()
            .is_some_and(|i| i.contains("INCLUDE (visibility)")),
        "B4: the upgrade creates projects_by_name, got {index:?}"
    );
    assert!(engine.check(&"alice".parse()?, "ml-team/classification", Action::Manage)?);
    Ok(())
}

#[test]
fn b2_serializable_writers_from_many_engines_all_succeed_and_keep_the_sa_limit() -> Result<()> {
    let Some(server) = common::require_postgres(
        "b2_serializable_writers_from_many_engines_all_succeed_and_keep_the_sa_limit",
    ) else {
        return Ok(());
    };
    const THREADS: usize = 8;
    let db = common::TestDb::postgres(&server);
    let engine = db.open()?;
    engine.create_user("alice")?;
    engine.create_workspace("ml-team", "alice")?;
    for i in 0..THREADS {
        engine.create_user(&format!("u{i}"))?;
    }
    let alice = engine.session_for(&"alice".parse()?)?;
    alice.create_project("ml-team/shared", Default::default())?;
    alice.set_workspace_settings(
        "ml-team",
        WorkspaceSettings {
            allow_public_projects: Some(false),
            service_account_limit: Some(3),
        },
    )?;
    let rollbacks = |engine: &Engine| -> i64 {
        let _ = engine;
        let mut raw = postgres::Client::connect(&server, postgres::NoTls).expect("connect");
        raw.query_one(
            "SELECT coalesce(sum(xact_rollback), 0)::bigint FROM pg_stat_database",
            &[],
        )
        .expect("stats")
        .get(0)
    };
    let before = rollbacks(&engine);
    // Each thread, on an engine of its own (a process of its own, as far as the
    // database can tell), invites a member, grants on the one shared project and
    // tries for a service-account slot: writes that read what the others write.
    let outcomes: Vec<(Result<()>, Result<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let db = &db;
                s.spawn(move || {
                    let engine = db.open().expect("an engine per thread");
                    let alice = engine
                        .session_for(&"alice".parse().expect("a name"))
                        .expect("alice");
                    let user = format!("u{i}");
                    let member = alice
                        .invite_to_workspace("ml-team", &user, WorkspaceRole::Member, false)
                        .and_then(|()| {
                            alice.add_project_member(
                                "ml-team/shared",
                                &user,
                                turnstile::ProjectRole::Viewer,
                            )
                        });
                    let sa = alice
                        .create_service_account("ml-team", &format!("sa-{i}"), false)
                        .map(|t| t.principal.to_string());
                    (member, sa)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    for (member, _) in &outcomes {
        assert!(member.is_ok(), "B2: every member call commits: {member:?}");
    }
    let slots = outcomes.iter().filter(|(_, sa)| sa.is_ok()).count();
    for (_, sa) in &outcomes {
        assert!(
            matches!(sa, Ok(_) | Err(Error::ServiceAccountLimitReached { .. })),
            "B2: an SA call commits or meets the limit: {sa:?}"
        );
    }
    assert_eq!(slots, 3, "S2 on PostgreSQL: exactly the limit wins");
    assert_eq!(
        alice.workspace_status("ml-team")?.active_service_accounts,
        3
    );
    assert_eq!(alice.project_members("ml-team/shared")?.len(), THREADS + 1);
    eprintln!(
        "b2: {} transactions rolled back on the server (retried serialization failures among them)",
        rollbacks(&engine) - before
    );
    Ok(())
}

#[test]
fn b3_a_revocation_holds_for_the_very_next_call_of_another_engine() -> Result<()> {
    let Some(server) =
        common::require_postgres("b3_a_revocation_holds_for_the_very_next_call_of_another_engine")
    else {
        return Ok(());
    };
    let db = common::TestDb::postgres(&server);
    let here = db.open()?;
    // Asked for, the decision cache stays off on PostgreSQL (B3).
    let there = Engine::open_with(
        db.target(),
        Options {
            decision_cache: true,
            ..Options::default()
        },
    )?;
    here.create_user("alice")?;
    here.create_workspace("ml-team", "alice")?;
    here.session_for(&"alice".parse()?)?
        .create_project("ml-team/cls", Default::default())?;
    for round in 0..20 {
        let token = here.issue_user_token("alice", &format!("t{round}"), None)?;
        assert!(there.authorize(token.secret(), "ml-team/cls", Action::Delete)?);
        let session = there.authenticate(token.secret())?;
        session.list_projects()?;
        here.session_for(&"alice".parse()?)?
            .revoke_token(token.id)?;
        // T4, B3: the very next call, on the other engine, sees the revocation.
        assert!(matches!(
            there.authorize(token.secret(), "ml-team/cls", Action::View),
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            there.authenticate(token.secret()),
            Err(Error::InvalidToken)
        ));
        assert!(
            matches!(session.list_projects(), Err(Error::InvalidToken)),
            "T6"
        );
    }
    Ok(())
}

fn turnstile(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(args)
        .output()
        .expect("run turnstile");
    assert!(
        out.status.success(),
        "turnstile {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn b4_migrate_round_trips_the_standard_workload_with_identical_exports() -> Result<()> {
    let Some(server) = common::require_postgres(
        "b4_migrate_round_trips_the_standard_workload_with_identical_exports",
    ) else {
        return Ok(());
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = dir.path().join("first.db");
    let back = dir.path().join("back.db");
    Engine::open(&first)?.import(&workload::generate(10_000))?;
    let pg = common::TestDb::postgres(&server);
    let url = pg.target().to_str().expect("a URL");
    let first_s = first.to_str().expect("a path");
    let back_s = back.to_str().expect("a path");

    turnstile(&["migrate", "--from", first_s, "--to", url]);
    turnstile(&["migrate", "--from", url, "--to", back_s]);
    let exports = [first_s, url, back_s].map(|db| turnstile(&["--db", db, "export"]));
    assert!(
        exports[0].len() > 1_000_000,
        "the whole workload is exported"
    );
    assert!(
        exports[0] == exports[1],
        "B4: SQLite -> PostgreSQL keeps every fact"
    );
    assert!(exports[0] == exports[2], "B4: and back again");

    // Into a database that holds a model already: refused, nothing written.
    let out = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["migrate", "--from", first_s, "--to", url])
        .output()
        .expect("run turnstile");
    assert!(!out.status.success(), "B4: the target must be empty");
    assert_eq!(turnstile(&["--db", url, "export"]), exports[0]);
    Ok(())
}

/// Starts `turnstile serve` on `db` (a path or URL), waits for its address, asks
/// `/healthz` and one decision with `token`, and stops it. The (status, body) pairs.
fn serve_and_ask(db: &str, token: &str) -> Vec<(u16, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["--db", db, "serve", "--listen", "127.0.0.1:0", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start turnstile serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a line");
    let Some(url) = line.trim().strip_prefix("turnstile: listening on ") else {
        let _ = child.kill();
        let out = child.wait_with_output().expect("exit");
        panic!(
            "`serve --db {db}` did not start: {line:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut answers = Vec::new();
    let mut health = agent
        .get(&format!("{url}/healthz"))
        .call()
        .expect("healthz");
    answers.push((
        health.status().as_u16(),
        health.body_mut().read_to_string().unwrap_or_default(),
    ));
    let mut decision = agent
        .post(&format!("{url}/api/turnstile/v1/decisions"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(serde_json::json!({"project": "ml-team/cls", "action": "delete"}))
        .expect("a decision");
    answers.push((
        decision.status().as_u16(),
        decision.body_mut().read_to_string().unwrap_or_default(),
    ));
    let _ = child.kill();
    let _ = child.wait();
    answers
}

/// B1 and H1: `turnstile serve --db` takes a `sqlite:` URL and a `postgres://` URL,
/// like every other command.
#[test]
fn b1_serve_takes_sqlite_and_postgres_urls() -> Result<()> {
    let world = |engine: &Engine| -> Result<String> {
        engine.create_user("alice")?;
        engine.create_workspace("ml-team", "alice")?;
        engine
            .session_for(&"alice".parse()?)?
            .create_project("ml-team/cls", Default::default())?;
        Ok(engine.issue_user_token("alice", "t", None)?.into_secret())
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite:{}", dir.path().join("acl.db").display());
    let token = world(&Engine::open(&url)?)?;
    for (status, body) in serve_and_ask(&url, &token) {
        assert_eq!(status, 200, "{url}: {body}");
    }

    let Some(server) = common::require_postgres("b1_serve_takes_sqlite_and_postgres_urls") else {
        return Ok(());
    };
    let db = common::TestDb::postgres(&server);
    let url = db.target().to_str().expect("a URL").to_owned();
    let token = world(&db.open()?)?;
    let answers = serve_and_ask(&url, &token);
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    assert!(answers[1].1.contains("true"), "{answers:?}");
    Ok(())
}

/// An engine with the decision cache on PostgreSQL, answers at most `bound` late.
fn cached_engine(db: &common::TestDb, bound: Duration) -> Result<Engine> {
    Engine::open_with(
        db.target(),
        Options {
            decision_cache: true,
            postgres_staleness: Some(bound),
            ..Options::default()
        },
    )
}

/// Asks `ask` until it answers `false`, failing if any `true` comes from a call that
/// started more than `bound` after `committed`; returns how long after `committed`
/// the first `false` came.
fn staleness(
    committed: Instant,
    bound: Duration,
    mut ask: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    loop {
        let started = Instant::now();
        if !ask()? {
            return Ok(started.duration_since(committed));
        }
        let late = started.duration_since(committed);
        assert!(
            late <= bound,
            "B3: a cached answer {late:?} after the commit, bound {bound:?}"
        );
    }
}

#[test]
fn b3_the_postgres_cache_answers_from_memory_and_never_later_than_its_bound() -> Result<()> {
    let test = "b3_the_postgres_cache_answers_from_memory_and_never_later_than_its_bound";
    let Some(server) = common::require_postgres(test) else {
        return Ok(());
    };
    let db = common::TestDb::postgres(&server);
    let writer = db.open()?;
    writer.create_user("alice")?;
    writer.create_user("bob")?;
    writer.create_workspace("ml-team", "alice")?;
    let alice = writer.session_for(&"alice".parse()?)?;
    alice.invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false)?;
    let workspace_wide = common::with_visibility(turnstile::Visibility::Workspace);
    alice.create_project("ml-team/cls", workspace_wide.clone())?;
    let bound = Duration::from_millis(200);
    let cached = cached_engine(&db, bound)?;
    let bob: turnstile::Principal = "bob".parse()?;

    // The cache is used: a change made without notifying (triggers off for one
    // session, which only a superuser may do) is not seen until a heard change. Until
    // the listener vouches (its first heartbeat back) the cache is bypassed; try again.
    let url = db.target().to_str().expect("a URL").to_owned();
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let quietly = |raw: &mut postgres::Client, visibility: i32| {
        raw.batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE projects SET visibility = {visibility};
             SET session_replication_role = origin;"
        ))
        .expect("a change without notification");
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        // Bob is a member and the project has workspace visibility: he may view (as
        // soon as the last heard change below is heard).
        while !cached.check(&bob, "ml-team/cls", Action::View)? {
            assert!(Instant::now() < until, "B3: a heard change never seen");
        }
        quietly(&mut raw, 0);
        assert!(
            !writer.check(&bob, "ml-team/cls", Action::View)?,
            "B3: without the cache every decision reads the database"
        );
        if cached.check(&bob, "ml-team/cls", Action::View)? {
            break; // From memory: the change nobody notified is not seen.
        }
        assert!(
            Instant::now() < until,
            "B3: the cache never answered from memory"
        );
        // The cache may now hold what it read after the quiet change: a heard change
        // empties it.
        quietly(&mut raw, 1);
        alice.set_project_description("ml-team/cls", "heard")?;
        std::thread::sleep(Duration::from_millis(20));
    }
    quietly(&mut raw, 1);
    alice.set_project_description("ml-team/cls", "heard")?;

    // Every heard change empties the cache; each answer is at most `bound` late.
    let mut worst = Duration::ZERO;
    for round in 0..10 {
        let project = format!("ml-team/project-{round}");
        alice.create_project(&project, workspace_wide.clone())?;
        let until = Instant::now() + Duration::from_secs(10);
        while !cached.check(&bob, &project, Action::View)? {
            assert!(Instant::now() < until, "B3: a new project never seen");
        }
        alice.set_project_visibility(&project, turnstile::Visibility::Private)?;
        let late = staleness(Instant::now(), bound, || {
            cached.check(&bob, &project, Action::View)
        })?;
        worst = worst.max(late);
    }
    // T3 through the cache: a revoked token dies within the bound.
    for round in 0..5 {
        let token = writer.issue_user_token("bob", &format!("t{round}"), None)?;
        let until = Instant::now() + Duration::from_secs(10);
        while !cached.authorize(token.secret(), "ml-team/cls", Action::View)? {
            assert!(Instant::now() < until, "B3: a new token never seen");
        }
        writer.session_for(&bob)?.revoke_token(token.id)?;
        let late = staleness(Instant::now(), bound, || {
            match cached.authorize(token.secret(), "ml-team/cls", Action::View) {
                Err(Error::InvalidToken) => Ok(false),
                other => other,
            }
        })?;
        worst = worst.max(late);
    }
    eprintln!("B3: the cache saw each change at most {worst:?} after its commit (bound {bound:?})");
    Ok(())
}

#[test]
fn b3_a_lost_listener_connection_never_lets_the_cache_answer_later_than_its_bound() -> Result<()> {
    let test = "b3_a_lost_listener_connection_never_lets_the_cache_answer_later_than_its_bound";
    let Some(server) = common::require_postgres(test) else {
        return Ok(());
    };
    let db = common::TestDb::postgres(&server);
    let writer = db.open()?;
    writer.create_user("alice")?;
    writer.create_workspace("ml-team", "alice")?;
    let alice = writer.session_for(&"alice".parse()?)?;
    let bound = Duration::from_millis(100);
    let cached = cached_engine(&db, bound)?;
    let url = db.target().to_str().expect("a URL").to_owned();
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    // The server's own database, from which this one's connections can be refused.
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("connect");
    let database: String = raw
        .query_one("SELECT current_database()::text", &[])
        .expect("the database's name")
        .get(0);
    let alice_p: turnstile::Principal = "alice".parse()?;
    for round in 0..5 {
        let project = format!("ml-team/project-{round}");
        alice.create_project(&project, Default::default())?;
        let until = Instant::now() + Duration::from_secs(10);
        while !cached.check(&alice_p, &project, Action::Delete)? {
            assert!(Instant::now() < until, "B3: a new project never seen");
        }
        // The listener is (back) on its connection.
        let listeners = |raw: &mut postgres::Client| -> i64 {
            raw.query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'turnstile-listen' AND datname = current_database()",
                &[],
            )
            .expect("count the listeners")
            .get(0)
        };
        while listeners(&mut raw) != 1 {
            assert!(Instant::now() < until, "the listener never came back");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The listener's connection dies and cannot come back (the engines keep the
        // pooled connections they have); the change below is made while no one
        // listens, and so is never heard: only the heartbeat's bound keeps the cache
        // from answering from memory.
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
            ))
            .expect("refuse new connections");
        let killed: i64 = raw
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'turnstile-listen' AND datname = current_database()",
                &[],
            )
            .expect("terminate the listener")
            .get(0);
        assert_eq!(killed, 1, "one listener on this database");
        alice.delete_project(&project)?;
        let committed = Instant::now();
        // A6: a deleted project is answered as a hidden one.
        staleness(committed, bound, || {
            cached.check(&alice_p, &project, Action::Delete)
        })?;
        admin
            .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
            .expect("accept connections again");
    }
    Ok(())
}

/// A throwaway PostgreSQL server (`scripts/pg-throwaway.sh --tls`) that takes TCP
/// connections over TLS only, with a password, and a certificate for `localhost`
/// signed by a CA made here. Stopped and removed when dropped.
struct TlsServer {
    dir: tempfile::TempDir,
    certs: tempfile::TempDir,
    port: u16,
}

const TLS_PASSWORD: &str = "s3cret-Pw-never-printed";

impl TlsServer {
    fn start() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let certs = tempfile::tempdir().expect("a temporary directory");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "turnstile test CA");
        let ca_cert = ca.clone().self_signed(&ca_key).expect("a CA certificate");
        let server_key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let server_cert = server
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("a server certificate");
        // Another CA, which signed nothing this server shows.
        let other_key = KeyPair::generate().expect("a key");
        let mut other = ca.clone();
        other.distinguished_name = rcgen::DistinguishedName::new();
        other
            .distinguished_name
            .push(rcgen::DnType::CommonName, "another CA");
        let other_ca = other.self_signed(&other_key).expect("another CA");
        let write = |name: &str, pem: String| {
            std::fs::write(certs.path().join(name), pem).expect("write a PEM file");
        };
        write("ca.pem", ca_cert.pem());
        write("other-ca.pem", other_ca.pem());
        write("server.crt", server_cert.pem());
        write("server.key", server_key.serialize_pem());

        // Its own directory, not inside `certs`: as root the server runs as
        // `postgres`, which must reach it.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-throwaway.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir.path())
            .arg("--tls")
            .arg(certs.path().join("server.crt"))
            .arg(certs.path().join("server.key"))
            .args(["--password", TLS_PASSWORD])
            .output()
            .expect("run scripts/pg-throwaway.sh");
        assert!(
            out.status.success(),
            "pg-throwaway.sh --tls: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).expect("a URL");
        let port = url
            .trim()
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL");
        Self { dir, certs, port }
    }

    /// The server's `postgres` database through `host`, with the password and `params`.
    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://postgres:{TLS_PASSWORD}@{host}:{}/postgres?{params}",
            self.port
        )
    }

    fn ca(&self, name: &str) -> String {
        self.certs.path().join(name).display().to_string()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-throwaway.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// The error of opening `url`, which must fail, checked for the password.
fn open_error(url: &str) -> String {
    let Err(e) = Engine::open(url) else {
        panic!("the connection is refused")
    };
    let text = e.to_string();
    assert!(
        !text.contains(TLS_PASSWORD) && !format!("{e:?}").contains(TLS_PASSWORD),
        "an error shows the URL's password: {text}"
    );
    text
}

#[test]
fn b1_tls_verify_full_with_the_right_ca_connects_and_serves_checks_and_writes() -> Result<()> {
    if common::require_postgres(
        "b1_tls_verify_full_with_the_right_ca_connects_and_serves_checks_and_writes",
    )
    .is_none()
    {
        return Ok(());
    }
    let server = TlsServer::start();
    let ca = server.ca("ca.pem");
    // The server takes no plain TCP connection: each success below is encrypted.
    let engine = Engine::open(server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))?;
    engine.create_user("alice")?;
    engine.create_user("bob")?;
    engine.create_workspace("ml-team", "alice")?;
    let alice = engine.session_for(&"alice".parse()?)?;
    alice.create_project("ml-team/cls", Default::default())?;
    assert!(engine.check(&"alice".parse()?, "ml-team/cls", Action::Delete)?);
    assert!(!engine.check(&"bob".parse()?, "ml-team/cls", Action::View)?);
    alice.invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false)?;
    alice.add_project_member("ml-team/cls", "bob", turnstile::ProjectRole::Viewer)?;
    assert!(engine.check(&"bob".parse()?, "ml-team/cls", Action::View)?);

    // verify-ca checks the chain, not the name: an address the certificate does
    // not name is accepted.
    let by_address =
        Engine::open(server.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")))?;
    assert!(by_address.check(&"bob".parse()?, "ml-team/cls", Action::View)?);
    // require, prefer and the default (prefer) encrypt without checking the certificate.
    for params in ["sslmode=require", "sslmode=prefer", ""] {
        let engine = Engine::open(server.url("127.0.0.1", params))?;
        assert!(
            engine.check(&"bob".parse()?, "ml-team/cls", Action::View)?,
            "{params}"
        );
    }
    Ok(())
}

#[test]
fn b1_tls_refuses_a_wrong_ca_a_wrong_host_and_plain_connections_clearly() {
    if common::require_postgres(
        "b1_tls_refuses_a_wrong_ca_a_wrong_host_and_plain_connections_clearly",
    )
    .is_none()
    {
        return;
    }
    let server = TlsServer::start();
    let ca = server.ca("ca.pem");
    let other = server.ca("other-ca.pem");

    let wrong_ca = open_error(&server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ));
    assert!(
        wrong_ca.contains("sslmode=verify-full") && wrong_ca.contains("UnknownIssuer"),
        "a certificate from another CA: {wrong_ca}"
    );
    let wrong_ca = open_error(&server.url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={other}"),
    ));
    assert!(wrong_ca.contains("UnknownIssuer"), "verify-ca: {wrong_ca}");
    // The same with `require`: given a CA, it checks the chain, as libpq does.
    let wrong_ca =
        open_error(&server.url("localhost", &format!("sslmode=require&sslrootcert={other}")));
    assert!(wrong_ca.contains("UnknownIssuer"), "require: {wrong_ca}");

    let wrong_host = open_error(&server.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(
        wrong_host.contains("not valid for name"),
        "a certificate for another host: {wrong_host}"
    );

    let plain = open_error(&server.url("localhost", "sslmode=disable"));
    assert!(
        plain.contains("sslmode=disable") && plain.contains("only encrypted connections"),
        "a plain connection to a TLS-only server: {plain}"
    );

    let no_ca = open_error(&server.url("localhost", "sslmode=verify-full"));
    assert!(
        no_ca.contains("sslrootcert"),
        "verify-full without a CA: {no_ca}"
    );

    let bad_password = open_error(
        &server
            .url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            )
            .replace(TLS_PASSWORD, "wrong-password"),
    );
    assert!(
        bad_password.contains("password authentication failed"),
        "a wrong password: {bad_password}"
    );
}
