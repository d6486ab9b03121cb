//! `KEEPALIVE_EVENTS_TOPIC`: one JSON event per check whose verdict asks for one, published
//! through `google-cloud-pubsub`, so that teams route them anywhere (a chat, a pager,
//! BigQuery). What an event holds is the kind's (`report/onprem.rs`).
//!
//! The publisher is built on the first event (start-up stays fast and needs no credentials),
//! each event goes out at once (no batching delay), and a publish is bounded by the check's
//! deadline. A failed publish is logged and reported in the outcome's `event` field; it never
//! changes the verdict.

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::Message;
use shared::events_publisher::{google_error, PubSubTarget};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::OnceCell;

use crate::config::EventsConfig;

/// One event: its JSON (the message data) and the attributes subscription filters read.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub data: serde_json::Value,
    pub attributes: HashMap<String, String>,
}

impl Event {
    pub fn message(&self) -> Message {
        let data = serde_json::to_vec(&self.data).expect("a JSON value serializes");
        Message::new()
            .set_data(bytes::Bytes::from(data))
            .set_attributes(self.attributes.clone())
    }
}

/// The event topic and its publisher, built on first use.
pub struct EventPublisher {
    topic: String,
    pubsub: PubSubTarget,
    publisher: OnceCell<Publisher>,
}

impl EventPublisher {
    pub fn new(config: &EventsConfig) -> EventPublisher {
        EventPublisher {
            topic: config.topic.clone(),
            pubsub: config.pubsub.clone(),
            publisher: OnceCell::new(),
        }
    }

    /// Publishes `event` within `timeout`: `published <message id>`, or why not. `target`
    /// names what was checked, for the log.
    pub async fn publish(&self, event: &Event, target: &str, timeout: Duration) -> String {
        match tokio::time::timeout(timeout, self.send(event)).await {
            Ok(Ok(id)) => {
                let verdict = event.attributes.get("verdict").map_or("", String::as_str);
                tracing::info!(target_name = %target, topic = %self.topic, message_id = %id, verdict, "event published");
                format!("published {id}")
            }
            Ok(Err(e)) => {
                tracing::warn!(target_name = %target, topic = %self.topic, error = %e, "event not published");
                format!("failed: {e}")
            }
            Err(_) => {
                tracing::warn!(target_name = %target, topic = %self.topic, timeout_ms = timeout.as_millis() as u64, "event not published in time");
                format!("failed: not published within {} ms", timeout.as_millis())
            }
        }
    }

    async fn send(&self, event: &Event) -> Result<String, String> {
        let publisher = self
            .publisher
            .get_or_try_init(|| async {
                self.pubsub
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
