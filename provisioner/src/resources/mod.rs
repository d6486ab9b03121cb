//! What the provisioner manages, one file per kind of resource. Each holds its spec (what
//! `number.toml` asks for), how to read and create it, and how what exists differs, as a
//! [`Resource`](crate::ensure::Resource) that [`ensure`](crate::ensure::ensure) drives.
//!
//! - Steps 1 and 2 (`database`, `vm`): [`address`], [`secret`], [`sql_instance`],
//!   [`database_user`], [`firewall`], [`instance`].
//! - Step 6 (`keepalive`): [`topic`], [`service`] (Cloud Run), [`invoker`] (who may call it),
//!   [`subscription`], [`grant`] (Pub/Sub IAM), [`job`] (Cloud Scheduler), whose message is
//!   built in [`job_payload`] (an On-Premises or a Cloud API payload); [`iam_policy`] is the
//!   policy arithmetic the IAM kinds share; [`secret_accessor`] lets the keepalive read the
//!   secrets a Cloud API job names; [`alert_policy`] and [`notification_channel`] (Cloud
//!   Monitoring) turn the keepalive's outcome lines into incidents.

pub mod address;
pub mod alert_policy;
pub mod database_user;
pub mod firewall;
pub mod grant;
pub mod iam_policy;
pub mod instance;
pub mod invoker;
pub mod job;
pub mod job_payload;
pub mod notification_channel;
pub mod secret;
pub mod secret_accessor;
pub mod service;
pub mod sql_instance;
pub mod subscription;
pub mod topic;

use serde_json::Value;

/// A JSON value in words: `unset` for null, a string without its quotes.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Seconds of a protobuf JSON duration (`"600s"`, `"600.5s"`); `None` if absent or malformed.
pub fn duration_s(v: &Value) -> Option<f64> {
    v.as_str()?.strip_suffix('s')?.parse().ok()
}

/// Waits (at most `wait`) for the operation of a Compute Engine insert of `r`. `Ok(false)`:
/// it already existed, for the ensure loop to adopt (address, firewall rule and VM share this).
pub(crate) async fn wait_for_insert<R: crate::ensure::Resource>(
    prov: &crate::Provisioner,
    r: &R,
    insert: Result<shared::google::compute::Operation, shared::google::GoogleError>,
    project: &str,
    scope: &shared::google::compute::Scope,
    wait: std::time::Duration,
) -> Result<bool, crate::StepError> {
    match insert {
        Ok(op) => {
            prov.google
                .compute
                .wait_operation(project, scope, &op.name, prov.wait_deadline(wait))
                .await
                .map_err(prov.google_failed(r.resource()))?;
            Ok(true)
        }
        Err(e) if e.is_already_exists() => Ok(false),
        Err(e) => Err(prov.google_failed(r.resource())(e)),
    }
}
