//! What the On-Premises kind says in a report: the mail's wording, the event, the log line.

use serde::Serialize;
use std::collections::HashMap;

use super::events::Event;
use super::mail::{one_line, Notice};
use super::outcome::{Outcome, TargetReport};
use crate::onprem::Details;
use crate::verdict::{Severity, Verdict};

/// The event's JSON. The attributes repeat `type`, `verdict`, `vm`, `zone` and `project`
/// for subscription filters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct EventData<'a> {
    /// `keepalive.reset` or `keepalive.alert`.
    #[serde(rename = "type")]
    kind: String,
    /// The tenant: the VM that runs its WhatsApp client (one per number).
    tenant: &'a str,
    vm: &'a str,
    zone: &'a str,
    project: Option<&'a str>,
    verdict: &'a str,
    reason: &'a str,
    /// When the check started (RFC 3339, UTC).
    time: &'a str,
    /// The reset operation, for a reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl TargetReport for Details {
    fn label(&self) -> &str {
        &self.vm
    }

    fn notice(&self, verdict: Verdict, reason: &str, checked_at: &str) -> Notice {
        let (vm, zone) = (self.vm.as_str(), self.zone.as_str());
        let project = self.project.as_deref().unwrap_or("-");
        let short_reason = one_line(reason, 120);
        let (subject, opening) = match verdict {
            Verdict::Reset => (
                format!("[keepalive] VM {vm} reset: {short_reason}"),
                format!(
                    "The keepalive reset the VM {vm}: its WhatsApp Business API client was down."
                ),
            ),
            Verdict::Alert => (
                format!("[keepalive] ALERT {vm}: {short_reason}"),
                format!(
                    "The keepalive raised an alert for the VM {vm}. A reset would not help: \
                     this needs a person."
                ),
            ),
            other => (
                format!("[keepalive] VM {vm} {}: {short_reason}", other.as_str()),
                format!("The keepalive checked the VM {vm}: {}.", other.as_str()),
            ),
        };
        let verdict = verdict.as_str();
        let mut body = format!(
            "{opening}\n\n\
             Reason:  {reason}\n\
             VM:      {vm}\n\
             Zone:    {zone}\n\
             Project: {project}\n\
             Time:    {checked_at}\n\
             Verdict: {verdict}\n"
        );
        if ![project, zone, vm]
            .iter()
            .any(|v| v.is_empty() || *v == "-")
        {
            body.push_str(&format!(
                "\nConsole: https://console.cloud.google.com/compute/instancesDetail/zones/{zone}/instances/{vm}?project={project}\n"
            ));
        }
        body.push_str("\n-- \nSent by the WhatsApp Business API keepalive.\n");
        Notice {
            subject: one_line(&subject, 200),
            body,
        }
    }

    fn event(&self, verdict: Verdict, reason: &str, checked_at: &str) -> Event {
        let verdict = verdict.as_str();
        let data = EventData {
            kind: format!("keepalive.{verdict}"),
            tenant: &self.vm,
            vm: &self.vm,
            zone: &self.zone,
            project: self.project.as_deref(),
            verdict,
            reason,
            time: checked_at,
            operation: self.operation.as_deref(),
            request_id: self.request_id.as_deref(),
        };
        let mut attributes = HashMap::from([
            ("type".to_string(), data.kind.clone()),
            ("verdict".to_string(), verdict.to_string()),
            ("vm".to_string(), self.vm.clone()),
            ("zone".to_string(), self.zone.clone()),
        ]);
        if let Some(p) = &self.project {
            attributes.insert("project".into(), p.clone());
        }
        Event {
            data: serde_json::to_value(&data).expect("an event serializes"),
            attributes,
        }
    }

    fn log(&self, o: &Outcome, message_id: &str) {
        let project = self.project.as_deref().unwrap_or("");
        let verdict = o.verdict.as_str();
        let (vm, zone, attempts) = (&self.vm, &self.zone, self.attempts);
        match o.verdict.severity() {
            Severity::Info => tracing::info!(
                kind = "onprem", vm = %vm, zone = %zone, project, verdict, reason = %o.reason, attempts,
                duration_ms = o.duration_ms, message_id, "check done"
            ),
            Severity::Warning => tracing::warn!(
                kind = "onprem", vm = %vm, zone = %zone, project, verdict, reason = %o.reason, attempts,
                operation = self.operation.as_deref().unwrap_or(""), dry_run = self.dry_run,
                duration_ms = o.duration_ms, message_id, "check done: VM reset"
            ),
            Severity::Error => tracing::error!(
                kind = "onprem", vm = %vm, zone = %zone, project, verdict, reason = %o.reason, attempts,
                duration_ms = o.duration_ms, message_id, "check done: needs a person"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> Details {
        Details {
            vm: "whatsapp-4915112345678".into(),
            zone: "europe-west3-c".into(),
            project: Some("acme-prod".into()),
            attempts: 3,
            dry_run: false,
            operation: Some("operation-1".into()),
            request_id: Some("0f2c".into()),
        }
    }

    const REASON: &str = "login failed: connection refused";
    const TIME: &str = "2026-11-24T10:00:00Z";

    #[test]
    fn an_event_carries_what_a_router_needs() {
        let e = details().event(Verdict::Reset, REASON, TIME);
        assert_eq!(
            e.data,
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
        assert_eq!(back, e.data);
    }

    #[test]
    fn an_alert_has_no_operation() {
        let mut d = details();
        d.operation = None;
        d.request_id = None;
        d.project = None;
        let e = d.event(Verdict::Alert, REASON, TIME);
        assert_eq!(e.data["type"], "keepalive.alert");
        assert!(e.data.get("operation").is_none());
        assert!(e.data["project"].is_null());
        assert!(!e.message().attributes.contains_key("project"));
    }

    #[test]
    fn subject_is_one_bounded_line() {
        let mut d = details();
        d.vm = "vm-1".into();
        d.zone = "z".into();
        d.project = Some("p".into());
        let n = d.notice(Verdict::Reset, "a\r\nb\tc", "t");
        assert_eq!(n.subject, "[keepalive] VM vm-1 reset: a b c");
        let long = "x".repeat(500);
        let n = d.notice(Verdict::Alert, &long, "t");
        assert!(n.subject.chars().count() <= 200);
        assert!(n.body.contains(&long));
        assert!(n.body.contains("instances/vm-1?project=p"), "{}", n.body);
        d.project = None;
        let n = d.notice(Verdict::Reset, "r", "t");
        assert!(!n.body.contains("console.cloud.google.com"), "{}", n.body);
    }
}
