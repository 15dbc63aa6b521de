//! Unicode project names end to end: caseless identity (N3), the characters N3
//! forbids, confusable look-alikes (N7), descriptions (N8) and the audit filters that
//! match names the same way (L2). Each test names its rule.

use std::collections::BTreeMap;

use turnstile::{
    Action, AuditQuery, Engine, Error, NameKind, Principal, ProjectOptions, ProjectRole,
    ProjectSnapshot, Result, Snapshot, Visibility, WorkspaceRole, WorkspaceSnapshot,
};

fn who(name: &str) -> Principal {
    name.parse().expect("a valid principal name")
}

/// `alice` admin of `ml-team`, `dave` admin of `other-team`, `bob` member of `ml-team`.
fn teams() -> Result<Engine> {
    let engine = Engine::open_in_memory()?;
    for user in ["alice", "bob", "dave"] {
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
    Ok(engine)
}

fn create(engine: &Engine, actor: &str, name: &str) -> Result<String> {
    engine
        .session_for(&who(actor))?
        .create_project(name, ProjectOptions::default())
}

#[test]
fn n3_spellings_with_one_nfkc_casefold_are_one_project() -> Result<()> {
    let engine = teams()?;
    for (created, other) in [
        ("Straße", "STRASSE"),
        ("ſtore", "STORE"),
        ("ΣΑΣ", "σας"),
        ("ＡＢＣ", "abc"),
        ("caf\u{e9}", "cafe\u{301}"),
    ] {
        let name = create(&engine, "alice", &format!("ml-team/{created}"))?;
        assert_eq!(name, format!("ml-team/{created}"), "kept as spelled");
        let again = create(&engine, "alice", &format!("ml-team/{other}"));
        assert!(
            matches!(&again, Err(Error::ProjectAlreadyExists { .. })),
            "{created} = {other}: {again:?}"
        );
        // Found by the other spelling, everywhere a name is accepted.
        let other = format!("ml-team/{other}");
        assert!(
            engine.check(&who("alice"), &other, Action::Manage)?,
            "{other}"
        );
        assert!(engine.explain(&who("alice"), &other)?.is_some(), "{other}");
        let alice = engine.session_for(&who("alice"))?;
        alice.add_project_member(&other, "bob", ProjectRole::Viewer)?;
        assert!(engine.check(&who("bob"), &other, Action::View)?, "{other}");
    }
    // A hidden project stays hidden under any spelling (A6).
    assert!(!engine.check(&who("dave"), "ml-team/STRASSE", Action::View)?);
    Ok(())
}

#[test]
fn n3_names_are_stored_in_nfc_and_listed_so() -> Result<()> {
    let engine = teams()?;
    let name = create(&engine, "alice", "ml-team/cafe\u{301}")?;
    assert_eq!(name, "ml-team/caf\u{e9}");
    let alice = engine.session_for(&who("alice"))?;
    assert_eq!(alice.list_projects()?, vec!["ml-team/caf\u{e9}"]);
    let snapshot = engine.export()?;
    assert_eq!(snapshot.workspaces[0].projects[0].name, "caf\u{e9}");
    Ok(())
}

#[test]
fn n3_invisible_reordering_and_unassigned_characters_are_rejected() -> Result<()> {
    let engine = teams()?;
    for (bad, reason) in [
        ("invoice\u{202e}fdp.exe", "U+202E"),
        ("zero\u{200b}width", "U+200B"),
        ("\u{feff}bom", "U+FEFF"),
        ("lrm\u{200e}mark", "U+200E"),
        ("line\u{2028}sep", "U+2028"),
        ("private\u{e000}", "U+E000"),
        ("unassigned\u{378}", "U+0378"),
        ("non\u{fffe}char", "U+FFFE"),
        ("filler\u{3164}", "U+3164"),
        ("tab\there", "U+0009"),
        (" leading", "white space"),
        ("trailing ", "white space"),
        ("ideographic\u{3000}", "white space"),
        ("full\u{ff0f}width", "a form of `/`"),
    ] {
        let result = create(&engine, "alice", &format!("ml-team/{bad}"));
        match &result {
            Err(Error::InvalidName {
                kind: NameKind::Project,
                reason: why,
                value,
            }) => {
                assert!(why.contains(reason), "{bad:?}: {why}");
                assert!(
                    !value
                        .chars()
                        .any(|c| c.is_control() || ('\u{200b}'..='\u{202e}').contains(&c)),
                    "the echo escapes invisible characters: {value:?}"
                );
            }
            other => panic!("{bad:?} should be an invalid project name: {other:?}"),
        }
        // Refused everywhere a name is read, not only on creation.
        assert!(
            matches!(
                engine.check(&who("alice"), &format!("ml-team/{bad}"), Action::View),
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(
        engine
            .session_for(&who("alice"))?
            .list_projects()?
            .is_empty()
    );
    Ok(())
}

#[test]
fn n7_a_look_alike_of_an_existing_project_is_refused() -> Result<()> {
    let engine = teams()?;
    create(&engine, "alice", "ml-team/classification")?;
    // Cyrillic `с` (U+0441) for Latin `c`.
    let result = create(&engine, "bob", "ml-team/\u{441}lassification");
    match &result {
        Err(Error::ProjectNameConfusable { project, existing }) => {
            assert_eq!(project, "ml-team/\u{441}lassification");
            assert_eq!(existing, "ml-team/classification");
        }
        other => panic!("expected ProjectNameConfusable: {other:?}"),
    }
    let message = result.expect_err("refused").to_string();
    assert_eq!(
        message,
        "project name `ml-team/\u{441}lassification` is confusable with existing project `ml-team/classification`"
    );
    // Case folding first, then the skeleton: `rn` looks like `m`, `0` like `O`.
    create(&engine, "alice", "ml-team/Image-Models")?;
    for look_alike in ["ml-team/IMAGE-RNODELS", "ml-team/image-rnodels"] {
        let result = create(&engine, "alice", look_alike);
        assert!(
            matches!(&result, Err(Error::ProjectNameConfusable { existing, .. }) if existing == "ml-team/Image-Models"),
            "{look_alike}: {result:?}"
        );
    }
    // Lookups stay exact: the look-alike is not found as the original.
    assert!(!engine.check(&who("alice"), "ml-team/\u{441}lassification", Action::View)?);
    assert!(matches!(
        engine
            .session_for(&who("alice"))?
            .project_members("ml-team/\u{441}lassification"),
        Err(Error::ProjectNotFound { .. })
    ));
    // Another workspace may hold it: N7 is per workspace.
    create(&engine, "dave", "other-team/\u{441}lassification")?;
    // Nothing was written by the refusals but their denials' absence of events.
    assert_eq!(
        engine.session_for(&who("alice"))?.list_projects()?,
        vec!["ml-team/classification", "ml-team/Image-Models"]
    );
    Ok(())
}

#[test]
fn n7_import_refuses_look_alikes_within_a_snapshot() -> Result<()> {
    let engine = Engine::open_in_memory()?;
    engine.create_user("alice")?;
    let project = |name: &str| ProjectSnapshot {
        name: name.to_owned(),
        key: None,
        visibility: Visibility::Private,
        description: String::new(),
        members: BTreeMap::new(),
        service_accounts: BTreeMap::new(),
    };
    let mut projects: Vec<ProjectSnapshot> = (0..3000)
        .map(|i| project(&format!("project-{i}")))
        .collect();
    projects.push(project("\u{440}roject-7"));
    let snapshot = Snapshot {
        workspaces: vec![WorkspaceSnapshot {
            name: "ml-team".into(),
            allow_public_projects: false,
            service_account_limit: 50,
            members: [("alice".to_owned(), WorkspaceRole::Admin)].into(),
            service_accounts: Vec::new(),
            projects,
        }],
        ..Default::default()
    };
    let result = engine.import(&snapshot);
    match &result {
        Err(Error::ProjectNameConfusable { project, existing }) => {
            assert_eq!(project, "ml-team/\u{440}roject-7");
            assert_eq!(existing, "ml-team/project-7");
        }
        other => panic!("expected ProjectNameConfusable: {other:?}"),
    }
    // All or nothing (E3).
    assert!(!engine.check(&who("alice"), "ml-team/project-1", Action::View)?);
    assert!(engine.export()?.workspaces.is_empty());
    // Two spellings of one name are the same project, not a look-alike.
    let mut same = snapshot.clone();
    same.workspaces[0].projects = vec![project("Straße"), project("STRASSE")];
    assert!(matches!(
        engine.import(&same),
        Err(Error::ProjectAlreadyExists { .. })
    ));
    Ok(())
}

#[test]
fn n8_descriptions_are_bounded_and_free_of_control_characters() -> Result<()> {
    let engine = teams()?;
    let alice = engine.session_for(&who("alice"))?;
    let with = |d: &str| ProjectOptions {
        description: Some(d.to_owned()),
        ..Default::default()
    };
    let longest = "é".repeat(4096);
    alice.create_project("ml-team/okay", with(&longest))?;
    alice.set_project_description("ml-team/okay", "two\nlines\tand a tab")?;
    let too_long = "x".repeat(4097);
    let huge = "x".repeat(10 * 1024 * 1024);
    for bad in [
        too_long.as_str(),
        huge.as_str(),
        "nul\0byte",
        "escape\u{1b}[2J",
        "crlf\r\n",
    ] {
        assert!(
            matches!(
                alice.create_project("ml-team/bad", with(bad)),
                Err(Error::InvalidValue {
                    what: "project description",
                    ..
                })
            ),
            "{:?}",
            &bad[..bad.len().min(20)]
        );
        assert!(
            matches!(
                alice.set_project_description("ml-team/okay", bad),
                Err(Error::InvalidValue { .. })
            ),
            "{:?}",
            &bad[..bad.len().min(20)]
        );
    }
    let exported = engine.export()?;
    assert_eq!(
        exported.workspaces[0].projects[0].description, "two\nlines\tand a tab",
        "no refused description was stored"
    );
    assert_eq!(exported.workspaces[0].projects.len(), 1);

    // Import checks descriptions too.
    let fresh = Engine::open_in_memory()?;
    let mut snapshot = exported;
    snapshot.workspaces[0].projects[0].description = "bell\u{7}".into();
    assert!(matches!(
        fresh.import(&snapshot),
        Err(Error::InvalidValue {
            what: "project description",
            ..
        })
    ));
    Ok(())
}

#[test]
fn l2_audit_filters_match_names_by_caseless_matching() -> Result<()> {
    let engine = teams()?;
    let alice = engine.session_for(&who("alice"))?;
    create(&engine, "alice", "ml-team/Straße")?;
    create(&engine, "bob", "ml-team/ΣΑΣ")?;
    alice.add_project_member("ml-team/strasse", "bob", ProjectRole::Viewer)?;

    let filter = |actor: Option<&str>, target: Option<&str>| {
        alice.audit_log(
            "ml-team",
            &AuditQuery {
                actor: actor.map(Into::into),
                target: target.map(Into::into),
                ..Default::default()
            },
        )
    };
    let about = filter(None, Some("ML-Team/STRASSE"))?;
    let actions: Vec<&str> = about.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["project.member.add", "project.create"]);
    assert!(about.iter().all(|e| e.target == "ml-team/Straße"));
    assert_eq!(filter(None, Some("ml-team/σας"))?.len(), 1);
    assert_eq!(filter(None, Some("ml-team/strase"))?.len(), 0);
    let by_bob = filter(Some("BOB"), None)?;
    assert_eq!(by_bob.len(), 1);
    assert_eq!(by_bob[0].target, "ml-team/ΣΑΣ");
    assert_eq!(filter(Some("ALICE"), Some("ml-team/STRASSE"))?.len(), 2);
    // Any input folds without panicking (E4).
    assert!(filter(Some("\u{202e}\0"), Some(&"ß".repeat(100_000)))?.is_empty());
    Ok(())
}

#[test]
fn n7_the_skeleton_check_is_one_indexed_look_up() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("turnstile.db");
    drop(Engine::open(&path)?);
    let conn = rusqlite::Connection::open(&path).expect("the database opens");
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN
             SELECT name FROM projects WHERE workspace_id = ?1 AND name_skeleton = ?2 LIMIT 1",
        )
        .expect("a plan")
        .query_map([1.to_string(), "x".to_owned()], |r| r.get(3))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("the plan");
    assert!(
        plan.iter()
            .any(|step| step.contains("USING INDEX projects_by_skeleton")),
        "{plan:?}"
    );
    Ok(())
}
