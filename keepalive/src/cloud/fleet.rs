//! A fleet of Cloud API numbers in one message (`cloud-api-contract.md`, "Fleet messages"):
//! observed together (`fleet_observe.rs`: batches, each WABA and token once), then each entry
//! judged exactly as a single number is (`judge`: decide, act, decide). An entry that cannot
//! be judged (its reads still failing after retries) is `unknown`; it never stops the others.

use futures::stream::{self, StreamExt};
use shared::payload::fleet::FleetPayload;
use std::collections::BTreeMap;
use tokio::time::Instant;

use super::fleet_observe::observe_fleet;
use super::observe::{Observation, Readers, Secrets};
use super::{judge, work_deadline, Details};
use crate::error::CheckError;
use crate::service::Service;
use crate::verdict::Judgement;

/// What became of one entry: judged, or could not be (why; a retry may help).
pub type EntryResult = Result<(Judgement, Details), CheckError>;

/// Checks every number of `fleet`; one result per entry, in order.
pub async fn check(
    svc: &Service,
    fleet: &FleetPayload,
    dry_run: bool,
    deadline: Instant,
) -> Vec<EntryResult> {
    let work_deadline = work_deadline(deadline);
    let readers = Readers::of(svc);
    let observed = observe_fleet(&readers, &svc.probing, &fleet.numbers, work_deadline).await;
    // Entries of one WABA are judged one after another (their repairs touch the same WABA);
    // WABAs side by side, as many at once as probes may run.
    let mut by_waba: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in fleet.numbers.iter().enumerate() {
        by_waba.entry(p.waba_id.as_str()).or_default().push(i);
    }
    let observed = &observed;
    let groups: Vec<Vec<usize>> = by_waba.into_values().collect();
    let groups = &groups;
    // By index: a closure over borrowed items trips the compiler's Send check in `serve`.
    let judged: Vec<Vec<(usize, EntryResult)>> = stream::iter(0..groups.len())
        .map(|g| judge_in_turn(svc, fleet, observed, &groups[g], dry_run, work_deadline))
        .buffer_unordered(svc.config.max_concurrent_probes.max(1))
        .collect()
        .await;
    let mut results: Vec<Option<EntryResult>> = (0..fleet.numbers.len()).map(|_| None).collect();
    for (i, r) in judged.into_iter().flatten() {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(CheckError::Unfinished("not judged".into()))))
        .collect()
}

/// Judges `entries` (one WABA's) one after another.
async fn judge_in_turn(
    svc: &Service,
    fleet: &FleetPayload,
    observed: &[(Observation, Option<Secrets>)],
    entries: &[usize],
    dry_run: bool,
    work_deadline: Instant,
) -> Vec<(usize, EntryResult)> {
    let mut out = Vec::with_capacity(entries.len());
    for &i in entries {
        let (observation, secrets) = &observed[i];
        let result = Box::pin(judge(
            svc,
            &fleet.numbers[i],
            observation,
            secrets.as_ref(),
            dry_run,
            work_deadline,
        ))
        .await;
        out.push((i, result));
    }
    out
}
