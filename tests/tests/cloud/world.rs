//! The world of one Cloud API test: the Graph fake with one healthy number, the bot's webhook
//! endpoint over HTTPS (its certificate trusted through `SSL_CERT_FILE`), the Google fakes
//! holding the access token and the verify token in Secret Manager, and the environment that
//! points the real `keepalive` binary at them with short timings.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::{run_check, CheckRun};
use keepalive_tests::{
    FakeGraph, FakeToken, FakeWebhook, GoogleFakes, RecordedRequest, FAKE_PROJECT,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub const PHONE: &str = "106540352242922";
pub const WABA: &str = "102290129340398";
/// The token's own app, subscribed to the WABA; its callback URL is the bot's endpoint.
pub const APP: &str = "634974688087057";
pub const OTHER_APP: &str = "777000000000001";
pub const DISPLAY: &str = "+49 151 1234567";
/// Distinctive, so a leak anywhere is found by a plain substring search.
pub const ACCESS_TOKEN: &str = "EAAGcl0udAccessT0ken-must-never-show-anywhere";
pub const VERIFY_TOKEN: &str = "vErifyT0ken-of-the-bot-must-never-show";

pub struct World {
    pub graph: FakeGraph,
    pub hook: FakeWebhook,
    pub g: GoogleFakes,
    pub env: BTreeMap<String, String>,
    pub token_secret: String,
    pub verify_secret: String,
}

impl World {
    /// A healthy number: CONNECTED on CLOUD_API, GREEN, every entity AVAILABLE, the token's
    /// app subscribed to the WABA with the bot's endpoint as its callback URL, the endpoint
    /// answering the handshake.
    pub async fn new() -> World {
        let graph = FakeGraph::start().await;
        let hook = FakeWebhook::start_tls(VERIFY_TOKEN).await;
        let g = GoogleFakes::start().await;
        graph.add_app(APP, "LoyJoy Bot", Some(&hook.callback_url()));
        graph.add_app(OTHER_APP, "Other Bot", None);
        graph.add_token(ACCESS_TOKEN, FakeToken::valid(APP));
        graph.add_number(PHONE, WABA, DISPLAY);
        graph.subscribe(WABA, APP);
        let token_secret = g.secrets.put(
            &format!("projects/{FAKE_PROJECT}/secrets/meta-token"),
            ACCESS_TOKEN,
        );
        let verify_secret = g.secrets.put(
            &format!("projects/{FAKE_PROJECT}/secrets/bot-verify-token"),
            VERIFY_TOKEN,
        );
        let ca = g.dir().join("webhook-ca.pem");
        std::fs::write(&ca, hook.certificate_pem().expect("a TLS endpoint")).unwrap();
        let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
        for (k, v) in [
            ("KEEPALIVE_GRAPH_ENDPOINT", graph.url().as_str()),
            ("SSL_CERT_FILE", &ca.display().to_string()),
            ("KEEPALIVE_REQUEST_TIMEOUT_MS", "1000"),
            ("KEEPALIVE_DEADLINE_S", "20"),
            // Debug level everywhere: secrets must stay out even there.
            ("RUST_LOG", "debug"),
            ("KEEPALIVE_LOG_FORMAT", "json"),
        ] {
            env.insert(k.into(), v.to_string());
        }
        env.insert("HOME".into(), g.dir().display().to_string());
        World {
            graph,
            hook,
            g,
            env,
            token_secret,
            verify_secret,
        }
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.insert(k.into(), v.into());
    }

    /// The full payload: number, WABA, token, the bot's endpoint and its verify token.
    pub fn payload(&self) -> Value {
        json!({
            "phoneNumberId": PHONE,
            "wabaId": WABA,
            "accessTokenSecret": self.token_secret,
            "webhookUrl": self.hook.callback_url(),
            "webhookVerifyTokenSecret": self.verify_secret,
            "name": "acme-de",
        })
    }

    pub fn repairing(&self) -> Value {
        let mut p = self.payload();
        p["repair"] = json!(true);
        p
    }

    /// Runs `keepalive check` off the async runtime (the fakes live on it); its output is
    /// searched for every secret.
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
        self.assert_no_secrets("stdout", &run.stdout);
        self.assert_no_secrets("stderr", &run.stderr);
        run
    }

    /// Graph calls that change something (every POST).
    pub fn writes(&self) -> Vec<String> {
        self.graph
            .calls()
            .into_iter()
            .filter(|c| c.method != "GET")
            .map(|c| format!("{} {}", c.method, c.path))
            .collect()
    }

    /// The secrets of this world: the access token, the verify token, the Google tokens.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = vec![ACCESS_TOKEN.to_string(), VERIFY_TOKEN.to_string()];
        s.extend(self.g.tokens.tokens());
        s
    }

    pub fn assert_no_secrets(&self, what: &str, text: &str) {
        for secret in self.secrets() {
            assert!(
                !text.contains(&secret),
                "a secret (starts {:?}) leaked into {what}:\n{text}",
                &secret[..6.min(secret.len())]
            );
        }
        let lower = text.to_ascii_lowercase();
        assert!(
            !lower.contains("authorization:") && !lower.contains("\"authorization\""),
            "an Authorization header leaked into {what}:\n{text}"
        );
        assert!(
            !lower.contains("bearer "),
            "a bearer credential leaked into {what}:\n{text}"
        );
    }

    /// Every request any fake received carries the tokens only where the contract allows:
    /// the access token in Graph's `Authorization` header and `debug_token`'s `input_token`;
    /// the verify token in a Graph override's body and the handshake's `hub.verify_token`.
    pub fn assert_tokens_only_where_allowed(&self) {
        assert!(
            self.graph.access_token_requests().is_empty(),
            "an access_token parameter was sent"
        );
        for r in self.graph.requests() {
            let auth = r.header("authorization").unwrap_or_default();
            assert_eq!(auth, format!("Bearer {ACCESS_TOKEN}"), "{}", r.path);
            let query = without_param(r.query.as_deref(), "input_token");
            let mut rest = strip_header(&r, "authorization");
            rest.push_str(&query);
            self.assert_absent(ACCESS_TOKEN, "a Graph request", &rest);
            rest.push_str(&r.body_text());
            if !(r.method == "POST" && r.path.ends_with(PHONE)) {
                self.assert_absent(VERIFY_TOKEN, "a Graph request", &rest);
            }
            if r.path.ends_with("debug_token") {
                assert_eq!(
                    param(r.query.as_deref(), "input_token").as_deref(),
                    Some(ACCESS_TOKEN)
                );
            }
        }
        for r in self.hook.requests() {
            let query = without_param(r.query.as_deref(), "hub.verify_token");
            let text = format!("{}{query}{}", all_headers(&r), r.body_text());
            self.assert_absent(VERIFY_TOKEN, "a webhook request", &text);
            self.assert_absent(ACCESS_TOKEN, "a webhook request", &text);
        }
        let google: Vec<RecordedRequest> =
            [self.g.secrets.requests(), self.g.token.requests()].concat();
        for r in google {
            let text = format!("{}{}{}", r.path_and_query, all_headers(&r), r.body_text());
            self.assert_absent(VERIFY_TOKEN, "a Google request", &text);
            self.assert_absent(ACCESS_TOKEN, "a Google request", &text);
        }
    }

    fn assert_absent(&self, secret: &str, what: &str, text: &str) {
        assert!(!text.contains(secret), "a token leaked into {what}: {text}");
        let b64 = STANDARD.encode(secret);
        assert!(!text.contains(&b64), "a token (base64) leaked into {what}");
    }
}

fn all_headers(r: &RecordedRequest) -> String {
    r.headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

fn strip_header(r: &RecordedRequest, name: &str) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param(query: Option<&str>, name: &str) -> Option<String> {
    pairs(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn without_param(query: Option<&str>, name: &str) -> String {
    pairs(query)
        .into_iter()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| format!("{k}={v}&"))
        .collect()
}

/// The verdict of a run.
pub fn verdict(run: &CheckRun) -> String {
    run.outcome()["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The kinds of the outcome's findings, in order.
pub fn kinds(outcome: &Value) -> Vec<String> {
    outcome["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["kind"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The Pub/Sub push envelope around `payload`.
pub fn push_envelope(payload: &Value) -> Value {
    json!({
        "message": {
            "data": STANDARD.encode(payload.to_string()),
            "messageId": "4242",
            "publishTime": "2026-11-24T10:00:00.000Z",
            "attributes": {}
        },
        "subscription": "projects/fake-project/subscriptions/whatsapp-keepalive"
    })
}

/// POSTs `body` with `headers` to the service; answers (status, JSON body).
pub async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
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
