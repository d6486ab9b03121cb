//! `status`: what exists for this number, in what state, and whether the WhatsApp client
//! answers now. Reads only.

use serde_json::Value;
use shared::google::compute::Scope;
use std::time::Duration;

use crate::steps::{address, vm, Ctx};
use crate::StepError;

fn line(kind: &str, name: &str, state: &str) {
    println!("  {kind:<22} {name:<40} {state}");
}

pub async fn run(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    let project = ctx.cfg.project.clone();
    let deadline = Some(ctx.call_deadline());
    println!(
        "status: +{}{} in project {project}",
        ctx.cfg.country_code, ctx.cfg.phone_number
    );

    let address = address::read(ctx).await?;
    let ip = address
        .as_ref()
        .and_then(|a| a["address"].as_str())
        .map(str::to_string);
    match &address {
        Some(a) => line(
            "static address",
            &n.address,
            &format!(
                "{} {}",
                a["address"].as_str().unwrap_or("?"),
                a["status"].as_str().unwrap_or("")
            ),
        ),
        None => line("static address", &n.address, "missing"),
    }

    let fw = ctx
        .cloud
        .compute
        .get_resource(&project, &Scope::Global, "firewalls", &n.firewall, deadline)
        .await
        .map_err(ctx.google(format!("firewall rule {}", n.firewall)))?;
    line(
        "firewall rule",
        &n.firewall,
        if fw.is_some() { "present" } else { "missing" },
    );

    let sql = ctx
        .cloud
        .sql
        .get_instance(&project, &n.sql_instance, deadline)
        .await
        .map_err(ctx.google(format!("Cloud SQL instance {}", n.sql_instance)))?;
    match &sql {
        Some(i) => {
            let max = i["settings"]["databaseFlags"]
                .as_array()
                .and_then(|f| f.iter().find(|f| f["name"] == "max_connections"))
                .and_then(|f| f["value"].as_str())
                .unwrap_or("default");
            line(
                "Cloud SQL instance",
                &n.sql_instance,
                &format!(
                    "{} max_connections={max}",
                    i["state"].as_str().unwrap_or("?")
                ),
            );
            if i["state"] == "RUNNABLE" {
                let dbs = ctx
                    .cloud
                    .sql
                    .list_databases(&project, &n.sql_instance, deadline)
                    .await
                    .map_err(ctx.google(format!("databases of {}", n.sql_instance)))?;
                let own: Vec<String> = dbs
                    .into_iter()
                    .filter(|d| !shared::google::sqladmin::BUILTIN_DATABASES.contains(&d.as_str()))
                    .collect();
                line(
                    "WhatsApp databases",
                    &n.sql_instance,
                    &if own.is_empty() {
                        "none yet".to_string()
                    } else {
                        own.join(", ")
                    },
                );
            }
        }
        None => line("Cloud SQL instance", &n.sql_instance, "missing"),
    }

    let secret = ctx
        .cloud
        .secrets
        .latest(&project, &n.db_password_secret, deadline)
        .await
        .map_err(ctx.google(format!("secret {}", n.db_password_secret)))?;
    line(
        "secret",
        &n.db_password_secret,
        if secret.is_some() {
            "present (value not shown)"
        } else {
            "missing"
        },
    );

    let instance: Option<Value> = ctx
        .cloud
        .compute
        .get_resource(
            &project,
            &Scope::Zone(ctx.cfg.zone.clone()),
            "instances",
            &n.vm,
            deadline,
        )
        .await
        .map_err(ctx.google(format!("VM {}", n.vm)))?;
    match &instance {
        Some(i) => line(
            "VM",
            &n.vm,
            &format!(
                "{} since {}",
                i["status"].as_str().unwrap_or("?"),
                i["lastStartTimestamp"].as_str().unwrap_or("?")
            ),
        ),
        None => line("VM", &n.vm, "missing"),
    }

    if let (Some(ip), Some(_)) = (ip, instance) {
        let url = vm::whatsapp_url(ctx, &ip)?;
        let pinned = url.scheme() != "https"
            || ctx
                .cloud
                .secrets
                .latest(&project, &n.tls_pin_secret, deadline)
                .await
                .map_err(ctx.google(format!("secret {}", n.tls_pin_secret)))?
                .is_some();
        if !pinned {
            line(
                "WhatsApp client",
                url.as_str(),
                "not contacted yet (no pinned certificate: run `provisioner vm`)",
            );
        } else {
            let http = vm::whatsapp_http(ctx, &url).await?;
            let login = url
                .join("/v1/users/login")
                .map_err(|e| StepError::failed("WhatsApp URL", e.to_string()))?;
            let state = match http
                .post(login)
                .header(reqwest::header::CONTENT_LENGTH, "0")
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) if r.status().is_server_error() => {
                    format!("answers, but with {}", r.status())
                }
                Ok(_) => "answers its login endpoint".to_string(),
                Err(e) => format!(
                    "NOT answering: {}",
                    shared::google::error::describe_reqwest(&e)
                ),
            };
            line("WhatsApp client", url.as_str(), &state);
        }
    }
    Ok(())
}
