//! Builds the standard workload (`shared/WORKLOAD.md`) into a database file and runs its
//! 200,000 checks once, printing plain timings: a quick look without criterion.
//!
//! ```text
//! cargo run --release --example workload -- 100000 [path/to/file.db]
//! ```

#[path = "../benches/standard/workload.rs"]
mod workload;

use std::time::Instant;

use turnstile::Engine;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let projects: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let path = args
        .next()
        .map_or_else(|| dir.path().join("workload.db"), Into::into);
    if path.exists() {
        return Err(format!("{} exists; give a new path", path.display()).into());
    }
    let started = Instant::now();
    let w = workload::generate(projects);
    println!("generated P = {projects} in {:.2?}", started.elapsed());

    let engine = Engine::open(&path)?;
    let started = Instant::now();
    let summary = engine.import(&w.snapshot)?;
    println!("loaded {summary:?} in {:.2?}", started.elapsed());
    println!("file: {} bytes", std::fs::metadata(&path)?.len());

    for round in 0..3 {
        let started = Instant::now();
        let mut allowed = 0usize;
        for q in &w.queries {
            allowed += usize::from(engine.check(&q.principal, &q.project, q.action)?);
        }
        let per = started.elapsed() / w.queries.len() as u32;
        println!(
            "round {round}: {per:.2?} per check, {:.1} % allowed",
            100.0 * allowed as f64 / w.queries.len() as f64
        );
    }
    Ok(())
}
