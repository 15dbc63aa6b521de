//! Checks per second from several client processes on one PostgreSQL database
//! (SPEC B1, WORKLOAD.md at P = 10,000): the parent loads the workload into a fresh
//! database, starts the processes, and sums what they did in the same window.
//!
//! ```text
//! cargo run --release --example pg_throughput -- postgres://postgres@127.0.0.1:PORT/postgres [PROCESSES] [SECONDS]
//! ```

#[path = "../benches/standard/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use turnstile::Engine;

const PROJECTS: usize = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        return child(&args[1], args[2].parse()?, args[3].parse()?);
    }
    let server = args
        .first()
        .ok_or("usage: pg_throughput SERVER_URL [PROCESSES] [SECONDS]")?;
    let processes: usize = args.get(1).map_or(Ok(4), |a| a.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(10), |a| a.parse())?;
    let name = format!("turnstile_throughput_{}", std::process::id());
    let mut admin = postgres::Client::connect(server, postgres::NoTls)?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let (base, _) = server.rsplit_once('/').ok_or("a URL with a database")?;
    let url = format!("{base}/{name}");
    let started = Instant::now();
    Engine::open(&url)?.import(&workload::generate(PROJECTS))?;
    eprintln!("loaded P = {PROJECTS} in {:.1?}", started.elapsed());
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..processes)
        .map(|i| {
            Command::new(&exe)
                .args(["child", &url, &seconds.to_string(), &i.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut total = 0u64;
    for c in children {
        let out = c.wait_with_output()?;
        total += String::from_utf8(out.stdout)?.trim().parse::<u64>()?;
    }
    println!(
        "{processes} processes, {seconds} s: {total} checks, {:.0} checks/s",
        total as f64 / seconds as f64
    );
    admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))?;
    Ok(())
}

fn child(url: &str, seconds: u64, id: usize) -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::open(url)?;
    let queries = workload::queries(PROJECTS);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    let mut i = id * 50_000;
    while Instant::now() < deadline {
        let q = &queries[i % queries.len()];
        engine.check(&q.principal, &q.project, q.action)?;
        i += 1;
        n += 1;
    }
    println!("{n}");
    Ok(())
}
