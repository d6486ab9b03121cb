//! `compare`: `keepalive serve` next to the original Node.js keepalive function, on the same
//! fakes, with the same messages.
//!
//! The original function is not part of this repository; pass its file in `BASELINE_FUNCTION`.
//! It runs unchanged under the Functions Framework (`tests/baseline/`, installed with
//! `npm ci --prefix tests/baseline`), with `tests/baseline/redirect.cjs` preloaded to point its
//! traffic at the fakes (see that file). Both sides get the same Pub/Sub push envelopes, whose
//! payload has the original's five keys (the password inline, since the original knows no
//! secrets) plus `project`.
//!
//! Measured for each side, each on a fresh process:
//!
//! - one healthy check at 0 ms and at `COMPARE_LATENCY_MS` (50) per request at the fake: the
//!   median of `COMPARE_SAMPLES` sequential checks;
//! - spawn → accepting connections, spawn → first check answered (median of `COMPARE_STARTS`);
//! - `COMPARE_TENANTS` (1000) tenants posted at once at 50 ms: wall, peak RSS (`VmHWM`), CPU;
//! - CPU per check over `COMPARE_CPU_CHECKS` sequential checks at 0 ms; idle RSS;
//! - behaviour: resets caused by one-off faults of a healthy client, by a client that is really
//!   down, and by the same client still booting at the next tick; what a malformed message gets;
//!   whether the password reaches the logs.
//!
//! ```sh
//! npm ci --prefix tests/baseline
//! cargo build --release -p keepalive
//! BASELINE_FUNCTION=/path/to/keepalive-gcp-function.js KEEPALIVE_BIN=$PWD/target/release/keepalive \
//!   cargo run --release -p keepalive-tests --bin compare
//! ```
//!
//! `COMPARE_PHASES` (`performance,behaviour`) and `COMPARE_RUNS` (3; performance figures are
//! the medians of the runs) select and repeat; `COMPARE_SCENARIOS` (all: `healthy`,
//! `blip-503`, `blip-closed`, `blip-bad-json`, `database-hangs`, `down-then-booting`,
//! `malformed`) picks behaviour scenarios. Each process's output goes to `COMPARE_LOGS`
//! (`target/compare-logs/`). Prints Markdown tables.

mod behaviour;
mod performance;
mod world;

use keepalive_tests::binaries::keepalive_bin;
use keepalive_tests::measure::{cpu_model, env_or, loadavg, nofile_limit};
use std::time::Duration;

use behaviour::*;
use performance::*;
use world::*;

const USER: &str = "admin";
/// 64 characters, as the runbook sets; searched for in both sides' logs.
const PASSWORD: &str = "Cmp-4f9a2c7e1b8d3f6a0c5e9b2d7f1a4c8e3b6d0f5a9c2e7b1d4f8a3c6e0b5";
const ZONE: &str = "europe-west3-c";

struct Opts {
    runs: usize,
    samples: usize,
    tenants: usize,
    cpu_checks: usize,
    starts: usize,
    latency: Duration,
    phases: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = Opts {
        runs: env_or("COMPARE_RUNS", 3usize).max(1),
        samples: env_or("COMPARE_SAMPLES", 20usize).max(1),
        tenants: env_or("COMPARE_TENANTS", 1000usize).max(1),
        cpu_checks: env_or("COMPARE_CPU_CHECKS", 1000usize).max(1),
        starts: env_or("COMPARE_STARTS", 5usize).max(1),
        latency: Duration::from_millis(env_or("COMPARE_LATENCY_MS", 50u64)),
        phases: std::env::var("COMPARE_PHASES").unwrap_or_else(|_| "performance,behaviour".into()),
    };
    let phase = |p: &str| o.phases.split(',').any(|x| x.trim() == p);
    let scenarios: Vec<String> = std::env::var("COMPARE_SCENARIOS")
        .unwrap_or_default()
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    for x in &scenarios {
        if !Scenario::ALL.iter().any(|s| s.id() == x) {
            let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.id()).collect();
            eprintln!(
                "compare: COMPARE_SCENARIOS: unknown scenario {x:?}; known: {}",
                known.join(", ")
            );
            std::process::exit(2);
        }
    }
    for x in o.phases.split(',').map(str::trim) {
        if !["performance", "behaviour"].contains(&x) {
            eprintln!(
                "compare: COMPARE_PHASES: unknown phase {x:?}; known: performance, behaviour"
            );
            std::process::exit(2);
        }
    }
    // The burst holds a client socket and about eight server sockets at the fake per tenant,
    // all in this process.
    let need = o.tenants * 10 + 256;
    if phase("performance") && nofile_limit().parse::<usize>().is_ok_and(|n| n < need) {
        eprintln!(
            "compare: {} tenants need about {need} open files; the limit is {}: raise it \
             (`ulimit -n {need}`) or lower COMPARE_TENANTS",
            o.tenants,
            nofile_limit()
        );
        std::process::exit(2);
    }
    let baseline = match Baseline::find() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(2);
        }
    };
    let load = loadavg();
    let mut w = World::new(baseline).await;

    println!(
        "keepalive ({}) and the original function ({}; {}) on {}; open files limit {}; load average before {load}.",
        keepalive_bin().display(),
        w.baseline.source.display(),
        w.baseline.versions,
        cpu_model(),
        nofile_limit()
    );
    println!();

    if phase("performance") {
        let (mut k, mut n) = (Perf::default(), Perf::default());
        for run in 1..=o.runs {
            eprintln!("run {run} of {}", o.runs);
            // Alternate which side goes first, so neither always meets a cooler machine.
            if run % 2 == 1 {
                perf_run(&mut w, Side::Keepalive, &o, &mut k).await;
                perf_run(&mut w, Side::Original, &o, &mut n).await;
            } else {
                perf_run(&mut w, Side::Original, &o, &mut n).await;
                perf_run(&mut w, Side::Keepalive, &o, &mut k).await;
            }
        }
        println!(
            "Performance ({} run(s), medians, range in brackets; load average after {}):",
            o.runs,
            loadavg()
        );
        println!();
        perf_table(&o, &k, &n);
        println!();
    }

    if phase("behaviour") {
        println!("Behaviour (each scenario on a fresh process of each side; resets counted by the Compute fake):");
        println!();
        println!("| scenario | wanted | keepalive | original |");
        println!("|---|---|---|---|");
        let chosen = |s: Scenario| scenarios.is_empty() || scenarios.iter().any(|x| x == s.id());
        for (i, s) in Scenario::ALL
            .into_iter()
            .enumerate()
            .filter(|(_, s)| chosen(*s))
        {
            let mut cells = Vec::new();
            for side in Side::BOTH {
                let out =
                    behave(&mut w, side, s, i * 2 + usize::from(side == Side::Original)).await;
                let answers: Vec<String> = out
                    .answers
                    .iter()
                    .map(|a| summarize(side, a, &w.wa.host_port()))
                    .collect();
                eprintln!(
                    "{}: {}: {} reset(s); {}",
                    side.name(),
                    s.describe(),
                    out.resets,
                    answers.join("; ")
                );
                cells.push(format!(
                    "**{} reset{}**; {}",
                    out.resets,
                    if out.resets == 1 { "" } else { "s" },
                    answers.join(", then ")
                ));
            }
            println!(
                "| {} | {} | {} | {} |",
                s.describe(),
                s.wanted(),
                cells[0],
                cells[1]
            );
        }
        println!();
    }

    for side in Side::BOTH {
        let (files, hits) = password_in_logs(&w.logs, side);
        println!(
            "The password in {}'s logs: {hits} time(s) in {files} process log(s).",
            side.name()
        );
    }
}
