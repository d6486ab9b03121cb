//! One check of one target: a plain async function from a [`Target`] to an [`Outcome`], which
//! both `serve` and `check` call. Picks the kind's check (observe → decide → act), bounds it
//! by the deadline, reports (mail, event), and builds the outcome once, at the end.

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use shared::payload::cloud::CloudPayload;
use shared::payload::fleet::FleetPayload;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::error::CheckError;
use crate::report::fleet::{EntryOutcome, FleetOutcome, Unknown};
use crate::report::{log_outcome, Announcer, Conclusion, Details, Outcome};
use crate::service::Service;
use crate::target::Target;
use crate::{cloud, onprem};

/// Per-check options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Decide, but never call a mutating API (and announce nothing).
    pub dry_run: bool,
}

/// Mails and events of a fleet's entries sent at once.
const ANNOUNCEMENTS_AT_ONCE: usize = 16;

/// What a message is answered: one outcome, or a fleet's.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Answer {
    One(Outcome),
    Fleet(FleetOutcome),
}

impl Answer {
    /// `check` exits 1: something a person should see (for a fleet: not every checked entry
    /// is healthy).
    pub fn wants_attention(&self) -> bool {
        match self {
            Answer::One(o) => o.verdict.wants_attention(),
            Answer::Fleet(f) => f.wants_attention(),
        }
    }

    /// The log lines of a handled message: one per number.
    pub fn log(&self, message_id: Option<&str>) {
        match self {
            Answer::One(o) => log_outcome(o, message_id),
            Answer::Fleet(f) => {
                for o in &f.outcomes {
                    match o {
                        EntryOutcome::Checked(o) => log_outcome(o, message_id),
                        EntryOutcome::Unknown(u) => tracing::warn!(
                            kind = "cloud", phone_number_id = %u.phone_number_id, waba_id = %u.waba_id,
                            name = %u.name, verdict = "unknown", error = %u.error,
                            message_id = message_id.unwrap_or(""), "fleet entry could not be checked"
                        ),
                    }
                }
                tracing::info!(
                    verdict = f.verdict.as_str(), reason = %f.reason, duration_ms = f.duration_ms,
                    message_id = message_id.unwrap_or(""), "fleet check done"
                );
            }
        }
    }
}

/// Checks what the message asks: one target, or a fleet.
pub async fn run(svc: &Service, target: &Target, opts: CheckOptions) -> Result<Answer, CheckError> {
    refuse_foreign_secrets(svc, target).await?;
    match target {
        Target::Fleet(f) => check_fleet(svc, f, opts).await.map(Answer::Fleet),
        _ => check(svc, target, opts).await.map(Answer::One),
    }
}

/// Checks every number of a fleet within the configured deadline, then reports each. `Err`
/// only when no entry could be checked.
pub async fn check_fleet(
    svc: &Service,
    fleet: &FleetPayload,
    opts: CheckOptions,
) -> Result<FleetOutcome, CheckError> {
    let started = Instant::now();
    let deadline = started + svc.config.deadline;
    let checked_at = now_rfc3339();
    let results = tokio::time::timeout(
        svc.config.deadline,
        cloud::fleet::check(svc, fleet, opts.dry_run, deadline),
    )
    .await
    .map_err(|_| CheckError::Deadline(svc.config.deadline))?;
    let duration_ms = started.elapsed().as_millis() as u64;
    let checked_at = &checked_at;
    // By index: a closure over borrowed items trips the compiler's Send check in `serve`.
    let outcomes: Vec<EntryOutcome> = stream::iter(results.into_iter().enumerate())
        .map(|(i, result)| {
            report_entry(
                svc,
                &fleet.numbers[i],
                result,
                checked_at,
                opts,
                deadline,
                duration_ms,
            )
        })
        .buffered(ANNOUNCEMENTS_AT_ONCE)
        .collect()
        .await;
    let first_error = outcomes.iter().find_map(|o| match o {
        EntryOutcome::Unknown(u) => Some(u.error.clone()),
        EntryOutcome::Checked(_) => None,
    });
    let n = outcomes.len();
    FleetOutcome::new(outcomes, checked_at.to_string(), duration_ms).ok_or_else(|| {
        CheckError::Unfinished(format!(
            "none of the {n} numbers could be checked (the first: {})",
            first_error.unwrap_or_default()
        ))
    })
}

/// One fleet entry's outcome: its mail and event when it was checked, else `unknown`.
async fn report_entry(
    svc: &Service,
    p: &CloudPayload,
    result: cloud::fleet::EntryResult,
    checked_at: &str,
    opts: CheckOptions,
    deadline: Instant,
    duration_ms: u64,
) -> EntryOutcome {
    match result {
        Ok((judgement, details)) => {
            let conclusion = Conclusion {
                verdict: judgement.verdict,
                reason: judgement.reason,
                details: Details::Cloud(details),
            };
            let announced = Box::pin(svc.reporter.announce(
                &conclusion,
                p.smtp.as_ref(),
                checked_at,
                opts.dry_run,
                deadline,
            ))
            .await;
            EntryOutcome::Checked(Outcome::new(
                conclusion,
                announced,
                checked_at.to_string(),
                duration_ms,
            ))
        }
        Err(e) => EntryOutcome::Unknown(Unknown {
            phone_number_id: p.phone_number_id.clone(),
            waba_id: p.waba_id.clone(),
            name: p.name.clone().unwrap_or_else(|| p.phone_number_id.clone()),
            verdict: "unknown",
            error: e.to_string(),
            checked_at: checked_at.to_string(),
        }),
    }
}

/// Checks `target` within the configured deadline, then reports.
pub async fn check(
    svc: &Service,
    target: &Target,
    opts: CheckOptions,
) -> Result<Outcome, CheckError> {
    let started = Instant::now();
    let deadline = started + svc.config.deadline;
    let checked_at = now_rfc3339();
    let announcer = Announcer::new(
        &svc.reporter,
        target.smtp(),
        &checked_at,
        opts.dry_run,
        deadline,
    );
    let conclusion = tokio::time::timeout(
        svc.config.deadline,
        conclude(svc, target, opts, deadline, &announcer),
    )
    .await
    .map_err(|_| CheckError::Deadline(svc.config.deadline))??;
    let duration_ms = started.elapsed().as_millis() as u64;
    let announced = Box::pin(announcer.announce(&conclusion)).await;
    Ok(Outcome::new(conclusion, announced, checked_at, duration_ms))
}

/// The kind's own check, to its verdict. Boxed: the check's state exists only while it runs
/// (see `a_waiting_check_is_small`).
/// A Cloud API payload's secrets must live in a project this deployment may act in
/// (`KEEPALIVE_PROJECTS`): a 400 naming the field, before any secret is read.
async fn refuse_foreign_secrets(svc: &Service, target: &Target) -> Result<(), CheckError> {
    match target {
        Target::OnPrem(_) => Ok(()),
        Target::Cloud(p) => {
            for (field, project) in p.secret_projects() {
                svc.project_for(Some(project), field).await?;
            }
            Ok(())
        }
        Target::Fleet(f) => {
            for (i, p) in f.numbers.iter().enumerate() {
                for (field, project) in p.secret_projects() {
                    svc.project_for(Some(project), format!("numbers[{i}].{field}"))
                        .await?;
                }
            }
            Ok(())
        }
    }
}

fn conclude<'a>(
    svc: &'a Service,
    target: &'a Target,
    opts: CheckOptions,
    deadline: Instant,
    announcer: &'a Announcer<'a>,
) -> BoxFuture<'a, Result<Conclusion, CheckError>> {
    match target {
        Target::OnPrem(payload) => Box::pin(async move {
            let (judgement, details) =
                onprem::check(svc, payload, opts.dry_run, deadline, announcer).await?;
            Ok(Conclusion {
                verdict: judgement.verdict,
                reason: judgement.reason,
                details: Details::OnPrem(details),
            })
        }),
        Target::Cloud(payload) => Box::pin(async move {
            let (judgement, details) = cloud::check(svc, payload, opts.dry_run, deadline).await?;
            Ok(Conclusion {
                verdict: judgement.verdict,
                reason: judgement.reason,
                details: Details::Cloud(details),
            })
        }),
        Target::Fleet(f) => Box::pin(async move {
            Err(CheckError::Unfinished(format!(
                "a fleet of {} numbers is checked with `run`, not `check`",
                f.numbers.len()
            )))
        }),
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    /// A check waiting for its turn is a task holding this future: a burst of a thousand
    /// tenants holds a thousand of them, so the phases that need much state (the probes, the
    /// Compute Engine calls, the mail) are boxed and exist only while they run.
    /// (Unboxed, a waiting check was 7.5 KB.)
    #[test]
    fn a_waiting_check_is_small() {
        let svc = Service::new(Config::from_lookup(&|_| None).unwrap()).unwrap();
        let target = Target::parse(
            br#"{"whatsAppHostname":"127.0.0.1:9","whatsAppUsername":"admin","whatsAppPassword":"x","vm":"vm","zone":"z","project":"p"}"#,
        )
        .unwrap();
        let Target::OnPrem(payload) = &target else {
            unreachable!("an On-Premises payload")
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        let outer = std::mem::size_of_val(&check(&svc, &target, CheckOptions::default()));
        assert!(outer <= 1024, "{outer} bytes");
        // What waits for a turn (inside `observe`).
        let announcer = Announcer::new(&svc.reporter, None, "now", false, deadline);
        let future = onprem::check(&svc, payload, false, deadline, &announcer);
        let size = std::mem::size_of_val(&future);
        println!("check future: {size} bytes");
        assert!(size <= 3072, "{size} bytes");
    }
}
