//! The fleet phase (`BENCH_PHASES=fleet`): `FLEET_NUMBERS` Cloud API numbers in `FLEET_WABAS`
//! WABAs (one token) on the Graph fake, `BENCH_GRAPH_LATENCY_MS` per HTTP request, checked
//! two ways, each on a fresh `keepalive serve` after one warm-up check of one number:
//!
//! - one fleet message listing them all (reads in batches of 50, each WABA and the token once);
//! - one single-number message per number, all posted at once (a scheduler job per number).
//!
//! For each: wall time until the last answer, Graph HTTP requests, peak RSS (`VmHWM`), CPU of
//! the process (`utime + stime`).

use futures::future::join_all;
use keepalive_tests::binaries::{push_envelope, Served};
use keepalive_tests::cpus::CpuSplit;
use keepalive_tests::measure::{cpu_time, load_client, median, ms, range, status_kb};
use keepalive_tests::{FakeGraph, FakeToken, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::world::post;

const APP: &str = "634974688087057";
const TOKEN: &str = "EAAGbenchFleetAccessToken";
const MIB: f64 = 1024.0 * 1024.0;

/// What one way of checking the fleet cost.
#[derive(Debug, Clone, Copy)]
pub struct FleetRun {
    pub wall_ms: f64,
    pub graph_requests: usize,
    /// Peak RSS, MiB.
    pub hwm_mib: f64,
    pub cpu_ms: f64,
}

pub struct FleetWorld {
    graph: FakeGraph,
    _g: GoogleFakes,
    env: BTreeMap<String, String>,
    cpus: Option<CpuSplit>,
    client: reqwest::Client,
    token_secret: String,
    /// `(phoneNumberId, wabaId)` of every number.
    numbers: Vec<(String, String)>,
}

impl FleetWorld {
    pub async fn new(
        numbers: usize,
        wabas: usize,
        latency: Duration,
        cpus: Option<CpuSplit>,
    ) -> FleetWorld {
        let graph = FakeGraph::start().await;
        let g = GoogleFakes::start().await;
        graph.add_app(APP, "Bench Bot", None);
        graph.add_token(TOKEN, FakeToken::valid(APP));
        let numbers: Vec<(String, String)> = (0..numbers)
            .map(|i| {
                let id = format!("{}", 2_000_000 + i);
                let waba = format!("{}", 9_000_000 + i % wabas.max(1));
                graph.add_number(&id, &waba, &format!("+49 151 {i:07}"));
                graph.subscribe(&waba, APP);
                (id, waba)
            })
            .collect();
        graph.set_latency(latency);
        let token_secret = g.secrets.put(
            &format!("projects/{FAKE_PROJECT}/secrets/meta-token"),
            TOKEN,
        );
        let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
        env.insert("HOME".into(), g.dir().display().to_string());
        env.insert("KEEPALIVE_LOG_FORMAT".into(), "json".into());
        env.insert("KEEPALIVE_GRAPH_ENDPOINT".into(), graph.url());
        for k in ["RUST_LOG", "KEEPALIVE_MAX_CONCURRENT_PROBES"] {
            if let Ok(v) = std::env::var(k) {
                env.insert(k.into(), v);
            }
        }
        let client = load_client();
        FleetWorld {
            graph,
            _g: g,
            env,
            cpus,
            client,
            token_secret,
            numbers,
        }
    }

    fn single(&self, i: usize) -> Value {
        let (id, waba) = &self.numbers[i];
        json!({"phoneNumberId": id, "wabaId": waba, "accessTokenSecret": self.token_secret})
    }

    fn fleet(&self) -> Value {
        let entries: Vec<Value> = self
            .numbers
            .iter()
            .map(|(id, waba)| json!({"phoneNumberId": id, "wabaId": waba}))
            .collect();
        json!({"accessTokenSecret": self.token_secret, "numbers": entries})
    }

    /// Posts `payload` in a push envelope; panics unless 200 and healthy.
    async fn post(&self, url: &str, payload: &Value) {
        let body = push_envelope(payload, "1").to_string().into_bytes();
        let a = post(&self.client, url, body).await;
        assert_eq!(a.verdict, "healthy", "answered ({}): {}", a.verdict, a.text);
    }

    /// One fleet message (`fleet`), or one message per number all at once.
    pub async fn run(&self, fleet: bool) -> FleetRun {
        let s = Served::start_on(&self.env, &["serve"], self.cpus.as_ref());
        let url = s.url();
        self.post(&url, &self.single(0)).await;
        let pid = s.pid();
        let requests0 = self.graph.request_count();
        let cpu0 = cpu_time(pid);
        let started = Instant::now();
        if fleet {
            self.post(&url, &self.fleet()).await;
        } else {
            let payloads: Vec<Value> = (0..self.numbers.len()).map(|i| self.single(i)).collect();
            join_all(payloads.iter().map(|p| self.post(&url, p))).await;
        }
        let run = FleetRun {
            wall_ms: ms(started.elapsed()),
            graph_requests: self.graph.request_count() - requests0,
            hwm_mib: status_kb(pid, "VmHWM") as f64 / MIB,
            cpu_ms: ms(cpu_time(pid).saturating_sub(cpu0)),
        };
        drop(s);
        self.graph.clear_requests();
        run
    }
}

/// One row of the side-by-side table.
struct Row {
    name: &'static str,
    unit: &'static str,
    fleet: Vec<f64>,
    single: Vec<f64>,
    target: &'static str,
    met: Option<bool>,
}

/// The fleet message next to the single-number messages, as a Markdown table.
pub fn print_table(numbers: usize, wabas: usize, latency: Duration, runs: &[(FleetRun, FleetRun)]) {
    let col = |f: fn(&FleetRun) -> f64| -> (Vec<f64>, Vec<f64>) {
        (
            runs.iter().map(|r| f(&r.0)).collect(),
            runs.iter().map(|r| f(&r.1)).collect(),
        )
    };
    let row = |name, unit, f: fn(&FleetRun) -> f64, target, limit: Option<fn(f64) -> bool>| {
        let (fleet, single) = col(f);
        let met = limit.map(|ok| ok(median(&fleet)));
        Row {
            name,
            unit,
            fleet,
            single,
            target,
            met,
        }
    };
    let rows = [
        row(
            "wall",
            "ms",
            |r| r.wall_ms,
            "≤ 500 ms",
            Some(|x| x <= 500.0),
        ),
        row(
            "Graph HTTP requests",
            "",
            |r| r.graph_requests as f64,
            "≤ 25",
            Some(|x| x <= 25.0),
        ),
        row(
            "peak RSS (VmHWM)",
            "MiB",
            |r| r.hwm_mib,
            "< 48 MiB",
            Some(|x| x < 48.0),
        ),
        row("CPU of keepalive", "ms", |r| r.cpu_ms, "—", None),
    ];
    println!();
    println!(
        "{numbers} Cloud API numbers in {wabas} WABAs, {} ms per Graph HTTP request, each way on a \
         fresh process after one warm-up check ({} run(s), median [range]):",
        latency.as_millis(),
        runs.len()
    );
    println!();
    println!("| measure | one fleet message | {numbers} single-number messages at once | target (fleet message) | met |");
    println!("|---|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        println!(
            "| {} | {:.1} {} [{}] | {:.1} {} [{}] | {} | {met} |",
            r.name,
            median(&r.fleet),
            r.unit,
            range(&r.fleet),
            median(&r.single),
            r.unit,
            range(&r.single),
            r.target
        );
    }
}
