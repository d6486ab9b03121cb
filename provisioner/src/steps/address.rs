//! The regional static external address the VM uses and the database admits.

use serde_json::json;
use shared::google::compute::Scope;
use uuid::Uuid;

use super::Ctx;
use crate::progress::{wait_for, Poll};
use crate::report::Action;
use crate::StepError;

/// This number's static address as Compute Engine has it, or `None` when it is not reserved.
pub async fn read(ctx: &Ctx) -> Result<Option<serde_json::Value>, StepError> {
    let n = ctx.names();
    ctx.cloud
        .compute
        .get_resource(
            &ctx.cfg.project,
            &Scope::Region(ctx.cfg.region.clone()),
            "addresses",
            &n.address,
            Some(ctx.call_deadline()),
        )
        .await
        .map_err(ctx.google(format!("address {}", n.address)))
}

/// The address, reserved if needed. `None` only under `--dry-run` when it does not exist yet.
pub async fn ensure(ctx: &mut Ctx) -> Result<Option<String>, StepError> {
    let n = ctx.names();
    let project = ctx.cfg.project.clone();
    let scope = Scope::Region(ctx.cfg.region.clone());
    let resource = format!("address {}", n.address);
    let existing = read(ctx).await?;
    if let Some(a) = existing {
        let ip = a["address"].as_str().unwrap_or("").to_string();
        let mut diffs = Vec::new();
        if a["addressType"].as_str().is_some_and(|t| t != "EXTERNAL") {
            diffs.push(format!(
                "addressType is {}, want EXTERNAL",
                a["addressType"]
            ));
        }
        let action = if diffs.is_empty() {
            Action::Exists
        } else {
            Action::Differs(diffs)
        };
        ctx.report
            .add("static address", &n.address, action, Some(ip.clone()));
        if ip.is_empty() {
            return Err(StepError::failed(
                resource,
                "exists but has no IP address yet; run the command again in a minute",
            ));
        }
        return Ok(Some(ip));
    }
    if ctx.dry_run {
        ctx.report.add(
            "static address",
            &n.address,
            Action::WouldCreate,
            Some(format!("EXTERNAL, PREMIUM, in {}", ctx.cfg.region)),
        );
        return Ok(None);
    }
    let body = json!({
        "name": n.address,
        "addressType": "EXTERNAL",
        "networkTier": "PREMIUM",
        "description": format!("WhatsApp Business API client for +{}{}", ctx.cfg.country_code, ctx.cfg.phone_number),
        "labels": ctx.labels(),
    });
    let adopted = match ctx
        .cloud
        .compute
        .insert_resource(
            &project,
            &scope,
            "addresses",
            &body,
            Uuid::new_v4(),
            Some(ctx.call_deadline()),
        )
        .await
    {
        Ok(op) => {
            let deadline = tokio::time::Instant::now()
                + ctx.cloud.timeout(std::time::Duration::from_secs(300));
            ctx.cloud
                .compute
                .wait_operation(&project, &scope, &op.name, deadline)
                .await
                .map_err(ctx.google(&resource))?;
            false
        }
        Err(e) if e.is_already_exists() => true,
        Err(e) => return Err(ctx.google(&resource)(e)),
    };
    let timeout = ctx.cloud.timeout(std::time::Duration::from_secs(300));
    let compute = &ctx.cloud.compute;
    let ip = wait_for(&format!("{resource} to get its IP"), timeout, || async {
        let a = compute
            .get_resource(&project, &scope, "addresses", &n.address, None)
            .await
            .map_err(|e| StepError::failed(resource.clone(), e.to_string()))?;
        Ok(match a.as_ref().and_then(|a| a["address"].as_str()) {
            Some(ip) if !ip.is_empty() => Poll::Ready(ip.to_string()),
            _ => Poll::Pending("reserving".into()),
        })
    })
    .await?;
    ctx.report.add(
        "static address",
        &n.address,
        if adopted {
            Action::Adopted
        } else {
            Action::Created
        },
        Some(ip.clone()),
    );
    Ok(Some(ip))
}
