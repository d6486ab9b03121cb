//! The keepalive job, the VM, its firewall rule and its static address: each read, then
//! deleted (with a `requestId` derived from the resource's id, so a second run or a retry is
//! carried out once) and waited for.

use serde_json::Value;
use shared::google::compute::Scope;
use std::time::Duration;
use uuid::Uuid;

use crate::cloud_api::job;
use crate::report::Action;
use crate::steps::keepalive::KeepaliveNames;
use crate::steps::Ctx;
use crate::StepError;

/// The On-Premises keepalive job: deleted while it still has the On-Premises payload (it
/// would reset the VM that goes now); a job with the Cloud API payload is kept.
pub async fn keepalive_job(ctx: &mut Ctx) -> Result<(), StepError> {
    const KIND: &str = "Cloud Scheduler job";
    let k = KeepaliveNames::of(ctx);
    let resource = format!("{KIND} {}", k.job_name());
    let have = ctx
        .cloud
        .scheduler
        .get_job(&k.project, &k.region, &k.job, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&resource))?;
    let Some(have) = have else {
        ctx.report.add(KIND, &k.job, Action::Absent, None);
        return Ok(());
    };
    if !job::is_onprem(&have) {
        ctx.report.add(
            KIND,
            &k.job,
            Action::Kept("it checks the Cloud API number".into()),
            None,
        );
        return Ok(());
    }
    if ctx.dry_run {
        ctx.report.add(
            KIND,
            &k.job,
            Action::WouldDelete,
            Some("On-Premises payload".into()),
        );
        return Ok(());
    }
    match ctx
        .cloud
        .scheduler
        .delete_job(&k.project, &k.region, &k.job, Some(ctx.call_deadline()))
        .await
    {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(ctx.google(&resource)(e)),
    }
    ctx.report.add(
        KIND,
        &k.job,
        Action::Deleted,
        Some("On-Premises payload".into()),
    );
    Ok(())
}

pub async fn vm(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    remove(
        ctx,
        "VM",
        Scope::Zone(ctx.cfg.zone.clone()),
        "instances",
        &n.vm,
    )
    .await
}

pub async fn firewall(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    remove(
        ctx,
        "firewall rule",
        Scope::Global,
        "firewalls",
        &n.firewall,
    )
    .await
}

/// After the VM: an address in use cannot be released.
pub async fn address(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    remove(
        ctx,
        "static address",
        Scope::Region(ctx.cfg.region.clone()),
        "addresses",
        &n.address,
    )
    .await
}

async fn remove(
    ctx: &mut Ctx,
    kind: &'static str,
    scope: Scope,
    collection: &str,
    name: &str,
) -> Result<(), StepError> {
    let project = ctx.cfg.project.clone();
    let resource = format!("{kind} {name}");
    let have: Option<Value> = ctx
        .cloud
        .compute
        .get_resource(
            &project,
            &scope,
            collection,
            name,
            Some(ctx.call_deadline()),
        )
        .await
        .map_err(ctx.google(&resource))?;
    let Some(have) = have else {
        ctx.report.add(kind, name, Action::Absent, None);
        return Ok(());
    };
    let detail = have["address"]
        .as_str()
        .or(have["status"].as_str())
        .map(str::to_string);
    if ctx.dry_run {
        ctx.report.add(kind, name, Action::WouldDelete, detail);
        return Ok(());
    }
    // The same resource (by its id) always gets the same request id: a delete sent again
    // by a resumed run is the first one's.
    let id = match &have["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let request_id = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("decommission/{project}/{collection}/{name}/{id}").as_bytes(),
    );
    let op = match ctx
        .cloud
        .compute
        .delete_resource(
            &project,
            &scope,
            collection,
            name,
            request_id,
            Some(ctx.call_deadline()),
        )
        .await
    {
        Ok(op) => op,
        Err(e) if e.is_not_found() => {
            ctx.report.add(kind, name, Action::Absent, None);
            return Ok(());
        }
        Err(e) => return Err(ctx.google(&resource)(e)),
    };
    let deadline = tokio::time::Instant::now() + ctx.cloud.timeout(Duration::from_secs(600));
    eprintln!("  waiting for {resource} to be deleted");
    ctx.cloud
        .compute
        .wait_operation(&project, &scope, &op.name, deadline)
        .await
        .map_err(ctx.google(&resource))?;
    ctx.report.add(kind, name, Action::Deleted, detail);
    Ok(())
}
