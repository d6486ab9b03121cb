//! The flood phase (`BENCH_PHASES=flood`): the 256 KiB answer cap holding memory when every
//! client answers far more than that. `BENCH_TENANTS` checks posted at once to a fresh
//! `keepalive serve`, 0 ms per request, three ways, each on its own process:
//!
//! - normal answers (the burst, as the reference);
//! - every probe answers a 10 MiB body (`FLOOD_MIB`), streamed without a `content-length`, so
//!   keepalive finds out only by reading, up to the cap;
//! - the login answers a 64 MiB body (`FLOOD_LOGIN_MIB`) the same way: as good as endless for a
//!   reader, and bounded for the fake, which also stops when the reader hangs up.
//!
//! keepalive runs with its production settings (3 attempts, 5 s apart): an oversized answer
//! fails the attempt, so the flooded checks end as a client that is down; each way's VMs are
//! in a project of their own (the Compute fake; `KEEPALIVE_PROJECTS` allows it), so every way
//! meets an empty reset history, and the fleet brake decides how many of them are reset and
//! which end in `alert`. The resets reach only the Compute fake, which counts them: at most
//! the brake's 5, as checks of one project take turns at the brake.
//!
//! For each: wall time until the last answer, the verdicts, resets issued, peak RSS
//! (`VmHWM`) and CPU of the process.

use keepalive_tests::measure::{median, range};
use keepalive_tests::whatsapp::{Behaviour, LOGIN_PATH, PROBES};
use keepalive_tests::FAKE_PROJECT;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::burst::{posted_at_once, BurstRun};
use crate::world::World;

const MIB: usize = 1024 * 1024;

/// Peak RSS of a flood, MiB: the target (the fleet message's; a Cloud Run instance has 128).
const TARGET_MIB: f64 = 48.0;
/// How far, MiB, a flood's peak RSS may be above the normal answers' one.
const TARGET_OVER_MIB: f64 = 20.0;

/// How the fakes answer during one way of the flood phase.
#[derive(Clone, Copy)]
enum Flood {
    Normal,
    /// Every probe: a streamed body of this many bytes.
    Probes(usize),
    /// The login: a streamed body of this many bytes.
    Login(usize),
}

/// One way, measured: the run, and the resets the Compute fake received during it.
pub struct FloodRun {
    burst: BurstRun,
    resets: usize,
}

/// The three ways of one run, in the order of [`ways`].
pub type FloodRuns = Vec<FloodRun>;

fn ways() -> [Flood; 3] {
    let probes = keepalive_tests::measure::env_or("FLOOD_MIB", 10usize).max(1);
    let login = keepalive_tests::measure::env_or("FLOOD_LOGIN_MIB", 64usize).max(1);
    [
        Flood::Normal,
        Flood::Probes(probes * MIB),
        Flood::Login(login * MIB),
    ]
}

fn title(way: Flood) -> String {
    match way {
        Flood::Normal => "normal answers".into(),
        Flood::Probes(n) => format!("{} MiB on every probe", n / MIB),
        Flood::Login(n) => format!("{} MiB on the login", n / MIB),
    }
}

/// One run of every way; `run` names the runs' projects.
pub async fn run(w: &World, tenants: usize, run: usize) -> FloodRuns {
    let mut out = Vec::new();
    for (k, way) in ways().into_iter().enumerate() {
        // A project of its own: no earlier run's resets count for the grace window or brake.
        let project = format!("bench-flood-{run}-{k}");
        w.add_vms(&project, tenants);
        let bodies = (0..tenants).map(|i| w.message_in(i, &project)).collect();
        let mut env = w.env.clone();
        env.insert(
            "KEEPALIVE_PROJECTS".into(),
            format!("{FAKE_PROJECT},{project}"),
        );
        let resets0 = w.g.compute.total_resets();
        let burst = posted_at_once(w, &env, Duration::ZERO, bodies, || script(w, way)).await;
        let resets = w.g.compute.total_resets() - resets0;
        for f in &w.fakes {
            f.clear_behaviours();
        }
        eprintln!(
            "run {run}: flood, {}: {:.0} ms wall, peak RSS {:.1} MiB (before {:.1}, after \
             {:.1}), CPU {:.0} ms, verdicts {:?}, resets {resets} (pid {})",
            title(way),
            burst.wall,
            burst.hwm as f64 / MIB as f64,
            burst.rss_before as f64 / MIB as f64,
            burst.rss_after as f64 / MIB as f64,
            burst.cpu,
            burst.verdicts,
            burst.pid
        );
        for (verdict, text) in &burst.examples {
            eprintln!(
                "run {run}: flood, {}: one {verdict} answer: {text}",
                title(way)
            );
        }
        if matches!(way, Flood::Normal) {
            assert_eq!(
                burst.verdicts.get("healthy").copied(),
                Some(tenants),
                "normal answers must be healthy"
            );
        }
        out.push(FloodRun { burst, resets });
    }
    out
}

/// Makes every fake answer the way `way` says.
fn script(w: &World, way: Flood) {
    for f in &w.fakes {
        match way {
            Flood::Normal => {}
            Flood::Probes(n) => {
                for (_, path) in PROBES {
                    f.set_behaviour(path, Behaviour::Huge(n));
                }
            }
            Flood::Login(n) => f.set_behaviour(LOGIN_PATH, Behaviour::Huge(n)),
        }
    }
}

/// The verdicts of the runs, e.g. `75 alert, 5 reset` (each count the median of the runs).
fn verdicts(runs: &[&FloodRun]) -> String {
    let all: BTreeSet<&String> = runs.iter().flat_map(|r| r.burst.verdicts.keys()).collect();
    all.into_iter()
        .map(|v| {
            let counts: Vec<f64> = runs
                .iter()
                .map(|r| r.burst.verdicts.get(v).copied().unwrap_or(0) as f64)
                .collect();
            format!("{:.0} {v}", median(&counts))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ways side by side, as a Markdown table.
pub fn print_table(tenants: usize, runs: &[FloodRuns]) {
    let ways = ways();
    let col = |k: usize| -> Vec<&FloodRun> { runs.iter().map(|r| &r[k]).collect() };
    let figure =
        |k: usize, f: fn(&FloodRun) -> f64| -> Vec<f64> { col(k).into_iter().map(f).collect() };
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    // One cell per way: the median and the range of the runs.
    let cells = |f: fn(&FloodRun) -> f64, unit: &str| -> String {
        (0..ways.len())
            .map(|k| {
                let v = figure(k, f);
                format!("{:.1}{unit} [{}]", median(&v), range(&v))
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let hwm = |r: &FloodRun| r.burst.hwm as f64 / MIB as f64;
    let normal_hwm = median(&figure(0, hwm));
    let flood_hwm: Vec<f64> = (1..ways.len()).map(|k| median(&figure(k, hwm))).collect();
    let worst = flood_hwm.iter().copied().fold(0.0, f64::max);
    let never_healthy = (1..ways.len()).all(|k| {
        col(k)
            .iter()
            .all(|r| !r.burst.verdicts.contains_key("healthy"))
    });
    println!();
    println!(
        "{tenants} checks at once, 0 ms per request, each way on a fresh process after one \
         healthy warm-up check; keepalive reads an answer to at most 256 KiB and makes 3 \
         attempts 5 s apart, so a flooded check takes about 10 s ({} run(s), median [range]):",
        runs.len()
    );
    println!();
    let head: Vec<String> = ways.iter().map(|w| title(*w)).collect();
    println!("| measure | {} | target (floods) | met |", head.join(" | "));
    println!("|---|---|---|---|---|---|");
    println!("| wall | {} | — | — |", cells(|r| r.burst.wall, " ms"));
    let verdict_cells: Vec<String> = (0..ways.len()).map(|k| verdicts(&col(k))).collect();
    println!(
        "| verdicts | {} | down: `reset` or `alert` (brake), never `healthy` | {} |",
        verdict_cells.join(" | "),
        yes(never_healthy)
    );
    println!(
        "| resets issued (Compute fake) | {} | — | — |",
        cells(|r| r.resets as f64, "")
    );
    println!(
        "| peak RSS (VmHWM) | {} | < {TARGET_MIB:.0} MiB | {} |",
        cells(hwm, " MiB"),
        yes(worst < TARGET_MIB)
    );
    let over: Vec<String> = std::iter::once("—".to_string())
        .chain(
            flood_hwm
                .iter()
                .map(|h| format!("{:+.1} MiB", h - normal_hwm)),
        )
        .collect();
    println!(
        "| peak RSS − normal answers | {} | within {TARGET_OVER_MIB:.0} MiB | {} |",
        over.join(" | "),
        yes(worst - normal_hwm < TARGET_OVER_MIB)
    );
    println!(
        "| CPU of keepalive | {} | — | — |",
        cells(|r| r.burst.cpu, " ms")
    );
    println!();
    let (probe_mib, login_mib) = match (ways[1], ways[2]) {
        (Flood::Probes(p), Flood::Login(l)) => (p / MIB, l / MIB),
        _ => (0, 0),
    };
    println!(
        "Read whole, one attempt's answers would be {tenants} × 7 × {probe_mib} MiB and \
         {tenants} × {login_mib} MiB; read to the cap, at most {tenants} × 7 × 256 KiB = {:.0} \
         MiB even if every capped read were held at once.",
        (tenants * 7 * 256) as f64 / 1024.0
    );
}
