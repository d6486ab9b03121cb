//! The world every On-Premises phase runs in: one or more WhatsApp fakes, the Google fakes,
//! keepalive's environment, the tenants' messages and VMs, and the protocol floor.

use futures::future::join_all;
use keepalive_tests::binaries::{push_envelope, Served};
use keepalive_tests::cpus::CpuSplit;
use keepalive_tests::measure::load_client;
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keepalive_tests::tls_front::{front_google, TlsFront};

const USER: &str = "admin";
const PASSWORD: &str = "Bench-Passw0rd!";
const ZONE: &str = "europe-west3-c";

/// One or more WhatsApp fakes, the Google fakes, keepalive's environment and the client that
/// posts the checks.
pub struct World {
    pub fakes: Vec<FakeWhatsApp>,
    pub g: GoogleFakes,
    pub env: BTreeMap<String, String>,
    /// keepalive's CPU and the harness's (`BENCH_PIN`); `None`: all share every CPU.
    pub cpus: Option<CpuSplit>,
    /// The HTTPS fronts of Google's fakes (`BENCH_GOOGLE_TLS=1`); empty: plain HTTP.
    pub google_fronts: Vec<TlsFront>,
    client: reqwest::Client,
}

/// What keepalive answered one posted message.
pub struct Answer {
    pub took: Duration,
    /// The outcome's `verdict` when it answered 200, else `HTTP <status>`.
    pub verdict: String,
    /// The answer's body, for a failure message.
    pub text: String,
}

impl World {
    pub async fn new(fakes: usize, cpus: Option<CpuSplit>) -> World {
        let mut v = Vec::new();
        for _ in 0..fakes.max(1) {
            v.push(FakeWhatsApp::start(USER, PASSWORD).await);
        }
        let g = GoogleFakes::start().await;
        // Production settings, but for the endpoints: a healthy check never reaches Google.
        let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
        env.insert("HOME".into(), g.dir().display().to_string());
        env.insert("KEEPALIVE_LOG_FORMAT".into(), "json".into());
        // For experiments: the log level, glibc malloc, tokio and probe-concurrency tunables reach
        // the process.
        for k in [
            "RUST_LOG",
            "MALLOC_ARENA_MAX",
            "MALLOC_TRIM_THRESHOLD_",
            "TOKIO_WORKER_THREADS",
            "KEEPALIVE_MAX_CONCURRENT_PROBES",
        ] {
            if let Ok(v) = std::env::var(k) {
                env.insert(k.into(), v);
            }
        }
        let google_fronts = if std::env::var("BENCH_GOOGLE_TLS").is_ok_and(|v| v == "1") {
            front_google(&mut env, g.dir()).await
        } else {
            Vec::new()
        };
        let client = load_client();
        World {
            fakes: v,
            g,
            env,
            cpus,
            google_fronts,
            client,
        }
    }

    /// A fresh `keepalive serve` with `env`, on keepalive's CPU when the CPUs are split.
    pub fn serve(&self, env: &BTreeMap<String, String>) -> Served {
        Served::start_on(env, &["serve"], self.cpus.as_ref())
    }

    pub fn set_latency(&self, latency: Duration) {
        for f in &self.fakes {
            f.set_latency(latency);
        }
    }

    pub fn clear(&self) {
        for f in &self.fakes {
            f.clear_requests();
        }
        self.g.compute.clear_requests();
    }

    /// The push envelope of tenant `i` (on fake `i % fakes`) in the project [`FAKE_PROJECT`].
    pub fn message(&self, i: usize) -> Vec<u8> {
        self.message_in(i, FAKE_PROJECT)
    }

    /// The push envelope of tenant `i` (on fake `i % fakes`), VM `whatsapp-bench-{i:05}` in
    /// `project`.
    pub fn message_in(&self, i: usize, project: &str) -> Vec<u8> {
        let wa = &self.fakes[i % self.fakes.len()];
        let payload = json!({
            "whatsAppHostname": wa.host_port(),
            "whatsAppUsername": USER,
            "whatsAppPassword": PASSWORD,
            "vm": vm_name(i),
            "zone": ZONE,
            "project": project,
        });
        push_envelope(&payload, &format!("{}", 1_000_000 + i))
            .to_string()
            .into_bytes()
    }

    /// Adds the VMs of tenants `0..tenants` to `project`, RUNNING since a day.
    pub fn add_vms(&self, project: &str, tenants: usize) {
        let earlier = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        for i in 0..tenants {
            self.g
                .compute
                .add_instance(project, ZONE, &vm_name(i), "RUNNING", earlier);
        }
    }

    /// Posts one message; answers how long the answer took and its verdict.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Answer {
        post(&self.client, url, body).await
    }

    /// Posts one message; answers how long the answer took. Panics unless 200 healthy.
    pub async fn check(&self, url: &str, body: Vec<u8>) -> Duration {
        let a = self.post(url, body).await;
        assert!(a.verdict == "healthy", "check answered {}", a.text);
        a.took
    }
}

/// Posts one message to `url` with `client`; answers how long the answer took and its verdict.
pub async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Answer {
    let started = Instant::now();
    let resp = client
        .post(format!("{url}/"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("keepalive did not answer");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("answer body");
    let took = started.elapsed();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let verdict = match v["verdict"].as_str() {
        Some(verdict) if status == 200 => verdict.to_string(),
        _ => format!("HTTP {}", status.as_u16()),
    };
    let text = String::from_utf8_lossy(&bytes).chars().take(500).collect();
    Answer {
        took,
        verdict,
        text,
    }
}

/// The VM of tenant `i`.
fn vm_name(i: usize) -> String {
    format!("whatsapp-bench-{i:05}")
}

/// The protocol floor: login, then the seven probes at once, from a bare client (pooled,
/// TCP_NODELAY, like keepalive's) against the same fake.
pub async fn floor_once(client: &reqwest::Client, base: &str) -> Duration {
    const PROBES: [(&str, &str); 7] = [
        ("GET", "/v1/stats/app"),
        ("GET", "/v1/stats/db"),
        ("GET", "/v1/settings/application"),
        ("GET", "/v1/settings/profile/about"),
        ("GET", "/v1/settings/business/profile"),
        ("PUT", "/v1/services/message/gc"),
        ("GET", "/v1/health"),
    ];
    let started = Instant::now();
    let login: Value = client
        .post(format!("{base}/v1/users/login"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = login["users"][0]["token"].as_str().expect("token");
    let answers = join_all(PROBES.iter().map(|(m, p)| {
        client
            .request(m.parse().unwrap(), format!("{base}{p}"))
            .bearer_auth(token)
            .send()
    }))
    .await;
    for a in answers {
        let a = a.expect("probe");
        assert!(a.status().is_success());
        let _: Value = a.json().await.expect("probe body");
    }
    started.elapsed()
}
