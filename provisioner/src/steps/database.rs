//! Runbook step 1: the static address the database admits, the database user's password in
//! Secret Manager, the Cloud SQL for PostgreSQL instance (waited for until `RUNNABLE`), and
//! the database user.

use secrecy::SecretString;
use shared::google::operation::Poll;
use std::time::Duration;

use crate::ensure::{ensure, planned, Ensured};
use crate::progress::wait_for;
use crate::resources::address;
use crate::resources::database_user::DatabaseUser;
use crate::resources::secret::GeneratedPassword;
use crate::resources::sql_instance::SqlInstance;
use crate::{Provisioner, StepError};

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    println!("database: {}", n.sql_instance);
    // The database admits the VM's static address, so that address comes first.
    let vm_ip = address::ensure_ip(prov).await?;
    let secret = GeneratedPassword {
        project: prov.cfg.project.clone(),
        secret: n.db_password_secret.clone(),
        len: 32,
    };
    // Stored before it is used: a crash after this point cannot lose it.
    let password = ensure(prov, &secret)
        .await?
        .present()
        .unwrap_or_else(|| SecretString::from(String::new()));

    let instance = SqlInstance::of(prov, vm_ip.as_deref());
    let found = ensure(prov, &instance).await?;
    let user = DatabaseUser::of(prov, password);
    if prov.dry_run {
        // Users can be listed only on a running instance.
        match found {
            Ensured::Present(i) if i["state"] == "RUNNABLE" => {
                ensure(prov, &user).await?;
            }
            _ => planned(prov, &user),
        }
        return Ok(());
    }

    let sql = &prov.google.sql;
    let what = format!("Cloud SQL instance {} to be RUNNABLE", n.sql_instance);
    wait_for(prov, &what, Duration::from_secs(30 * 60), || async {
        let i = sql
            .get_instance(&prov.cfg.project, &n.sql_instance, None)
            .await
            .map_err(prov.google_failed(format!("Cloud SQL instance {}", n.sql_instance)))?;
        Ok(match i.as_ref().and_then(|i| i["state"].as_str()) {
            Some("RUNNABLE") => Poll::Ready(()),
            Some(s) => Poll::Pending(format!("state {s}")),
            None => Poll::Pending("not visible yet".into()),
        })
    })
    .await?;
    ensure(prov, &user).await?;
    Ok(())
}
