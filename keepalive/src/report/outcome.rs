//! The [`Outcome`]: what `serve` answers and `check` prints, built once, at the end of a check.

use serde::Serialize;

use super::events::Event;
use super::mail::Notice;
use super::Announced;
use crate::verdict::Verdict;
use crate::{cloud, onprem};

/// A kind's check, concluded: its verdict, the reason, and the kind's own fields.
#[derive(Debug, Clone)]
pub struct Conclusion {
    pub verdict: Verdict,
    pub reason: String,
    pub details: Details,
}

/// The fields of the outcome that belong to the kind of target (one variant per kind, as in
/// `Target`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Details {
    OnPrem(onprem::Details),
    Cloud(cloud::Details),
}

impl Details {
    /// How this kind is reported.
    pub fn report(&self) -> &dyn TargetReport {
        match self {
            Details::OnPrem(d) => d,
            Details::Cloud(d) => d,
        }
    }
}

/// What each kind of target says in the report: its mail, its event, its log line
/// (`report/onprem.rs` for the On-Premises kind).
pub trait TargetReport: Send + Sync {
    /// Names the target in log lines (the VM, the number).
    fn label(&self) -> &str;
    /// The notification mail.
    fn notice(&self, verdict: Verdict, reason: &str, checked_at: &str) -> Notice;
    /// The event for `KEEPALIVE_EVENTS_TOPIC`.
    fn event(&self, verdict: Verdict, reason: &str, checked_at: &str) -> Event;
    /// The one log line of a handled message (`message_id` empty for `check`).
    fn log(&self, outcome: &Outcome, message_id: &str);
}

/// The result of a check, as `serve` answers and `check` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub verdict: Verdict,
    pub reason: String,
    #[serde(flatten)]
    pub details: Details,
    /// `sent`, or why the mail failed; absent when no mail was due or the payload names no
    /// relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// `published <message id>`, or why not; absent when no event was due or
    /// `KEEPALIVE_EVENTS_TOPIC` is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// When the check started (RFC 3339, UTC).
    pub checked_at: String,
    /// How long the check took, mail and event not included.
    pub duration_ms: u64,
}

impl Outcome {
    pub fn new(
        conclusion: Conclusion,
        announced: Announced,
        checked_at: String,
        duration_ms: u64,
    ) -> Outcome {
        Outcome {
            verdict: conclusion.verdict,
            reason: conclusion.reason,
            details: conclusion.details,
            mail: announced.mail,
            event: announced.event,
            checked_at,
            duration_ms,
        }
    }
}
