//! Failures that reset: login failing after every attempt, hanging or refused, a deadlocked
//! database, each probe failure kind; and a single transient failure that does not.

use crate::common::{World, VM};
use crate::{uuid_like, verdict};
use keepalive_tests::Behaviour;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failing_resets_after_every_attempt_failed() {
    let w = World::new().await;
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset");
    assert_eq!(o["attempts"], 3);
    assert!(
        o["reason"].as_str().unwrap().contains("login failed"),
        "{o}"
    );
    assert!(
        o["operation"].as_str().unwrap().starts_with("operation"),
        "{o}"
    );
    assert_eq!(w.wa.login_count(), 3);
    assert_eq!(w.resets(), 1);
    // The reset was sent with a requestId, after reading the instance and its resets.
    let reset =
        w.g.compute
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/reset"))
            .unwrap();
    assert!(uuid_like(&reset.query_param("requestId").unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_hanging_times_out_and_resets() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_REQUEST_TIMEOUT_MS", "200");
    w.wa.set_behaviour("/v1/users/login", Behaviour::Hang);
    let started = std::time::Instant::now();
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("timed out"), "{o}");
    assert_eq!(w.resets(), 1);
    // Three attempts of 200 ms, not the 8 s of the original per request.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refused_resets() {
    let w = World::new().await;
    w.wa.stop().await;
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(
        o["reason"].as_str().unwrap().contains("login failed"),
        "{o}"
    );
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlocked_database_shows_as_a_hanging_probe() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_REQUEST_TIMEOUT_MS", "250");
    w.wa.set_behaviour("/v1/stats/db", Behaviour::Hang);
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(
        o["reason"].as_str().unwrap().contains("/v1/stats/db"),
        "{o}"
    );
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_probe_failure_kind_is_a_failure() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    for (path, b) in [
        ("/v1/settings/application", Behaviour::Status(500)),
        ("/v1/services/message/gc", Behaviour::BadJson),
        ("/v1/settings/business/profile", Behaviour::Close),
        (
            "/v1/health",
            Behaviour::Json(200, json!({"nothing": "here"})),
        ),
    ] {
        w.wa.clear_behaviours();
        w.wa.set_behaviour(path, b.clone());
        let before = w.resets();
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(verdict(&run), "reset", "{path} {b:?}: {}", run.stdout);
        assert_eq!(w.resets(), before + 1, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_transient_failure_does_not_reset() {
    let w = World::new().await;
    for (path, b) in [
        ("/v1/users/login", Behaviour::Status(503)),
        ("/v1/users/login", Behaviour::Close),
        ("/v1/stats/app", Behaviour::Hang),
        ("/v1/health", Behaviour::Status(500)),
    ] {
        w.wa.fail_next(path, 1, b.clone());
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(run.code, Some(0), "{path} {b:?}: {}", run.stdout);
        let o = run.outcome();
        assert_eq!(o["verdict"], "healthy", "{path} {b:?}");
        assert_eq!(o["attempts"], 2, "{path} {b:?}");
    }
    assert_eq!(w.resets(), 0);
    assert!(
        w.g.compute
            .requests()
            .iter()
            .all(|r| r.method == "GET" && r.path.ends_with(&format!("/instances/{VM}"))),
        "only the instance was read"
    );
}
