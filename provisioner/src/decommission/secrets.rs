//! The passwords that die with the installation: every version of the database user's and
//! the LoyJoy API user's password is destroyed. The admin password, the two-step PIN, the
//! backup and its password are kept (the admin password opens the backup's client should it
//! ever be restored; the PIN is the number's).

use crate::report::Action;
use crate::steps::Ctx;
use crate::StepError;

const KIND: &str = "secret";

pub async fn run(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    for secret in [n.db_password_secret, n.api_password_secret] {
        destroy_versions(ctx, &secret).await?;
    }
    let c = crate::cloud_api::secrets::CloudSecrets::of(ctx);
    let kept = [n.admin_password_secret, c.pin, c.backup, c.backup_password];
    for secret in kept {
        ctx.report.add(
            KIND,
            &secret,
            Action::Kept("not removed by decommission".into()),
            None,
        );
    }
    Ok(())
}

async fn destroy_versions(ctx: &mut Ctx, secret: &str) -> Result<(), StepError> {
    let resource = format!("{KIND} {secret}");
    let versions = ctx
        .cloud
        .secrets
        .versions(&ctx.cfg.project, secret, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&resource))?;
    let live: Vec<String> = versions
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.state != "DESTROYED")
        .map(|v| v.name)
        .collect();
    if live.is_empty() {
        ctx.report.add(
            KIND,
            secret,
            Action::Absent,
            Some("no version left to destroy".into()),
        );
        return Ok(());
    }
    let what = Some(format!("{} version(s), destroyed for good", live.len()));
    if ctx.dry_run {
        ctx.report.add(KIND, secret, Action::WouldDelete, what);
        return Ok(());
    }
    for version in &live {
        match ctx
            .cloud
            .secrets
            .destroy(version, Some(ctx.call_deadline()))
            .await
        {
            Ok(()) => {}
            // Destroyed meanwhile (a retried call whose first answer was lost).
            Err(e) if e.status() == Some(400) || e.is_not_found() => {}
            Err(e) => return Err(ctx.google(format!("secret version {version}"))(e)),
        }
    }
    ctx.report.add(KIND, secret, Action::Deleted, what);
    Ok(())
}
