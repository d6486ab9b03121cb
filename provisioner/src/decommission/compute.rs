//! The keepalive job, the VM, its firewall rule and its static address: each read, then
//! deleted (with a `requestId` derived from the resource's id, so a second run or a retry is
//! carried out once) and waited for.

use shared::google::compute::{InstanceRef, Scope};
use std::time::Duration;
use uuid::Uuid;

use crate::cloud_api::job;
use crate::names::KeepaliveNames;
use crate::report::Action;
use crate::{Provisioner, StepError};

/// The On-Premises keepalive job: deleted while it still has the On-Premises payload (it
/// would reset the VM that goes now); a job with the Cloud API payload is kept.
pub async fn keepalive_job(prov: &Provisioner) -> Result<(), StepError> {
    const KIND: &str = "Cloud Scheduler job";
    let k = KeepaliveNames::of(&prov.cfg);
    let resource = format!("{KIND} {}", k.job_name());
    let have = prov
        .google
        .scheduler
        .get_job(&k.project, &k.region, &k.job, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(&resource))?;
    let Some(have) = have else {
        prov.report.add(KIND, &k.job, Action::Absent, None);
        return Ok(());
    };
    if !job::is_onprem(&have) {
        prov.report.add(
            KIND,
            &k.job,
            Action::Kept("it checks the Cloud API number".into()),
            None,
        );
        return Ok(());
    }
    if prov.dry_run {
        prov.report.add(
            KIND,
            &k.job,
            Action::WouldDelete,
            Some("On-Premises payload".into()),
        );
        return Ok(());
    }
    match prov
        .google
        .scheduler
        .delete_job(&k.project, &k.region, &k.job, Some(prov.call_deadline()))
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(prov.google_failed(&resource)(e)),
    }
    prov.report.add(
        KIND,
        &k.job,
        Action::Deleted,
        Some("On-Premises payload".into()),
    );
    Ok(())
}

pub async fn vm(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    let i = InstanceRef {
        project: prov.cfg.project.clone(),
        zone: prov.cfg.zone.clone(),
        name: n.vm.clone(),
    };
    let found = prov
        .google
        .compute
        .find_instance(&i, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(format!("VM {}", n.vm)))?
        .map(|vm| Found {
            detail: Some(format!("was {}", vm.status)),
            id: vm.id,
        });
    remove(
        prov,
        "VM",
        Scope::Zone(i.zone.clone()),
        "instances",
        &n.vm,
        found,
    )
    .await
}

pub async fn firewall(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    let found = prov
        .google
        .compute
        .find_firewall(&prov.cfg.project, &n.firewall, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(format!("firewall rule {}", n.firewall)))?
        .map(|_| Found {
            detail: None,
            id: String::new(),
        });
    remove(
        prov,
        "firewall rule",
        Scope::Global,
        "firewalls",
        &n.firewall,
        found,
    )
    .await
}

/// After the VM: an address in use cannot be released.
pub async fn address(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    let region = prov.cfg.region.clone();
    let found = prov
        .google
        .compute
        .find_address(
            &prov.cfg.project,
            &region,
            &n.address,
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(format!("static address {}", n.address)))?
        .map(|a| Found {
            detail: Some(a.address),
            id: String::new(),
        });
    remove(
        prov,
        "static address",
        Scope::Region(region),
        "addresses",
        &n.address,
        found,
    )
    .await
}

/// A resource that exists: what to say about it, and its numeric id when the model has one.
struct Found {
    detail: Option<String>,
    id: String,
}

async fn remove(
    prov: &Provisioner,
    kind: &'static str,
    scope: Scope,
    collection: &str,
    name: &str,
    found: Option<Found>,
) -> Result<(), StepError> {
    let project = prov.cfg.project.clone();
    let resource = format!("{kind} {name}");
    let Some(Found { detail, id }) = found else {
        prov.report.add(kind, name, Action::Absent, None);
        return Ok(());
    };
    if prov.dry_run {
        prov.report.add(kind, name, Action::WouldDelete, detail);
        return Ok(());
    }
    // The same resource always gets the same request id (its id when known): a delete sent
    // again by a resumed run answers the first one's operation.
    let request_id = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("decommission/{project}/{collection}/{name}/{id}").as_bytes(),
    );
    let op = match prov
        .google
        .compute
        .delete_resource(
            &project,
            &scope,
            collection,
            name,
            request_id,
            Some(prov.call_deadline()),
        )
        .await
    {
        Ok(op) => op,
        Err(e) if e.is_not_found() => {
            prov.report.add(kind, name, Action::Absent, None);
            return Ok(());
        }
        Err(e) => return Err(prov.google_failed(&resource)(e)),
    };
    let deadline = tokio::time::Instant::now() + prov.wait_timeout(Duration::from_secs(600));
    eprintln!("  waiting for {resource} to be deleted");
    prov.google
        .compute
        .wait_operation(&project, &scope, &op.name, deadline)
        .await
        .map_err(prov.google_failed(&resource))?;
    prov.report.add(kind, name, Action::Deleted, detail);
    Ok(())
}
