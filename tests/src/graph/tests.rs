//! The fake driven by the real client (`shared::graph`).

use super::*;
use crate::server::now;
use crate::webhook::{FakeWebhook, WebhookFault};
use reqwest::Method;
use secrecy::SecretString;
use shared::graph::{
    BatchRequest, CodeMethod, GraphClient, GraphError, PhoneNumber, RegisterBackup, SubscribedApp,
};
use std::sync::atomic::{AtomicUsize, Ordering};

const TOKEN: &str = "EAAGfake-token";
const APP: &str = "6349";

async fn setup() -> (FakeGraph, GraphClient) {
    let fake = FakeGraph::start().await;
    fake.add_app(APP, "LoyJoy Bot", Some("https://app.example/hook"));
    fake.add_token(TOKEN, FakeToken::valid(APP));
    fake.add_number("1111", "9999", "+49 151 1234567");
    fake.subscribe("9999", APP);
    let client = GraphClient::new(
        GraphClient::http_client(),
        reqwest::Url::parse(&fake.url()).unwrap(),
        "v26.0",
        Duration::from_secs(5),
    )
    .with_retry(shared::google::RetryPolicy {
        max_attempts: 3,
        ..Default::default()
    })
    .with_sleep(Arc::new(|_| Box::pin(async {})));
    (fake, client)
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

#[tokio::test]
async fn a_healthy_number_reads_as_meta_documents_it() {
    let (fake, c) = setup().await;
    let n = c.phone_number(&token(), "1111", None).await.unwrap();
    assert!(n.is_connected() && n.is_cloud_api());
    assert_eq!(n.throughput_level.as_deref(), Some("STANDARD"));
    let h = n.health_status.unwrap();
    assert_eq!(h.can_send_message.as_deref(), Some("AVAILABLE"));
    assert_eq!(h.entities.len(), 4);
    assert_eq!(
        n.webhook_configuration.effective(),
        Some("https://app.example/hook")
    );
    let apps = c.subscribed_apps(&token(), "9999", None).await.unwrap();
    assert_eq!(apps[0].id, APP);
    assert_eq!(apps[0].name.as_deref(), Some("LoyJoy Bot"));
    let t = c.debug_token(&token(), None).await.unwrap();
    assert!(t.is_valid && t.expires_at.is_none());
    assert_eq!(t.app_id.as_deref(), Some(APP));
    assert_eq!(fake.request_count(), 3);
    assert_eq!(fake.count("GET", "1111"), 1);
    assert!(fake.access_token_requests().is_empty());

    let e = c.phone_number(&token(), "4242", None).await.unwrap_err();
    assert!(e.is_unknown_request() && e.status() == Some(400), "{e}");
    let e: GraphError = c
        .read::<Value>(&token(), &["1111"], &[("fields", "nope")], None)
        .await
        .unwrap_err();
    assert!(e.message().contains("nonexisting field (nope)"), "{e}");
}

#[tokio::test]
async fn token_states() {
    let (fake, c) = setup().await;
    for (t, subcode) in [
        (FakeToken::valid(APP).expired(), Some(463)),
        (FakeToken::valid(APP).invalid(), Some(467)),
        (
            FakeToken::valid(APP).expiring_at(now() - time::Duration::seconds(1)),
            Some(463),
        ),
    ] {
        fake.add_token(TOKEN, t);
        let e = c.phone_number(&token(), "1111", None).await.unwrap_err();
        assert!(e.is_token_invalid() && e.status() == Some(401), "{e}");
        assert_eq!(e.subcode(), subcode);
    }
    let e = c
        .phone_number(&SecretString::from("unknown"), "1111", None)
        .await
        .unwrap_err();
    assert!(e.is_token_invalid(), "{e}");

    let at = now() + time::Duration::days(3);
    fake.add_token(
        TOKEN,
        FakeToken::valid(APP).expiring_at(at).without_permission(),
    );
    let e = c.subscribed_apps(&token(), "9999", None).await.unwrap_err();
    assert!(e.is_permission() && e.status() == Some(403), "{e}");
    let t = c.debug_token(&token(), None).await.unwrap();
    assert_eq!(t.expires_at.unwrap().unix_timestamp(), at.unix_timestamp());
}

#[tokio::test]
async fn faults_per_number_and_path() {
    let (fake, c) = setup().await;
    fake.fail_next("1111", 2, GraphFault::error(80007));
    assert!(c.phone_number(&token(), "1111", None).await.is_ok());
    assert_eq!(fake.count("GET", "1111"), 3);

    fake.fail_always("9999/subscribed_apps", GraphFault::Status(502));
    let e = c.subscribed_apps(&token(), "9999", None).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(502), None));
    assert!(c.phone_number(&token(), "1111", None).await.is_ok());
    fake.clear_faults();

    // A fault for one method only: the read passes, the write is refused.
    fake.fail_always("POST 9999/subscribed_apps", GraphFault::error(200));
    assert!(c.subscribed_apps(&token(), "9999", None).await.is_ok());
    let e = c.subscribe_app(&token(), "9999", None).await.unwrap_err();
    assert!(e.is_permission(), "{e}");
    fake.clear_faults();
    // A write acknowledged that did not take.
    fake.unsubscribe("9999", APP);
    fake.fail_next("POST 9999/subscribed_apps", 1, GraphFault::Ignore);
    c.subscribe_app(&token(), "9999", None).await.unwrap();
    assert!(fake.subscribed_apps("9999").is_empty());
    fake.subscribe("9999", APP);

    for (code, status) in [(190, 401), (3, 500), (200, 403), (100, 400), (368, 403)] {
        fake.fail_next("1111", 1, GraphFault::error(code));
        let e = c.phone_number(&token(), "1111", None).await.unwrap_err();
        assert_eq!((e.code(), e.status()), (Some(code), Some(status)), "{e}");
        assert!(e.api().unwrap().fbtrace_id.is_some());
    }
    for (code, status) in [(2, 503), (131057, 500), (4, 400)] {
        fake.fail_next("1111", 1, GraphFault::error(code));
        let v: Value = c
            .send_once(&token(), Method::GET, &["1111"], None, None)
            .await
            .map(|_: Value| Value::Null)
            .unwrap_or_else(|e| json!([e.code(), e.status(), e.is_retryable()]));
        assert_eq!(v, json!([code, status, true]));
    }

    fake.fail_next("1111", 1, GraphFault::Hang);
    let quick = c
        .clone()
        .with_timeout(Duration::from_millis(200))
        .with_retry(shared::google::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        });
    let e = quick
        .phone_number(&token(), "1111", None)
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Timeout { .. }), "{e}");
}

#[tokio::test]
async fn health_is_judged_per_entity_with_meta_overall_value() {
    let (fake, c) = setup().await;
    fake.set_entity(
        "1111",
        Entity::available("PHONE_NUMBER", "1111").sip_blocked(),
    );
    fake.set_entity("1111", Entity::limited("WABA", "9999", &["Tier lowered"]));
    let h = c
        .phone_number(&token(), "1111", None)
        .await
        .unwrap()
        .health_status
        .unwrap();
    assert_eq!(h.can_send_message.as_deref(), Some("BLOCKED"));
    assert_eq!(h.blocked().count(), 0);
    assert_eq!(
        h.limited().next().unwrap().additional_info,
        ["Tier lowered"]
    );
    fake.set_entity(
        "1111",
        Entity::blocked("BUSINESS", "1", &[(141000, "Business blocked", "Appeal")]),
    );
    let h = c
        .phone_number(&token(), "1111", None)
        .await
        .unwrap()
        .health_status
        .unwrap();
    let b: Vec<_> = h.blocked().collect();
    assert_eq!(b[0].errors[0].error_code, Some(141000));
}

#[tokio::test]
async fn registration_code_pin_limit_and_migration() {
    let (fake, c) = setup().await;
    fake.update_number("1111", |n| {
        n.code_verification_status = "NOT_VERIFIED".into();
        n.platform_type = "NOT_APPLICABLE".into();
    });
    let pin = SecretString::from("123456");
    let e = c
        .register(&token(), "1111", &pin, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(133006));
    c.request_code(&token(), "1111", CodeMethod::Sms, "en_US", None)
        .await
        .unwrap();
    let wrong = SecretString::from("000000");
    let e = c
        .verify_code(&token(), "1111", &wrong, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(136025));
    c.verify_code(&token(), "1111", &SecretString::from("123456"), None)
        .await
        .unwrap();
    c.register(&token(), "1111", &pin, None, None)
        .await
        .unwrap();
    let n = fake.number("1111").unwrap();
    assert_eq!(
        (n.platform_type.as_str(), n.pin.as_deref()),
        ("CLOUD_API", Some("123456"))
    );
    let e = c
        .register(&token(), "1111", &wrong, None, None)
        .await
        .unwrap_err();
    assert!(e.is_wrong_pin(), "{e}");
    // Every register call counts, refused ones too: three so far, seven more are allowed
    // in 72 hours, the eleventh is refused.
    for _ in 0..7 {
        c.register(&token(), "1111", &pin, None, None)
            .await
            .unwrap();
    }
    let e = c
        .register(&token(), "1111", &pin, None, None)
        .await
        .unwrap_err();
    assert!(e.is_register_limit(), "{e}");
    assert_eq!(fake.number("1111").unwrap().register_calls.len(), 10);
    assert_eq!(fake.count("POST", "1111/register"), 11);

    // A backup register of an On-Premises number moves it and disconnects the old client.
    let disconnected = Arc::new(AtomicUsize::new(0));
    let seen = disconnected.clone();
    fake.on_disconnect(move |id| {
        assert_eq!(id, "2222");
        seen.fetch_add(1, Ordering::SeqCst);
    });
    fake.add_number("2222", "9999", "+49 151 7654321");
    fake.update_number("2222", |n| {
        n.platform_type = "ON_PREMISE".into();
        n.pin = Some("654321".into());
        n.backup = Some(("BLOB".into(), "pw".into()));
    });
    let backup = RegisterBackup {
        data: SecretString::from("BLOB"),
        password: SecretString::from("pw"),
    };
    let e = c
        .register(&token(), "2222", &pin, Some(&backup), None)
        .await
        .unwrap_err();
    assert!(e.is_wrong_pin());
    assert_eq!(fake.number("2222").unwrap().platform_type, "ON_PREMISE");
    assert_eq!(
        disconnected.load(Ordering::SeqCst),
        1,
        "wrong PIN still downs the old client"
    );
    let bad = RegisterBackup {
        data: SecretString::from("OTHER"),
        password: SecretString::from("pw"),
    };
    let six = SecretString::from("654321");
    assert!(c
        .register(&token(), "2222", &six, Some(&bad), None)
        .await
        .is_err());
    c.register(&token(), "2222", &six, Some(&backup), None)
        .await
        .unwrap();
    assert!(c
        .phone_number(&token(), "2222", None)
        .await
        .unwrap()
        .is_cloud_api());
    assert_eq!(disconnected.load(Ordering::SeqCst), 2);
    assert!(fake.access_token_requests().is_empty());
}

#[tokio::test]
async fn webhook_override_needs_a_subscription_and_a_handshake() {
    let (fake, c) = setup().await;
    let hook = FakeWebhook::start("vt").await;
    let vt = SecretString::from("vt");
    let url = hook.callback_url();
    fake.unsubscribe("9999", APP);
    let e = c
        .set_webhook_override(&token(), "1111", &url, &vt, None)
        .await
        .unwrap_err();
    assert!(e.is_unknown_request(), "{e}");
    assert_eq!(hook.handshake_count(), 0);

    c.subscribe_app(&token(), "9999", None).await.unwrap();
    assert_eq!(fake.subscribed_apps("9999"), [APP]);
    c.set_webhook_override(&token(), "1111", &url, &vt, None)
        .await
        .unwrap();
    assert_eq!(hook.handshake_count(), 1);
    let n: PhoneNumber = c.phone_number(&token(), "1111", None).await.unwrap();
    assert_eq!(n.webhook_configuration.effective(), Some(url.as_str()));

    hook.fail_always(WebhookFault::WrongBody);
    let e = c
        .set_webhook_override(&token(), "1111", "http://127.0.0.1:1/other", &vt, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(2200), "{e}");
    assert!(!e.to_string().contains("vt\""), "{e}");
    fake.set_handshake(false);
    c.set_webhook_override(&token(), "1111", "https://elsewhere.example/h", &vt, None)
        .await
        .unwrap();
    fake.set_waba_override("9999", Some("https://waba.example/h"));
    c.set_webhook_override(&token(), "1111", "", &vt, None)
        .await
        .unwrap();
    let n = c.phone_number(&token(), "1111", None).await.unwrap();
    assert_eq!(
        n.webhook_configuration.effective(),
        Some("https://waba.example/h")
    );
    let apps: Vec<SubscribedApp> = c.subscribed_apps(&token(), "9999", None).await.unwrap();
    assert_eq!(
        apps[0].override_callback_uri.as_deref(),
        Some("https://waba.example/h")
    );
}

#[tokio::test]
async fn batches_answer_per_item_in_one_request() {
    let (fake, c) = setup().await;
    fake.add_number("2222", "9999", "+49 2");
    fake.add_number("3333", "9999", "+49 3");
    fake.fail_always("2222", GraphFault::error(100));
    fake.fail_next("3333", 1, GraphFault::Hang);
    let reqs = [
        BatchRequest::phone_number("1111").unwrap(),
        BatchRequest::phone_number("2222").unwrap(),
        BatchRequest::phone_number("3333").unwrap(),
        BatchRequest::subscribed_apps("9999").unwrap(),
    ];
    let r = c.batch(&token(), &reqs, None).await.unwrap();
    let n: PhoneNumber = serde_json::from_value(r[0].as_ref().unwrap().clone()).unwrap();
    assert!(n.is_connected() && n.health_status.is_some());
    assert!(r[1].as_ref().unwrap_err().is_unknown_request());
    assert!(matches!(r[2], Err(GraphError::Unfinished { .. })));
    assert_eq!(
        SubscribedApp::parse_list(r[3].as_ref().unwrap()).unwrap()[0].id,
        APP
    );
    assert_eq!(fake.request_count(), 1);
    assert_eq!(fake.calls().iter().filter(|c| c.batched).count(), 4);

    // batch_read sends the unfinished item again (and the permanent failure not).
    fake.fail_next("3333", 1, GraphFault::Hang);
    let r = c.batch_read(&token(), &reqs, None).await.unwrap();
    assert!(r[2].is_ok() && r[1].is_err());
    assert_eq!(fake.request_count(), 3);
    assert_eq!(fake.count("GET", "3333"), 3);
    assert_eq!(fake.count("GET", "2222"), 2);

    // The fake refuses more than 50, as Meta does (the client never sends them).
    let items: Vec<Value> = (0..51)
        .map(|_| json!({"method": "GET", "relative_url": "1111"}))
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/v26.0/", fake.url()))
        .bearer_auth(TOKEN)
        .json(&json!({"batch": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fake.access_token_requests().is_empty());
}

#[tokio::test]
async fn a_lost_answer_still_registers() {
    let (fake, c) = setup().await;
    fake.update_number("1111", |n| n.platform_type = "NOT_APPLICABLE".into());
    fake.fail_next("1111/register", 1, GraphFault::LoseAnswer);
    let c = c.with_timeout(Duration::from_millis(300));
    let e = c
        .register(&token(), "1111", &SecretString::from("123456"), None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Timeout { .. }), "{e}");
    let n = fake.number("1111").unwrap();
    assert_eq!(n.platform_type, "CLOUD_API");
    assert_eq!(n.register_calls.len(), 1);
}
