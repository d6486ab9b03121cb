//! Step 3 of an On-Premises check, when the client is down: the reset. Under the VM's lock,
//! read the VM and its reset record, let the guard (`guard.rs`) withhold the reset, derive its
//! `requestId`, reset, and wait for the operation. Says what happened as a [`ResetResult`];
//! the verdict is `decide.rs`'s.

use shared::google::compute::{Instance, InstanceRef, Operation, Scope};
use shared::google::GoogleError;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use super::compute_time;
use super::guard::{self, VmState, Withheld};
use crate::service::Service;

/// What became of the reset.
#[derive(Debug, Clone)]
pub enum ResetResult {
    /// The guard withheld it: the VM is not RUNNING, or is in its grace window.
    Withheld(Withheld),
    /// `--dry-run`: the reset was due and was not issued.
    DueButDryRun { request_id: Uuid },
    /// Compute Engine accepted the reset. `unconfirmed`: why its completion could not be
    /// confirmed in time (the reset stands all the same).
    Issued {
        operation: Option<String>,
        request_id: Uuid,
        unconfirmed: Option<GoogleError>,
    },
    /// The `requestId` answered an operation from before this check: another check (another
    /// process, an earlier delivery) already reset the VM.
    AlreadyDoneByAnotherCheck { operation: String, request_id: Uuid },
    /// 409: another operation holds the VM right now.
    Refused409 {
        request_id: Uuid,
        error: GoogleError,
    },
    /// Reading the VM, the reset or its operation failed.
    Failed {
        error: GoogleError,
        request_id: Option<Uuid>,
        operation: Option<String>,
    },
}

impl ResetResult {
    /// The reset operation, when Compute Engine named one.
    pub fn operation(&self) -> Option<&str> {
        match self {
            ResetResult::Issued { operation, .. } | ResetResult::Failed { operation, .. } => {
                operation.as_deref()
            }
            ResetResult::AlreadyDoneByAnotherCheck { operation, .. } => Some(operation.as_str()),
            ResetResult::Withheld(_)
            | ResetResult::DueButDryRun { .. }
            | ResetResult::Refused409 { .. } => None,
        }
        .filter(|op| !op.is_empty())
    }

    /// The `requestId` of the reset, once one was derived.
    pub fn request_id(&self) -> Option<Uuid> {
        match self {
            ResetResult::Withheld(_) => None,
            ResetResult::DueButDryRun { request_id }
            | ResetResult::Issued { request_id, .. }
            | ResetResult::AlreadyDoneByAnotherCheck { request_id, .. }
            | ResetResult::Refused409 { request_id, .. } => Some(*request_id),
            ResetResult::Failed { request_id, .. } => *request_id,
        }
    }
}

/// Resets `vm` unless the guard withholds it (`dry_run`: never resets). `why` is the client's
/// failure, for the log.
pub async fn reset_if_due(
    svc: &Service,
    vm: &InstanceRef,
    why: &str,
    dry_run: bool,
    deadline: Instant,
) -> ResetResult {
    let _turn = svc.vm_locks.lock(&vm.to_string()).await;
    let (instance, state) = match read_vm(svc, vm, deadline).await {
        Ok(read) => read,
        Err(error) => {
            return ResetResult::Failed {
                error,
                request_id: None,
                operation: None,
            }
        }
    };
    if let Err(withheld) =
        guard::may_reset(&state, OffsetDateTime::now_utc(), svc.config.boot_grace)
    {
        return ResetResult::Withheld(withheld);
    }
    let request_id = guard::request_id(&vm.project, &vm.zone, &instance, state.last_reset.as_ref());
    if dry_run {
        return ResetResult::DueButDryRun { request_id };
    }
    tracing::warn!(vm = %vm.name, zone = %vm.zone, project = %vm.project, %request_id, reason = %why, "resetting VM");
    let sent = OffsetDateTime::now_utc();
    let op = match svc.compute.reset(vm, request_id, Some(deadline)).await {
        Ok(op) => op,
        Err(error) if error.status() == Some(409) => {
            return ResetResult::Refused409 { request_id, error }
        }
        Err(error) => {
            return ResetResult::Failed {
                error,
                request_id: Some(request_id),
                operation: None,
            }
        }
    };
    // An operation inserted well before this reset was sent answers an earlier request.
    let inserted = op.insert_time.as_deref().and_then(compute_time::parse);
    if inserted.is_some_and(|t| t < sent - time::Duration::seconds(30)) {
        return ResetResult::AlreadyDoneByAnotherCheck {
            operation: op.name,
            request_id,
        };
    }
    let operation = Some(op.name.clone()).filter(|n| !n.is_empty());
    if let Some(message) = op.failure() {
        return ResetResult::Failed {
            error: GoogleError::Operation {
                api: "Compute Engine",
                name: op.name,
                message,
            },
            request_id: Some(request_id),
            operation,
        };
    }
    let unconfirmed = if op.is_done() || op.name.is_empty() {
        None
    } else {
        match wait_for_reset(svc, vm, &op, deadline).await {
            Ok(()) => None,
            Err(error @ GoogleError::Operation { .. }) => {
                return ResetResult::Failed {
                    error,
                    request_id: Some(request_id),
                    operation,
                }
            }
            // The reset was issued; only its completion could not be confirmed.
            Err(e) => Some(e),
        }
    };
    ResetResult::Issued {
        operation,
        request_id,
        unconfirmed,
    }
}

/// The instance and, when it is RUNNING, its newest reset on record.
async fn read_vm(
    svc: &Service,
    vm: &InstanceRef,
    deadline: Instant,
) -> Result<(Instance, VmState), GoogleError> {
    let instance = svc.compute.get_instance(vm, Some(deadline)).await?;
    let last_reset = if instance.status == "RUNNING" {
        let ops = reset_history(svc, vm, &instance, deadline).await?;
        guard::newest_reset(&instance, &ops)
    } else {
        None
    };
    let state = VmState {
        status: instance.status.clone(),
        last_start: instance
            .last_start_timestamp
            .as_deref()
            .and_then(compute_time::parse),
        last_reset,
    };
    Ok((instance, state))
}

/// The VM's reset operations on record. A list that cannot be read for a reason other
/// than load or permissions (a 400 for the filter, a 404 for the list itself when the
/// instance was just read) leaves only the `requestId` guard, and says so.
async fn reset_history(
    svc: &Service,
    vm: &InstanceRef,
    instance: &Instance,
    deadline: Instant,
) -> Result<Vec<Operation>, GoogleError> {
    let list = |filter: String| async move {
        svc.compute
            .list_zone_operations(&vm.project, &vm.zone, &filter, 4, Some(deadline))
            .await
    };
    match list(guard::reset_filter(instance)).await {
        Err(e) if e.status() == Some(400) => {
            tracing::warn!(vm = %vm.name, error = %e, "operations filter refused; filtering the zone's operations here");
            list(String::new()).await
        }
        Err(e) if e.status() == Some(404) => {
            tracing::warn!(vm = %vm.name, error = %e, "operations list not found; relying on requestId alone");
            Ok(Vec::new())
        }
        other => other,
    }
}

/// Waits for the reset, but not to the last second: the answer must still reach Pub/Sub.
/// Uses the API's `wait` method, or polls the operation where `wait` is not offered.
async fn wait_for_reset(
    svc: &Service,
    vm: &InstanceRef,
    op: &Operation,
    deadline: Instant,
) -> Result<(), GoogleError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let until = Instant::now()
        + left
            .saturating_sub(Duration::from_secs(3))
            .min(Duration::from_secs(60));
    match svc
        .compute
        .wait_zone_operation(&vm.project, &vm.zone, &op.name, until)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.status(), Some(404 | 405 | 501)) => svc
            .compute
            .wait_operation(&vm.project, &Scope::Zone(vm.zone.clone()), &op.name, until)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}
