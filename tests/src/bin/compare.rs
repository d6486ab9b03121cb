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

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::future::join_all;
use keepalive_tests::binaries::{free_port, keepalive_bin, workspace_root};
use keepalive_tests::measure::{
    cpu_model, cpu_time, env_or, listen_drops, loadavg, median, ms, nofile_limit, post_once,
    range_digits, status_kb,
};
use keepalive_tests::whatsapp::Behaviour;
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Keepalive,
    Original,
}

impl Side {
    const BOTH: [Side; 2] = [Side::Keepalive, Side::Original];

    fn name(self) -> &'static str {
        match self {
            Side::Keepalive => "keepalive",
            Side::Original => "original",
        }
    }
}

/// Where the original function and its runtime are; checked before anything starts.
struct Baseline {
    /// What `BASELINE_FUNCTION` names.
    source: PathBuf,
    /// A copy of it inside `tests/baseline/`, so that its `require`s resolve to the pinned
    /// packages there (next to its own checkout, Node would find that checkout's
    /// `node_modules` first). Removed on drop.
    function: PathBuf,
    framework: PathBuf,
    redirect: PathBuf,
    /// `node v20…, functions-framework 5.0.5, @google-cloud/compute 1.2.0`
    versions: String,
}

impl Baseline {
    fn find() -> Result<Baseline, String> {
        let dir = workspace_root().join("tests/baseline");
        let source = std::env::var_os("BASELINE_FUNCTION")
            .map(PathBuf::from)
            .ok_or_else(|| {
                "BASELINE_FUNCTION is not set: point it at the original function's file \
                 (keepalive/keepalive-gcp-function.js of the runbook's repository)"
                    .to_string()
            })?;
        let text = std::fs::read(&source)
            .map_err(|e| format!("BASELINE_FUNCTION={}: {e}", source.display()))?;
        let node_modules = dir.join("node_modules");
        let framework = node_modules.join("@google-cloud/functions-framework/build/src/main.js");
        if !framework.is_file() {
            return Err(format!(
                "{} is missing: run `npm ci --prefix tests/baseline` first",
                framework.display()
            ));
        }
        let node = Command::new("node")
            .arg("--version")
            .output()
            .map_err(|e| format!("node is not on PATH: {e}"))?;
        let package_version = |name: &str| -> String {
            std::fs::read(node_modules.join(name).join("package.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into())
        };
        let versions = format!(
            "node {}, functions-framework {}, @google-cloud/compute {}",
            String::from_utf8_lossy(&node.stdout).trim(),
            package_version("@google-cloud/functions-framework"),
            package_version("@google-cloud/compute"),
        );
        let run_dir = dir.join(format!(".function-{}", std::process::id()));
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let function = run_dir.join("index.js");
        std::fs::write(&function, text).map_err(|e| format!("{}: {e}", function.display()))?;
        Ok(Baseline {
            source,
            function,
            framework,
            redirect: dir.join("redirect.cjs"),
            versions,
        })
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(dir) = self.function.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A running side: its process, its port, its log file.
struct Running {
    side: Side,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Running {
    /// Where Pub/Sub pushes: keepalive takes `/`; the Functions Framework reads the topic of
    /// a raw push from the path (and warns on every message without it).
    fn url(&self) -> String {
        match self.side {
            Side::Keepalive => format!("http://127.0.0.1:{}/", self.port),
            Side::Original => format!(
                "http://127.0.0.1:{}/projects/{FAKE_PROJECT}/topics/whatsapp-keepalive",
                self.port
            ),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    g: GoogleFakes,
    wa: FakeWhatsApp,
    baseline: Baseline,
    env: BTreeMap<String, String>,
    client: reqwest::Client,
    logs: PathBuf,
    started: usize,
}

impl World {
    async fn new(baseline: Baseline) -> World {
        let wa = FakeWhatsApp::start(USER, PASSWORD).await;
        let g = GoogleFakes::start().await;
        // The original's Compute library fixes its token URL and asks for the compute scope.
        g.token.accept_google_clients();
        let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
        env.insert("HOME".into(), g.dir().display().to_string());
        // Kept after the run, for reading what each side said.
        let logs = match std::env::var_os("COMPARE_LOGS") {
            Some(dir) => {
                // Only this run's logs count: earlier ones of the same names go.
                let dir = PathBuf::from(dir);
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if Side::BOTH
                        .iter()
                        .any(|s| name.starts_with(&format!("{}-", s.name())))
                        && name.ends_with(".log")
                    {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
                dir
            }
            None => {
                let dir = workspace_root().join("target/compare-logs");
                let _ = std::fs::remove_dir_all(&dir);
                dir
            }
        };
        std::fs::create_dir_all(&logs).expect("log directory");
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(2048)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");
        World {
            g,
            wa,
            baseline,
            env,
            client,
            logs,
            started: 0,
        }
    }

    fn command(&self, side: Side, port: u16) -> Command {
        let mut c = match side {
            Side::Keepalive => Command::new(keepalive_bin()),
            Side::Original => Command::new("node"),
        };
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .env("PORT", port.to_string())
            .stdin(Stdio::null());
        match side {
            Side::Keepalive => {
                c.arg("serve").env("KEEPALIVE_LOG_FORMAT", "json");
            }
            Side::Original => {
                c.arg("--require")
                    .arg(&self.baseline.redirect)
                    .arg(&self.baseline.framework)
                    .arg("--target=whatsAppKeepalive")
                    .arg("--signature-type=event")
                    .arg("--source")
                    .arg(&self.baseline.function)
                    .env("GOOGLE_CLOUD_PROJECT", FAKE_PROJECT)
                    .env("NODE_ENV", "production");
            }
        }
        c
    }

    /// Spawns a side; answers once it accepts connections (and the time that took).
    fn start(&mut self, side: Side) -> (Running, Duration) {
        self.started += 1;
        let log = self
            .logs
            .join(format!("{}-{:03}.log", side.name(), self.started));
        let out = std::fs::File::create(&log).expect("log file");
        let port = free_port();
        let started = Instant::now();
        let child = self
            .command(side, port)
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", side.name()));
        let mut r = Running {
            side,
            child,
            port,
            log,
        };
        let until = started + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!(
                    "{} exited with {status} before listening:\n{}",
                    side.name(),
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < until,
                "{} did not listen within 30 s",
                side.name()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let ready = started.elapsed();
        r.port = port;
        (r, ready)
    }

    /// The push envelope of tenant `i`, with `payload` fields changed or removed (null).
    fn message_with(&self, i: usize, changes: Value) -> Vec<u8> {
        let mut payload = json!({
            "whatsAppHostname": self.wa.host_port(),
            "whatsAppUsername": USER,
            "whatsAppPassword": PASSWORD,
            "vm": vm(i),
            "zone": ZONE,
            "project": FAKE_PROJECT,
        });
        if let (Some(p), Some(c)) = (payload.as_object_mut(), changes.as_object()) {
            for (k, v) in c {
                if v.is_null() {
                    p.remove(k);
                } else {
                    p.insert(k.clone(), v.clone());
                }
            }
        }
        json!({
            "message": {
                "data": STANDARD.encode(payload.to_string()),
                "messageId": format!("{}", 2_000_000 + i),
                "publishTime": "2026-11-25T10:00:00.000Z",
            },
            "subscription": "projects/fake-project/subscriptions/whatsapp-keepalive-push"
        })
        .to_string()
        .into_bytes()
    }

    fn message(&self, i: usize) -> Vec<u8> {
        self.message_with(i, json!({}))
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Answer {
        let started = Instant::now();
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match resp {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                Answer {
                    status,
                    body,
                    took: started.elapsed(),
                }
            }
            Err(e) => Answer {
                status: 0,
                body: format!("no answer: {e}"),
                took: started.elapsed(),
            },
        }
    }

    /// One healthy check; panics unless the side says so (keepalive: 200 `healthy`; the
    /// original: 2xx and no reset).
    async fn healthy(&self, r: &Running, body: Vec<u8>) -> Duration {
        let a = self.post(&r.url(), body).await;
        let ok = match r.side {
            Side::Keepalive => {
                a.status == 200
                    && serde_json::from_str::<Value>(&a.body).unwrap_or(Value::Null)["verdict"]
                        == "healthy"
            }
            Side::Original => (200..300).contains(&a.status),
        };
        assert!(
            ok,
            "{}: a healthy check answered {} {}",
            r.side.name(),
            a.status,
            a.body
        );
        a.took
    }

    /// Resets so far; a healthy check must never have caused one.
    fn assert_no_resets(&self, what: &str) {
        let n = self.g.compute.total_resets();
        assert_eq!(n, 0, "{what}: {n} reset(s) of a healthy VM");
    }
}

struct Answer {
    status: u16,
    body: String,
    took: Duration,
}

fn vm(i: usize) -> String {
    format!("whatsapp-cmp-{i:05}")
}

// ---------------------------------------------------------------------------------------------
// Performance.

#[derive(Default)]
struct Perf {
    check0: Vec<f64>,
    check: Vec<f64>,
    ready: Vec<f64>,
    first: Vec<f64>,
    burst_wall: Vec<f64>,
    burst_hwm: Vec<f64>,
    burst_cpu: Vec<f64>,
    burst_drops: Vec<f64>,
    cpu_per_check: Vec<f64>,
    idle_rss: Vec<f64>,
}

async fn sequential(w: &World, r: &Running, n: usize) -> Vec<f64> {
    for _ in 0..3 {
        w.healthy(r, w.message(0)).await;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(ms(w.healthy(r, w.message(0)).await));
    }
    v
}

/// Spawn → accepting, spawn → first check answered (a bare HTTP/1.1 exchange).
fn start_and_first(w: &mut World, side: Side) -> (Duration, Duration) {
    let body = w.message(0);
    let started = Instant::now();
    let (r, ready) = w.start(side);
    let path = r
        .url()
        .split_off(format!("http://127.0.0.1:{}", r.port).len());
    let stream = TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
    let text = post_once(stream, r.port, &path, &body);
    let first = started.elapsed();
    assert!(
        text.starts_with("HTTP/1.1 2"),
        "{}: first check answered {text}",
        side.name()
    );
    (ready, first)
}

async fn perf_run(w: &mut World, side: Side, o: &Opts, p: &mut Perf) {
    // The tenants' VMs (keepalive reads a tenant's instance on every check).
    let earlier = OffsetDateTime::now_utc() - time::Duration::days(1);
    for i in 0..o.tenants.max(50) {
        w.g.compute
            .add_instance(FAKE_PROJECT, ZONE, &vm(i), "RUNNING", earlier);
    }
    // Latency and CPU per check, on one process.
    let (r, _) = w.start(side);
    p.idle_rss.push(status_kb(r.pid(), "VmRSS") as f64 / 1e6);
    w.wa.set_latency(Duration::ZERO);
    p.check0.push(median(&sequential(w, &r, o.samples).await));
    w.wa.set_latency(o.latency);
    p.check.push(median(&sequential(w, &r, o.samples).await));
    w.wa.set_latency(Duration::ZERO);
    let before = cpu_time(r.pid());
    for i in 0..o.cpu_checks {
        w.healthy(&r, w.message(i % 50)).await;
        if i % 500 == 499 {
            w.wa.clear_requests();
        }
    }
    p.cpu_per_check
        .push(cpu_time(r.pid()).saturating_sub(before).as_secs_f64() * 1e6 / o.cpu_checks as f64);
    drop(r);
    w.wa.clear_requests();

    // Start-up.
    let mut ready = Vec::new();
    let mut first = Vec::new();
    for _ in 0..o.starts {
        let (a, b) = start_and_first(w, side);
        ready.push(ms(a));
        first.push(ms(b));
    }
    p.ready.push(median(&ready));
    p.first.push(median(&first));

    // The burst, on a fresh process after one check.
    w.wa.set_latency(o.latency);
    let (r, _) = w.start(side);
    w.healthy(&r, w.message(0)).await;
    let bodies: Vec<Vec<u8>> = (0..o.tenants).map(|i| w.message(i)).collect();
    let cpu0 = cpu_time(r.pid());
    let drops0 = listen_drops();
    let started = Instant::now();
    join_all(bodies.into_iter().map(|b| w.healthy(&r, b))).await;
    p.burst_drops.push((listen_drops() - drops0) as f64);
    p.burst_wall.push(ms(started.elapsed()));
    p.burst_cpu.push(ms(cpu_time(r.pid()).saturating_sub(cpu0)));
    p.burst_hwm.push(status_kb(r.pid(), "VmHWM") as f64 / 1e6);
    drop(r);
    w.wa.set_latency(Duration::ZERO);
    w.wa.clear_requests();
    w.assert_no_resets(side.name());
    eprintln!(
        "{}: check {:.1} ms (0 ms: {:.2}), ready {:.1} ms, first {:.1} ms, burst {:.0} ms / {:.1} MB, CPU/check {:.0} µs",
        side.name(),
        p.check.last().unwrap(),
        p.check0.last().unwrap(),
        p.ready.last().unwrap(),
        p.first.last().unwrap(),
        p.burst_wall.last().unwrap(),
        p.burst_hwm.last().unwrap(),
        p.cpu_per_check.last().unwrap()
    );
}

fn perf_table(o: &Opts, k: &Perf, n: &Perf) {
    let l = o.latency.as_millis();
    println!("| measure | keepalive | original | original ÷ keepalive |");
    println!("|---|---|---|---|");
    let row = |name: String, a: &[f64], b: &[f64], unit: &str, digits: usize| {
        println!(
            "| {name} | {:.digits$} {unit} [{}] | {:.digits$} {unit} [{}] | {} |",
            median(a),
            range_digits(a, digits),
            median(b),
            range_digits(b, digits),
            if median(a) > 0.0 {
                format!("×{:.1}", median(b) / median(a))
            } else {
                "—".into()
            }
        );
    };
    row(
        format!("one healthy check, {l} ms per request"),
        &k.check,
        &n.check,
        "ms",
        1,
    );
    row(
        "one healthy check, 0 ms per request".into(),
        &k.check0,
        &n.check0,
        "ms",
        2,
    );
    row(
        "spawn → accepting connections".into(),
        &k.ready,
        &n.ready,
        "ms",
        1,
    );
    row(
        "spawn → first check answered".into(),
        &k.first,
        &n.first,
        "ms",
        1,
    );
    row(
        format!("{} tenants at once, {l} ms: wall", o.tenants),
        &k.burst_wall,
        &n.burst_wall,
        "ms",
        0,
    );
    row(
        format!("{} tenants at once, {l} ms: peak RSS", o.tenants),
        &k.burst_hwm,
        &n.burst_hwm,
        "MB",
        1,
    );
    row(
        format!("{} tenants at once, {l} ms: CPU", o.tenants),
        &k.burst_cpu,
        &n.burst_cpu,
        "ms",
        0,
    );
    row(
        format!(
            "{} tenants at once: connections the listener dropped (each costs 1 s)",
            o.tenants
        ),
        &k.burst_drops,
        &n.burst_drops,
        "",
        0,
    );
    row(
        format!("CPU per check ({} sequential, 0 ms)", o.cpu_checks),
        &k.cpu_per_check,
        &n.cpu_per_check,
        "µs",
        0,
    );
    row(
        "idle process RSS after start".into(),
        &k.idle_rss,
        &n.idle_rss,
        "MB",
        1,
    );
}

// ---------------------------------------------------------------------------------------------
// Behaviour.

#[derive(Clone, Copy)]
enum Scenario {
    Healthy,
    Blip503,
    BlipClosed,
    BlipBadJson,
    DatabaseHangs,
    DownThenBooting,
    Malformed,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::Healthy,
        Scenario::Blip503,
        Scenario::BlipClosed,
        Scenario::BlipBadJson,
        Scenario::DatabaseHangs,
        Scenario::DownThenBooting,
        Scenario::Malformed,
    ];

    fn id(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Blip503 => "blip-503",
            Scenario::BlipClosed => "blip-closed",
            Scenario::BlipBadJson => "blip-bad-json",
            Scenario::DatabaseHangs => "database-hangs",
            Scenario::DownThenBooting => "down-then-booting",
            Scenario::Malformed => "malformed",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy client",
            Scenario::Blip503 => "healthy client, `/v1/stats/db` answers 503 once",
            Scenario::BlipClosed => "healthy client, the login's connection drops once",
            Scenario::BlipBadJson => {
                "healthy client, `/v1/settings/application` answers `not json{` once"
            }
            Scenario::DatabaseHangs => "database deadlocked: `/v1/stats/db` never answers",
            Scenario::DownThenBooting => {
                "client down (connection refused); the next tick finds it still booting"
            }
            Scenario::Malformed => "malformed message: `vm` missing",
        }
    }

    /// What the runbook's users want: resets, and the answer's class.
    fn wanted(self) -> &'static str {
        match self {
            Scenario::Healthy
            | Scenario::Blip503
            | Scenario::BlipClosed
            | Scenario::BlipBadJson => "0 resets",
            Scenario::DatabaseHangs => "1 reset",
            Scenario::DownThenBooting => "1 reset over both ticks",
            Scenario::Malformed => "0 resets; an answer that names the problem",
        }
    }
}

struct Outcome {
    resets: usize,
    answers: Vec<Answer>,
}

async fn behave(w: &mut World, side: Side, s: Scenario, i: usize) -> Outcome {
    let name = vm(10_000 + i);
    let earlier = OffsetDateTime::now_utc() - time::Duration::days(1);
    w.g.compute
        .add_instance(FAKE_PROJECT, ZONE, &name, "RUNNING", earlier);
    w.g.compute.set_instance_boot_polls(0);
    w.wa.set_latency(Duration::ZERO);
    let body = w.message_with(10_000 + i, json!({}));
    let (r, _) = w.start(side);
    let mut answers = Vec::new();
    match s {
        Scenario::Healthy => {}
        Scenario::Blip503 => w.wa.fail_next("/v1/stats/db", 1, Behaviour::Status(503)),
        Scenario::BlipClosed => w.wa.fail_next("/v1/users/login", 1, Behaviour::Close),
        Scenario::BlipBadJson => {
            w.wa.fail_next("/v1/settings/application", 1, Behaviour::BadJson)
        }
        Scenario::DatabaseHangs => w.wa.set_behaviour("/v1/stats/db", Behaviour::Hang),
        Scenario::DownThenBooting => w.wa.stop().await,
        Scenario::Malformed => {}
    }
    match s {
        Scenario::Malformed => {
            let bad = w.message_with(10_000 + i, json!({"vm": null}));
            answers.push(w.post(&r.url(), bad).await);
        }
        Scenario::DownThenBooting => {
            answers.push(w.post(&r.url(), body.clone()).await);
            // Five minutes later in production; the VM has restarted, its containers are
            // still starting, so the client still refuses connections.
            answers.push(w.post(&r.url(), body).await);
        }
        _ => answers.push(w.post(&r.url(), body).await),
    }
    match s {
        Scenario::DownThenBooting => w.wa.restart().await.expect("restart the WhatsApp fake"),
        Scenario::DatabaseHangs => {
            w.wa.clear_behaviours();
            w.wa.drop_connections().await;
        }
        _ => w.wa.clear_behaviours(),
    }
    drop(r);
    let resets = w.g.compute.resets(&name);
    w.g.compute.remove_instance(FAKE_PROJECT, ZONE, &name);
    Outcome { resets, answers }
}

/// Status, what the answer says (the fake's ephemeral `host:port` as `HOST`), and how long it
/// took.
fn summarize(side: Side, a: &Answer, host: &str) -> String {
    let what = match side {
        Side::Keepalive => {
            let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
            v["verdict"]
                .as_str()
                .map(str::to_string)
                .or_else(|| v["error"].as_str().map(|e| format!("“{e}”")))
                .unwrap_or_default()
        }
        Side::Original => {
            let body = a.body.replace(host, "HOST");
            let mut b: String = body.chars().take(60).collect();
            if body.chars().count() > 60 {
                b.push('…');
            }
            if b.is_empty() {
                String::new()
            } else {
                format!("“{}”", b.replace('|', "\\|").replace('\n', " "))
            }
        }
    };
    format!("{} {what} in {:.1} s", a.status, a.took.as_secs_f64())
}

/// Occurrences of the password in a side's logs: as it is, and inside the Basic credentials
/// of the login (base64 of `user:password`).
fn password_in_logs(dir: &Path, side: Side) -> (usize, usize) {
    let basic = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let mut files = 0;
    let mut hits = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(side.name()) {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        hits += text.matches(PASSWORD).count() + text.matches(basic.as_str()).count();
    }
    (files, hits)
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
