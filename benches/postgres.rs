//! PostgreSQL figures (SPEC B1, WORKLOAD.md at P = 10,000), over loopback:
//!
//! - `pg/check/N`: `Engine::check` on PostgreSQL, warm, the workload's query mix;
//! - `pg/floor/N`: the same facts fetched by a hand-written program: the same SQL as
//!   one prepared statement per check on one connection, names already folded, no
//!   pool, no engine, no rules (the floor);
//! - `pg/management`: one management call (`set_project_member_role`), one
//!   SERIALIZABLE transaction.
//!
//! `check` and `floor` alternate, `TURNSTILE_BENCH_ROUNDS` (3) times, so that a load
//! that comes and goes on a shared machine falls on both: compare each round's pair.
//! Then `pg/paired/check/N` times them call by call in alternating pairs (see
//! [`paired`]) and prints the medians and their ratio: the figure for the 1.3x
//! target. `pg/paired/control/N` pairs the floor with itself on a second connection:
//! how far apart two connections drift on the same machine (1.000 when quiet).
//!
//! Needs a server: `TURNSTILE_TEST_POSTGRES_URL=$(scripts/pg-throwaway.sh start DIR)
//! cargo bench --bench postgres`. Without it, prints SKIPPED and measures nothing.

#[path = "standard/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use turnstile::{Engine, Principal, ProjectRole};

const PROJECTS: usize = 10_000;

/// A fresh database on the server, holding the workload.
fn database(server: &str) -> String {
    let name = format!("turnstile_bench_{}", std::process::id());
    let mut admin = postgres::Client::connect(server, postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("drop an old bench database");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the bench database");
    let (base, _) = server.rsplit_once('/').expect("a URL with a database");
    let url = format!("{base}/{name}");
    Engine::open(&url)
        .expect("open")
        .import(&workload::generate(PROJECTS))
        .expect("load the workload");
    url
}

const FLOOR_USER: &str = "SELECT p.visibility, u.id, m.role, g.role
     FROM workspaces w
     JOIN projects p ON p.workspace_id = w.id AND p.name_key = $2
     LEFT JOIN users u ON u.name_key = $3
     LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = u.id
     LEFT JOIN user_grants g ON g.project_id = p.id AND g.user_id = u.id
     WHERE w.name = $1";

const FLOOR_SA: &str = "SELECT p.visibility, s.id, s.active, s.workspace_id = w.id, g.role
     FROM workspaces w
     JOIN projects p ON p.workspace_id = w.id AND p.name_key = $2
     LEFT JOIN workspaces sw ON sw.name = $3
     LEFT JOIN service_accounts s ON s.workspace_id = sw.id AND s.name_key = $4
     LEFT JOIN service_account_grants g ON g.project_id = p.id AND g.service_account_id = s.id
     WHERE w.name = $1";

/// A principal as the floor's statements take it: names already keyed. Every workload
/// name is lower-case ASCII.
enum Who {
    User(String),
    ServiceAccount(String, String),
}

/// The floor: the check's two statements prepared once on a connection of its own.
struct Floor {
    client: postgres::Client,
    user: postgres::Statement,
    sa: postgres::Statement,
}

impl Floor {
    fn connect(url: &str) -> Self {
        let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
        let user = client.prepare(FLOOR_USER).expect("prepare");
        let sa = client.prepare(FLOOR_SA).expect("prepare");
        Self { client, user, sa }
    }

    /// The project's visibility when it exists: one round trip.
    fn ask(&mut self, (ws, project, who): &(String, String, Who)) -> Option<i32> {
        let row = match who {
            Who::User(name) => self.client.query_opt(&self.user, &[ws, project, name]),
            Who::ServiceAccount(sa_ws, sa_name) => self
                .client
                .query_opt(&self.sa, &[ws, project, sa_ws, sa_name]),
        }
        .expect("the floor's statement");
        row.map(|r| r.get::<_, i32>(0))
    }
}

fn postgres(c: &mut Criterion) {
    let Some(server) = std::env::var("TURNSTILE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("SKIPPED benches/postgres.rs: TURNSTILE_TEST_POSTGRES_URL is not set");
        return;
    };
    let url = database(&server);
    let engine = Engine::open(&url).expect("open");
    let queries = workload::queries(PROJECTS);
    let mut group = c.benchmark_group("pg");
    group.measurement_time(Duration::from_secs(6));

    let mut first = Floor::connect(&url);
    let keyed: Vec<(String, String, Who)> = queries
        .iter()
        .map(|q| {
            let (ws, project) = q.project.split_once('/').expect("qualified");
            let who = match &q.principal {
                Principal::User(u) => Who::User(u.key().to_owned()),
                Principal::ServiceAccount(s) => {
                    Who::ServiceAccount(s.workspace.to_string(), s.name.key().to_owned())
                }
            };
            (ws.to_owned(), project.to_lowercase(), who)
        })
        .collect();
    let rounds: usize = std::env::var("TURNSTILE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut check = |k: usize| {
        let q = &queries[k % queries.len()];
        engine
            .check(&q.principal, &q.project, q.action)
            .expect("a check")
    };
    let mut floor = |k: usize| first.ask(&keyed[k % keyed.len()]);
    let (mut i, mut j) = (0, 0);
    for round in 1..=rounds {
        group.bench_function(format!("check/{round}"), |b| {
            b.iter(|| {
                i += 1;
                check(i)
            })
        });
        group.bench_function(format!("floor/{round}"), |b| {
            b.iter(|| {
                j += 1;
                floor(j)
            })
        });
    }
    // The control: the floor on a second connection of its own, paired with the first,
    // shows how far two connections drift apart on the same machine.
    let mut second = Floor::connect(&url);
    let mut floor2 = |k: usize| second.ask(&keyed[k % keyed.len()]);
    if !std::env::args().any(|a| a == "--test") {
        paired("check", rounds, &mut check, &mut floor);
        paired("control", rounds, &mut floor2, &mut floor);
    }

    // The opt-in decision cache (B3), warm: answers from memory at most 100 ms late.
    let cached = Engine::open_with(
        &url,
        turnstile::Options {
            decision_cache: true,
            postgres_staleness: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    )
    .expect("open with the cache");
    // Until the listener's first heartbeat comes back, the cache is bypassed.
    std::thread::sleep(Duration::from_millis(500));
    for q in &queries {
        cached
            .check(&q.principal, &q.project, q.action)
            .expect("a check");
    }
    let mut k = 0usize;
    group.bench_function("check, cached (100 ms bound)", |b| {
        b.iter(|| {
            k += 1;
            let q = &queries[k % queries.len()];
            cached
                .check(&q.principal, &q.project, q.action)
                .expect("a check")
        })
    });

    let admin = engine
        .session_for(&"u0000".parse().expect("a name"))
        .expect("an admin");
    let mut n = 0u64;
    group.bench_function("management", |b| {
        b.iter(|| {
            n += 1;
            let role = if n % 2 == 0 {
                ProjectRole::Viewer
            } else {
                ProjectRole::Contributor
            };
            // u0500 holds a grant on no project at first: add once, then change it.
            match admin.set_project_member_role("bench/p000001", "u0500", role) {
                Ok(()) => {}
                Err(turnstile::Error::UserNotExistsOrWithoutAccess { .. }) => admin
                    .add_project_member("bench/p000001", "u0500", role)
                    .expect("add"),
                Err(e) => panic!("{e}"),
            }
        })
    });
    group.finish();
    drop(engine);
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("connect");
    let name = url.rsplit('/').next().expect("a database name");
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// `check` and `floor` in alternating pairs on the same query, each call timed on its
/// own, `TURNSTILE_BENCH_PAIRS` (20,000) pairs a round: a burst of load from elsewhere
/// falls on both sides of a pair rather than on one side's whole run, as it does
/// between criterion's back-to-back runs. It still lands unevenly on two server
/// processes under heavy load: the control pair says how much.
fn paired<A, B>(
    name: &str,
    rounds: usize,
    check: &mut impl FnMut(usize) -> A,
    floor: &mut impl FnMut(usize) -> B,
) {
    use std::hint::black_box;
    use std::time::Instant;
    let pairs: usize = std::env::var("TURNSTILE_BENCH_PAIRS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20_000);
    let median = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    for round in 1..=rounds {
        let (mut checks, mut floors) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
        for k in 0..pairs {
            // Each side goes first in every other pair.
            for side in [k % 2, 1 - k % 2] {
                let started = Instant::now();
                if side == 0 {
                    black_box(check(k));
                    checks.push(started.elapsed());
                } else {
                    black_box(floor(k));
                    floors.push(started.elapsed());
                }
            }
        }
        let (c, f) = (median(&mut checks), median(&mut floors));
        println!(
            "pg/paired/{name}/{round}: {pairs} pairs, median {name} {c:.1} µs, floor {f:.1} µs, {name}/floor {:.3}",
            c / f
        );
    }
}

criterion_group!(benches, postgres);
criterion_main!(benches);
