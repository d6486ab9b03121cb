//! The soak run: workers with a WhatsApp fake and a VM each, one `keepalive serve`, every
//! answer compared with the expected verdict, resets counted, VmRSS sampled, a clean SIGTERM.

use crate::scenario::*;
use crate::{env_usize, ATTEMPTS, PASSWORD, TIMEOUT_MS, USER};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::Served;
use keepalive_tests::measure::status_kb;
use keepalive_tests::{FakeWhatsApp, GoogleFakes, Health, FAKE_PROJECT};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

pub struct Worker {
    pub wa: FakeWhatsApp,
    pub vm: String,
    pub zone: String,
    pub payload: Value,
}

#[derive(Default)]
pub struct Tally {
    /// (scenario kind, verdict) -> count
    pub outcomes: BTreeMap<(&'static str, String), usize>,
    pub resets: usize,
    pub mismatches: Vec<String>,
    /// Milliseconds per check.
    pub durations: Vec<f64>,
}

pub fn vm_rss(pid: u32) -> u64 {
    status_kb(pid, "VmRSS")
}

pub fn vm_hwm(pid: u32) -> u64 {
    status_kb(pid, "VmHWM")
}

pub fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// Runs `checks` checks and asserts. `max_growth`: how much RSS may grow from the end of the
/// warm-up (the first tenth) to the end, in bytes; `None` only reports.
pub async fn soak(checks: usize, max_growth: Option<u64>) {
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
