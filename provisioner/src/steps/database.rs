//! Runbook step 1: the static address the database admits, the database user's password in
//! Secret Manager, the Cloud SQL for PostgreSQL instance (waited for until `RUNNABLE`), and
//! the database user. An existing user's password is never changed, except by
//! [`rotate_password`] (`database --rotate-password`).

use secrecy::{ExposeSecret, SecretString};
use shared::google::operation::Poll;
use std::time::Duration;

use crate::ensure::{ensure, planned, Ensured};
use crate::progress::wait_for;
use crate::report::Action;
use crate::resources::address;
use crate::resources::database_user::DatabaseUser;
use crate::resources::instance::set_db_password;
use crate::resources::secret::{self, generate_password, GeneratedPassword};
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

/// `database --rotate-password`: a new generated password, stored in Secret Manager first (a
/// crash after that leaves it readable), then set on the database user, then written into
/// the VM's metadata `WA_DB_PASSWORD` (read by its startup script at the next boot).
pub async fn rotate_password(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    let user = format!("database user {} on {}", n.db_user, n.sql_instance);
    if prov.dry_run {
        prov.report.add(
            "database user",
            &n.db_user,
            Action::WouldUpdate(format!(
                "a new password, kept in {}, also written into the VM's WA_DB_PASSWORD",
                n.db_password_secret
            )),
            None,
        );
        return Ok(());
    }
    let password = generate_password(32);
    secret::store(prov, &n.db_password_secret, &password).await?;
    let sql = &prov.google.sql;
    let op = sql
        .set_user_password(
            &prov.cfg.project,
            &n.sql_instance,
            &n.db_user,
            password.expose_secret(),
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(&user))?;
    sql.wait_operation(
        &prov.cfg.project,
        &op.name,
        prov.wait_deadline(Duration::from_secs(600)),
    )
    .await
    .map_err(prov.google_failed(&user))?;
    prov.report.add(
        "database user",
        &n.db_user,
        Action::Updated(format!("new password, kept in {}", n.db_password_secret)),
        None,
    );
    set_db_password(prov, &password).await
}
