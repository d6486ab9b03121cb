//! What the client reports: healthy (only the instance read), each gateway status (read
//! case-insensitively), the high-availability shape.

use crate::common::{World, VM, ZONE};
use crate::{assert_only_the_instance_was_read, verdict};
use keepalive_tests::{Health, FAKE_PROJECT};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_client_exits_0_after_only_reading_the_instance() {
    let w = World::new().await;
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "healthy");
    assert_eq!(o["vm"], VM);
    assert_eq!(o["zone"], ZONE);
    assert_eq!(o["project"], FAKE_PROJECT);
    assert_eq!(o["attempts"], 1);
    assert_eq!(w.wa.login_count(), 1);
    for (m, p) in [
        ("GET", "/v1/stats/app"),
        ("GET", "/v1/stats/db"),
        ("GET", "/v1/settings/application"),
        ("GET", "/v1/settings/profile/about"),
        ("GET", "/v1/settings/business/profile"),
        ("PUT", "/v1/services/message/gc"),
        ("GET", "/v1/health"),
    ] {
        assert_eq!(w.wa.count(m, p), 1, "{m} {p}");
    }
    assert_only_the_instance_was_read(&w);
    // Probes carry the bearer token the login gave, never Basic credentials.
    let probe =
        w.wa.requests()
            .into_iter()
            .find(|r| r.path == "/v1/stats/db")
            .unwrap();
    assert!(probe
        .header("authorization")
        .unwrap()
        .starts_with("Bearer "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_status() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "2");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    let cases = [
        ("connected", "healthy", 0, 0),
        ("connecting", "healthy", 0, 0),
        ("uninitialized", "reset", 1, 1),
        ("disconnected", "reset", 1, 1),
        ("unregistered", "alert", 1, 0),
    ];
    for (status, want, code, resets) in cases {
        let before = w.resets();
        w.wa.set_health(Health::Single(status));
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(verdict(&run), want, "{status}: {}", run.stdout);
        assert_eq!(run.code, Some(code), "{status}");
        assert_eq!(w.resets() - before, resets, "{status}");
        if status == "unregistered" {
            assert!(run.outcome()["reason"]
                .as_str()
                .unwrap()
                .contains("unregistered"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_availability_shape() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    // The masters report disconnected in HA mode; one coreapp connected means up.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-1:primary_master", "disconnected", "primary_master"),
        ("wa-2:secondary_master", "disconnected", "secondary_master"),
        ("wa-3:coreapp", "connected", "coreapp"),
        ("wa-4:coreapp", "disconnected", "coreapp"),
    ]));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "healthy", "{}", run.stdout);
    assert_eq!(w.resets(), 0);

    // Multiconnect: shards and the master connected.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-1:primary_master", "connected", "primary_master"),
        ("wa-3:coreapp", "connected", "coreapp"),
        ("wa-4:coreapp", "connected", "coreapp"),
    ]));
    assert_eq!(verdict(&w.check(&w.payload(), &[]).await), "healthy");

    // No coreapp up: down, even with a master connected.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-1:primary_master", "connected", "primary_master"),
        ("wa-3:coreapp", "disconnected", "coreapp"),
    ]));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "reset", "{}", run.stdout);
    assert!(run.outcome()["reason"]
        .as_str()
        .unwrap()
        .contains("no coreapp"));
    assert_eq!(w.resets(), 1);

    // Unregistered on any node: a person must act.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-3:coreapp", "connected", "coreapp"),
        ("wa-4:coreapp", "unregistered", "coreapp"),
    ]));
    assert_eq!(verdict(&w.check(&w.payload(), &[]).await), "alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status_is_read_case_insensitively() {
    let w = World::new().await;
    w.wa.set_health(Health::Raw(
        json!({"health": {"gateway_status": "Connected"}}),
    ));
    assert_eq!(verdict(&w.check(&w.payload(), &[]).await), "healthy");
}
