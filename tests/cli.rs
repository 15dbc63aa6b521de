//! The `turnstile` binary, run for real on temporary databases: the demo, a full
//! management session driven by tokens, `--json` output, every error path's exit
//! code, and the import/export round trip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A temporary directory holding the database `acl.db`.
struct Env {
    dir: TempDir,
    db: PathBuf,
}

/// One run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the run when it is not the expected one.
    #[track_caller]
    fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    /// The exit code, without consuming the run.
    fn status(&self) -> i32 {
        self.code
    }

    #[track_caller]
    fn ok(self) -> Self {
        self.code(0)
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }

    /// The secret a token-issuing command printed: stdout holds only it.
    #[track_caller]
    fn token(&self) -> String {
        let token = self.stdout.trim().to_owned();
        assert!(
            token.starts_with("tst_") && !token.contains('\n'),
            "not a bare token: {self:#?}"
        );
        token
    }

    /// The one-line error on stderr.
    #[track_caller]
    fn error(&self) -> &str {
        let line = self.stderr.trim_end();
        assert!(
            line.starts_with("error: ") && !line.contains('\n'),
            "not one error line: {self:#?}"
        );
        line
    }
}

impl Env {
    fn new() -> Self {
        let dir = TempDir::new().expect("a temporary directory");
        let db = dir.path().join("acl.db");
        Self { dir, db }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, db: &Path, token: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_turnstile"));
        cmd.current_dir(self.dir.path())
            .env_remove("TURNSTILE_DB")
            .env_remove("TURNSTILE_TOKEN")
            .arg("--db")
            .arg(db)
            .args(args)
            .stdin(Stdio::null());
        if let Some(token) = token {
            cmd.env("TURNSTILE_TOKEN", token);
        }
        cmd
    }

    fn run_on(&self, db: &Path, token: Option<&str>, args: &[&str]) -> Run {
        let out = self
            .command(db, token, args)
            .output()
            .expect("the binary runs");
        Run {
            code: out.status.code().expect("an exit code, not a signal"),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    }

    /// Runs without a token.
    fn run(&self, args: &[&str]) -> Run {
        self.run_on(&self.db, None, args)
    }

    /// Runs as the holder of `token`, passed in `TURNSTILE_TOKEN`.
    fn run_as(&self, token: &str, args: &[&str]) -> Run {
        self.run_on(&self.db, Some(token), args)
    }

    /// `init` with workspace `ml-team` and admin `alice`; returns alice's token.
    fn init(&self) -> String {
        self.run(&["init", "--workspace", "ml-team", "--admin", "alice"])
            .ok()
            .token()
    }
}

/// The effective role in a `--json matrix` document, `None` for no access.
fn role_in(matrix: &Value, principal: Option<&str>, project: &str) -> Option<String> {
    let row = matrix["principals"]
        .as_array()
        .expect("principals")
        .iter()
        .find(|r| r["principal"].as_str() == principal)
        .unwrap_or_else(|| panic!("no row for {principal:?} in {matrix:#}"));
    row["access"][project]["role"].as_str().map(str::to_owned)
}

/// The cells of the table row that starts with `first`.
fn table_row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row `{first}` in:\n{text}"))
}

#[test]
fn demo_shows_the_service_account_missing_only_the_workspace_visibility_project() {
    let env = Env::new();
    let run = env.run(&["demo"]).ok();
    let header = table_row(&run.stdout, "principal");
    assert_eq!(
        header,
        [
            "principal",
            "as",
            "ml-team/classification",
            "ml-team/sandbox",
            "ml-team/showcase"
        ]
    );
    assert_eq!(
        table_row(&run.stdout, "alice"),
        ["alice", "admin", "owner", "owner", "owner"]
    );
    assert_eq!(
        table_row(&run.stdout, "bob"),
        ["bob", "member", "viewer", "owner", "viewer"]
    );
    assert_eq!(
        table_row(&run.stdout, "cicd@ml-team"),
        [
            "cicd@ml-team",
            "service account",
            "contributor",
            "-",
            "viewer"
        ]
    );
    assert_eq!(
        table_row(&run.stdout, "(anonymous)"),
        ["(anonymous)", "anonymous", "-", "-", "viewer"]
    );
    assert!(
        run.stdout
            .contains("`cicd@ml-team` does not see `ml-team/sandbox`")
    );
    // The demo prints no token.
    assert!(!run.stdout.contains("tst_") && !run.stderr.contains("tst_"));

    // The database it leaves answers the same questions.
    env.run(&["check", "--as", "cicd@ml-team", "ml-team/sandbox", "view"])
        .code(1);
    env.run(&["check", "--as", "bob", "ml-team/sandbox", "manage"])
        .ok();
    env.run(&[
        "check",
        "--as",
        "cicd@ml-team",
        "ml-team/classification",
        "edit",
    ])
    .ok();
}

#[test]
fn demo_json_matrix_has_every_member_on_the_workspace_project_and_not_the_service_account() {
    let env = Env::new();
    let doc = env.run(&["--json", "demo"]).ok().json();
    assert_eq!(doc["database"], env.db.display().to_string());
    let m = &doc["matrix"];
    let projects: Vec<&str> = m["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project"].as_str().unwrap())
        .collect();
    assert_eq!(
        projects,
        [
            "ml-team/classification",
            "ml-team/sandbox",
            "ml-team/showcase"
        ]
    );
    let sandbox = "ml-team/sandbox";
    for row in m["principals"].as_array().unwrap() {
        if row["kind"] == "user" {
            assert_eq!(row["access"][sandbox]["role"], "owner", "{row}");
        }
    }
    assert_eq!(role_in(m, Some("cicd@ml-team"), sandbox), None);
    assert_eq!(
        m["principals"][0]["access"][sandbox]["source"],
        "workspace_admin"
    );
    let bob = m["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["principal"] == "bob")
        .unwrap();
    assert_eq!(bob["workspace_role"], "member");
    assert_eq!(bob["access"][sandbox]["source"], "workspace_visibility");
}

#[test]
fn demo_replaces_only_its_own_database_and_only_with_force() {
    let env = Env::new();
    let db = env.path("demo.db");
    env.run_on(&db, None, &["demo"]).ok();
    // A second demo on the demo's own database is refused without --force...
    let run = env.run_on(&db, None, &["demo"]).code(1);
    assert!(run.error().contains("--force"), "{run:?}");
    // ...and replaces it with it.
    env.run_on(&db, None, &["demo", "--force"]).ok();
    env.run_on(
        &db,
        None,
        &["check", "--as", "alice", "ml-team/showcase", "delete"],
    )
    .ok();
}

#[test]
fn demo_force_never_replaces_a_file_it_did_not_make() {
    let env = Env::new();
    // A plain text file.
    std::fs::write(&env.db, b"precious").unwrap();
    for args in [&["demo"][..], &["demo", "--force"]] {
        let run = env.run(args).code(1);
        assert!(run.error().contains("not a database made by"), "{run:?}");
        assert!(!run.stderr.contains("pass --force"), "{run:?}");
        assert_eq!(std::fs::read(&env.db).unwrap(), b"precious");
    }
    // A populated database that is not a demo's.
    let populated = env.path("team.db");
    let alice = env
        .run_on(
            &populated,
            None,
            &["init", "--workspace", "ml-team", "--admin", "alice"],
        )
        .ok()
        .token();
    let run = env.run_on(&populated, None, &["demo", "--force"]).code(1);
    assert!(run.error().contains("not a database made by"), "{run:?}");
    env.run_on(&populated, Some(&alice), &["whoami"]).ok();
    // A demo database that someone has since put to use is no longer the demo's.
    let used = env.path("used.db");
    env.run_on(&used, None, &["demo"]).ok();
    env.run_on(&used, None, &["user", "create", "carol"]).ok();
    env.run_on(&used, None, &["demo", "--force"]).code(1);
    let users = env.run_on(&used, None, &["--json", "export"]).ok().json()["users"].clone();
    assert!(users.as_array().unwrap().contains(&Value::from("carol")));
}

#[test]
fn demo_ignores_turnstile_db_and_uses_its_own_file() {
    let env = Env::new();
    let alice = env.init();
    let before = std::fs::read(&env.db).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .current_dir(env.dir.path())
        .env("TURNSTILE_DB", &env.db)
        .env_remove("TURNSTILE_TOKEN")
        .args(["demo", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo database: "))
        .map(PathBuf::from)
        .expect("the demo names its database");
    assert_ne!(path, env.db);
    assert_eq!(std::fs::read(&env.db).unwrap(), before);
    env.run_as(&alice, &["whoami"]).ok();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn demo_without_a_database_uses_a_new_temporary_file() {
    let env = Env::new();
    let out = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .current_dir(env.dir.path())
        .env_remove("TURNSTILE_DB")
        .env_remove("TURNSTILE_TOKEN")
        .arg("demo")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo database: "))
        .expect("the demo names its database");
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{path:?}");
    assert!(!path.starts_with(env.dir.path()));
    assert!(!env.path("turnstile.db").exists());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn a_full_management_session_driven_by_tokens() {
    let env = Env::new();
    let alice = env.init();
    assert_eq!(env.run_as(&alice, &["whoami"]).ok().stdout, "alice\n");

    // Bootstrap: users and their tokens need no token.
    env.run(&["user", "create", "bob"]).ok();
    env.run(&["user", "create", "carol"]).ok();
    let issued = env
        .run(&["user", "token", "issue", "bob", "--label", "laptop"])
        .ok();
    assert!(issued.stderr.contains("will not be shown again"));
    let bob = issued.token();

    // Alice manages the workspace.
    env.run_as(&alice, &["workspace", "invite", "ml-team", "bob"])
        .ok();
    env.run_as(
        &alice,
        &[
            "workspace",
            "invite",
            "ml-team",
            "carol",
            "--role",
            "member",
        ],
    )
    .ok();
    let members = env
        .run_as(&alice, &["--json", "workspace", "members", "ml-team"])
        .ok()
        .json();
    assert_eq!(
        members["members"],
        serde_json::json!([
            { "user": "alice", "role": "admin" },
            { "user": "bob", "role": "member" },
            { "user": "carol", "role": "member" },
        ])
    );

    // Projects.
    let created = env
        .run_as(
            &alice,
            &[
                "--json",
                "project",
                "create",
                "ml-team/classification",
                "--key",
                "CLS",
            ],
        )
        .ok()
        .json();
    assert_eq!(created["project"], "ml-team/classification");
    env.run_as(
        &alice,
        &[
            "project",
            "create",
            "sandbox",
            "--workspace",
            "ml-team",
            "--visibility",
            "workspace",
        ],
    )
    .ok();
    env.run_as(
        &alice,
        &[
            "project",
            "add-member",
            "ml-team/classification",
            "bob",
            "contributor",
        ],
    )
    .ok();

    // Bob sees what he was given, and may edit but not manage.
    let list = env.run_as(&bob, &["--json", "project", "list"]).ok().json();
    assert_eq!(names(&list), ["ml-team/classification", "ml-team/sandbox"]);
    env.run_as(&bob, &["check", "ml-team/classification", "edit"])
        .ok();
    let denied = env
        .run_as(&bob, &["check", "ml-team/classification", "manage"])
        .code(1);
    assert_eq!(denied.stdout, "denied\n");
    let run = env
        .run_as(
            &bob,
            &[
                "project",
                "add-member",
                "ml-team/classification",
                "carol",
                "viewer",
            ],
        )
        .code(1);
    assert!(run.error().contains("permission denied"), "{run:?}");
    env.run_as(
        &alice,
        &[
            "project",
            "set-member-role",
            "ml-team/classification",
            "bob",
            "owner",
        ],
    )
    .ok();
    // Now an owner, bob manages the project's members.
    env.run_as(
        &bob,
        &[
            "project",
            "add-member",
            "ml-team/classification",
            "carol",
            "viewer",
        ],
    )
    .ok();
    let members = env
        .run_as(
            &bob,
            &["--json", "project", "members", "ml-team/classification"],
        )
        .ok()
        .json();
    assert_eq!(
        members["members"],
        serde_json::json!([
            { "user": "alice", "role": "owner" },
            { "user": "bob", "role": "owner" },
            { "user": "carol", "role": "viewer" },
        ])
    );
    env.run_as(
        &bob,
        &[
            "project",
            "remove-member",
            "ml-team/classification",
            "carol",
        ],
    )
    .ok();
    env.run(&["check", "--as", "carol", "ml-team/classification", "view"])
        .code(1);

    // A service account, assigned to one project.
    let created = env
        .run_as(&alice, &["service-account", "create", "ml-team", "cicd"])
        .ok();
    assert!(created.stderr.contains("will not be shown again"));
    let ci = created.token();
    env.run_as(
        &alice,
        &[
            "project",
            "add-service-account",
            "ml-team/classification",
            "cicd@ml-team",
            "contributor",
        ],
    )
    .ok();
    let list = env.run_as(&ci, &["--json", "project", "list"]).ok().json();
    assert_eq!(names(&list), ["ml-team/classification"]);
    env.run_as(&ci, &["check", "ml-team/classification", "edit"])
        .ok();
    env.run_as(&ci, &["check", "ml-team/sandbox", "view"])
        .code(1);
    let sas = env
        .run_as(
            &alice,
            &[
                "--json",
                "project",
                "service-accounts",
                "ml-team/classification",
            ],
        )
        .ok()
        .json();
    assert_eq!(
        sas["service_accounts"],
        serde_json::json!([{ "service_account": "cicd@ml-team", "role": "contributor" }])
    );
    env.run_as(
        &alice,
        &[
            "project",
            "set-service-account-role",
            "ml-team/classification",
            "cicd@ml-team",
            "viewer",
        ],
    )
    .ok();
    env.run_as(&ci, &["check", "ml-team/classification", "edit"])
        .code(1);
    // An SA may create projects in its workspace and owns them; it never deletes one.
    env.run_as(&ci, &["project", "create", "ci-runs"]).ok();
    env.run_as(&ci, &["project", "delete", "ml-team/ci-runs"])
        .code(1);
    env.run_as(&alice, &["project", "delete", "ml-team/ci-runs"])
        .ok();

    // Token rotation and deactivation.
    let rotated = env
        .run_as(
            &alice,
            &["service-account", "token", "issue", "cicd@ml-team"],
        )
        .ok()
        .token();
    env.run_as(&ci, &["whoami"]).code(1);
    assert_eq!(
        env.run_as(&rotated, &["whoami"]).ok().stdout,
        "cicd@ml-team\n"
    );
    env.run_as(&alice, &["service-account", "deactivate", "cicd@ml-team"])
        .ok();
    env.run_as(&rotated, &["whoami"]).code(1);
    let listed = env
        .run_as(
            &alice,
            &["--json", "service-account", "list", "ml-team", "--all"],
        )
        .ok()
        .json();
    assert_eq!(
        listed["service_accounts"],
        serde_json::json!([{ "service_account": "cicd@ml-team", "active": false }])
    );
    let active_only = env
        .run_as(&alice, &["--json", "sa", "list", "ml-team"])
        .ok()
        .json();
    assert_eq!(active_only["service_accounts"], serde_json::json!([]));
    let back = env
        .run_as(&alice, &["service-account", "reactivate", "cicd@ml-team"])
        .ok()
        .token();
    env.run_as(&rotated, &["whoami"]).code(1);
    env.run_as(&back, &["whoami"]).ok();
    let revoked = env
        .run_as(
            &alice,
            &[
                "--json",
                "service-account",
                "token",
                "revoke",
                "cicd@ml-team",
            ],
        )
        .ok()
        .json();
    assert_eq!(revoked["tokens_revoked"], 1);
    env.run_as(&back, &["whoami"]).code(1);

    // Workspace roles, settings, visibility.
    env.run_as(
        &alice,
        &["workspace", "set-role", "ml-team", "bob", "admin"],
    )
    .ok();
    env.run_as(
        &bob,
        &["workspace", "set-role", "ml-team", "alice", "member"],
    )
    .ok();
    let run = env
        .run_as(&bob, &["workspace", "set-role", "ml-team", "bob", "member"])
        .code(1);
    assert!(run.error().contains("at least one admin"), "{run:?}");
    let run = env
        .run_as(
            &bob,
            &["project", "visibility", "ml-team/classification", "public"],
        )
        .code(1);
    assert!(
        run.error().contains("does not allow public projects"),
        "{run:?}"
    );
    let settings = env
        .run_as(
            &bob,
            &[
                "--json",
                "workspace",
                "settings",
                "ml-team",
                "--allow-public-projects",
                "true",
                "--service-account-limit",
                "3",
            ],
        )
        .ok()
        .json();
    assert_eq!(settings["allow_public_projects"], true);
    assert_eq!(settings["service_account_limit"], 3);
    env.run_as(
        &bob,
        &["project", "visibility", "ml-team/classification", "pub"],
    )
    .ok();
    env.run(&["check", "--anonymous", "ml-team/classification", "view"])
        .ok();
    env.run_as(
        &bob,
        &[
            "project",
            "description",
            "ml-team/classification",
            "image classifiers",
        ],
    )
    .ok();
    let status = env
        .run_as(
            &carol_token(&env),
            &["--json", "workspace", "status", "ml-team"],
        )
        .ok()
        .json();
    assert_eq!(status["workspace"], "ml-team");
    assert_eq!(status["admins"], 1);
    assert_eq!(status["members"], 2);
    assert_eq!(status["projects"], 2);
    assert_eq!(status["active_service_accounts"], 1);
    assert_eq!(status["service_account_limit"], 3);
    env.run_as(&bob, &["workspace", "remove-member", "ml-team", "carol"])
        .ok();

    // Personal tokens: list without secrets, revoke.
    let second = env.run(&["user", "token", "issue", "bob"]).ok().token();
    let tokens = env
        .run_as(&bob, &["--json", "user", "token", "list"])
        .ok()
        .json();
    assert_eq!(tokens["principal"], "bob");
    let list = tokens["tokens"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(!tokens.to_string().contains("tst_"));
    let laptop = list.iter().find(|t| t["label"] == "laptop").unwrap();
    let id = laptop["id"].as_i64().unwrap().to_string();
    env.run_as(&second, &["user", "token", "revoke", &id]).ok();
    env.run_as(&bob, &["whoami"]).code(1);
    env.run_as(&second, &["user", "token", "revoke", &id])
        .code(1);

    // The audit log holds the session, newest first, for admins only.
    let audit = env
        .run_as(&second, &["--json", "audit", "ml-team"])
        .ok()
        .json();
    let events = audit["events"].as_array().unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "workspace.member.invite",
        "project.create",
        "project.member.add",
        "service_account.create",
        "service_account.deactivate",
        "workspace.settings.set",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing: {actions:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e["outcome"] == "denied" && e["actor"] == "bob"),
        "the denied add-member is audited"
    );
    assert!(!audit.to_string().contains("tst_"));
    let bob_only = env
        .run_as(
            &second,
            &[
                "--json", "audit", "ml-team", "--actor", "bob", "--limit", "2",
            ],
        )
        .ok()
        .json();
    let bob_events = bob_only["events"].as_array().unwrap();
    assert_eq!(bob_events.len(), 2);
    assert!(bob_events.iter().all(|e| e["actor"] == "bob"));
    let future = env
        .run_as(
            &second,
            &["--json", "audit", "ml-team", "--since", "2999-01-01"],
        )
        .ok()
        .json();
    assert_eq!(future["events"], serde_json::json!([]));
    let table = env
        .run_as(&second, &["audit", "ml-team", "--since", "1h"])
        .ok();
    assert!(table.stdout.starts_with("id "), "{table:?}");
    // Alice is no longer an admin.
    env.run_as(&alice, &["audit", "ml-team"]).code(1);
}

/// A token for carol, issued by the application.
fn carol_token(env: &Env) -> String {
    env.run(&["user", "token", "issue", "carol"]).ok().token()
}

#[test]
fn explain_names_the_rule_and_the_allowed_actions() {
    let env = Env::new();
    env.run(&["demo"]).ok();
    let doc = env
        .run(&["--json", "explain", "--as", "bob", "ml-team/sandbox"])
        .ok()
        .json();
    assert_eq!(doc["role"], "owner");
    assert_eq!(doc["source"], "workspace_visibility");
    assert_eq!(
        doc["actions"],
        serde_json::json!({ "view": true, "edit": true, "manage": true, "delete": false })
    );
    let doc = env
        .run(&[
            "--json",
            "explain",
            "--as",
            "cicd@ml-team",
            "ml-team/sandbox",
        ])
        .ok()
        .json();
    assert_eq!(doc["role"], Value::Null);
    assert_eq!(doc["actions"]["view"], false);
    let text = env
        .run(&["explain", "--as", "cicd@ml-team", "ml-team/classification"])
        .ok()
        .stdout;
    assert_eq!(table_row(&text, "role"), ["role", "contributor"]);
    assert_eq!(table_row(&text, "because"), ["because", "explicit grant"]);
    assert_eq!(table_row(&text, "edit"), ["edit", "allowed"]);
    assert_eq!(table_row(&text, "manage"), ["manage", "not allowed"]);
}

#[test]
fn check_json_reports_the_decision_and_exits_with_it() {
    let env = Env::new();
    env.run(&["demo"]).ok();
    let allowed = env
        .run(&["--json", "check", "--as", "bob", "ml-team/sandbox", "edit"])
        .ok()
        .json();
    assert_eq!(
        allowed,
        serde_json::json!({
            "principal": "bob", "project": "ml-team/sandbox", "action": "edit", "allowed": true
        })
    );
    let denied = env
        .run(&["--json", "check", "--anonymous", "ml-team/sandbox", "view"])
        .code(1)
        .json();
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["principal"], Value::Null);
}

#[test]
fn every_error_path_has_its_documented_exit_code() {
    let env = Env::new();

    // 3: storage. No database yet: commands other than init, demo and import refuse.
    let run = env.run(&["matrix"]).code(3);
    assert!(run.error().contains("not found"), "{run:?}");
    assert!(
        !env.db.exists(),
        "a missing database is not created by a typo"
    );

    let alice = env.init();
    env.run(&["user", "create", "bob"]).ok();
    let bob = env.run(&["user", "token", "issue", "bob"]).ok().token();
    env.run_as(&alice, &["workspace", "invite", "ml-team", "bob"])
        .ok();
    env.run_as(&alice, &["project", "create", "ml-team/secret"])
        .ok();
    env.run_as(
        &alice,
        &[
            "project",
            "create",
            "ml-team/shared",
            "--visibility",
            "workspace",
        ],
    )
    .ok();

    // 2: usage, from clap and from the library's name and value rules.
    for args in [
        &["no-such-command"][..],
        &["project"],
        &["project", "add-member", "ml-team/shared", "bob"],
        &[
            "project",
            "add-member",
            "ml-team/shared",
            "bob",
            "superuser",
        ],
        &["check", "--as", "bob", "ml-team/shared", "fly"],
        &[
            "check",
            "--as",
            "bob",
            "--anonymous",
            "ml-team/shared",
            "view",
        ],
        &["user", "token", "issue", "bob", "--expires-in", "soon"],
        &["export", "--format", "xml"],
    ] {
        let run = env.run_as(&alice, args).code(2);
        assert!(run.stderr.contains("error"), "{run:?}");
    }
    for (args, message) in [
        (
            &["check", "--as", "bob", "ml-team/a/b", "view"][..],
            "invalid project name `ml-team/a/b`",
        ),
        (&["user", "create", ".bob"], "invalid username `.bob`"),
        (
            &["workspace", "create", "ML Team", "--admin", "alice"],
            "invalid workspace name",
        ),
        (
            &["service-account", "create", "ml-team", "ci@x"],
            "invalid service account name",
        ),
        (
            &["project", "create", "ml-team/x"],
            "invalid project name `x`",
        ),
        (
            &["user", "token", "issue", "bob", "--label", ""],
            "invalid token label",
        ),
    ] {
        let run = env.run_as(&alice, args).code(2);
        assert!(run.error().contains(message), "{message}: {run:?}");
    }
    // No token for a management command: a usage error too.
    let run = env.run(&["project", "list"]).code(2);
    assert!(run.error().contains("--token"), "{run:?}");
    let run = env.run(&["explain", "ml-team/shared"]).code(2);
    assert!(run.error().contains("--as"), "{run:?}");

    // 1: denied, not found, invalid token, conflicts.
    for (token, args, message) in [
        (
            "tst_made-up",
            &["project", "list"][..],
            "error: invalid token",
        ),
        (
            bob.as_str(),
            &["project", "members", "ml-team/secret"],
            "error: project `ml-team/secret` not found",
        ),
        (
            bob.as_str(),
            &["project", "delete", "ml-team/shared"],
            "error: permission denied: `bob` may not delete projects in `ml-team/shared`",
        ),
        (
            bob.as_str(),
            &["workspace", "invite", "ml-team", "alice"],
            "error: permission denied",
        ),
        (
            alice.as_str(),
            &["workspace", "invite", "ml-team", "bob"],
            "error: user `bob` is already a member of workspace `ml-team`",
        ),
        (
            alice.as_str(),
            &["workspace", "invite", "ml-team", "nobody"],
            "error: workspace `ml-team` or user `nobody` not found",
        ),
        (
            alice.as_str(),
            &["workspace", "remove-member", "ml-team", "alice"],
            "error: workspace `ml-team` must keep at least one admin",
        ),
        (
            alice.as_str(),
            &["project", "add-member", "ml-team/shared", "bob", "viewer"],
            "error: user `bob` already has owner access to project `ml-team/shared`",
        ),
        (
            alice.as_str(),
            &["project", "create", "ml-team/SECRET"],
            "error: project `ml-team/SECRET` already exists",
        ),
        (
            alice.as_str(),
            &["service-account", "deactivate", "ghost@ml-team"],
            "error: service account `ghost@ml-team` not found",
        ),
        (
            alice.as_str(),
            &["workspace", "status", "elsewhere"],
            "error: workspace `elsewhere` not found",
        ),
    ] {
        let run = env.run_as(token, args).code(1);
        assert!(run.error().starts_with(message), "{message}: {run:?}");
    }
    env.run(&["user", "create", "bob"]).code(1);
    env.run(&["check", "--as", "nobody", "ml-team/shared", "view"])
        .code(1);
    env.run(&["check", "--as", "bob", "ml-team/secret", "view"])
        .code(1);
    env.run(&["matrix", "--workspace", "elsewhere"]).code(1);
    let run = env
        .run(&["init", "--workspace", "other", "--admin", "carol"])
        .code(1);
    assert!(run.error().contains("already exists"), "{run:?}");
    let run = env.run(&["import", "missing.json"]).code(1);
    assert!(run.error().contains("missing.json"), "{run:?}");

    // 2: a malformed import file.
    std::fs::write(env.path("bad.json"), "{ not json").unwrap();
    env.run(&["import", "bad.json"]).code(2);
    std::fs::write(env.path("bad.csv"), "kind,workspace\nrocket,ml-team\n").unwrap();
    let run = env.run(&["import", "bad.csv"]).code(2);
    assert!(
        run.error().contains("line 2: unknown kind `rocket`"),
        "{run:?}"
    );

    // 3: a file that is not a database, and a database from a newer turnstile.
    let garbage = env.path("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let run = env.run_on(&garbage, None, &["matrix"]).code(3);
    assert!(run.error().contains("storage error"), "{run:?}");
    let newer = env.path("newer.db");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", 9999).unwrap();
    drop(conn);
    let run = env.run_on(&newer, None, &["matrix"]).code(3);
    assert!(run.error().contains("newer than this turnstile"), "{run:?}");
}

#[test]
fn a_failed_init_leaves_no_database_behind() {
    let env = Env::new();
    // `alice@x` parses as neither a username nor anything else a first admin can be.
    env.run(&["init", "--workspace", "ml-team", "--admin", "alice@x"])
        .code(2);
    assert!(!env.db.exists());
    env.run(&["init", "--workspace", "-x-", "--admin", "alice"])
        .code(2);
    assert!(!env.db.exists());
    env.init();
}

const SNAPSHOT: &str = r#"{
  "version": 1,
  "users": ["alice", "bob", "carol", "dave"],
  "workspaces": [
    {
      "name": "ml-team",
      "allow_public_projects": true,
      "service_account_limit": 5,
      "members": { "alice": "admin", "bob": "member", "carol": "member" },
      "service_accounts": [{ "name": "cicd" }, { "name": "old", "active": false }],
      "projects": [
        {
          "name": "Classification",
          "key": "CLS",
          "visibility": "private",
          "description": "images, \"mostly\"",
          "members": { "bob": "contributor" },
          "service_accounts": { "cicd": "viewer", "old": "owner" }
        },
        { "name": "sandbox", "visibility": "workspace", "service_accounts": { "cicd": "contributor" } },
        { "name": "showcase", "visibility": "public", "members": { "carol": "owner" } }
      ]
    },
    {
      "name": "vision",
      "members": { "dave": "admin", "bob": "member" },
      "projects": [{ "name": "detection", "members": { "bob": "viewer" } }]
    }
  ]
}"#;

#[test]
fn import_export_round_trips_reproduce_the_access_matrix() {
    let env = Env::new();
    std::fs::write(env.path("team.json"), SNAPSHOT).unwrap();
    let run = env.run(&["--json", "import", "team.json"]).ok();
    // Piped: no progress bar.
    assert_eq!(run.stderr, "");
    let summary = run.json();
    assert_eq!(summary["format"], "json");
    assert_eq!(
        summary["imported"],
        serde_json::json!({
            "users": 4, "workspaces": 2, "members": 5, "service_accounts": 2,
            "projects": 4, "grants": 6
        })
    );
    let matrix = env.run(&["--json", "matrix"]).ok().json();
    assert_eq!(
        role_in(&matrix, Some("bob"), "ml-team/Classification").as_deref(),
        Some("contributor")
    );
    assert_eq!(
        role_in(&matrix, Some("cicd@ml-team"), "ml-team/sandbox").as_deref(),
        Some("contributor")
    );
    assert_eq!(
        role_in(&matrix, Some("old@ml-team"), "ml-team/Classification"),
        None
    );
    assert_eq!(
        role_in(&matrix, None, "ml-team/showcase").as_deref(),
        Some("viewer")
    );
    assert_eq!(role_in(&matrix, Some("dave"), "ml-team/sandbox"), None);

    // JSON: export, import into a new database, export again.
    let exported = env.run(&["export"]).ok().stdout;
    let first: Value = serde_json::from_str(&exported).unwrap();
    let copy = env.path("copy.db");
    std::fs::write(env.path("copy.json"), &exported).unwrap();
    env.run_on(&copy, None, &["import", "copy.json"]).ok();
    assert_eq!(
        env.run_on(&copy, None, &["--json", "matrix"]).ok().json(),
        matrix
    );
    let second: Value =
        serde_json::from_str(&env.run_on(&copy, None, &["export"]).ok().stdout).unwrap();
    assert_eq!(first, second);

    // CSV: to a file (format from the extension), into a third database.
    let written = env
        .run(&["--json", "export", "--output", "team.csv"])
        .ok()
        .json();
    assert_eq!(written["format"], "csv");
    assert_eq!(written["projects"], 4);
    let csv = std::fs::read_to_string(env.path("team.csv")).unwrap();
    assert!(csv.starts_with("kind,workspace,name,principal,value,key,description\n"));
    assert!(
        csv.contains("grant,ml-team,Classification,cicd@ml-team,viewer,,\n"),
        "{csv}"
    );
    assert!(
        csv.contains("service_account,ml-team,old,,deactivated,,\n"),
        "{csv}"
    );
    let third = env.path("third.db");
    let run = env
        .run_on(&third, None, &["--json", "import", "team.csv"])
        .ok();
    assert_eq!(run.json()["format"], "csv");
    assert_eq!(
        env.run_on(&third, None, &["--json", "matrix"]).ok().json(),
        matrix
    );
    assert_eq!(
        env.run_on(&third, None, &["export", "--format", "csv"])
            .ok()
            .stdout,
        csv
    );

    // Stdin, with the format from the content.
    let fourth = env.path("fourth.db");
    let mut child = env
        .command(&fourth, None, &["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(csv.as_bytes())
            .unwrap();
    }
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        env.run_on(&fourth, None, &["--json", "matrix"]).ok().json(),
        matrix
    );

    // Importing the same workspaces again conflicts, and changes nothing.
    env.run(&["import", "team.csv"]).code(1);
    assert_eq!(env.run(&["export"]).ok().stdout, exported);
}

#[test]
fn import_is_all_or_nothing() {
    let env = Env::new();
    // The last project grants a role to a user who is not a member (A7).
    let bad = SNAPSHOT.replace(
        r#""members": { "bob": "viewer" }"#,
        r#""members": { "carol": "viewer" }"#,
    );
    std::fs::write(env.path("bad.json"), bad).unwrap();
    // Into an existing, empty database.
    std::fs::write(env.path("empty.json"), r#"{"version": 1}"#).unwrap();
    env.run(&["import", "empty.json"]).ok();
    let run = env.run(&["import", "bad.json"]).code(1);
    assert!(
        run.error()
            .contains("user `carol` is not a member of workspace `vision`"),
        "{run:?}"
    );
    let doc = env.run(&["--json", "export"]).ok().json();
    assert_eq!(doc["users"], serde_json::json!([]));
    assert_eq!(doc["workspaces"], serde_json::json!([]));
}

#[test]
fn exports_never_contain_token_secrets() {
    let env = Env::new();
    let alice = env.init();
    let sa = env
        .run_as(&alice, &["service-account", "create", "ml-team", "cicd"])
        .ok()
        .token();
    for format in ["json", "csv"] {
        let out = env.run(&["export", "--format", format]).ok().stdout;
        assert!(!out.contains(&alice) && !out.contains(&sa) && !out.contains("tst_"));
    }
}

#[test]
fn tokens_go_alone_to_stdout_with_a_warning_and_as_json_fields() {
    let env = Env::new();
    let run = env
        .run(&[
            "--json",
            "init",
            "--workspace",
            "ml-team",
            "--admin",
            "alice",
        ])
        .ok();
    let doc = run.json();
    assert_eq!(doc["workspace"], "ml-team");
    assert_eq!(doc["admin"], "alice");
    let token = &doc["token"];
    assert_eq!(token["principal"], "alice");
    assert_eq!(token["label"], "cli");
    assert!(token["id"].is_i64());
    assert_eq!(token["expires_at"], Value::Null);
    let secret = token["secret"].as_str().unwrap();
    assert!(secret.starts_with("tst_"));
    assert!(run.stderr.contains("will not be shown again"));
    assert!(!run.stderr.contains(secret));

    let doc = env
        .run(&[
            "--json",
            "user",
            "token",
            "issue",
            "alice",
            "--label",
            "ci",
            "--expires-in",
            "2h",
        ])
        .ok()
        .json();
    assert!(doc["token"]["expires_at"].is_string());
    let run = env.run(&[
        "user",
        "token",
        "issue",
        "alice",
        "--expires-at",
        "2001-01-01",
    ]);
    run.code(2);

    let human = env.run(&["user", "token", "issue", "alice"]).ok();
    let secret = human.token();
    assert!(human.stderr.contains("issued token"));
    assert!(human.stderr.contains("will not be shown again"));
    assert!(!human.stderr.contains(&secret));
    assert_eq!(env.run_as(&secret, &["whoami"]).ok().stdout, "alice\n");
}

#[test]
fn human_output_is_aligned_tables() {
    let env = Env::new();
    let alice = env.init();
    env.run(&["user", "create", "bartholomew"]).ok();
    env.run_as(&alice, &["workspace", "invite", "ml-team", "bartholomew"])
        .ok();
    let text = env
        .run_as(&alice, &["workspace", "members", "ml-team"])
        .ok()
        .stdout;
    assert_eq!(
        text,
        "user         role\nalice        admin\nbartholomew  member\n"
    );
    let text = env
        .run_as(&alice, &["service-account", "list", "ml-team"])
        .ok()
        .stdout;
    assert_eq!(text, "no service accounts\n");
}

#[test]
fn help_is_everywhere_with_examples_and_exit_codes() {
    let env = Env::new();
    let top = env.run(&["--help"]).ok().stdout;
    for needle in [
        "exit codes:",
        "0  success",
        "1  denied",
        "2  usage",
        "3  storage",
        "TURNSTILE_TOKEN",
        "TURNSTILE_DB",
        "examples:",
    ] {
        assert!(top.contains(needle), "{needle} missing from --help");
    }
    let commands: &[&[&str]] = &[
        &["init"],
        &["demo"],
        &["whoami"],
        &["user"],
        &["user", "create"],
        &["user", "list"],
        &["user", "token"],
        &["user", "token", "issue"],
        &["user", "token", "list"],
        &["user", "token", "revoke"],
        &["workspace"],
        &["workspace", "create"],
        &["workspace", "list"],
        &["workspace", "members"],
        &["workspace", "invite"],
        &["workspace", "remove-member"],
        &["workspace", "set-role"],
        &["workspace", "settings"],
        &["workspace", "status"],
        &["project"],
        &["project", "create"],
        &["project", "list"],
        &["project", "show"],
        &["project", "delete"],
        &["project", "members"],
        &["project", "add-member"],
        &["project", "remove-member"],
        &["project", "set-member-role"],
        &["project", "visibility"],
        &["project", "description"],
        &["project", "service-accounts"],
        &["project", "add-service-account"],
        &["project", "remove-service-account"],
        &["project", "set-service-account-role"],
        &["service-account"],
        &["service-account", "create"],
        &["service-account", "list"],
        &["service-account", "deactivate"],
        &["service-account", "reactivate"],
        &["service-account", "token"],
        &["service-account", "token", "issue"],
        &["service-account", "token", "revoke"],
        &["check"],
        &["explain"],
        &["matrix"],
        &["audit"],
        &["import"],
        &["export"],
        &["completions"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let help = env.run(&args).ok().stdout;
        // An installed binary ships without the repository: its help carries its own
        // text instead of naming a file the user does not have.
        assert!(
            !help.contains("docs/"),
            "{command:?} --help names a file:\n{help}"
        );
        let examples = help.split_once("examples:\n").map(|(_, e)| e);
        assert!(
            examples.is_some_and(|e| e.starts_with("  ") && e.contains("turnstile ")),
            "{command:?} --help has no example:\n{help}"
        );
    }
}

/// The qualified names of a `--json project list` page.
fn names(page: &Value) -> Vec<&str> {
    page["projects"]
        .as_array()
        .expect("a list of projects")
        .iter()
        .map(|p| p["project"].as_str().expect("a name"))
        .collect()
}

#[test]
fn project_list_pages_with_limit_and_after() {
    let env = Env::new();
    let alice = env.init();
    for name in ["ml-team/alpha", "ml-team/bravo", "ml-team/charlie's"] {
        env.run_as(&alice, &["project", "create", name]).ok();
    }
    let first = env
        .run_as(&alice, &["--json", "project", "list", "--limit", "2"])
        .ok()
        .json();
    assert_eq!(names(&first), ["ml-team/alpha", "ml-team/bravo"]);
    assert_eq!(first["next"], "ml-team/bravo");
    let rest = env
        .run_as(
            &alice,
            &[
                "--json",
                "project",
                "list",
                "--limit",
                "2",
                "--after",
                "ml-team/bravo",
            ],
        )
        .ok()
        .json();
    assert_eq!(names(&rest), ["ml-team/charlie's"]);
    assert_eq!(rest["next"], Value::Null);
    let text = env
        .run_as(
            &alice,
            &[
                "project",
                "list",
                "--limit",
                "1",
                "--after",
                "ml-team/alpha",
            ],
        )
        .ok()
        .stdout;
    assert_eq!(
        text,
        "project        key  visibility  role   description\n\
         ml-team/bravo  BRA  private     owner\n\
         more follow: --after ml-team/bravo\n"
    );
    let all = env
        .run_as(&alice, &["--json", "project", "list"])
        .ok()
        .json();
    assert_eq!(all["projects"].as_array().unwrap().len(), 3);
    assert_eq!(all["next"], Value::Null);
}

// ---- issue 9: hardening ----

#[test]
fn e4_durations_beyond_the_calendar_are_usage_errors_not_panics() {
    let env = Env::new();
    let alice = env.init();
    env.run(&["user", "create", "bob"]).ok();
    for args in [
        &[
            "user",
            "token",
            "issue",
            "bob",
            "--expires-in",
            "100000000d",
        ][..],
        &["user", "token", "issue", "bob", "--expires-in", "15250000w"],
    ] {
        let run = env.run(args).code(2);
        assert!(run.stderr.contains("--expires-in"), "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
    for flag in ["--since", "--until"] {
        let run = env
            .run_as(&alice, &["audit", "ml-team", flag, "100000000d"])
            .code(2);
        assert!(run.stderr.contains(flag), "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
    }
    // Within the calendar, both still work.
    env.run(&["user", "token", "issue", "bob", "--expires-in", "3650d"])
        .ok();
    env.run_as(&alice, &["audit", "ml-team", "--since", "36500d"])
        .ok();
}

#[test]
fn t3_an_empty_token_is_a_missing_token_not_an_invalid_one() {
    let env = Env::new();
    env.init();
    for token in ["", "  "] {
        for args in [
            &["whoami"][..],
            &["project", "list"],
            &["check", "ml-team/x", "view"],
        ] {
            let run = env.run_on(&env.db, Some(token), args).code(2);
            assert!(run.error().contains("missing token"), "{run:?}");
        }
    }
    // A token that is there but wrong is still the one `invalid token` (T3).
    let run = env.run_as("tst_nonsense", &["whoami"]).code(1);
    assert!(run.error().contains("invalid token"), "{run:?}");
}

#[test]
fn project_list_limit_is_refused_outside_1_to_10000() {
    let env = Env::new();
    let alice = env.init();
    for limit in ["0", "10001", "-1"] {
        let run = env
            .run_as(&alice, &["project", "list", &format!("--limit={limit}")])
            .code(2);
        assert!(run.stderr.contains("--limit"), "{run:?}");
    }
    env.run_as(&alice, &["project", "list", "--limit", "10000"])
        .ok();
    env.run_as(&alice, &["project", "list", "--limit", "1"])
        .ok();
}

/// The names in a directory, sorted.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_import_into_a_new_path_leaves_nothing_behind() {
    let env = Env::new();
    let bad = SNAPSHOT.replace(
        r#""members": { "bob": "viewer" }"#,
        r#""members": { "carol": "viewer" }"#,
    );
    std::fs::write(env.path("bad.json"), bad).unwrap();
    std::fs::write(env.path("good.json"), SNAPSHOT).unwrap();
    env.run(&["import", "bad.json"]).code(1);
    assert_eq!(dir_names(env.dir.path()), ["bad.json", "good.json"]);
    // So `init` and `demo` accept the path afterwards.
    env.init();
    std::fs::remove_file(&env.db).unwrap();
    env.run(&["demo"]).ok();
    std::fs::remove_file(&env.db).unwrap();

    // A successful import into a new path leaves the database and nothing else.
    env.run(&["import", "good.json"]).ok();
    assert_eq!(
        dir_names(env.dir.path()),
        ["acl.db", "bad.json", "good.json"]
    );
    let doc = env.run(&["--json", "export"]).ok().json();
    assert_eq!(doc["users"].as_array().unwrap().len(), 4);

    // A failed import into an existing database changes nothing and removes nothing.
    env.run(&["import", "bad.json"]).code(1);
    assert_eq!(env.run(&["--json", "export"]).ok().json(), doc);
}

#[test]
fn e1_errors_under_json_are_one_json_line_on_stderr_with_kind_and_name() {
    let env = Env::new();
    let alice = env.init();
    let error = |run: &Run| -> Value {
        assert!(run.stdout.is_empty(), "{run:?}");
        let line = run.stderr.trim_end();
        assert!(!line.contains('\n'), "{run:?}");
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))["error"]
            .clone()
    };
    let cases: [(&[&str], i32, &str, &str); 5] = [
        (
            &["--json", "project", "members", "ml-team/absent"],
            1,
            "not_found",
            "ProjectNotFound",
        ),
        (
            &["--json", "user", "create", "bad name"],
            2,
            "invalid_input",
            "InvalidName",
        ),
        (
            &["--json", "workspace", "invite", "ml-team", "alice"],
            1,
            "conflict",
            "UserAlreadyInvited",
        ),
        (
            &["--json", "project", "list", "--limit", "0"],
            2,
            "invalid_input",
            "Usage",
        ),
        (&["--json", "no-such-command"], 2, "invalid_input", "Usage"),
    ];
    for (args, code, kind, name) in cases {
        let run = env.run_as(&alice, args).code(code);
        let e = error(&run);
        assert_eq!(
            (e["kind"].as_str(), e["name"].as_str()),
            (Some(kind), Some(name)),
            "{run:?}"
        );
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let run = env.run_as("tst_nonsense", &["--json", "whoami"]).code(1);
    assert_eq!(error(&run)["kind"], "unauthenticated");
    let run = env
        .run_on(&env.path("absent.db"), None, &["--json", "matrix"])
        .code(3);
    assert_eq!(error(&run)["name"], "DatabaseNotFound");
    // Without --json, the same failure is one `error:` line.
    env.run_as(&alice, &["project", "members", "ml-team/absent"])
        .code(1)
        .error();
}

impl Env {
    /// Runs as the holder of `token` (if any) with `input` on stdin.
    fn run_with_stdin(&self, token: Option<&str>, args: &[&str], input: &str) -> Run {
        use std::io::Write as _;
        let mut child = self
            .command(&self.db, token, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().expect("an exit code, not a signal"),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    }
}

/// `init` (alice), bob a member, `ml-team/classification` (private, bob viewer) and
/// `ml-team/sandbox` (workspace visibility), `cicd@ml-team` with no grant.
fn small_team(env: &Env) -> (String, String) {
    let alice = env.init();
    env.run(&["user", "create", "bob"]).ok();
    let bob = env.run(&["user", "token", "issue", "bob"]).ok().token();
    env.run_as(&alice, &["workspace", "invite", "ml-team", "bob"])
        .ok();
    env.run_as(
        &alice,
        &[
            "project",
            "create",
            "ml-team/classification",
            "--key",
            "CLS",
            "--description",
            "image classifiers",
        ],
    )
    .ok();
    env.run_as(
        &alice,
        &[
            "project",
            "create",
            "ml-team/sandbox",
            "--visibility",
            "workspace",
        ],
    )
    .ok();
    env.run_as(&alice, &["service-account", "create", "ml-team", "cicd"])
        .ok();
    (alice, bob)
}

#[test]
fn user_list_and_workspace_list_show_the_whole_database_without_a_token() {
    let env = Env::new();
    small_team(&env);
    env.run(&["user", "create", "carol"]).ok();
    let users = env.run(&["--json", "user", "list"]).ok().json();
    assert_eq!(
        users["users"],
        serde_json::json!([
            { "user": "alice", "workspaces": [{ "workspace": "ml-team", "role": "admin" }] },
            { "user": "bob", "workspaces": [{ "workspace": "ml-team", "role": "member" }] },
            { "user": "carol", "workspaces": [] },
        ])
    );
    let text = env.run(&["user", "list"]).ok().stdout;
    assert_eq!(
        text,
        "user   workspaces\nalice  ml-team (admin)\nbob    ml-team (member)\ncarol\n"
    );
    let all = env.run(&["--json", "workspace", "list"]).ok().json();
    let ws = &all["workspaces"][0];
    assert_eq!(ws["workspace"], "ml-team");
    assert_eq!(
        (ws["admins"].as_u64(), ws["members"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(ws["projects"], 2);
    assert_eq!(ws["active_service_accounts"], 1);
    let text = env.run(&["workspace", "list"]).ok().stdout;
    assert!(
        text.starts_with(
            "workspace  admins  members  projects  service accounts  public projects\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("ml-team    1       1        2         1 of 50"),
        "{text}"
    );
}

#[test]
fn a6_project_show_gives_details_and_role_and_hides_what_the_caller_cannot_view() {
    let env = Env::new();
    let (alice, bob) = small_team(&env);
    let doc = env
        .run_as(
            &alice,
            &["--json", "project", "show", "ML-TEAM/Classification"],
        )
        .ok()
        .json();
    assert_eq!(
        doc,
        serde_json::json!({
            "project": "ml-team/classification",
            "key": "CLS",
            "visibility": "private",
            "description": "image classifiers",
            "role": "owner",
            "source": "workspace_admin",
        })
    );
    let text = env
        .run_as(&bob, &["project", "show", "ml-team/sandbox"])
        .ok()
        .stdout;
    assert!(
        text.contains("your role    owner (workspace visibility)"),
        "{text}"
    );
    // Bob cannot view the private project: the same answer as for an absent one.
    let hidden = env
        .run_as(&bob, &["project", "show", "ml-team/classification"])
        .code(1);
    let absent = env
        .run_as(&bob, &["project", "show", "ml-team/nothing"])
        .code(1);
    assert_eq!(
        hidden.error().replace("classification", "X"),
        absent.error().replace("nothing", "X")
    );
}

#[test]
fn project_list_shows_key_visibility_role_and_description() {
    let env = Env::new();
    let (alice, bob) = small_team(&env);
    let text = env.run_as(&alice, &["project", "list"]).ok().stdout;
    assert_eq!(
        text,
        "project                 key  visibility  role   description\n\
         ml-team/classification  CLS  private     owner  image classifiers\n\
         ml-team/sandbox         SAN  workspace   owner\n"
    );
    let doc = env.run_as(&bob, &["--json", "project", "list"]).ok().json();
    assert_eq!(
        doc["projects"],
        serde_json::json!([{
            "project": "ml-team/sandbox",
            "key": "SAN",
            "visibility": "workspace",
            "description": "",
            "role": "owner",
            "source": "workspace_visibility",
        }])
    );
}

#[test]
fn batch_check_answers_one_decision_per_line_from_a_file_or_stdin() {
    let env = Env::new();
    let (alice, _bob) = small_team(&env);
    let requests = "\
# who, what, which action
bob ml-team/sandbox manage
cicd@ml-team ml-team/sandbox view

ml-team/classification delete
bob ml-team/sandbox fly
";
    std::fs::write(env.path("requests.txt"), requests).unwrap();
    let run = env
        .run_as(&alice, &["check", "--file", "requests.txt"])
        .code(2);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{run:?}");
    assert_eq!(lines[0], "allowed bob ml-team/sandbox manage");
    assert_eq!(lines[1], "denied cicd@ml-team ml-team/sandbox view");
    // Without a principal, the command's: here the token's, alice.
    assert_eq!(lines[2], "allowed alice ml-team/classification delete");
    assert!(lines[3].starts_with("error line 6: "), "{run:?}");

    // All allowed: exit 0; one denied: exit 1.
    let run = env.run_with_stdin(
        None,
        &["check", "--as", "bob", "--file", "-"],
        "ml-team/sandbox view\nml-team/sandbox edit\n",
    );
    assert_eq!(run.status(), 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 2);
    env.run_with_stdin(
        None,
        &["check", "--as", "bob", "--file", "-"],
        "ml-team/sandbox view\nml-team/classification edit\n",
    )
    .code(1);

    // JSON lines in and out.
    let input = r#"{"principal": "bob", "project": "ml-team/sandbox", "action": "edit"}
{"anonymous": true, "project": "ml-team/sandbox", "action": "view"}
{"project": "ml-team/sandbox", "action": "view", "extra": 1}
"#;
    let run = env.run_with_stdin(Some(&alice), &["--json", "check", "--file", "-"], input);
    assert_eq!(run.status(), 2, "{run:?}");
    let answers: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert_eq!(answers.len(), 3);
    assert_eq!(
        answers[0],
        serde_json::json!({
            "line": 1, "principal": "bob", "project": "ml-team/sandbox",
            "action": "edit", "allowed": true,
        })
    );
    assert_eq!(answers[1]["principal"], Value::Null);
    assert_eq!(answers[1]["allowed"], false);
    assert_eq!(answers[2]["line"], 3);
    assert_eq!(answers[2]["error"]["kind"], "invalid_input");

    // A request and --file together are a usage error.
    env.run_as(&alice, &["check", "ml-team/sandbox", "view", "--file", "-"])
        .code(2);
}

#[test]
fn completions_are_generated_for_every_shell() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = env.run(&["completions", shell]).ok().stdout;
        assert!(script.contains("turnstile"), "{shell}");
        assert!(script.contains("service-account"), "{shell}: {script}");
    }
    env.run(&["completions", "tcsh"]).code(2);
}

#[test]
fn revoking_an_unknown_or_foreign_token_id_says_not_found_not_invalid_token() {
    let env = Env::new();
    let (alice, bob) = small_team(&env);
    let bobs = env
        .run_as(&bob, &["--json", "user", "token", "list"])
        .ok()
        .json();
    let bob_id = bobs["tokens"][0]["id"].as_i64().unwrap().to_string();
    for id in ["999", bob_id.as_str()] {
        let run = env.run_as(&alice, &["user", "token", "revoke", id]).code(1);
        assert!(!run.error().contains("invalid token"), "{run:?}");
        assert!(run.error().contains(&format!("`{id}`")), "{run:?}");
        let run = env
            .run_as(&alice, &["--json", "user", "token", "revoke", id])
            .code(1);
        assert!(run.stderr.contains("\"TokenNotFound\""), "{run:?}");
    }
    // Bob's token still works; alice's own revocation still does.
    env.run_as(&bob, &["whoami"]).ok();
    env.run_as(&bob, &["user", "token", "revoke", &bob_id]).ok();
    env.run_as(&bob, &["whoami"]).code(1);
}

mod common;

/// Defect 12: reads need no writable directory. With the database's directory made
/// immutable (which stops root too), `whoami`, `check`, `explain`, `project list` and
/// `export` answer, nothing is created beside the file, and a write says why it fails.
#[test]
fn reads_work_in_a_read_only_directory_and_create_nothing() {
    let env = Env::new();
    let alice = env.init();
    env.run_as(&alice, &["project", "create", "ml-team/cls"])
        .ok();
    let before = dir_names(env.dir.path());
    let _guard = common::Immutable::make(env.dir.path());

    let who = env.run_as(&alice, &["whoami"]).ok();
    assert_eq!(who.stdout.trim(), "alice");
    env.run_as(&alice, &["check", "ml-team/cls", "delete"]).ok();
    env.run(&["check", "--as", "alice", "ml-team/cls", "delete"])
        .ok();
    env.run(&["explain", "--as", "alice", "ml-team/cls"]).ok();
    let list = env.run_as(&alice, &["--json", "project", "list"]).ok();
    assert!(list.stdout.contains("ml-team/cls"), "{list:?}");
    env.run(&["export"]).ok();
    let refused = env.run_as(&alice, &["project", "create", "ml-team/new"]);
    assert_ne!(refused.status(), 0);
    assert!(refused.error().contains("read"), "{refused:?}");
    assert_eq!(dir_names(env.dir.path()), before, "nothing created");
}
