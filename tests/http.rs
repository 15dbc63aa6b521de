//! The HTTP server from outside (SPEC H1-H9): the built `turnstile` binary started
//! with `serve`, driven by a real HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use turnstile::{Engine, ProjectOptions, WorkspaceRole};

struct Server {
    child: Child,
    url: String,
    addr: String,
    log: PathBuf,
}

impl Server {
    fn start(db: &Path, extra: &[&str]) -> Self {
        let log = db.with_extension(format!("log{}", rand_suffix()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_turnstile"))
            .arg("--db")
            .arg(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start turnstile serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("turnstile: listening on ")
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .to_owned();
        let addr = url.trim_start_matches("http://").to_owned();
        Server {
            child,
            url,
            addr,
            log,
        }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/turnstile/v1{path}", self.url)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A database with workspace `ml-team` (admin alice, member bob), user carol in no
/// workspace, service account `ci@ml-team`, and project `ml-team/cls` (private).
struct World {
    _dir: tempfile::TempDir,
    db: PathBuf,
    alice: String,
    bob: String,
    carol: String,
    ci: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acl.db");
    let engine = Engine::open(&db).unwrap();
    for u in ["alice", "bob", "carol"] {
        engine.create_user(u).unwrap();
    }
    engine.create_workspace("ml-team", "alice").unwrap();
    let s = engine.session_for(&"alice".parse().unwrap()).unwrap();
    s.invite_to_workspace("ml-team", "bob", WorkspaceRole::Member, false)
        .unwrap();
    s.create_project("ml-team/cls", ProjectOptions::default())
        .unwrap();
    let ci = s
        .create_service_account("ml-team", "ci", false)
        .unwrap()
        .into_secret();
    let token = |u: &str| {
        engine
            .issue_user_token(u, "test", None)
            .unwrap()
            .into_secret()
    };
    World {
        alice: token("alice"),
        bob: token("bob"),
        carol: token("carol"),
        ci,
        db,
        _dir: dir,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// One request: (status, JSON body).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    macro_rules! go {
        ($req:expr) => {{
            let mut r = $req;
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r
        }};
    }
    let res = match (method, body) {
        ("GET", _) => go!(a.get(url)).call(),
        ("DELETE", _) => go!(a.delete(url)).call(),
        ("POST", Some(b)) => go!(a.post(url)).send_json(b),
        ("POST", None) => go!(a.post(url)).send_empty(),
        ("PUT", Some(b)) => go!(a.put(url)).send_json(b),
        ("PATCH", Some(b)) => go!(a.patch(url)).send_json(b),
        _ => unreachable!(),
    };
    let mut res = res.expect("HTTP exchange");
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

#[test]
fn h3_every_route_answers_for_an_admin() {
    let w = world();
    let s = Server::start(&w.db, &[]);
    let t = Some(w.alice.as_str());
    let ok = |m: &str, p: &str, b: Option<Value>| {
        let (st, body) = call(m, &s.api(p), t, b);
        assert_eq!(st, 200, "{m} {p}: {body}");
        body
    };
    assert_eq!(
        ok("GET", "/whoami", None),
        json!({"principal": "alice", "kind": "user"})
    );
    assert_eq!(
        ok(
            "POST",
            "/projects",
            Some(json!({"name": "ml-team/Two Words", "visibility": "workspace"}))
        ),
        json!({"project": "ml-team/Two Words"})
    );
    assert_eq!(
        ok("GET", "/projects", None),
        json!({"projects": ["ml-team/cls", "ml-team/Two Words"], "next": null})
    );
    assert_eq!(
        ok("GET", "/projects?limit=1", None),
        json!({"projects": ["ml-team/cls"], "next": "ml-team/cls"})
    );
    assert_eq!(
        ok("GET", "/projects?limit=1&after=ml-team/cls", None)["projects"],
        json!(["ml-team/Two Words"])
    );
    ok(
        "PUT",
        "/projects/ml-team/cls/visibility",
        Some(json!({"visibility": "private"})),
    );
    ok(
        "PUT",
        "/projects/ml-team/cls/description",
        Some(json!({"description": "d"})),
    );
    ok(
        "POST",
        "/projects/ml-team/cls/members",
        Some(json!({"username": "bob", "role": "viewer"})),
    );
    ok(
        "PUT",
        "/projects/ml-team/cls/members/bob",
        Some(json!({"role": "contributor"})),
    );
    assert_eq!(
        ok("GET", "/projects/ml-team/cls/members", None),
        json!({"members": {"alice": "owner", "bob": "contributor"}})
    );
    ok("DELETE", "/projects/ml-team/cls/members/bob", None);
    ok(
        "POST",
        "/projects/ml-team/cls/service-accounts",
        Some(json!({"service_account": "ci@ml-team", "role": "viewer"})),
    );
    ok(
        "PUT",
        "/projects/ml-team/cls/service-accounts/ci@ml-team",
        Some(json!({"role": "owner"})),
    );
    assert_eq!(
        ok("GET", "/projects/ml-team/cls/service-accounts", None),
        json!({"members": {"ci@ml-team": "owner"}})
    );
    ok(
        "DELETE",
        "/projects/ml-team/cls/service-accounts/ci@ml-team",
        None,
    );
    assert_eq!(
        ok("GET", "/workspaces", None),
        json!([{"workspace": "ml-team", "role": "admin"}])
    );
    ok(
        "POST",
        "/workspaces/ml-team/members",
        Some(json!({"username": "carol"})),
    );
    ok(
        "PUT",
        "/workspaces/ml-team/members/carol",
        Some(json!({"role": "admin"})),
    );
    assert_eq!(
        ok("GET", "/workspaces/ml-team/members", None)["members"]["carol"],
        "admin"
    );
    ok("DELETE", "/workspaces/ml-team/members/carol", None);
    ok(
        "PATCH",
        "/workspaces/ml-team/settings",
        Some(json!({"allow_public_projects": true})),
    );
    let status = ok("GET", "/workspaces/ml-team/status", None);
    assert_eq!(
        (
            status["projects"].clone(),
            status["allow_public_projects"].clone()
        ),
        (json!(2), json!(true))
    );
    let created = ok(
        "POST",
        "/workspaces/ml-team/service-accounts",
        Some(json!({"name": "nightly"})),
    );
    assert_eq!(created["principal"], "nightly@ml-team");
    let nightly = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call("GET", &s.api("/whoami"), Some(&nightly), None).1["kind"],
        "service_account"
    );
    let reissued = ok("POST", "/service-accounts/nightly@ml-team/token", None);
    // S5: the old token stops working at once.
    assert_eq!(call("GET", &s.api("/whoami"), Some(&nightly), None).0, 401);
    assert!(reissued["token"].as_str().unwrap().starts_with("tst_"));
    assert_eq!(
        ok("DELETE", "/service-accounts/nightly@ml-team/token", None),
        json!({"revoked": 1})
    );
    ok("POST", "/service-accounts/nightly@ml-team/deactivate", None);
    assert_eq!(
        ok(
            "GET",
            "/workspaces/ml-team/service-accounts?include_deactivated=true",
            None
        ),
        json!([{"service_account": "ci@ml-team", "active": true}, {"service_account": "nightly@ml-team", "active": false}])
    );
    ok("POST", "/service-accounts/nightly@ml-team/reactivate", None);
    assert_eq!(
        ok(
            "POST",
            "/decisions",
            Some(json!({"project": "ml-team/cls", "action": "delete"}))
        ),
        json!({"allowed": true})
    );
    assert_eq!(
        ok(
            "POST",
            "/explain",
            Some(json!({"principal": "bob", "project": "ml-team/Two Words"}))
        ),
        json!({"access": {"role": "owner", "source": "workspace_visibility"}})
    );
    let audit = ok("GET", "/workspaces/ml-team/audit?limit=3", None);
    assert_eq!(audit.as_array().unwrap().len(), 3);
    assert_eq!(audit[0]["actor"], "alice");
    let tokens = ok("GET", "/tokens", None);
    let id = tokens[0]["id"].as_i64().unwrap();
    ok("DELETE", "/projects/ml-team/Two%20Words", None);
    ok("DELETE", &format!("/tokens/{id}"), None);
    // Her only token is revoked: she is signed out everywhere.
    assert_eq!(call("GET", &s.api("/whoami"), t, None).0, 401);
}

#[test]
fn h3_error_kinds_map_to_statuses_with_json_bodies() {
    let w = world();
    let s = Server::start(&w.db, &[]);
    let admin = Some(w.alice.as_str());
    let expect = |m: &str, p: &str, t: Option<&str>, b: Option<Value>, status: u16, error: &str| {
        let (st, body) = call(m, &s.api(p), t, b);
        assert_eq!(
            (st, body["error"].as_str().unwrap_or("")),
            (status, error),
            "{m} {p}: {body}"
        );
        assert!(
            body["message"].is_string() && body["kind"].is_string(),
            "{body}"
        );
    };
    expect("GET", "/whoami", None, None, 401, "InvalidToken");
    expect(
        "GET",
        "/whoami",
        Some("tst_made_up"),
        None,
        401,
        "InvalidToken",
    );
    expect("GET", "/whoami", Some("a.b.c"), None, 401, "InvalidToken");
    expect(
        "DELETE",
        "/projects/ml-team/cls",
        Some(&w.ci),
        None,
        404,
        "ProjectNotFound",
    );
    expect(
        "POST",
        "/projects/ml-team/cls/members",
        Some(&w.bob),
        Some(json!({"username": "bob", "role": "owner"})),
        404,
        "ProjectNotFound",
    );
    expect(
        "POST",
        "/workspaces/ml-team/members",
        Some(&w.bob),
        Some(json!({"username": "carol"})),
        403,
        "PermissionDenied",
    );
    expect(
        "POST",
        "/projects",
        admin,
        Some(json!({"name": "ml-team/CLS"})),
        409,
        "ProjectAlreadyExists",
    );
    expect(
        "POST",
        "/projects",
        admin,
        Some(json!({"name": "ml-team/a"})),
        422,
        "InvalidName",
    );
    expect(
        "POST",
        "/projects",
        admin,
        Some(json!({"name": "ml-team/abc", "visibility": "open"})),
        422,
        "InvalidValue",
    );
    expect(
        "POST",
        "/projects",
        admin,
        Some(json!({"name": "ml-team/abc", "colour": "red"})),
        400,
        "InvalidRequest",
    );
    expect(
        "POST",
        "/projects",
        admin,
        Some(json!({"name": 7})),
        400,
        "InvalidRequest",
    );
    expect(
        "POST",
        "/decisions",
        Some(&w.bob),
        Some(json!({"principal": "alice", "project": "ml-team/cls", "action": "view"})),
        403,
        "PermissionDenied",
    );
    expect(
        "POST",
        "/decisions",
        admin,
        Some(json!({"project": "ml-team/cls", "action": "fly"})),
        422,
        "InvalidValue",
    );
    expect(
        "DELETE",
        "/workspaces/ml-team/members/alice",
        admin,
        None,
        409,
        "LastAdmin",
    );
    expect("GET", "/no/such/route", admin, None, 404, "NotFound");
    expect(
        "GET",
        "/projects?limit=x",
        admin,
        None,
        400,
        "InvalidRequest",
    );
    expect(
        "GET",
        "/projects?colour=red",
        admin,
        None,
        400,
        "InvalidRequest",
    );
    let checks: Vec<Value> = (0..1001)
        .map(|_| json!({"project": "ml-team/cls", "action": "view"}))
        .collect();
    expect(
        "POST",
        "/decisions/batch",
        admin,
        Some(json!({"checks": checks})),
        422,
        "BatchTooLarge",
    );
    // Method not allowed and a body over 1 MiB: JSON too.
    let (st, body) = call("PUT", &s.api("/whoami"), admin, Some(json!({})));
    assert_eq!(
        (st, body["error"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    // The server answers as soon as it reads the length, before the body comes.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    write!(
        c,
        "POST /api/turnstile/v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        w.alice,
        (1 << 20) + 1
    )
    .unwrap();
    let mut out = vec![0; 4096];
    let n = c.read(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out[..n]);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("PayloadTooLarge"), "{out}");
    // Malformed JSON.
    let mut res = agent()
        .post(&s.api("/projects"))
        .header("Authorization", &format!("Bearer {}", w.alice))
        .header("Content-Type", "application/json")
        .send("{\"name\": ")
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.body_mut().read_json().unwrap();
    assert_eq!(body["kind"], "bad_request");
}

#[test]
fn h3_decision_batch_answers_each_item_and_h5_limits_whom_one_asks_about() {
    let w = world();
    let s = Server::start(&w.db, &[]);
    let mut checks: Vec<Value> = vec![
        json!({"project": "ml-team/cls", "action": "view"}),
        json!({"principal": "alice", "project": "ml-team/cls", "action": "delete"}),
        json!({"project": "nope", "action": "view"}),
    ];
    let (st, body) = call(
        "POST",
        &s.api("/decisions/batch"),
        Some(&w.bob),
        Some(json!({"checks": checks})),
    );
    assert_eq!(st, 200);
    assert_eq!(body["results"][0], json!({"allowed": false}));
    assert_eq!(body["results"][1]["error"]["error"], "PermissionDenied");
    assert_eq!(body["results"][2]["error"]["error"], "InvalidProjectName");
    // An admin asks about the members and service accounts of her workspace.
    checks = (0..1000)
        .map(|i| match i % 3 {
            0 => json!({"principal": "bob", "project": "ml-team/cls", "action": "view"}),
            1 => json!({"principal": "ci@ml-team", "project": "ml-team/cls", "action": "edit"}),
            _ => json!({"project": "ml-team/cls", "action": "delete"}),
        })
        .collect();
    let (st, body) = call(
        "POST",
        &s.api("/decisions/batch"),
        Some(&w.alice),
        Some(json!({"checks": checks})),
    );
    assert_eq!(st, 200);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["allowed"], json!(i % 3 == 2), "{i}: {r}");
    }
    // An outsider's question about bob is refused, whatever the project.
    let (st, _) = call(
        "POST",
        &s.api("/explain"),
        Some(&w.carol),
        Some(json!({"principal": "bob", "project": "ml-team/cls"})),
    );
    assert_eq!(st, 403);
    let metrics = agent()
        .get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("turnstile_decisions_total{outcome=\"allowed\"} 333"),
        "{metrics}"
    );
    assert!(
        metrics.contains("turnstile_decisions_total{outcome=\"denied\"} 668"),
        "{metrics}"
    );
    assert!(metrics.contains("turnstile_http_requests_total{method=\"POST\",route=\"/api/turnstile/v1/decisions/batch\",status=\"200\"} 2"), "{metrics}");
    assert!(metrics.contains("turnstile_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/turnstile/v1/decisions/batch\",status=\"200\",le=\"+Inf\"} 2"));
}

#[test]
fn t6_access_tokens_work_in_every_server_and_die_with_their_api_token() {
    let w = world();
    let a = Server::start(&w.db, &[]);
    let b = Server::start(&w.db, &[]);
    let (st, body) = call("POST", &a.api("/auth/token"), Some(&w.bob), None);
    assert_eq!(st, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(body["expires_in"].as_i64().unwrap() <= 3600);
    // Server B never saw the exchange: the key is the database's.
    assert_eq!(
        call("GET", &b.api("/whoami"), Some(&access), None).1["principal"],
        "bob"
    );
    // The Neptune refresh on B for a refresh token from A.
    let neptune = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(json!({"api_address": a.url, "api_key": w.bob}).to_string())
    };
    let mut res = agent()
        .get(&format!(
            "{}/api/backend/v1/authorization/oauth-token",
            a.url
        ))
        .header("X-Neptune-Api-Token", &neptune)
        .call()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let pair: Value = res.body_mut().read_json().unwrap();
    let refresh = pair["refreshToken"].as_str().unwrap().to_owned();
    let refresh_on_b = |rt: &str| {
        agent()
            .post(&format!(
                "{}/auth/realms/neptune/protocol/openid-connect/token",
                b.url
            ))
            .send_form([
                ("grant_type", "refresh_token"),
                ("client_id", "neptune-client"),
                ("refresh_token", rt),
            ])
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(refresh_on_b(&refresh), 200);
    // Bob revokes his API token through server A ...
    let (_, tokens) = call("GET", &a.api("/tokens"), Some(&w.bob), None);
    let id = tokens[0]["id"].as_i64().unwrap();
    assert_eq!(
        call(
            "DELETE",
            &a.api(&format!("/tokens/{id}")),
            Some(&w.bob),
            None
        )
        .0,
        200
    );
    // ... and the access token and the refresh token die on server B at once.
    let (st, body) = call("GET", &b.api("/whoami"), Some(&access), None);
    assert_eq!((st, body["error"].as_str()), (401, Some("InvalidToken")));
    assert_eq!(refresh_on_b(&refresh), 400);
    let (st, _) = call(
        "GET",
        &format!("{}/api/backend/v1/projects", b.url),
        Some(&access),
        None,
    );
    assert_eq!(st, 401);
}

#[test]
fn h7_access_log_has_one_line_per_request_and_no_secret() {
    let w = world();
    let s = Server::start(&w.db, &[]);
    let (_, body) = call("POST", &s.api("/auth/token"), Some(&w.alice), None);
    let access = body["access_token"].as_str().unwrap().to_owned();
    call("GET", &s.api("/whoami"), Some(&access), None);
    call("GET", &s.api("/whoami"), Some(&w.ci), None);
    call("GET", &s.api("/whoami"), Some("tst_bogus"), None);
    call(
        "POST",
        &s.api("/workspaces/ml-team/service-accounts"),
        Some(&w.alice),
        Some(json!({"name": "fresh"})),
    );
    let log = std::fs::read_to_string(&s.log).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert_eq!(lines[1]["principal"], "alice");
    assert_eq!(lines[1]["route"], "/api/turnstile/v1/whoami");
    assert_eq!(lines[2]["principal"], "ci@ml-team");
    assert_eq!(
        (lines[3]["status"].clone(), lines[3]["principal"].clone()),
        (json!(401), Value::Null)
    );
    for l in &lines {
        for key in ["method", "route", "status", "latency_ms"] {
            assert!(!l[key].is_null(), "{key} in {l}");
        }
    }
    for secret in [&w.alice, &w.ci, &access, &"tst_bogus".to_owned()] {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
    }
    assert!(
        !log.contains("tst_"),
        "no token of any kind in the log: {log}"
    );
}

#[test]
fn h6_hostile_requests_get_4xx_and_the_server_keeps_serving() {
    let w = world();
    let s = Server::start(&w.db, &["--request-timeout", "2"]);
    let raw = |bytes: &[u8]| -> String {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c.write_all(bytes).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    };
    // Garbage instead of HTTP.
    assert!(raw(b"\x00\x01\x02 garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    // A header block over the limit.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let out = raw(big.as_bytes());
    assert!(out.starts_with("HTTP/1.1 431") || out.is_empty(), "{out}");
    // An over-long URI.
    let long = format!(
        "GET /api/turnstile/v1/projects/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let out = raw(long.as_bytes());
    assert!(out.starts_with("HTTP/1.1 414"), "{out}");
    assert!(out.contains("UriTooLong"));
    // A client that promises a body and stalls: timed out with a JSON 408.
    let started = Instant::now();
    let slow = format!(
        "POST /api/turnstile/v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"pro",
        w.alice
    );
    let out = raw(slow.as_bytes());
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("\"kind\""), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A percent-encoded invalid UTF-8 path segment.
    let out = raw(format!("GET /api/turnstile/v1/projects/%FF/%FE/members HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", w.alice).as_bytes());
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // Still serving.
    let (st, body) = call("GET", &format!("{}/healthz", s.url), None, None);
    assert_eq!((st, body), (200, json!({"status": "ok"})));
}

#[test]
fn h8_sigterm_during_writes_finishes_them_and_exits_zero() {
    let w = world();
    let mut s = Server::start(&w.db, &[]);
    let url = s.api("/projects");
    let token = w.alice.clone();
    let writer = std::thread::spawn(move || {
        let mut created = Vec::new();
        for i in 0..100_000 {
            let name = format!("ml-team/p-{i:05}");
            let res = agent()
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .send_json(json!({"name": name}));
            match res {
                Ok(r) if r.status().as_u16() == 200 => created.push(name),
                _ => break,
            }
        }
        created
    });
    std::thread::sleep(Duration::from_millis(700));
    s.signal("-TERM");
    assert_eq!(
        s.wait(Duration::from_secs(12)),
        Some(0),
        "exit 0 within the drain"
    );
    let created = writer.join().unwrap();
    assert!(!created.is_empty());
    let engine = Engine::open(&w.db).unwrap();
    let alice = engine.session_for(&"alice".parse().unwrap()).unwrap();
    let listed = alice.list_projects().unwrap();
    // Every acknowledged write is there.
    for name in &created {
        assert!(
            listed.contains(name),
            "{name} was acknowledged but is missing"
        );
    }
}

#[test]
fn h8_sigkill_during_writes_loses_no_acknowledged_change() {
    let w = world();
    let mut s = Server::start(&w.db, &[]);
    let url = s.api("/projects");
    let token = w.alice.clone();
    let writer = std::thread::spawn(move || {
        let mut created = Vec::new();
        for i in 0..100_000 {
            let name = format!("ml-team/k-{i:05}");
            match agent()
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .send_json(json!({"name": name}))
            {
                Ok(r) if r.status().as_u16() == 200 => created.push(name),
                _ => break,
            }
        }
        created
    });
    std::thread::sleep(Duration::from_millis(700));
    s.signal("-KILL");
    s.wait(Duration::from_secs(5));
    let created = writer.join().unwrap();
    let engine = Engine::open(&w.db).unwrap();
    let alice = engine.session_for(&"alice".parse().unwrap()).unwrap();
    let listed = alice.list_projects().unwrap();
    for name in &created {
        assert!(
            listed.contains(name),
            "{name} was acknowledged but is missing"
        );
    }
    // No half change: every listed project has its creator's owner grant (A1, D4).
    for name in listed.iter().filter(|n| n.contains("/k-")) {
        let members = alice.project_members(name).unwrap();
        assert_eq!(members.get("alice").map(|r| r.as_str()), Some("owner"));
    }
}

#[test]
fn h9_healthz_and_openapi_document_are_served_without_credentials() {
    let w = world();
    let s = Server::start(&w.db, &[]);
    let (st, doc) = call("GET", &s.api("/openapi.json"), None, None);
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let checked_in: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .expect("docs/openapi.json; regenerate it with `cargo test --test http openapi_document_is_checked_in`"),
    )
    .unwrap();
    assert_eq!(doc, checked_in, "docs/openapi.json is stale");
    let (st, _) = call(
        "GET",
        &format!("{}/api/backend/swagger.json", s.url),
        None,
        None,
    );
    assert_eq!(st, 200);
}

#[test]
fn openapi_document_is_checked_in() {
    let served = turnstile::server::api::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, format!("{served}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        checked_in.trim_end(),
        served,
        "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --test http openapi_document_is_checked_in`"
    );
}

#[test]
fn h1_plain_http_is_refused_off_loopback_without_insecure_http() {
    let w = world();
    let out = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .arg("--db")
        .arg(&w.db)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-http"));
}

/// A6 over HTTP: a decision about a project that does not exist answers exactly as one
/// the caller cannot view, for the caller itself and in a batch, whoever asks.
#[test]
fn a6_decisions_do_not_tell_absent_from_hidden_projects() {
    let w = world();
    let s = Server::start(&w.db, &["--quiet"]);
    for token in [&w.carol, &w.ci, &w.bob] {
        let ask = |project: &str| {
            call(
                "POST",
                &s.api("/decisions"),
                Some(token),
                Some(json!({"project": project, "action": "view"})),
            )
        };
        let (hidden_status, mut hidden) = ask("ml-team/cls");
        let (absent_status, mut absent) = ask("ml-team/no-such-project");
        let (other_status, mut other) = ask("no-such-team/cls");
        // The bodies may echo the name asked about; nothing else may differ.
        for body in [&mut hidden, &mut absent, &mut other] {
            if let Some(o) = body.as_object_mut() {
                o.remove("project");
            }
        }
        assert_eq!(hidden_status, 200, "{hidden}");
        assert_eq!((absent_status, &absent), (hidden_status, &hidden));
        assert_eq!((other_status, &other), (hidden_status, &hidden));

        let (status, batch) = call(
            "POST",
            &s.api("/decisions/batch"),
            Some(token),
            Some(json!({"checks": [
                {"project": "ml-team/cls", "action": "view"},
                {"project": "ml-team/no-such-project", "action": "view"},
            ]})),
        );
        assert_eq!(status, 200, "{batch}");
        let results = batch["results"].as_array().expect("results");
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("project");
            }
            v
        };
        assert_eq!(strip(&results[0]), strip(&results[1]), "{batch}");
    }
}

/// D2 over HTTP: a write that waits past the busy timeout for another process's writer
/// answers 503 with kind `busy` and a Retry-After, writes nothing, and the same call
/// succeeds once the lock is free.
#[test]
fn d2_a_held_writer_lock_answers_503_busy_and_nothing_is_written() {
    let w = world();
    let s = Server::start(&w.db, &["--quiet", "--busy-timeout-ms", "300"]);
    let other = rusqlite::Connection::open(&w.db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let create = || {
        agent()
            .post(&s.api("/projects"))
            .header("Authorization", &format!("Bearer {}", w.alice))
            .send_json(json!({"name": "ml-team/while-busy"}))
            .expect("HTTP exchange")
    };
    let mut res = create();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["kind"], "busy", "{body}");
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(create().status().as_u16(), 200);
    let (_, list) = call("GET", &s.api("/projects"), Some(&w.alice), None);
    let text = list.to_string();
    assert_eq!(text.matches("while-busy").count(), 1, "{text}");
}

#[test]
fn h3_every_operation_documents_the_shared_error_responses() {
    let doc: Value = serde_json::from_str(&turnstile::server::api::openapi_json()).unwrap();
    let responses = &doc["components"]["responses"];
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let documented = op["responses"].as_object().unwrap();
            let mut want = vec![
                "200", "400", "401", "403", "404", "409", "422", "429", "500", "503",
            ];
            if op.get("requestBody").is_some() {
                want.extend(["413", "415"]);
            }
            want.sort_unstable();
            let mut got: Vec<&str> = documented.keys().map(String::as_str).collect();
            got.sort_unstable();
            assert_eq!(got, want, "{method} {path}");
            for (status, r) in documented {
                if status == "200" {
                    continue;
                }
                let name = r["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
                assert_eq!(
                    responses[name]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
    assert_eq!(operations, 34);
    // The names' examples are names the library accepts.
    let schemas = &doc["components"]["schemas"];
    let example = |name: &str| schemas[name]["examples"][0].as_str().unwrap().to_owned();
    example("WorkspaceName")
        .parse::<turnstile::WorkspaceName>()
        .unwrap();
    example("Username").parse::<turnstile::Username>().unwrap();
    example("ServiceAccountFullName")
        .parse::<turnstile::ServiceAccountFullName>()
        .unwrap();
    example("ProjectName")
        .parse::<turnstile::ProjectName>()
        .unwrap();
    example("QualifiedProjectName")
        .parse::<turnstile::QualifiedProjectName>()
        .unwrap();
}

#[test]
fn h3_the_server_reads_bodies_and_queries_as_the_document_states() {
    let w = world();
    let s = Server::start(&w.db, &[]);
    let admin = Some(w.alice.as_str());
    let status = |m: &str, p: &str, b: Option<Value>| {
        let (st, body) = call(m, &s.api(p), admin, b);
        (st, body["error"].as_str().unwrap_or("").to_owned())
    };
    // A body is a JSON object: serde would read an array as the fields in order.
    for (m, p, b) in [
        ("PATCH", "/workspaces/ml-team/settings", json!([null, null])),
        ("POST", "/decisions", json!([null, "ml-team/cls", "view"])),
        ("POST", "/projects", json!(["ml-team/arr"])),
    ] {
        assert_eq!(
            status(m, p, Some(b)),
            (400, "InvalidRequest".into()),
            "{m} {p}"
        );
    }
    // JSON Schema counts 7.0 as an integer; 7.5 is not one.
    assert_eq!(
        status(
            "PATCH",
            "/workspaces/ml-team/settings",
            Some(json!({"service_account_limit": 7.0}))
        ),
        (200, String::new())
    );
    assert_eq!(
        call("GET", &s.api("/workspaces/ml-team/status"), admin, None).1["service_account_limit"],
        7
    );
    assert_eq!(
        status(
            "PATCH",
            "/workspaces/ml-team/settings",
            Some(json!({"service_account_limit": 7.5}))
        ),
        (400, "InvalidRequest".into())
    );
    // Limits are 1 to 10,000, as documented; not clamped.
    for p in [
        "/projects?limit=0",
        "/projects?limit=10001",
        "/workspaces/ml-team/audit?limit=0",
        "/workspaces/ml-team/audit?limit=10001",
    ] {
        assert_eq!(status("GET", p, None), (422, "InvalidValue".into()), "{p}");
    }
    assert_eq!(status("GET", "/projects?limit=10000", None).0, 200);
    // A workspace role is not a project role.
    assert_eq!(
        status(
            "PUT",
            "/workspaces/ml-team/members/bob",
            Some(json!({"role": "viewer"}))
        ),
        (422, "InvalidValue".into())
    );
    // Without `Content-Type: application/json`: 415, as JSON.
    let mut res = agent()
        .post(&s.api("/decisions"))
        .header("Authorization", &format!("Bearer {}", w.alice))
        .send(r#"{"project": "ml-team/cls", "action": "view"}"#)
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    let body: Value = res.body_mut().read_json().unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["error"].as_str()),
        (Some("bad_request"), Some("UnsupportedMediaType"))
    );
    // `application/*+json` is JSON too.
    let res = agent()
        .post(&s.api("/decisions"))
        .header("Authorization", &format!("Bearer {}", w.alice))
        .header(
            "Content-Type",
            "application/merge-patch+json; charset=utf-8",
        )
        .send(r#" {"project": "ml-team/cls", "action": "view"}"#)
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}
