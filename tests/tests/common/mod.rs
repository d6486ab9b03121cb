//! The world of one end-to-end test: a fake WhatsApp client, the Google fakes, one VM, and
//! the environment that points the real `keepalive` binary at them with short timings.

#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::{run_check, CheckRun};
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

pub const ZONE: &str = "europe-west3-c";
pub const VM: &str = "whatsapp-4915112345678";
pub const USER: &str = "admin";
/// Distinctive, so a leak anywhere is found by a plain substring search.
pub const PASSWORD: &str = "Zq7!vEryS3cretWhatsAppPassw0rd-do-not-log";

pub struct World {
    pub wa: FakeWhatsApp,
    pub g: GoogleFakes,
    pub env: BTreeMap<String, String>,
}

impl World {
    /// A healthy client on a VM that has been RUNNING for a day.
    pub async fn new() -> World {
        let wa = FakeWhatsApp::start(USER, PASSWORD).await;
        let g = GoogleFakes::start().await;
        g.compute.add_instance(
            FAKE_PROJECT,
            ZONE,
            VM,
            "RUNNING",
            OffsetDateTime::now_utc() - time::Duration::days(1),
        );
        let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
        for (k, v) in [
            ("KEEPALIVE_REQUEST_TIMEOUT_MS", "400"),
            ("KEEPALIVE_ATTEMPTS", "3"),
            ("KEEPALIVE_RETRY_DELAY_MS", "30"),
            ("KEEPALIVE_BOOT_GRACE_S", "600"),
            ("KEEPALIVE_DEADLINE_S", "30"),
            // Debug level everywhere: secrets must stay out even there.
            ("RUST_LOG", "debug"),
            ("KEEPALIVE_LOG_FORMAT", "json"),
        ] {
            env.insert(k.into(), v.into());
        }
        env.insert("HOME".into(), g.dir().display().to_string());
        World { wa, g, env }
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.insert(k.into(), v.into());
    }

    /// The original function's five keys plus `project`.
    pub fn payload(&self) -> Value {
        json!({
            "whatsAppHostname": self.wa.host_port(),
            "whatsAppUsername": USER,
            "whatsAppPassword": PASSWORD,
            "vm": VM,
            "zone": ZONE,
            "project": FAKE_PROJECT,
        })
    }

    pub fn resets(&self) -> usize {
        self.g.compute.resets(VM)
    }

    /// Runs `keepalive check` off the async runtime (the fakes live on it).
    pub async fn check(&self, payload: &Value, extra: &[&str]) -> CheckRun {
        let env = self.env.clone();
        let body = payload.to_string().into_bytes();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let run = tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            run_check(&env, &body, &extra)
        })
        .await
        .unwrap();
        self.assert_no_secrets(&run.stdout);
        self.assert_no_secrets(&run.stderr);
        run
    }

    /// Every secret this world knows: the WhatsApp password, the bearer tokens the WhatsApp
    /// fake issued and the Google access tokens.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = vec![PASSWORD.to_string()];
        s.extend(self.wa.issued_tokens());
        s.extend(self.g.tokens.tokens());
        s
    }

    pub fn assert_no_secrets(&self, text: &str) {
        for secret in self.secrets() {
            assert!(
                !text.contains(&secret),
                "a secret leaked (starts {:?}) into:\n{text}",
                &secret[..6.min(secret.len())]
            );
        }
        let lower = text.to_ascii_lowercase();
        assert!(
            !lower.contains("authorization:") && !lower.contains("\"authorization\""),
            "an Authorization header leaked into:\n{text}"
        );
        assert!(
            !lower.contains("bearer ey") && !lower.contains("basic "),
            "credentials leaked into:\n{text}"
        );
    }
}

/// The Pub/Sub push envelope around `payload`.
pub fn push_envelope(payload: &Value) -> Value {
    json!({
        "message": {
            "data": STANDARD.encode(payload.to_string()),
            "messageId": "9876543210",
            "message_id": "9876543210",
            "publishTime": "2026-11-24T10:00:00.000Z",
            "publish_time": "2026-11-24T10:00:00.000Z",
            "attributes": {"number": "4915112345678"}
        },
        "subscription": "projects/fake-project/subscriptions/whatsapp-keepalive"
    })
}

/// POSTs `body` with `headers` to the service; answers (status, JSON body).
pub async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{url}/"))
        .timeout(Duration::from_secs(60))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("keepalive serve did not answer");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("answer {status} is not JSON: {text:?}"));
    (status, value)
}

pub async fn post_push(url: &str, payload: &Value) -> (u16, Value) {
    post(
        url,
        &[("content-type", "application/json")],
        push_envelope(payload).to_string().into_bytes(),
    )
    .await
}

/// Every line a serve process logged must be one JSON object in the Cloud Logging format.
pub fn assert_json_logs(logs: &str) {
    let mut n = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v.get("severity").is_some(), "no severity: {line}");
        n += 1;
    }
    assert!(n > 0, "no log lines at all");
}
