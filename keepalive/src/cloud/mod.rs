//! The Cloud API kind (`cloud-api-contract.md`): a number on Meta's Cloud API. There is no VM
//! to reset, but a number breaks silently (flagged, blocked, a dead token, a lost
//! subscription, webhooks going elsewhere, a bot that no longer answers Meta's handshake).
//!
//! One check, in the order [`check`] runs it:
//! 1. `observe.rs`: the token (and verify token) from Secret Manager, then concurrently the
//!    number, the WABA's subscribed apps, `debug_token` and the bot's handshake.
//! 2. `decide.rs` ([`decide::assess`]): every finding with its severity (`findings.rs`: the
//!    contract's table, row by row), and the repairs that could put some right.
//! 3. `act.rs` (only with `"repair": true`, never under `--dry-run`): the repairs, each read
//!    back.
//! 4. `decide.rs` ([`decide::conclude`]): the verdict.
//!
//! A fleet message (`fleet.rs`) observes all its numbers at once (`fleet_observe.rs`: Graph
//! batches, each WABA's apps and each token's `debug_token` read once), then judges each
//! entry with the same steps 2 to 4 ([`judge`]).

pub mod act;
pub mod decide;
pub mod findings;
pub mod fleet;
pub mod fleet_observe;
pub mod observe;

use serde::Serialize;
use shared::payload::cloud::CloudPayload;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::error::CheckError;
use crate::service::Service;
use crate::verdict::Judgement;
use decide::{Assessment, Conclusion, Expectations, Finding, RepairReport, Repairs};
use observe::{Observation, Readers, Secrets};

/// The Cloud API fields of the outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    pub phone_number_id: String,
    pub waba_id: String,
    /// The payload's `name`, else the display number, else the id.
    pub name: String,
    /// Most severe first.
    pub findings: Vec<Finding>,
    pub repairs: Vec<RepairReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_rating: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_type: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Checks the number of `payload`, and repairs what it may.
pub async fn check(
    svc: &Service,
    p: &CloudPayload,
    dry_run: bool,
    deadline: Instant,
) -> Result<(Judgement, Details), CheckError> {
    let work_deadline = work_deadline(deadline);
    let readers = Readers::of(svc);
    // Waiting for a turn is outside every request's timeout (as for On-Premises probes).
    let turn = svc.probing.acquire().await.ok();
    let (observation, secrets) = observe::observe(&readers, p, work_deadline).await;
    drop(turn);
    judge(
        svc,
        p,
        &observation,
        secrets.as_ref(),
        dry_run,
        work_deadline,
    )
    .await
}

/// Reads and repairs stop a little before the deadline, so the answer still goes out.
pub fn work_deadline(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - (left / 10).min(Duration::from_secs(1))
}

/// Decide, act, decide, for one number whose observation is in hand (a single check's, or
/// a fleet entry's from `fleet_observe.rs`). `Err`: it could not be judged (a retry may help).
pub async fn judge(
    svc: &Service,
    p: &CloudPayload,
    observation: &Observation,
    secrets: Option<&Secrets>,
    dry_run: bool,
    work_deadline: Instant,
) -> Result<(Judgement, Details), CheckError> {
    let number = match observation {
        Observation::Read(r) => r.number.as_ref().ok(),
        Observation::NoAccessToken(_) => None,
    };
    let display = number.and_then(|n| n.display_phone_number.clone());
    let mut details = Details {
        phone_number_id: p.phone_number_id.clone(),
        waba_id: p.waba_id.clone(),
        name: p
            .name
            .clone()
            .or_else(|| display.clone())
            .unwrap_or_else(|| p.phone_number_id.clone()),
        findings: vec![],
        repairs: vec![],
        display_phone_number: display,
        quality_rating: number.and_then(|n| n.quality_rating.clone()),
        platform_type: number.and_then(|n| n.platform_type.clone()),
        dry_run,
    };
    let exp = Expectations {
        phone_number_id: &p.phone_number_id,
        waba_id: &p.waba_id,
        app_id: p.app_id.as_deref(),
        webhook: p.webhook.as_ref(),
        has_verify_token: secrets.is_some_and(|s| s.verify_token.is_some()),
        repair: p.repair,
        now: OffsetDateTime::now_utc(),
        token_warn: svc.config.graph.token_warn,
    };
    let judged = match decide::assess(observation, &exp) {
        Assessment::Incomplete(why) => return Err(CheckError::Unfinished(why)),
        Assessment::Judged(j) => j,
    };
    let repairs = match secrets {
        Some(s) if p.repair && !judged.repairs.is_empty() => {
            if dry_run {
                Repairs::DryRun
            } else {
                Repairs::Made(act::repair(&svc.graph, p, s, &judged.repairs, work_deadline).await)
            }
        }
        _ => Repairs::NotAsked,
    };
    match decide::conclude(judged, repairs, &exp) {
        Conclusion::Incomplete(why) => Err(CheckError::Unfinished(why)),
        Conclusion::Done(c) => {
            details.findings = c.findings;
            details.repairs = c.repairs;
            Ok((Judgement::new(c.verdict, c.reason), details))
        }
    }
}
