//! Step 3 of `migrate`: the On-Premises backup. The password is generated and stored first;
//! then the client makes the backup with it; its `data` is stored in Secret Manager before
//! anything uses it. A run after a crash finds both and takes no second backup.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use shared::graph::RegisterBackup;

use crate::cloud_api::secrets::{self, CloudSecrets};
use crate::report::Action;
use crate::steps::onboard;
use crate::Provisioner;
use crate::StepError;

/// Why there is no backup to register with: the client could not make one.
pub const CANNOT: &str = "the On-Premises client could not produce a backup";

/// The backup password and the backup, stored; under `--dry-run`, what would be done.
pub async fn ensure(
    prov: &Provisioner,
    names: &CloudSecrets,
    other_way: &str,
) -> Result<(), StepError> {
    let password = secrets::stored_or_new(
        prov,
        "backup password",
        &names.backup_password,
        "64 characters",
        secrets::generate_backup_password,
    )
    .await?;
    if secrets::read(prov, &names.backup).await?.is_some() {
        prov.report.add(
            "backup",
            &names.backup,
            Action::Exists,
            Some("taken by an earlier run, kept in Secret Manager".into()),
        );
        return Ok(());
    }
    let Some(password) = password.filter(|_| !prov.dry_run) else {
        prov.report.add(
            "backup",
            &names.backup,
            Action::WouldCreate,
            Some("POST /v1/settings/backup on the On-Premises client; its data stored in Secret Manager before it is used".into()),
        );
        return Ok(());
    };
    let admin = prov.names().admin_password_secret;
    if secrets::read(prov, &admin).await?.is_none() {
        return Err(StepError::failed(
            "On-Premises client",
            format!("no admin password in secret {admin}: this number's client was not set up by this tool, so it cannot be asked for a backup here. {other_way}"),
        ));
    }
    let cannot = |e: &dyn std::fmt::Display| {
        StepError::failed(
            "backup (POST /v1/settings/backup)",
            format!("{CANNOT}: {e}\n  Nothing was registered. {other_way}"),
        )
    };
    let wa = onboard::client(prov).await.map_err(|e| cannot(&e))?;
    let session = onboard::admin_session(prov, &wa)
        .await
        .map_err(|e| cannot(&e))?;
    let answer = wa
        .call(
            &session.token,
            Method::POST,
            "/v1/settings/backup",
            Some(&json!({"password": password.expose_secret()})),
        )
        .await
        .map_err(|e| cannot(&e))?;
    let data = answer["settings"]["data"]
        .as_str()
        .filter(|d| !d.trim().is_empty())
        .map(|d| SecretString::from(d.trim().to_string()))
        .ok_or_else(|| cannot(&"its answer has no settings.data"))?;
    drop(answer);
    prov.google
        .secrets
        .store(
            &prov.cfg.project,
            &names.backup,
            &data,
            &crate::resources::secret::LABELS,
            Some(prov.call_deadline()),
        )
        .await
        .map_err(|e| {
            StepError::failed(
                format!("secret {}", names.backup),
                format!("the backup could not be stored ({e}); nothing was registered: run `provisioner migrate` again"),
            )
        })?;
    prov.report.add(
        "backup",
        &names.backup,
        Action::Created,
        Some(format!(
            "made by the On-Premises client with the password in {}, kept in Secret Manager",
            names.backup_password
        )),
    );
    Ok(())
}

/// The backup and its password as Secret Manager holds them: what `register` is sent.
pub async fn stored(
    prov: &Provisioner,
    names: &CloudSecrets,
) -> Result<Option<RegisterBackup>, StepError> {
    let password = secrets::read(prov, &names.backup_password).await?;
    let data = secrets::read(prov, &names.backup).await?;
    Ok(match (data, password) {
        (Some(data), Some(password)) => Some(RegisterBackup { data, password }),
        _ => None,
    })
}
