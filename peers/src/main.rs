//! Peer benchmark: the same Neptune-like permission checks answered by casbin,
//! cedar-policy, a plain HashMap baseline, a raw SQLite baseline and turnstile
//! (the project under test, with and without its decision cache).
//!
//!   cargo run --release -- --projects 10000
//!
//! The parent process runs every (run, engine) pair in a fresh child process
//! (so RSS is per engine), collects each child's decisions for the
//! differential agreement check and reports medians over the runs.

mod casbin_engine;
mod cedar_engine;
mod hashmap_engine;
mod sqlite_engine;
mod turnstile_engine;
mod workload;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use workload::{Query, Workload};

/// One engine, set up over a workload; answers a batch of checks one by one.
pub trait Engine {
    fn check_batch(&mut self, queries: &[Query], out: &mut [bool]);

    /// The complete list of the projects `principal` may view: (ns taken, sorted
    /// project ids). `view_queries` holds one `view` query of `principal` per
    /// project of the workspace, built outside the timing. By default an engine
    /// answers one check per project, which is what casbin and Cedar offer;
    /// turnstile overrides it with `Session::list_projects()`.
    fn time_list(&mut self, _principal: workload::Principal, view_queries: &[Query]) -> (f64, Vec<u32>) {
        let mut out = vec![false; view_queries.len()];
        let t = Instant::now();
        self.check_batch(view_queries, &mut out);
        let ns = t.elapsed().as_nanos() as f64;
        let ids = view_queries.iter().zip(&out).filter(|(_, allowed)| **allowed).map(|(q, _)| q.project).collect();
        (ns, ids)
    }
}

const ENGINES: [&str; 6] = ["hashmap", "sqlite", "cedar", "casbin", "turnstile", "turnstile-cached"];

fn setup(engine: &str, w: &Workload) -> Box<dyn Engine> {
    match engine {
        "hashmap" => Box::new(hashmap_engine::HashMapEngine::new(w)),
        "sqlite" => Box::new(sqlite_engine::SqliteEngine::new(w)),
        "cedar" => Box::new(cedar_engine::CedarEngine::new(w)),
        "casbin" => Box::new(casbin_engine::CasbinEngine::new(w)),
        "turnstile" => Box::new(turnstile_engine::TurnstileEngine::new(w, false)),
        "turnstile-cached" => Box::new(turnstile_engine::TurnstileEngine::new(w, true)),
        other => panic!("unknown engine {other:?}; known: {ENGINES:?}"),
    }
}

struct Opts {
    projects: u32,
    queries: usize,
    repeats: usize,
    runs: usize,
    engines: Vec<String>,
    /// Repeats of the list measurement in each child; 0 skips it.
    list_repeats: usize,
    write: bool,
    child: Option<(String, PathBuf)>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        projects: 10_000,
        queries: 200_000,
        repeats: 5,
        runs: 3,
        engines: ENGINES.iter().map(|s| s.to_string()).collect(),
        list_repeats: 5,
        write: true,
        child: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value")).clone();
        match a.as_str() {
            "--projects" => o.projects = val().parse().expect("--projects N"),
            "--queries" => o.queries = val().parse().expect("--queries N"),
            "--repeats" => o.repeats = val().parse().expect("--repeats N"),
            "--runs" => o.runs = val().parse().expect("--runs N"),
            "--engines" => o.engines = val().split(',').map(str::to_string).collect(),
            "--list-repeats" => o.list_repeats = val().parse().expect("--list-repeats N"),
            "--no-list" => o.list_repeats = 0,
            "--no-write" => o.write = false,
            "--child" => {
                let engine = val();
                o.child = Some((engine, PathBuf::from(val())));
            }
            "-h" | "--help" => {
                println!(
                    "usage: peers [--projects N (10000)] [--queries N (200000)] [--repeats N (5)] [--runs N (3)]\n\
                     \x20            [--engines hashmap,sqlite,cedar,casbin,turnstile,turnstile-cached]\n\
                     \x20            [--list-repeats N (5) | --no-list] [--no-write]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    assert!(o.projects > 0 && o.queries > 0 && o.repeats > 0 && o.runs > 0);
    o
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The path of a child's list of listed project ids, next to its decisions.
fn list_path(decisions_path: &Path) -> PathBuf {
    let mut p = decisions_path.as_os_str().to_owned();
    p.push(".list");
    PathBuf::from(p)
}

/// Child: build the workload, set the engine up (timed), answer the query set
/// `repeats` times (each timed), write the decisions; then time the complete
/// project list of one member `list_repeats` times and write it; print one
/// RESULT line.
fn child(o: &Opts, engine: &str, decisions_path: &Path) {
    let w = workload::generate(o.projects, o.queries, workload::SEED);
    let rss_before = proc_status_kb("VmRSS");
    let t = Instant::now();
    let mut e = setup(engine, &w);
    let setup_ns = t.elapsed().as_nanos();
    let rss_after = proc_status_kb("VmRSS");

    let mut first = vec![false; w.queries.len()];
    let mut out = vec![false; w.queries.len()];
    let mut per_check = Vec::new();
    for r in 0..o.repeats {
        let t = Instant::now();
        e.check_batch(&w.queries, &mut out);
        per_check.push(t.elapsed().as_nanos() as f64 / w.queries.len() as f64);
        if r == 0 {
            first.copy_from_slice(&out);
        } else {
            assert_eq!(first, out, "{engine}: decisions changed between repeats");
        }
    }
    // The peak of setup and checks, before the list measurement allocates.
    let hwm = proc_status_kb("VmHWM");
    std::fs::write(decisions_path, first.iter().map(|&b| b as u8).collect::<Vec<u8>>()).expect("write decisions");

    // The list path: the complete list of projects one member may view.
    let mut list_ms = Vec::new();
    if o.list_repeats > 0 {
        let (principal, view_queries) = workload::list_queries(&w);
        let mut listed: Option<Vec<u32>> = None;
        for _ in 0..o.list_repeats {
            let (ns, ids) = e.time_list(principal, &view_queries);
            list_ms.push(ns / 1e6);
            match &listed {
                None => listed = Some(ids),
                Some(l) => assert_eq!(*l, ids, "{engine}: list changed between repeats"),
            }
        }
        let bytes: Vec<u8> = listed.unwrap().iter().flat_map(|id| id.to_le_bytes()).collect();
        std::fs::write(list_path(decisions_path), bytes).expect("write list");
    }
    drop(e);
    let repeats: Vec<String> = per_check.iter().map(|x| format!("{x:.0}")).collect();
    let list_repeats: Vec<String> = list_ms.iter().map(|x| format!("{x:.3}")).collect();
    println!(
        "RESULT {engine} {setup_ns} {:.1} {rss_before} {rss_after} {hwm} {} {} {}",
        median(&per_check),
        repeats.join(","),
        if list_ms.is_empty() { "-".to_string() } else { format!("{:.3}", median(&list_ms)) },
        if list_ms.is_empty() { "-".to_string() } else { list_repeats.join(",") },
    );
}

#[derive(Default)]
struct EngineRuns {
    setup_ms: Vec<f64>,
    ns: Vec<f64>,
    rss_mb: Vec<f64>,
    peak_mb: Vec<f64>,
    repeats: Vec<String>,
    disagreements: Vec<usize>,
    list_ms: Vec<f64>,
    list_repeats: Vec<String>,
    listed: Vec<usize>,
    list_disagreements: Vec<usize>,
}

fn main() {
    let o = parse_args();
    if let Some((engine, path)) = &o.child {
        child(&o, engine, path);
        return;
    }

    // Reference decisions: the HashMap engine (itself checked against the
    // literal oracle in `cargo test`).
    let w = workload::generate(o.projects, o.queries, workload::SEED);
    let mut reference = vec![false; w.queries.len()];
    hashmap_engine::HashMapEngine::new(&w).check_batch(&w.queries, &mut reference);
    let allow_rate = reference.iter().filter(|&&b| b).count() as f64 / reference.len() as f64;
    // Reference list: what the HashMap engine allows the list principal to view.
    let reference_list: Vec<u32> = {
        let (principal, view_queries) = workload::list_queries(&w);
        hashmap_engine::HashMapEngine::new(&w).time_list(principal, &view_queries).1
    };
    let mut loads = vec![loadavg()];
    println!(
        "workload: {} projects, {} users, {} service accounts, {} grants, {} queries ({:.1} % allowed); {} runs x {} repeats",
        w.projects.len(),
        w.users,
        w.service_accounts.len(),
        w.grants.len(),
        w.queries.len(),
        allow_rate * 100.0,
        o.runs,
        o.repeats
    );

    let exe = std::env::current_exe().expect("current exe");
    let mut results: Vec<EngineRuns> = o.engines.iter().map(|_| EngineRuns::default()).collect();
    let mut not_all_agree = vec![false; w.queries.len()];
    for run in 0..o.runs {
        for (engine, res) in o.engines.iter().zip(results.iter_mut()) {
            let path = std::env::temp_dir().join(format!("peers-decisions-{}-{engine}", std::process::id()));
            let output = Command::new(&exe)
                .args(["--projects", &o.projects.to_string(), "--queries", &o.queries.to_string()])
                .args(["--repeats", &o.repeats.to_string(), "--list-repeats", &o.list_repeats.to_string()])
                .args(["--child", engine])
                .arg(&path)
                .output()
                .expect("spawn child");
            assert!(output.status.success(), "{engine} child failed: {}", String::from_utf8_lossy(&output.stderr));
            let stdout = String::from_utf8_lossy(&output.stdout);
            let line = stdout.lines().find(|l| l.starts_with("RESULT ")).expect("RESULT line");
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| f[i].parse::<f64>().unwrap();
            res.setup_ms.push(num(2) / 1e6);
            res.ns.push(num(3));
            res.rss_mb.push((num(5) - num(4)) / 1024.0);
            res.peak_mb.push((num(6) - num(4)) / 1024.0);
            res.repeats.push(f[7].to_string());
            if o.list_repeats > 0 {
                res.list_ms.push(num(8));
                res.list_repeats.push(f[9].to_string());
                let lp = list_path(&path);
                let bytes = std::fs::read(&lp).expect("read list");
                let _ = std::fs::remove_file(&lp);
                let ids: std::collections::BTreeSet<u32> =
                    bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
                let want: std::collections::BTreeSet<u32> = reference_list.iter().copied().collect();
                res.listed.push(bytes.len() / 4);
                res.list_disagreements.push(ids.symmetric_difference(&want).count() + (bytes.len() / 4 - ids.len()));
            }
            let decisions = std::fs::read(&path).expect("read decisions");
            let _ = std::fs::remove_file(&path);
            assert_eq!(decisions.len(), reference.len());
            let mut diff = 0;
            for (i, (&d, &r)) in decisions.iter().zip(&reference).enumerate() {
                if (d == 1) != r {
                    diff += 1;
                    not_all_agree[i] = true;
                }
            }
            res.disagreements.push(diff);
            eprintln!(
                "run {}/{} {engine}: setup {:.0} ms, {:.0} ns/check, list {} ms",
                run + 1,
                o.runs,
                num(2) / 1e6,
                num(3),
                f[8]
            );
        }
        loads.push(loadavg());
    }

    println!("engine setup_ms ns_per_check rss_mb disagreements");
    for (engine, r) in o.engines.iter().zip(&results) {
        println!(
            "{engine} {:.0} {:.0} {:.1} {}",
            median(&r.setup_ms),
            median(&r.ns),
            median(&r.rss_mb),
            r.disagreements.iter().max().unwrap()
        );
    }
    let n_not_all = not_all_agree.iter().filter(|&&b| b).count();
    println!("queries on which the engines do not all agree: {n_not_all}");
    if o.list_repeats > 0 {
        println!("engine list_ms listed list_disagreements");
        for (engine, r) in o.engines.iter().zip(&results) {
            println!(
                "{engine} {:.3} {} {}",
                median(&r.list_ms),
                r.listed.iter().max().unwrap(),
                r.list_disagreements.iter().max().unwrap()
            );
        }
    }
    println!("load average (1, 5, 15 min) at the start and after each run: {}", loads.join(" / "));

    if o.write {
        write_results(&o, &w, allow_rate, &results, n_not_all, reference_list.len(), &loads);
    }
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn lock_version(name: &str) -> String {
    let lock = include_str!("../Cargo.lock");
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle).and_then(|i| lock[i + needle.len()..].split('"').next()).unwrap_or("?").to_string()
}

fn cmd_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Writes results/projects-N.md for this scale point and regenerates
/// RESULTS.md from all scale points measured so far.
fn write_results(
    o: &Opts,
    w: &Workload,
    allow_rate: f64,
    results: &[EngineRuns],
    n_not_all: usize,
    reference_listed: usize,
    loads: &[String],
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']))
        .unwrap_or("?");
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = cmd_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);

    let mut s = String::new();
    let _ = writeln!(s, "## {} projects\n", w.projects.len());
    let _ = writeln!(
        s,
        "Measured {date}: `cargo run --release -- --projects {} --queries {} --repeats {} --runs {}`  ",
        o.projects, o.queries, o.repeats, o.runs
    );
    let _ = writeln!(
        s,
        "Workload: {} users, {} service accounts, {} projects, {} grants, {} queries ({:.1} % allowed).\n",
        w.users,
        w.service_accounts.len(),
        w.projects.len(),
        w.grants.len(),
        w.queries.len(),
        allow_rate * 100.0
    );
    let _ = writeln!(
        s,
        "| engine | setup_ms | ns_per_check | rss_mb | peak_mb | disagreements | ns_per_check of each run (median of repeats) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|");
    for (engine, r) in o.engines.iter().zip(results) {
        let per_run: Vec<String> = r.ns.iter().map(|x| format!("{x:.0}")).collect();
        let _ = writeln!(
            s,
            "| {engine} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} |",
            median(&r.setup_ms),
            median(&r.ns),
            median(&r.rss_mb),
            median(&r.peak_mb),
            r.disagreements.iter().max().unwrap(),
            per_run.join(" / ")
        );
    }
    let _ = writeln!(s, "\nQueries on which the engines do not all agree: {n_not_all}.");
    let _ = writeln!(s, "\nRaw ns per check of every repeat, per run:\n");
    for (engine, r) in o.engines.iter().zip(results) {
        let _ = writeln!(s, "- {engine}: {}", r.repeats.join(" | "));
    }
    if o.list_repeats > 0 {
        let (principal, view_queries) = workload::list_queries(w);
        let who = match principal {
            workload::Principal::User(u) => turnstile_engine::user_name(u),
            workload::Principal::Sa(sa) => turnstile_engine::sa_short_name(sa),
        };
        let _ = writeln!(s, "\n### List path\n");
        let _ = writeln!(
            s,
            "The complete list of the projects that member `{who}` may view: {reference_listed} of {} projects. \
             turnstile answers with `Session::list_projects()` (the session is made once, outside the timing); \
             the other engines with one `view` check per project of the workspace ({} checks). \
             `list_ms` = median of {} repeats (in the same child, after the checks), then median of the runs; \
             `disagreements` = projects listed or left out unlike the HashMap reference (max over runs).\n",
            w.projects.len(),
            view_queries.len(),
            o.list_repeats
        );
        let _ = writeln!(s, "| engine | list_ms | listed | disagreements | list_ms of each run (median of repeats) |");
        let _ = writeln!(s, "|---|---:|---:|---:|---|");
        for (engine, r) in o.engines.iter().zip(results) {
            let per_run: Vec<String> = r.list_ms.iter().map(|x| format!("{x:.2}")).collect();
            let _ = writeln!(
                s,
                "| {engine} | {:.2} | {} | {} | {} |",
                median(&r.list_ms),
                r.listed.iter().max().unwrap(),
                r.list_disagreements.iter().max().unwrap(),
                per_run.join(" / ")
            );
        }
        let _ = writeln!(s, "\nRaw list ms of every repeat, per run:\n");
        for (engine, r) in o.engines.iter().zip(results) {
            let _ = writeln!(s, "- {engine}: {}", r.list_repeats.join(" | "));
        }
    }
    if o.engines.iter().any(|e| e.starts_with("turnstile")) {
        let _ = writeln!(
            s,
            "\nturnstile: the checkout at commit {}.",
            cmd_output(
                "git",
                &["-C", &root.join("..").display().to_string(), "log", "-1", "--format=%h (%cs) %s"]
            )
        );
    }
    let _ = writeln!(s, "\nLoad average (1, 5, 15 min) at the start and after each run: {}.", loads.join(" / "));

    let dir = root.join("results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("projects-{:07}.md", o.projects)), &s).unwrap();

    let mut fragments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    fragments.sort();
    let mut md = String::new();
    let _ = writeln!(md, "# Peer benchmark results\n");
    let _ = writeln!(
        md,
        "Generated by `src/main.rs` (see README.md for the policy mapping and the fairness caveats). Last written {date}.\n"
    );
    let _ = writeln!(
        md,
        "Columns: `setup_ms` = loading the workload into the engine; `ns_per_check` = mean over the query set, median of the repeats, then median of the runs; `rss_mb` = VmRSS after setup minus VmRSS before it (the engine's resident footprint, in a fresh process per engine and run); `peak_mb` = VmHWM after the checks minus VmRSS before setup (the engine's peak including transient setup allocations and, for `turnstile-cached`, the filled decision cache); `disagreements` = queries whose allow/deny differs from the HashMap reference (max over runs). Single thread, release build. `turnstile-cached`: the first repeat fills the decision cache and the later ones hit it (the 200,000 checks fit in it), so its median is the warm figure; the first repeat is the first number of each run in the raw lists.\n"
    );
    let _ = writeln!(
        md,
        "Machine: {nproc} CPUs (`nproc`), {cpu}, {mem_gib:.0} GiB RAM, Linux {}; shared and noisy.  ",
        kernel.trim()
    );
    let _ = writeln!(md, "Toolchain: {}.  ", cmd_output("rustc", &["--version"]));
    let _ = writeln!(
        md,
        "Crates: casbin {} (rhai {}), cedar-policy {}, rusqlite {} (bundled SQLite {}; the version turnstile uses, which the sqlite floor shares), rand {} (StdRng seed {}), tokio {} (casbin setup only), turnstile {} (the checkout `..`; its commit is in each section).\n",
        lock_version("casbin"),
        lock_version("rhai"),
        lock_version("cedar-policy"),
        lock_version("rusqlite"),
        rusqlite::version(),
        lock_version("rand"),
        workload::SEED,
        lock_version("tokio"),
        lock_version("turnstile")
    );
    let _ = writeln!(
        md,
        "Reproduce:\n\n```sh\ncd peers\ncargo test --release\ncargo run --release -- --projects 10000\ncargo run --release -- --projects 100000\n```\n"
    );
    for f in fragments {
        md.push_str(&std::fs::read_to_string(f).unwrap());
        md.push('\n');
    }
    std::fs::write(root.join("RESULTS.md"), md).unwrap();
    println!("wrote {}", root.join("RESULTS.md").display());
}

#[cfg(test)]
mod tests {
    use super::*;
    use workload::*;

    const TURNSTILE_ENGINES: [&str; 2] = ["turnstile", "turnstile-cached"];

    /// Every engine agrees with the literal oracle on every (principal,
    /// project, action) of several small adversarial workloads (multiple
    /// workspaces, non-member users with stale grants, deactivated service
    /// accounts, cross-workspace grants). turnstile is held to the oracle on
    /// the grants it can store (`turnstile_engine::representable`); the test
    /// below accounts for the rest.
    #[test]
    fn engines_match_oracle_on_adversarial_workloads() {
        let mut failures = Vec::new();
        for seed in 0..20 {
            let w = generate_adversarial(seed);
            let expected: Vec<bool> = w.queries.iter().map(|q| oracle(&w, q)).collect();
            assert!(expected.iter().any(|&b| b) && expected.iter().any(|&b| !b));
            let repr = turnstile_engine::representable(&w);
            let expected_repr: Vec<bool> = repr.queries.iter().map(|q| oracle(&repr, q)).collect();
            let cedar = cedar_engine::CedarEngine::new(&w);
            for q in &w.queries {
                assert_eq!(cedar.errors(q), 0, "cedar evaluation error on {q:?}");
            }
            for engine in ENGINES {
                let expected = if TURNSTILE_ENGINES.contains(&engine) { &expected_repr } else { &expected };
                let mut e = setup(engine, &w);
                let mut out = vec![false; w.queries.len()];
                e.check_batch(&w.queries, &mut out);
                if let Some(i) = (0..out.len()).find(|&i| out[i] != expected[i]) {
                    failures.push(format!("{engine} (seed {seed}): {:?} -> {}", w.queries[i], out[i]));
                }
            }
        }
        assert!(failures.is_empty(), "disagreements with the oracle:\n{}", failures.join("\n"));
    }

    /// turnstile against the oracle on the *whole* adversarial workloads: the
    /// only disagreements are checks by an active service account on a project
    /// of another workspace on which it holds a grant. The peers' policy lets
    /// that grant count; turnstile's SPEC R7 ("a principal from another
    /// workspace gains nothing but R4") does not, and its schema cannot even
    /// store such a grant. The user grants turnstile cannot store (held by
    /// non-members, A7) are inert under both policies and change no decision.
    #[test]
    fn turnstile_differs_from_oracle_only_by_cross_workspace_sa_grants() {
        let (mut total, mut example) = (0, None);
        for seed in 0..20 {
            let w = generate_adversarial(seed);
            let repr = turnstile_engine::representable(&w);
            let dropped_sa = |q: &Query| {
                matches!(q.principal, Principal::Sa(s) if w.service_accounts[s as usize].active
                    && w.service_accounts[s as usize].workspace != w.projects[q.project as usize].workspace
                    && w.grants.iter().any(|g| g.principal == q.principal && g.project == q.project))
            };
            for q in &w.queries {
                // Dropping the non-member user grants changes no decision.
                if !dropped_sa(q) {
                    assert_eq!(oracle(&w, q), oracle(&repr, q), "seed {seed}: {q:?}");
                }
            }
            for engine in TURNSTILE_ENGINES {
                let mut e = setup(engine, &w);
                let mut out = vec![false; w.queries.len()];
                e.check_batch(&w.queries, &mut out);
                for (q, &got) in w.queries.iter().zip(&out) {
                    let want = oracle(&w, q);
                    if got != want {
                        assert!(dropped_sa(q) && want && !got, "{engine} seed {seed}: unexplained {q:?} -> {got}");
                        total += 1;
                        if example.is_none() {
                            let g = w.grants.iter().find(|g| g.principal == q.principal && g.project == q.project);
                            let sa_ws = match q.principal {
                                Principal::Sa(s) => w.service_accounts[s as usize].workspace,
                                Principal::User(_) => unreachable!(),
                            };
                            let p = &w.projects[q.project as usize];
                            example = Some(format!(
                                "seed {seed}: {q:?}, {g:?}, SA of workspace {sa_ws}, project of workspace {} ({})",
                                p.workspace,
                                p.visibility.name()
                            ));
                        }
                    }
                }
            }
        }
        eprintln!(
            "turnstile vs the oracle on the whole adversarial workloads: {total} disagreements (both variants), all R7; e.g. {}",
            example.as_deref().unwrap_or("-")
        );
        assert!(total > 0, "the adversarial workloads should exercise cross-workspace SA grants");
    }

    /// turnstile's `Session::list_projects()` of every principal of the
    /// adversarial workloads (all workspaces) is exactly the set of projects
    /// the oracle lets it view (on the grants turnstile can store).
    #[test]
    fn turnstile_list_matches_oracle_on_adversarial_workloads() {
        for seed in 0..20 {
            let w = turnstile_engine::representable(&generate_adversarial(seed));
            let mut e = turnstile_engine::TurnstileEngine::new(&w, false);
            let active = |p: &Principal| match p {
                Principal::User(_) => true,
                Principal::Sa(s) => w.service_accounts[*s as usize].active,
            };
            let principals =
                (0..w.users).map(Principal::User).chain((0..w.service_accounts.len() as u32).map(Principal::Sa));
            for principal in principals.filter(active) {
                let want: Vec<u32> = (0..w.projects.len() as u32)
                    .filter(|&project| oracle(&w, &Query { principal, project, action: Action::View }))
                    .collect();
                assert_eq!(e.time_list(principal, &[]).1, want, "seed {seed}: {principal:?}");
            }
        }
    }

    /// The benchmark workload has the specified shape, and on a small scale
    /// point every engine agrees with the literal oracle.
    #[test]
    fn benchmark_workload_shape_and_agreement() {
        let w = generate(1_000, 5_000, SEED);
        assert_eq!(w.memberships.iter().filter(|m| m.role == WsRole::Admin).count(), 10);
        assert_eq!(w.memberships.len(), 1_000);
        assert_eq!(w.service_accounts.iter().filter(|s| !s.active).count(), 5);
        let public = w.projects.iter().filter(|p| p.visibility == Visibility::Public).count();
        let ws = w.projects.iter().filter(|p| p.visibility == Visibility::Workspace).count();
        assert_eq!((ws, public), (350, 50));
        assert_eq!(w.grants.len(), 1_000 * 5 + 50 * 20);
        // turnstile can store every grant of the benchmark workload.
        assert_eq!(turnstile_engine::representable(&w).grants.len(), w.grants.len());
        let expected: Vec<bool> = w.queries.iter().map(|q| oracle(&w, q)).collect();
        let (list_principal, view_queries) = list_queries(&w);
        let expected_list: Vec<u32> = view_queries.iter().filter(|q| oracle(&w, q)).map(|q| q.project).collect();
        assert!(expected_list.len() > 300, "a member sees the workspace-visible projects");
        for engine in ENGINES {
            let mut e = setup(engine, &w);
            let mut out = vec![false; w.queries.len()];
            e.check_batch(&w.queries, &mut out);
            let diff = out.iter().zip(&expected).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 0, "{engine}: {diff} disagreements");
            let listed = e.time_list(list_principal, &view_queries).1;
            assert_eq!(listed, expected_list, "{engine}: list");
        }
        // Deterministic generation.
        let w2 = generate(1_000, 5_000, SEED);
        assert_eq!(format!("{:?}", w.queries), format!("{:?}", w2.queries));
    }

    /// The Cedar policies validate (strict mode) against a schema of the entity model.
    #[test]
    fn cedar_policies_validate_against_schema() {
        use cedar_policy::{PolicySet, Schema, ValidationMode, Validator};
        use std::str::FromStr;
        let (schema, _warnings) = Schema::from_cedarschema_str(
            r#"
            entity Workspace;
            entity WorkspaceRole in [Workspace];
            entity ProjectRole in [ProjectRole];
            entity User in [Workspace, WorkspaceRole, ProjectRole];
            entity ServiceAccount in [ProjectRole] { active: Bool, workspace: Workspace };
            entity Project { workspace: Workspace, admins: WorkspaceRole, visibility: String,
                             owners: ProjectRole, contributors: ProjectRole, viewers: ProjectRole };
            action view, edit, manage_members, delete_project
                appliesTo { principal: [User, ServiceAccount], resource: Project };
            "#,
        )
        .unwrap();
        let policies = PolicySet::from_str(cedar_engine::POLICIES).unwrap();
        let result = Validator::new(schema).validate(&policies, ValidationMode::Strict);
        assert!(result.validation_passed(), "{result}");
        assert_eq!(result.validation_warnings().count(), 0, "{result}");
    }

    #[test]
    fn sqlite_single_check_matches() {
        let w = generate_adversarial(7);
        let e = sqlite_engine::SqliteEngine::new(&w);
        for q in &w.queries {
            assert_eq!(e.check(q), oracle(&w, q));
        }
    }
}
