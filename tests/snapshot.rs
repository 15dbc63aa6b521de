//! Bulk import and export: a round trip reproduces the model, and a bad snapshot
//! writes nothing (E3).

use turnstile::{
    Action, Engine, Error, ProjectRole, ProjectSnapshot, Result, ServiceAccountSnapshot, Snapshot,
    Visibility, WorkspaceRole, WorkspaceSnapshot,
};

fn sample() -> Snapshot {
    let project = |name: &str, visibility| ProjectSnapshot {
        name: name.into(),
        key: None,
        visibility,
        description: String::new(),
        members: Default::default(),
        service_accounts: Default::default(),
    };
    let mut cls = project("classification", Visibility::Private);
    cls.members.insert("bob".into(), ProjectRole::Contributor);
    cls.service_accounts
        .insert("cicd".into(), ProjectRole::Owner);
    let mut cls2 = project("classifier", Visibility::Public);
    cls2.service_accounts
        .insert("old".into(), ProjectRole::Viewer);
    Snapshot {
        version: 1,
        users: vec!["alice".into(), "bob".into(), "carol".into()],
        workspaces: vec![WorkspaceSnapshot {
            name: "ml-team".into(),
            allow_public_projects: true,
            service_account_limit: 5,
            members: [
                ("alice".to_owned(), WorkspaceRole::Admin),
                ("bob".to_owned(), WorkspaceRole::Member),
            ]
            .into(),
            service_accounts: vec![
                ServiceAccountSnapshot {
                    name: "cicd".into(),
                    active: true,
                },
                ServiceAccountSnapshot {
                    name: "old".into(),
                    active: false,
                },
            ],
            projects: vec![cls, cls2, project("shared", Visibility::Workspace)],
        }],
    }
}

#[test]
fn import_then_export_round_trips() -> Result<()> {
    let a = Engine::open_in_memory()?;
    let summary = a.import(&sample())?;
    assert_eq!((summary.users, summary.projects, summary.grants), (3, 3, 3));
    let exported = a.export()?;
    let keys: Vec<_> = exported.workspaces[0]
        .projects
        .iter()
        .map(|p| p.key.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        ["CLA", "CLA2", "SHA"],
        "N4: generated keys are unique"
    );

    let b = Engine::open_in_memory()?;
    b.import(&exported)?;
    assert_eq!(b.export()?, exported);
    for who in ["alice", "bob", "carol", "cicd@ml-team", "old@ml-team"] {
        let p = who.parse()?;
        for project in [
            "ml-team/classification",
            "ml-team/classifier",
            "ml-team/shared",
        ] {
            assert_eq!(
                a.explain(&p, project)?,
                b.explain(&p, project)?,
                "{who} {project}"
            );
        }
    }
    assert!(b.check(&"bob".parse()?, "ml-team/classification", Action::Edit)?);
    assert!(
        !b.check(&"old@ml-team".parse()?, "ml-team/classifier", Action::View)?,
        "R6"
    );
    Ok(())
}

#[test]
fn e3_a_bad_snapshot_writes_nothing() -> Result<()> {
    let engine = Engine::open_in_memory()?;
    type Expected = fn(&Error) -> bool;
    let cases: Vec<(Snapshot, Expected)> = vec![
        {
            let mut s = sample();
            s.workspaces[0].projects[0]
                .members
                .insert("carol".into(), ProjectRole::Viewer);
            (s, |e| matches!(e, Error::UserNotInWorkspace { .. }))
        },
        {
            let mut s = sample();
            s.workspaces[0].allow_public_projects = false;
            (s, |e| matches!(e, Error::VisibilityRestricted { .. }))
        },
        {
            let mut s = sample();
            s.workspaces[0]
                .members
                .insert("alice".into(), WorkspaceRole::Member);
            (s, |e| matches!(e, Error::LastAdmin { .. }))
        },
        {
            let mut s = sample();
            s.workspaces[0].service_account_limit = 0;
            (s, |e| matches!(e, Error::ServiceAccountLimitReached { .. }))
        },
        {
            let mut s = sample();
            s.workspaces[0].projects[2].name = "CLASSIFICATION".into();
            (s, |e| matches!(e, Error::ProjectAlreadyExists { .. }))
        },
        {
            let mut s = sample();
            s.workspaces[0].projects[0].name = "a/b".into();
            (s, |e| matches!(e, Error::InvalidName { .. }))
        },
    ];
    for (snapshot, expected) in cases {
        let err = engine.import(&snapshot).unwrap_err();
        assert!(expected(&err), "{err}");
        assert_eq!(
            engine.export()?,
            Snapshot::default(),
            "nothing written after {err}"
        );
    }
    engine.import(&sample())?;
    assert!(matches!(
        engine.import(&sample()),
        Err(Error::WorkspaceAlreadyExists { .. })
    ));
    Ok(())
}

/// E3: a snapshot with two faults fails with the first one in document order, whether
/// it takes the database to find (a workspace that exists, a member who is no user) or
/// not (a bad name further on), and writes nothing.
#[test]
fn e3_a_snapshot_with_two_faults_fails_with_the_first_in_document_order() -> Result<()> {
    let engine = Engine::open_in_memory()?;
    let mut existing = sample();
    existing.workspaces[0].projects.clear();
    existing.workspaces[0].name = "taken".into();
    engine.import(&existing)?;
    let before = engine.export()?;

    let mut s = sample();
    s.workspaces[0].name = "taken".into();
    s.workspaces[0].projects[2].name = "a/b".into();
    assert!(matches!(
        engine.import(&s),
        Err(Error::WorkspaceAlreadyExists { .. })
    ));
    let mut s = sample();
    s.workspaces[0]
        .members
        .insert("dave".into(), WorkspaceRole::Member);
    s.workspaces[0].projects[2].name = "a/b".into();
    assert!(matches!(engine.import(&s), Err(Error::UserNotFound { .. })));
    let mut s = sample();
    s.workspaces[0]
        .members
        .insert("zed".into(), WorkspaceRole::Member);
    s.workspaces[0]
        .members
        .insert("bad name".into(), WorkspaceRole::Member);
    assert!(
        matches!(engine.import(&s), Err(Error::InvalidName { .. })),
        "`bad name` sorts before `zed`, who is no user"
    );
    let mut s = sample();
    s.workspaces[0].projects[0]
        .members
        .insert("carol".into(), ProjectRole::Viewer);
    s.workspaces[0].projects[2].name = "a/b".into();
    assert!(
        matches!(engine.import(&s), Err(Error::InvalidName { .. })),
        "a batch's names are checked before its grants"
    );
    assert_eq!(engine.export()?, before, "nothing written");
    Ok(())
}

/// A grant may spell its user or service account differently from the workspace's
/// lists (N2: names are case-insensitive); it names the same principal.
#[test]
fn n2_a_grant_finds_its_principal_under_any_spelling() -> Result<()> {
    let engine = Engine::open_in_memory()?;
    let mut s = sample();
    s.workspaces[0].projects[2]
        .members
        .insert("BOB".into(), ProjectRole::Viewer);
    s.workspaces[0].projects[2]
        .service_accounts
        .insert("CiCd".into(), ProjectRole::Contributor);
    engine.import(&s)?;
    let exported = engine.export()?;
    let shared = &exported.workspaces[0].projects[2];
    assert_eq!(
        shared.members.get("bob"),
        Some(&ProjectRole::Viewer),
        "{shared:?}"
    );
    assert_eq!(
        shared.service_accounts.get("cicd"),
        Some(&ProjectRole::Contributor),
        "{shared:?}"
    );
    Ok(())
}

#[test]
fn e1_case_folded_duplicates_in_a_snapshot_are_domain_errors() -> Result<()> {
    let engine = Engine::open_in_memory()?;
    let mut s = sample();
    s.workspaces[0]
        .members
        .insert("ALICE".into(), WorkspaceRole::Member);
    assert!(matches!(
        engine.import(&s),
        Err(Error::UserAlreadyInvited { .. })
    ));
    let mut s = sample();
    s.workspaces[0].projects[0]
        .members
        .insert("BOB".into(), ProjectRole::Viewer);
    assert!(matches!(
        engine.import(&s),
        Err(Error::UserAlreadyHasAccess { .. })
    ));
    let mut s = sample();
    s.workspaces[0].projects[0]
        .service_accounts
        .insert("CICD".into(), ProjectRole::Viewer);
    assert!(matches!(
        engine.import(&s),
        Err(Error::ServiceAccountAlreadyHasAccess { .. })
    ));
    assert_eq!(engine.export()?, Snapshot::default());
    Ok(())
}

/// A repeated key in a JSON object is refused with an error naming it, not silently
/// resolved by the last one winning; nothing is imported.
#[test]
fn e3_repeated_keys_in_a_snapshot_are_refused_by_name() {
    let docs = [
        r#"{"users": ["a"], "workspaces": [{"name": "ws", "members": {"a": "admin", "a": "member"}}]}"#,
        r#"{"users": ["a", "b"], "workspaces": [{"name": "ws", "members": {"a": "admin", "b": "member"},
            "projects": [{"name": "p-1", "members": {"b": "viewer", "b": "owner"}}]}]}"#,
        r#"{"users": ["a"], "workspaces": [{"name": "ws", "members": {"a": "admin"},
            "service_accounts": [{"name": "ci"}],
            "projects": [{"name": "p-1", "service_accounts": {"ci": "viewer", "ci": "owner"}}]}]}"#,
    ];
    for (doc, key) in docs.iter().zip(["a", "b", "ci"]) {
        let e = serde_json::from_str::<turnstile::Snapshot>(doc).expect_err("refused");
        assert!(
            e.to_string()
                .contains(&format!("key `{key}` appears twice")),
            "{e}"
        );
    }
    // The same documents without the repetition are fine.
    let ok = r#"{"users": ["a"], "workspaces": [{"name": "ws", "members": {"a": "admin"}}]}"#;
    assert!(serde_json::from_str::<turnstile::Snapshot>(ok).is_ok());
}
