//! The On-Premises kind: a WhatsApp Business API client on its own Compute Engine VM.
//!
//! One check, in the order [`check`] runs it:
//! 1. `observe.rs`: read the password, log in to the client and probe it, with retries.
//! 2. `decide.rs` ([`decide::after_observe`]): healthy, alert, or down.
//! 3. `act.rs` (when down): under the VM's lock, read the VM and its reset record, let the
//!    guard (`guard.rs`) withhold the reset or derive its `requestId`, reset, wait.
//! 4. `decide.rs` ([`decide::after_reset`]): the verdict.
//!
//! Every verdict comes from `decide.rs`. The result goes back to `check.rs`, which reports it.

pub mod act;
pub mod compute_time;
pub mod decide;
pub mod guard;
pub mod observe;

use serde::Serialize;
use shared::google::compute::InstanceRef;
use shared::payload::Payload;
use std::time::Duration;
use tokio::time::Instant;

use crate::error::CheckError;
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

/// Checks the client of `payload` and resets its VM if it is down and the guard allows.
pub async fn check(
    svc: &Service,
    payload: &Payload,
    dry_run: bool,
    deadline: Instant,
) -> Result<(Judgement, Details), CheckError> {
    let mut details = Details {
        vm: payload.vm.clone(),
        zone: payload.zone.clone(),
        project: payload
            .project
            .clone()
            .or_else(|| svc.config.default_project.clone()),
        attempts: 0,
        dry_run,
        operation: None,
        request_id: None,
    };
    let observed = observe::observe(svc, payload, deadline).await;
    details.attempts = observed.attempts();
    let down = match decide::after_observe(&observed)? {
        Plan::Conclude(judgement) => {
            if details.project.is_none() {
                details.project = project_if_quick(svc).await;
            }
            return Ok((judgement, details));
        }
        Plan::ResetIfDue { down } => down,
    };
    // A reset needs the project; without one the check cannot be completed.
    let project = match &details.project {
        Some(p) => p.clone(),
        None => svc
            .auth
            .project_id()
            .await
            .map_err(|e| CheckError::NoProject(e.to_string()))?,
    };
    details.project = Some(project.clone());
    let vm = InstanceRef {
        project,
        zone: payload.zone.clone(),
        name: payload.vm.clone(),
    };
    let reset = Box::pin(act::reset_if_due(svc, &vm, &down, dry_run, deadline)).await;
    details.operation = reset.operation().map(str::to_string);
    details.request_id = reset.request_id().map(|id| id.to_string());
    let judgement = decide::after_reset(&down, &reset)?;
    Ok((judgement, details))
}

/// The credentials' project, if it can be had at once (cheap with a key file): a best effort,
/// so that an outcome without a VM action still names the project.
async fn project_if_quick(svc: &Service) -> Option<String> {
    let ask = svc.auth.project_id();
    match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(p)) => Some(p),
        _ => None,
    }
}
