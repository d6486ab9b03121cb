//! The local sandbox: one complete keepalive cycle on this machine, no Google account.
//!
//! Starts the simulated WhatsApp client, Compute Engine API, OAuth token endpoint and Secret
//! Manager from `tests/`, and for a Cloud API number Meta's Graph API and a bot's webhook
//! endpoint, starts the real `keepalive serve` against them, and plays what Cloud Scheduler
//! and Pub/Sub would send, narrating each step: an On-Premises client on its VM (steps 1-5),
//! then a number on Meta's Cloud API (steps 6-8).
//!
//! Run: `cargo run -p keepalive-tests --bin sandbox`

use keepalive_tests::binaries::{push_envelope, Served};
use keepalive_tests::{
    Behaviour, Entity, FakeGraph, FakeToken, FakeWebhook, FakeWhatsApp, GoogleFakes, FAKE_PROJECT,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const VM: &str = "whatsapp-4915112345678";
const ZONE: &str = "europe-west3-c";
const SECRET: &str = "projects/fake-project/secrets/whatsapp-4915112345678-admin";

// The Cloud API number: its Graph ids, its app, the secrets the keepalive reads.
const PHONE: &str = "106540352242922";
const WABA: &str = "102290129340398";
const APP: &str = "634974688087057";
const ACCESS_TOKEN: &str = "Sandbox-AccessT0ken-kept-in-Secret-Manager";
const VERIFY_TOKEN: &str = "Sandbox-VerifyT0ken-kept-in-Secret-Manager";

struct Sandbox {
    wa: FakeWhatsApp,
    g: GoogleFakes,
    graph: FakeGraph,
    hook: FakeWebhook,
    keepalive: Served,
    shown_logs: usize,
    payload: Value,
    /// What did not go as the step says it goes (the sandbox then exits 1).
    surprises: Vec<String>,
}

#[tokio::main]
async fn main() {
    println!("== Setting up (all on 127.0.0.1, nothing leaves this machine)");
    let password = "Sandbox-Passw0rd!-kept-in-Secret-Manager";
    let wa = FakeWhatsApp::start("admin", password).await;
    println!("   WhatsApp client (simulated) ........ {}", wa.url());
    let g = GoogleFakes::start().await;
    println!(
        "   Compute Engine API (simulated) ..... {}",
        g.compute.url()
    );
    println!(
        "   OAuth token endpoint (simulated) ... {}",
        g.token.token_uri()
    );
    println!(
        "   Secret Manager (simulated) ......... {}",
        g.secrets.url()
    );
    g.compute.add_instance(
        FAKE_PROJECT,
        ZONE,
        VM,
        "RUNNING",
        OffsetDateTime::now_utc() - time::Duration::days(3),
    );
    // The password from Secret Manager goes only to one of the VM's addresses: the fake's.
    g.compute.set_nat_ip(FAKE_PROJECT, ZONE, VM, "127.0.0.1");
    println!("   VM {VM} in {ZONE}: RUNNING for 3 days, at 127.0.0.1, labelled whatsapp-keepalive=enabled");
    let version = g.secrets.put(SECRET, password);
    println!("   the WhatsApp password is stored as {version}");

    let graph = FakeGraph::start().await;
    println!("   Meta's Graph API (simulated) ....... {}", graph.url());
    let hook = FakeWebhook::start_tls(VERIFY_TOKEN).await;
    println!(
        "   the bot's webhook endpoint ......... {} (HTTPS)",
        hook.callback_url()
    );
    graph.add_app(APP, "LoyJoy Bot", Some(&hook.callback_url()));
    graph.add_token(ACCESS_TOKEN, FakeToken::valid(APP));
    graph.add_number(PHONE, WABA, "+49 151 1234567");
    graph.subscribe(WABA, APP);
    println!("   number {PHONE} of WABA {WABA}: CONNECTED on the Cloud API, app {APP} subscribed");
    let token_version = g
        .secrets
        .put("projects/fake-project/secrets/meta-token", ACCESS_TOKEN);
    let verify_version = g.secrets.put(
        "projects/fake-project/secrets/bot-verify-token",
        VERIFY_TOKEN,
    );
    println!("   the system-user token is stored as {token_version}");
    println!("   the webhook's verify token is stored as {verify_version}");
    // The endpoint's certificate is self-signed: the keepalive trusts it as it would a CA.
    let ca = g.dir().join("webhook-ca.pem");
    std::fs::write(&ca, hook.certificate_pem().expect("a TLS endpoint")).expect("write the CA");

    let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
    for (k, v) in [
        ("KEEPALIVE_REQUEST_TIMEOUT_MS", "1000"),
        ("KEEPALIVE_ATTEMPTS", "3"),
        ("KEEPALIVE_RETRY_DELAY_MS", "500"),
        ("KEEPALIVE_BOOT_GRACE_S", "600"),
        ("KEEPALIVE_DEADLINE_S", "60"),
        ("KEEPALIVE_LOG_FORMAT", "text"),
        ("NO_COLOR", "1"),
        ("RUST_LOG", "info"),
    ] {
        env.insert(k.into(), v.into());
    }
    env.insert("HOME".into(), g.dir().display().to_string());
    env.insert("KEEPALIVE_GRAPH_ENDPOINT".into(), graph.url());
    env.insert("SSL_CERT_FILE".into(), ca.display().to_string());
    println!("   building and starting `keepalive serve` (the real binary) ...");
    let keepalive = Served::start(&env);
    println!(
        "   keepalive serve ..................... {}",
        keepalive.url()
    );
    println!(
        "   timings for the sandbox: 1 s per request, 3 attempts 0.5 s apart, 600 s boot grace"
    );

    let payload = json!({
        "whatsAppHostname": wa.host_port(),
        "whatsAppUsername": "admin",
        "whatsAppPasswordSecret": format!("{SECRET}/versions/latest"),
        "vm": VM,
        "zone": ZONE,
        "project": FAKE_PROJECT,
    });
    println!("\n   The scheduler payload (no password in it, only a Secret Manager reference):");
    println!("   {payload}");
    let cloud_payload = json!({
        "phoneNumberId": PHONE,
        "wabaId": WABA,
        "accessTokenSecret": token_version,
        "webhookUrl": hook.callback_url(),
        "webhookVerifyTokenSecret": verify_version,
        "repair": true,
        "name": "acme-de",
    });
    let mut s = Sandbox {
        wa,
        g,
        graph,
        hook,
        keepalive,
        shown_logs: 0,
        payload,
        surprises: Vec::new(),
    };

    s.step(
        1,
        "Cloud Scheduler fires; Pub/Sub pushes the message. The client is healthy.",
    )
    .await;
    s.deliver(1, "healthy").await;

    s.step(
        2,
        "A blip: the client refuses one login, then recovers. The original function would reset here.",
    )
    .await;
    s.wa.fail_next("/v1/users/login", 1, Behaviour::Close);
    s.deliver(1, "healthy").await;

    s.step(
        3,
        "The database deadlocks: GET /v1/stats/db hangs on every attempt. The VM is reset.",
    )
    .await;
    s.wa.set_behaviour("/v1/stats/db", Behaviour::Hang);
    s.deliver(1, "reset").await;

    s.step(
        4,
        "Moments later the containers are still booting, and Pub/Sub delivers the message twice at once.",
    )
    .await;
    s.deliver(2, "grace").await;

    s.step(
        5,
        "A malformed message (no `vm`): answered 400 naming the field, never a reset (Pub/Sub dead-letters it after 5 attempts).",
    )
    .await;
    let mut bad = s.payload.clone();
    bad.as_object_mut().unwrap().remove("vm");
    let (status, answer) = post(&s.keepalive.url(), &bad).await;
    println!("   -> {status} {answer}");
    if status != 400 || answer["field"] != "vm" {
        s.surprises.push(format!(
            "step 5 answered {status} {answer}, not 400 naming `vm`"
        ));
    }
    s.show_logs();

    s.wa.clear_behaviours();
    s.cloud_steps(&cloud_payload).await;
    println!(
        "\n== Done. Compute Engine carried out {} reset(s) of {VM} (the guard absorbed the rest);",
        s.g.compute.resets(VM)
    );
    let writes: Vec<String> = s
        .graph
        .calls()
        .into_iter()
        .filter(|c| c.method != "GET")
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    println!(
        "   the Graph API saw {} change(s): {} (never a register or deregister).",
        writes.len(),
        writes.join(", ")
    );
    if writes != [format!("POST {WABA}/subscribed_apps")] {
        s.surprises.push(format!(
            "Graph changes {writes:?}, not the one subscription"
        ));
    }
    let resets = s.g.compute.resets(VM);
    if resets != 1 {
        s.surprises
            .push(format!("{resets} resets carried out, not 1"));
    }
    println!("   Stopping keepalive with SIGTERM (Cloud Run's way) ...");
    let Sandbox {
        keepalive,
        mut surprises,
        ..
    } = s;
    let (code, took, logs) = keepalive.terminate(Duration::from_secs(15));
    for line in logs.lines().skip_while(|l| !l.contains("draining")) {
        println!("   keepalive | {line}");
    }
    println!(
        "   exit status {} after {} ms",
        code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
        took.as_millis()
    );
    if code != Some(0) {
        surprises.push(format!("keepalive exited {code:?} after SIGTERM, not 0"));
    }
    if !surprises.is_empty() {
        println!("\n== NOT as described:");
        for s in &surprises {
            println!("   {s}");
        }
        std::process::exit(1);
    }
    println!("\n== Every step went as described.");
}

impl Sandbox {
    /// Steps 6-8: a number on Meta's Cloud API.
    async fn cloud_steps(&mut self, payload: &Value) {
        println!("\n   The scheduler payload of a Cloud API number (tokens only as Secret Manager references):");
        println!("   {payload}");
        self.step(
            6,
            "A number on Meta's Cloud API. The keepalive reads the number (status, health, webhook), the WABA's subscribed apps and the token at once, and runs Meta's verification handshake against the bot's endpoint.",
        )
        .await;
        self.deliver_cloud(payload, "healthy").await;

        self.step(
            7,
            "Someone removes the app's subscription to the WABA: Meta stops sending the bot its messages, silently. With \"repair\": true the keepalive subscribes the app again and reads it back.",
        )
        .await;
        self.graph.unsubscribe(WABA, APP);
        self.deliver_cloud(payload, "repaired").await;
        println!(
            "   apps subscribed to WABA {WABA} now: {:?}",
            self.graph.subscribed_apps(WABA)
        );

        self.step(
            8,
            "Meta blocks the WABA (a policy violation). No repair can fix that: an alert, with Meta's reason and what to do.",
        )
        .await;
        self.graph.set_entity(
            PHONE,
            Entity::blocked(
                "WABA",
                WABA,
                &[(
                    141000,
                    "The WhatsApp Business Account is restricted for a policy violation",
                    "Request a review in Business Support Home",
                )],
            ),
        );
        self.deliver_cloud(payload, "alert").await;
        println!(
            "   the bot's endpoint answered {} handshake(s)",
            self.hook.handshake_count()
        );
    }

    /// Delivers a Cloud API payload once; it should be 200 with verdict `expected`.
    async fn deliver_cloud(&mut self, payload: &Value, expected: &str) {
        let (status, o) = post(&self.keepalive.url(), payload).await;
        if status != 200 || o["verdict"] != expected {
            self.surprises.push(format!(
                "answered {status} verdict {}, not 200 {expected}",
                o["verdict"]
            ));
        }
        println!(
            "   -> {status} verdict={} ({} ms)",
            o["verdict"].as_str().unwrap_or("?"),
            o["durationMs"]
        );
        println!("      reason: {}", o["reason"].as_str().unwrap_or(""));
        for f in o["findings"].as_array().into_iter().flatten() {
            println!(
                "      finding [{}] {}",
                f["severity"].as_str().unwrap_or("?"),
                f["kind"].as_str().unwrap_or("?")
            );
        }
        for r in o["repairs"].as_array().into_iter().flatten() {
            println!(
                "      repair {}: {}",
                r["action"].as_str().unwrap_or("?"),
                r["result"].as_str().unwrap_or("?")
            );
        }
        self.show_logs();
    }

    async fn step(&mut self, n: u32, text: &str) {
        println!("\n== Step {n}: {text}");
    }

    /// Delivers the payload `copies` times at once and prints each answer; each should be
    /// 200 with verdict `expected`.
    async fn deliver(&mut self, copies: usize, expected: &str) {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..copies {
            let url = self.keepalive.url();
            let p = self.payload.clone();
            tasks.push(tokio::spawn(async move { post(&url, &p).await }));
        }
        for t in tasks {
            let (status, o) = t.await.expect("delivery task");
            if status != 200 || o["verdict"] != expected {
                self.surprises.push(format!(
                    "answered {status} verdict {}, not 200 {expected}",
                    o["verdict"]
                ));
            }
            println!(
                "   -> {status} verdict={} attempts={} ({} ms)",
                o["verdict"].as_str().unwrap_or("?"),
                o["attempts"],
                o["durationMs"]
            );
            println!("      reason: {}", o["reason"].as_str().unwrap_or(""));
            if let Some(op) = o["operation"].as_str() {
                println!("      Compute Engine operation: {op}");
            }
        }
        println!(
            "   resets so far: {}   ({} ms)",
            self.g.compute.resets(VM),
            started.elapsed().as_millis()
        );
        self.show_logs();
    }

    fn show_logs(&mut self) {
        let lines = self.keepalive.stdout.all();
        for line in &lines[self.shown_logs.min(lines.len())..] {
            println!("   keepalive | {line}");
        }
        self.shown_logs = lines.len();
    }
}

async fn post(url: &str, payload: &Value) -> (u16, Value) {
    let envelope = push_envelope(payload, "4242");
    let resp = reqwest::Client::new()
        .post(format!("{url}/"))
        .json(&envelope)
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .expect("keepalive answered");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}
