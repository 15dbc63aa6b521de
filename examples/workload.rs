//! Builds the standard workload (`shared/WORKLOAD.md`) into a database file, or runs its
//! 200,000 checks against one, printing plain timings and memory: a quick look without
//! criterion, and a way to measure the engine's resident memory in a process of its own.
//!
//! ```text
//! cargo run --release --example workload -- load 100000 /tmp/w100k.db
//! cargo run --release --example workload -- check 100000 /tmp/w100k.db [--cache]
//! cargo run --release --example workload -- check 100000 /tmp/w100k.db --rounds 1 --queries 20000
//! ```
//!
//! `--rounds` and `--queries` shorten the run, for a profiler such as
//! `valgrind --tool=callgrind`, whose count per check is then the whole count minus
//! that of a run with `--queries 0`, divided by the queries.

#[path = "../benches/standard/workload.rs"]
#[allow(dead_code)] // what the benches use of it beyond the generator
mod workload;

use std::time::Instant;

use turnstile::{Engine, Options};

fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: workload (load|check) PROJECTS PATH [--cache] [--rounds N] [--queries N]";
    let [mode, projects, path, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let projects: usize = projects.parse()?;
    match mode.as_str() {
        "load" => {
            if std::path::Path::new(path).exists() {
                return Err(format!("{path} exists; give a new path").into());
            }
            let w = workload::generate(projects);
            let engine = Engine::open(path)?;
            let started = Instant::now();
            let summary = engine.import(&w)?;
            println!("loaded {summary:?} in {:.2?}", started.elapsed());
            drop(engine);
            println!("file: {} bytes", std::fs::metadata(path)?.len());
        }
        "check" => {
            let flag = |name: &str| -> Result<Option<usize>, Box<dyn std::error::Error>> {
                match rest.iter().position(|a| a == name) {
                    None => Ok(None),
                    Some(i) => Ok(Some(rest.get(i + 1).ok_or(usage)?.parse()?)),
                }
            };
            let rounds = flag("--rounds")?.unwrap_or(3);
            let mut queries = workload::queries(projects);
            queries.truncate(flag("--queries")?.unwrap_or(queries.len()));
            let before = resident_mb();
            let options = Options {
                decision_cache: rest.iter().any(|a| a == "--cache"),
                ..Default::default()
            };
            let engine = Engine::open_with(path, options)?;
            for round in 0..rounds {
                let started = Instant::now();
                let mut allowed = 0usize;
                for q in &queries {
                    allowed += usize::from(engine.check(&q.principal, &q.project, q.action)?);
                }
                let per = started.elapsed() / queries.len().max(1) as u32;
                println!(
                    "round {round}: {per:.2?} per check, {:.1} % allowed",
                    100.0 * allowed as f64 / queries.len().max(1) as f64
                );
            }
            let member = engine.session_for(&"u0500".parse()?)?;
            let started = Instant::now();
            let n = member.list_projects()?.len();
            println!("list, member: {n} projects in {:.2?}", started.elapsed());
            let mut pages = Vec::new();
            for _ in 0..21 {
                let started = Instant::now();
                member.list_projects_page(None, 100)?;
                pages.push(started.elapsed());
            }
            pages.sort();
            println!("list, first page: {:.2?} (median of 21)", pages[10]);
            println!(
                "resident: {:.1} MB in all, {:.1} MB more than before the engine opened",
                resident_mb(),
                resident_mb() - before
            );
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
