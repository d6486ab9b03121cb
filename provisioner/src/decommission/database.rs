//! The Cloud SQL instance, deleted after a backup that outlives it: with
//! `decommission.export_bucket`, an SQL export of each WhatsApp database to
//! `gs://BUCKET/<instance>/<database>-<date>.sql.gz` first; otherwise Cloud SQL's final
//! backup, taken by the delete itself (`enableFinalBackup`) and kept for
//! [`FINAL_BACKUP_DAYS`].
//!
//! Resumable: an operation still running on the instance (an export or the delete of a
//! killed run) is waited for first; an export already done today (in the instance's
//! operation list) is not made again.

use serde_json::Value;
use std::time::Duration;

use crate::report::Action;
use crate::{Provisioner, StepError};

/// How long the final backup is kept after the instance is gone (the API's maximum).
pub const FINAL_BACKUP_DAYS: u32 = 365;

const KIND: &str = "Cloud SQL instance";

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let name = prov.names().sql_instance;
    let project = prov.cfg.project.clone();
    let resource = format!("{KIND} {name}");
    let Some(mut instance) = get(prov, &name).await? else {
        prov.report.add(
            KIND,
            &name,
            Action::Absent,
            final_backup(prov, &name).await?,
        );
        return Ok(());
    };
    // A killed run's export or delete may still be running: wait for it before anything.
    let mut ops = operations(prov, &name).await?;
    if !prov.dry_run && ops.iter().any(|o| o["status"] != "DONE") {
        for op in ops.iter().filter(|o| o["status"] != "DONE") {
            let op_name = op["name"].as_str().unwrap_or_default();
            eprintln!(
                "  waiting for {} operation {op_name} (left by an earlier run) on {name}",
                op["operationType"].as_str().unwrap_or("an")
            );
            wait(prov, &resource, op_name).await?;
        }
        if get(prov, &name).await?.is_none() {
            prov.report.add(
                KIND,
                &name,
                Action::Deleted,
                final_backup(prov, &name).await?,
            );
            return Ok(());
        }
        ops = operations(prov, &name).await?;
        instance = get(prov, &name).await?.unwrap_or(instance);
    }
    let final_backup_days = match prov.cfg.decommission.bucket().map(str::to_string) {
        Some(bucket) => {
            export(prov, &instance, &bucket, &ops).await?;
            None
        }
        None => Some(FINAL_BACKUP_DAYS),
    };
    let what = match final_backup_days {
        Some(days) => format!("with Cloud SQL's final backup, kept {days} days"),
        None => "after the export above".to_string(),
    };
    if prov.dry_run {
        prov.report
            .add(KIND, &name, Action::WouldDelete, Some(what));
        return Ok(());
    }
    let op = prov
        .google
        .sql
        .delete_instance(
            &project,
            &name,
            final_backup_days,
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(&resource))?;
    eprintln!("  deleting {resource} ({what})");
    wait(prov, &resource, &op.name).await?;
    let backup = final_backup(prov, &name).await?;
    if final_backup_days.is_some() && backup.is_none() {
        return Err(StepError::failed(
            resource,
            "was deleted, but no final backup of it is listed (gcloud sql backups list): look in the console under Cloud SQL / Backups before anything else",
        ));
    }
    prov.report
        .add(KIND, &name, Action::Deleted, backup.or(Some(what)));
    Ok(())
}

/// The instance's recent operations, newest first.
async fn operations(prov: &Provisioner, name: &str) -> Result<Vec<Value>, StepError> {
    prov.google
        .sql
        .list_operations(&prov.cfg.project, name, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(format!("{KIND} {name}")))
}

async fn get(prov: &Provisioner, name: &str) -> Result<Option<Value>, StepError> {
    prov.google
        .sql
        .get_instance(&prov.cfg.project, name, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(format!("{KIND} {name}")))
}

async fn wait(prov: &Provisioner, resource: &str, op: &str) -> Result<(), StepError> {
    let deadline = tokio::time::Instant::now() + prov.wait_timeout(Duration::from_secs(1800));
    prov.google
        .sql
        .wait_operation(&prov.cfg.project, op, deadline)
        .await
        .map(|_| ())
        .map_err(prov.google_failed(resource))
}

/// The final backup of the instance, in words, if Cloud SQL lists one.
async fn final_backup(prov: &Provisioner, name: &str) -> Result<Option<String>, StepError> {
    let backups = prov
        .google
        .sql
        .list_backups(&prov.cfg.project, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(format!("Cloud SQL backups of {}", prov.cfg.project)))?;
    Ok(backups
        .iter()
        .rfind(|b| b["type"] == "FINAL" && b["instance"] == name)
        .map(|b| {
            let until = b["expiryTime"]
                .as_str()
                .map(|t| format!("until {t}"))
                .or_else(|| b["ttlDays"].as_str().map(|d| format!("{d} days")))
                .unwrap_or_else(|| "by its retention".into());
            format!(
                "final backup {} kept {until}",
                b["name"].as_str().unwrap_or("?")
            )
        }))
}

/// Exports each WhatsApp database (not Cloud SQL's own) to the bucket, one at a time.
async fn export(
    prov: &Provisioner,
    instance: &Value,
    bucket: &str,
    ops: &[Value],
) -> Result<(), StepError> {
    let name = prov.names().sql_instance;
    let project = prov.cfg.project.clone();
    let resource = format!("{KIND} {name}");
    if instance["state"] != "RUNNABLE" {
        return Err(StepError::failed(
            resource,
            format!(
                "is {}, so it cannot be exported: start it (gcloud sql instances patch {name} --activation-policy=ALWAYS) and run `provisioner decommission` again",
                instance["state"].as_str().unwrap_or("not RUNNABLE")
            ),
        ));
    }
    let dbs: Vec<String> = prov
        .google
        .sql
        .list_databases(&project, &name, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(&resource))?
        .into_iter()
        .filter(|d| !shared::google::sqladmin::BUILTIN_DATABASES.contains(&d.as_str()))
        .collect();
    if dbs.is_empty() {
        println!("  {name} holds no WhatsApp database: nothing to export");
    }
    let today = time::OffsetDateTime::now_utc().date();
    for db in dbs {
        let uri = format!("gs://{bucket}/{name}/{db}-{today}.sql.gz");
        let done = ops.iter().any(|o| {
            o["operationType"] == "EXPORT"
                && o["status"] == "DONE"
                && o["error"].is_null()
                && o["exportContext"]["uri"] == uri.as_str()
        });
        if done {
            prov.report.add(
                "database export",
                &uri,
                Action::Exists,
                Some(format!("{db}, exported by an earlier run")),
            );
            continue;
        }
        if prov.dry_run {
            prov.report
                .add("database export", &uri, Action::WouldCreate, Some(db));
            continue;
        }
        let op = prov
            .google
            .sql
            .export_database(&project, &name, &db, &uri, Some(prov.call_deadline()))
            .await
            .map_err(prov.google_failed(format!("export of {db} to {uri}")))?;
        eprintln!("  exporting {db} to {uri}");
        wait(prov, &format!("export of {db} to {uri}"), &op.name)
            .await
            .map_err(|e| {
                StepError::failed(
                    format!("export of {db} to {uri}"),
                    format!(
                        "{e}\n  nothing was deleted. The instance's service account ({}) needs roles/storage.objectCreator on gs://{bucket}: gcloud storage buckets add-iam-policy-binding gs://{bucket} --member=serviceAccount:{} --role=roles/storage.objectCreator; then run `provisioner decommission` again",
                        instance["serviceAccountEmailAddress"].as_str().unwrap_or("see the instance"),
                        instance["serviceAccountEmailAddress"].as_str().unwrap_or("SERVICE_ACCOUNT")
                    ),
                )
            })?;
        prov.report
            .add("database export", &uri, Action::Created, Some(db));
    }
    Ok(())
}
