//! `KEEPALIVE_EVENTS_TOPIC`: the real `keepalive` binary publishes one JSON event per reset
//! and per alert through `google-cloud-pubsub` (gRPC) to the real Pub/Sub emulator found
//! through `PUBSUB_EMULATOR_HOST` (read back from a pull subscription); none for a healthy
//! client, none on a dry run; a failed publish is reported and changes nothing else.

mod common;

use common::{World, VM, ZONE};
use keepalive_tests::binaries::Served;
use keepalive_tests::cpus::CpuSplit;
use keepalive_tests::{Behaviour, Health, PubSubEmulator, FAKE_PROJECT};
use serde_json::Value;

const TOPIC: &str = "projects/acme-ops/topics/keepalive-events";
/// Where the tests read the events back.
const READ_BACK: &str = "projects/acme-ops/subscriptions/test-read-back";

async fn world_with_events() -> (World, PubSubEmulator) {
    let mut w = World::new().await;
    let ps = PubSubEmulator::new();
    ps.add_topic(TOPIC);
    ps.add_pull_subscription(READ_BACK, TOPIC);
    w.set_env("PUBSUB_EMULATOR_HOST", &ps.host());
    w.set_env("KEEPALIVE_EVENTS_TOPIC", TOPIC);
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    (w, ps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_publishes_one_event() {
    let (w, ps) = world_with_events().await;
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset");
    assert_eq!(w.resets(), 1);

    let published = ps.pull(READ_BACK);
    assert_eq!(published.len(), 1, "{published:?}");
    let m = &published[0];
    assert_eq!(
        o["event"],
        Value::String(format!("published {}", m.message_id))
    );
    let e = m.json().expect("the event is JSON");
    assert_eq!(e["type"], "keepalive.reset");
    assert_eq!(e["tenant"], VM);
    assert_eq!(e["vm"], VM);
    assert_eq!(e["zone"], ZONE);
    assert_eq!(e["project"], FAKE_PROJECT);
    assert_eq!(e["verdict"], "reset");
    assert_eq!(e["reason"], o["reason"]);
    assert_eq!(e["time"], o["checkedAt"]);
    assert_eq!(e["operation"], o["operation"]);
    assert!(e["reason"].as_str().unwrap().contains("login"), "{e}");
    assert_eq!(m.attributes["type"], "keepalive.reset");
    assert_eq!(m.attributes["verdict"], "reset");
    assert_eq!(m.attributes["vm"], VM);
    // Nothing secret in the event.
    w.assert_no_secrets(&m.text());
    for v in m.attributes.values() {
        w.assert_no_secrets(v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_publishes_one_event_and_healthy_or_dry_run_none() {
    let (w, ps) = world_with_events().await;
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.outcome()["verdict"], "healthy");
    assert!(run.outcome().get("event").is_none(), "{}", run.stdout);
    assert!(ps.pull(READ_BACK).is_empty());

    w.wa.set_health(Health::Single("unregistered"));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.outcome()["verdict"], "alert");
    let published = ps.pull(READ_BACK);
    assert_eq!(published.len(), 1);
    let e = published[0].json().unwrap();
    assert_eq!(e["type"], "keepalive.alert");
    assert_eq!(e["verdict"], "alert");
    assert!(e.get("operation").is_none(), "{e}");

    // A dry run announces nothing.
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    let run = w.check(&w.payload(), &["--dry-run"]).await;
    assert_eq!(run.outcome()["verdict"], "reset");
    assert!(ps.pull(READ_BACK).is_empty());
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_reported_and_changes_nothing_else() {
    let (mut w, ps) = world_with_events().await;
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    // A topic that does not exist: NOT_FOUND, not retried by the crate.
    w.set_env(
        "KEEPALIVE_EVENTS_TOPIC",
        "projects/acme-ops/topics/no-such-topic",
    );
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{}", run.stdout);
    assert_eq!(run.code, Some(1));
    assert_eq!(w.resets(), 1);
    let event = o["event"].as_str().unwrap();
    assert!(event.starts_with("failed: "), "{event}");
    assert!(event.contains("NOT_FOUND"), "{event}");
    assert!(ps.pull(READ_BACK).is_empty());
    assert!(run.stderr.contains("event not published"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_pubsub_costs_at_most_the_deadline() {
    let mut w = World::new().await;
    // A Pub/Sub that accepts connections and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    w.set_env(
        "PUBSUB_EMULATOR_HOST",
        &hanging.local_addr().unwrap().to_string(),
    );
    w.set_env("KEEPALIVE_EVENTS_TOPIC", TOPIC);
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.set_env("KEEPALIVE_DEADLINE_S", "3");
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    let run = w.check(&w.payload(), &[]).await;
    drop(hanging);
    let o = run.outcome();
    // The reset happened and is reported; the event is reported as not published.
    assert_eq!(o["verdict"], "reset", "{}\n{}", run.stdout, run.stderr);
    assert_eq!(w.resets(), 1);
    // The publish gave up after what was left of the 3 s deadline (at least 1 s, at most
    // 3 s), not after the crate's own 10 minutes of retries. (Read from the outcome, not a
    // stopwatch: the first test of a run also builds the binary.)
    let event = o["event"].as_str().unwrap();
    let ms: u64 = event
        .strip_prefix("failed: not published within ")
        .and_then(|r| r.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("{event}"))
        .parse()
        .unwrap();
    assert!((1000..=3000).contains(&ms), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_too() {
    let (w, ps) = world_with_events().await;
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    let served = Served::start(&w.env);
    let (status, body) = common::post_push(&served.url(), &w.payload()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verdict"], "reset");
    assert!(
        body["event"].as_str().unwrap().starts_with("published "),
        "{body}"
    );
    assert_eq!(ps.pull(READ_BACK).len(), 1);
    let (code, _, logs) = served.terminate(std::time::Duration::from_secs(15));
    assert_eq!(code, Some(0));
    assert!(logs.contains("event published"), "{logs}");
    w.assert_no_secrets(&logs);
}

/// A Cloud Run instance deployed with `cpu: 1`: `serve` runs on one thread (a current-thread
/// runtime, `keepalive/src/main.rs`) and still checks, resets, publishes the event through
/// the gRPC client, and stops on SIGTERM with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_one_cpu_runs_on_one_thread_and_still_resets_publishes_and_stops() {
    let (w, ps) = world_with_events().await;
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    let one_cpu = CpuSplit::keepalive_on_one_cpu().expect("sched_getaffinity");
    let served = Served::start_on(&w.env, &["serve"], Some(&one_cpu));
    let threads = || status_count(served.pid(), "Threads");
    assert_eq!(threads(), Some(1), "one thread before the first check");
    let (status, body) = common::post_push(&served.url(), &w.payload()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verdict"], "reset");
    assert_eq!(w.resets(), 1);
    assert!(
        body["event"].as_str().unwrap().starts_with("published "),
        "{body}"
    );
    assert_eq!(ps.pull(READ_BACK).len(), 1);
    let (code, _, logs) = served.terminate(std::time::Duration::from_secs(15));
    assert_eq!(code, Some(0), "{logs}");
    w.assert_no_secrets(&logs);
}

/// A count field of `/proc/PID/status` (`Threads`).
fn status_count(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
}
