//! A driver for profiling the decision path with callgrind: the standard workload's
//! 200,000 checks, as `check` or `authorize`, with or without the decision cache.
//! One warm-up pass (for `authorize`, first one more on an engine of its own, whose drop
//! writes the tokens' first uses, T7), then `ROUNDS` passes: `--toggle-collect` counts
//! every call of `measured`, warm-ups included, so take the difference of two `ROUNDS`.
//!
//! ```text
//! cargo run --release --example workload -- load 10000 /tmp/w10k.db
//! cargo run --release --example readpath -- tokens /tmp/w10k.db      # once: issues a token per principal
//! cp /tmp/w10k.db /tmp/run.db; cp /tmp/w10k.db.tokens /tmp/run.db.tokens  # authorize: a fresh copy per run
//! valgrind --tool=callgrind --toggle-collect='readpath::measured*' \
//!     target/release/examples/readpath check-cached 10000 /tmp/w10k.db 1
//! ```
//!
//! Modes: `check`, `check-cached`, `authorize`, `authorize-cached`. Instructions per
//! call are the collected total divided by `ROUNDS` × 200,000.
//!
//! Modes `ratio` and `ratio-cached` time rather than count, for a machine too busy for
//! two separate timings to be compared: on one engine, batches of 1,000 checks and of
//! 1,000 authorizations alternate (each batch its own slice of the mix, the one that
//! goes first alternating too), and the median over `ROUNDS` passes of the ratio of
//! each pair of neighbouring batches is printed, so that whatever slows the machine
//! down slows both sides of a ratio alike; then the ratio of the mean times, which counts
//! what a long run costs once a minute (T7).
//!
//! Mode `ratio-first` does the same for the decision cache's first pass: each round
//! opens two new engines on the file, one with the cache and one without, and times
//! them on alternating batches of the mix, each batch met by both for the first time
//! (each engine's SQLite page cache is cold at the start alike), so every batch of the
//! cached engine is the cache filling; printed: the median of the pair ratios (cached
//! first pass / uncached) and the ratio of the means.
//!
//! Modes `ratio-threads` and `ratio-threads-cached` time one engine shared by two
//! threads against one thread, in alternation: one thread answers a slice of 20,000
//! checks, then two threads answer the next two slices at once, and so on; printed: the
//! median over the pairs of the speed-up (two slices' checks per second over one's),
//! and the speed-up of the total times.
//!
//! An optional last argument, `QUERIES`, takes only the first QUERIES of the mix. For
//! `authorize-cached` under callgrind, take 5000: the 200,000 run for minutes there,
//! and once the tokens' last uses are a minute old they are noted and written again
//! (T7), which empties the cache, so a measured round would become a round of misses.

#[path = "../benches/standard/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::time::Instant;

use turnstile::{Engine, Options};

/// The tokens file beside the database: one secret per line, users then service
/// accounts, an empty line for a deactivated one.
fn tokens_path(db: &str) -> String {
    format!("{db}.tokens")
}

#[inline(never)]
fn measured(
    rounds: usize,
    mut one: impl FnMut(&workload::Query) -> bool,
    queries: &[workload::Query],
) -> usize {
    let mut allowed = 0;
    for _ in 0..rounds {
        for q in queries {
            allowed += usize::from(std::hint::black_box(one(q)));
        }
    }
    allowed
}

/// Prints the median time per call of `check` and of `authorize` in alternating batches,
/// and the median of the ratio of neighbouring batches (see the modes `ratio`).
fn ratio(
    engine: &Engine,
    queries: &[workload::Query],
    rounds: usize,
    authorize: impl Fn(&workload::Query) -> bool,
) {
    const BATCH: usize = 1_000;
    let check = |q: &workload::Query| {
        engine
            .check(&q.principal, &q.project, q.action)
            .expect("check")
    };
    let time = |batch: &[workload::Query], f: &dyn Fn(&workload::Query) -> bool| {
        let started = Instant::now();
        for q in batch {
            std::hint::black_box(f(q));
        }
        started.elapsed().as_nanos() as f64 / batch.len() as f64
    };
    let (mut checks, mut authorizations, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (i, pair) in queries.chunks(2 * BATCH).enumerate() {
            let (first, second) = pair.split_at(pair.len() / 2);
            let (c, a) = if i % 2 == 0 {
                let c = time(first, &check);
                (c, time(second, &authorize))
            } else {
                let a = time(first, &authorize);
                (time(second, &check), a)
            };
            checks.push(c);
            authorizations.push(a);
            ratios.push(a / c);
        }
    }
    // Means as well as medians: the median of the ratios leaves out the batches that
    // refill the cache after a commit, which a long run's mean must count (T7 writes
    // the tokens' uses once a minute).
    report(
        ["check", "authorize"],
        checks,
        authorizations,
        ratios,
        BATCH,
    );
}

/// Prints the median ns per call of `a` and of `b` over their batches, the median of
/// the pair ratios (b / a), and the ratio of the means.
fn report(names: [&str; 2], mut a: Vec<f64>, mut b: Vec<f64>, mut ratios: Vec<f64>, batch: usize) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a_mean, b_mean) = (mean(&a), mean(&b));
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [a_name, b_name] = names;
    println!(
        "{a_name} {:.0} ns, {b_name} {:.0} ns per call (medians of {} batches of {batch}); {b_name} / {a_name}: median {:.3}; means {a_mean:.0} and {b_mean:.0} ns, {:.3}",
        median(&mut a),
        median(&mut b),
        ratios.len(),
        median(&mut ratios),
        b_mean / a_mean
    );
}

/// The first pass of a decision cache against no cache, in alternating batches (see
/// the mode `ratio-first`).
fn ratio_first(
    path: &str,
    queries: &[workload::Query],
    rounds: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    const BATCH: usize = 1_000;
    let time = |engine: &Engine, batch: &[workload::Query]| {
        let started = Instant::now();
        for q in batch {
            std::hint::black_box(
                engine
                    .check(&q.principal, &q.project, q.action)
                    .expect("check"),
            );
        }
        started.elapsed().as_nanos() as f64 / batch.len() as f64
    };
    let (mut uncached, mut first, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let plain = Engine::open(path)?;
        let cached = Engine::open_with(
            path,
            Options {
                decision_cache: true,
                ..Default::default()
            },
        )?;
        for (i, batch) in queries.chunks(BATCH).enumerate() {
            let (u, c) = if i % 2 == 0 {
                let u = time(&plain, batch);
                (u, time(&cached, batch))
            } else {
                let c = time(&cached, batch);
                (time(&plain, batch), c)
            };
            uncached.push(u);
            first.push(c);
            ratios.push(c / u);
        }
    }
    report(
        ["uncached", "cached first pass"],
        uncached,
        first,
        ratios,
        BATCH,
    );
    Ok(())
}

/// The speed-up of a second thread on one engine (see the mode `ratio-threads`).
fn ratio_threads(engine: &Engine, queries: &[workload::Query], rounds: usize) {
    const SLICE: usize = 20_000;
    let answer = |slice: &[workload::Query]| {
        for q in slice {
            std::hint::black_box(
                engine
                    .check(&q.principal, &q.project, q.action)
                    .expect("check"),
            );
        }
    };
    let (mut speedups, mut one_total, mut two_total) = (Vec::new(), 0.0, 0.0);
    for _ in 0..rounds {
        let slices: Vec<&[workload::Query]> = queries.chunks(SLICE).collect();
        for trio in slices.chunks_exact(3) {
            let started = Instant::now();
            answer(trio[0]);
            let one = started.elapsed().as_secs_f64();
            let started = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| answer(trio[1]));
                answer(trio[2]);
            });
            let two = started.elapsed().as_secs_f64();
            speedups.push(2.0 * one / two);
            one_total += one;
            two_total += two;
        }
    }
    speedups.sort_by(f64::total_cmp);
    println!(
        "two threads / one thread, checks per second: median {:.3} over {} pairs of {SLICE}; of the totals {:.3}",
        speedups[speedups.len() / 2],
        speedups.len(),
        2.0 * one_total / two_total
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: readpath tokens PATH | readpath (check|check-cached|authorize|authorize-cached|ratio|ratio-cached|ratio-first|ratio-threads|ratio-threads-cached) PROJECTS PATH ROUNDS [QUERIES]";
    if let [mode, path] = args.as_slice()
        && mode == "tokens"
    {
        let engine = Engine::open(path)?;
        let admin = engine.session_for(&"u0000".parse()?)?;
        let mut lines = Vec::new();
        for i in 0..workload::USERS {
            let t = engine.issue_user_token(&workload::user(i), "readpath", None)?;
            lines.push(t.into_secret());
        }
        for i in 0..workload::SERVICE_ACCOUNTS {
            let full = format!("{}@bench", workload::service_account(i));
            lines.push(
                admin
                    .issue_service_account_token(&full)
                    .map(|t| t.into_secret())
                    .unwrap_or_default(),
            );
        }
        std::fs::write(tokens_path(path), lines.join("\n"))?;
        return Ok(());
    }
    let (mode, projects, path, rounds, limit) = match args.as_slice() {
        [mode, projects, path, rounds] => (mode, projects, path, rounds, None),
        [mode, projects, path, rounds, limit] => (mode, projects, path, rounds, Some(limit)),
        _ => return Err(usage.into()),
    };
    let mut queries = workload::queries(projects.parse()?);
    if let Some(limit) = limit {
        queries.truncate(limit.parse()?);
    }
    let rounds: usize = rounds.parse()?;
    if mode == "ratio-first" {
        return ratio_first(path, &queries, rounds);
    }
    let options = Options {
        decision_cache: mode.ends_with("-cached"),
        ..Default::default()
    };
    let authorizes = mode.starts_with("authorize") || mode == "ratio" || mode == "ratio-cached";
    let tokens: Vec<String> = if authorizes {
        std::fs::read_to_string(tokens_path(path))?
            .split('\n')
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    let answer = |engine: &Engine, q: &workload::Query| -> bool {
        if authorizes {
            let t = &tokens[workload::token_index(&q.principal)];
            !t.is_empty() && engine.authorize(t, &q.project, q.action).unwrap_or(false)
        } else {
            engine
                .check(&q.principal, &q.project, q.action)
                .expect("check")
        }
    };
    if authorizes {
        // The tokens' first uses are written in a batch (T7), and that commit empties
        // the cache. Dropping the engine writes them at once, so the measured rounds
        // run on a fresh engine none of whose tokens is due again for a minute.
        // Not through `measured`: how much of this pass the first batch's commit turns
        // into misses varies from run to run. On a fresh copy of the database, whose
        // tokens were never used, every token's use is written here.
        let first = Engine::open_with(path, options)?;
        for q in &queries {
            std::hint::black_box(answer(&first, q));
        }
    }
    let engine = Engine::open_with(path, options)?;
    let one = |q: &workload::Query| answer(&engine, q);
    measured(1, one, &queries);
    if mode.starts_with("ratio-threads") {
        ratio_threads(&engine, &queries, rounds);
        return Ok(());
    }
    if mode.starts_with("ratio") {
        ratio(&engine, &queries, rounds, |q| answer(&engine, q));
        return Ok(());
    }
    let started = Instant::now();
    let allowed = measured(rounds, one, &queries);
    let per = started.elapsed() / (rounds * queries.len()) as u32;
    println!("{mode}: {per:.2?} per call, {allowed} allowed");
    Ok(())
}
