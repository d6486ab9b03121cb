//! Graph's error classes: 190, 10 and 200-299, 100 are alerts at once (no retry); the
//! throttling and temporary codes and 5xx are retried within the deadline, then the check
//! could not be completed (`check` exit 2, `serve` 503). `debug_token` failing otherwise only
//! makes the expiry unknown.

use crate::world::*;
use keepalive_tests::{FakeToken, GraphFault};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_token_is_an_alert_without_retries() {
    for (name, token) in [
        ("expired", FakeToken::valid(APP).expired()),
        ("invalid", FakeToken::valid(APP).invalid()),
    ] {
        let w = World::new().await;
        w.graph.add_token(ACCESS_TOKEN, token);
        let run = w.check(&w.payload(), &[]).await;
        let o = run.outcome();
        assert_eq!(o["verdict"], "alert", "{name}: {o}");
        assert_eq!(kinds(&o), ["token"], "{name}: {o}");
        assert_eq!(run.code, Some(1));
        let detail = o["findings"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("190"), "{name}: {detail}");
        assert_eq!(w.graph.count("GET", PHONE), 1, "{name}: not retried");
        w.assert_tokens_only_where_allowed();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_an_alert_without_retries() {
    // The token lacks the WABA (code 200 on the number and the WABA).
    let w = World::new().await;
    w.graph
        .add_token(ACCESS_TOKEN, FakeToken::valid(APP).without_permission());
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(
        kinds(&o).iter().all(|k| k == "permission") && !kinds(&o).is_empty(),
        "{o}"
    );
    assert!(o["reason"].as_str().unwrap().contains("200"), "{o}");
    assert_eq!(w.graph.count("GET", PHONE), 1);

    for code in [10, 200, 250, 299] {
        let w = World::new().await;
        w.graph.fail_always(PHONE, GraphFault::error(code));
        let run = w.check(&w.payload(), &[]).await;
        let o = run.outcome();
        assert_eq!(kinds(&o), ["permission"], "{code}: {o}");
        assert!(
            o["findings"][0]["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("code {code}")),
            "{o}"
        );
        assert_eq!(w.graph.count("GET", PHONE), 1, "{code}: not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_a_request_alert_without_retries() {
    let w = World::new().await;
    let mut p = w.payload();
    p["wabaId"] = serde_json::json!("555000111");
    w.graph.fail_always("555000111", GraphFault::error(100));
    let run = w.check(&p, &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(kinds(&o).contains(&"request".to_string()), "{o}");
    assert!(o["reason"].as_str().unwrap().contains("code 100"), "{o}");
    assert_eq!(w.graph.count("GET", "555000111/subscribed_apps"), 1);
    assert_eq!(run.code, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_are_retried_then_pass() {
    let faults = [
        ("app limit (4)", GraphFault::error(4)),
        ("WABA limit (80007)", GraphFault::error(80007)),
        ("throughput (130429)", GraphFault::error(130429)),
        ("custom limit (613)", GraphFault::error(613)),
        ("user limit (17)", GraphFault::error(17)),
        ("unknown (1)", GraphFault::error(1)),
        ("service (2)", GraphFault::error(2)),
        ("page limit (32)", GraphFault::error(32)),
        ("502", GraphFault::Status(502)),
        ("503", GraphFault::Status(503)),
        (
            "slower than the request timeout",
            GraphFault::Delay(Duration::from_millis(1500)),
        ),
    ];
    for (name, fault) in faults {
        let w = World::new().await;
        w.graph.fail_next(PHONE, 2, fault);
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(
            verdict(&run),
            "healthy",
            "{name}: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert_eq!(run.code, Some(0), "{name}");
        assert_eq!(w.graph.count("GET", PHONE), 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_until_the_deadline_could_not_be_completed() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_DEADLINE_S", "3");
    w.graph.fail_always(WABA, GraphFault::error(80007));
    let started = std::time::Instant::now();
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("80007"), "{v}");
    // Bounded by the deadline, not the attempts (a generous bound: the machine may be busy).
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(w.graph.count("GET", &format!("{WABA}/subscribed_apps")) > 1);
    assert!(w.writes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_token_failing_only_makes_the_expiry_unknown() {
    for fault in [
        GraphFault::error(10),
        GraphFault::error(4),
        GraphFault::Status(500),
        GraphFault::error(100),
    ] {
        let w = World::new().await;
        w.graph.fail_always("debug_token", fault.clone());
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(verdict(&run), "healthy", "{fault:?}: {}", run.stdout);
        assert_eq!(run.code, Some(0));
    }
    // ... but a dead token there is a dead token.
    let w = World::new().await;
    w.graph.fail_always("debug_token", GraphFault::error(190));
    assert_eq!(
        kinds(&w.check(&w.payload(), &[]).await.outcome()),
        ["token"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_that_cannot_be_read() {
    let w = World::new().await;
    let mut p = w.payload();
    p["accessTokenSecret"] = serde_json::json!(format!(
        "projects/{}/secrets/nope/versions/1",
        keepalive_tests::FAKE_PROJECT
    ));
    let run = w.check(&p, &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(kinds(&o), ["token"]);
    assert!(
        o["reason"].as_str().unwrap().contains("accessTokenSecret"),
        "{o}"
    );
    assert_eq!(
        w.graph.request_count(),
        0,
        "nothing asked of Meta without a token"
    );

    let w = World::new().await;
    let mut p = w.payload();
    p["webhookVerifyTokenSecret"] = serde_json::json!(format!(
        "projects/{}/secrets/nope/versions/1",
        keepalive_tests::FAKE_PROJECT
    ));
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(kinds(&o), ["handshake"], "{o}");
    assert_eq!(w.hook.handshake_count(), 0);
}
