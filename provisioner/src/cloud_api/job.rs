//! The number's Cloud Scheduler job with the Cloud API payload of `cloud-api-contract.md`
//! ([`JobPayload::CloudApi`], rendered from `scheduler-cloud-api.yaml`): made by `keepalive`
//! (with `platform = "cloud"`), rewritten in place by `migrate` (the same job, so the
//! keepalive stops checking, and never resets, the VM Meta disconnected). The keepalive's
//! service account gets read access to the two secrets the payload names, and no other.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::secrets::CloudSecrets;
use crate::config::{ConfigError, NumberConfig};
use crate::ensure::{ensure as ensure_resource, Resource};
use crate::names::KeepaliveNames;
use crate::resources::job::SchedulerJob;
use crate::resources::job_payload::{CloudApiTarget, JobPayload};
use crate::resources::secret_accessor;
use crate::{Provisioner, StepError};

/// What the job checks: ids from `[cloud]`, where the token and the verify token are.
pub fn target(prov: &Provisioner) -> Result<CloudApiTarget, StepError> {
    target_of(&prov.cfg).map_err(|e| StepError::Config(e.message))
}

/// [`target`] of any number's configuration (`provisioner fleet` reads many).
pub fn target_of(cfg: &NumberConfig) -> Result<CloudApiTarget, ConfigError> {
    let c = cfg.require_cloud("the Cloud API keepalive job")?;
    Ok(CloudApiTarget {
        phone_number_id: c.phone_number_id.clone(),
        waba_id: c.waba_id.clone(),
        access_token_secret: c.access_token_secret.clone(),
        app_id: c.app_id.clone(),
        webhook_url: c.webhook_url.clone(),
        webhook_verify_token_secret: CloudSecrets::version_in(
            &cfg.project,
            &CloudSecrets::of_config(cfg).verify_token,
        ),
        name: format!("+{}{}", cfg.country_code, cfg.phone_number),
    })
}

/// The job's payload; `Err`: what must come first (an error unless this is a dry run): the
/// access token stored, and the verify token (`provisioner connect`).
pub async fn payload(
    prov: &Provisioner,
    k: &KeepaliveNames,
) -> Result<Result<JobPayload, String>, StepError> {
    let t = target(prov)?;
    let blocked = missing_secrets(prov, &t).await?;
    match blocked.is_empty() {
        true => Ok(Ok(JobPayload::CloudApi(t))),
        false if prov.dry_run => Ok(Err(blocked.join("; "))),
        false => Err(StepError::failed(
            format!("Cloud Scheduler job {}", k.job),
            blocked.join("; "),
        )),
    }
}

/// Which of the two secrets `t` names do not exist yet, each with what to do first.
pub async fn missing_secrets(
    prov: &Provisioner,
    t: &CloudApiTarget,
) -> Result<Vec<String>, StepError> {
    let mut blocked = Vec::new();
    for (version, first) in [
        (
            &t.access_token_secret,
            "store the system user's access token there first",
        ),
        (
            &t.webhook_verify_token_secret,
            "run `provisioner connect` first (it stores the verify token)",
        ),
    ] {
        let exists = prov
            .google
            .secrets
            .version_exists(version, Some(prov.call_deadline()))
            .await
            .map_err(prov.google_failed(format!("secret {version}")))?;
        if !exists {
            blocked.push(format!("{version} does not exist: {first}"));
        }
    }
    Ok(blocked)
}

/// Read access for the keepalive's service account to the token and the verify token.
pub async fn grant_secrets(
    prov: &Provisioner,
    k: &KeepaliveNames,
    t: &CloudApiTarget,
) -> Result<(), StepError> {
    grant_token(prov, k, &t.access_token_secret).await?;
    grant_verify_token(prov, k, &t.webhook_verify_token_secret).await
}

/// Read access for the keepalive's service account to the access token in `version`.
pub async fn grant_token(
    prov: &Provisioner,
    k: &KeepaliveNames,
    version: &str,
) -> Result<(), StepError> {
    let member = format!("serviceAccount:{}", k.service_account);
    secret_accessor::ensure(prov, version, &member, "store the access token first").await
}

/// Read access for the keepalive's service account to the verify token in `version`.
pub async fn grant_verify_token(
    prov: &Provisioner,
    k: &KeepaliveNames,
    version: &str,
) -> Result<(), StepError> {
    let member = format!("serviceAccount:{}", k.service_account);
    secret_accessor::ensure(prov, version, &member, "run `provisioner connect` first").await
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

/// What [`rewrite`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    /// It had the On-Premises payload; it has (or, dry, would have) the Cloud API one.
    Rewritten,
    /// It had the Cloud API payload already (brought to the spec if it drifted).
    Unchanged,
    /// The number has no job.
    Missing,
}

/// `migrate`'s step 7: the number's existing job rewritten to the Cloud API payload, with
/// the grants it needs; a number without a job gets none (its `keepalive` step makes it).
pub async fn rewrite(prov: &Provisioner) -> Result<JobChange, StepError> {
    let k = KeepaliveNames::of(&prov.cfg);
    let t = target(prov)?;
    let job = SchedulerJob::new(&k, JobPayload::CloudApi(t.clone()))?;
    let Some(have) = job.read(prov).await? else {
        return Ok(JobChange::Missing);
    };
    grant_secrets(prov, &k, &t).await?;
    ensure_resource(prov, &job).await?;
    Ok(if is_onprem(&have) {
        JobChange::Rewritten
    } else {
        JobChange::Unchanged
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_onprem_job_is_told_apart_from_a_cloud_one() {
        let onprem = json!({"pubsubTarget": {"data": STANDARD.encode(r#"{"vm":"whatsapp-1","zone":"z","whatsAppHostname":"1.2.3.4"}"#)}});
        let cloud = json!({"pubsubTarget": {"data": STANDARD.encode(r#"{"phoneNumberId":"1","wabaId":"2"}"#)}});
        assert!(is_onprem(&onprem));
        assert!(!is_onprem(&cloud));
        assert!(!is_onprem(&json!({})));
    }
}
