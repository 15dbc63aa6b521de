//! Hostile input (SPEC E4, N6, E3): arbitrary strings fed to every call that takes a
//! name or a token are a clear error or a correct success, never a panic, and a failed
//! call writes nothing.
//!
//! `PROPTEST_CASES=5000 cargo test --test hostile` for a longer run.

use proptest::prelude::*;
use turnstile::{
    Action, AuditQuery, Engine, Error, Principal, ProjectOptions, ProjectRole, Result, Snapshot,
};

/// Strings that break things elsewhere: unicode of every plane, control characters,
/// NUL, right-to-left marks, SQL, paths, separators, near-valid names.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "\\PC{0,80}",
        "[a-zA-Z0-9@/._\\-]{0,70}",
        Just("'; DROP TABLE projects; --".to_owned()),
        Just("ml-team/../../etc/passwd".to_owned()),
        Just("ml-team/\u{202e}gnp.exe".to_owned()),
        Just("ml-team/cls\u{0}hidden".to_owned()),
        Just("ML-Team/CLS".to_owned()),
        Just("cicd@ml-team@evil".to_owned()),
        Just("tst_".to_owned() + &"A".repeat(49)),
        Just("ml-team/".to_owned() + &"é".repeat(129)),
        Just("ml-team/\u{1F600}\u{1F600}\u{1F600}".to_owned()),
    ]
}

fn role() -> impl Strategy<Value = ProjectRole> {
    prop_oneof![
        Just(ProjectRole::Viewer),
        Just(ProjectRole::Contributor),
        Just(ProjectRole::Owner)
    ]
}

fn world() -> Result<Engine> {
    let engine = Engine::open_in_memory()?;
    engine.create_user("admin")?;
    engine.create_user("bob")?;
    engine.create_workspace("ml-team", "admin")?;
    let admin = engine.session_for(&"admin".parse()?)?;
    admin.invite_to_workspace("ml-team", "bob", "member".parse()?, false)?;
    admin.create_project("ml-team/cls", ProjectOptions::default())?;
    admin.create_service_account("ml-team", "cicd", false)?;
    Ok(engine)
}

/// Everything a call could have changed: the model and the audit log.
fn state(engine: &Engine) -> Result<(Snapshot, usize)> {
    Ok((
        engine.export()?,
        engine.audit_log(&AuditQuery::default())?.len(),
    ))
}

/// Runs one call; on failure, asserts that it changed nothing but, for a refused
/// call, one denial event.
fn call<T>(
    engine: &Engine,
    f: impl FnOnce() -> Result<T>,
) -> std::result::Result<Option<T>, TestCaseError> {
    let (before, events) = state(engine).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let outcome = f();
    match outcome {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                !message.is_empty() && message.len() < 1_000,
                "unclear error: {message}"
            );
            prop_assert!(
                !matches!(e, Error::Storage(_)),
                "a name reached SQLite as an error: {message}"
            );
            let (after, events_after) =
                state(engine).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                &before,
                &after,
                "a failed call changed the model: {}",
                message
            );
            let denial = u8::from(matches!(
                e,
                Error::PermissionDenied { .. } | Error::ProjectNotFound { .. }
            ));
            prop_assert!(
                events_after - events <= usize::from(denial),
                "a failed call wrote events: {}",
                message
            );
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn e4_bootstrap_calls_never_panic_nor_half_write(a in nasty(), b in nasty()) {
        let engine = world()?;
        if call(&engine, || engine.create_user(&a))?.is_some() {
            prop_assert!(engine.session_for(&a.parse()?).is_ok(), "created user `{}` is usable", a);
        }
        call(&engine, || engine.create_workspace(&b, "admin"))?;
        call(&engine, || engine.create_workspace("fresh", &a))?;
        call(&engine, || engine.issue_user_token(&a, &b, None))?;
    }

    #[test]
    fn e4_management_calls_never_panic_nor_half_write(name in nasty(), other in nasty(), r in role()) {
        let engine = world()?;
        let admin = engine.session_for(&"admin".parse()?)?;
        if let Some(created) = call(&engine, || admin.create_project(&name, ProjectOptions {
            workspace: Some("ml-team".into()),
            ..Default::default()
        }))? {
            prop_assert!(admin.list_projects()?.contains(&created), "created `{}` is listed", created);
            prop_assert!(engine.check(&"admin".parse()?, &created, Action::Delete)?);
        }
        call(&engine, || admin.create_project(&name, ProjectOptions { key: Some(other.clone()), ..Default::default() }))?;
        call(&engine, || admin.add_project_member(&name, &other, r))?;
        call(&engine, || admin.add_project_member("ml-team/cls", &name, r))?;
        call(&engine, || admin.remove_project_member("ml-team/cls", &name))?;
        call(&engine, || admin.invite_to_workspace(&name, &other, "member".parse()?, true))?;
        call(&engine, || admin.set_workspace_role("ml-team", &name, "admin".parse()?))?;
        call(&engine, || admin.create_service_account("ml-team", &name, true))?;
        call(&engine, || admin.add_project_service_account("ml-team/cls", &name, r))?;
        call(&engine, || admin.deactivate_service_account(&name))?;
        call(&engine, || admin.set_project_visibility(&name, "public".parse()?))?;
        call(&engine, || admin.delete_project(&name))?;
        call(&engine, || admin.project_members(&name))?;
        call(&engine, || admin.workspace_members(&name))?;
        call(&engine, || admin.list_projects_page(Some(&name), 10))?;
    }

    #[test]
    fn e4_check_and_authenticate_never_panic(project in nasty(), principal in nasty(), token in nasty()) {
        let engine = world()?;
        if let Ok(p) = principal.parse::<Principal>() {
            let _ = engine.check(&p, &project, Action::View);
            let _ = engine.explain(&p, &project);
        }
        let _ = engine.check_anonymous(&project, Action::Edit);
        prop_assert!(matches!(engine.authenticate(&token), Err(Error::InvalidToken)));
        prop_assert!(matches!(engine.authorize(&token, &project, Action::View), Err(Error::InvalidToken)));
    }
}

#[test]
fn e4_ten_megabyte_names_are_refused_quickly_and_briefly() -> Result<()> {
    let engine = world()?;
    let admin = engine.session_for(&"admin".parse()?)?;
    let huge = "x".repeat(10 * 1024 * 1024);
    let started = std::time::Instant::now();
    for result in [
        engine.create_user(&huge).map(drop),
        engine.create_workspace(&huge, "admin").map(drop),
        admin
            .create_project(&format!("ml-team/{huge}"), ProjectOptions::default())
            .map(drop),
        admin
            .create_service_account("ml-team", &huge, false)
            .map(drop),
        engine.authenticate(&huge).map(drop),
        engine
            .check(&"admin".parse()?, &huge, Action::View)
            .map(drop),
    ] {
        let err = result.expect_err("a 10 MB name is never valid");
        assert!(
            err.to_string().len() < 400,
            "the message echoes at most a prefix"
        );
    }
    // Generous: the point is no quadratic work, not a timing target.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    Ok(())
}

#[test]
fn n_case_folded_duplicates_are_the_same_name() -> Result<()> {
    let engine = world()?;
    assert!(matches!(
        engine.create_workspace("ML-Team", "admin"),
        Err(Error::WorkspaceAlreadyExists { .. })
    ));
    assert!(matches!(
        engine.create_user("BOB"),
        Err(Error::UserAlreadyExists { .. })
    ));
    let admin = engine.session_for(&"admin".parse()?)?;
    assert!(matches!(
        admin.create_project("ML-TEAM/CLS", ProjectOptions::default()),
        Err(Error::ProjectAlreadyExists { .. })
    ));
    assert!(matches!(
        admin.create_service_account("ML-team", "CICD", false),
        Err(Error::ServiceAccountAlreadyExists { .. })
    ));
    assert!(
        engine
            .check(&"BOB".parse()?, "Ml-Team/cLs", Action::View)
            .is_ok()
    );
    Ok(())
}
