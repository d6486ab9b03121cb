//! What the Cloud API kind says in a report: the mail's wording, the event, the log line.

use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

use super::events::Event;
use super::mail::{one_line, Notice};
use super::outcome::{Outcome, TargetReport};
use crate::cloud::decide::{Finding, RepairReport};
use crate::cloud::Details;
use crate::verdict::{Severity, Verdict};

/// The event's JSON. The attributes repeat `type`, `verdict` and `phoneNumberId` for
/// subscription filters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct EventData<'a> {
    /// `keepalive.alert`, `keepalive.warning` or `keepalive.repaired`.
    #[serde(rename = "type")]
    kind: String,
    phone_number_id: &'a str,
    waba_id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_phone_number: Option<&'a str>,
    verdict: &'a str,
    reason: &'a str,
    findings: &'a [Finding],
    repairs: &'a [RepairReport],
    /// When the check started (RFC 3339, UTC).
    time: &'a str,
}

impl TargetReport for Details {
    fn label(&self) -> &str {
        &self.phone_number_id
    }

    fn notice(&self, verdict: Verdict, reason: &str, checked_at: &str) -> Notice {
        let name = self.name.as_str();
        let number = self
            .display_phone_number
            .as_deref()
            .unwrap_or(&self.phone_number_id);
        let short_reason = one_line(reason, 120);
        let (subject, opening) = match verdict {
            Verdict::Repaired => (
                format!("[keepalive] {name} repaired: {short_reason}"),
                format!(
                    "The keepalive put back what the WhatsApp number {name} ({number}) on Meta's \
                     Cloud API had lost, and read it back. Nothing is needed from you unless it \
                     happens again: then find out who changes it."
                ),
            ),
            Verdict::Alert => (
                format!("[keepalive] ALERT {name}: {short_reason}"),
                format!(
                    "The keepalive raised an alert for the WhatsApp number {name} ({number}) on \
                     Meta's Cloud API. The bot may not be getting or sending messages: this \
                     needs a person."
                ),
            ),
            other => (
                format!("[keepalive] {name} {}: {short_reason}", other.as_str()),
                format!(
                    "The keepalive checked the WhatsApp number {name} ({number}): {}.",
                    other.as_str()
                ),
            ),
        };
        let mut body = format!(
            "{opening}\n\n\
             Reason:          {reason}\n\
             Number:          {number}\n\
             Phone number id: {}\n\
             WABA:            {}\n\
             Time:            {checked_at}\n\
             Verdict:         {}\n",
            self.phone_number_id,
            self.waba_id,
            verdict.as_str()
        );
        if !self.findings.is_empty() {
            body.push_str("\nFindings:\n");
            for f in &self.findings {
                let _ = writeln!(
                    body,
                    "- [{}] {}: {}",
                    f.severity.as_str(),
                    f.kind.as_str(),
                    f.detail
                );
            }
        }
        if !self.repairs.is_empty() {
            body.push_str("\nRepairs:\n");
            for r in &self.repairs {
                let _ = writeln!(body, "- {}: {} ({})", r.kind.as_str(), r.action, r.result);
            }
        }
        body.push_str("\n-- \nSent by the WhatsApp Business keepalive.\n");
        Notice {
            subject: one_line(&subject, 200),
            body,
        }
    }

    fn event(&self, verdict: Verdict, reason: &str, checked_at: &str) -> Event {
        let verdict = verdict.as_str();
        let data = EventData {
            kind: format!("keepalive.{verdict}"),
            phone_number_id: &self.phone_number_id,
            waba_id: &self.waba_id,
            name: &self.name,
            display_phone_number: self.display_phone_number.as_deref(),
            verdict,
            reason,
            findings: &self.findings,
            repairs: &self.repairs,
            time: checked_at,
        };
        let attributes = HashMap::from([
            ("type".to_string(), data.kind.clone()),
            ("verdict".to_string(), verdict.to_string()),
            ("phoneNumberId".to_string(), self.phone_number_id.clone()),
        ]);
        Event {
            data: serde_json::to_value(&data).expect("an event serializes"),
            attributes,
        }
    }

    fn log(&self, o: &Outcome, message_id: &str) {
        let verdict = o.verdict.as_str();
        let (id, waba, name) = (&self.phone_number_id, &self.waba_id, &self.name);
        let kinds: Vec<&str> = self.findings.iter().map(|f| f.kind.as_str()).collect();
        let kinds = kinds.join(",");
        match o.verdict.severity() {
            Severity::Info => tracing::info!(
                kind = "cloud", phone_number_id = %id, waba_id = %waba, name = %name, verdict,
                reason = %o.reason, findings = %kinds, duration_ms = o.duration_ms, message_id, "check done"
            ),
            Severity::Warning => tracing::warn!(
                kind = "cloud", phone_number_id = %id, waba_id = %waba, name = %name, verdict,
                reason = %o.reason, findings = %kinds, dry_run = self.dry_run, duration_ms = o.duration_ms, message_id,
                "check done: a person should look"
            ),
            Severity::Error => tracing::error!(
                kind = "cloud", phone_number_id = %id, waba_id = %waba, name = %name, verdict,
                reason = %o.reason, findings = %kinds, duration_ms = o.duration_ms, message_id,
                "check done: needs a person"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::decide::{Kind, Severity as FindingSeverity};

    fn details() -> Details {
        Details {
            phone_number_id: "106540352242922".into(),
            waba_id: "102290129340398".into(),
            name: "acme-de".into(),
            findings: vec![Finding {
                kind: Kind::Subscription,
                severity: FindingSeverity::Repaired,
                detail: "app 6349 is not subscribed to WABA 102290129340398; put back".into(),
            }],
            repairs: vec![RepairReport {
                kind: Kind::Subscription,
                action: "POST 102290129340398/subscribed_apps".into(),
                result: "done",
                detail: None,
            }],
            display_phone_number: Some("+49 151 1234567".into()),
            quality_rating: Some("GREEN".into()),
            platform_type: Some("CLOUD_API".into()),
            dry_run: false,
        }
    }

    #[test]
    fn an_event_carries_what_a_router_needs() {
        let e = details().event(
            Verdict::Repaired,
            "subscription: put back",
            "2026-11-24T10:00:00Z",
        );
        assert_eq!(e.data["type"], "keepalive.repaired");
        assert_eq!(e.data["phoneNumberId"], "106540352242922");
        assert_eq!(e.data["wabaId"], "102290129340398");
        assert_eq!(e.data["name"], "acme-de");
        assert_eq!(e.data["verdict"], "repaired");
        assert_eq!(e.data["reason"], "subscription: put back");
        assert_eq!(e.data["findings"][0]["kind"], "subscription");
        assert_eq!(e.data["repairs"][0]["result"], "done");
        assert_eq!(e.attributes.len(), 3);
        assert_eq!(e.attributes["type"], "keepalive.repaired");
        assert_eq!(e.attributes["verdict"], "repaired");
        assert_eq!(e.attributes["phoneNumberId"], "106540352242922");
    }

    #[test]
    fn the_mail_names_the_number_and_what_was_done() {
        let n = details().notice(Verdict::Repaired, "subscription: put\nback", "t");
        assert_eq!(
            n.subject,
            "[keepalive] acme-de repaired: subscription: put back"
        );
        for want in [
            "+49 151 1234567",
            "106540352242922",
            "102290129340398",
            "POST 102290129340398/subscribed_apps (done)",
            "Verdict:         repaired",
        ] {
            assert!(n.body.contains(want), "{want}: {}", n.body);
        }
        let n = details().notice(Verdict::Alert, &"x".repeat(500), "t");
        assert!(n.subject.starts_with("[keepalive] ALERT acme-de: "));
        assert!(n.subject.chars().count() <= 200);
    }
}
