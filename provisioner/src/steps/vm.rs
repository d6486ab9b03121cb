//! Runbook step 2: the static address, the firewall rule, the Container-Optimized OS VM with
//! the metadata that starts the WhatsApp containers, then the waits until the VM runs, the
//! client answers and its databases exist.

use shared::google::operation::Poll;
use shared::google::sqladmin::BUILTIN_DATABASES;
use std::time::Duration;

use super::whatsapp_endpoint::{is_pin_mismatch, pin_mismatch, whatsapp_http, whatsapp_url};
use crate::ensure::ensure;
use crate::ensure::Resource;
use crate::progress::wait_for;
use crate::report::Action;
use crate::resources::address;
use crate::resources::firewall::FirewallRule;
use crate::resources::instance::{ensure_keepalive_label, read_vm, vm_ref, WhatsAppVm};
use crate::resources::secret::read_newest;
use crate::resources::sql_instance::{primary_ip, SqlInstance};
use crate::{Provisioner, StepError};

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    println!("vm: {}", n.vm);
    let ip = address::ensure_ip(prov).await?;
    ensure(prov, &FirewallRule::of(prov)).await?;

    // The database must exist: its address and the user's password go into the metadata.
    let sql = SqlInstance::of(prov, ip.as_deref());
    let db_host = sql.read(prov).await?.as_ref().and_then(primary_ip);
    let (Some(ip), Some(db_host)) = (ip, db_host) else {
        if prov.dry_run {
            let action = if read_vm(prov).await?.is_some() {
                Action::Exists
            } else {
                Action::Blocked("needs the static address and the Cloud SQL instance: run `provisioner database` first".into())
            };
            prov.report.add("VM", &n.vm, action, None);
            return Ok(());
        }
        return Err(StepError::failed(
            sql.resource(),
            "does not exist or has no IP address yet: run `provisioner database` first",
        ));
    };
    let (_, password) = read_newest(prov, &n.db_password_secret)
        .await?
        .ok_or_else(|| {
            StepError::failed(
                format!("secret {}", n.db_password_secret),
                "is missing: run `provisioner database` first",
            )
        })?;
    let vm = WhatsAppVm::of(prov, &ip, &db_host, password);
    let found = ensure(prov, &vm).await?;
    if let Some(have) = found.as_present() {
        ensure_keepalive_label(prov, have).await?;
    }
    if found.is_planned() || prov.dry_run {
        return Ok(());
    }

    wait_until_running(prov).await?;
    wait_for_whatsapp(prov, &ip).await?;
    wait_for_databases(prov).await?;
    Ok(())
}

async fn wait_until_running(prov: &Provisioner) -> Result<(), StepError> {
    let vm = vm_ref(prov);
    let compute = &prov.google.compute;
    let what = format!("VM {} to be RUNNING", vm.name);
    wait_for(prov, &what, Duration::from_secs(600), || async {
        let i = compute
            .find_instance(&vm, None)
            .await
            .map_err(prov.google_failed(format!("VM {}", vm.name)))?;
        Ok(match i.as_ref().map(|i| i.status.as_str()) {
            Some("RUNNING") => Poll::Ready(()),
            Some(s) => Poll::Pending(format!("status {s}")),
            None => Poll::Pending("not visible yet".into()),
        })
    })
    .await
}

/// Waits until the client answers `POST /v1/users/login` (any HTTP answer: the web container
/// is up; 401 before the first login is expected).
async fn wait_for_whatsapp(prov: &Provisioner, ip: &str) -> Result<(), StepError> {
    let url = whatsapp_url(prov, ip)?;
    let http = whatsapp_http(prov, &url).await?;
    let login = url
        .join("/v1/users/login")
        .map_err(|e| StepError::failed("WhatsApp URL", e.to_string()))?;
    let what = format!("the WhatsApp client to answer at {login}");
    wait_for(prov, &what, Duration::from_secs(20 * 60), || async {
        let r = http
            .post(login.clone())
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        Ok(match r {
            Ok(resp) if resp.status().is_server_error() => {
                Poll::Pending(format!("answered {}", resp.status()))
            }
            Ok(_) => Poll::Ready(()),
            Err(e) if is_pin_mismatch(&e) => return Err(pin_mismatch(prov, login.as_str())),
            Err(e) => Poll::Pending(shared::google::error::describe_reqwest(&e)),
        })
    })
    .await?;
    prov.report.add(
        "WhatsApp client",
        url.as_str(),
        Action::Exists,
        Some("answers its login endpoint".into()),
    );
    Ok(())
}

/// Waits until WhatsApp's own databases appear in the Cloud SQL instance.
async fn wait_for_databases(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    let sql = &prov.google.sql;
    let what = format!("WhatsApp to create its databases in {}", n.sql_instance);
    let found = wait_for(prov, &what, Duration::from_secs(20 * 60), || async {
        let dbs = sql
            .list_databases(&prov.cfg.project, &n.sql_instance, None)
            .await
            .map_err(prov.google_failed(format!("databases of {}", n.sql_instance)))?;
        let own: Vec<String> = dbs
            .into_iter()
            .filter(|d| !BUILTIN_DATABASES.contains(&d.as_str()))
            .collect();
        Ok(if own.is_empty() {
            Poll::Pending("only Cloud SQL's own databases".into())
        } else {
            Poll::Ready(own)
        })
    })
    .await?;
    prov.report.add(
        "WhatsApp databases",
        &n.sql_instance,
        Action::Exists,
        Some(found.join(", ")),
    );
    Ok(())
}
