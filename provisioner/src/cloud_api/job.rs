//! The number's Cloud Scheduler job with the Cloud API payload of `cloud-api-contract.md`:
//! created or brought to the spec by `keepalive`, rewritten in place by `migrate` (the same
//! job, so the keepalive stops checking, and never resets, the VM Meta disconnected).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::secrets::CloudSecrets;
use crate::names::KeepaliveNames;
use crate::report::Action;
use crate::{Provisioner, StepError};

/// The job's fields this module writes (update-mask names).
const FIELDS: &str = "description,schedule,timeZone,pubsubTarget,retryConfig,attemptDeadline";

/// The Cloud API payload for this number: ids, where the token and the verify token are
/// (never the values), the webhook, and a label.
pub fn payload(prov: &Provisioner) -> Result<Value, StepError> {
    let c = prov
        .cfg
        .require_cloud("the Cloud API keepalive job")
        .map_err(|e| StepError::Config(e.message))?;
    let mut p = json!({
        "phoneNumberId": c.phone_number_id,
        "wabaId": c.waba_id,
        "accessTokenSecret": c.access_token_secret,
        "webhookUrl": c.webhook_url,
        "webhookVerifyTokenSecret": CloudSecrets::version(prov, &CloudSecrets::of(prov).verify_token),
        "name": format!("+{}{}", prov.cfg.country_code, prov.cfg.phone_number),
    });
    if !c.app_id.is_empty() {
        p["appId"] = json!(c.app_id);
    }
    Ok(p)
}

/// The job as wanted: every 5 minutes, the payload as `data`, no retries of a publish (as
/// `scheduler.yaml` says for the On-Premises job).
pub fn job_body(k: &KeepaliveNames, topic_id: &str, payload: &Value) -> Value {
    let data = serde_json::to_vec(payload).expect("JSON");
    json!({
        "name": k.job_name(),
        "description": format!(
            "Checks the WhatsApp Cloud API number {} ({})",
            payload["name"].as_str().unwrap_or(""),
            payload["phoneNumberId"].as_str().unwrap_or("")
        ),
        "schedule": "*/5 * * * *",
        "timeZone": "Etc/UTC",
        "pubsubTarget": {
            "topicName": format!("projects/{}/topics/{topic_id}", k.project),
            "data": STANDARD.encode(data),
            "attributes": {"phoneNumberId": payload["phoneNumberId"]},
        },
        "retryConfig": {"retryCount": 0},
        "attemptDeadline": "180s",
    })
}

/// The JSON payload a job publishes.
pub fn published_payload(job: &Value) -> Option<Value> {
    job["pubsubTarget"]["data"]
        .as_str()
        .and_then(|d| STANDARD.decode(d).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Whether a job still checks the On-Premises client (its payload names a `vm`).
pub fn is_onprem(job: &Value) -> bool {
    published_payload(job)
        .is_some_and(|p| p.get("vm").is_some() && p.get("phoneNumberId").is_none())
}

/// Whether a job publishes exactly `payload` to `topic` (extra fields added by hand kept).
fn publishes(job: &Value, want: &Value) -> bool {
    let (Some(have), Some(want_p)) = (published_payload(job), published_payload(want)) else {
        return false;
    };
    let same_fields = want_p
        .as_object()
        .is_some_and(|w| w.iter().all(|(k, v)| have.get(k) == Some(v)));
    same_fields
        && have.get("vm").is_none()
        && job["pubsubTarget"]["topicName"] == want["pubsubTarget"]["topicName"]
        && job["schedule"] == want["schedule"]
}

/// What [`ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    Created,
    /// It had the On-Premises payload (or another) and now has the Cloud API one.
    Rewritten,
    Unchanged,
    /// There was none and `create` was false.
    Missing,
    /// `--dry-run`: would be created or rewritten.
    Planned,
}

/// Brings the number's job to the Cloud API payload: rewrites an existing one in place;
/// creates one only when `create` (the `keepalive` step; `migrate` only rewrites).
pub async fn ensure(prov: &Provisioner, create: bool) -> Result<JobChange, StepError> {
    const KIND: &str = "Cloud Scheduler job";
    let k = KeepaliveNames::of(&prov.cfg);
    let want = job_body(&k, &prov.cfg.keepalive.topic, &payload(prov)?);
    let resource = format!("{KIND} {}", k.job_name());
    let sched = &prov.google.scheduler;
    let have = sched
        .get_job(&k.project, &k.region, &k.job, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(&resource))?;
    let detail = Some(format!(
        "Cloud API payload for {} to {}",
        want["pubsubTarget"]["attributes"]["phoneNumberId"]
            .as_str()
            .unwrap_or(""),
        k.topic
    ));
    let Some(have) = have else {
        if !create {
            return Ok(JobChange::Missing);
        }
        if prov.dry_run {
            prov.report.add(KIND, &k.job, Action::WouldCreate, detail);
            return Ok(JobChange::Planned);
        }
        match sched
            .create_job(&k.project, &k.region, &want, Some(prov.call_deadline()))
            .await
        {
            Ok(_) => {}
            // Made by a run whose answer was lost: written below like any existing job.
            Err(e) if e.is_already_exists() => return Box::pin(ensure(prov, false)).await,
            Err(e) => return Err(prov.google_failed(&resource)(e)),
        }
        prov.report.add(KIND, &k.job, Action::Created, detail);
        return Ok(JobChange::Created);
    };
    if publishes(&have, &want) {
        prov.report.add(KIND, &k.job, Action::Exists, detail);
        return Ok(JobChange::Unchanged);
    }
    let words = if is_onprem(&have) {
        "On-Premises payload (VM checks and resets) → Cloud API payload".to_string()
    } else {
        "payload → the Cloud API payload of number.toml".to_string()
    };
    if prov.dry_run {
        prov.report
            .add(KIND, &k.job, Action::WouldUpdate(words), detail);
        return Ok(JobChange::Planned);
    }
    prov.google
        .scheduler
        .patch_job(
            &k.project,
            &k.region,
            &k.job,
            &want,
            FIELDS,
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(&resource))?;
    prov.report
        .add(KIND, &k.job, Action::Updated(words), detail);
    Ok(JobChange::Rewritten)
}

/// `keepalive` on a Cloud API number (for now the number's job; the shared topic, service
/// and subscription are the On-Premises step's until the step is split by resource).
pub async fn run_keepalive(prov: &Provisioner) -> Result<(), StepError> {
    let k = KeepaliveNames::of(&prov.cfg);
    println!(
        "keepalive: job {} in {} with the Cloud API payload, topic {}",
        k.job, k.region, k.topic
    );
    ensure(prov, true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_onprem_job_is_told_apart_from_a_cloud_one() {
        let onprem = json!({"pubsubTarget": {"data": STANDARD.encode(r#"{"vm":"whatsapp-1","zone":"z","whatsAppHostname":"1.2.3.4"}"#)}});
        let cloud = json!({"pubsubTarget": {"data": STANDARD.encode(r#"{"phoneNumberId":"1","wabaId":"2"}"#)}});
        assert!(is_onprem(&onprem));
        assert!(!is_onprem(&cloud));
        assert!(!is_onprem(&json!({})));
    }
}
