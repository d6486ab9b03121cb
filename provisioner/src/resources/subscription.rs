//! The keepalive's Pub/Sub subscriptions, through `google-cloud-pubsub`: the push
//! subscription that calls the service with an OIDC token (ack deadline above a check's
//! deadline, short retention, dead letters after 5 attempts), and the pull subscription that
//! keeps the dead letters for a week. Ours alone: a run brings them back to the spec; one on
//! another topic cannot be changed in place and is reported instead.

use google_cloud_pubsub::client::SubscriptionAdmin;
use google_cloud_pubsub::model::{Subscription, UpdateSubscriptionRequest};
use serde_json::{json, Value};
use shared::events_publisher::google_error;

use super::topic::pubsub_failed;
use super::{duration_s, show};
use crate::ensure::{fields, Check, Created, Difference, Resource};
use crate::names::KeepaliveNames;
use crate::{Provisioner, StepError};

/// The push subscription's ack deadline: a check (≤ 100 s) is never redelivered for being slow.
pub const ACK_DEADLINE_S: i32 = 120;
/// Unacknowledged messages are dropped after 10 minutes: by then two newer checks are due.
pub const RETENTION_S: u64 = 600;
/// Deliveries before a message goes to the dead-letter topic (the API's minimum).
pub const MAX_DELIVERY_ATTEMPTS: i32 = 5;
/// What the dead-letter subscription keeps (the API's maximum).
pub const DEAD_LETTER_RETENTION_S: u64 = 7 * 86_400;

pub struct PubSubSubscription<'a> {
    pub admin: &'a SubscriptionAdmin,
    /// `push subscription`, `dead-letter subscription`
    pub kind: &'static str,
    pub name: String,
    /// The subscription as wanted (the API's JSON).
    pub want: Value,
}

impl<'a> PubSubSubscription<'a> {
    /// The push subscription to the service at `url`.
    pub fn push(admin: &'a SubscriptionAdmin, k: &KeepaliveNames, url: &str) -> Self {
        PubSubSubscription {
            admin,
            kind: "push subscription",
            name: k.subscription.clone(),
            want: push_subscription_body(k, url),
        }
    }

    /// The push subscription before the service has a URL (`--dry-run`): to be planned only.
    pub fn push_planned(admin: &'a SubscriptionAdmin, k: &KeepaliveNames) -> Self {
        Self::push(admin, k, "<the service's URL>")
    }

    pub fn dead_letter(admin: &'a SubscriptionAdmin, k: &KeepaliveNames) -> Self {
        PubSubSubscription {
            admin,
            kind: "dead-letter subscription",
            name: k.dead_letter_subscription.clone(),
            want: dead_letter_subscription_body(k),
        }
    }

    fn model(&self, v: &Value) -> Result<Subscription, StepError> {
        serde_json::from_value(v.clone())
            .map_err(|e| StepError::failed(self.resource(), format!("subscription spec: {e}")))
    }

    fn json(&self, s: &Subscription) -> Result<Value, StepError> {
        serde_json::to_value(s).map_err(|e| StepError::failed(self.resource(), e.to_string()))
    }
}

impl Resource for PubSubSubscription<'_> {
    type State = Value;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn resource(&self) -> String {
        format!("Pub/Sub {} {}", self.kind, self.name)
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Value>, StepError> {
        match self
            .admin
            .get_subscription()
            .set_subscription(&self.name)
            .send()
            .await
        {
            Ok(s) => Ok(Some(self.json(&s)?)),
            Err(e) if google_error(&e).is_not_found() => Ok(None),
            Err(e) => Err(pubsub_failed(prov, &self.resource())(e)),
        }
    }

    fn plan(&self) -> Option<String> {
        Some(summary(&self.want))
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<Value>, StepError> {
        let request = self.model(&self.want)?;
        match self
            .admin
            .create_subscription()
            .with_request(request)
            .send()
            .await
        {
            Ok(s) => Ok(Created::New(self.json(&s)?)),
            Err(e) if google_error(&e).is_already_exists() => Ok(Created::AlreadyExists),
            Err(e) => Err(pubsub_failed(prov, &self.resource())(e)),
        }
    }

    fn differences(&self, have: &Value, _: Check) -> Vec<Difference> {
        if have["topic"] != self.want["topic"] {
            return vec![Difference::report(format!(
                "it is attached to {}, wanted {} (a subscription cannot change topic: delete it and run again)",
                show(&have["topic"]),
                show(&self.want["topic"])
            ))];
        }
        subscription_differences(have, &self.want)
            .into_iter()
            .map(|(field, words)| Difference::update(field, words))
            .collect()
    }

    async fn update(
        &self,
        prov: &Provisioner,
        _have: &Value,
        diffs: &[Difference],
    ) -> Result<Value, StepError> {
        let request: UpdateSubscriptionRequest = serde_json::from_value(json!({
            "subscription": self.want,
            "updateMask": fields(diffs).join(","),
        }))
        .map_err(|e| StepError::failed(self.resource(), format!("update request: {e}")))?;
        let updated = self
            .admin
            .update_subscription()
            .with_request(request)
            .send()
            .await
            .map_err(pubsub_failed(prov, &self.resource()))?;
        self.json(&updated)
    }

    fn detail(&self, _: &Value) -> Option<String> {
        Some(summary(&self.want))
    }
}

/// The push subscription as step 6 wants it (the API's JSON).
pub fn push_subscription_body(k: &KeepaliveNames, url: &str) -> Value {
    json!({
        "name": k.subscription,
        "topic": k.topic,
        "pushConfig": {
            "pushEndpoint": url,
            "oidcToken": {"serviceAccountEmail": k.invoker, "audience": url}
        },
        "ackDeadlineSeconds": ACK_DEADLINE_S,
        "messageRetentionDuration": format!("{RETENTION_S}s"),
        "deadLetterPolicy": {
            "deadLetterTopic": k.dead_letter_topic,
            "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS
        },
        // A 503 (Compute Engine busy) comes back after 10 s, then up to a minute apart.
        "retryPolicy": {"minimumBackoff": "10s", "maximumBackoff": "60s"},
        // Never expires, however long the service stays quiet.
        "expirationPolicy": {},
        "labels": {"managed-by": "whatsapp-provisioner"}
    })
}

pub fn dead_letter_subscription_body(k: &KeepaliveNames) -> Value {
    json!({
        "name": k.dead_letter_subscription,
        "topic": k.dead_letter_topic,
        "ackDeadlineSeconds": 60,
        "messageRetentionDuration": format!("{DEAD_LETTER_RETENTION_S}s"),
        "expirationPolicy": {},
        "labels": {"managed-by": "whatsapp-provisioner"}
    })
}

/// The fields of `want` that `have` does not match, as update-mask paths (the API's JSON
/// names). `topic` is immutable: the caller reports it.
pub fn subscription_differences(have: &Value, want: &Value) -> Vec<(&'static str, String)> {
    let mut d = Vec::new();
    let push = |v: &Value| {
        (
            v["pushConfig"]["pushEndpoint"].clone(),
            v["pushConfig"]["oidcToken"]["serviceAccountEmail"].clone(),
            v["pushConfig"]["oidcToken"]["audience"].clone(),
        )
    };
    if push(have) != push(want) {
        let (e, sa, _) = push(have);
        let (we, wsa, _) = push(want);
        d.push((
            "pushConfig",
            format!(
                "push endpoint {} with OIDC identity {}, wanted {} with {}",
                show(&e),
                show(&sa),
                show(&we),
                show(&wsa)
            ),
        ));
    }
    if have["ackDeadlineSeconds"].as_i64() != want["ackDeadlineSeconds"].as_i64() {
        d.push((
            "ackDeadlineSeconds",
            format!(
                "ack deadline {} s, wanted {} s",
                show(&have["ackDeadlineSeconds"]),
                show(&want["ackDeadlineSeconds"])
            ),
        ));
    }
    if duration_s(&have["messageRetentionDuration"])
        != duration_s(&want["messageRetentionDuration"])
    {
        d.push((
            "messageRetentionDuration",
            format!(
                "retention {}, wanted {}",
                show(&have["messageRetentionDuration"]),
                show(&want["messageRetentionDuration"])
            ),
        ));
    }
    let dlp = |v: &Value| {
        (
            v["deadLetterPolicy"]["deadLetterTopic"].clone(),
            v["deadLetterPolicy"]["maxDeliveryAttempts"].as_i64(),
        )
    };
    if dlp(have) != dlp(want) {
        d.push((
            "deadLetterPolicy",
            format!(
                "dead-letter policy {}, wanted {}",
                show(&have["deadLetterPolicy"]),
                show(&want["deadLetterPolicy"])
            ),
        ));
    }
    let rp = |v: &Value| {
        (
            duration_s(&v["retryPolicy"]["minimumBackoff"]),
            duration_s(&v["retryPolicy"]["maximumBackoff"]),
        )
    };
    if want.get("retryPolicy").is_some() && rp(have) != rp(want) {
        d.push((
            "retryPolicy",
            format!(
                "retry policy {}, wanted {}",
                show(&have["retryPolicy"]),
                show(&want["retryPolicy"])
            ),
        ));
    }
    if let Some(ttl) = have["expirationPolicy"]["ttl"].as_str() {
        d.push((
            "expirationPolicy",
            format!("expires after {ttl} of inactivity, wanted never"),
        ));
    }
    d
}

/// A subscription in a few words.
fn summary(sub: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(e) = sub["pushConfig"]["pushEndpoint"].as_str() {
        parts.push(format!(
            "push to {e} with an OIDC token for {}",
            show(&sub["pushConfig"]["oidcToken"]["serviceAccountEmail"])
        ));
    } else {
        parts.push("pull".to_string());
    }
    parts.push(format!(
        "ack deadline {} s",
        show(&sub["ackDeadlineSeconds"])
    ));
    parts.push(format!(
        "retention {}",
        show(&sub["messageRetentionDuration"])
    ));
    if let Some(t) = sub["deadLetterPolicy"]["deadLetterTopic"].as_str() {
        parts.push(format!(
            "dead letters to {t} after {} attempts",
            show(&sub["deadLetterPolicy"]["maxDeliveryAttempts"])
        ));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::KeepaliveNames;

    fn names() -> KeepaliveNames {
        KeepaliveNames::example()
    }

    #[test]
    fn subscription_differences_name_update_mask_fields() {
        let k = names();
        let want = push_subscription_body(&k, "https://svc.a.run.app");
        assert!(subscription_differences(&want, &want).is_empty());
        let mut have = want.clone();
        have["ackDeadlineSeconds"] = json!(10);
        have["messageRetentionDuration"] = json!("604800s");
        have["pushConfig"]["pushEndpoint"] = json!("https://old.a.run.app");
        have["expirationPolicy"] = json!({"ttl": "2678400s"});
        let fields: Vec<&str> = subscription_differences(&have, &want)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            [
                "pushConfig",
                "ackDeadlineSeconds",
                "messageRetentionDuration",
                "expirationPolicy"
            ]
        );
        // The crate's model takes the spec as is.
        let sub: Subscription = serde_json::from_value(want.clone()).unwrap();
        let back = serde_json::to_value(&sub).unwrap();
        assert!(subscription_differences(&back, &want).is_empty(), "{back}");
        assert_eq!(back["ackDeadlineSeconds"], 120);
    }
}
