//! The repairs: only with `"repair": true`, never under `--dry-run`, subscription first and
//! then the number's override, both read back; a repair that does not take is an alert;
//! nothing else is ever written (no register, no deregister).

use crate::world::*;
use keepalive_tests::GraphFault;
use serde_json::json;

fn subscriptions_path() -> String {
    format!("{WABA}/subscribed_apps")
}

/// The only writes a repair may make.
fn assert_only_repair_writes(w: &World) {
    for write in w.writes() {
        assert!(
            write == format!("POST {}", subscriptions_path()) || write == format!("POST {PHONE}"),
            "unexpected write {write}"
        );
    }
    let n = w.graph.number(PHONE).unwrap();
    assert!(n.register_calls.is_empty() && n.code_requests == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_is_put_back_and_read_back() {
    let w = World::new().await;
    w.graph.unsubscribe(WABA, APP);
    let run = w.check(&w.repairing(), &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "repaired", "{o}");
    assert_eq!(kinds(&o), ["subscription"]);
    assert_eq!(o["findings"][0]["severity"], "repaired");
    assert_eq!(o["repairs"][0]["kind"], "subscription");
    assert_eq!(o["repairs"][0]["result"], "done");
    assert_eq!(w.graph.subscribed_apps(WABA), [APP]);
    assert_eq!(w.writes(), [format!("POST {}", subscriptions_path())]);
    // Read back after the write.
    assert_eq!(w.graph.count("GET", &subscriptions_path()), 2);
    assert_only_repair_writes(&w);
    w.assert_tokens_only_where_allowed();

    // The next check finds nothing to do.
    let run = w.check(&w.repairing(), &[]).await;
    assert_eq!(verdict(&run), "healthy");
    assert_eq!(run.code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_override_is_put_back_with_the_verify_token() {
    let w = World::new().await;
    w.graph.update_number(PHONE, |n| {
        n.webhook_override = Some("https://old-bot.example.com/hook".into())
    });
    let run = w.check(&w.repairing(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "repaired", "{o}");
    assert_eq!(kinds(&o), ["webhook"]);
    assert_eq!(o["repairs"][0]["result"], "done");
    assert_eq!(
        w.graph.number(PHONE).unwrap().webhook_override.as_deref(),
        Some(w.hook.callback_url().as_str())
    );
    // The override's body carries the URL and the verify token (Meta's handshake ran).
    let post = w
        .graph
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with(PHONE))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(
        body["webhook_configuration"]["override_callback_uri"],
        w.hook.callback_url()
    );
    assert_eq!(body["webhook_configuration"]["verify_token"], VERIFY_TOKEN);
    assert_eq!(w.graph.count("GET", PHONE), 2, "read back");
    assert_only_repair_writes(&w);
    w.assert_tokens_only_where_allowed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_first_then_the_override() {
    let w = World::new().await;
    w.graph.unsubscribe(WABA, APP);
    w.graph
        .set_waba_override(WABA, Some("https://elsewhere.example.com/"));
    let o = w.check(&w.repairing(), &[]).await.outcome();
    assert_eq!(o["verdict"], "repaired", "{o}");
    assert_eq!(
        w.writes(),
        [
            format!("POST {}", subscriptions_path()),
            format!("POST {PHONE}")
        ]
    );
    let results: Vec<&str> = o["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["done", "done"]);
    assert_only_repair_writes(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_changed_without_repair_or_under_dry_run() {
    for (name, payload_repair, args) in [
        ("repair absent", None, vec![]),
        ("repair false", Some(false), vec![]),
        ("dry run", Some(true), vec!["--dry-run"]),
    ] {
        let w = World::new().await;
        w.graph.unsubscribe(WABA, APP);
        w.graph.update_number(PHONE, |n| {
            n.webhook_override = Some("https://old-bot.example.com/hook".into())
        });
        let mut p = w.payload();
        if let Some(r) = payload_repair {
            p["repair"] = json!(r);
        }
        let run = w.check(&p, &args).await;
        let o = run.outcome();
        assert_eq!(o["verdict"], "alert", "{name}: {o}");
        assert_eq!(run.code, Some(1), "{name}");
        assert!(w.writes().is_empty(), "{name}: {:?}", w.writes());
        assert!(w.graph.subscribed_apps(WABA).is_empty(), "{name}");
        if name == "dry run" {
            let results: Vec<&str> = o["repairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["result"].as_str().unwrap())
                .collect();
            assert_eq!(results, ["dry run", "dry run"], "{o}");
        } else {
            assert_eq!(o["repairs"], json!([]), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_repair_is_an_alert() {
    let w = World::new().await;
    w.graph.unsubscribe(WABA, APP);
    w.graph.fail_always(
        &format!("POST {}", subscriptions_path()),
        GraphFault::error(200),
    );
    let run = w.check(&w.repairing(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(run.code, Some(1));
    assert_eq!(o["repairs"][0]["result"], "failed", "{o}");
    assert!(
        o["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("code 200"),
        "{o}"
    );
    assert!(w.graph.subscribed_apps(WABA).is_empty());
    // Tried once (a permission is not retried), the override after it not at all.
    assert_eq!(w.writes(), [format!("POST {}", subscriptions_path())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_that_does_not_take_is_an_alert() {
    let w = World::new().await;
    w.graph.unsubscribe(WABA, APP);
    w.graph.fail_next(
        &format!("POST {}", subscriptions_path()),
        1,
        GraphFault::Ignore,
    );
    let o = w.check(&w.repairing(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(o["repairs"][0]["result"], "not taken", "{o}");
    assert!(
        o["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("did not take"),
        "{o}"
    );

    let w = World::new().await;
    w.graph.update_number(PHONE, |n| {
        n.webhook_override = Some("https://old-bot.example.com/hook".into())
    });
    w.graph
        .fail_next(&format!("POST {PHONE}"), 1, GraphFault::Ignore);
    let o = w.check(&w.repairing(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(o["repairs"][0]["result"], "not taken", "{o}");
    assert!(
        o["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("old-bot.example.com"),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_app_than_the_tokens_is_never_subscribed() {
    let w = World::new().await;
    let mut p = w.repairing();
    p["appId"] = json!(OTHER_APP);
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(
        o["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not the token's app"),
        "{o}"
    );
    assert!(w.writes().is_empty(), "{:?}", w.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_override_only_with_a_passing_handshake_and_a_verify_token() {
    let w = World::new().await;
    w.graph.update_number(PHONE, |n| {
        n.webhook_override = Some("https://old-bot.example.com/hook".into())
    });
    // Our own handshake fails: Meta would refuse the override, so it is not attempted.
    w.hook
        .fail_always(keepalive_tests::WebhookFault::Status(403));
    let o = w.check(&w.repairing(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(kinds(&o), ["webhook", "handshake"], "{o}");
    assert!(w.writes().is_empty(), "{:?}", w.writes());

    // Without the verify token the override cannot be set: not attempted.
    w.hook.clear_faults();
    let mut p = w.repairing();
    p.as_object_mut()
        .unwrap()
        .remove("webhookVerifyTokenSecret");
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(o["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("webhookVerifyTokenSecret"));
    assert!(w.writes().is_empty(), "{:?}", w.writes());

    // Meta refuses the override (its own handshake, 2200): an alert.
    w.graph
        .fail_always(&format!("POST {PHONE}"), GraphFault::error(2200));
    let o = w.check(&w.repairing(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(o["repairs"][0]["result"], "failed", "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_repair_is_retried() {
    let w = World::new().await;
    w.graph.unsubscribe(WABA, APP);
    w.graph.fail_next(
        &format!("POST {}", subscriptions_path()),
        2,
        GraphFault::error(80007),
    );
    let o = w.check(&w.repairing(), &[]).await.outcome();
    assert_eq!(o["verdict"], "repaired", "{o}");
    assert_eq!(w.graph.count("POST", &subscriptions_path()), 3);
    assert_only_repair_writes(&w);
}
