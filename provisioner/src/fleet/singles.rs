//! A fleet's numbers' own jobs, deleted once the fleet job that lists them is in place: only
//! a job that publishes the Cloud API payload of that same number; any other job under the
//! name (an On-Premises payload, another number's, one that is not ours) is reported and left.

use serde_json::Value;

use super::numbers::{Group, Member};
use crate::names::KeepaliveNames;
use crate::report::Action;
use crate::resources::job_payload::decoded_payload;
use crate::{Provisioner, StepError};

const KIND: &str = "own Cloud Scheduler job";

/// Deletes the own job of each number of `g` that `fleet_job` (the group's job as it is now;
/// `None`: it would be created, under `--dry-run`) lists and checks.
pub async fn remove(
    prov: &Provisioner,
    k: &KeepaliveNames,
    g: &Group,
    fleet_job: Option<&Value>,
) -> Result<(), StepError> {
    for m in &g.members {
        remove_one(prov, k, m, covers(fleet_job, &m.target.phone_number_id, prov.dry_run)).await?;
    }
    Ok(())
}

/// Whether the fleet job checks `id`: it is enabled and lists it. Under `--dry-run` a job
/// that would be created or updated would list it.
fn covers(fleet_job: Option<&Value>, id: &str, dry_run: bool) -> bool {
    if dry_run {
        return true;
    }
    let Some(job) = fleet_job else { return false };
    let enabled = job["state"].as_str().is_none_or(|s| s == "ENABLED");
    let listed = decoded_payload(&job["pubsubTarget"])
        .and_then(|p| p["numbers"].as_array().cloned())
        .is_some_and(|n| n.iter().any(|e| e["phoneNumberId"] == id));
    enabled && listed
}

async fn remove_one(
    prov: &Provisioner,
    k: &KeepaliveNames,
    m: &Member,
    covered: bool,
) -> Result<(), StepError> {
    let id = &m.target.phone_number_id;
    let name = &m.single_job;
    let resource = format!("{KIND} {}", k.job_name_of(name));
    let scheduler = &prov.google.scheduler;
    let have = scheduler
        .get_job(&k.project, &k.region, name, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(&resource))?;
    let Some(have) = have else {
        return Ok(());
    };
    let payload = decoded_payload(&have["pubsubTarget"]).unwrap_or(Value::Null);
    let ours = payload["phoneNumberId"] == id.as_str()
        && payload.get("vm").is_none()
        && payload.get("numbers").is_none();
    if !ours {
        let what = match (payload.get("vm"), payload["phoneNumberId"].as_str()) {
            (Some(_), _) => "it publishes an On-Premises payload (`provisioner keepalive` or `migrate` manage it)".to_string(),
            (None, Some(other)) => format!("it checks Cloud API number {other}, not {id}"),
            (None, None) => "it does not publish a Cloud API payload".to_string(),
        };
        prov.report.add(KIND, name, Action::Kept(format!("{what}: left alone")), None);
        return Ok(());
    }
    if !covered {
        prov.report.add(
            KIND,
            name,
            Action::Kept("the fleet job does not check this number (yet): kept".into()),
            None,
        );
        return Ok(());
    }
    if prov.dry_run {
        prov.report.add(KIND, name, Action::WouldDelete, Some(format!("fleet job checks {id}")));
        return Ok(());
    }
    match scheduler
        .delete_job(&k.project, &k.region, name, Some(prov.call_deadline()))
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(prov.google_failed(&resource)(e)),
    }
    prov.report.add(KIND, name, Action::Deleted, Some(format!("the fleet job checks {id}")));
    Ok(())
}
