//! One focused test per SPEC rule of §2–§5 and §7–§10, named after the rule id and
//! the behaviour it holds. Token rules (§6) are exercised only as far as service
//! account creation and reactivation return tokens.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use chrono::Utc;
use turnstile::domain::access::{Standing, decide};
use turnstile::{
    Access, Action, AuditEvent, AuditQuery, Engine, Error, NameKind, Outcome, Principal,
    ProjectOptions, ProjectRole, Result, RoleSource, Visibility, WorkspaceRole, WorkspaceSettings,
};

// ---------------------------------------------------------------------------------
// Fixtures

mod common;
use common::{who, with_visibility};

fn with_key(key: &str) -> ProjectOptions {
    ProjectOptions {
        key: Some(key.to_owned()),
        ..Default::default()
    }
}

fn access(role: ProjectRole, source: RoleSource) -> Option<Access> {
    Some(Access { role, source })
}

/// Users `alice`, `bob`, `carol`, `dave`. `ml-team`: `alice` admin, `bob` member.
/// `carol` is in no workspace. `other-team`: `dave` admin.
fn populate(engine: &Engine) -> Result<()> {
    for user in ["alice", "bob", "carol", "dave"] {
        engine.create_user(user)?;
    }
    engine.create_workspace("ml-team", "alice")?;
    engine.create_workspace("other-team", "dave")?;
    engine.session_for(&who("alice"))?.invite_to_workspace(
        "ml-team",
        "bob",
        WorkspaceRole::Member,
        false,
    )?;
    Ok(())
}

fn teams() -> Result<common::TestEngine> {
    let engine = common::engine()?;
    populate(&engine)?;
    Ok(engine)
}

fn allow_public(engine: &Engine, workspace: &str, admin: &str) -> Result<()> {
    engine.session_for(&who(admin))?.set_workspace_settings(
        workspace,
        WorkspaceSettings {
            allow_public_projects: Some(true),
            ..Default::default()
        },
    )?;
    Ok(())
}

fn log_len(engine: &Engine) -> Result<usize> {
    Ok(engine.audit_log(&AuditQuery::default())?.len())
}

fn newest_event(engine: &Engine) -> Result<AuditEvent> {
    let query = AuditQuery {
        limit: Some(1),
        ..Default::default()
    };
    Ok(engine
        .audit_log(&query)?
        .into_iter()
        .next()
        .expect("the log has an event"))
}

/// A fresh file database in a temporary directory, populated like [`teams`].
fn file_db() -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("turnstile.db");
    populate(&Engine::open(&path)?)?;
    Ok((dir, path))
}

/// A fresh database of the test's backend (a file, or a PostgreSQL database),
/// populated like [`teams`], for a test that opens several engines on it.
fn shared_db() -> Result<common::TestDb> {
    let db = common::TestDb::fresh();
    populate(&db.open()?)?;
    Ok(db)
}

use common::raw;

fn raw_count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .expect("a count query")
}

// Every test below runs once per backend: `sqlite::name` and `postgres::name` (B1,
// tests/common `backend_tests!`; parentheses, so that rustfmt formats them).
common::backend_tests!(
    /// B1: the fixture puts each copy of a test on the backend its name says.
    #[test]
    fn b1_each_copy_runs_on_the_backend_it_is_named_after() -> Result<()> {
        let named_postgres = module_path!().ends_with("::postgres");
        assert_eq!(common::on_postgres(), named_postgres, "{}", module_path!());
        assert_eq!(common::TestDb::fresh().is_postgres(), named_postgres);
        let engine = common::engine()?;
        engine.create_user("alice")?;
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §2 Names (N)

    #[test]
    fn n1_workspace_names_are_case_insensitive_and_stored_lower_case() -> Result<()> {
        let engine = common::engine()?;
        engine.create_user("alice")?;
        let name = engine.create_workspace("ML-Team", "alice")?;
        assert_eq!(name.as_str(), "ml-team");

        let alice = engine.session_for(&who("alice"))?;
        assert_eq!(
            alice.workspace_members("ml-team")?,
            BTreeMap::from([("alice".to_owned(), WorkspaceRole::Admin)])
        );
        assert_eq!(alice.workspace_status("ML-TEAM")?.workspace, "ml-team");
        assert_eq!(
            alice.create_project("Ml-Team/cls", ProjectOptions::default())?,
            "ml-team/cls"
        );
        assert!(matches!(
            engine.create_workspace("ml-TEAM", "alice"),
            Err(Error::WorkspaceAlreadyExists { .. })
        ));
        // 2 and 64 characters are the bounds.
        engine.create_workspace("ab", "alice")?;
        engine.create_workspace(&"a".repeat(64), "alice")?;
        Ok(())
    }

    #[test]
    fn n1_invalid_workspace_names_are_rejected() -> Result<()> {
        let engine = common::engine()?;
        engine.create_user("alice")?;
        for bad in [
            "a",
            "-team",
            "team-",
            "ml_team",
            "ml team",
            "ml.team",
            "équipe",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(
                    engine.create_workspace(bad, "alice"),
                    Err(Error::InvalidName {
                        kind: NameKind::Workspace,
                        ..
                    })
                ),
                "{bad:?} should be an invalid workspace name"
            );
        }
        Ok(())
    }

    #[test]
    fn n2_usernames_are_case_insensitive_and_globally_unique() -> Result<()> {
        let engine = common::engine()?;
        let name = engine.create_user("Alice.Smith_1")?;
        assert_eq!(name.as_str(), "Alice.Smith_1");
        assert!(matches!(
            engine.create_user("alice.smith_1"),
            Err(Error::UserAlreadyExists { .. })
        ));
        engine.create_workspace("ml-team", "ALICE.SMITH_1")?;
        let session = engine.session_for(&who("alice.smith_1"))?;
        // The spelling given at creation is what is listed.
        assert_eq!(
            session.workspace_members("ml-team")?,
            BTreeMap::from([("Alice.Smith_1".to_owned(), WorkspaceRole::Admin)])
        );
        for bad in [
            "",
            ".alice",
            "-alice",
            "al ice",
            "al/ice",
            "alice@ml-team",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(
                    engine.create_user(bad),
                    Err(Error::InvalidName {
                        kind: NameKind::Username,
                        ..
                    })
                ),
                "{bad:?} should be an invalid username"
            );
        }
        engine.create_user("a")?;
        engine.create_user(&"b".repeat(64))?;
        Ok(())
    }

    #[test]
    fn n2_service_account_names_are_unique_per_workspace_and_never_contain_at() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let dave = engine.session_for(&who("dave"))?;
        alice.create_service_account("ml-team", "CICD", false)?;
        assert!(matches!(
            alice.create_service_account("ml-team", "cicd", false),
            Err(Error::ServiceAccountAlreadyExists { .. })
        ));
        // The same name in another workspace is another account.
        dave.create_service_account("other-team", "cicd", false)?;
        // The full name resolves case-insensitively.
        alice.create_project("ml-team/cls", ProjectOptions::default())?;
        alice.add_project_service_account("ml-team/cls", "cicd@ML-Team", ProjectRole::Viewer)?;
        assert!(engine.check(&who("CiCd@ml-team"), "ml-team/cls", Action::View)?);
        assert!(!engine.check(&who("cicd@other-team"), "ml-team/cls", Action::View)?);
        assert_eq!(
            alice.workspace_service_accounts("ml-team")?,
            BTreeMap::from([("CICD@ml-team".to_owned(), WorkspaceRole::Member)])
        );
        for bad in ["ci@cd", "", ".ci", "-ci", "c i"] {
            assert!(
                matches!(
                    alice.create_service_account("ml-team", bad, false),
                    Err(Error::InvalidName {
                        kind: NameKind::ServiceAccount,
                        ..
                    })
                ),
                "{bad:?} should be an invalid service account name"
            );
        }
        Ok(())
    }

    #[test]
    fn n3_project_names_keep_their_spelling_and_are_unique_case_insensitively() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        assert_eq!(
            alice.create_project("ml-team/Classification", ProjectOptions::default())?,
            "ml-team/Classification"
        );
        assert!(matches!(
            alice.create_project("ml-team/CLASSIFICATION", ProjectOptions::default()),
            Err(Error::ProjectAlreadyExists { .. })
        ));
        // Looked up in any case, listed as spelled at creation.
        assert!(engine.check(&who("alice"), "ml-team/classification", Action::View)?);
        assert_eq!(alice.list_projects()?, vec!["ml-team/Classification"]);

        // Outside ASCII: the Basic Multilingual Plane is allowed, case-folded too.
        alice.create_project("ml-team/Проект", ProjectOptions::default())?;
        assert!(matches!(
            alice.create_project("ml-team/проект", ProjectOptions::default()),
            Err(Error::ProjectAlreadyExists { .. })
        ));
        // 3 and 128 characters (not bytes) are the bounds.
        alice.create_project("ml-team/abc", ProjectOptions::default())?;
        alice.create_project(
            &format!("ml-team/{}", "中".repeat(128)),
            ProjectOptions::default(),
        )?;
        // Characters Neptune forbids in a name are allowed elsewhere, e.g. quotes.
        alice.create_project("ml-team/it's; DROP TABLE users", ProjectOptions::default())?;
        assert!(engine.check(
            &who("alice"),
            "ml-team/IT'S; drop table users",
            Action::View
        )?);
        Ok(())
    }

    #[test]
    fn n3_invalid_project_names_are_rejected() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let too_long = "x".repeat(129);
        let too_long_wide = "中".repeat(129);
        for bad in [
            "ab",
            "a\\b",
            "a#bc",
            "ab?c",
            "ab%c",
            "ab:c",
            "ab\u{7}c",
            "ab\nc",
            "rocket🚀",
            too_long.as_str(),
            too_long_wide.as_str(),
        ] {
            assert!(
                matches!(
                    alice.create_project(
                        bad,
                        ProjectOptions {
                            workspace: Some("ml-team".into()),
                            ..Default::default()
                        }
                    ),
                    Err(Error::InvalidName {
                        kind: NameKind::Project,
                        ..
                    })
                ),
                "{bad:?} should be an invalid project name"
            );
        }
        Ok(())
    }

    #[test]
    fn n4_project_keys_are_generated_validated_and_unique() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let key_of = |project: &str| -> Result<String> {
            let query = AuditQuery {
                target: Some(project.to_owned()),
                ..Default::default()
            };
            let created = engine
                .audit_log(&query)?
                .into_iter()
                .find(|e| e.action == "project.create")
                .expect("a creation event");
            Ok(created.details["key"]
                .as_str()
                .expect("a key in the details")
                .to_owned())
        };

        // Generated from the name when not given: 1–10 of A-Z 0-9, at least one letter.
        for name in [
            "classification",
            "clarity",
            "image-segmentation",
            "123",
            "a-b-c-d-e-f-g-h-i-j-k-l",
        ] {
            let project =
                alice.create_project(&format!("ml-team/{name}"), ProjectOptions::default())?;
            let key = key_of(&project)?;
            assert!(
                (1..=10).contains(&key.len())
                    && key
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                    && key.chars().any(|c| c.is_ascii_uppercase()),
                "generated key {key:?} for {name:?} breaks N4"
            );
        }
        // Unique within the workspace: a generated key steps around a taken one.
        assert_ne!(
            key_of("ml-team/classification")?,
            key_of("ml-team/clarity")?
        );

        // A given key is upper-cased; a taken one collides, whatever its case.
        alice.create_project("ml-team/cls-v1", with_key("cls"))?;
        assert_eq!(key_of("ml-team/cls-v1")?, "CLS");
        assert!(matches!(
            alice.create_project("ml-team/cls-v2", with_key("CLS")),
            Err(Error::ProjectKeyCollision { .. })
        ));
        let generated = key_of("ml-team/classification")?;
        assert!(matches!(
            alice.create_project("ml-team/cls-v3", with_key(&generated)),
            Err(Error::ProjectKeyCollision { .. })
        ));
        // Keys are per workspace.
        engine
            .session_for(&who("dave"))?
            .create_project("other-team/cls", with_key("CLS"))?;

        for bad in ["", "123", "CLS-1", "ABCDEFGHIJK", "ÄBC"] {
            assert!(
                matches!(
                    alice.create_project("ml-team/keyed", with_key(bad)),
                    Err(Error::InvalidName {
                        kind: NameKind::ProjectKey,
                        ..
                    })
                ),
                "{bad:?} should be an invalid project key"
            );
        }
        Ok(())
    }

    #[test]
    fn n5_qualified_names_need_exactly_one_slash() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/cls", ProjectOptions::default())?;
        for bad in [
            "ml-team/cls/extra",
            "ml-team/",
            "/cls",
            "cls",
            "ml-team//cls",
            "",
        ] {
            assert!(
                matches!(
                    engine.check(&who("alice"), bad, Action::View),
                    Err(Error::InvalidProjectName { .. })
                ),
                "check({bad:?}) should be an invalid project name"
            );
            assert!(
                matches!(
                    alice.project_members(bad),
                    Err(Error::InvalidProjectName { .. })
                ),
                "project_members({bad:?}) should be an invalid project name"
            );
        }
        // A user's bare name has no workspace to guess.
        assert!(matches!(
            alice.create_project("bare-name", ProjectOptions::default()),
            Err(Error::InvalidProjectName { .. })
        ));
        // A qualified name that contradicts the workspace option is not guessed either.
        assert!(matches!(
            alice.create_project(
                "other-team/cls",
                ProjectOptions {
                    workspace: Some("ml-team".into()),
                    ..Default::default()
                }
            ),
            Err(Error::InvalidProjectName { .. })
        ));
        Ok(())
    }

    #[test]
    fn n6_invalid_names_are_rejected_before_anything_is_written() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/cls", ProjectOptions::default())?;
        let before = log_len(&engine)?;
        let status = alice.workspace_status("ml-team")?;

        assert!(matches!(
            engine.create_user("bad name"),
            Err(Error::InvalidName { value, reason, .. }) if value == "bad name" && !reason.is_empty()
        ));
        assert!(matches!(
            engine.create_workspace("-bad", "alice"),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            alice.create_project("ml-team/x", ProjectOptions::default()),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            alice.create_service_account("ml-team", "ci@cd", false),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            alice.invite_to_workspace("ml-team", ".carol", WorkspaceRole::Member, false),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            alice.add_project_member("ml-team/cls", "b o b", ProjectRole::Viewer),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            alice.add_project_service_account("ml-team/cls", "no-at-sign", ProjectRole::Viewer),
            Err(Error::InvalidName { .. })
        ));

        assert_eq!(log_len(&engine)?, before, "an invalid name wrote an event");
        assert_eq!(alice.workspace_status("ml-team")?, status);
        assert_eq!(alice.list_projects()?, vec!["ml-team/cls"]);
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §3 Effective project role (R)

    #[test]
    fn r1_workspace_admin_is_owner_of_every_project() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let project = bob.create_project("ml-team/bobs", ProjectOptions::default())?;

        // alice has no grant on bob's private project, and owns it all the same.
        assert_eq!(
            engine.explain(&who("alice"), &project)?,
            access(ProjectRole::Owner, RoleSource::WorkspaceAdmin)
        );
        for action in Action::ALL {
            assert!(engine.check(&who("alice"), &project, action)?, "{action}");
        }
        assert!(alice.list_projects()?.contains(&project));

        // R1 follows the workspace role: demoted, alice loses it.
        alice.set_workspace_role("ml-team", "bob", WorkspaceRole::Admin)?;
        alice.set_workspace_role("ml-team", "alice", WorkspaceRole::Member)?;
        assert_eq!(engine.explain(&who("alice"), &project)?, None);
        // ...and an admin of another workspace gains nothing here (R7).
        assert_eq!(engine.explain(&who("dave"), &project)?, None);
        Ok(())
    }

    #[test]
    fn r2_grants_count_only_for_members_and_active_service_accounts() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        alice.add_project_member(&project, "bob", ProjectRole::Contributor)?;
        alice.create_service_account("ml-team", "cicd", false)?;
        alice.add_project_service_account(&project, "cicd@ml-team", ProjectRole::Viewer)?;

        assert_eq!(
            engine.explain(&who("bob"), &project)?,
            access(ProjectRole::Contributor, RoleSource::ExplicitGrant)
        );
        assert_eq!(
            engine.explain(&who("cicd@ml-team"), &project)?,
            access(ProjectRole::Viewer, RoleSource::ExplicitGrant)
        );

        // A user's grant counts only while a member.
        alice.remove_workspace_member("ml-team", "bob")?;
        assert_eq!(engine.explain(&who("bob"), &project)?, None);
        // An SA's grant counts only while active.
        alice.deactivate_service_account("cicd@ml-team")?;
        assert_eq!(engine.explain(&who("cicd@ml-team"), &project)?, None);
        alice.reactivate_service_account("cicd@ml-team")?;
        assert_eq!(
            engine.explain(&who("cicd@ml-team"), &project)?,
            access(ProjectRole::Viewer, RoleSource::ExplicitGrant)
        );
        Ok(())
    }

    #[test]
    fn r3_workspace_visibility_makes_every_member_owner() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/shared", ProjectOptions::default())?;
        alice.add_project_member(&project, "bob", ProjectRole::Viewer)?;
        assert_eq!(
            engine.explain(&who("bob"), &project)?,
            access(ProjectRole::Viewer, RoleSource::ExplicitGrant)
        );

        alice.set_project_visibility(&project, Visibility::Workspace)?;
        // The highest rule wins: owner by visibility beats the viewer grant.
        assert_eq!(
            engine.explain(&who("bob"), &project)?,
            access(ProjectRole::Owner, RoleSource::WorkspaceVisibility)
        );
        assert!(engine.check(&who("bob"), &project, Action::Manage)?);
        // Only members: carol is in no workspace, dave in another.
        assert_eq!(engine.explain(&who("carol"), &project)?, None);
        assert_eq!(engine.explain(&who("dave"), &project)?, None);

        alice.set_project_visibility(&project, Visibility::Private)?;
        assert_eq!(
            engine.explain(&who("bob"), &project)?,
            access(ProjectRole::Viewer, RoleSource::ExplicitGrant)
        );
        Ok(())
    }

    #[test]
    fn r4_public_project_gives_everyone_viewer_including_anonymous() -> Result<()> {
        let engine = teams()?;
        allow_public(&engine, "ml-team", "alice")?;
        let alice = engine.session_for(&who("alice"))?;
        let public = alice.create_project("ml-team/open", with_visibility(Visibility::Public))?;
        let private = alice.create_project("ml-team/closed", ProjectOptions::default())?;
        alice.create_service_account("ml-team", "cicd", false)?;
        engine
            .session_for(&who("dave"))?
            .create_service_account("other-team", "bot", false)?;

        for principal in ["bob", "carol", "dave", "cicd@ml-team", "bot@other-team"] {
            assert_eq!(
                engine.explain(&who(principal), &public)?,
                access(ProjectRole::Viewer, RoleSource::Public),
                "{principal}"
            );
            assert!(engine.check(&who(principal), &public, Action::View)?);
            assert!(!engine.check(&who(principal), &public, Action::Edit)?);
        }
        assert!(engine.check_anonymous(&public, Action::View)?);
        assert!(!engine.check_anonymous(&public, Action::Edit)?);
        assert!(!engine.check_anonymous(&private, Action::View)?);

        // At least viewer: a higher grant still counts.
        alice.add_project_member(&public, "bob", ProjectRole::Contributor)?;
        assert_eq!(
            engine.explain(&who("bob"), &public)?,
            access(ProjectRole::Contributor, RoleSource::ExplicitGrant)
        );
        Ok(())
    }

    #[test]
    fn r5_sa_never_inherits_workspace_visibility() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let shared =
            alice.create_project("ml-team/shared", with_visibility(Visibility::Workspace))?;
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        let cicd = who("cicd@ml-team");

        assert_eq!(engine.explain(&cicd, &shared)?, None);
        assert!(!engine.check(&cicd, &shared, Action::View)?);
        let ci = engine.authenticate(token.secret())?;
        assert_eq!(ci.list_projects()?, Vec::<String>::new());
        assert!(matches!(
            ci.project_members(&shared),
            Err(Error::ProjectNotFound { .. })
        ));

        // Only its explicit grant reaches it, not the owner role R3 gives users.
        alice.add_project_service_account(&shared, "cicd@ml-team", ProjectRole::Viewer)?;
        assert_eq!(
            engine.explain(&cicd, &shared)?,
            access(ProjectRole::Viewer, RoleSource::ExplicitGrant)
        );
        assert_eq!(ci.list_projects()?, vec![shared.clone()]);
        Ok(())
    }

    #[test]
    fn r6_deactivated_sa_has_no_role_anywhere_and_cannot_authenticate() -> Result<()> {
        let engine = teams()?;
        allow_public(&engine, "ml-team", "alice")?;
        let alice = engine.session_for(&who("alice"))?;
        let public = alice.create_project("ml-team/open", with_visibility(Visibility::Public))?;
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        alice.add_project_service_account(&public, "cicd@ml-team", ProjectRole::Owner)?;
        let cicd = who("cicd@ml-team");
        let by_token = engine.authenticate(token.secret())?;
        let stale = engine.session_for(&cicd)?;

        alice.deactivate_service_account("cicd@ml-team")?;
        // Not even R4 reaches it.
        assert_eq!(engine.explain(&cicd, &public)?, None);
        assert!(!engine.check(&cicd, &public, Action::View)?);
        assert!(matches!(
            engine.authenticate(token.secret()),
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            engine.session_for(&cicd),
            Err(Error::ServiceAccountNotFound { .. })
        ));
        // A session opened with its token died with the token (T6); one the application
        // opened before the deactivation can do nothing either.
        assert!(matches!(by_token.list_projects(), Err(Error::InvalidToken)));
        assert_eq!(stale.list_projects()?, Vec::<String>::new());
        assert!(matches!(
            stale.add_project_member(&public, "bob", ProjectRole::Viewer),
            Err(Error::ProjectNotFound { .. })
        ));
        assert!(matches!(
            stale.create_project("ml-team/sneaky", ProjectOptions::default()),
            Err(Error::WorkspaceNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn r7_other_workspace_principals_gain_only_public() -> Result<()> {
        let engine = teams()?;
        allow_public(&engine, "ml-team", "alice")?;
        let alice = engine.session_for(&who("alice"))?;
        let dave = engine.session_for(&who("dave"))?;
        let private = alice.create_project("ml-team/private", ProjectOptions::default())?;
        let shared =
            alice.create_project("ml-team/shared", with_visibility(Visibility::Workspace))?;
        let public = alice.create_project("ml-team/public", with_visibility(Visibility::Public))?;
        dave.create_service_account("other-team", "bot", false)?;

        for foreign in ["dave", "bot@other-team"] {
            assert_eq!(engine.explain(&who(foreign), &private)?, None, "{foreign}");
            assert_eq!(engine.explain(&who(foreign), &shared)?, None, "{foreign}");
            assert_eq!(
                engine.explain(&who(foreign), &public)?,
                access(ProjectRole::Viewer, RoleSource::Public),
                "{foreign}"
            );
        }
        assert_eq!(dave.list_projects()?, vec![public.clone()]);
        // Nor can anyone grant them a role here.
        assert!(matches!(
            alice.add_project_service_account(&private, "bot@other-team", ProjectRole::Owner),
            Err(Error::ServiceAccountNotFound { .. })
        ));
        assert!(matches!(
            alice.add_project_member(&private, "dave", ProjectRole::Owner),
            Err(Error::UserNotInWorkspace { .. })
        ));
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §4 Actions (A)

    #[test]
    fn a_project_actions_follow_the_role_table() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        let expect = [
            (ProjectRole::Viewer, [true, false, false, false]),
            (ProjectRole::Contributor, [true, true, false, false]),
            (ProjectRole::Owner, [true, true, true, false]),
        ];
        alice.add_project_member(&project, "bob", ProjectRole::Viewer)?;
        for (role, allowed) in expect {
            alice.set_project_member_role(&project, "bob", role)?;
            for (action, allowed) in Action::ALL.into_iter().zip(allowed) {
                assert_eq!(
                    engine.check(&who("bob"), &project, action)?,
                    allowed,
                    "{role} {action}"
                );
            }
        }

        // Through the session: a viewer views members but manages nothing.
        alice.set_project_member_role(&project, "bob", ProjectRole::Viewer)?;
        assert_eq!(bob.project_members(&project)?.len(), 2);
        assert!(bob.project_service_accounts(&project)?.is_empty());
        assert!(matches!(
            bob.set_project_description(&project, "mine now"),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(matches!(
            bob.set_project_visibility(&project, Visibility::Workspace),
            Err(Error::PermissionDenied { .. })
        ));
        alice.set_project_member_role(&project, "bob", ProjectRole::Owner)?;
        bob.set_project_description(&project, "ours")?;
        bob.set_project_visibility(&project, Visibility::Workspace)?;
        Ok(())
    }

    #[test]
    fn a_workspace_actions_follow_the_table() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let carol = engine.session_for(&who("carol"))?;
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        let ci = engine.authenticate(token.secret())?;
        let settings = WorkspaceSettings {
            allow_public_projects: Some(true),
            ..Default::default()
        };

        // Any member or active SA lists members and SAs, and creates projects.
        for session in [&alice, &bob, &ci] {
            assert_eq!(session.workspace_members("ml-team")?.len(), 2);
            assert_eq!(session.workspace_service_accounts("ml-team")?.len(), 1);
            assert_eq!(session.workspace_status("ml-team")?.admins, 1);
        }
        bob.create_project("ml-team/bobs", ProjectOptions::default())?;
        ci.create_project("ml-team/cis", ProjectOptions::default())?;

        // Only an admin user manages the workspace, its SAs, and reads the log.
        for session in [&bob, &ci] {
            let denied = |r: Result<()>| matches!(r, Err(Error::PermissionDenied { .. }));
            assert!(denied(session.invite_to_workspace(
                "ml-team",
                "carol",
                WorkspaceRole::Member,
                false
            )));
            assert!(denied(session.remove_workspace_member("ml-team", "bob")));
            assert!(denied(session.set_workspace_role(
                "ml-team",
                "bob",
                WorkspaceRole::Admin
            )));
            assert!(denied(
                session
                    .set_workspace_settings("ml-team", settings)
                    .map(drop)
            ));
            assert!(denied(
                session
                    .create_service_account("ml-team", "other", false)
                    .map(drop)
            ));
            assert!(denied(session.deactivate_service_account("cicd@ml-team")));
            assert!(denied(
                session
                    .issue_service_account_token("cicd@ml-team")
                    .map(drop)
            ));
            assert!(denied(
                session
                    .audit_log("ml-team", &AuditQuery::default())
                    .map(drop)
            ));
        }

        // An outsider is told the workspace does not exist.
        assert!(matches!(
            carol.workspace_members("ml-team"),
            Err(Error::WorkspaceNotFound { .. })
        ));
        assert!(matches!(
            carol.create_project("ml-team/carols", ProjectOptions::default()),
            Err(Error::WorkspaceNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn a1_creator_user_or_sa_receives_an_owner_grant() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        let ci = engine.authenticate(token.secret())?;

        let bobs = bob.create_project("ml-team/bobs", ProjectOptions::default())?;
        assert_eq!(
            bob.project_members(&bobs)?,
            BTreeMap::from([("bob".to_owned(), ProjectRole::Owner)])
        );
        assert_eq!(
            engine.explain(&who("bob"), &bobs)?,
            access(ProjectRole::Owner, RoleSource::ExplicitGrant)
        );

        let cis = ci.create_project("ml-team/cis", ProjectOptions::default())?;
        assert_eq!(
            ci.project_service_accounts(&cis)?,
            BTreeMap::from([("cicd@ml-team".to_owned(), ProjectRole::Owner)])
        );
        assert_eq!(
            engine.explain(&who("cicd@ml-team"), &cis)?,
            access(ProjectRole::Owner, RoleSource::ExplicitGrant)
        );
        // The creator's grant is explicit: it survives a change to workspace visibility
        // and back.
        ci.set_project_visibility(&cis, Visibility::Workspace)?;
        ci.set_project_visibility(&cis, Visibility::Private)?;
        assert!(engine.check(&who("cicd@ml-team"), &cis, Action::Manage)?);
        Ok(())
    }

    #[test]
    fn a2_sa_owner_manages_project_members_and_service_accounts() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        alice.create_service_account("ml-team", "eval", false)?;
        let ci = engine.authenticate(token.secret())?;

        alice.add_project_service_account(&project, "cicd@ml-team", ProjectRole::Contributor)?;
        assert!(matches!(
            ci.add_project_member(&project, "bob", ProjectRole::Viewer),
            Err(Error::PermissionDenied { .. })
        ));

        alice.set_project_service_account_role(&project, "cicd@ml-team", ProjectRole::Owner)?;
        ci.add_project_member(&project, "bob", ProjectRole::Viewer)?;
        ci.set_project_member_role(&project, "bob", ProjectRole::Contributor)?;
        ci.add_project_service_account(&project, "eval@ml-team", ProjectRole::Viewer)?;
        ci.set_project_service_account_role(&project, "eval@ml-team", ProjectRole::Contributor)?;
        assert_eq!(
            ci.project_service_accounts(&project)?,
            BTreeMap::from([
                ("cicd@ml-team".to_owned(), ProjectRole::Owner),
                ("eval@ml-team".to_owned(), ProjectRole::Contributor),
            ])
        );
        assert_eq!(
            ci.project_members(&project)?.get("bob"),
            Some(&ProjectRole::Contributor)
        );
        ci.remove_project_service_account(&project, "eval@ml-team")?;
        ci.remove_project_member(&project, "bob")?;
        assert_eq!(engine.explain(&who("bob"), &project)?, None);
        Ok(())
    }

    #[test]
    fn a3_sa_never_deletes_a_project_and_never_becomes_admin() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        let ci = engine.authenticate(token.secret())?;
        let own = ci.create_project("ml-team/cis", ProjectOptions::default())?;

        assert!(!engine.check(&who("cicd@ml-team"), &own, Action::Delete)?);
        assert!(matches!(
            ci.delete_project(&own),
            Err(Error::PermissionDenied { action, .. }) if action == "delete projects"
        ));
        assert!(matches!(
            alice.invite_to_workspace("ml-team", "cicd@ml-team", WorkspaceRole::Admin, false),
            Err(Error::InvalidName {
                kind: NameKind::Username,
                ..
            })
        ));
        assert!(matches!(
            alice.set_workspace_role("ml-team", "cicd@ml-team", WorkspaceRole::Admin),
            Err(Error::InvalidName {
                kind: NameKind::Username,
                ..
            })
        ));
        // It holds no workspace role: it is not among the members.
        assert!(
            !alice
                .workspace_members("ml-team")?
                .contains_key("cicd@ml-team")
        );
        assert!(engine.check(&who("alice"), &own, Action::View)?);
        Ok(())
    }

    #[test]
    fn a3_only_a_workspace_admin_user_deletes_projects() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let bobs = bob.create_project("ml-team/bobs", ProjectOptions::default())?;
        let shared =
            alice.create_project("ml-team/shared", with_visibility(Visibility::Workspace))?;

        // Owner by grant (A1) or by visibility (R3) is not enough.
        for project in [&bobs, &shared] {
            assert!(engine.check(&who("bob"), project, Action::Manage)?);
            assert!(!engine.check(&who("bob"), project, Action::Delete)?);
            assert!(matches!(
                bob.delete_project(project),
                Err(Error::PermissionDenied { .. })
            ));
        }
        alice.delete_project(&bobs)?;
        assert!(!engine.check(&who("bob"), &bobs, Action::View)?);
        assert!(matches!(
            bob.project_members(&bobs),
            Err(Error::ProjectNotFound { .. })
        ));
        // The name is free again.
        bob.create_project(&bobs, ProjectOptions::default())?;
        Ok(())
    }

    #[test]
    fn a4_last_admin_cannot_be_removed_or_demoted() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        assert!(matches!(
            alice.remove_workspace_member("ml-team", "alice"),
            Err(Error::LastAdmin { workspace }) if workspace == "ml-team"
        ));
        assert!(matches!(
            alice.set_workspace_role("ml-team", "alice", WorkspaceRole::Member),
            Err(Error::LastAdmin { .. })
        ));
        // Setting the admin role again is not a demotion.
        alice.set_workspace_role("ml-team", "alice", WorkspaceRole::Admin)?;

        alice.set_workspace_role("ml-team", "bob", WorkspaceRole::Admin)?;
        alice.remove_workspace_member("ml-team", "alice")?;
        let bob = engine.session_for(&who("bob"))?;
        assert!(matches!(
            bob.remove_workspace_member("ml-team", "bob"),
            Err(Error::LastAdmin { .. })
        ));
        assert_eq!(bob.workspace_status("ml-team")?.admins, 1);
        Ok(())
    }

    #[test]
    fn a5_public_only_while_the_workspace_allows_it() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let status = alice.workspace_status("ml-team")?;
        assert!(!status.allow_public_projects, "default is false");

        assert!(matches!(
            alice.create_project("ml-team/open", with_visibility(Visibility::Public)),
            Err(Error::VisibilityRestricted { workspace }) if workspace == "ml-team"
        ));
        let project =
            alice.create_project("ml-team/open", with_visibility(Visibility::Workspace))?;
        assert!(matches!(
            alice.set_project_visibility(&project, Visibility::Public),
            Err(Error::VisibilityRestricted { .. })
        ));
        assert!(!engine.check_anonymous(&project, Action::View)?);

        allow_public(&engine, "ml-team", "alice")?;
        alice.set_project_visibility(&project, Visibility::Public)?;
        assert!(engine.check_anonymous(&project, Action::View)?);
        // The permission is per workspace.
        assert!(matches!(
            engine
                .session_for(&who("dave"))?
                .create_project("other-team/open", with_visibility(Visibility::Public)),
            Err(Error::VisibilityRestricted { .. })
        ));
        Ok(())
    }

    /// A6, second paragraph: every decision answers a project that does not exist exactly
    /// as one the principal cannot view, whoever asks (an outsider's token included), so
    /// no decision is an existence oracle.
    #[test]
    fn a6_decisions_answer_absent_and_invisible_projects_alike() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let hidden = alice.create_project("ml-team/hidden", ProjectOptions::default())?;
        let dave_token = engine.issue_user_token("dave", "laptop", None)?;
        let bob_token = engine.issue_user_token("bob", "laptop", None)?;
        let absent = ["ml-team/absent", "no-such-team/hidden"];
        for missing in absent {
            for action in [Action::View, Action::Edit, Action::Manage, Action::Delete] {
                for principal in ["bob", "dave", "carol"] {
                    let a = format!("{:?}", engine.check(&who(principal), &hidden, action));
                    let b = format!("{:?}", engine.check(&who(principal), missing, action));
                    assert_eq!(a, b, "check({principal}, {action:?})");
                    assert_eq!(a, "Ok(false)");
                }
                let a = format!("{:?}", engine.check_anonymous(&hidden, action));
                let b = format!("{:?}", engine.check_anonymous(missing, action));
                assert_eq!(a, b, "check_anonymous({action:?})");
                for token in [&dave_token, &bob_token] {
                    let a = format!("{:?}", engine.authorize(token.secret(), &hidden, action));
                    let b = format!("{:?}", engine.authorize(token.secret(), missing, action));
                    assert_eq!(a, b, "authorize({:?}, {action:?})", token.principal);
                    assert_eq!(a, "Ok(false)");
                }
            }
            for principal in ["bob", "dave", "carol"] {
                let a = format!("{:?}", engine.explain(&who(principal), &hidden));
                let b = format!("{:?}", engine.explain(&who(principal), missing));
                assert_eq!(a, b, "explain({principal})");
                assert_eq!(a, "Ok(None)");
            }
            let a = format!("{:?}", engine.explain_anonymous(&hidden));
            let b = format!("{:?}", engine.explain_anonymous(missing));
            assert_eq!(a, b, "explain_anonymous");
        }
        Ok(())
    }

    #[test]
    fn a6_invisible_project_is_not_found_not_denied() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let carol = engine.session_for(&who("carol"))?;
        let secret = alice.create_project("ml-team/secret", ProjectOptions::default())?;
        let seen = alice.create_project("ml-team/seen", ProjectOptions::default())?;
        alice.add_project_member(&seen, "bob", ProjectRole::Viewer)?;
        alice.create_service_account("ml-team", "cicd", false)?;
        engine
            .session_for(&who("dave"))?
            .create_service_account("other-team", "bot", false)?;
        let cicd = engine.session_for(&who("cicd@ml-team"))?;
        let bot = engine.session_for(&who("bot@other-team"))?;

        // Cannot view: not found, whatever the action, for a member, an outsider, an SA
        // of the workspace without a grant and an SA of another workspace.
        for session in [&bob, &carol, &cicd, &bot] {
            assert!(matches!(
                session.project_members(&secret),
                Err(Error::ProjectNotFound { .. })
            ));
            assert!(matches!(
                session.add_project_member(&secret, "bob", ProjectRole::Owner),
                Err(Error::ProjectNotFound { .. })
            ));
            assert!(matches!(
                session.delete_project(&secret),
                Err(Error::ProjectNotFound { .. })
            ));
        }
        // Exactly as if it did not exist: the same error before and after deletion.
        let hidden = bob
            .set_project_description(&secret, "x")
            .expect_err("bob cannot see it")
            .to_string();
        alice.delete_project(&secret)?;
        let absent = bob
            .set_project_description(&secret, "x")
            .expect_err("it is gone")
            .to_string();
        assert_eq!(hidden, absent);
        // Nor does a missing workspace read differently.
        assert!(matches!(
            bob.project_members("no-such-team/secret"),
            Err(Error::ProjectNotFound { .. })
        ));

        // Can view but not act: permission denied, naming the action.
        assert!(matches!(
            bob.add_project_member(&seen, "bob", ProjectRole::Owner),
            Err(Error::PermissionDenied { action, .. }) if action == "add project members"
        ));
        assert!(matches!(
            bob.delete_project(&seen),
            Err(Error::PermissionDenied { action, .. }) if action == "delete projects"
        ));
        Ok(())
    }

    #[test]
    fn a7_users_are_granted_only_while_members() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        assert!(matches!(
            alice.add_project_member(&project, "carol", ProjectRole::Viewer),
            Err(Error::UserNotInWorkspace { user, workspace }) if user == "carol" && workspace == "ml-team"
        ));
        assert!(matches!(
            alice.add_project_member(&project, "nobody", ProjectRole::Viewer),
            Err(Error::UserNotFound { .. })
        ));
        assert!(!alice.project_members(&project)?.contains_key("carol"));
        Ok(())
    }

    #[test]
    fn a7_removing_member_deletes_their_grants() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let first = alice.create_project("ml-team/first", ProjectOptions::default())?;
        let second = alice.create_project("ml-team/second", ProjectOptions::default())?;
        alice.add_project_member(&first, "bob", ProjectRole::Owner)?;
        alice.add_project_member(&second, "bob", ProjectRole::Viewer)?;

        alice.remove_workspace_member("ml-team", "bob")?;
        let event = newest_event(&engine)?;
        assert_eq!(event.action, "workspace.member.remove");
        assert_eq!(event.details["grants_removed"], 2);

        // Re-invited, bob starts from nothing: the grants are gone, not dormant.
        alice.invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false)?;
        for project in [&first, &second] {
            assert_eq!(engine.explain(&who("bob"), project)?, None);
            assert!(!alice.project_members(project)?.contains_key("bob"));
        }
        assert_eq!(
            engine.session_for(&who("bob"))?.list_projects()?,
            Vec::<String>::new()
        );
        Ok(())
    }

    #[test]
    fn a8_workspace_visibility_members_cannot_be_added_or_removed() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project =
            alice.create_project("ml-team/shared", with_visibility(Visibility::Workspace))?;
        alice.create_service_account("ml-team", "cicd", false)?;

        for role in ProjectRole::ALL {
            assert!(matches!(
                alice.add_project_member(&project, "bob", role),
                Err(Error::UserAlreadyHasAccess { role: ProjectRole::Owner, user, .. }) if user == "bob"
            ));
        }
        assert!(matches!(
            alice.remove_project_member(&project, "bob"),
            Err(Error::UserNotExistsOrWithoutAccess { .. })
        ));
        // The creator's own grant cannot be removed either while the project is shared.
        assert!(matches!(
            alice.remove_project_member(&project, "alice"),
            Err(Error::UserNotExistsOrWithoutAccess { .. })
        ));
        // A non-member is still not a member.
        assert!(matches!(
            alice.add_project_member(&project, "carol", ProjectRole::Viewer),
            Err(Error::UserNotInWorkspace { .. })
        ));
        // SAs are added and removed explicitly.
        alice.add_project_service_account(&project, "cicd@ml-team", ProjectRole::Contributor)?;
        assert!(engine.check(&who("cicd@ml-team"), &project, Action::Edit)?);
        alice.remove_project_service_account(&project, "cicd@ml-team")?;
        assert!(!engine.check(&who("cicd@ml-team"), &project, Action::View)?);
        Ok(())
    }

    #[test]
    fn a9_add_to_all_projects_excludes_later_projects() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let first = alice.create_project("ml-team/first", ProjectOptions::default())?;
        let second = alice.create_project("ml-team/second", ProjectOptions::default())?;
        alice.invite_to_workspace("ml-team", "carol", WorkspaceRole::Member, true)?;
        let later = alice.create_project("ml-team/later", ProjectOptions::default())?;

        for project in [&first, &second] {
            assert_eq!(
                engine.explain(&who("carol"), project)?,
                access(ProjectRole::Contributor, RoleSource::ExplicitGrant)
            );
        }
        assert_eq!(engine.explain(&who("carol"), &later)?, None);
        assert_eq!(
            engine.session_for(&who("carol"))?.list_projects()?,
            vec![first.clone(), second.clone()]
        );
        // Without the flag, nothing is granted.
        engine.create_user("erin")?;
        alice.invite_to_workspace("ml-team", "erin", WorkspaceRole::Member, false)?;
        assert_eq!(engine.explain(&who("erin"), &first)?, None);
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §5 Service accounts (S)

    #[test]
    fn s1_only_admin_users_create_service_accounts() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        assert!(matches!(
            bob.create_service_account("ml-team", "cicd", false),
            Err(Error::PermissionDenied { .. })
        ));
        let token = alice.create_service_account("ml-team", "cicd", false)?;
        assert_eq!(token.principal, who("cicd@ml-team"));
        let ci = engine.authenticate(token.secret())?;
        assert!(matches!(
            ci.create_service_account("ml-team", "child", false),
            Err(Error::PermissionDenied { .. })
        ));
        // An admin of another workspace does not see this one.
        assert!(matches!(
            engine
                .session_for(&who("dave"))?
                .create_service_account("ml-team", "spy", false),
            Err(Error::WorkspaceNotFound { .. })
        ));
        assert_eq!(
            alice.workspace_service_accounts("ml-team")?,
            BTreeMap::from([("cicd@ml-team".to_owned(), WorkspaceRole::Member)])
        );
        Ok(())
    }

    #[test]
    fn s1_contributor_on_all_existing_projects_only() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let first = alice.create_project("ml-team/first", ProjectOptions::default())?;
        let second =
            alice.create_project("ml-team/second", with_visibility(Visibility::Workspace))?;
        alice.create_service_account("ml-team", "everywhere", true)?;
        alice.create_service_account("ml-team", "nowhere", false)?;
        let later = alice.create_project("ml-team/later", ProjectOptions::default())?;

        for project in [&first, &second] {
            assert_eq!(
                alice.project_service_accounts(project)?,
                BTreeMap::from([("everywhere@ml-team".to_owned(), ProjectRole::Contributor)])
            );
            assert!(engine.check(&who("everywhere@ml-team"), project, Action::Edit)?);
            assert!(!engine.check(&who("nowhere@ml-team"), project, Action::View)?);
        }
        assert!(!engine.check(&who("everywhere@ml-team"), &later, Action::View)?);
        assert!(alice.project_service_accounts(&later)?.is_empty());
        Ok(())
    }

    #[test]
    fn s2_limit_counts_active_accounts_on_create_and_reactivate() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let status = alice.set_workspace_settings(
            "ml-team",
            WorkspaceSettings {
                service_account_limit: Some(2),
                ..Default::default()
            },
        )?;
        assert_eq!(status.service_account_limit, 2);
        alice.create_service_account("ml-team", "a", false)?;
        alice.create_service_account("ml-team", "b", false)?;
        assert!(matches!(
            alice.create_service_account("ml-team", "c", false),
            Err(Error::ServiceAccountLimitReached { limit: 2, workspace }) if workspace == "ml-team"
        ));
        alice.deactivate_service_account("a@ml-team")?;
        alice.create_service_account("ml-team", "c", false)?;
        assert!(matches!(
            alice.reactivate_service_account("a@ml-team"),
            Err(Error::ServiceAccountLimitReached { .. })
        ));
        alice.deactivate_service_account("b@ml-team")?;
        alice.reactivate_service_account("a@ml-team")?;
        let status = alice.workspace_status("ml-team")?;
        assert_eq!(
            (
                status.active_service_accounts,
                status.deactivated_service_accounts
            ),
            (2, 1)
        );
        // The limit is per workspace.
        let dave = engine.session_for(&who("dave"))?;
        dave.create_service_account("other-team", "a", false)?;
        dave.create_service_account("other-team", "b", false)?;
        dave.create_service_account("other-team", "c", false)?;
        Ok(())
    }

    #[test]
    fn s2_racing_engines_never_exceed_the_limit() -> Result<()> {
        let db = shared_db()?;
        let path = db.target();
        let limit = 3;
        Engine::open(path)?
            .session_for(&who("alice"))?
            .set_workspace_settings(
                "ml-team",
                WorkspaceSettings {
                    service_account_limit: Some(limit),
                    ..Default::default()
                },
            )?;
        // Two engines on one file stand for two processes; two threads each.
        let engines = [Engine::open(path)?, Engine::open(path)?];
        let threads = 4;
        let barrier = Barrier::new(threads);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let engine = &engines[t % 2];
                    let barrier = &barrier;
                    s.spawn(move || -> Vec<Result<()>> {
                        let alice = match engine.session_for(&who("alice")) {
                            Ok(session) => session,
                            Err(e) => return vec![Err(e)],
                        };
                        barrier.wait();
                        (0..limit)
                            .map(|n| {
                                alice
                                    .create_service_account(
                                        "ml-team",
                                        &format!("sa-{t}-{n}"),
                                        false,
                                    )
                                    .map(drop)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("no thread panics"))
                .collect()
        });
        let created = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(created, limit as usize);
        for r in &results {
            assert!(
                matches!(r, Ok(()) | Err(Error::ServiceAccountLimitReached { .. })),
                "unexpected outcome {r:?}"
            );
        }
        let status = engines[0]
            .session_for(&who("alice"))?
            .workspace_status("ml-team")?;
        assert_eq!(status.active_service_accounts, limit);
        Ok(())
    }

    #[test]
    fn s3_deactivated_sa_cannot_be_assigned_and_grants_are_inert() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let kept = alice.create_project("ml-team/kept", ProjectOptions::default())?;
        let other = alice.create_project("ml-team/other", ProjectOptions::default())?;
        alice.create_service_account("ml-team", "cicd", false)?;
        alice.add_project_service_account(&kept, "cicd@ml-team", ProjectRole::Contributor)?;
        let cicd = who("cicd@ml-team");

        alice.deactivate_service_account("cicd@ml-team")?;
        // Cannot be assigned.
        assert!(matches!(
            alice.add_project_service_account(&other, "cicd@ml-team", ProjectRole::Viewer),
            Err(Error::ServiceAccountNotFound { .. })
        ));
        assert!(matches!(
            alice.set_project_service_account_role(&kept, "cicd@ml-team", ProjectRole::Owner),
            Err(Error::ServiceAccountNotFound { .. })
        ));
        // Left out of lists unless asked for; never deleted.
        assert!(alice.workspace_service_accounts("ml-team")?.is_empty());
        assert!(alice.project_service_accounts(&kept)?.is_empty());
        assert!(alice.service_accounts("ml-team", false)?.is_empty());
        let all = alice.service_accounts("ml-team", true)?;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].full_name, "cicd@ml-team");
        assert!(!all[0].active);
        // Its grant is inert...
        assert!(!engine.check(&cicd, &kept, Action::View)?);
        // ...deactivating twice finds no active account...
        assert!(matches!(
            alice.deactivate_service_account("cicd@ml-team"),
            Err(Error::ServiceAccountNotFound { .. })
        ));
        // ...and the grant comes back, unchanged, with reactivation.
        alice.reactivate_service_account("cicd@ml-team")?;
        assert!(engine.check(&cicd, &kept, Action::Edit)?);
        assert!(!engine.check(&cicd, &other, Action::View)?);
        assert_eq!(
            alice.project_service_accounts(&kept)?,
            BTreeMap::from([("cicd@ml-team".to_owned(), ProjectRole::Contributor)])
        );
        Ok(())
    }

    #[test]
    fn s4_reactivation_returns_new_token_old_fails() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let first = alice.create_service_account("ml-team", "cicd", false)?;
        let second = alice.issue_service_account_token("cicd@ml-team")?;
        assert_eq!(
            engine.authenticate(second.secret())?.actor(),
            &who("cicd@ml-team")
        );

        alice.deactivate_service_account("cicd@ml-team")?;
        assert!(matches!(
            engine.authenticate(second.secret()),
            Err(Error::InvalidToken)
        ));
        let third = alice.reactivate_service_account("cicd@ml-team")?;
        assert_eq!(third.principal, who("cicd@ml-team"));
        assert_ne!(third.secret(), first.secret());
        assert_ne!(third.secret(), second.secret());
        assert_eq!(
            engine.authenticate(third.secret())?.actor(),
            &who("cicd@ml-team")
        );
        for old in [&first, &second] {
            assert!(matches!(
                engine.authenticate(old.secret()),
                Err(Error::InvalidToken)
            ));
        }
        assert!(matches!(
            alice.reactivate_service_account("cicd@ml-team"),
            Err(Error::ServiceAccountActive { .. })
        ));
        Ok(())
    }

    #[test]
    fn s5_only_admins_issue_sa_tokens_and_the_old_one_stops_at_once() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let old = alice.create_service_account("ml-team", "cicd", false)?;
        let ci = engine.authenticate(old.secret())?;
        assert!(matches!(
            bob.issue_service_account_token("cicd@ml-team"),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(matches!(
            ci.issue_service_account_token("cicd@ml-team"),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(matches!(
            bob.revoke_service_account_token("cicd@ml-team"),
            Err(Error::PermissionDenied { .. })
        ));
        engine.authenticate(old.secret())?;

        let new = alice.issue_service_account_token("cicd@ml-team")?;
        assert!(matches!(
            engine.authenticate(old.secret()),
            Err(Error::InvalidToken)
        ));
        engine.authenticate(new.secret())?;
        assert_eq!(alice.revoke_service_account_token("cicd@ml-team")?, 1);
        assert!(matches!(
            engine.authenticate(new.secret()),
            Err(Error::InvalidToken)
        ));
        Ok(())
    }

    #[test]
    fn s6_sa_grants_are_added_removed_and_changed_by_separate_calls() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        alice.create_service_account("ml-team", "cicd", false)?;

        assert!(matches!(
            alice.remove_project_service_account(&project, "cicd@ml-team"),
            Err(Error::ServiceAccountNotExistsOrWithoutAccess { .. })
        ));
        assert!(matches!(
            alice.remove_project_service_account(&project, "ghost@ml-team"),
            Err(Error::ServiceAccountNotExistsOrWithoutAccess { .. })
        ));
        assert!(matches!(
            alice.set_project_service_account_role(&project, "cicd@ml-team", ProjectRole::Owner),
            Err(Error::ServiceAccountNotExistsOrWithoutAccess { .. })
        ));

        alice.add_project_service_account(&project, "cicd@ml-team", ProjectRole::Contributor)?;
        assert!(matches!(
            alice.add_project_service_account(&project, "cicd@ml-team", ProjectRole::Owner),
            Err(Error::ServiceAccountAlreadyHasAccess {
                role: ProjectRole::Contributor,
                ..
            })
        ));
        // Adding again did not change the role; the role has its own call.
        assert_eq!(
            alice.project_service_accounts(&project)?["cicd@ml-team"],
            ProjectRole::Contributor
        );
        alice.set_project_service_account_role(&project, "cicd@ml-team", ProjectRole::Owner)?;
        assert_eq!(
            alice.project_service_accounts(&project)?["cicd@ml-team"],
            ProjectRole::Owner
        );
        alice.remove_project_service_account(&project, "cicd@ml-team")?;
        assert!(matches!(
            alice.remove_project_service_account(&project, "cicd@ml-team"),
            Err(Error::ServiceAccountNotExistsOrWithoutAccess { .. })
        ));
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §7 Management API (M)

    #[test]
    fn m_workspace_lists_and_status() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/one", ProjectOptions::default())?;
        alice.create_project("ml-team/two", ProjectOptions::default())?;
        alice.create_service_account("ml-team", "cicd", false)?;
        alice.create_service_account("ml-team", "old", false)?;
        alice.deactivate_service_account("old@ml-team")?;

        assert_eq!(
            alice.workspace_members("ml-team")?,
            BTreeMap::from([
                ("alice".to_owned(), WorkspaceRole::Admin),
                ("bob".to_owned(), WorkspaceRole::Member),
            ])
        );
        assert_eq!(
            alice.workspace_service_accounts("ml-team")?,
            BTreeMap::from([("cicd@ml-team".to_owned(), WorkspaceRole::Member)])
        );
        let status = alice.workspace_status("ml-team")?;
        assert_eq!(status.workspace, "ml-team");
        assert_eq!((status.admins, status.members, status.projects), (1, 1, 2));
        assert_eq!(
            (
                status.active_service_accounts,
                status.deactivated_service_accounts
            ),
            (1, 1)
        );
        assert_eq!(status.service_account_limit, 50);
        assert!(!status.allow_public_projects);
        Ok(())
    }

    #[test]
    fn m_create_project_takes_options_and_returns_the_qualified_name() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let name = alice.create_project(
            "Segmentation",
            ProjectOptions {
                workspace: Some("ML-Team".into()),
                key: Some("SEG".into()),
                visibility: Some("workspace".parse()?),
                description: Some("masks".into()),
            },
        )?;
        assert_eq!(name, "ml-team/Segmentation");
        assert_eq!(
            engine.explain(&who("bob"), &name)?,
            access(ProjectRole::Owner, RoleSource::WorkspaceVisibility)
        );
        let event = newest_event(&engine)?;
        assert_eq!(event.details["key"], "SEG");
        assert!(matches!(
            alice.create_project("ml-team/segmentation", ProjectOptions::default()),
            Err(Error::ProjectAlreadyExists { .. })
        ));
        assert!(matches!(
            alice.create_project("no-such-team/x-ray", ProjectOptions::default()),
            Err(Error::WorkspaceNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn m_set_project_member_role_changes_only_explicit_grants() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        assert!(matches!(
            alice.set_project_member_role(&project, "bob", ProjectRole::Owner),
            Err(Error::UserNotExistsOrWithoutAccess { .. })
        ));
        alice.add_project_member(&project, "bob", ProjectRole::Viewer)?;
        assert!(matches!(
            alice.add_project_member(&project, "bob", ProjectRole::Owner),
            Err(Error::UserAlreadyHasAccess {
                role: ProjectRole::Viewer,
                ..
            })
        ));
        alice.set_project_member_role(&project, "bob", ProjectRole::Owner)?;
        assert_eq!(alice.project_members(&project)?["bob"], ProjectRole::Owner);
        alice.remove_project_member(&project, "bob")?;
        assert!(matches!(
            alice.remove_project_member(&project, "bob"),
            Err(Error::UserNotExistsOrWithoutAccess { .. })
        ));
        assert!(matches!(
            alice.remove_project_member(&project, "nobody"),
            Err(Error::UserNotExistsOrWithoutAccess { .. })
        ));
        Ok(())
    }

    #[test]
    fn m_sessions_come_from_tokens_or_known_principals() -> Result<()> {
        let engine = teams()?;
        let token = engine.issue_user_token("bob", "laptop", None)?;
        let bob = engine.authenticate(token.secret())?;
        assert_eq!(bob.actor(), &who("bob"));
        assert!(matches!(
            engine.session_for(&who("nobody")),
            Err(Error::UserNotFound { .. })
        ));
        assert!(matches!(
            engine.session_for(&who("ghost@ml-team")),
            Err(Error::ServiceAccountNotFound { .. })
        ));
        assert!(matches!(
            engine.authenticate("not-a-token"),
            Err(Error::InvalidToken)
        ));
        // check knows no unknown principal, whether or not the project exists; an
        // unknown project is only "no access" (A6).
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        assert!(matches!(
            engine.check(&who("nobody"), &project, Action::View),
            Err(Error::UserNotFound { .. })
        ));
        assert!(matches!(
            engine.check(&who("nobody"), "ml-team/nothing", Action::View),
            Err(Error::UserNotFound { .. })
        ));
        assert!(!engine.check(&who("alice"), "ml-team/nothing", Action::View)?);
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §8 Errors (E)

    #[test]
    fn e2_messages_name_the_thing_in_backticks() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        alice.add_project_member(&project, "bob", ProjectRole::Viewer)?;
        alice.create_project("ml-team/hidden", ProjectOptions::default())?;

        let err = bob.project_members("ml-team/hidden").expect_err("hidden");
        assert_eq!(err.to_string(), "project `ml-team/hidden` not found");

        let huge = "x".repeat(100_000);
        let cases: Vec<(Error, &[&str])> = vec![
            (
                engine.create_workspace("-team", "alice").expect_err("N1"),
                &["`-team`"],
            ),
            (
                alice
                    .add_project_member(&project, "bob", ProjectRole::Owner)
                    .expect_err("has access"),
                &["`bob`", "`ml-team/cls`"],
            ),
            (
                bob.delete_project(&project).expect_err("denied"),
                &["`bob`", "`ml-team/cls`"],
            ),
            (
                alice
                    .remove_workspace_member("ml-team", "alice")
                    .expect_err("A4"),
                &["`ml-team`"],
            ),
            (
                alice
                    .invite_to_workspace("ml-team", "nobody", WorkspaceRole::Member, false)
                    .expect_err("unknown user"),
                &["`nobody`", "`ml-team`"],
            ),
            (
                alice
                    .invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false)
                    .expect_err("invited"),
                &["`bob`", "`ml-team`"],
            ),
            (
                alice.project_members("ml-team/a/b").expect_err("N5"),
                &["`ml-team/a/b`"],
            ),
            (
                alice
                    .create_project("ml-team/open", with_visibility(Visibility::Public))
                    .expect_err("A5"),
                &["`ml-team`"],
            ),
            (
                alice
                    .add_project_service_account(&project, "ghost@ml-team", ProjectRole::Viewer)
                    .expect_err("no such SA"),
                &["`ghost@ml-team`"],
            ),
            (
                alice
                    .create_project("ml-team/cls-2", with_key("CLS"))
                    .and_then(|_| alice.create_project("ml-team/cls-3", with_key("CLS")))
                    .expect_err("N4"),
                &["`CLS`", "`ml-team`"],
            ),
            (
                alice
                    .add_project_member(&project, "carol", ProjectRole::Viewer)
                    .expect_err("A7"),
                &["`carol`", "`ml-team`"],
            ),
            (engine.create_user(&huge).expect_err("too long"), &["`xxx"]),
        ];
        for (err, things) in cases {
            let message = err.to_string();
            for thing in things {
                assert!(message.contains(thing), "{message:?} does not name {thing}");
            }
            let first = message.chars().next().expect("a message");
            assert!(!first.is_uppercase(), "{message:?} is not lower-case");
            assert!(!message.ends_with('.'), "{message:?} ends with a period");
            assert!(
                !message.contains("Error") && !message.contains("::"),
                "{message:?} names a Rust type"
            );
            assert!(
                message.len() < 300,
                "{message:?} echoes all of a huge input"
            );
        }
        Ok(())
    }

    #[test]
    fn e3_failed_call_changes_nothing() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        alice.add_project_member(&project, "bob", ProjectRole::Viewer)?;
        alice.create_service_account("ml-team", "cicd", false)?;

        type Snapshot = (
            usize,
            BTreeMap<String, ProjectRole>,
            BTreeMap<String, ProjectRole>,
            BTreeMap<String, WorkspaceRole>,
            Vec<String>,
            turnstile::WorkspaceStatus,
        );
        let snapshot = || -> Result<Snapshot> {
            Ok((
                log_len(&engine)?,
                alice.project_members(&project)?,
                alice.project_service_accounts(&project)?,
                alice.workspace_members("ml-team")?,
                alice.list_projects()?,
                alice.workspace_status("ml-team")?,
            ))
        };
        let before = snapshot()?;
        let failures: Vec<Error> = vec![
            alice
                .add_project_member(&project, "bob", ProjectRole::Owner)
                .expect_err("already has access"),
            alice
                .create_project("ml-team/CLS", ProjectOptions::default())
                .expect_err("exists"),
            alice
                .remove_workspace_member("ml-team", "alice")
                .expect_err("last admin"),
            alice
                .set_workspace_role("ml-team", "alice", WorkspaceRole::Member)
                .expect_err("last admin"),
            alice
                .create_project("ml-team/open", with_visibility(Visibility::Public))
                .expect_err("restricted"),
            alice
                .invite_to_workspace("ml-team", "bob", WorkspaceRole::Admin, true)
                .expect_err("invited"),
            alice
                .create_service_account("ml-team", "CICD", true)
                .expect_err("exists"),
            alice
                .remove_project_service_account(&project, "cicd@ml-team")
                .expect_err("no grant"),
        ];
        assert_eq!(failures.len(), 8);
        assert_eq!(snapshot()?, before, "a failed call changed something");

        // A denied call changes nothing but appends its denial event (L1).
        assert!(matches!(
            bob.add_project_member(&project, "bob", ProjectRole::Owner),
            Err(Error::PermissionDenied { .. })
        ));
        let after = snapshot()?;
        assert_eq!(after.0, before.0 + 1);
        assert_eq!(
            (&after.1, &after.2, &after.3),
            (&before.1, &before.2, &before.3)
        );
        assert_eq!(newest_event(&engine)?.outcome, Outcome::Denied);
        Ok(())
    }

    #[test]
    fn e4_malformed_input_never_panics() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        let huge = "x".repeat(1_000_000);
        let wide = "é".repeat(200);
        let rockets = "🚀".repeat(50);
        let almost_token = format!("tst_{}", "A".repeat(49));
        let nasty: Vec<&str> = vec![
            "",
            " ",
            "\0",
            "\u{7f}",
            "\u{feff}",
            "a",
            "@",
            "@@",
            "a@",
            "@b",
            "a@b@c",
            "/",
            "//",
            "a/b/c",
            "ml-team/",
            "/cls",
            "ml-team/\0ab",
            "ML-TEAM/CLS",
            "%s%n",
            "'; DROP TABLE users; --",
            "tst_",
            &almost_token,
            &huge,
            &wide,
            &rockets,
        ];
        for s in &nasty {
            let _ = engine.create_user(s);
            let _ = engine.create_workspace(s, "alice");
            let _ = engine.create_workspace("fine-name", s);
            let _ = engine.issue_user_token("alice", s, None);
            let _ = engine.authenticate(s);
            let _ = engine.authorize(s, &project, Action::View);
            let _ = engine.check(&who("alice"), s, Action::View);
            let _ = engine.check_anonymous(s, Action::View);
            let _ = engine.explain(&who("alice"), s);
            if let Ok(principal) = s.parse::<Principal>() {
                let _ = engine.check(&principal, &project, Action::View);
                let _ = engine.session_for(&principal);
            }
            let _ = s.parse::<ProjectRole>();
            let _ = s.parse::<Visibility>();
            let _ = s.parse::<WorkspaceRole>();
            let _ = s.parse::<Action>();
            let _ = alice.create_project(s, ProjectOptions::default());
            let _ = alice.create_project(s, with_key(s));
            let _ = alice.create_project(
                s,
                ProjectOptions {
                    workspace: Some((*s).to_owned()),
                    ..Default::default()
                },
            );
            let _ = alice.project_members(s);
            let _ = alice.add_project_member(&project, s, ProjectRole::Viewer);
            let _ = alice.remove_project_member(&project, s);
            let _ = alice.add_project_service_account(&project, s, ProjectRole::Viewer);
            let _ = alice.remove_project_service_account(&project, s);
            let _ = alice.invite_to_workspace(s, s, WorkspaceRole::Member, true);
            let _ = alice.remove_workspace_member("ml-team", s);
            let _ = alice.set_workspace_role("ml-team", s, WorkspaceRole::Member);
            let _ = alice.workspace_members(s);
            let _ = alice.create_service_account("ml-team", s, true);
            let _ = alice.deactivate_service_account(s);
            let _ = alice.reactivate_service_account(s);
            let _ = alice.issue_service_account_token(s);
            let _ = alice.set_project_description(&project, s);
            let _ = alice.audit_log(
                s,
                &AuditQuery {
                    actor: Some((*s).to_owned()),
                    target: Some((*s).to_owned()),
                    ..Default::default()
                },
            );
        }
        // The engine still answers, and alice is still the admin.
        assert!(engine.check(&who("alice"), &project, Action::Delete)?);
        assert_eq!(
            alice.workspace_members("ml-team")?["alice"],
            WorkspaceRole::Admin
        );
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §9 Audit (L)

    #[test]
    fn l1_every_successful_call_appends_one_event_and_denials_are_recorded() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let bob = engine.session_for(&who("bob"))?;
        let carol = engine.session_for(&who("carol"))?;

        // Bootstrap calls of the application are events too, with no workspace.
        let n = log_len(&engine)?;
        engine.create_user("erin")?;
        assert_eq!(log_len(&engine)?, n + 1);
        let event = newest_event(&engine)?;
        assert_eq!(
            (
                event.actor.as_str(),
                event.action.as_str(),
                event.target.as_str()
            ),
            ("application", "user.create", "erin")
        );
        assert_eq!(event.workspace, None);

        let expected = std::cell::Cell::new(log_len(&engine)?);
        let step = |what: &str, action: &str, target: &str| -> Result<AuditEvent> {
            expected.set(expected.get() + 1);
            assert_eq!(
                log_len(&engine)?,
                expected.get(),
                "{what} appended one event"
            );
            let event = newest_event(&engine)?;
            assert_eq!(event.action, action, "{what}");
            assert_eq!(event.target, target, "{what}");
            assert_eq!(event.workspace.as_deref(), Some("ml-team"), "{what}");
            Ok(event)
        };

        let t0 = Utc::now().timestamp_millis();
        let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        let event = step("create_project", "project.create", "ml-team/cls")?;
        let t1 = Utc::now().timestamp_millis();
        assert_eq!(event.actor, "alice");
        assert_eq!(event.outcome, Outcome::Ok);
        assert!((t0..=t1).contains(&event.at.timestamp_millis()));

        alice.add_project_member(&project, "bob", ProjectRole::Viewer)?;
        let event = step("add_project_member", "project.member.add", "ml-team/cls")?;
        assert_eq!(event.details["user"], "bob");
        assert_eq!(event.details["role"], "viewer");

        let token = alice.create_service_account("ml-team", "cicd", true)?;
        step(
            "create_service_account",
            "service_account.create",
            "cicd@ml-team",
        )?;
        alice.set_project_visibility(&project, Visibility::Workspace)?;
        step(
            "set_project_visibility",
            "project.visibility.set",
            "ml-team/cls",
        )?;
        alice.set_project_visibility(&project, Visibility::Private)?;
        step(
            "set_project_visibility",
            "project.visibility.set",
            "ml-team/cls",
        )?;
        alice.deactivate_service_account("cicd@ml-team")?;
        step("deactivate", "service_account.deactivate", "cicd@ml-team")?;
        let new = alice.reactivate_service_account("cicd@ml-team")?;
        step("reactivate", "service_account.reactivate", "cicd@ml-team")?;
        alice.invite_to_workspace("ml-team", "erin", WorkspaceRole::Member, true)?;
        step("invite", "workspace.member.invite", "ml-team")?;

        // No secret is ever written to the log (T2).
        let everything = serde_json::to_string(&engine.audit_log(&AuditQuery::default())?)
            .expect("events serialize");
        assert!(!everything.contains(token.secret()) && !everything.contains(new.secret()));

        // Reads append nothing.
        alice.list_projects()?;
        alice.project_members(&project)?;
        alice.workspace_status("ml-team")?;
        engine.check(&who("bob"), &project, Action::View)?;
        assert_eq!(log_len(&engine)?, expected.get());

        // A failed call that is not a denial appends nothing (E3).
        assert!(
            alice
                .add_project_member(&project, "bob", ProjectRole::Owner)
                .is_err()
        );
        assert_eq!(log_len(&engine)?, expected.get());

        // A denied call appends a denial event: can see but may not...
        assert!(matches!(
            bob.add_project_member(&project, "erin", ProjectRole::Owner),
            Err(Error::PermissionDenied { .. })
        ));
        let event = step("denied add", "project.member.add", "ml-team/cls")?;
        assert_eq!(
            (event.actor.as_str(), event.outcome),
            ("bob", Outcome::Denied)
        );
        assert!(matches!(
            bob.invite_to_workspace("ml-team", "carol", WorkspaceRole::Member, false),
            Err(Error::PermissionDenied { .. })
        ));
        let event = step("denied invite", "workspace.member.invite", "ml-team")?;
        assert_eq!(event.outcome, Outcome::Denied);
        // ...and cannot see.
        assert!(matches!(
            carol.delete_project(&project),
            Err(Error::ProjectNotFound { .. })
        ));
        let event = step("invisible delete", "project.delete", "ml-team/cls")?;
        assert_eq!(
            (event.actor.as_str(), event.outcome),
            ("carol", Outcome::Denied)
        );

        // Admins read their workspace's events through a session.
        let theirs = alice.audit_log("ml-team", &AuditQuery::default())?;
        assert!(!theirs.is_empty());
        assert!(
            theirs
                .iter()
                .all(|e| e.workspace.as_deref() == Some("ml-team"))
        );
        assert!(matches!(
            bob.audit_log("ml-team", &AuditQuery::default()),
            Err(Error::PermissionDenied { .. })
        ));
        Ok(())
    }

    #[test]
    fn l2_admins_read_the_log_filtered_by_workspace_actor_target_and_time() -> Result<()> {
        let engine = teams()?;
        let alice = engine.session_for(&who("alice"))?;
        let dave = engine.session_for(&who("dave"))?;
        let bob = engine.session_for(&who("bob"))?;
        let cls = alice.create_project("ml-team/cls", ProjectOptions::default())?;
        dave.create_project("other-team/theirs", ProjectOptions::default())?;
        std::thread::sleep(Duration::from_millis(5));
        let middle = Utc::now();
        std::thread::sleep(Duration::from_millis(5));
        let seg = bob.create_project("ml-team/seg", ProjectOptions::default())?;
        alice.add_project_member(&cls, "bob", ProjectRole::Viewer)?;

        let all = alice.audit_log("ml-team", &AuditQuery::default())?;
        assert!(
            all.iter()
                .all(|e| e.workspace.as_deref() == Some("ml-team"))
        );
        assert!(all.iter().all(|e| e.target != "other-team/theirs"));
        // Newest first.
        assert!(all.windows(2).all(|w| w[0].id > w[1].id));
        // A query naming another workspace is still confined to the caller's.
        let sneaky = AuditQuery {
            workspace: Some("other-team".into()),
            ..Default::default()
        };
        assert_eq!(alice.audit_log("ml-team", &sneaky)?, all);
        // An admin of another workspace cannot read this one.
        assert!(matches!(
            dave.audit_log("ml-team", &AuditQuery::default()),
            Err(Error::WorkspaceNotFound { .. })
        ));

        let by_bob = alice.audit_log(
            "ml-team",
            &AuditQuery {
                actor: Some("bob".into()),
                ..Default::default()
            },
        )?;
        assert_eq!(by_bob.len(), 1);
        assert_eq!(by_bob[0].target, seg);

        let about_cls = alice.audit_log(
            "ml-team",
            &AuditQuery {
                target: Some(cls.clone()),
                ..Default::default()
            },
        )?;
        let actions: Vec<&str> = about_cls.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["project.member.add", "project.create"]);

        let since = alice.audit_log(
            "ml-team",
            &AuditQuery {
                since: Some(middle),
                ..Default::default()
            },
        )?;
        assert_eq!(since.len(), 2);
        assert!(since.iter().all(|e| e.at >= middle));
        let until = alice.audit_log(
            "ml-team",
            &AuditQuery {
                until: Some(middle),
                ..Default::default()
            },
        )?;
        assert_eq!(until.len() + since.len(), all.len());
        assert!(until.iter().all(|e| e.at < middle));

        let limited = alice.audit_log(
            "ml-team",
            &AuditQuery {
                limit: Some(1),
                ..Default::default()
            },
        )?;
        assert_eq!(limited, all[..1]);
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // §10 Storage (D): engines racing on one database

    #[test]
    fn d3_concurrent_last_admin_removals_keep_one_admin() -> Result<()> {
        let db = shared_db()?;
        let path = db.target();
        Engine::open(path)?
            .session_for(&who("alice"))?
            .set_workspace_role("ml-team", "bob", WorkspaceRole::Admin)?;
        let engines = [Engine::open(path)?, Engine::open(path)?];
        let barrier = Barrier::new(2);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = [("alice", 0), ("bob", 1)]
                .into_iter()
                .map(|(admin, e)| {
                    let (engine, barrier) = (&engines[e], &barrier);
                    s.spawn(move || -> Result<()> {
                        let session = engine.session_for(&who(admin))?;
                        barrier.wait();
                        session.remove_workspace_member("ml-team", admin)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no thread panics"))
                .collect()
        });
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(Error::LastAdmin { .. }))),
            "{results:?}"
        );
        let admins: i64 = common::query_value(
            path,
            "SELECT count(*) FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
             WHERE w.name = 'ml-team' AND m.role = 2",
            &[],
        );
        assert_eq!(admins, 1);
        Ok(())
    }

    #[test]
    fn d3_concurrent_creates_of_one_project_name_yield_one_project() -> Result<()> {
        let db = shared_db()?;
        let path = db.target();
        let engines = [Engine::open(path)?, Engine::open(path)?];
        let threads = 4;
        let barrier = Barrier::new(threads);
        let results: Vec<Result<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (engine, barrier) = (&engines[t % 2], &barrier);
                    s.spawn(move || -> Result<String> {
                        let alice = engine.session_for(&who("alice"))?;
                        barrier.wait();
                        let spelling = if t % 2 == 0 {
                            "ml-team/Race"
                        } else {
                            "ml-team/race"
                        };
                        alice.create_project(spelling, with_key("RACE"))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no thread panics"))
                .collect()
        });
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        for r in &results {
            assert!(
                matches!(r, Ok(_) | Err(Error::ProjectAlreadyExists { .. })),
                "unexpected outcome {r:?}"
            );
        }
        let projects: i64 = common::query_value(
            path,
            "SELECT count(*) FROM projects WHERE name_key = 'race'",
            &[],
        );
        assert_eq!(projects, 1);
        Ok(())
    }
);

// ---------------------------------------------------------------------------------
// SQLite only: files, WAL, raw SQL on the file; and rules decided without storage

#[test]
fn m_roles_and_visibility_parse_from_neptune_strings() -> Result<()> {
    assert_eq!("owner".parse::<ProjectRole>()?, ProjectRole::Owner);
    assert_eq!(
        "contributor".parse::<ProjectRole>()?,
        ProjectRole::Contributor
    );
    assert_eq!("viewer".parse::<ProjectRole>()?, ProjectRole::Viewer);
    assert_eq!("admin".parse::<WorkspaceRole>()?, WorkspaceRole::Admin);
    assert_eq!("member".parse::<WorkspaceRole>()?, WorkspaceRole::Member);
    for (s, v) in [
        ("priv", Visibility::Private),
        ("private", Visibility::Private),
        ("workspace", Visibility::Workspace),
        ("pub", Visibility::Public),
        ("public", Visibility::Public),
    ] {
        assert_eq!(s.parse::<Visibility>()?, v);
    }
    assert!(ProjectRole::Viewer < ProjectRole::Contributor);
    assert!(ProjectRole::Contributor < ProjectRole::Owner);
    assert!(matches!(
        "superuser".parse::<ProjectRole>(),
        Err(Error::InvalidValue { .. })
    ));
    assert!(matches!(
        "owner".parse::<WorkspaceRole>(),
        Err(Error::InvalidValue { .. })
    ));
    assert!(matches!(
        "secret".parse::<Visibility>(),
        Err(Error::InvalidValue { .. })
    ));
    Ok(())
}

#[test]
fn e1_one_error_enum_carries_neptunes_names() {
    // A compile-time check that the variants SPEC E1 names exist with these names,
    // and a run-time check that the enum suits `?` in any error-handling stack.
    fn neptune_name(e: &Error) -> &'static str {
        match e {
            Error::ProjectNotFound { .. } => "ProjectNotFound",
            Error::WorkspaceNotFound { .. } => "WorkspaceNotFound",
            Error::ProjectAlreadyExists { .. } => "ProjectAlreadyExists",
            Error::UserAlreadyHasAccess { .. } => "UserAlreadyHasAccess",
            Error::UserNotExistsOrWithoutAccess { .. } => "UserNotExistsOrWithoutAccess",
            Error::UserAlreadyInvited { .. } => "UserAlreadyInvited",
            Error::WorkspaceOrUserNotFound { .. } => "WorkspaceOrUserNotFound",
            Error::ServiceAccountNotFound { .. } => "ServiceAccountNotFound",
            Error::ServiceAccountAlreadyHasAccess { .. } => "ServiceAccountAlreadyHasAccess",
            Error::ServiceAccountNotExistsOrWithoutAccess { .. } => {
                "ServiceAccountNotExistsOrWithoutAccess"
            }
            Error::VisibilityRestricted { .. } => "VisibilityRestricted",
            Error::ProjectKeyCollision { .. } => "ProjectKeyCollision",
            Error::InvalidName { .. } => "InvalidName",
            Error::InvalidProjectName { .. } => "InvalidProjectName",
            Error::InvalidToken => "InvalidToken",
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::LastAdmin { .. } => "LastAdmin",
            Error::ServiceAccountLimitReached { .. } => "ServiceAccountLimitReached",
            Error::UserNotInWorkspace { .. } => "UserNotInWorkspace",
            Error::Storage(_) => "Storage",
            _ => "other",
        }
    }
    fn is_std_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    let e = Error::LastAdmin {
        workspace: "ml-team".into(),
    };
    is_std_error(&e);
    assert_eq!(neptune_name(&e), "LastAdmin");
    assert_eq!(neptune_name(&Error::InvalidToken), "InvalidToken");
}

#[test]
fn e3_failure_midway_rolls_back_every_write_of_the_call() -> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let engine = Engine::open(&path)?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/first", ProjectOptions::default())?;
        alice.create_project("ml-team/second", ProjectOptions::default())?;
    }
    // Make the grant on the second project fail, after the membership and the first
    // grant of `invite_to_workspace(.., add_to_all_projects = true)` were written.
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER test_fail_second_grant BEFORE INSERT ON user_grants
             WHEN NEW.project_id = (SELECT max(id) FROM projects)
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .expect("trigger created");

    let engine = Engine::open(&path)?;
    let alice = engine.session_for(&who("alice"))?;
    let before = log_len(&engine)?;
    let result = alice.invite_to_workspace("ml-team", "carol", WorkspaceRole::Member, true);
    assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
    assert!(!alice.workspace_members("ml-team")?.contains_key("carol"));
    assert_eq!(engine.explain(&who("carol"), "ml-team/first")?, None);
    assert_eq!(log_len(&engine)?, before);
    let conn = raw(&path);
    let carol_grants = raw_count(
        &conn,
        "SELECT count(*) FROM user_grants g JOIN users u ON u.id = g.user_id
         WHERE u.name_key = 'carol'",
    );
    assert_eq!(carol_grants, 0);

    conn.execute_batch("DROP TRIGGER test_fail_second_grant")
        .expect("trigger dropped");
    alice.invite_to_workspace("ml-team", "carol", WorkspaceRole::Member, true)?;
    assert_eq!(
        engine.session_for(&who("carol"))?.list_projects()?,
        vec!["ml-team/first", "ml-team/second"]
    );
    Ok(())
}

#[test]
fn l1_the_event_is_written_in_the_same_transaction_as_the_change() -> Result<()> {
    let (_dir, path) = file_db()?;
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit_events
             WHEN NEW.action = 'project.member.add'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .expect("trigger created");
    let engine = Engine::open(&path)?;
    let alice = engine.session_for(&who("alice"))?;
    let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;

    let result = alice.add_project_member(&project, "bob", ProjectRole::Owner);
    assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
    // The audit write failed, so the change it records did not happen.
    assert_eq!(engine.explain(&who("bob"), &project)?, None);
    assert!(!alice.project_members(&project)?.contains_key("bob"));
    Ok(())
}

#[test]
fn l2_audit_events_are_append_only() -> Result<()> {
    let (_dir, path) = file_db()?;
    let conn = raw(&path);
    let count = raw_count(&conn, "SELECT count(*) FROM audit_events");
    assert!(count > 0);

    let update = conn.execute("UPDATE audit_events SET actor = 'mallory'", []);
    assert!(
        matches!(&update, Err(e) if e.to_string().contains("append-only")),
        "{update:?}"
    );
    let delete = conn.execute("DELETE FROM audit_events", []);
    assert!(
        matches!(&delete, Err(e) if e.to_string().contains("append-only")),
        "{delete:?}"
    );
    assert_eq!(raw_count(&conn, "SELECT count(*) FROM audit_events"), count);
    assert_eq!(
        raw_count(
            &conn,
            "SELECT count(*) FROM audit_events WHERE actor = 'mallory'"
        ),
        0
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// §10 Storage (D)

#[test]
fn d1_newer_schema_is_refused_and_file_untouched() -> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let conn = raw(&path);
        conn.pragma_update(None, "user_version", 99)
            .expect("user_version set");
    }
    let bytes = std::fs::read(&path).expect("the file reads");

    let result = Engine::open(&path);
    assert!(
        matches!(
            &result,
            Err(Error::SchemaTooNew {
                found: 99,
                supported: 3
            })
        ),
        "{result:?}"
    );
    let message = result.expect_err("refused").to_string();
    assert!(
        message.contains("99") && message.contains("upgrade"),
        "{message}"
    );
    drop(message);

    assert_eq!(
        std::fs::read(&path).expect("the file reads"),
        bytes,
        "the refused file was modified"
    );
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 99);
    Ok(())
}

/// Turns a current database back into schema version 1, as the first release wrote
/// it: no signing keys, no skeletons, no audit keys, and project keys folded by
/// `to_lowercase` (written here as `stale-` + the id, so that a key left unrecomputed
/// shows).
fn downgrade_to_version_1(path: &Path) {
    let conn = raw(path);
    conn.execute_batch(
        "DROP TABLE signing_keys;
         DROP INDEX projects_by_name;
         DROP INDEX projects_by_skeleton;
         ALTER TABLE projects DROP COLUMN name_skeleton;
         ALTER TABLE audit_events DROP COLUMN actor_key;
         ALTER TABLE audit_events DROP COLUMN target_key;
         UPDATE projects SET name_key = 'stale-' || id;
         PRAGMA user_version = 1;",
    )
    .expect("downgraded");
}

#[test]
fn d1_a_version_1_database_is_migrated_with_its_project_keys_recomputed() -> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let engine = Engine::open(&path)?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/Classification", ProjectOptions::default())?;
        alice.create_project("ml-team/Detection", ProjectOptions::default())?;
    }
    downgrade_to_version_1(&path);

    let engine = Engine::open(&path)?;
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 3);
    // Found by any spelling again: the keys were recomputed, not left stale.
    assert!(engine.check(&who("alice"), "ml-team/CLASSIFICATION", Action::View)?);
    assert!(engine.check(&who("alice"), "ml-team/detection", Action::View)?);
    let tables: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'signing_keys'",
            [],
            |r| r.get(0),
        )
        .expect("sqlite_master");
    assert_eq!(tables, 1);
    Ok(())
}

#[test]
fn d1_a_version_1_database_whose_names_now_collide_is_refused_and_untouched() -> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let engine = Engine::open(&path)?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/Classification", ProjectOptions::default())?;
    }
    downgrade_to_version_1(&path);
    // A second spelling of the same name, as an older fold could have let in.
    raw(&path)
        .execute(
            "INSERT INTO projects (workspace_id, name, name_key, key, visibility, created_at)
             SELECT workspace_id, 'CLASSIFICATION', 'other', 'CLS2', 0, 0 FROM projects",
            [],
        )
        .expect("inserted");

    let message = Engine::open(&path).expect_err("refused").to_string();
    assert!(
        message.contains("`ml-team/Classification`")
            && message.contains("`ml-team/CLASSIFICATION`")
            && message.contains("rename"),
        "{message}"
    );
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 1, "a refused migration must roll back");
    Ok(())
}

#[test]
fn d1_a_version_1_database_with_unicode_names_that_now_collide_is_refused_and_untouched()
-> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let engine = Engine::open(&path)?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/Straße", ProjectOptions::default())?;
    }
    downgrade_to_version_1(&path);
    // Version 1 folded by `to_lowercase`, under which `straße` and `strasse` differ.
    raw(&path)
        .execute(
            "INSERT INTO projects (workspace_id, name, name_key, key, visibility, created_at)
             SELECT workspace_id, 'STRASSE', 'strasse', 'STR2', 0, 0 FROM projects",
            [],
        )
        .expect("inserted");

    let message = Engine::open(&path).expect_err("refused").to_string();
    assert!(
        message.contains("`ml-team/Straße`")
            && message.contains("`ml-team/STRASSE`")
            && message.contains("rename"),
        "{message}"
    );
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 1, "a refused migration must roll back");
    let columns = raw_count(
        &raw(&path),
        "SELECT count(*) FROM pragma_table_info('projects') WHERE name = 'name_skeleton'",
    );
    assert_eq!(columns, 0, "the added column was rolled back");
    Ok(())
}

#[test]
fn d1_a_version_1_database_gets_nfc_names_skeletons_and_audit_keys() -> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let engine = Engine::open(&path)?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/Straße", ProjectOptions::default())?;
    }
    downgrade_to_version_1(&path);
    // Version 1 stored names as given: a decomposed `é`.
    raw(&path)
        .execute(
            "INSERT INTO projects (workspace_id, name, name_key, key, visibility, created_at)
             SELECT workspace_id, 'cafe\u{301}', 'cafe\u{301}', 'CAF', 0, 0 FROM projects",
            [],
        )
        .expect("inserted");

    let engine = Engine::open(&path)?;
    let conn = raw(&path);
    let name: String = conn
        .query_row("SELECT name FROM projects WHERE key = 'CAF'", [], |r| {
            r.get(0)
        })
        .expect("the project");
    assert_eq!(name, "caf\u{e9}", "stored in NFC");
    assert_eq!(
        raw_count(
            &conn,
            "SELECT count(*) FROM projects WHERE name_skeleton = ''"
        ),
        0,
        "every skeleton computed"
    );
    assert!(engine.check(&who("alice"), "ml-team/CAFÉ", Action::View)?);
    assert!(engine.check(&who("alice"), "ml-team/STRASSE", Action::View)?);
    // N7 holds against the migrated names.
    let alice = engine.session_for(&who("alice"))?;
    assert!(matches!(
        alice.create_project("ml-team/\u{441}af\u{e9}", ProjectOptions::default()),
        Err(Error::ProjectNameConfusable { .. })
    ));
    // Events written before the upgrade are found by any spelling (L2).
    let about = alice.audit_log(
        "ml-team",
        &AuditQuery {
            target: Some("ML-TEAM/STRASSE".into()),
            ..Default::default()
        },
    )?;
    assert_eq!(about.len(), 1);
    assert_eq!(about[0].action, "project.create");
    // The append-only trigger was put back.
    let update = conn.execute("UPDATE audit_events SET actor = 'mallory'", []);
    assert!(
        matches!(&update, Err(e) if e.to_string().contains("append-only")),
        "{update:?}"
    );

    // The upgraded file has the columns, indexes and triggers of a new one.
    let (_fresh_dir, fresh) = file_db()?;
    let shape = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT m.name || ':' || coalesce(group_concat(c.name || ' ' || c.type || ' ' || c.\"notnull\" || ' ' || coalesce(c.dflt_value, ''), ', '), '')
                 FROM sqlite_master m LEFT JOIN pragma_table_info(m.name) c
                 WHERE m.name NOT LIKE 'sqlite_%'
                 GROUP BY m.name ORDER BY m.name",
            )
            .expect("the schema query");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("the schema")
    };
    assert_eq!(shape(&conn), shape(&raw(&fresh)));
    Ok(())
}

/// Version 2 lacked the check's covering index; the upgrade to 3 adds it, and the
/// checks, which name it (`INDEXED BY`), answer as before.
#[test]
fn d1_a_version_2_database_gets_the_check_index() -> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let engine = Engine::open(&path)?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/Classification", ProjectOptions::default())?;
    }
    raw(&path)
        .execute_batch("DROP INDEX projects_by_name; PRAGMA user_version = 2;")
        .expect("downgraded to version 2");

    let engine = Engine::open(&path)?;
    let conn = raw(&path);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 3);
    let index: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'projects_by_name'",
            [],
            |r| r.get(0),
        )
        .expect("D1: the upgrade creates projects_by_name");
    assert!(
        index.contains("(workspace_id, name_key, visibility)"),
        "{index}"
    );
    assert!(engine.check(&who("alice"), "ml-team/classification", Action::Manage)?);
    assert!(!engine.check(&who("alice"), "ml-team/no-such-project", Action::View)?);
    Ok(())
}

#[test]
fn d1_an_empty_database_is_migrated_to_the_current_schema() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("old.db");
    {
        let conn = raw(&path);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("user_version");
        assert_eq!(version, 0);
    }
    let engine = Engine::open(&path)?;
    engine.create_user("alice")?;
    engine.create_workspace("ml-team", "alice")?;
    drop(engine);
    let conn = raw(&path);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 3);
    // Reopening a current database leaves the data as it was.
    let engine = Engine::open(&path)?;
    assert_eq!(
        engine
            .session_for(&who("alice"))?
            .workspace_members("ml-team")?["alice"],
        WorkspaceRole::Admin
    );
    Ok(())
}

#[test]
fn d2_wal_and_foreign_keys_on() -> Result<()> {
    let (_dir, path) = file_db()?;
    let engine = Engine::open(&path)?;
    let alice = engine.session_for(&who("alice"))?;
    let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;
    alice.add_project_member(&project, "bob", ProjectRole::Viewer)?;
    alice.create_service_account("ml-team", "cicd", true)?;

    let conn = raw(&path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode.to_ascii_lowercase(), "wal");

    // Foreign keys are on in the engine's connection: deleting a project cascades
    // to its grants (ON DELETE CASCADE does nothing with foreign keys off).
    let grants =
        "SELECT (SELECT count(*) FROM user_grants) + (SELECT count(*) FROM service_account_grants)";
    assert_eq!(raw_count(&conn, grants), 3);
    alice.delete_project(&project)?;
    assert_eq!(raw_count(&conn, grants), 0);
    let violations = conn
        .prepare("PRAGMA foreign_key_check")
        .expect("prepared")
        .query_map([], |_| Ok(()))
        .expect("ran")
        .count();
    assert_eq!(violations, 0);
    Ok(())
}

#[test]
fn d2_a_locked_database_makes_callers_wait_not_fail_busy() -> Result<()> {
    let (_dir, path) = file_db()?;
    let engine = Engine::open(&path)?;
    let alice = engine.session_for(&who("alice"))?;
    let project = alice.create_project("ml-team/cls", ProjectOptions::default())?;

    let blocker = raw(&path);
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("write lock taken");
    let hold = Duration::from_millis(300);
    let (write, read) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let start = Instant::now();
            let r = engine
                .session_for(&who("alice"))
                .and_then(|a| a.add_project_member(&project, "bob", ProjectRole::Viewer));
            (r, start.elapsed())
        });
        // Readers do not wait for the writer (WAL).
        let read = engine.check(&who("alice"), &project, Action::View);
        std::thread::sleep(hold);
        blocker.execute_batch("COMMIT").expect("lock released");
        (writer.join().expect("no panic"), read)
    });
    assert!(read?, "a read during a foreign write lock answered");
    let (result, waited) = write;
    result?;
    assert!(waited >= hold / 2, "the write did not wait: {waited:?}");
    assert!(engine.check(&who("bob"), &project, Action::View)?);
    Ok(())
}

#[test]
fn d2_concurrent_opens_of_a_new_file_all_succeed() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("fresh.db");
    let threads = 4;
    let barrier = Barrier::new(threads);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (path, barrier) = (&path, &barrier);
                s.spawn(move || -> Result<()> {
                    barrier.wait();
                    let engine = Engine::open(path)?;
                    engine.create_user(&format!("user-{t}"))?;
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no thread panics"))
            .collect()
    });
    for r in results {
        r?;
    }
    let conn = raw(&path);
    assert_eq!(
        raw_count(&conn, "SELECT count(*) FROM users"),
        threads as i64
    );
    Ok(())
}

#[test]
fn d3_constraints_hold_against_raw_sql() -> Result<()> {
    let (_dir, path) = file_db()?;
    {
        let engine = Engine::open(&path)?;
        let alice = engine.session_for(&who("alice"))?;
        alice.create_project("ml-team/cls", ProjectOptions::default())?;
        alice.set_workspace_settings(
            "ml-team",
            WorkspaceSettings {
                service_account_limit: Some(1),
                ..Default::default()
            },
        )?;
        alice.create_service_account("ml-team", "cicd", false)?;
        engine
            .session_for(&who("dave"))?
            .create_service_account("other-team", "bot", false)?;
    }
    let conn = raw(&path);
    conn.pragma_update(None, "foreign_keys", true)
        .expect("foreign keys on");
    let id = |sql: &str| raw_count(&conn, sql);
    let ml_team = id("SELECT id FROM workspaces WHERE name = 'ml-team'");
    let alice = id("SELECT id FROM users WHERE name_key = 'alice'");
    let bob = id("SELECT id FROM users WHERE name_key = 'bob'");
    let carol = id("SELECT id FROM users WHERE name_key = 'carol'");
    let cls = id("SELECT id FROM projects WHERE name_key = 'cls'");
    let bot = id("SELECT id FROM service_accounts WHERE name_key = 'bot'");
    let fails = |sql: String, why: &str| {
        let result = conn.execute(&sql, []);
        assert!(
            matches!(&result, Err(e) if e.to_string().contains(why)),
            "{sql}: expected a failure mentioning {why:?}, got {result:?}"
        );
    };

    // A4: the last admin, deleted or demoted.
    fails(
        format!(
            "DELETE FROM workspace_members WHERE workspace_id = {ml_team} AND user_id = {alice}"
        ),
        "last admin",
    );
    fails(
        format!("UPDATE workspace_members SET role = 1 WHERE workspace_id = {ml_team}"),
        "last admin",
    );
    // S2: an active account past the limit, inserted or reactivated.
    fails(
        format!(
            "INSERT INTO service_accounts (workspace_id, name, name_key, active, created_at)
             VALUES ({ml_team}, 'extra', 'extra', 1, 0)"
        ),
        "service account limit",
    );
    // A7: a grant to a non-member.
    fails(
        format!("INSERT INTO user_grants (project_id, user_id, role) VALUES ({cls}, {carol}, 1)"),
        "not in workspace",
    );
    // R7: an SA granted in another workspace.
    fails(
        format!(
            "INSERT INTO service_account_grants (project_id, service_account_id, role)
             VALUES ({cls}, {bot}, 1)"
        ),
        "another workspace",
    );
    // Role and enumeration values.
    fails(
        format!("INSERT INTO user_grants (project_id, user_id, role) VALUES ({cls}, {bob}, 4)"),
        "CHECK",
    );
    fails(
        format!("UPDATE workspace_members SET role = 3 WHERE user_id = {bob}"),
        "CHECK",
    );
    fails(
        format!("UPDATE projects SET visibility = 7 WHERE id = {cls}"),
        "CHECK",
    );
    fails(
        "INSERT INTO workspaces (name, created_at) VALUES ('ML-Upper', 0)".into(),
        "CHECK",
    );
    // Uniqueness, case-folded.
    fails(
        "INSERT INTO users (name, name_key, created_at) VALUES ('ALICE', 'alice', 0)".into(),
        "UNIQUE",
    );
    fails(
        format!(
            "INSERT INTO projects (workspace_id, name, name_key, key, visibility, created_at)
             VALUES ({ml_team}, 'CLS', 'cls', 'ZZZ', 0, 0)"
        ),
        "UNIQUE",
    );
    // Foreign keys.
    fails(
        "INSERT INTO tokens (digest, user_id, label, created_at) VALUES (zeroblob(32), 9999, 'x', 0)"
            .into(),
        "FOREIGN KEY",
    );
    Ok(())
}

#[test]
fn d5_the_rules_are_decided_without_storage() {
    // The decision is a pure function of facts: no engine, no database.
    let sa = |grant| Standing::ServiceAccount {
        active: true,
        in_workspace: true,
        grant,
    };
    let member = Standing::User {
        workspace_role: Some(WorkspaceRole::Member),
        grant: None,
    };
    assert!(decide(Visibility::Workspace, member, Action::Manage));
    assert!(!decide(Visibility::Workspace, member, Action::Delete));
    assert!(!decide(Visibility::Workspace, sa(None), Action::View));
    assert!(!decide(
        Visibility::Private,
        sa(Some(ProjectRole::Owner)),
        Action::Delete
    ));
    assert!(decide(
        Visibility::Public,
        Standing::Anonymous,
        Action::View
    ));

    // And the domain sources mention no SQL and do no I/O.
    let domain = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
    for entry in std::fs::read_dir(&domain).expect("src/domain lists") {
        let path = entry.expect("an entry").path();
        let source = std::fs::read_to_string(&path).expect("a source file");
        for forbidden in ["rusqlite", "std::fs", "std::net", "std::io", "crate::repo"] {
            assert!(
                !source.contains(forbidden),
                "{} uses {forbidden}",
                path.display()
            );
        }
    }
}
