//! After the verdict: the outcome, its log line, the notification mail and the event. Nothing
//! here changes a verdict; what became of the mail and the event is only reported.
//!
//! - `outcome.rs`: the [`Outcome`], and [`TargetReport`], what each kind says in a report.
//! - `onprem.rs`: what the On-Premises kind says (mail wording, event, log line).
//! - `cloud.rs`: what the Cloud API kind says.
//! - `mail.rs`: sending a mail over SMTP with STARTTLS.
//! - `events.rs`: publishing an event to Pub/Sub.
//! - `fleet.rs`: the answer to a fleet message (worst verdict, counts, one outcome per entry).

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

/// One log line per handled message, at a severity that matches the verdict.
pub fn log_outcome(outcome: &Outcome, message_id: Option<&str>) {
    outcome
        .details
        .report()
        .log(outcome, message_id.unwrap_or(""));
}
