//! The behaviour phase: what each side does with one-off faults, a client that is down, a
//! malformed message, and whether the password reaches its logs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::whatsapp::Behaviour;
use keepalive_tests::FAKE_PROJECT;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

use super::*;

#[derive(Clone, Copy)]
pub(crate) enum Scenario {
    Healthy,
    Blip503,
    BlipClosed,
    BlipBadJson,
    DatabaseHangs,
    DownThenBooting,
    Malformed,
}

impl Scenario {
    pub(crate) const ALL: [Scenario; 7] = [
        Scenario::Healthy,
        Scenario::Blip503,
        Scenario::BlipClosed,
        Scenario::BlipBadJson,
        Scenario::DatabaseHangs,
        Scenario::DownThenBooting,
        Scenario::Malformed,
    ];

    pub(crate) fn id(self) -> &'static str {
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

    pub(crate) fn describe(self) -> &'static str {
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
    pub(crate) fn wanted(self) -> &'static str {
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

pub(crate) struct Outcome {
    pub(crate) resets: usize,
    pub(crate) answers: Vec<Answer>,
}

pub(crate) async fn behave(w: &mut World, side: Side, s: Scenario, i: usize) -> Outcome {
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
pub(crate) fn summarize(side: Side, a: &Answer, host: &str) -> String {
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
pub(crate) fn password_in_logs(dir: &Path, side: Side) -> (usize, usize) {
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
