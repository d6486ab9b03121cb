//! The On-Premises kind: a WhatsApp Business API client on its own Compute Engine VM.
//!
//! One check, in the order [`check`] runs it:
//! 0. the project: the payload's, which `KEEPALIVE_PROJECTS` must allow (else a 400).
//! 1. `observe.rs`: read the instance and the password at once; the label and address rules
//!    (`trust.rs`); log in to the client and probe it, with retries.
//! 2. `decide.rs` ([`decide::after_observe`]): healthy, alert, or down.
//! 3. `act.rs` (when down): under the VM's lock, read the VM and its reset record, let the
//!    guard (`guard.rs`) withhold the reset (grace, fleet brake) or derive its `requestId`,
//!    reset; announce the accepted reset; wait.
//! 4. `decide.rs` ([`decide::after_reset`]): the verdict.
//!
//! Every verdict comes from `decide.rs`. The result goes back to `check.rs`, which reports it.

pub mod act;
pub mod compute_time;
pub mod decide;
pub mod guard;
pub mod observe;
pub mod trust;

use serde::Serialize;
use shared::google::compute::InstanceRef;
use shared::payload::Payload;
use tokio::time::Instant;

use crate::error::CheckError;
use crate::report::{self, Announcer, Conclusion};
use crate::service::Service;
use crate::verdict::Judgement;
use decide::Plan;

/// The On-Premises fields of the outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    pub vm: String,
    pub zone: String,
    pub project: Option<String>,
    /// Health-check attempts made.
    pub attempts: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The reset operation, when one was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Checks the client of `payload` and resets its VM if it is down and the guard allows. A
/// reset is announced (`announcer`) as soon as Compute Engine accepted it, before the wait.
pub async fn check(
    svc: &Service,
    payload: &Payload,
    dry_run: bool,
    deadline: Instant,
    announcer: &Announcer<'_>,
) -> Result<(Judgement, Details), CheckError> {
    // Before anything else: a project this deployment may not act in is a 400.
    let project = Box::pin(svc.project_for(payload.project.as_deref(), "project")).await?;
    let mut details = Details {
        vm: payload.vm.clone(),
        zone: payload.zone.clone(),
        project: Some(project.clone()),
        attempts: 0,
        dry_run,
        operation: None,
        request_id: None,
    };
    let vm = InstanceRef {
        project,
        zone: payload.zone.clone(),
        name: payload.vm.clone(),
    };
    let observed = observe::observe(svc, payload, &vm, deadline).await;
    details.attempts = observed.attempts();
    let down = match decide::after_observe(&observed)? {
        Plan::Conclude(judgement) => return Ok((judgement, details)),
        Plan::ResetIfDue { down } => down,
    };
    let reset = match Box::pin(act::reset_if_due(svc, &vm, &down, dry_run, deadline)).await {
        act::Reset::Settled(result) => result,
        act::Reset::Accepted(accepted) => {
            let early = accepted.result();
            details.operation = early.operation().map(str::to_string);
            details.request_id = early.request_id().map(|id| id.to_string());
            let judgement = decide::after_reset(&down, &early)?;
            let conclusion = Conclusion {
                verdict: judgement.verdict,
                reason: judgement.reason,
                details: report::Details::OnPrem(details.clone()),
            };
            Box::pin(announcer.announce(&conclusion)).await;
            Box::pin(act::confirm(svc, &vm, accepted, deadline)).await
        }
    };
    details.operation = reset.operation().map(str::to_string);
    details.request_id = reset.request_id().map(|id| id.to_string());
    let judgement = decide::after_reset(&down, &reset)?;
    Ok((judgement, details))
}
