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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: readpath tokens PATH | readpath (check|check-cached|authorize|authorize-cached) PROJECTS PATH ROUNDS [QUERIES]";
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
    let options = Options {
        decision_cache: mode.ends_with("-cached"),
        ..Default::default()
    };
    let tokens: Vec<String> = if mode.starts_with("authorize") {
        std::fs::read_to_string(tokens_path(path))?
            .split('\n')
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    let answer = |engine: &Engine, q: &workload::Query| -> bool {
        if mode.starts_with("authorize") {
            let t = &tokens[workload::token_index(&q.principal)];
            !t.is_empty() && engine.authorize(t, &q.project, q.action).unwrap_or(false)
        } else {
            engine
                .check(&q.principal, &q.project, q.action)
                .expect("check")
        }
    };
    if mode.starts_with("authorize") {
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
    let started = Instant::now();
    let allowed = measured(rounds, one, &queries);
    let per = started.elapsed() / (rounds * queries.len()) as u32;
    println!("{mode}: {per:.2?} per call, {allowed} allowed");
    Ok(())
}
