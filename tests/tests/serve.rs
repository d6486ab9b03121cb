//! `keepalive serve` through its HTTP contract: the three message forms, malformed input,
//! status codes, duplicate delivery to two processes, SIGTERM, JSON logs, no secrets.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{assert_json_logs, post, post_push, push_envelope, World, PASSWORD};
use keepalive_tests::binaries::Served;
use keepalive_tests::{Behaviour, ComputeRoute, Health};
use serde_json::{json, Value};
use std::time::Duration;

const EVENT_TYPE: &str = "google.cloud.pubsub.topic.v1.messagePublished";

fn binary_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-type", EVENT_TYPE),
        (
            "ce-source",
            "//pubsub.googleapis.com/projects/fake-project/topics/whatsapp-keepalive",
        ),
        ("ce-id", "1234567890"),
        ("ce-time", "2026-11-24T10:00:00Z"),
    ]
}

fn structured(payload: &Value) -> Vec<u8> {
    json!({
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": "//pubsub.googleapis.com/projects/fake-project/topics/whatsapp-keepalive",
        "id": "1234567891",
        "time": "2026-11-24T10:00:00Z",
        "datacontenttype": "application/json",
        "data": push_envelope(payload)
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_form_is_handled() {
    let w = World::new().await;
    let s = Served::start(&w.env);
    let p = w.payload();

    let (status, o) = post_push(&s.url(), &p).await;
    assert_eq!(
        (status, o["verdict"].as_str()),
        (200, Some("healthy")),
        "{o}"
    );

    let (status, o) = post(
        &s.url(),
        &binary_headers(),
        push_envelope(&p).to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, o["verdict"].as_str()),
        (200, Some("healthy")),
        "{o}"
    );

    let (status, o) = post(
        &s.url(),
        &[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )],
        structured(&p),
    )
    .await;
    assert_eq!(
        (status, o["verdict"].as_str()),
        (200, Some("healthy")),
        "{o}"
    );
    for key in ["vm", "zone", "project", "verdict", "reason"] {
        assert!(o.get(key).is_some(), "outcome lacks {key}: {o}");
    }
    assert_eq!(w.wa.successful_login_count(), 3);
    w.assert_no_secrets(&s.logs());
    assert_json_logs(&s.stdout.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_through_each_form() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    w.wa.set_health(Health::Single("disconnected"));
    let s = Served::start(&w.env);
    let p = w.payload();
    let (status, o) = post_push(&s.url(), &p).await;
    assert_eq!((status, o["verdict"].as_str()), (200, Some("reset")), "{o}");
    let (status, o) = post(
        &s.url(),
        &binary_headers(),
        push_envelope(&p).to_string().into_bytes(),
    )
    .await;
    assert_eq!((status, o["verdict"].as_str()), (200, Some("reset")), "{o}");
    let (status, o) = post(
        &s.url(),
        &[("content-type", "application/cloudevents+json")],
        structured(&p),
    )
    .await;
    assert_eq!((status, o["verdict"].as_str()), (200, Some("reset")), "{o}");
    assert_eq!(w.resets(), 3);
    w.assert_no_secrets(&s.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_400_naming_the_problem_and_never_resets() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    let s = Served::start(&w.env);
    let json_ct = [("content-type", "application/json")];
    let enc = |v: &Value| STANDARD.encode(v.to_string());
    let with = |k: &str, v: Value| {
        let mut p = w.payload();
        if v.is_null() {
            p.as_object_mut().unwrap().remove(k);
        } else {
            p[k] = v;
        }
        json!({"message": {"data": enc(&p), "messageId": "1"}, "subscription": "s"}).to_string()
    };
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Headers, String, &str)> = vec![
        (json_ct.to_vec(), String::new(), "empty"),
        (json_ct.to_vec(), "{not json".into(), "not JSON"),
        (json_ct.to_vec(), "[1,2]".into(), "JSON object"),
        (
            json_ct.to_vec(),
            json!({"subscription": "s"}).to_string(),
            "`message`",
        ),
        (
            json_ct.to_vec(),
            json!({"message": {"messageId": "1"}}).to_string(),
            "`message.data`",
        ),
        (
            json_ct.to_vec(),
            json!({"message": {"data": ""}}).to_string(),
            "`message.data`",
        ),
        (
            json_ct.to_vec(),
            json!({"message": {"data": 12}}).to_string(),
            "`message.data`",
        ),
        (
            json_ct.to_vec(),
            json!({"message": {"data": "***"}}).to_string(),
            "base64",
        ),
        (
            json_ct.to_vec(),
            json!({"message": {"data": STANDARD.encode("not json")}}).to_string(),
            "payload is not JSON",
        ),
        (
            json_ct.to_vec(),
            json!({"message": {"data": STANDARD.encode("\"a string\"")}}).to_string(),
            "payload must be a JSON object",
        ),
        (json_ct.to_vec(), with("vm", Value::Null), "`vm`"),
        (json_ct.to_vec(), with("vm", json!(7)), "`vm`"),
        (json_ct.to_vec(), with("vm", json!("")), "`vm`"),
        (json_ct.to_vec(), with("zone", Value::Null), "`zone`"),
        (
            json_ct.to_vec(),
            with("whatsAppHostname", Value::Null),
            "`whatsAppHostname`",
        ),
        (
            json_ct.to_vec(),
            with("whatsAppUsername", json!(null)),
            "`whatsAppUsername`",
        ),
        (
            json_ct.to_vec(),
            with("whatsAppPassword", Value::Null),
            "`whatsAppPassword`",
        ),
        (
            json_ct.to_vec(),
            with("project", json!({"id": 1})),
            "`project`",
        ),
        (
            json_ct.to_vec(),
            with("whatsAppPasswordSecret", json!("my-secret")),
            "`whatsAppPasswordSecret`",
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-type", "com.example.other"),
                ("ce-source", "s"),
                ("ce-id", "1"),
            ],
            with("vm", json!("whatsapp-4915112345678")),
            "com.example.other",
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
            ],
            with("vm", json!("whatsapp-4915112345678")),
            "CloudEvent",
        ),
        (
            vec![("content-type", "application/cloudevents+json")],
            json!({"specversion": "1.0", "type": EVENT_TYPE, "source": "s", "id": "1"}).to_string(),
            "no data",
        ),
    ];
    for (headers, body, want) in cases {
        let (status, answer) = post(&s.url(), &headers, body.clone().into_bytes()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(want), "{body}: {error:?} lacks {want:?}");
    }
    // A payload error also names the field on its own.
    let (_, answer) = post(&s.url(), &json_ct, with("zone", Value::Null).into_bytes()).await;
    assert_eq!(answer["field"], "zone");
    assert_eq!(w.resets(), 0);
    assert!(
        w.g.compute.requests().is_empty(),
        "no Compute call for bad input"
    );
    assert_eq!(w.wa.login_count(), 0, "no check for bad input");
    w.assert_no_secrets(&s.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_unavailable_is_503_and_permanent_errors_are_200_alert() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_DEADLINE_S", "5");
    w.wa.set_health(Health::Single("disconnected"));
    let s = Served::start(&w.env);
    w.g.compute.fail_always(ComputeRoute::GetInstance, 503);
    let (status, answer) = post_push(&s.url(), &w.payload()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("503"),
        "{answer}"
    );

    w.g.compute.clear_faults();
    w.g.compute.fail_always(ComputeRoute::GetInstance, 429);
    let (status, _) = post_push(&s.url(), &w.payload()).await;
    assert_eq!(status, 503);

    w.g.compute.clear_faults();
    w.g.compute.fail_always(ComputeRoute::GetInstance, 403);
    let (status, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!((status, o["verdict"].as_str()), (200, Some("alert")), "{o}");

    w.g.compute.clear_faults();
    w.g.token.fail_always(500);
    w.g.tokens.revoke_all();
    let (status, answer) = post_push(&s.url(), &w.payload()).await;
    // A token obtained earlier may still be cached by the process; then Compute says 401.
    assert!(
        status == 503 || (status == 200 && answer["verdict"] == "alert"),
        "{status} {answer}"
    );
    assert_eq!(w.resets(), 0);
    w.assert_no_secrets(&s.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_at_all_is_503() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.token.fail_always(503);
    let s = Served::start(&w.env);
    let (status, answer) = post_push(&s.url(), &w.payload()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("token"),
        "{answer}"
    );
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_message_to_two_processes_at_once_resets_once() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    let a = Served::start(&w.env);
    let b = Served::start(&w.env);
    for round in 0..3 {
        // Each round: the same message delivered twice to each process, all at once.
        let mut tasks = Vec::new();
        for url in [a.url(), b.url(), a.url(), b.url()] {
            let p = w.payload();
            tasks.push(tokio::spawn(async move { post_push(&url, &p).await }));
        }
        let mut verdicts = Vec::new();
        for t in tasks {
            let (status, o) = t.await.unwrap();
            assert_eq!(status, 200, "{o}");
            verdicts.push(o["verdict"].as_str().unwrap().to_string());
        }
        assert!(
            verdicts.iter().all(|v| v == "reset" || v == "grace"),
            "round {round}: {verdicts:?}"
        );
        assert_eq!(w.resets(), 1, "round {round}: {verdicts:?}");
    }
    w.assert_no_secrets(&a.logs());
    w.assert_no_secrets(&b.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_check_in_flight_finish_then_exits_0() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_REQUEST_TIMEOUT_MS", "5000");
    w.wa.set_behaviour(
        "/v1/stats/app",
        Behaviour::Delay(Duration::from_millis(1500)),
    );
    let s = Served::start(&w.env);
    let url = s.url();
    let p = w.payload();
    let in_flight = tokio::spawn(async move { post_push(&url, &p).await });
    // Wait (bounded) until the check is under way.
    for _ in 0..200 {
        if w.wa.count("GET", "/v1/stats/app") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.wa.count("GET", "/v1/stats/app"), 1);
    let (code, took, logs) =
        tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(15)))
            .await
            .unwrap();
    let (status, o) = in_flight.await.unwrap();
    assert_eq!(
        (status, o["verdict"].as_str()),
        (200, Some("healthy")),
        "{o}"
    );
    assert_eq!(code, Some(0), "{logs}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert_json_logs(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_at_once() {
    let w = World::new().await;
    let s = Served::start(&w.env);
    let (code, took, _) = tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_answers_hold_no_secret_at_trace_level() {
    let mut w = World::new().await;
    w.set_env("RUST_LOG", "trace");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    let s = Served::start(&w.env);
    let mut answers = String::new();
    // Healthy, then down and reset, then the password rejected.
    let (_, o) = post_push(&s.url(), &w.payload()).await;
    answers.push_str(&o.to_string());
    w.wa.set_health(Health::Single("disconnected"));
    let (_, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!(o["verdict"], "reset", "{o}");
    answers.push_str(&o.to_string());
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(401));
    let (_, o) = post_push(&s.url(), &w.payload()).await;
    answers.push_str(&o.to_string());
    assert!(!w.g.tokens.tokens().is_empty(), "a Google token was used");
    assert!(
        !w.wa.issued_tokens().is_empty(),
        "a WhatsApp token was used"
    );
    let logs = s.logs();
    assert!(
        logs.lines().count() > 5,
        "trace logging produced little: {logs}"
    );
    w.assert_no_secrets(&logs);
    w.assert_no_secrets(&answers);
    assert!(!logs.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_keepalive_serves_and_healthz_answers() {
    let w = World::new().await;
    let s = Served::start_with_args(&w.env, &[]);
    let resp = reqwest::get(format!("{}/healthz", s.url())).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (status, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!((status, o["verdict"].as_str()), (200, Some("healthy")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_reads_in_two_processes_still_reset_once() {
    // Both processes read the instance and its (empty) reset history before either resets:
    // only the derived requestId stands between them and a double reset.
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute
        .delay_always(ComputeRoute::ListOperations, Duration::from_millis(1500));
    let a = Served::start(&w.env);
    let b = Served::start(&w.env);
    let (pa, pb) = (w.payload(), w.payload());
    let (ua, ub) = (a.url(), b.url());
    let ta = tokio::spawn(async move { post_push(&ua, &pa).await });
    let tb = tokio::spawn(async move { post_push(&ub, &pb).await });
    let (sa, oa) = ta.await.unwrap();
    let (sb, ob) = tb.await.unwrap();
    assert_eq!((sa, sb), (200, 200), "{oa} {ob}");
    assert_eq!(w.resets(), 1, "{oa} {ob}");
    if oa["verdict"] == "reset" && ob["verdict"] == "reset" {
        // The usual case: both sent the reset; Compute Engine carried out the first.
        assert_eq!(oa["requestId"], ob["requestId"]);
        assert_eq!(
            oa["operation"], ob["operation"],
            "the second got the first's operation"
        );
        assert_eq!(w.g.compute.route_count(ComputeRoute::Reset), 2);
    } else {
        // The second read came after the first reset was on record.
        let verdicts = [oa["verdict"].clone(), ob["verdict"].clone()];
        assert!(verdicts.contains(&json!("reset")) && verdicts.contains(&json!("grace")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_cloudevent_with_string_data_and_payload_errors_name_the_field() {
    let w = World::new().await;
    let s = Served::start(&w.env);
    // `data` as a string holding the envelope's JSON, and no datacontenttype.
    let body = json!({
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": "//pubsub.googleapis.com/projects/fake-project/topics/t",
        "id": "77",
        "data": push_envelope(&w.payload()).to_string()
    });
    let (status, o) = post(
        &s.url(),
        &[("content-type", "application/cloudevents+json")],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, o["verdict"].as_str()),
        (200, Some("healthy")),
        "{o}"
    );

    // Base64 that decodes to something that is not a JSON object: `message.data` is at fault.
    let (status, o) = post(
        &s.url(),
        &[("content-type", "application/json")],
        json!({"message": {"data": "abcd"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(o["field"], "message.data", "{o}");
    let (status, o) = post(
        &s.url(),
        &[("content-type", "application/json")],
        json!({"message": {"data": "%%"}}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(o["field"], "message.data", "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_probe_turn_is_never_a_timeout() {
    // One client probed at a time, each request slower than a third of the timeout: the
    // fourth check waits about three checks' time, far beyond the request timeout, and is
    // still healthy — the wait for a turn does not count against any request.
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_MAX_CONCURRENT_PROBES", "1");
    w.set_env("KEEPALIVE_REQUEST_TIMEOUT_MS", "400");
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    w.wa.set_latency(Duration::from_millis(150));
    let s = Served::start(&w.env);
    let url = s.url();
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..4).map(|_| {
        let url = url.clone();
        let p = w.payload();
        async move { post_push(&url, &p).await }
    }))
    .await;
    let wall = started.elapsed();
    for (status, o) in &answers {
        assert_eq!(*status, 200, "{o}");
        assert_eq!(o["verdict"], "healthy", "{o}");
    }
    // One at a time: four logins and four probe rounds in a row (2 × 150 ms each).
    assert!(wall >= Duration::from_millis(4 * 300), "{wall:?}");
    assert_eq!(w.resets(), 0);
    let (code, _, _) = s.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0));
}
