//! A Cloud API payload through `keepalive serve`: the three message forms, 400 naming the
//! field (nothing asked of Meta), 503 when Graph keeps throttling, `check`'s exit 2 on bad
//! input; the logs are JSON and hold no token.

use crate::world::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::Served;
use keepalive_tests::GraphFault;
use serde_json::{json, Value};

const EVENT_TYPE: &str = "google.cloud.pubsub.topic.v1.messagePublished";

fn binary_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-type", EVENT_TYPE),
        (
            "ce-source",
            "//pubsub.googleapis.com/projects/fake-project/topics/keepalive",
        ),
        ("ce-id", "1234567890"),
    ]
}

fn structured(payload: &Value) -> Vec<u8> {
    json!({
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": "//pubsub.googleapis.com/projects/fake-project/topics/keepalive",
        "id": "1234567891",
        "datacontenttype": "application/json",
        "data": push_envelope(payload)
    })
    .to_string()
    .into_bytes()
}

async fn post_forms(url: &str, p: &Value) -> Vec<(u16, Value)> {
    vec![
        post(
            url,
            &[("content-type", "application/json")],
            push_envelope(p).to_string().into_bytes(),
        )
        .await,
        post(
            url,
            &binary_headers(),
            push_envelope(p).to_string().into_bytes(),
        )
        .await,
        post(
            url,
            &[("content-type", "application/cloudevents+json")],
            structured(p),
        )
        .await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_form_checks_the_number() {
    let w = World::new().await;
    let s = Served::start(&w.env);
    for (status, o) in post_forms(&s.url(), &w.payload()).await {
        assert_eq!(
            (status, o["verdict"].as_str()),
            (200, Some("healthy")),
            "{o}"
        );
        for key in [
            "phoneNumberId",
            "wabaId",
            "name",
            "reason",
            "findings",
            "repairs",
        ] {
            assert!(o.get(key).is_some(), "outcome lacks {key}: {o}");
        }
    }
    assert_eq!(w.graph.count("GET", PHONE), 3);
    // An alert is handled too: 200.
    w.graph
        .update_number(PHONE, |n| n.status = "FLAGGED".into());
    for (status, o) in post_forms(&s.url(), &w.payload()).await {
        assert_eq!((status, o["verdict"].as_str()), (200, Some("alert")), "{o}");
    }
    // A repair through each form: the first repairs, the others find nothing to do.
    w.graph
        .update_number(PHONE, |n| n.status = "CONNECTED".into());
    w.graph.unsubscribe(WABA, APP);
    let verdicts: Vec<String> = post_forms(&s.url(), &w.repairing())
        .await
        .into_iter()
        .map(|(_, o)| o["verdict"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(verdicts, ["repaired", "healthy", "healthy"]);
    let logs = s.logs();
    w.assert_no_secrets("serve's logs", &logs);
    for line in s.stdout.all().iter().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("severity").is_some(), "{line}");
    }
    w.assert_tokens_only_where_allowed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_400_naming_the_field_and_nothing_is_asked() {
    let w = World::new().await;
    let s = Served::start(&w.env);
    let base = w.payload();
    let cases: Vec<(&str, Value)> = vec![
        ("phoneNumberId", json!({"vm": "whatsapp-1"})),
        ("accessToken", json!({"accessToken": ACCESS_TOKEN})),
        ("phoneNumberId", json!({"phoneNumberId": "12x"})),
        (
            "phoneNumberId",
            json!({"phoneNumberId": 106540352242922u64}),
        ),
        ("wabaId", json!({"wabaId": ""})),
        ("wabaId", json!({"wabaId": null})),
        ("accessTokenSecret", json!({"accessTokenSecret": null})),
        (
            "accessTokenSecret",
            json!({"accessTokenSecret": "meta-token"}),
        ),
        // A secret of a project this deployment may not act in (KEEPALIVE_PROJECTS).
        (
            "accessTokenSecret",
            json!({"accessTokenSecret": "projects/someone-else/secrets/meta-token/versions/latest"}),
        ),
        (
            "webhookVerifyTokenSecret",
            json!({"webhookVerifyTokenSecret": "projects/someone-else/secrets/verify/versions/1"}),
        ),
        ("appId", json!({"appId": "my-app"})),
        (
            "webhookUrl",
            json!({"webhookUrl": "http://bot.example.com/hook"}),
        ),
        (
            "webhookVerifyTokenSecret",
            json!({"webhookVerifyTokenSecret": 5}),
        ),
        ("repair", json!({"repair": "yes"})),
        ("name", json!({"name": ["a"]})),
    ];
    for (field, change) in cases {
        let mut p = base.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        let (status, body) = post(
            &s.url(),
            &[("content-type", "application/json")],
            push_envelope(&p).to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["field"], field, "{body}");
        assert!(body["error"].as_str().unwrap().contains(field), "{body}");
        w.assert_no_secrets("a 400", &body.to_string());

        // `check` says the same, exit 2.
        let run = w.check(&p, &[]).await;
        assert_eq!(run.code, Some(2), "{field}");
        let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        assert_eq!(v["field"], field, "{v}");
    }
    assert_eq!(w.graph.request_count(), 0);
    assert_eq!(w.hook.handshake_count(), 0);
    assert!(w.g.secrets.requests().is_empty());
    w.assert_no_secrets("serve's logs", &s.logs());
    // Bad base64 and a payload that is not an object are the envelope's 400s, as for VMs.
    let (status, _) = post(
        &s.url(),
        &[("content-type", "application/json")],
        json!({"message": {"data": STANDARD.encode("[1]")}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_throttling_until_the_deadline_is_503() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_DEADLINE_S", "3");
    let s = Served::start(&w.env);
    w.graph.fail_always(PHONE, GraphFault::error(4));
    let (status, body) = post(
        &s.url(),
        &[("content-type", "application/json")],
        push_envelope(&w.payload()).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "{body}");
    // A 5xx that ends: 200.
    w.graph.clear_faults();
    w.graph.fail_next(PHONE, 1, GraphFault::Status(500));
    let (status, body) = post(
        &s.url(),
        &[("content-type", "application/json")],
        push_envelope(&w.payload()).to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["verdict"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    w.assert_no_secrets("serve's logs", &s.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssl_cert_file_without_certificates_is_named_at_start() {
    let mut w = World::new().await;
    let path = w.g.dir().join("not-a-bundle.pem");
    std::fs::write(&path, "no certificate here\n").unwrap();
    w.set_env("SSL_CERT_FILE", &path.display().to_string());
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("SSL_CERT_FILE"),
        "{v}"
    );
    assert_eq!(w.graph.request_count(), 0);
}
