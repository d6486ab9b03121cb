//! Runbook step 1: the Cloud SQL for PostgreSQL instance (`max_connections` = 1000, SSL
//! required, reachable only from the VM's static address unless configured otherwise) and the
//! database user whose password lives in Secret Manager.

use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::time::Duration;

use super::{address, Ctx};
use crate::progress::{wait_for, Poll};
use crate::report::Action;
use crate::StepError;

/// The authorized networks the config asks for, given the VM's address.
pub fn authorized_networks(ctx: &Ctx, vm_ip: Option<&str>) -> Vec<String> {
    if ctx.cfg.database.authorized_networks.is_empty() {
        vm_ip.map(|ip| vec![format!("{ip}/32")]).unwrap_or_default()
    } else {
        ctx.cfg.database.authorized_networks.clone()
    }
}

pub fn instance_body(ctx: &Ctx, networks: &[String]) -> Value {
    let n = ctx.names();
    let nets: Vec<Value> = networks
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": if i == 0 { "whatsapp-vm".to_string() } else { format!("network-{i}") }, "value": v}))
        .collect();
    json!({
        "name": n.sql_instance,
        "databaseVersion": ctx.cfg.database.version,
        "region": ctx.cfg.region,
        "settings": {
            "tier": ctx.cfg.database.tier,
            "userLabels": ctx.labels(),
            "ipConfiguration": {
                "ipv4Enabled": true,
                "authorizedNetworks": nets,
                // SSL required, no client certificates (the API refuses requireSsl=true with it).
                "sslMode": "ENCRYPTED_ONLY"
            },
            "databaseFlags": [
                {"name": "max_connections", "value": ctx.cfg.database.max_connections.to_string()}
            ],
            "backupConfiguration": {
                "enabled": true,
                "startTime": "02:00",
                "pointInTimeRecoveryEnabled": true
            },
            "deletionProtectionEnabled": true
        }
    })
}

/// How an existing instance differs from what the config asks for.
pub fn differences(ctx: &Ctx, instance: &Value, networks: &[String]) -> Vec<String> {
    let mut d = Vec::new();
    let s = &instance["settings"];
    let want_max = ctx.cfg.database.max_connections.to_string();
    let flag = s["databaseFlags"]
        .as_array()
        .and_then(|flags| flags.iter().find(|f| f["name"] == "max_connections"))
        .and_then(|f| f["value"].as_str().map(str::to_string));
    match flag {
        Some(v) if v == want_max => {}
        Some(v) => d.push(format!(
            "max_connections is {v}, number.toml wants {want_max}"
        )),
        None => d.push(format!(
            "max_connections is not set (PostgreSQL's default), number.toml wants {want_max}"
        )),
    }
    if let Some(v) = instance["databaseVersion"].as_str() {
        if v != ctx.cfg.database.version {
            d.push(format!(
                "databaseVersion is {v}, number.toml wants {}",
                ctx.cfg.database.version
            ));
        }
    }
    if let Some(t) = s["tier"].as_str() {
        if t != ctx.cfg.database.tier {
            d.push(format!(
                "tier is {t}, number.toml wants {}",
                ctx.cfg.database.tier
            ));
        }
    }
    let ip = &s["ipConfiguration"];
    let ssl_required = ip["requireSsl"].as_bool() == Some(true)
        || matches!(
            ip["sslMode"].as_str(),
            Some("ENCRYPTED_ONLY" | "TRUSTED_CLIENT_CERTIFICATE_REQUIRED")
        );
    if !ssl_required {
        d.push("SSL is not required".into());
    }
    let mut have: Vec<String> = ip["authorizedNetworks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    have.sort();
    let mut want = networks.to_vec();
    want.sort();
    if !networks.is_empty() && have != want {
        d.push(format!(
            "authorized networks are {have:?}, number.toml wants {want:?}"
        ));
    }
    d
}

pub async fn run(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    let project = ctx.cfg.project.clone();
    let resource = format!("Cloud SQL instance {}", n.sql_instance);
    println!("database: {}", n.sql_instance);
    // The database admits the VM's static address, so that address comes first.
    let vm_ip = address::ensure(ctx).await?;
    let networks = authorized_networks(ctx, vm_ip.as_deref());
    let password = ctx.db_password().await?;

    let existing = ctx
        .cloud
        .sql
        .get_instance(&project, &n.sql_instance, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&resource))?;
    let mut created = false;
    let runnable = existing.as_ref().is_some_and(|i| i["state"] == "RUNNABLE");
    match existing {
        Some(instance) => {
            let diffs = differences(ctx, &instance, &networks);
            let state = instance["state"].as_str().unwrap_or("?").to_string();
            let action = if diffs.is_empty() {
                Action::Exists
            } else {
                Action::Differs(diffs)
            };
            ctx.report
                .add("Cloud SQL instance", &n.sql_instance, action, Some(state));
        }
        None if ctx.dry_run => {
            ctx.report.add(
                "Cloud SQL instance",
                &n.sql_instance,
                Action::WouldCreate,
                Some(format!(
                    "{} {} max_connections={} SSL required, authorized networks {:?}",
                    ctx.cfg.database.version,
                    ctx.cfg.database.tier,
                    ctx.cfg.database.max_connections,
                    if networks.is_empty() {
                        vec!["<the VM's static address>/32".to_string()]
                    } else {
                        networks.clone()
                    }
                )),
            );
        }
        None => {
            let body = instance_body(ctx, &networks);
            match ctx
                .cloud
                .sql
                .insert_instance(&project, &body, Some(ctx.call_deadline()))
                .await
            {
                Ok(op) => {
                    eprintln!(
                        "  creating {resource} (operation {}); this takes several minutes",
                        op.name
                    );
                    created = true;
                }
                Err(e) if e.is_already_exists() => {
                    // Created by an earlier run that was stopped, or by someone else: adopt and check.
                    let instance = ctx
                        .cloud
                        .sql
                        .get_instance(&project, &n.sql_instance, Some(ctx.call_deadline()))
                        .await
                        .map_err(ctx.google(&resource))?
                        .unwrap_or_default();
                    let diffs = differences(ctx, &instance, &networks);
                    let action = if diffs.is_empty() {
                        Action::Adopted
                    } else {
                        Action::Differs(diffs)
                    };
                    ctx.report
                        .add("Cloud SQL instance", &n.sql_instance, action, None);
                }
                Err(e) => return Err(ctx.google(&resource)(e)),
            }
        }
    }
    if ctx.dry_run {
        let exists = if runnable {
            ctx.cloud
                .sql
                .list_users(&project, &n.sql_instance, Some(ctx.call_deadline()))
                .await
                .map_err(ctx.google(format!("database users of {}", n.sql_instance)))?
                .contains(&n.db_user)
        } else {
            false
        };
        let action = if exists {
            Action::Exists
        } else {
            Action::WouldCreate
        };
        ctx.report.add(
            "database user",
            &n.db_user,
            action,
            Some(format!("password from {}", n.db_password_secret)),
        );
        return Ok(());
    }

    let timeout = ctx.cloud.timeout(Duration::from_secs(30 * 60));
    let sql = &ctx.cloud.sql;
    wait_for(&format!("{resource} to be RUNNABLE"), timeout, || async {
        let i = sql
            .get_instance(&project, &n.sql_instance, None)
            .await
            .map_err(|e| StepError::failed(resource.clone(), e.to_string()))?;
        Ok(match i.as_ref().and_then(|i| i["state"].as_str()) {
            Some("RUNNABLE") => Poll::Ready(()),
            Some(s) => Poll::Pending(format!("state {s}")),
            None => Poll::Pending("not visible yet".into()),
        })
    })
    .await?;
    if created {
        ctx.report.add(
            "Cloud SQL instance",
            &n.sql_instance,
            Action::Created,
            Some("RUNNABLE".into()),
        );
    }

    let user_resource = format!("database user {} on {}", n.db_user, n.sql_instance);
    let users = ctx
        .cloud
        .sql
        .list_users(&project, &n.sql_instance, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&user_resource))?;
    let exists = users.contains(&n.db_user);
    let op = ctx
        .cloud
        .sql
        .put_user(
            &project,
            &n.sql_instance,
            &n.db_user,
            password.expose_secret(),
            exists,
            Some(ctx.call_deadline()),
        )
        .await
        .map_err(ctx.google(&user_resource))?;
    let deadline = tokio::time::Instant::now() + ctx.cloud.timeout(Duration::from_secs(600));
    ctx.cloud
        .sql
        .wait_operation(&project, &op.name, deadline)
        .await
        .map_err(ctx.google(&user_resource))?;
    ctx.report.add(
        "database user",
        &n.db_user,
        if exists {
            Action::Exists
        } else {
            Action::Created
        },
        Some(format!(
            "password from Secret Manager {}",
            n.db_password_secret
        )),
    );
    Ok(())
}
