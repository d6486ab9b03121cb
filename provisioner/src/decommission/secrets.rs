//! The passwords that die with the installation: every version of the database user's and
//! the LoyJoy API user's password is destroyed. The admin password, the two-step PIN, the
//! backup and its password are kept (the admin password opens the backup's client should it
//! ever be restored; the PIN is the number's).

use crate::report::Action;
use crate::{Provisioner, StepError};

const KIND: &str = "secret";

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    for secret in [n.db_password_secret, n.api_password_secret] {
        destroy_versions(prov, &secret).await?;
    }
    let c = crate::cloud_api::secrets::CloudSecrets::of(prov);
    let kept = [n.admin_password_secret, c.pin, c.backup, c.backup_password];
    for secret in kept {
        prov.report.add(
            KIND,
            &secret,
            Action::Kept("not removed by decommission".into()),
            None,
        );
    }
    Ok(())
}

async fn destroy_versions(prov: &Provisioner, secret: &str) -> Result<(), StepError> {
    let resource = format!("{KIND} {secret}");
    let versions = prov
        .google
        .secrets
        .versions(&prov.cfg.project, secret, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(&resource))?;
    let live: Vec<u64> = versions
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.state != "DESTROYED")
        .map(|v| v.number)
        .collect();
    if live.is_empty() {
        prov.report.add(
            KIND,
            secret,
            Action::Absent,
            Some("no version left to destroy".into()),
        );
        return Ok(());
    }
    let what = Some(format!("{} version(s), destroyed for good", live.len()));
    if prov.dry_run {
        prov.report.add(KIND, secret, Action::WouldDelete, what);
        return Ok(());
    }
    for number in &live {
        match prov
            .google
            .secrets
            .destroy(
                &prov.cfg.project,
                secret,
                *number,
                Some(prov.call_deadline()),
            )
            .await
        {
            Ok(()) => {}
            // Destroyed meanwhile (a retried call whose first answer was lost).
            Err(e) if e.status() == Some(400) || e.is_not_found() => {}
            Err(e) => {
                return Err(prov
                    .google_failed(format!("secret {secret} version {number}"))(
                    e
                ))
            }
        }
    }
    prov.report.add(KIND, secret, Action::Deleted, what);
    Ok(())
}
