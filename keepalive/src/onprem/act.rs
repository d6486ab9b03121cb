//! Step 3 of an On-Premises check, when the client is down: the reset. Under the VM's lock,
//! read the VM and its reset record (newest first, within the grace window), let the guard
//! (`guard.rs`) withhold the reset, read the project's recent resets for the fleet brake,
//! derive the `requestId`, reset; then, once the caller has announced the accepted reset,
//! wait for the operation ([`confirm`]). Says what happened as a [`ResetResult`]; the verdict
//! is `decide.rs`'s.

use shared::google::compute::{Instance, InstanceRef, Operation, OperationQuery, Scope};
use shared::google::GoogleError;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use uuid::Uuid;

use super::compute_time;
use super::guard::{self, VmState, Withheld};
use super::trust;
use crate::service::Service;

/// Operations a page (an answer stays well under 256 KiB), and pages read at most, for the
/// VM's history and for the brake.
const PAGE_SIZE: usize = 100;
const MAX_PAGES: usize = 5;

/// How the reset went before any wait: settled, or accepted by Compute Engine and not yet
/// confirmed (then the VM's turn is still held, until [`confirm`]).
pub enum Reset {
    Settled(ResetResult),
    Accepted(Accepted),
}

/// A reset Compute Engine accepted; its operation is still running.
pub struct Accepted {
    operation: Operation,
    request_id: Uuid,
    /// Checks of this VM in this process wait until the reset is confirmed.
    _turn: OwnedMutexGuard<()>,
}

impl Accepted {
    /// What is known now: issued, completion not yet confirmed.
    pub fn result(&self) -> ResetResult {
        ResetResult::Issued {
            operation: Some(self.operation.name.clone()).filter(|n| !n.is_empty()),
            request_id: self.request_id,
            unconfirmed: None,
        }
    }
}

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

/// Resets `vm` unless the guard or the brake withholds it (`dry_run`: never resets). `why`
/// is the client's failure, for the log.
pub async fn reset_if_due(
    svc: &Service,
    vm: &InstanceRef,
    why: &str,
    dry_run: bool,
    deadline: Instant,
) -> Reset {
    let turn = svc.vm_locks.lock(&vm.to_string()).await;
    let failed = |error| {
        Reset::Settled(ResetResult::Failed {
            error,
            request_id: None,
            operation: None,
        })
    };
    let (instance, state) = match read_vm(svc, vm, deadline).await {
        Ok(read) => read,
        Err(error) => return failed(error),
    };
    if let Err(not) = trust::enabled(&instance) {
        return Reset::Settled(ResetResult::Withheld(Withheld::NotEnabled(not)));
    }
    if let Err(withheld) =
        guard::may_reset(&state, OffsetDateTime::now_utc(), svc.config.boot_grace)
    {
        return Reset::Settled(ResetResult::Withheld(withheld));
    }
    // The brake comes after the grace rule: a VM in grace is not reset anyway. Its turn is
    // held until Compute Engine has accepted the reset (lock order: the VM's, then the
    // project's).
    let mut brake_turn = None;
    if svc.config.brake_resets > 0 {
        brake_turn = Some(svc.brake_locks.lock(&vm.project).await);
        let recent = match recent_resets(svc, vm, deadline).await {
            Ok(ops) => ops,
            Err(error) => return failed(error),
        };
        let config = &svc.config;
        let now = OffsetDateTime::now_utc();
        if let Err(braked) = guard::brake(
            vm,
            &instance,
            &recent,
            now,
            config.brake_window,
            config.brake_resets,
        ) {
            return Reset::Settled(ResetResult::Withheld(Withheld::Braked(braked)));
        }
    }
    let request_id = guard::request_id(&vm.project, &vm.zone, &instance, state.last_reset.as_ref());
    if dry_run {
        return Reset::Settled(ResetResult::DueButDryRun { request_id });
    }
    tracing::warn!(vm = %vm.name, zone = %vm.zone, project = %vm.project, %request_id, reason = %why, "resetting VM");
    let sent = OffsetDateTime::now_utc();
    let answer = svc.compute.reset(vm, request_id, Some(deadline)).await;
    // Accepted or not, the next check's read of the recent resets now shows what happened.
    drop(brake_turn);
    let op = match answer {
        Ok(op) => op,
        Err(error) if error.status() == Some(409) => {
            return Reset::Settled(ResetResult::Refused409 { request_id, error })
        }
        Err(error) => {
            return Reset::Settled(ResetResult::Failed {
                error,
                request_id: Some(request_id),
                operation: None,
            })
        }
    };
    // An operation inserted well before this reset was sent answers an earlier request.
    let inserted = op.insert_time.as_deref().and_then(compute_time::parse);
    if inserted.is_some_and(|t| t < sent - time::Duration::seconds(30)) {
        return Reset::Settled(ResetResult::AlreadyDoneByAnotherCheck {
            operation: op.name,
            request_id,
        });
    }
    let operation = Some(op.name.clone()).filter(|n| !n.is_empty());
    if let Some(message) = op.failure() {
        return Reset::Settled(ResetResult::Failed {
            error: GoogleError::Operation {
                api: "Compute Engine",
                name: op.name,
                message,
            },
            request_id: Some(request_id),
            operation,
        });
    }
    if op.is_done() || op.name.is_empty() {
        return Reset::Settled(ResetResult::Issued {
            operation,
            request_id,
            unconfirmed: None,
        });
    }
    Reset::Accepted(Accepted {
        operation: op,
        request_id,
        _turn: turn,
    })
}

/// Waits for an accepted reset to finish (bounded by `deadline`).
pub async fn confirm(
    svc: &Service,
    vm: &InstanceRef,
    accepted: Accepted,
    deadline: Instant,
) -> ResetResult {
    let request_id = accepted.request_id;
    let operation = Some(accepted.operation.name.clone());
    let unconfirmed = match wait_for_reset(svc, vm, &accepted.operation, deadline).await {
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
    };
    ResetResult::Issued {
        operation,
        request_id,
        unconfirmed,
    }
}

/// The instance and, when it is RUNNING, its newest reset within the grace window.
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

/// The VM's reset operations in the grace window, newest first: however many are on record,
/// the newest comes first and the pages stop once they pass the window's start. A filter the
/// server refuses (400) is dropped (the guard filters here too); a list not found (404, when
/// the instance was just read) leaves only the `requestId` guard, and says so.
async fn reset_history(
    svc: &Service,
    vm: &InstanceRef,
    instance: &Instance,
    deadline: Instant,
) -> Result<Vec<Operation>, GoogleError> {
    let since = OffsetDateTime::now_utc() - svc.config.boot_grace;
    let list = |filter: String| async move {
        let query = OperationQuery {
            filter: &filter,
            newest_first: true,
            page_size: PAGE_SIZE,
            max_pages: MAX_PAGES,
        };
        let more = |page: &[Operation]| guard::page_reaches_into(page, since);
        svc.compute
            .list_zone_operations(&vm.project, &vm.zone, &query, Some(deadline), more)
            .await
    };
    match list(guard::reset_filter(instance, since)).await {
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

/// The project's resets in the brake's window, in every zone (`aggregated/operations`),
/// whoever issued them.
async fn recent_resets(
    svc: &Service,
    vm: &InstanceRef,
    deadline: Instant,
) -> Result<Vec<Operation>, GoogleError> {
    let since = OffsetDateTime::now_utc() - svc.config.brake_window;
    let filter = guard::resets_since(since);
    let query = OperationQuery {
        filter: &filter,
        newest_first: false,
        page_size: PAGE_SIZE,
        max_pages: MAX_PAGES,
    };
    svc.compute
        .aggregated_operations(&vm.project, &query, Some(deadline), |_| true)
        .await
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
