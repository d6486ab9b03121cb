//! `bench`: how fast and how small the real `keepalive serve` is, against the WhatsApp fake.
//!
//! Measures, on this machine, with the fakes of `tests/` on 127.0.0.1:
//!
//! 1. one healthy check's latency (a Pub/Sub push POST answered 200) with 0 ms and 50 ms of
//!    latency per request at the fake, next to the floor the protocol sets: the login round
//!    trip plus one round of the seven probes at once, measured with a bare HTTP client
//!    against the same fake (2 × latency plus loopback costs);
//! 2. time from spawning the process to accepting connections, and to the first check
//!    answered;
//! 3. a burst of tenants (distinct `vm`s) posted at once to one fresh process, as many as the
//!    provisioner's Cloud Run concurrency (80): wall time, peak RSS (`VmHWM`), CPU;
//! 4. CPU time per check: `utime + stime` of the process over N sequential checks;
//! 5. Cloud API numbers on the Graph fake (`fleet.rs`): 1,000 numbers in 50 WABAs as one fleet
//!    message next to 1,000 single-number messages, 100 ms per Graph HTTP request;
//! 6. the flood (`flood.rs`): the burst at 0 ms while every
//!    probe answers 10 MiB, and while the login answers 64 MiB, next to normal answers: the
//!    256 KiB answer cap holding memory; wall, verdicts, resets issued, peak RSS, CPU.
//!
//! The world (fakes, messages, the floor) is `world.rs`; the burst is `burst.rs`.
//!
//! Every figure is the median of `BENCH_RUNS` runs. Prints a Markdown table.
//!
//! ```sh
//! cargo build --release -p keepalive
//! KEEPALIVE_BIN=target/release/keepalive cargo run --release -p keepalive-tests --bin bench
//! ```
//!
//! Settings (environment): `KEEPALIVE_BIN` (default: built with this binary's profile),
//! `BENCH_RUNS` (5), `BENCH_SAMPLES` checks per latency run (40), `BENCH_TENANTS` (80),
//! `BENCH_FAKES` WhatsApp fakes the tenants are spread over (one per tenant, as in production,
//! where every tenant is a host of its own), `BENCH_PIN` (1: keepalive on the first CPU, the
//! fakes and the load client on the others, `tests/src/cpus.rs`; 0: all share every CPU),
//! `BENCH_CPU_CHECKS` (2000),
//! `BENCH_STARTS` process starts per run (10), `BENCH_LATENCY_MS` the second latency (50),
//! `BENCH_GOOGLE_TLS` (0; 1: Compute Engine and Secret Manager over HTTPS, `tests/src/tls_front.rs`).
//! `BENCH_PHASES` (`latency,start,burst,flood,fleet`: which to run),
//! `FLEET_NUMBERS` (1000), `FLEET_WABAS` (50), `BENCH_GRAPH_LATENCY_MS` (100), `FLOOD_MIB`
//! (10), `FLOOD_LOGIN_MIB` (64). `RUST_LOG`, `MALLOC_ARENA_MAX`, `MALLOC_TRIM_THRESHOLD_` and `TOKIO_WORKER_THREADS` are
//! passed on to keepalive when set (for experiments); otherwise it runs with its defaults.

mod burst;
mod fleet;
mod flood;
mod world;

use burst::{burst_run, BurstRun};
use keepalive_tests::binaries::{free_port, keepalive_bin, Served};
use keepalive_tests::cpus::CpuSplit;
use keepalive_tests::measure::{
    cpu_model, cpu_time, env_or, loadavg, median, ms, nofile_limit, percentile, post_once, range,
    status_kb,
};
use keepalive_tests::FAKE_PROJECT;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use world::{floor_once, World};

struct Opts {
    runs: usize,
    samples: usize,
    tenants: usize,
    fakes: usize,
    cpu_checks: usize,
    starts: usize,
    latency: Duration,
    phases: String,
    fleet_numbers: usize,
    fleet_wabas: usize,
    graph_latency: Duration,
}

const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// The measurements.

struct LatencyRun {
    keepalive: Vec<f64>,
    floor: Vec<f64>,
}

/// Where keepalive and the harness ran, for the report.
fn placement(cpus: Option<&CpuSplit>, fakes: usize) -> String {
    let where_ = match cpus {
        Some(c) => format!(
            "keepalive on {} (one CPU, as the provisioner deploys it: `cpu: 1`), the fakes and the \
             load client on {} (`BENCH_PIN=0`: all on every CPU)",
            CpuSplit::describe(&c.keepalive),
            CpuSplit::describe(&c.harness)
        ),
        None => "keepalive, the fakes and the load client share every CPU".to_string(),
    };
    format!("{where_}; {fakes} WhatsApp fake(s), the tenants spread over them.")
}

/// Sequential checks at `latency`, then the same number of floor exchanges.
async fn latency_run(w: &World, s: &Served, latency: Duration, samples: usize) -> LatencyRun {
    w.set_latency(latency);
    let url = s.url();
    for _ in 0..3 {
        w.check(&url, w.message(0)).await;
    }
    let mut keepalive = Vec::with_capacity(samples);
    for _ in 0..samples {
        keepalive.push(ms(w.check(&url, w.message(0)).await));
    }
    let bare = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(8)
        .build()
        .unwrap();
    let base = w.fakes[0].url();
    for _ in 0..3 {
        floor_once(&bare, &base).await;
    }
    let mut floor = Vec::with_capacity(samples);
    for _ in 0..samples {
        floor.push(ms(floor_once(&bare, &base).await));
    }
    w.clear();
    LatencyRun { keepalive, floor }
}

/// Spawns `keepalive serve`; answers (spawn → accepting, spawn → first check answered).
/// Blocking, with a bare HTTP/1.1 exchange on the first connection that is accepted.
fn start_once(
    env: &BTreeMap<String, String>,
    message: &[u8],
    cpus: Option<&CpuSplit>,
) -> (Duration, Duration) {
    let port = free_port();
    let mut cmd = Command::new(keepalive_bin());
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(cpus) = cpus {
        cpus.pin_child(&mut cmd);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn keepalive");
    let until = started + Duration::from_secs(10);
    let stream = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(
            Instant::now() < until,
            "keepalive did not listen within 10 s"
        );
        std::thread::sleep(Duration::from_micros(100));
    };
    let ready = started.elapsed();
    // The check is posted on that first connection.
    let text = post_once(stream, port, "/", message);
    let first = started.elapsed();
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("\"healthy\""),
        "first check: {text}"
    );
    let _ = child.kill();
    let _ = child.wait();
    (ready, first)
}

/// CPU time (`utime + stime`) of the process over `n` sequential checks at 0 ms latency.
async fn cpu_run(w: &World, s: &Served, n: usize) -> (f64, f64) {
    w.set_latency(Duration::ZERO);
    let url = s.url();
    for _ in 0..20 {
        w.check(&url, w.message(0)).await;
    }
    let before = cpu_time(s.pid());
    let started = Instant::now();
    for i in 0..n {
        w.check(&url, w.message(i % 50)).await;
        if i % 500 == 499 {
            w.clear();
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_time(s.pid()).saturating_sub(before);
    w.clear();
    (
        cpu.as_secs_f64() * 1e6 / n as f64,
        wall.as_secs_f64() * 1e6 / n as f64,
    )
}

fn main() {
    // Before any thread starts: the harness's threads (the load client's runtime here, the
    // fakes' runtime, started later) inherit the harness's CPUs.
    let cpus = if env_or("BENCH_PIN", 1u8) == 1 {
        CpuSplit::detect()
    } else {
        None
    };
    if let Some(c) = &cpus {
        if let Err(e) = c.pin_harness() {
            panic!(
                "cannot pin the harness to {}: {e} (BENCH_PIN=0 runs unpinned)",
                CpuSplit::describe(&c.harness)
            );
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench(cpus));
}

async fn bench(cpus: Option<CpuSplit>) {
    let tenants = env_or("BENCH_TENANTS", 80usize).max(1);
    let opts = Opts {
        runs: env_or("BENCH_RUNS", 5usize).max(1),
        samples: env_or("BENCH_SAMPLES", 40usize).max(1),
        tenants,
        // One WhatsApp fake per tenant: in production every tenant is a host of its own, and
        // no connection of one tenant's check can serve another's.
        fakes: env_or("BENCH_FAKES", tenants).max(1),
        cpu_checks: env_or("BENCH_CPU_CHECKS", 2000usize).max(1),
        starts: env_or("BENCH_STARTS", 10usize).max(1),
        latency: Duration::from_millis(env_or("BENCH_LATENCY_MS", 50u64)),
        phases: std::env::var("BENCH_PHASES")
            .unwrap_or_else(|_| "latency,start,burst,flood,fleet".into()),
        fleet_numbers: env_or("FLEET_NUMBERS", 1000usize).max(1),
        fleet_wabas: env_or("FLEET_WABAS", 50usize).max(1),
        graph_latency: Duration::from_millis(env_or("BENCH_GRAPH_LATENCY_MS", 100u64)),
    };
    let phase = |p: &str| opts.phases.split(',').any(|x| x.trim() == p);
    let bin = keepalive_bin();
    let bin_size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    let load_before = loadavg();
    eprintln!(
        "bench: {} ({:.1} MB), {} run(s); load {load_before}",
        bin.display(),
        bin_size as f64 / 1e6,
        opts.runs
    );
    let w = World::new(opts.fakes, cpus.clone()).await;
    // The tenants' VMs (keepalive reads a tenant's instance on every check).
    w.add_vms(FAKE_PROJECT, opts.tenants.max(50));
    let lat = opts.latency;

    let mut lat0 = (Vec::new(), Vec::new(), Vec::new());
    let mut lat50 = (Vec::new(), Vec::new(), Vec::new());
    let mut ready = Vec::new();
    let mut first = Vec::new();
    let mut bursts: Vec<BurstRun> = Vec::new();
    let mut bursts0: Vec<BurstRun> = Vec::new();
    let mut cpu = Vec::new();
    let mut cpu_wall = Vec::new();
    let mut idle_rss = Vec::new();
    let mut fleets: Vec<(fleet::FleetRun, fleet::FleetRun)> = Vec::new();
    let mut floods: Vec<flood::FloodRuns> = Vec::new();
    let fleet_world = if phase("fleet") {
        Some(
            fleet::FleetWorld::new(
                opts.fleet_numbers,
                opts.fleet_wabas,
                opts.graph_latency,
                cpus.clone(),
            )
            .await,
        )
    } else {
        None
    };

    for run in 1..=opts.runs {
        // 1. Latency, and CPU per check, on one process.
        if phase("latency") {
            let s = w.serve(&w.env);
            idle_rss.push(status_kb(s.pid(), "VmRSS") as f64 / 1e6);
            for (latency, into) in [(Duration::ZERO, &mut lat0), (lat, &mut lat50)] {
                let r = latency_run(&w, &s, latency, opts.samples).await;
                let (k, f) = (median(&r.keepalive), median(&r.floor));
                eprintln!(
                "run {run}: {} ms/request: check median {k:.2} ms (p90 {:.2}), floor {f:.2} ms, ×{:.3}",
                latency.as_millis(),
                percentile(&r.keepalive, 0.9),
                k / f
            );
                into.0.push(k);
                into.1.push(f);
                into.2.push(percentile(&r.keepalive, 0.9));
            }
            let (c, cw) = cpu_run(&w, &s, opts.cpu_checks).await;
            eprintln!(
                "run {run}: CPU {c:.0} µs per check over {} checks (wall {cw:.0} µs each; pid {})",
                opts.cpu_checks,
                s.pid()
            );
            cpu.push(c);
            cpu_wall.push(cw);
            drop(s);
        }

        // 2. Start-up.
        if phase("start") {
            w.set_latency(Duration::ZERO);
            let env = w.env.clone();
            let pin = w.cpus.clone();
            let msg = w.message(0);
            let starts = opts.starts;
            let (r, f) = tokio::task::spawn_blocking(move || {
                let mut r = Vec::new();
                let mut f = Vec::new();
                for _ in 0..starts {
                    let (a, b) = start_once(&env, &msg, pin.as_ref());
                    r.push(ms(a));
                    f.push(ms(b));
                }
                (r, f)
            })
            .await
            .unwrap();
            eprintln!(
                "run {run}: ready {:.2} ms, first check {:.2} ms (medians of {starts})",
                median(&r),
                median(&f)
            );
            ready.push(median(&r));
            first.push(median(&f));
        }

        // 3. The burst, at the second latency and at 0 ms, each on a fresh process.
        for (latency, into) in [(lat, &mut bursts), (Duration::ZERO, &mut bursts0)] {
            if !phase("burst") {
                break;
            }
            let b = burst_run(&w, latency, opts.tenants).await;
            eprintln!(
                "run {run}: {} tenants at {} ms/request: {:.1} ms wall, peak RSS {:.1} MB \
                 (before {:.1}, after {:.1}), CPU {:.0} ms (fakes and client: {:.0} ms), \
                 listen drops {} (pid {})",
                opts.tenants,
                latency.as_millis(),
                b.wall,
                b.hwm as f64 / 1e6,
                b.rss_before as f64 / 1e6,
                b.rss_after as f64 / 1e6,
                b.cpu,
                b.harness_cpu,
                b.drops,
                b.pid
            );
            into.push(b);
        }

        // 6. The flood: oversized answers next to normal ones, each on a fresh process.
        if phase("flood") {
            floods.push(flood::run(&w, opts.tenants, run).await);
        }

        // 5. Cloud API numbers: one fleet message, then one message per number.
        if let Some(fw) = &fleet_world {
            let one = fw.run(true).await;
            let many = fw.run(false).await;
            eprintln!("run {run}: fleet message {one:?}; single messages {many:?}");
            fleets.push((one, many));
        }
    }

    // The table.
    let l = lat.as_millis();
    // One check's latency: measured, or (latency phase not run) the protocol's 2 × latency.
    let one = if lat50.0.is_empty() {
        2.0 * ms(lat)
    } else {
        median(&lat50.0)
    };
    let burst_wall: Vec<f64> = bursts.iter().map(|b| b.wall).collect();
    let burst_hwm: Vec<f64> = bursts.iter().map(|b| b.hwm as f64 / MIB).collect();
    let burst_cpu: Vec<f64> = bursts.iter().map(|b| b.cpu).collect();
    let burst_harness: Vec<f64> = bursts.iter().map(|b| b.harness_cpu).collect();
    let burst0_wall: Vec<f64> = bursts0.iter().map(|b| b.wall).collect();
    let burst0_hwm: Vec<f64> = bursts0.iter().map(|b| b.hwm as f64 / MIB).collect();
    let drops: u64 = bursts.iter().chain(&bursts0).map(|b| b.drops).sum();
    let ratio50: Vec<f64> = lat50.0.iter().zip(&lat50.1).map(|(k, f)| k / f).collect();
    let ratio0: Vec<f64> = lat0.0.iter().zip(&lat0.1).map(|(k, f)| k / f).collect();
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    let burst_ratio = median(&burst_wall) / one;

    if phase("latency") || phase("start") || phase("burst") {
        println!();
        println!(
            "keepalive `serve` ({}, {:.1} MB) on {}; load average before {load_before}, after {}; \
             open files limit {}; {} run(s), each figure the median of the runs (range in brackets).",
            bin.display(),
            bin_size as f64 / 1e6,
            cpu_model(),
            loadavg(),
            nofile_limit(),
            opts.runs
        );
        println!();
        println!("{}", placement(cpus.as_ref(), opts.fakes));
        println!(
            "Google's APIs (Compute Engine, Secret Manager): {}.",
            if w.google_fronts.is_empty() {
                "plain HTTP (`BENCH_GOOGLE_TLS=1`: over HTTPS, as in production)"
            } else {
                "over HTTPS through TLS fronts on the harness's CPU, as in production"
            }
        );
        println!();
        println!("| measure | figure | target | met |");
        println!("|---|---|---|---|");
        if phase("latency") {
            println!(
            "| one check, 0 ms per request (median of {} sequential) | {:.2} ms, p90 {:.2} ms [{}]; floor {:.2} ms; ×{:.2} the floor | — | — |",
            opts.samples,
            median(&lat0.0),
            median(&lat0.2),
            range(&lat0.0),
            median(&lat0.1),
            median(&ratio0)
        );
            println!(
            "| one check, {l} ms per request | {:.2} ms, p90 {:.2} ms [{}]; floor {:.2} ms (2 × {l} ms = {} ms); **×{:.3} the floor** [{}] | within 5% of the floor | {} |",
            one,
            median(&lat50.2),
            range(&lat50.0),
            median(&lat50.1),
            2 * l,
            median(&ratio50),
            range(&ratio50),
            yes(median(&ratio50) <= 1.05)
        );
        }
        if phase("start") {
            println!(
            "| spawn → accepting connections (median of {} starts per run) | {:.2} ms [{}] | < 50 ms | {} |",
            opts.starts,
            median(&ready),
            range(&ready),
            yes(median(&ready) < 50.0)
        );
            println!(
                "| spawn → first check answered (0 ms per request) | {:.2} ms [{}] | — | — |",
                median(&first),
                range(&first)
            );
        }
        if phase("burst") {
            println!(
            "| {} tenants at once, {l} ms per request: wall | {:.0} ms [{}] = **×{:.2}** one check | ≤ 1.5 × one check | {} |",
            opts.tenants,
            median(&burst_wall),
            range(&burst_wall),
            burst_ratio,
            yes(burst_ratio <= 1.5)
        );
            println!(
            "| {} tenants at once, {l} ms per request: peak RSS (VmHWM) | {:.1} MiB [{}] | < 32 MiB | {} |",
            opts.tenants,
            median(&burst_hwm),
            range(&burst_hwm),
            yes(median(&burst_hwm) < 32.0)
        );
            println!(
            "| {} tenants at once, {l} ms per request: CPU of keepalive; of the fakes and client | {:.0} ms [{}] = {:.2} ms per check; {:.0} ms [{}] | — | — |",
            opts.tenants,
            median(&burst_cpu),
            range(&burst_cpu),
            median(&burst_cpu) / opts.tenants as f64,
            median(&burst_harness),
            range(&burst_harness)
        );
            println!(
            "| {} tenants at once, 0 ms per request: wall, peak RSS | {:.0} ms [{}], {:.1} MiB [{}] | — | — |",
            opts.tenants,
            median(&burst0_wall),
            range(&burst0_wall),
            median(&burst0_hwm),
            range(&burst0_hwm)
        );
        }
        if phase("latency") {
            println!(
            "| CPU per check (utime+stime over {} sequential checks, 0 ms) | {:.0} µs [{}]; wall {:.0} µs per check | — | — |",
            opts.cpu_checks,
            median(&cpu),
            range(&cpu),
            median(&cpu_wall)
        );
            println!(
                "| idle process RSS after start | {:.1} MB [{}] | — | — |",
                median(&idle_rss),
                range(&idle_rss)
            );
        }
        if phase("burst") {
            println!();
            println!("Listen-queue drops during the bursts (TcpExt ListenDrops): {drops}.");
        }
    }
    if !floods.is_empty() {
        flood::print_table(opts.tenants, &floods);
    }
    if !fleets.is_empty() {
        fleet::print_table(
            opts.fleet_numbers,
            opts.fleet_wabas,
            opts.graph_latency,
            &fleets,
        );
    }
}
