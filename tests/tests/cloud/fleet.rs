//! Fleet messages (`cloud-api-contract.md`, "Fleet messages"), end to end: reads in Graph
//! batches of at most 50, each WABA's `subscribed_apps` and the token's `debug_token` once, a
//! failing batch item only its number's, `unknown` entries, events per number, 400 naming
//! `numbers[i].field`, 503 only when nothing could be checked.

use crate::world::*;
use keepalive_tests::binaries::Served;
use keepalive_tests::GraphFault;
use serde_json::{json, Value};

const TOPIC: &str = "projects/acme-ops/topics/keepalive-events";
/// Where the test reads the events back.
const READ_BACK: &str = "projects/acme-ops/subscriptions/test-read-back";

/// `n` healthy numbers spread over `wabas` WABAs (the token's app subscribed to each), and
/// the fleet payload listing them (the token as the top-level default).
fn fleet(w: &World, n: usize, wabas: usize) -> (Vec<String>, Value) {
    let ids: Vec<String> = (0..n).map(|i| format!("{}", 2_000_000 + i)).collect();
    let entries: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let waba = format!("{}", 9_000_000 + i % wabas);
            w.graph.add_number(id, &waba, &format!("+49 151 {i:07}"));
            w.graph.subscribe(&waba, APP);
            json!({"phoneNumberId": id, "wabaId": waba, "name": format!("tenant-{i}")})
        })
        .collect();
    let payload = json!({"accessTokenSecret": w.token_secret, "numbers": entries});
    (ids, payload)
}

fn verdicts(o: &Value) -> Vec<String> {
    o["outcomes"]
        .as_array()
        .unwrap_or_else(|| panic!("no outcomes: {o}"))
        .iter()
        .map(|e| e["verdict"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_is_read_in_batches_each_waba_and_token_once() {
    let w = World::new().await;
    let (ids, payload) = fleet(&w, 120, 3);
    let run = w.check(&payload, &[]).await;
    let o = run.outcome();
    assert_eq!(run.code, Some(0), "{o}");
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert_eq!(
        o["counts"],
        json!({"healthy": 120, "warning": 0, "repaired": 0, "alert": 0, "unknown": 0})
    );
    let outcomes = o["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 120);
    for (e, id) in outcomes.iter().zip(&ids) {
        assert_eq!(e["phoneNumberId"], id.as_str(), "in order: {e}");
        assert_eq!(e["verdict"], "healthy", "{e}");
        assert_eq!(e["qualityRating"], "GREEN", "{e}");
    }
    // 120 numbers and 3 WABAs: 123 reads in 3 batches, and one debug_token.
    assert_eq!(w.graph.request_count(), 4, "{:?}", w.graph.calls());
    assert_eq!(w.graph.count("POST", ""), 3);
    assert_eq!(w.graph.count("GET", "debug_token"), 1);
    for waba in ["9000000", "9000001", "9000002"] {
        assert_eq!(w.graph.count("GET", &format!("{waba}/subscribed_apps")), 1);
    }
    assert!(w
        .graph
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path != "debug_token")
        .all(|c| c.batched));
    // The token was read from Secret Manager once.
    let reads = w.g.secrets.requests();
    assert_eq!(
        reads
            .iter()
            .filter(|r| r.path.contains("meta-token"))
            .count(),
        1
    );
    w.assert_tokens_only_where_allowed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_verdicts_a_failing_item_affects_only_its_number_and_events_are_per_number() {
    let mut w = World::new().await;
    w.g.pubsub.add_topic(TOPIC);
    w.g.pubsub.add_pull_subscription(READ_BACK, TOPIC);
    let host = w.g.pubsub.host();
    w.set_env("PUBSUB_EMULATOR_HOST", &host);
    w.set_env("KEEPALIVE_EVENTS_TOPIC", TOPIC);
    let (ids, payload) = fleet(&w, 6, 2);
    // Graph refuses one item of the batch (unknown id): that number alone is an alert.
    w.graph.fail_always(&ids[1], GraphFault::error(100));
    w.graph
        .update_number(&ids[2], |n| n.quality_rating = "YELLOW".into());
    w.graph
        .update_number(&ids[4], |n| n.status = "FLAGGED".into());
    let run = w.check(&payload, &[]).await;
    let o = run.outcome();
    assert_eq!(run.code, Some(1), "{o}");
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(
        verdicts(&o),
        ["healthy", "alert", "warning", "healthy", "alert", "healthy"]
    );
    assert_eq!(
        o["counts"],
        json!({"healthy": 3, "warning": 1, "repaired": 0, "alert": 2, "unknown": 0})
    );
    assert_eq!(kinds(&o["outcomes"][1]), ["request"], "{o}");
    assert_eq!(kinds(&o["outcomes"][4]), ["status"], "{o}");
    // One log line per number, with the fields an alert policy's log filter matches
    // (`jsonPayload.kind`, `.verdict`, `.phoneNumberId`, `.findings`, ...).
    let lines = keepalive_tests::binaries::outcome_log_lines(&run.stderr);
    assert_eq!(lines.len(), 6, "{}", run.stderr);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["kind"], "cloud", "{line}");
        assert_eq!(line["phoneNumberId"], ids[i].as_str(), "{line}");
        assert_eq!(line["name"], format!("tenant-{i}"), "{line}");
        assert_eq!(line["verdict"], o["outcomes"][i]["verdict"], "{line}");
        assert!(
            line["wabaId"]
                .as_str()
                .is_some_and(|w| w.starts_with("900")),
            "{line}"
        );
    }
    assert_eq!(lines[4]["findings"], "status");
    assert_eq!(lines[4]["severity"], "ERROR");
    assert_eq!(lines[0]["findings"], "");
    // Not retried: one read of the refused number.
    assert_eq!(w.graph.count("GET", &ids[1]), 1);
    // One event per number that is not healthy.
    let mut published: Vec<String> =
        w.g.pubsub
            .pull(READ_BACK)
            .iter()
            .map(|m| m.attributes["phoneNumberId"].clone())
            .collect();
    published.sort();
    assert_eq!(published, [ids[1].clone(), ids[2].clone(), ids[4].clone()]);
    // Only a warning left: the fleet is a warning.
    w.graph.clear_faults();
    w.graph
        .update_number(&ids[4], |n| n.status = "CONNECTED".into());
    let run = w.check(&payload, &["--dry-run"]).await;
    assert_eq!(run.outcome()["verdict"], "warning");
    assert_eq!(run.code, Some(1));
    w.assert_tokens_only_where_allowed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_per_entry_and_secrets_read_once_even_with_one_probe_at_a_time() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_MAX_CONCURRENT_PROBES", "1");
    let (ids, mut payload) = fleet(&w, 5, 1);
    payload["webhookUrl"] = json!(w.hook.callback_url());
    payload["webhookVerifyTokenSecret"] = json!(w.verify_secret);
    let run = w.check(&payload, &[]).await;
    let o = run.outcome();
    assert_eq!(verdicts(&o), ["healthy"; 5], "{o}");
    assert_eq!(w.hook.handshake_count(), 5);
    let reads = w.g.secrets.requests();
    for secret in ["meta-token", "bot-verify-token"] {
        assert_eq!(
            reads.iter().filter(|r| r.path.contains(secret)).count(),
            1,
            "{secret}"
        );
    }
    // The bot of one number fails the handshake: that number alone is an alert.
    w.graph.update_number(&ids[3], |n| {
        n.webhook_override = Some("https://elsewhere.example.com/hook".into())
    });
    let o = w.check(&payload, &[]).await.outcome();
    assert_eq!(
        verdicts(&o),
        ["healthy", "healthy", "healthy", "alert", "healthy"]
    );
    assert_eq!(kinds(&o["outcomes"][3]), ["webhook"], "{o}");
    w.assert_tokens_only_where_allowed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_reads_keep_failing_is_unknown_and_does_not_worsen_the_verdict() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_DEADLINE_S", "4");
    let (ids, payload) = fleet(&w, 4, 2);
    w.graph.fail_always(&ids[2], GraphFault::Status(503));
    let run = w.check(&payload, &[]).await;
    let o = run.outcome();
    assert_eq!(run.code, Some(0), "every checked entry is healthy: {o}");
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert_eq!(verdicts(&o), ["healthy", "healthy", "unknown", "healthy"]);
    assert_eq!(o["counts"]["unknown"], 1);
    let unknown = &o["outcomes"][2];
    assert_eq!(unknown["phoneNumberId"], ids[2].as_str());
    assert!(
        unknown["error"].as_str().unwrap().contains("503"),
        "{unknown}"
    );
    // Retried: only the failing item went out again.
    assert!(w.graph.count("GET", &ids[2]) > 1);
    assert_eq!(w.graph.count("GET", &ids[0]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_checked_is_503_and_check_exits_2() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_DEADLINE_S", "4");
    let (_, payload) = fleet(&w, 3, 1);
    // The batch call itself keeps failing.
    w.graph.fail_always("", GraphFault::Status(503));
    let run = w.check(&payload, &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let err = run.outcome()["error"].as_str().unwrap().to_string();
    assert!(err.contains("none of the 3 numbers"), "{err}");
    let s = Served::start(&w.env);
    let (status, body) = post(
        &s.url(),
        &[("content-type", "application/json")],
        push_envelope(&payload).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    w.assert_no_secrets("serve's logs", &s.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_entry_or_too_many_is_400_naming_it_and_nothing_is_asked() {
    let w = World::new().await;
    let (_, good) = fleet(&w, 3, 1);
    let s = Served::start(&w.env);
    let mut too_many = good.clone();
    too_many["numbers"] = (0..5_001)
        .map(|i| json!({"phoneNumberId": format!("{}", 3_000_000 + i), "wabaId": "9000000"}))
        .collect();
    let mut cases: Vec<(&str, Value)> = vec![("numbers", too_many)];
    for (field, entry) in [
        (
            "numbers[1].wabaId",
            json!({"phoneNumberId": "2000001", "wabaId": "x9"}),
        ),
        ("numbers[1].phoneNumberId", json!({"wabaId": "9000000"})),
        (
            "numbers[1].webhookUrl",
            json!({"phoneNumberId": "2000001", "wabaId": "9000000", "webhookUrl": "http://bot"}),
        ),
        (
            "numbers[1].accessToken",
            json!({"phoneNumberId": "2000001", "wabaId": "9000000", "accessToken": ACCESS_TOKEN}),
        ),
    ] {
        let mut p = good.clone();
        p["numbers"][1] = entry;
        cases.push((field, p));
    }
    let mut empty = good.clone();
    empty["numbers"] = json!([]);
    cases.push(("numbers", empty));
    for (field, p) in cases {
        let run = w.check(&p, &[]).await;
        assert_eq!(run.code, Some(2), "{field}: {}", run.stdout);
        assert_eq!(run.outcome()["field"], field, "{}", run.stdout);
        let (status, body) = post(
            &s.url(),
            &[("content-type", "application/json")],
            push_envelope(&p).to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
        w.assert_no_secrets("a 400", &body.to_string());
    }
    assert_eq!(w.graph.request_count(), 0, "nothing was asked of Meta");
    w.assert_no_secrets("serve's logs", &s.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_repairs_per_entry_and_never_under_dry_run() {
    let w = World::new().await;
    // Every write but the batch calls themselves (which only read).
    let writes = || -> Vec<String> { w.writes().into_iter().filter(|c| c != "POST ").collect() };
    let (ids, mut payload) = fleet(&w, 3, 1);
    payload["repair"] = json!(true);
    w.graph.unsubscribe("9000000", APP);
    // Under --dry-run: the verdict without repairs, and nothing written.
    let o = w.check(&payload, &["--dry-run"]).await.outcome();
    assert_eq!(verdicts(&o), ["alert"; 3], "{o}");
    assert!(writes().is_empty(), "{:?}", writes());
    // For real: the subscription is put back and read back; every number says so.
    let run = w.check(&payload, &[]).await;
    let o = run.outcome();
    assert_eq!(run.code, Some(1));
    assert_eq!(o["verdict"], "repaired", "{o}");
    assert_eq!(verdicts(&o), ["repaired"; 3], "{o}");
    assert_eq!(w.graph.subscribed_apps("9000000"), [APP]);
    assert!(writes().iter().all(|c| c == "POST 9000000/subscribed_apps"));
    // Nothing else changed: no override, no register.
    for id in &ids {
        assert_eq!(w.graph.count("POST", &format!("{id}/register")), 0);
        assert!(w.graph.number(id).unwrap().webhook_override.is_none());
    }
    // The next check finds all healthy and writes nothing more.
    let written = writes().len();
    let o = w.check(&payload, &[]).await.outcome();
    assert_eq!(verdicts(&o), ["healthy"; 3], "{o}");
    assert_eq!(writes().len(), written);
}
