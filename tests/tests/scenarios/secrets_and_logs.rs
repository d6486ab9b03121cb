//! Secrets stay out of every output (even at trace level, even echoed by the client); the
//! outcome's log line carries the fields the alert policies match.

use crate::common::{World, PASSWORD, USER, VM, ZONE};
use crate::verdict;
use keepalive_tests::{Behaviour, Health, FAKE_PROJECT};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_output_even_at_trace_level() {
    let mut w = World::new().await;
    w.set_env("RUST_LOG", "trace");
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(401));
    // `check` asserts no secret in stdout and stderr for every run.
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "alert");
    assert!(!run.stderr.is_empty(), "trace logging produced nothing");
    assert!(!run.stderr.contains(USER) || !run.stderr.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_echoes_the_password_cannot_leak_it() {
    let w = World::new().await;
    let echo = json!({"errors": [{"code": 1005, "title": "Access denied", "details": format!("bad password {PASSWORD}")}]});
    w.wa.set_behaviour("/v1/users/login", Behaviour::Json(401, echo));
    // `check` asserts that no secret reaches stdout or stderr.
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("[REDACTED]"), "{o}");
}

/// The outcome's log line carries the fields the provisioner's alert policies match
/// (`jsonPayload.kind`, `.verdict`, `.vm`, `.zone`), in Cloud Logging's structured format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_log_line_carries_the_fields_alert_policies_match() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("unregistered"));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "alert");
    let lines = keepalive_tests::binaries::outcome_log_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    let line = &lines[0];
    assert_eq!(line["kind"], "onprem", "{line}");
    assert_eq!(line["verdict"], "alert", "{line}");
    assert_eq!(line["vm"], VM, "{line}");
    assert_eq!(line["zone"], ZONE, "{line}");
    assert_eq!(line["project"], FAKE_PROJECT, "{line}");
    assert_eq!(line["severity"], "ERROR", "{line}");
    assert!(line["message"].as_str().is_some(), "{line}");
}
