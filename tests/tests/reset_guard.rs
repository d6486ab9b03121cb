//! What keeps resets few across the fleet, through the real binary: the VM's reset history
//! is read newest first within the grace window (however many resets are on record), the
//! fleet brake stops resets when many other VMs of the project were just reset, and a reset's
//! mail and event go out once Compute Engine accepted it, so a SIGTERM during the wait for
//! the operation loses neither.

mod common;

use common::{post_push, push_envelope, World, VM, ZONE};
use keepalive_tests::binaries::Served;
use keepalive_tests::smtp::{pki, Mode, SmtpServer};
use keepalive_tests::{ComputeRoute, Health, PubSubEmulator, FAKE_PROJECT};
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

fn reason(o: &Value) -> &str {
    o["reason"].as_str().unwrap_or_default()
}

/// A world whose client is down on its one attempt, with `grace_s` of boot grace.
async fn down_world(grace_s: &str) -> World {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", grace_s);
    w.wa.set_health(Health::Single("disconnected"));
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_2100_resets_on_record_the_newest_decides() {
    let w = down_world("600").await;
    let now = OffsetDateTime::now_utc();
    // 2,099 old resets, one a minute from two hours ago back, and the newest a minute ago:
    // read oldest first, 4 pages of 500 would never reach it.
    for i in 0..2099 {
        let at = now - time::Duration::hours(2) - time::Duration::minutes(i);
        w.g.compute
            .add_operation(FAKE_PROJECT, ZONE, VM, "reset", "DONE", at);
    }
    let newest = w.g.compute.add_operation(
        FAKE_PROJECT,
        ZONE,
        VM,
        "reset",
        "DONE",
        now - time::Duration::seconds(60),
    );
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "grace", "{o}");
    // The only reset within the grace window is the newest.
    assert!(reason(&o).contains("VM was reset"), "{o}");
    assert_eq!(w.resets(), 0);
    // One page, newest first, within the window.
    let lists: Vec<_> =
        w.g.compute
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/operations"))
            .collect();
    assert_eq!(lists.len(), 1, "{lists:?}");
    let q = lists[0].query_param("orderBy").unwrap_or_default();
    assert_eq!(q, "creationTimestamp desc");
    let filter = lists[0].query_param("filter").unwrap_or_default();
    assert!(filter.contains("insertTime >"), "{filter}");
    assert!(w.g.compute.operation(&newest).is_some());
}

/// Seeds a reset of another VM of the project, `minutes_ago`, in `zone`.
fn reset_elsewhere(w: &World, n: usize, zone: &str, minutes_ago: i64) {
    let at = OffsetDateTime::now_utc() - time::Duration::minutes(minutes_ago);
    w.g.compute.add_operation(
        FAKE_PROJECT,
        zone,
        &format!("whatsapp-other-{n}"),
        "reset",
        "DONE",
        at,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_resets_in_ten_minutes_elsewhere_stop_the_next() {
    let mut w = down_world("0").await;
    // Four other VMs reset in the last ten minutes, in two zones; one more long ago.
    for (n, zone) in ["europe-west3-a", "europe-west3-b", ZONE, "us-east1-b"]
        .into_iter()
        .enumerate()
    {
        reset_elsewhere(&w, n, zone, 2 + n as i64);
    }
    reset_elsewhere(&w, 9, ZONE, 30);
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "reset", "four are not enough: {o}");
    assert_eq!(w.resets(), 1);

    // A fifth, in yet another zone: the brake holds, naming the count.
    let vm2 = "whatsapp-4915112345679";
    w.g.compute.add_instance(
        FAKE_PROJECT,
        ZONE,
        vm2,
        "RUNNING",
        OffsetDateTime::now_utc() - time::Duration::days(1),
    );
    reset_elsewhere(&w, 4, "asia-east1-a", 1);
    let mut p = w.payload();
    p["vm"] = json!(vm2);
    let run = w.check(&p, &[]).await;
    assert_eq!(run.code, Some(1));
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    // The first VM's own reset counts for the second: six others.
    assert!(reason(&o).contains("fleet brake: 6 other VMs"), "{o}");
    assert_eq!(w.g.compute.resets(vm2), 0);
    let aggregated = w.g.compute.route_count(ComputeRoute::AggregatedOperations);
    assert!(aggregated >= 2, "{aggregated}");

    // 0 turns the brake off.
    w.set_env("KEEPALIVE_BRAKE_RESETS", "0");
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert_eq!(w.g.compute.resets(vm2), 1);
    assert_eq!(
        w.g.compute.route_count(ComputeRoute::AggregatedOperations),
        aggregated,
        "not even read"
    );
}

/// Eight VMs down at once, one process: the brake (3) counts the resets its own concurrent
/// checks issue. Compute answers each reset late, so without the project's turn every check
/// would read an empty history before the first reset landed and reset its VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_down_vms_in_one_process_resets_no_more_than_the_brake_allows() {
    let mut w = down_world("0").await;
    w.set_env("KEEPALIVE_BRAKE_RESETS", "3");
    w.g.compute
        .delay_always(ComputeRoute::Reset, Duration::from_millis(300));
    let vms: Vec<String> = (0..8)
        .map(|i| format!("whatsapp-49151000000{i:02}"))
        .collect();
    for vm in &vms {
        w.g.compute.add_instance(
            FAKE_PROJECT,
            ZONE,
            vm,
            "RUNNING",
            OffsetDateTime::now_utc() - time::Duration::days(1),
        );
    }
    let env = w.env.clone();
    let s = tokio::task::spawn_blocking(move || Served::start(&env))
        .await
        .unwrap();
    let url = s.url();
    let posts = vms.iter().map(|vm| {
        let mut p = w.payload();
        p["vm"] = json!(vm);
        let url = url.clone();
        async move { post_push(&url, &p).await }
    });
    let answers = futures::future::join_all(posts).await;
    let verdicts: Vec<String> = answers
        .iter()
        .map(|(_, o)| o["verdict"].as_str().unwrap_or("?").to_string())
        .collect();
    let reset: usize = vms.iter().map(|vm| w.g.compute.resets(vm)).sum();
    assert_eq!(reset, 3, "{verdicts:?}");
    assert_eq!(verdicts.iter().filter(|v| *v == "reset").count(), 3);
    let braked: Vec<&Value> = answers
        .iter()
        .map(|(_, o)| o)
        .filter(|o| reason(o).contains("fleet brake: 3 other VMs"))
        .collect();
    assert_eq!(braked.len(), 5, "{answers:?}");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brake_that_cannot_be_read_holds() {
    let w = down_world("0").await;
    w.g.compute
        .fail_always(ComputeRoute::AggregatedOperations, 403);
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(reason(&o).contains("compute.globalOperations.list"), "{o}");
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_reset_wait_loses_neither_mail_nor_event() {
    const USER: &str = "relay";
    const PASSWORD: &str = "Relay-Passw0rd!";
    const TOPIC: &str = "projects/acme-ops/topics/keepalive-events";
    const READ_BACK: &str = "projects/acme-ops/subscriptions/test-read-back";
    let mut w = down_world("0").await;
    let mut smtp = SmtpServer::start(Mode::StartTls, USER, PASSWORD).await;
    w.set_env(
        "KEEPALIVE_SMTP_CA_FILE",
        &pki().await.ca_file.display().to_string(),
    );
    let pubsub = PubSubEmulator::new();
    pubsub.add_topic(TOPIC);
    pubsub.add_pull_subscription(READ_BACK, TOPIC);
    w.set_env("PUBSUB_EMULATOR_HOST", &pubsub.host());
    w.set_env("KEEPALIVE_EVENTS_TOPIC", TOPIC);
    // The reset's operation never finishes: the check waits for it until its deadline.
    w.g.compute.set_op_polls_to_done(1_000_000);
    w.g.compute.set_wait_completes(false);
    let mut p = w.payload();
    for (k, v) in [
        ("smtpHost", smtp.host()),
        ("smtpUsername", USER.into()),
        ("smtpPassword", PASSWORD.into()),
        ("smtpFrom", "keepalive@example.org".into()),
        ("smtpTo", "ops@example.net".into()),
    ] {
        p[k] = json!(v);
    }
    let env = w.env.clone();
    let s = tokio::task::spawn_blocking(move || Served::start(&env))
        .await
        .unwrap();
    // The push: its answer never comes (the process exits while the check waits).
    let url = format!("{}/", s.url());
    let body = push_envelope(&p).to_string();
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(60))
            .body(body)
            .send()
            .await;
    });
    // Once the wait for the operation has begun, SIGTERM.
    let waiting = async {
        while w.g.compute.route_count(ComputeRoute::WaitOperation) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the check never waited for its reset");
    let (code, _, logs) = tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(w.resets(), 1);

    let mail = smtp.wait_for("message").await;
    let subject = mail["subject"].as_str().unwrap_or_default();
    assert!(
        subject.starts_with(&format!("[keepalive] VM {VM} reset")),
        "{subject}"
    );
    smtp.settle(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 1);
    let events = pubsub.pull(READ_BACK);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = events[0].json().expect("the event is JSON");
    assert_eq!(event["type"], "keepalive.reset", "{event}");
    assert!(event["operation"].as_str().is_some(), "{event}");
}
