//! Soak: many checks with random faults injected by the fakes, through one `keepalive serve`
//! process. Every answer is compared with the outcome the contract gives for the fault that
//! was injected, the resets Compute Engine saw are counted, the process's memory (VmRSS) is
//! sampled, and at the end it must stop cleanly on SIGTERM with no panic in its logs.
//!
//! ```sh
//! cargo test -p keepalive-tests --test soak                 # CI: 500 checks (debug build)
//! # the full run (docs/benchmarks.md): 20,000 checks on a release build
//! cargo build --release -p keepalive
//! KEEPALIVE_BIN=target/release/keepalive cargo test --release -p keepalive-tests \
//!     --test soak soak_full -- --ignored --nocapture
//! ```
//!
//! Settings: `SOAK_CHECKS` (500 for `soak_short`, 20,000 for `soak_full`), `SOAK_WORKERS`
//! (16), `SOAK_SEED` (random; printed, and a failure replays with it). `MALLOC_ARENA_MAX`,
//! `MALLOC_TRIM_THRESHOLD_` and `TOKIO_WORKER_THREADS` are passed on to keepalive when set.
//!
//! Timings (what keepalive is given): 200 ms per WhatsApp request, 2 attempts, 10 ms apart,
//! boot grace 0. Grace 0 makes the expected outcome exact: a client down on both attempts is
//! always reset (or skipped when the VM is not RUNNING), so every down check goes the whole
//! way (read the VM, read its reset operations, reset, wait), the path that does the most.
//! The grace window has its own scenario tests.
//!
//! Each worker owns one WhatsApp fake and one VM and runs its checks one after another, so the
//! faults it scripts reach only its own check; the expected outcome is worked out by playing
//! the contract's check (login, then the seven probes at once, `KEEPALIVE_ATTEMPTS` times)
//! against the scripted answers. Faults of the shared Google fakes (one 503 on a Compute or
//! Secret Manager call, retried by keepalive) may be taken by any worker's check; they change
//! no outcome.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::Served;
use keepalive_tests::measure::status_kb;
use keepalive_tests::whatsapp::{HEALTH_PATH, LOGIN_PATH, PROBES};
use keepalive_tests::{Behaviour, ComputeRoute, FakeWhatsApp, GoogleFakes, Health, FAKE_PROJECT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const USER: &str = "admin";
const PASSWORD: &str = "Soak-Passw0rd!-never-logged";
const TIMEOUT_MS: u64 = 200;
const ATTEMPTS: usize = 2;

/// The eight paths of one attempt: the login, then the probes.
fn paths() -> Vec<&'static str> {
    let mut v = vec![LOGIN_PATH];
    v.extend(PROBES.iter().map(|(_, p)| *p));
    v
}

/// What one check is up against.
#[derive(Debug, Clone)]
struct Scenario {
    /// A name for the report.
    kind: &'static str,
    /// Answers for the next requests to a path (`fail_next`), in order.
    queued: Vec<(&'static str, Behaviour)>,
    /// How every request to a path is answered for the whole check (`set_behaviour`).
    persistent: Option<(&'static str, Behaviour)>,
    health: Health,
    /// The fake is stopped: connections are refused.
    refused: bool,
    vm_status: &'static str,
    /// One 503 from a Compute Engine route (retried by keepalive).
    compute_blip: Option<ComputeRoute>,
    /// One 503 from Secret Manager (retried by keepalive).
    secret_blip: bool,
}

fn failure(rng: &mut StdRng) -> Behaviour {
    match rng.random_range(0..8) {
        0 => Behaviour::Hang,
        1 => Behaviour::BadJson,
        2 => Behaviour::Close,
        3 => Behaviour::Status(500),
        4 => Behaviour::Status(502),
        5 => Behaviour::Status(503),
        6 => Behaviour::Status(429),
        _ => Behaviour::Status([401, 403, 404][rng.random_range(0..3)]),
    }
}

fn scenario(rng: &mut StdRng) -> Scenario {
    let paths = paths();
    let mut s = Scenario {
        kind: "clean",
        queued: Vec::new(),
        persistent: None,
        health: Health::Single("connected"),
        refused: false,
        vm_status: "RUNNING",
        compute_blip: None,
        secret_blip: false,
    };
    let pick = |rng: &mut StdRng| paths[rng.random_range(0..paths.len())];
    match rng.random_range(0..100) {
        0..25 => {}
        25..40 => {
            s.kind = "blip";
            let p = pick(rng);
            s.queued.push((p, failure(rng)));
        }
        40..50 => {
            // Two one-off failures: down when the second lands on the second attempt.
            s.kind = "two blips";
            for _ in 0..2 {
                let p = pick(rng);
                s.queued.push((p, failure(rng)));
            }
        }
        50..65 => {
            s.kind = "down";
            let p = pick(rng);
            s.persistent = Some((p, failure(rng)));
        }
        65..70 => {
            s.kind = "slow";
            let p = pick(rng);
            let ms = rng.random_range(1..=TIMEOUT_MS / 2);
            s.persistent = Some((p, Behaviour::Delay(Duration::from_millis(ms))));
        }
        70..85 => {
            s.kind = "health";
            s.health = match rng.random_range(0..7) {
                0 => Health::Single("disconnected"),
                1 => Health::Single("uninitialized"),
                2 => Health::Single("unregistered"),
                3 => Health::Single("connecting"),
                4 => Health::Nodes(vec![
                    ("master1:web", "disconnected", "primary_master"),
                    ("coreapp1:core", "connected", "coreapp"),
                ]),
                5 => Health::Nodes(vec![
                    ("master1:web", "disconnected", "primary_master"),
                    ("coreapp1:core", "disconnected", "coreapp"),
                ]),
                _ => Health::Nodes(vec![
                    ("master1:web", "connected", "primary_master"),
                    ("coreapp1:core", "unregistered", "coreapp"),
                ]),
            };
        }
        85..92 => {
            s.kind = "refused";
            s.refused = true;
        }
        _ => {
            s.kind = "not running";
            s.vm_status = ["TERMINATED", "STOPPING", "SUSPENDED"][rng.random_range(0..3)];
            if rng.random_bool(0.5) {
                s.refused = true;
            } else {
                let p = pick(rng);
                s.persistent = Some((p, failure(rng)));
            }
        }
    }
    if rng.random_range(0..100) < 2 {
        s.compute_blip = Some(
            [
                ComputeRoute::GetInstance,
                ComputeRoute::ListOperations,
                ComputeRoute::Reset,
                ComputeRoute::WaitOperation,
            ][rng.random_range(0..4)],
        );
    }
    s.secret_blip = rng.random_range(0..100) < 2;
    s
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ClientHealth {
    Up,
    Down,
    Unregistered,
}

fn client_health(h: &Health) -> ClientHealth {
    let good = |s: &str| matches!(s, "connected" | "connecting");
    match h {
        Health::Single("unregistered") => ClientHealth::Unregistered,
        Health::Single(s) if good(s) => ClientHealth::Up,
        Health::Single(_) => ClientHealth::Down,
        Health::Nodes(nodes) => {
            if nodes.iter().any(|(_, s, _)| *s == "unregistered") {
                ClientHealth::Unregistered
            } else if nodes.iter().any(|(_, s, r)| *r == "coreapp" && good(s)) {
                ClientHealth::Up
            } else {
                ClientHealth::Down
            }
        }
        Health::Raw(_) => ClientHealth::Down,
    }
}

fn fails(b: &Behaviour) -> bool {
    match b {
        Behaviour::Normal => false,
        Behaviour::Delay(d) => *d >= Duration::from_millis(TIMEOUT_MS),
        Behaviour::Status(s) | Behaviour::Json(s, _) => !(200..300).contains(s),
        Behaviour::Hang
        | Behaviour::BadJson
        | Behaviour::Close
        | Behaviour::Redirect(_)
        | Behaviour::Huge(_) => true,
    }
}

/// The verdict the contract gives: the check played against the scripted answers.
fn expected(s: &Scenario) -> &'static str {
    let mut client = ClientHealth::Down;
    if !s.refused {
        let mut queues: BTreeMap<&str, VecDeque<Behaviour>> = BTreeMap::new();
        for (p, b) in &s.queued {
            queues.entry(p).or_default().push_back(b.clone());
        }
        let mut answer = |path: &str| -> Behaviour {
            if let Some(b) = queues.get_mut(path).and_then(VecDeque::pop_front) {
                return b;
            }
            match &s.persistent {
                Some((p, b)) if *p == path => b.clone(),
                _ => Behaviour::Normal,
            }
        };
        let health = client_health(&s.health);
        for _ in 0..ATTEMPTS {
            let login = answer(LOGIN_PATH);
            // Refused credentials end the check at once: a person must fix them.
            if matches!(login, Behaviour::Status(401 | 403) | Behaviour::Redirect(_)) {
                return "alert";
            }
            if fails(&login) {
                continue;
            }
            // All seven probes are sent; each takes its own scripted answer.
            let mut any_failed = false;
            let mut health_answered = false;
            for (_, p) in PROBES {
                let failed = fails(&answer(p));
                any_failed |= failed;
                if p == HEALTH_PATH && !failed {
                    health_answered = true;
                }
            }
            if health_answered && health == ClientHealth::Unregistered {
                // A person must act, whatever else failed.
                client = ClientHealth::Unregistered;
                break;
            }
            if !any_failed && health == ClientHealth::Up {
                client = ClientHealth::Up;
                break;
            }
        }
    }
    match client {
        ClientHealth::Up => "healthy",
        ClientHealth::Unregistered => "alert",
        ClientHealth::Down if s.vm_status != "RUNNING" => "skipped",
        ClientHealth::Down => "reset",
    }
}

struct Worker {
    wa: FakeWhatsApp,
    vm: String,
    zone: String,
    payload: Value,
}

#[derive(Default)]
struct Tally {
    /// (scenario kind, verdict) -> count
    outcomes: BTreeMap<(&'static str, String), usize>,
    resets: usize,
    mismatches: Vec<String>,
    /// Milliseconds per check.
    durations: Vec<f64>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn vm_rss(pid: u32) -> u64 {
    status_kb(pid, "VmRSS")
}

fn vm_hwm(pid: u32) -> u64 {
    status_kb(pid, "VmHWM")
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// Runs `checks` checks and asserts. `max_growth`: how much RSS may grow from the end of the
/// warm-up (the first tenth) to the end, in bytes; `None` only reports.
async fn soak(checks: usize, max_growth: Option<u64>) {
    let workers_n = env_usize("SOAK_WORKERS", 16).max(1);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("soak: {checks} checks, {workers_n} workers, SOAK_SEED={seed}");

    let g = GoogleFakes::start().await;
    let mut workers = Vec::new();
    for i in 0..workers_n {
        let wa = FakeWhatsApp::start(USER, PASSWORD).await;
        let vm = format!("whatsapp-soak-{i:03}");
        // A zone per worker: the Compute fake lists a zone's operations by walking all of
        // them, and 20,000 checks leave thousands of resets behind.
        let zone = format!("europe-soak{i}-c");
        g.compute.add_instance(
            FAKE_PROJECT,
            &zone,
            &vm,
            "RUNNING",
            OffsetDateTime::now_utc() - time::Duration::days(1),
        );
        let mut payload = json!({
            "whatsAppHostname": wa.host_port(),
            "whatsAppUsername": USER,
            "vm": vm,
            "zone": zone,
            "project": FAKE_PROJECT,
        });
        // Half the tenants keep their password in Secret Manager (it goes only to one of
        // the VM's addresses: the fake's).
        if i % 2 == 0 {
            g.compute.set_nat_ip(FAKE_PROJECT, &zone, &vm, "127.0.0.1");
            let version = g.secrets.put(
                &format!("projects/{FAKE_PROJECT}/secrets/wa-soak-{i:03}"),
                PASSWORD,
            );
            payload["whatsAppPasswordSecret"] = json!(version);
        } else {
            payload["whatsAppPassword"] = json!(PASSWORD);
        }
        workers.push(Worker {
            wa,
            vm,
            zone,
            payload,
        });
    }
    let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
    for (k, v) in [
        ("KEEPALIVE_REQUEST_TIMEOUT_MS", TIMEOUT_MS.to_string()),
        ("KEEPALIVE_ATTEMPTS", ATTEMPTS.to_string()),
        ("KEEPALIVE_RETRY_DELAY_MS", "10".into()),
        ("KEEPALIVE_BOOT_GRACE_S", "0".into()),
        ("KEEPALIVE_DEADLINE_S", "30".into()),
        // Every worker's VM is in one project and half the scenarios are down: the fleet
        // brake would hold (as it should in a real outage). The model here is per VM.
        ("KEEPALIVE_BRAKE_RESETS", "0".into()),
        ("KEEPALIVE_LOG_FORMAT", "json".into()),
        ("RUST_LOG", "info".into()),
    ] {
        env.insert(k.into(), v);
    }
    env.insert("HOME".into(), g.dir().display().to_string());
    // For experiments: glibc malloc and tokio tunables reach the process when set.
    for k in [
        "MALLOC_ARENA_MAX",
        "MALLOC_TRIM_THRESHOLD_",
        "TOKIO_WORKER_THREADS",
    ] {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.into(), v);
        }
    }
    let served = Served::start(&env);
    let url = served.url();
    let pid = served.pid();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let g = Arc::new(g);
    let done = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();

    // RSS samples: (checks done, bytes), every 100 ms.
    let samples = Arc::new(Mutex::new(vec![(0usize, vm_rss(pid))]));
    let sampler = {
        let (samples, done) = (samples.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let n = done.load(Ordering::Relaxed);
                samples.lock().unwrap().push((n, vm_rss(pid)));
                if n >= checks {
                    break;
                }
            }
        })
    };

    let mut tasks = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        let (g, done, next, tally) = (g.clone(), done.clone(), next.clone(), tally.clone());
        let (client, url) = (client.clone(), url.clone());
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
        tasks.push(tokio::spawn(async move {
            let envelope = json!({
                "message": {"data": STANDARD.encode(w.payload.to_string()), "messageId": "1"},
                "subscription": "projects/fake-project/subscriptions/soak"
            })
            .to_string();
            while next.fetch_add(1, Ordering::Relaxed) < checks {
                let s = scenario(&mut rng);
                let want = expected(&s);
                for (p, b) in &s.queued {
                    w.wa.fail_next(p, 1, b.clone());
                }
                if let Some((p, b)) = &s.persistent {
                    w.wa.set_behaviour(p, b.clone());
                }
                w.wa.set_health(s.health.clone());
                if s.vm_status != "RUNNING" {
                    g.compute
                        .set_status(FAKE_PROJECT, &w.zone, &w.vm, s.vm_status);
                }
                if let Some(route) = s.compute_blip {
                    g.compute.fail_next(route, 1, 503);
                }
                if s.secret_blip {
                    g.secrets.fail_next(1, 503);
                }
                if s.refused {
                    w.wa.stop().await;
                }

                let t0 = Instant::now();
                let resp = client
                    .post(format!("{url}/"))
                    .header("content-type", "application/json")
                    .body(envelope.clone())
                    .send()
                    .await;
                let took = t0.elapsed();
                let (status, body) = match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (status, r.text().await.unwrap_or_default())
                    }
                    Err(e) => (0, format!("no answer: {e}")),
                };
                let outcome: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let verdict = outcome["verdict"].as_str().unwrap_or("").to_string();

                // Back to normal for the next check.
                if s.refused {
                    w.wa.restart().await.expect("restart the WhatsApp fake");
                }
                w.wa.clear_behaviours();
                w.wa.set_health(Health::Single("connected"));
                w.wa.clear_requests();
                if s.vm_status != "RUNNING" {
                    g.compute
                        .set_status(FAKE_PROJECT, &w.zone, &w.vm, "RUNNING");
                }

                let mut t = tally.lock().unwrap();
                if status != 200 || verdict != want {
                    t.mismatches.push(format!(
                        "worker {i}: {s:?}\n  expected {want}, answered {status} {body}"
                    ));
                }
                if verdict == "reset" {
                    t.resets += 1;
                }
                *t.outcomes.entry((s.kind, verdict)).or_default() += 1;
                t.durations.push(took.as_secs_f64() * 1000.0);
                drop(t);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 1000 == 0 {
                    g.compute.clear_requests();
                    eprintln!(
                        "soak: {n} checks, {:.0} s, keepalive RSS {:.1} MB",
                        started.elapsed().as_secs_f64(),
                        mb(vm_rss(pid))
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a soak worker panicked");
    }
    let elapsed = started.elapsed();
    let _ = sampler.await;
    let end_rss = vm_rss(pid);
    let hwm = vm_hwm(pid);
    let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();

    let t = tally.lock().unwrap();
    let samples = samples.lock().unwrap().clone();
    let warm = (checks / 10).max(1);
    let warm_rss = samples
        .iter()
        .find(|(n, _)| *n >= warm)
        .map_or(end_rss, |(_, r)| *r);
    let after: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(n, _)| *n >= warm)
        .map(|(n, r)| (*n as f64, *r as f64))
        .collect();
    let max_after = after
        .iter()
        .map(|(_, r)| *r as u64)
        .max()
        .unwrap_or(end_rss);
    // Least-squares slope of RSS over checks after the warm-up: bytes per check.
    let slope = if after.len() > 2 {
        let n = after.len() as f64;
        let (sx, sy) = after
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (num, den) = after.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
            (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
        });
        if den > 0.0 {
            num / den
        } else {
            0.0
        }
    } else {
        0.0
    };
    let mut d = t.durations.clone();
    d.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| d[((d.len() - 1) as f64 * p).round() as usize];

    eprintln!(
        "\nsoak: {checks} checks in {:.1} s ({:.0} checks/s), {workers_n} at a time, seed {seed}",
        elapsed.as_secs_f64(),
        checks as f64 / elapsed.as_secs_f64()
    );
    eprintln!(
        "  check duration: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    eprintln!(
        "  keepalive RSS: start {:.1} MB, after warm-up ({warm} checks) {:.1} MB, end {:.1} MB, \
         max after warm-up {:.1} MB, peak (VmHWM) {:.1} MB; slope after warm-up {slope:.1} B/check",
        mb(samples[0].1),
        mb(warm_rss),
        mb(end_rss),
        mb(max_after),
        mb(hwm)
    );
    eprintln!("  outcomes by fault (fault, verdict: count):");
    for ((kind, verdict), n) in &t.outcomes {
        eprintln!("    {kind:12} {verdict:8} {n}");
    }
    eprintln!(
        "  resets answered {}, resets Compute Engine carried out {}",
        t.resets,
        g.compute.total_resets()
    );

    assert!(alive, "keepalive died during the soak");
    assert!(
        t.mismatches.is_empty(),
        "{} of {checks} outcomes not as the contract says (SOAK_SEED={seed}); first ones:\n{}",
        t.mismatches.len(),
        t.mismatches
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        t.resets,
        g.compute.total_resets(),
        "every reset answered is one reset carried out"
    );
    assert_eq!(t.durations.len(), checks);
    drop(t);
    let (code, _, logs) = served.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0), "keepalive did not stop cleanly on SIGTERM");
    assert!(
        !logs.contains("panicked"),
        "a panic in keepalive's logs:\n{}",
        logs.lines()
            .filter(|l| l.contains("panicked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!logs.contains(PASSWORD), "the password reached the logs");
    if let Some(max) = max_growth {
        assert!(
            end_rss <= warm_rss + max,
            "RSS grew from {:.1} MB after warm-up to {:.1} MB at the end",
            mb(warm_rss),
            mb(end_rss)
        );
    }
}

/// The CI version: a few hundred checks, every fault kind several times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_short() {
    soak(env_usize("SOAK_CHECKS", 500), None).await;
}

/// The full run (about a minute on a release build): 20,000 checks, RSS flat after warm-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with --ignored (docs/benchmarks.md)"]
async fn soak_full() {
    soak(env_usize("SOAK_CHECKS", 20_000), Some(8_000_000)).await;
}
