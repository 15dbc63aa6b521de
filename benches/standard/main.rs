//! Criterion benchmarks on the standard workload (`shared/WORKLOAD.md`): every figure
//! of its table, at P = 10,000 and P = 100,000 projects.
//!
//! `cargo bench --bench standard` runs everything (about 10 minutes here);
//! `TURNSTILE_BENCH_QUICK=1 cargo bench --bench standard` runs P = 10,000 only with
//! short measurements (under two minutes). Sizes and the allowed fraction are printed
//! as the database is built.
//!
//! `authorize` in a long run (issue 12: as in a short one): `cargo bench --bench
//! standard -- --measurement-time 70 "P=10000/(check|check, cached|authorize|authorize,
//! cached)$"`. Past a minute the tokens' uses are noted and written again (T7), and
//! that commit empties the cache once; a short run never sees it. On a busy machine,
//! `examples/readpath.rs`'s modes `ratio` and `ratio-cached` give the ratio to `check`
//! from alternating batches in one process.

mod workload;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use turnstile::{Engine, IssuedToken, Options, ProjectRole};

use turnstile::Snapshot;
use workload::{Query, generate, queries};

fn quick() -> bool {
    std::env::var_os("TURNSTILE_BENCH_QUICK").is_some()
}

fn scales() -> Vec<usize> {
    if quick() {
        vec![10_000]
    } else {
        vec![10_000, 100_000]
    }
}

fn file_bytes(path: &Path) -> u64 {
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::metadata(p).map_or(0, |m| m.len())
    };
    std::fs::metadata(path).map_or(0, |m| m.len()) + side("-wal")
}

fn resident_bytes() -> u64 {
    proc_status_bytes("VmRSS:")
}

/// A memory figure of this process from `/proc/self/status` (`field` is `VmRSS:`,
/// `VmHWM:`, ...), in bytes; 0 where there is no such file.
fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

struct Loaded {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    engine: Engine,
    /// A second engine on the same file, with the never-stale decision cache.
    cached: Engine,
    snapshot: Snapshot,
    queries: Vec<Query>,
    tokens: Vec<Option<IssuedToken>>,
}

/// Builds the workload into a fresh database file and issues a token per principal.
fn load(projects: usize) -> Loaded {
    let snapshot = generate(projects);
    let queries = queries(projects);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bench.db");
    let engine = Engine::open(&path).expect("open");
    let started = Instant::now();
    engine.import(&snapshot).expect("import");
    let load_time = started.elapsed();
    let allowed = queries
        .iter()
        .filter(|q| {
            engine
                .check(&q.principal, &q.project, q.action)
                .unwrap_or(false)
        })
        .count();
    eprintln!(
        "P = {projects}: loaded in {load_time:.2?}; file {:.1} MB; {:.1} % of {} queries allowed",
        file_bytes(&path) as f64 / 1e6,
        100.0 * allowed as f64 / queries.len() as f64,
        queries.len(),
    );
    // Tokens: one per user and per active service account; none for deactivated ones.
    let admin = engine
        .session_for(&"u0000".parse().expect("name"))
        .expect("session");
    let mut tokens = Vec::new();
    for i in 0..workload::USERS {
        tokens.push(Some(
            engine
                .issue_user_token(&workload::user(i), "bench", None)
                .expect("token"),
        ));
    }
    for i in 0..workload::SERVICE_ACCOUNTS {
        let full = format!("{}@bench", workload::service_account(i));
        tokens.push(admin.issue_service_account_token(&full).ok());
    }
    let cached = Engine::open_with(
        &path,
        Options {
            decision_cache: true,
            ..Default::default()
        },
    )
    .expect("open");
    Loaded {
        _dir: dir,
        path,
        engine,
        cached,
        snapshot,
        queries,
        tokens,
    }
}

fn benches(c: &mut Criterion) {
    for projects in scales() {
        let loaded = load(projects);
        let Loaded {
            path,
            engine,
            cached,
            snapshot,
            queries,
            tokens,
            ..
        } = &loaded;
        let mut group = c.benchmark_group(format!("P={projects}"));
        if quick() {
            group
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
        }

        let next = AtomicUsize::new(0);
        let pick = || &queries[next.fetch_add(1, Ordering::Relaxed) % queries.len()];

        group.bench_function("check", |b| {
            b.iter(|| {
                let q = pick();
                engine.check(&q.principal, &q.project, q.action)
            })
        });

        // Warm: every query of the mix has been answered once before measuring.
        for q in queries {
            let _ = cached.check(&q.principal, &q.project, q.action);
        }
        group.bench_function("check, cached", |b| {
            b.iter(|| {
                let q = pick();
                cached.check(&q.principal, &q.project, q.action)
            })
        });

        // Two threads sharing one Engine; the figure is the time per check of the pair,
        // so 1 / it is the total checks per second. Compare with "check" (and "check,
        // cached") for the speed-up of the second thread (issue 12: at least 1.8).
        for (name, engine) in [
            ("check, 2 threads", engine),
            ("check, cached, 2 threads", cached),
        ] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..2 {
                            let share = iters / 2 + (t as u64) * (iters % 2);
                            s.spawn(move || {
                                for i in 0..share {
                                    let q = &queries[(i as usize * 2 + t) % queries.len()];
                                    let _ = std::hint::black_box(engine.check(
                                        &q.principal,
                                        &q.project,
                                        q.action,
                                    ));
                                }
                            });
                        }
                    });
                    started.elapsed()
                })
            });
        }

        // The first pass over the query mix with the cache on: every check misses and
        // fills (issue 12: at most 1.1 times "check"). Each sample gets a fresh engine,
        // and so an empty cache.
        group.bench_function("check, cached, first pass", |b| {
            b.iter_custom(|iters| {
                let fresh = Engine::open_with(
                    path,
                    Options {
                        decision_cache: true,
                        ..Default::default()
                    },
                )
                .expect("open");
                let started = Instant::now();
                for i in 0..iters {
                    let q = &queries[i as usize % queries.len()];
                    let _ = std::hint::black_box(fresh.check(&q.principal, &q.project, q.action));
                }
                started.elapsed()
            })
        });

        group.bench_function("authorize", |b| {
            b.iter(|| {
                let q = pick();
                match &tokens[workload::token_index(&q.principal)] {
                    Some(t) => engine
                        .authorize(t.secret(), &q.project, q.action)
                        .unwrap_or(false),
                    None => false,
                }
            })
        });

        // Warm, as for "check, cached": every query answered once through a token. The
        // first uses of the tokens are written within about a second (T7), and that
        // commit empties the cache, so the mix is answered again after it; without
        // this the measurement would mostly time the cache refilling.
        let authorize_all = || {
            for q in queries {
                if let Some(t) = &tokens[workload::token_index(&q.principal)] {
                    let _ = cached.authorize(t.secret(), &q.project, q.action);
                }
            }
        };
        authorize_all();
        std::thread::sleep(Duration::from_secs(3));
        authorize_all();
        group.bench_function("authorize, cached", |b| {
            b.iter(|| {
                let q = pick();
                match &tokens[workload::token_index(&q.principal)] {
                    Some(t) => cached
                        .authorize(t.secret(), &q.project, q.action)
                        .unwrap_or(false),
                    None => false,
                }
            })
        });

        group.bench_function("authenticate", |b| {
            b.iter(|| {
                let q = pick();
                match &tokens[workload::token_index(&q.principal)] {
                    Some(t) => engine.authenticate(t.secret()).is_ok(),
                    None => false,
                }
            })
        });

        let member = engine
            .session_for(&"u0500".parse().expect("name"))
            .expect("session");
        let sa = engine
            .session_for(&"sa00@bench".parse().expect("name"))
            .expect("session");
        eprintln!(
            "P = {projects}: member u0500 sees {} projects, sa00@bench sees {}",
            member.list_projects().expect("list").len(),
            sa.list_projects().expect("list").len()
        );
        group.sample_size(20);
        group.bench_function("list, user", |b| {
            b.iter(|| member.list_projects().expect("list"))
        });
        group.bench_function("list, SA", |b| b.iter(|| sa.list_projects().expect("list")));
        group.bench_function("list, first page", |b| {
            b.iter(|| member.list_projects_page(None, 100).expect("page"))
        });

        // One committed grant change per call: add, then remove, the same grant.
        let admin = engine
            .session_for(&"u0000".parse().expect("name"))
            .expect("session");
        let target = format!("bench/{}", workload::project(projects - 1));
        let grantee = "u0999";
        let _ = admin.remove_project_member(&target, grantee);
        let flip = AtomicUsize::new(0);
        group.sample_size(50);
        group.bench_function("write", |b| {
            b.iter(|| {
                if flip.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
                    admin.add_project_member(&target, grantee, ProjectRole::Viewer)
                } else {
                    admin.remove_project_member(&target, grantee)
                }
            })
        });

        group.sample_size(10);
        if quick() {
            group.measurement_time(Duration::from_secs(5));
        } else {
            group.measurement_time(Duration::from_secs(if projects >= 100_000 {
                40
            } else {
                10
            }));
        }
        bench_load(&mut group, snapshot);
        group.finish();
        eprintln!(
            "P = {projects}: process resident {:.1} MB",
            resident_bytes() as f64 / 1e6
        );
    }
}

/// `load`: the import of `snapshot` into a fresh file, commit and checkpoint included
/// (opening the engine is not timed).
fn bench_load(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    snapshot: &turnstile::Snapshot,
) {
    group.bench_function("load", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let engine = Engine::open(dir.path().join("load.db")).expect("open");
                (dir, engine)
            },
            |(dir, engine)| {
                engine.import(snapshot).expect("import");
                (dir, engine)
            },
            BatchSize::PerIteration,
        )
    });
}

/// The bulk import of 1,000,000 projects (the standard workload's shape scaled up),
/// with the peak resident memory of the process. Skipped with `TURNSTILE_BENCH_QUICK`.
fn import_million(c: &mut Criterion) {
    if quick() {
        return;
    }
    const PROJECTS: usize = 1_000_000;
    let snapshot = generate(PROJECTS);
    let mut group = c.benchmark_group(format!("P={PROJECTS}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60));
    bench_load(&mut group, &snapshot);
    group.finish();
    eprintln!(
        "P = {PROJECTS}: peak resident memory of the process {:.1} MB (VmHWM, the snapshot included)",
        peak_resident_bytes() as f64 / 1e6
    );
}

fn peak_resident_bytes() -> u64 {
    proc_status_bytes("VmHWM:")
}

criterion_group!(standard, benches, import_million);
criterion_main!(standard);
