//! `KEEPALIVE_EVENTS_TOPIC`: one JSON event per reset and per alert, published through
//! `google-cloud-pubsub`, so that teams route them anywhere (a chat, a pager, BigQuery).
//!
//! The publisher is built on the first event (start-up stays fast and needs no credentials),
//! each event goes out at once (no batching delay), and a publish is bounded by the check's
//! deadline. A failed publish is logged and reported in the outcome's `event` field; it never
//! changes the verdict.

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::Message;
use serde::Serialize;
use shared::pubsub::{google_error, PubSubTarget};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::OnceCell;

use crate::check::Outcome;

/// The event's JSON (the message data). Attributes repeat `type`, `verdict`, `vm`, `zone`
/// and `project` for subscription filters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `keepalive.reset` or `keepalive.alert`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tenant: the VM that runs its WhatsApp client (one per number).
    pub tenant: String,
    pub vm: String,
    pub zone: String,
    pub project: Option<String>,
    /// `reset` or `alert`.
    pub verdict: String,
    pub reason: String,
    /// When the check started (RFC 3339, UTC).
    pub time: String,
    /// The reset operation, for a reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Event {
    pub fn of(outcome: &Outcome) -> Event {
        let verdict = outcome.verdict.as_str();
        Event {
            kind: format!("keepalive.{verdict}"),
            tenant: outcome.vm.clone(),
            vm: outcome.vm.clone(),
            zone: outcome.zone.clone(),
            project: outcome.project.clone(),
            verdict: verdict.to_string(),
            reason: outcome.reason.clone(),
            time: outcome.checked_at.clone(),
            operation: outcome.operation.clone(),
            request_id: outcome.request_id.clone(),
        }
    }

    pub fn message(&self) -> Message {
        let data = serde_json::to_vec(self).expect("an event serializes");
        let mut attributes: HashMap<String, String> = HashMap::from([
            ("type".to_string(), self.kind.clone()),
            ("verdict".to_string(), self.verdict.clone()),
            ("vm".to_string(), self.vm.clone()),
            ("zone".to_string(), self.zone.clone()),
        ]);
        if let Some(p) = &self.project {
            attributes.insert("project".into(), p.clone());
        }
        Message::new()
            .set_data(bytes::Bytes::from(data))
            .set_attributes(attributes)
    }
}

/// The event topic and its publisher, built on first use.
pub struct Events {
    topic: String,
    target: PubSubTarget,
    publisher: OnceCell<Publisher>,
}

impl Events {
    pub fn new(topic: String, target: PubSubTarget) -> Events {
        Events {
            topic,
            target,
            publisher: OnceCell::new(),
        }
    }

    /// Publishes the outcome's event within `timeout`: `published <message id>`, or why not.
    pub async fn publish(&self, outcome: &Outcome, timeout: Duration) -> String {
        let event = Event::of(outcome);
        match tokio::time::timeout(timeout, self.send(&event)).await {
            Ok(Ok(id)) => {
                tracing::info!(vm = %outcome.vm, topic = %self.topic, message_id = %id, verdict = %event.verdict, "event published");
                format!("published {id}")
            }
            Ok(Err(e)) => {
                tracing::warn!(vm = %outcome.vm, topic = %self.topic, error = %e, "event not published");
                format!("failed: {e}")
            }
            Err(_) => {
                tracing::warn!(vm = %outcome.vm, topic = %self.topic, timeout_ms = timeout.as_millis() as u64, "event not published in time");
                format!("failed: not published within {} ms", timeout.as_millis())
            }
        }
    }

    async fn send(&self, event: &Event) -> Result<String, String> {
        let publisher = self
            .publisher
            .get_or_try_init(|| async {
                self.target
                    .publisher(&self.topic)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        publisher
            .publish(event.message())
            .await
            .map_err(|e| match e {
                PublishError::Rpc(e) => google_error(&e).to_string(),
                other => other.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Verdict;

    fn outcome(verdict: Verdict) -> Outcome {
        Outcome {
            vm: "whatsapp-4915112345678".into(),
            zone: "europe-west3-c".into(),
            project: Some("acme-prod".into()),
            verdict,
            reason: "login failed: connection refused".into(),
            attempts: 3,
            dry_run: false,
            operation: Some("operation-1".into()),
            request_id: Some("0f2c".into()),
            mail: None,
            event: None,
            checked_at: "2026-11-24T10:00:00Z".into(),
            duration_ms: 12,
        }
    }

    #[test]
    fn an_event_carries_what_a_router_needs() {
        let e = Event::of(&outcome(Verdict::Reset));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "keepalive.reset",
                "tenant": "whatsapp-4915112345678",
                "vm": "whatsapp-4915112345678",
                "zone": "europe-west3-c",
                "project": "acme-prod",
                "verdict": "reset",
                "reason": "login failed: connection refused",
                "time": "2026-11-24T10:00:00Z",
                "operation": "operation-1",
                "requestId": "0f2c"
            })
        );
        let m = e.message();
        assert_eq!(m.attributes["type"], "keepalive.reset");
        assert_eq!(m.attributes["verdict"], "reset");
        assert_eq!(m.attributes["project"], "acme-prod");
        let back: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn an_alert_has_no_operation() {
        let mut o = outcome(Verdict::Alert);
        o.operation = None;
        o.request_id = None;
        o.project = None;
        let v = serde_json::to_value(Event::of(&o)).unwrap();
        assert_eq!(v["type"], "keepalive.alert");
        assert!(v.get("operation").is_none());
        assert!(v["project"].is_null());
        assert!(!Event::of(&o).message().attributes.contains_key("project"));
    }
}
