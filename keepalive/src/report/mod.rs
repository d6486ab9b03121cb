//! After the verdict: the outcome, its log line, the notification mail and the event. Nothing
//! here changes a verdict; what became of the mail and the event is only reported.
//!
//! - `outcome.rs`: the [`Outcome`], and [`TargetReport`], what each kind says in a report.
//! - `onprem.rs`: what the On-Premises kind says (mail wording, event, log line).
//! - `cloud.rs`: what the Cloud API kind says.
//! - `mail.rs`: sending a mail over SMTP with STARTTLS.
//! - `events.rs`: publishing an event to Pub/Sub.
//! - `fleet.rs`: the answer to a fleet message (worst verdict, counts, one outcome per entry).
//!
//! # The outcome log line: fields a log filter can match
//!
//! Every check ends in one log line per target (a fleet message: one per number, then a
//! summary line without `kind`). Its fields are stable: Cloud Monitoring's alert policies
//! (`provisioner keepalive`) match them. `tracing-stackdriver` writes each field as a
//! top-level key of the JSON line, its name turned into camelCase, and Cloud Run's logging
//! agent puts every key that is not a special one (`severity`, `message`, `time`,
//! `logging.googleapis.com/...`) under `jsonPayload`:
//!
//! | `jsonPayload.` | kinds | value |
//! |---|---|---|
//! | `kind` | both | `onprem` or `cloud`: only outcome lines carry it |
//! | `verdict` | both | `healthy`, `grace`, `skipped`, `reset`, `alert`; `warning`, `repaired`; `unknown` for a fleet entry that could not be checked |
//! | `reason` | both | the outcome's reason |
//! | `vm`, `zone`, `project` | `onprem` | the VM, its zone and project |
//! | `phoneNumberId`, `wabaId`, `name` | `cloud` | the number, its WABA, its label |
//! | `findings` | `cloud` | the findings' kinds, comma-separated (`token,blocked`), empty when none |
//! | `messageId` | both | the Pub/Sub message (empty for `check`) |
//!
//! A filter such as `jsonPayload.kind="onprem" AND jsonPayload.verdict="reset"` matches the
//! resets, `jsonPayload.findings:"token"` the numbers whose access token is refused.

pub mod cloud;
pub mod events;
pub mod fleet;
pub mod mail;
pub mod onprem;
pub mod outcome;

use shared::payload::SmtpSettings;
use std::time::Duration;
use tokio::time::Instant;

use crate::config::{Config, MailConfig};
use crate::verdict::Verdict;
use events::EventPublisher;
pub use outcome::{Conclusion, Details, Outcome, TargetReport};

/// Sends the mails and publishes the events; built once, with the service.
pub struct Reporter {
    mail: MailConfig,
    events: Option<EventPublisher>,
}

/// What became of the mail and the event of one check (`None`: none was due, or there is
/// nowhere to send it).
#[derive(Debug, Clone, Default)]
pub struct Announced {
    pub mail: Option<String>,
    pub event: Option<String>,
}

impl Reporter {
    pub fn new(config: &Config) -> Reporter {
        Reporter {
            mail: config.mail.clone(),
            events: config.events.as_ref().map(EventPublisher::new),
        }
    }

    /// The mail (to `smtp`) and the event that the verdict asks for, each bounded by what is
    /// left until `deadline`. A dry run announces nothing: the mail would say a VM was reset.
    pub async fn announce(
        &self,
        c: &Conclusion,
        smtp: Option<&SmtpSettings>,
        checked_at: &str,
        dry_run: bool,
        deadline: Instant,
    ) -> Announced {
        let mut announced = Announced::default();
        if dry_run {
            return announced;
        }
        let report = c.details.report();
        if let Some(smtp) = smtp.filter(|_| c.verdict.sends_mail()) {
            let notice = report.notice(c.verdict, &c.reason, checked_at);
            let left = deadline.saturating_duration_since(Instant::now());
            let mut config = self.mail.clone();
            config.timeout = config.timeout.min(left.max(Duration::from_secs(1)));
            announced.mail = Some(match Box::pin(mail::send(smtp, &notice, &config)).await {
                Ok(()) => "sent".to_string(),
                Err(e) => {
                    tracing::warn!(target_name = %report.label(), error = %e, "notification mail failed");
                    format!("failed: {e}")
                }
            });
        }
        if let Some(events) = self.events.as_ref().filter(|_| c.verdict.publishes_event()) {
            let event = report.event(c.verdict, &c.reason, checked_at);
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = left.clamp(Duration::from_secs(1), Duration::from_secs(10));
            announced.event = Some(Box::pin(events.publish(&event, report.label(), timeout)).await);
        }
        announced
    }
}

/// Announces a check's conclusion as soon as it is known, once per verdict: the On-Premises
/// kind announces a reset the moment Compute Engine accepted it, before waiting for the
/// operation (a SIGTERM during the wait then loses neither the mail nor the event), and
/// `check.rs` announces the final conclusion, which goes out again only if its verdict
/// differs.
pub struct Announcer<'a> {
    reporter: &'a Reporter,
    smtp: Option<&'a SmtpSettings>,
    checked_at: &'a str,
    dry_run: bool,
    deadline: Instant,
    sent: std::sync::Mutex<Option<(Verdict, Announced)>>,
}

impl<'a> Announcer<'a> {
    pub fn new(
        reporter: &'a Reporter,
        smtp: Option<&'a SmtpSettings>,
        checked_at: &'a str,
        dry_run: bool,
        deadline: Instant,
    ) -> Announcer<'a> {
        Announcer {
            reporter,
            smtp,
            checked_at,
            dry_run,
            deadline,
            sent: std::sync::Mutex::new(None),
        }
    }

    /// The mail and the event of `c`, unless a conclusion with the same verdict was
    /// announced already (then what became of those).
    pub async fn announce(&self, c: &Conclusion) -> Announced {
        let earlier = self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((verdict, announced)) = earlier.filter(|(v, _)| *v == c.verdict) {
            tracing::debug!(verdict = verdict.as_str(), "already announced");
            return announced;
        }
        let announced = self
            .reporter
            .announce(c, self.smtp, self.checked_at, self.dry_run, self.deadline)
            .await;
        *self.sent.lock().unwrap_or_else(|e| e.into_inner()) = Some((c.verdict, announced.clone()));
        announced
    }
}

/// One log line per handled message, at a severity that matches the verdict.
pub fn log_outcome(outcome: &Outcome, message_id: Option<&str>) {
    outcome
        .details
        .report()
        .log(outcome, message_id.unwrap_or(""));
}
