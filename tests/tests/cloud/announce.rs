//! Events (`KEEPALIVE_EVENTS_TOPIC`): one per alert, warning and repaired check, none when
//! healthy or under `--dry-run`. Mail: on alert and repaired only. Neither holds a token.

use crate::world::*;
use keepalive_tests::smtp::{pki, Mode, SmtpServer};
use serde_json::{json, Value};
use std::time::Duration;

const TOPIC: &str = "projects/acme-ops/topics/keepalive-events";
/// Where the test reads the events back.
const READ_BACK: &str = "projects/acme-ops/subscriptions/test-read-back";

async fn with_events() -> World {
    let mut w = World::new().await;
    w.g.pubsub.add_topic(TOPIC);
    w.g.pubsub.add_pull_subscription(READ_BACK, TOPIC);
    let host = w.g.pubsub.host();
    w.set_env("PUBSUB_EMULATOR_HOST", &host);
    w.set_env("KEEPALIVE_EVENTS_TOPIC", TOPIC);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_per_alert_warning_and_repair() {
    let w = with_events().await;
    // Healthy: none.
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "healthy");
    assert!(o.get("event").is_none(), "{o}");
    assert!(w.g.pubsub.pull(READ_BACK).is_empty());

    // Warning, repaired, alert: one each.
    w.graph
        .update_number(PHONE, |n| n.quality_rating = "YELLOW".into());
    let warning = w.check(&w.payload(), &[]).await.outcome();
    w.graph
        .update_number(PHONE, |n| n.quality_rating = "GREEN".into());
    w.graph.unsubscribe(WABA, APP);
    let repaired = w.check(&w.repairing(), &[]).await.outcome();
    w.graph
        .update_number(PHONE, |n| n.status = "FLAGGED".into());
    let alert = w.check(&w.payload(), &[]).await.outcome();
    let published = w.g.pubsub.pull(READ_BACK);
    assert_eq!(published.len(), 3, "{published:?}");
    for (m, (o, verdict)) in published.iter().zip([
        (&warning, "warning"),
        (&repaired, "repaired"),
        (&alert, "alert"),
    ]) {
        assert_eq!(o["verdict"], verdict, "{o}");
        assert_eq!(
            o["event"],
            Value::String(format!("published {}", m.message_id))
        );
        let e = m.json().expect("the event is JSON");
        assert_eq!(e["type"], format!("keepalive.{verdict}"));
        assert_eq!(e["verdict"], verdict);
        assert_eq!(e["phoneNumberId"], PHONE);
        assert_eq!(e["wabaId"], WABA);
        assert_eq!(e["name"], "acme-de");
        assert_eq!(e["reason"], o["reason"]);
        assert_eq!(e["findings"], o["findings"]);
        assert_eq!(m.attributes["type"], format!("keepalive.{verdict}"));
        assert_eq!(m.attributes["verdict"], verdict);
        assert_eq!(m.attributes["phoneNumberId"], PHONE);
        w.assert_no_secrets("an event", &m.text());
    }
    // A dry run announces nothing.
    let o = w.check(&w.payload(), &["--dry-run"]).await.outcome();
    assert_eq!(o["verdict"], "alert");
    assert!(w.g.pubsub.pull(READ_BACK).is_empty());
    w.assert_tokens_only_where_allowed();
}

const SMTP_USER: &str = "relay-user";
const SMTP_PASSWORD: &str = "Sm7pCl0ud!relay-password-never-shown";

fn with_smtp(w: &World, smtp: &SmtpServer, payload: Value) -> Value {
    let mut p = payload;
    for (k, v) in [
        ("smtpHost", smtp.host()),
        ("smtpUsername", SMTP_USER.into()),
        ("smtpPassword", SMTP_PASSWORD.into()),
        ("smtpFrom", "keepalive@example.org".into()),
        ("smtpTo", "ops@example.net".into()),
    ] {
        p[k] = json!(v);
    }
    let _ = w;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_on_alert_and_repaired_only() {
    let mut w = World::new().await;
    let mut smtp = SmtpServer::start(Mode::StartTls, SMTP_USER, SMTP_PASSWORD).await;
    w.set_env(
        "KEEPALIVE_SMTP_CA_FILE",
        &pki().await.ca_file.display().to_string(),
    );
    let quiet = Duration::from_millis(500);

    // Healthy and warning: no mail.
    let o = w
        .check(&with_smtp(&w, &smtp, w.payload()), &[])
        .await
        .outcome();
    assert_eq!(o["verdict"], "healthy");
    w.graph
        .update_number(PHONE, |n| n.quality_rating = "RED".into());
    let o = w
        .check(&with_smtp(&w, &smtp, w.payload()), &[])
        .await
        .outcome();
    assert_eq!(o["verdict"], "warning");
    assert!(o.get("mail").is_none(), "{o}");
    smtp.settle(quiet).await;
    assert!(smtp.messages().is_empty(), "{:?}", smtp.seen);

    // Repaired: one mail naming the number and what was put back.
    w.graph
        .update_number(PHONE, |n| n.quality_rating = "GREEN".into());
    w.graph.unsubscribe(WABA, APP);
    let o = w
        .check(&with_smtp(&w, &smtp, w.repairing()), &[])
        .await
        .outcome();
    assert_eq!(o["verdict"], "repaired", "{o}");
    assert_eq!(o["mail"], "sent", "{o}");
    let msg = smtp.wait_for("message").await;
    let subject = msg["subject"].as_str().unwrap();
    assert!(
        subject.contains("acme-de") && subject.contains("repaired"),
        "{subject}"
    );
    let body = msg["body"].as_str().unwrap();
    for want in [PHONE, WABA, "subscription", o["reason"].as_str().unwrap()] {
        assert!(body.contains(want), "body lacks {want:?}:\n{body}");
    }

    // Alert: one mail.
    w.graph
        .update_number(PHONE, |n| n.platform_type = "ON_PREMISE".into());
    let o = w
        .check(&with_smtp(&w, &smtp, w.payload()), &[])
        .await
        .outcome();
    assert_eq!(o["verdict"], "alert");
    assert_eq!(o["mail"], "sent", "{o}");
    let msg = smtp.wait_for("message").await;
    assert!(msg["subject"].as_str().unwrap().contains("ALERT"), "{msg}");
    for m in smtp.messages() {
        let data = m["data"].as_str().unwrap();
        w.assert_no_secrets("a mail", data);
        assert!(!data.contains(SMTP_PASSWORD));
    }
}
