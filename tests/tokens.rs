//! Token lifecycle (SPEC §6, T1–T5, and S3–S5): issuing, authenticating, revoking,
//! rotating and expiring, within one process, across two engines on one database, and
//! across two OS processes; on SQLite and on PostgreSQL, but for what only a SQLite file
//! can show (what its bytes and its WAL hold).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use turnstile::{
    Action, AuditQuery, Engine, Error, Principal, ProjectOptions, ProjectRole, Result,
};

/// An engine with `admin` (workspace `ml-team`), member `bob`, project
/// `ml-team/cls` and service account `cicd@ml-team` (contributor on it). Returns the
/// service account's token.
fn world(engine: &Engine) -> Result<String> {
    engine.create_user("admin")?;
    engine.create_user("bob")?;
    engine.create_workspace("ml-team", "admin")?;
    let admin = engine.session_for(&"admin".parse()?)?;
    admin.invite_to_workspace("ml-team", "bob", "member".parse()?, false)?;
    admin.create_project("ml-team/cls", ProjectOptions::default())?;
    let token = admin.create_service_account("ml-team", "cicd", false)?;
    admin.add_project_service_account("ml-team/cls", "cicd@ml-team", ProjectRole::Contributor)?;
    Ok(token.into_secret())
}

fn admin(engine: &Engine) -> Result<turnstile::Session<'_>> {
    engine.session_for(&"admin".parse()?)
}

fn is_invalid_token<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::InvalidToken))
}

/// Searches a file's bytes for a needle.
fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn authenticate_in_child(db: &Path, token: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            "--exact",
            "child_process_authenticates",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TURNSTILE_CHILD_DB", db)
        .env("TURNSTILE_CHILD_TOKEN", token)
        .output()
        .expect("spawn the child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("AUTH=").map(|(_, outcome)| outcome))
        .unwrap_or_else(|| panic!("child printed no outcome: {stdout}"))
        .to_owned()
}

// Every test below runs once per backend: `sqlite::name` and `postgres::name` (B1,
// tests/common `backend_tests!`; parentheses, so that rustfmt formats them).
common::backend_tests!(
    #[test]
    fn t3_user_token_round_trips_through_authenticate() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let issued = engine.issue_user_token("bob", "laptop", None)?;
        let session = engine.authenticate(issued.secret())?;
        assert_eq!(session.actor(), &"bob".parse::<Principal>()?);
        assert_eq!(session.workspace_members("ml-team")?.len(), 2);
        Ok(())
    }

    #[test]
    fn t3_every_single_character_mutation_fails_with_the_same_error() -> Result<()> {
        let engine = common::engine()?;
        let sa = world(&engine)?;
        assert!(engine.authenticate(&sa).is_ok());
        let alphabet: Vec<char> = "abcXYZ019-_@~é".chars().collect();
        for (i, original) in sa.char_indices() {
            for &c in &alphabet {
                if c == original {
                    continue;
                }
                let mut mutated = sa.clone();
                mutated.replace_range(i..i + original.len_utf8(), &c.to_string());
                assert!(is_invalid_token(engine.authenticate(&mutated)), "{mutated}");
            }
        }
        // Truncated, extended, empty and made-up tokens fail the same way.
        for bad in [
            &sa[..sa.len() - 1],
            &format!("{sa}0"),
            "",
            "tst_",
            "ghp_0000",
        ] {
            assert!(is_invalid_token(engine.authenticate(bad)), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn t1_a_well_formed_but_unknown_token_is_invalid() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let other = common::engine()?;
        other.create_user("bob")?;
        let foreign = other.issue_user_token("bob", "elsewhere", None)?;
        assert!(turnstile::token::well_formed(foreign.secret()));
        assert!(is_invalid_token(engine.authenticate(foreign.secret())));
        Ok(())
    }

    #[test]
    fn t2_issued_token_does_not_print_its_secret() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let issued = engine.issue_user_token("bob", "laptop", None)?;
        let debug = format!("{issued:?}");
        assert!(!debug.contains(issued.secret()));
        assert!(debug.contains("redacted"));
        Ok(())
    }

    #[test]
    fn t5_user_lists_and_revokes_own_tokens() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let laptop = engine.issue_user_token("bob", "laptop", None)?;
        let ci = engine.issue_user_token("bob", "ci", None)?;
        let bob = engine.authenticate(laptop.secret())?;
        let listed = bob.tokens()?;
        assert_eq!(
            listed.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(),
            ["ci", "laptop"]
        );
        assert!(
            listed[1].last_used_at.is_some(),
            "authenticate records the use"
        );
        assert!(listed[0].last_used_at.is_none());
        bob.revoke_token(ci.id)?;
        assert!(is_invalid_token(engine.authenticate(ci.secret())));
        assert!(
            engine.authenticate(laptop.secret()).is_ok(),
            "other tokens still work"
        );
        // A token cannot be revoked twice, nor someone else's, nor one that does not
        // exist; the error names the id, not the caller's own token.
        let not_found = |r: Result<()>| matches!(r, Err(Error::TokenNotFound { .. }));
        assert!(not_found(bob.revoke_token(ci.id)));
        let admins = engine.issue_user_token("admin", "admin", None)?;
        assert!(not_found(bob.revoke_token(admins.id)));
        let message = bob
            .revoke_token(turnstile::TokenId(987_654))
            .expect_err("no such token")
            .to_string();
        assert_eq!(message, "no live token with id `987654` among yours");
        assert!(engine.authenticate(admins.secret()).is_ok());
        Ok(())
    }

    #[test]
    fn t5_expired_token_fails_like_any_other() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let soon = Utc::now() + chrono::Duration::milliseconds(300);
        let short = engine.issue_user_token("bob", "short", Some(soon))?;
        assert!(engine.authenticate(short.secret()).is_ok());
        std::thread::sleep(Duration::from_millis(400));
        assert!(is_invalid_token(engine.authenticate(short.secret())));
        // A token that would be born expired is refused at issue.
        let past = Utc::now() - chrono::Duration::seconds(1);
        assert!(matches!(
            engine.issue_user_token("bob", "past", Some(past)),
            Err(Error::InvalidValue { .. })
        ));
        Ok(())
    }

    #[test]
    fn s5_issuing_a_new_sa_token_invalidates_the_previous_one() -> Result<()> {
        let engine = common::engine()?;
        let old = world(&engine)?;
        let new = admin(&engine)?.issue_service_account_token("cicd@ml-team")?;
        assert!(is_invalid_token(engine.authenticate(&old)));
        assert!(engine.authorize(new.secret(), "ml-team/cls", Action::Edit)?);
        assert_eq!(
            admin(&engine)?.revoke_service_account_token("cicd@ml-team")?,
            1
        );
        assert!(is_invalid_token(engine.authenticate(new.secret())));
        assert!(is_invalid_token(engine.authorize(
            new.secret(),
            "ml-team/cls",
            Action::View
        )));
        Ok(())
    }

    #[test]
    fn s5_only_workspace_admins_manage_sa_tokens() -> Result<()> {
        let engine = common::engine()?;
        let sa = world(&engine)?;
        let bob = engine.session_for(&"bob".parse()?)?;
        let cicd = engine.authenticate(&sa)?;
        for session in [&bob, &cicd] {
            assert!(matches!(
                session.issue_service_account_token("cicd@ml-team"),
                Err(Error::PermissionDenied { .. })
            ));
            assert!(matches!(
                session.revoke_service_account_token("cicd@ml-team"),
                Err(Error::PermissionDenied { .. })
            ));
        }
        assert!(
            engine.authenticate(&sa).is_ok(),
            "the refused calls changed nothing"
        );
        Ok(())
    }

    #[test]
    fn s4_reactivation_resets_the_token() -> Result<()> {
        let engine = common::engine()?;
        let first = world(&engine)?;
        let admin = admin(&engine)?;
        let second = admin
            .issue_service_account_token("cicd@ml-team")?
            .into_secret();
        admin.deactivate_service_account("cicd@ml-team")?;
        for t in [&first, &second] {
            assert!(is_invalid_token(engine.authenticate(t)), "R6: deactivated");
        }
        let fresh = admin.reactivate_service_account("cicd@ml-team")?;
        for t in [&first, &second] {
            assert!(is_invalid_token(engine.authenticate(t)), "S4: never again");
        }
        assert!(
            engine.authorize(fresh.secret(), "ml-team/cls", Action::Edit)?,
            "grants revive"
        );
        Ok(())
    }

    #[test]
    fn l1_token_events_name_the_token_by_id_never_by_secret() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let issued = admin(&engine)?.issue_service_account_token("cicd@ml-team")?;
        let events = admin(&engine)?.audit_log("ml-team", &AuditQuery::default())?;
        let event = events
            .iter()
            .find(|e| e.action == "service_account.token.issue")
            .expect("an issue event");
        assert_eq!(event.details["token_id"], issued.id.0);
        assert!(!event.details.to_string().contains(issued.secret()));
        Ok(())
    }

    // T4 across engines and processes.

    #[test]
    fn t4_revocation_in_one_engine_is_seen_by_another_on_the_same_file() -> Result<()> {
        let db = common::TestDb::fresh();
        let path = db.target();
        let a = Engine::open(path)?;
        let sa = world(&a)?;
        let b = Engine::open(path)?;
        let bob = a.issue_user_token("bob", "laptop", None)?;
        // Warm the second engine's path.
        assert!(b.authenticate(bob.secret()).is_ok());
        assert!(b.authorize(&sa, "ml-team/cls", Action::Edit)?);

        a.authenticate(bob.secret())?.revoke_token(bob.id)?;
        assert!(is_invalid_token(b.authenticate(bob.secret())), "revoked");

        let rotated = admin(&a)?.issue_service_account_token("cicd@ml-team")?;
        assert!(
            is_invalid_token(b.authorize(&sa, "ml-team/cls", Action::Edit)),
            "rotated"
        );
        assert!(b.authorize(rotated.secret(), "ml-team/cls", Action::Edit)?);

        admin(&a)?.deactivate_service_account("cicd@ml-team")?;
        assert!(
            is_invalid_token(b.authenticate(rotated.secret())),
            "deactivated"
        );
        Ok(())
    }

    #[test]
    fn t4_revoked_rotated_expired_and_deactivated_tokens_fail_in_a_second_process() -> Result<()> {
        let db = common::TestDb::fresh();
        let path = db.target();
        let engine = Engine::open(path)?;
        let sa = world(&engine)?;
        let bob = engine.issue_user_token("bob", "laptop", None)?;
        let short = engine.issue_user_token(
            "bob",
            "short",
            Some(Utc::now() + chrono::Duration::milliseconds(500)),
        )?;
        assert_eq!(authenticate_in_child(path, bob.secret()), "ok");
        assert_eq!(authenticate_in_child(path, &sa), "ok");

        engine.authenticate(bob.secret())?.revoke_token(bob.id)?;
        assert_eq!(
            authenticate_in_child(path, bob.secret()),
            "err:invalid token"
        );

        let rotated = admin(&engine)?.issue_service_account_token("cicd@ml-team")?;
        assert_eq!(authenticate_in_child(path, &sa), "err:invalid token");
        assert_eq!(authenticate_in_child(path, rotated.secret()), "ok");

        admin(&engine)?.deactivate_service_account("cicd@ml-team")?;
        assert_eq!(
            authenticate_in_child(path, rotated.secret()),
            "err:invalid token"
        );

        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            authenticate_in_child(path, short.secret()),
            "err:invalid token"
        );
        Ok(())
    }

    #[test]
    fn last_use_is_recorded_at_most_once_a_minute() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let t = engine.issue_user_token("bob", "laptop", None)?;
        let before = engine.audit_log(&AuditQuery::default())?.len();
        let first = {
            engine.authenticate(t.secret())?;
            engine.authenticate(t.secret())?.tokens()?[0].last_used_at
        };
        for _ in 0..20 {
            engine.authenticate(t.secret())?;
        }
        let later = engine.authenticate(t.secret())?.tokens()?[0].last_used_at;
        assert!(first.is_some());
        assert_eq!(
            first, later,
            "uses within a minute do not rewrite last_used_at"
        );
        assert_eq!(
            engine.audit_log(&AuditQuery::default())?.len(),
            before,
            "authentication is not a management call"
        );
        Ok(())
    }

    #[test]
    fn t3_authorize_judges_the_token_before_the_project() -> Result<()> {
        let engine = common::engine()?;
        let sa = world(&engine)?;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = Engine::open(dir.path().join("t.db"))?;
        let file_sa = world(&file)?;
        for (engine, sa) in [(&*engine, &sa), (&file, &file_sa)] {
            let revoked = engine.issue_user_token("bob", "old", None)?;
            engine
                .authenticate(revoked.secret())?
                .revoke_token(revoked.id)?;
            // An unauthenticated caller learns nothing about projects.
            for project in ["ml-team/cls", "ml-team/nope", "no-such/cls", "not a name"] {
                assert!(is_invalid_token(engine.authorize(
                    revoked.secret(),
                    project,
                    Action::View
                )));
                assert!(is_invalid_token(engine.authorize(
                    "tst_made_up",
                    project,
                    Action::View
                )));
            }
            // An authenticated one gets "no access" for an absent project, as for a
            // hidden one (A6), and the error of a malformed name.
            assert!(!engine.authorize(sa, "ml-team/nope", Action::View)?);
            assert!(matches!(
                engine.authorize(sa, "not a name", Action::View),
                Err(Error::InvalidProjectName { .. })
            ));
            assert!(engine.authorize(sa, "ml-team/cls", Action::Edit)?);
            assert!(!engine.authorize(sa, "ml-team/cls", Action::Manage)?);
        }
        Ok(())
    }

    /// A session kept from `authenticate` is bound to its token (T6): once the token is
    /// revoked, rotated, expired or its owner deactivated, through this engine or another
    /// one on the same database, every later call on the session fails with `InvalidToken`.
    #[test]
    fn t6_a_session_dies_with_its_token_in_every_engine_on_the_file() -> Result<()> {
        let db = common::TestDb::fresh();
        let path = db.target();
        let here = Engine::open(path)?;
        let sa = world(&here)?;
        let there = Engine::open(path)?;

        // Revoked, by the holder, from another engine.
        let laptop = here.issue_user_token("bob", "laptop", None)?;
        let bob = here.authenticate(laptop.secret())?;
        assert_eq!(bob.list_projects()?, Vec::<String>::new());
        there
            .authenticate(laptop.secret())?
            .revoke_token(laptop.id)?;
        assert!(is_invalid_token(bob.list_projects()));
        assert!(is_invalid_token(bob.workspace_members("ml-team")));
        assert!(is_invalid_token(
            bob.create_project("ml-team/after", ProjectOptions::default())
        ));

        // Rotated by an admin; the new token's session works.
        let ci = here.authenticate(&sa)?;
        assert_eq!(ci.list_projects()?, ["ml-team/cls"]);
        let rotated = admin(&there)?.issue_service_account_token("cicd@ml-team")?;
        assert!(is_invalid_token(ci.list_projects()));
        let ci = here.authenticate(rotated.secret())?;
        assert_eq!(ci.list_projects()?, ["ml-team/cls"]);

        // Its owner deactivated.
        admin(&there)?.deactivate_service_account("cicd@ml-team")?;
        assert!(is_invalid_token(ci.list_projects()));

        // Expired.
        let soon = Utc::now() + chrono::Duration::milliseconds(300);
        let short = here.issue_user_token("bob", "short", Some(soon))?;
        let bob = here.authenticate(short.secret())?;
        assert!(bob.tokens().is_ok());
        std::thread::sleep(Duration::from_millis(400));
        assert!(is_invalid_token(bob.tokens()));

        // A session the application opened itself has no token to die with.
        let bob = here.session_for(&"bob".parse()?)?;
        assert_eq!(bob.token_id(), None);
        assert!(bob.list_projects().is_ok());
        Ok(())
    }

    #[test]
    fn t6_a_session_resumed_by_token_id_lives_only_as_long_as_the_token() -> Result<()> {
        let engine = common::engine()?;
        world(&engine)?;
        let laptop = engine.issue_user_token("bob", "laptop", None)?;
        let bob = engine.session_for_token(laptop.id)?;
        assert_eq!(bob.actor(), &"bob".parse::<Principal>()?);
        assert_eq!(bob.token_id(), Some(laptop.id));
        assert_eq!(
            engine.authenticate(laptop.secret())?.token_id(),
            Some(laptop.id)
        );
        engine
            .authenticate(laptop.secret())?
            .revoke_token(laptop.id)?;
        assert!(is_invalid_token(bob.list_projects()));
        assert!(is_invalid_token(engine.session_for_token(laptop.id)));
        assert!(is_invalid_token(
            engine.session_for_token(turnstile::TokenId(424_242))
        ));
        Ok(())
    }
);

// ---------------------------------------------------------------------------------
// SQLite only: what the file and its WAL hold. And the child half of the two-process
// test, which opens the database it is given, on either backend.

#[test]
fn t2_no_plain_token_is_ever_written_to_the_database_or_its_wal() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let engine = Engine::open(&path)?;
    let mut secrets = vec![world(&engine)?];
    secrets.push(
        engine
            .issue_user_token("bob", "laptop", None)?
            .into_secret(),
    );
    secrets.push(
        admin(&engine)?
            .issue_service_account_token("cicd@ml-team")?
            .into_secret(),
    );
    admin(&engine)?.deactivate_service_account("cicd@ml-team")?;
    secrets.push(
        admin(&engine)?
            .reactivate_service_account("cicd@ml-team")?
            .into_secret(),
    );
    // Authenticate with each, so that any last-use bookkeeping is written too.
    for s in &secrets {
        let _ = engine.authenticate(s);
    }
    let wal = dir.path().join("t.db-wal");
    assert!(wal.exists(), "the test must look at a live WAL");
    for s in &secrets {
        for file in [&path, &wal] {
            assert!(
                !file_contains(file, s.as_bytes()),
                "plain token in {file:?}"
            );
            // Nor its random body without the prefix.
            assert!(
                !file_contains(file, &s.as_bytes()[4..40]),
                "token body in {file:?}"
            );
        }
    }
    // And no audit event carries it.
    let log = serde_json::to_string(&engine.audit_log(&AuditQuery::default())?).unwrap_or_default();
    for s in &secrets {
        assert!(!log.contains(s.as_str()));
    }
    Ok(())
}

/// The child half of the two-process test: authenticates the token in
/// `TURNSTILE_CHILD_TOKEN` against `TURNSTILE_CHILD_DB` and prints the outcome.
#[test]
fn child_process_authenticates() -> Result<()> {
    let (Ok(db), Ok(token)) = (
        std::env::var("TURNSTILE_CHILD_DB"),
        std::env::var("TURNSTILE_CHILD_TOKEN"),
    ) else {
        return Ok(()); // Run directly: nothing to do.
    };
    let engine = Engine::open(db)?;
    let outcome = match engine.authenticate(&token) {
        Ok(_) => "AUTH=ok".to_owned(),
        Err(e) => format!("AUTH=err:{e}"),
    };
    println!("{outcome}");
    Ok(())
}

/// T7: `authenticate` and `authorize` put no write on their path. Another connection
/// watching the file sees at most one commit (the first batch of uses) during a
/// burst of calls that lasts well under a minute, and the uses are on disk once the
/// engine is dropped.
#[test]
fn t7_authenticate_and_authorize_never_write_and_uses_are_recorded_in_batches() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.db");
    let tokens: Vec<String> = {
        let engine = Engine::open(&path)?;
        let sa = world(&engine)?;
        let mut tokens = vec![sa];
        for i in 0..4 {
            let t = engine.issue_user_token("bob", &format!("t{i}"), None)?;
            tokens.push(t.into_secret());
        }
        tokens
    };
    let watcher = rusqlite::Connection::open(&path).expect("a raw connection");
    let data_version = || -> i64 {
        watcher
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .expect("data_version")
    };
    let engine = Engine::open(&path)?;
    let mut seen = data_version();
    let mut commits = 0;
    let until = std::time::Instant::now() + Duration::from_millis(2_500);
    while std::time::Instant::now() < until {
        for token in &tokens {
            engine.authenticate(token)?;
            engine.authorize(token, "ml-team/cls", Action::View)?;
            let now = data_version();
            if now != seen {
                commits += 1;
                seen = now;
            }
        }
    }
    assert!(
        commits <= 1,
        "{commits} commits in 2.5 s of authentication: a write is on the hot path"
    );
    drop(engine);
    let unused: i64 = watcher
        .query_row(
            "SELECT count(*) FROM tokens WHERE revoked_at IS NULL AND last_used_at IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("a count");
    assert_eq!(
        unused, 0,
        "every use was recorded by the time the engine closed"
    );
    Ok(())
}
