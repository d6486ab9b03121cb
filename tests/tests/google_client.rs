//! The shared Google layer's retry decision, in-process against the Secret Manager fake: a
//! request marked `Idempotent::No` (a new secret version) is sent once whatever the answer; an
//! `Idempotent::Yes` one is sent again after a 503. Pauses go to a manual clock: no wall time.

use keepalive_tests::{GoogleFakes, FAKE_PROJECT};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use shared::google::client::url_with_segments;
use shared::google::clock::ManualClock;
use shared::google::secretmanager::SecretManager;
use shared::google::{Auth, GoogleClient, Idempotent, Request, RetryPolicy};
use std::sync::Arc;
use std::time::Duration;

fn posts(g: &GoogleFakes, suffix: &str) -> usize {
    g.secrets
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(suffix))
        .count()
}

// One test: the credentials come from the process environment, which tests in one binary
// share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried() {
    let g = GoogleFakes::start().await;
    // Safe: the only test of this binary, set before any client reads it.
    std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", &g.key_file);
    let clock = Arc::new(ManualClock::new());
    let client = Arc::new(
        GoogleClient::new(
            Arc::new(Auth::new()),
            RetryPolicy::default(),
            Duration::from_secs(10),
        )
        .unwrap()
        .with_clock(clock.clone()),
    );
    let endpoint = reqwest::Url::parse(&g.secrets.url()).unwrap();
    g.secrets
        .put(&format!("projects/{FAKE_PROJECT}/secrets/wa"), "first");
    let add = url_with_segments(
        &endpoint,
        ["v1", "projects", FAKE_PROJECT, "secrets", "wa:addVersion"],
    );
    let body = json!({"payload": {"data": "c2Vjb25k"}});

    // Not idempotent: one attempt, the 503 is the caller's.
    g.secrets.fail_next(1, 503);
    let once = Request::change("Secret Manager", Method::POST, &add, Idempotent::No).body(&body);
    let e = client.send::<Value>(once, None).await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(posts(&g, ":addVersion"), 1);
    assert!(clock.pauses().is_empty());
    assert_eq!(g.secrets.version_count(FAKE_PROJECT, "wa"), 1);

    // Idempotent: sent again after one pause, on the clock.
    g.secrets.clear_requests();
    g.secrets.fail_next(1, 503);
    let again = Request::change("Secret Manager", Method::POST, &add, Idempotent::Yes).body(&body);
    client.send::<Value>(again, None).await.unwrap();
    assert_eq!(posts(&g, ":addVersion"), 2);
    assert_eq!(clock.pauses().len(), 1);

    // `store`: a 503 on the create is retried (a repeat meets ALREADY_EXISTS, adopted), and
    // the new version is added once.
    g.secrets.clear_requests();
    g.secrets.fail_next(1, 503);
    let secrets = SecretManager::new(client.clone(), &endpoint);
    secrets
        .store(
            FAKE_PROJECT,
            "db",
            &SecretString::from("pw".to_string()),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(posts(&g, "/secrets"), 2);
    assert_eq!(posts(&g, ":addVersion"), 1);
    let latest = secrets.latest(FAKE_PROJECT, "db", None).await.unwrap();
    assert_eq!(latest.unwrap().expose_secret(), "pw");
}
