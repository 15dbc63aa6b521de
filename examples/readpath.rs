//! A driver for profiling the decision path with callgrind: the standard workload's
//! 200,000 checks, as `check` or `authorize`, with or without the decision cache.
//! One warm-up pass (for `authorize`, a second one after the first batch of token uses
//! is written, T7), then `ROUNDS` passes: `--toggle-collect` counts every call of
//! `measured`, warm-ups included, so take the difference of two `ROUNDS`.
//!
//! ```text
//! cargo run --release --example workload -- load 10000 /tmp/w10k.db
//! cargo run --release --example readpath -- tokens /tmp/w10k.db      # once: issues a token per principal
//! valgrind --tool=callgrind --toggle-collect='readpath::measured*' \
//!     target/release/examples/readpath check-cached 10000 /tmp/w10k.db 1
//! ```
//!
//! Modes: `check`, `check-cached`, `authorize`, `authorize-cached`. Instructions per
//! call are the collected total divided by `ROUNDS` × 200,000.

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
    let usage = "usage: readpath tokens PATH | readpath (check|check-cached|authorize|authorize-cached) PROJECTS PATH ROUNDS";
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
    let [mode, projects, path, rounds] = args.as_slice() else {
        return Err(usage.into());
    };
    let queries = workload::queries(projects.parse()?);
    let rounds: usize = rounds.parse()?;
    let options = Options {
        decision_cache: mode.ends_with("-cached"),
        ..Default::default()
    };
    let engine = Engine::open_with(path, options)?;
    let tokens: Vec<String> = if mode.starts_with("authorize") {
        std::fs::read_to_string(tokens_path(path))?
            .split('\n')
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    let one = |q: &workload::Query| -> bool {
        if mode.starts_with("authorize") {
            let t = &tokens[workload::token_index(&q.principal)];
            !t.is_empty() && engine.authorize(t, &q.project, q.action).unwrap_or(false)
        } else {
            engine
                .check(&q.principal, &q.project, q.action)
                .expect("check")
        }
    };
    measured(1, one, &queries);
    if mode.starts_with("authorize") {
        // The first uses of the tokens are written within a second or so (T7); that
        // commit empties the cache, so warm it again after it.
        std::thread::sleep(std::time::Duration::from_secs(3));
        measured(1, one, &queries);
    }
    let started = Instant::now();
    let allowed = measured(rounds, one, &queries);
    let per = started.elapsed() / (rounds * queries.len()) as u32;
    println!("{mode}: {per:.2?} per call, {allowed} allowed");
    Ok(())
}
