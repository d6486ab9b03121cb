//! One check of one target: a plain async function from a [`Target`] to an [`Outcome`], which
//! both `serve` and `check` call. Picks the kind's check (observe → decide → act), bounds it
//! by the deadline, reports (mail, event), and builds the outcome once, at the end.

use futures::future::BoxFuture;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::error::CheckError;
use crate::report::{Announcer, Conclusion, Details, Outcome};
use crate::service::Service;
use crate::target::Target;
use crate::{cloud, onprem};

/// Per-check options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Decide, but never call a mutating API (and announce nothing).
    pub dry_run: bool,
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
