//! Runbook step 2: the firewall rule, the Container-Optimized OS VM on the static address with
//! the metadata that starts the WhatsApp containers, then the waits until the client answers
//! and its databases exist.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use shared::google::compute::Scope;
use shared::google::sqladmin::BUILTIN_DATABASES;
use shared::tls_pin::{pinned_client, Pin, PinningVerifier};
use std::time::Duration;
use url::Url;
use uuid::Uuid;

use super::{address, Ctx};
use crate::progress::{wait_for, Poll};
use crate::report::Action;
use crate::StepError;

/// The startup script, kept as a file in the repository and read at build time.
pub const STARTUP_SCRIPT: &str = include_str!("../../startup-script.sh");
pub const IMAGE: &str = "projects/cos-cloud/global/images/family/cos-stable";
pub const METADATA_KEYS: [&str; 6] = [
    "VM_IP_ADDRESS",
    "WA_DB_HOST_NAME",
    "WA_DB_USERNAME",
    "WA_DB_PASSWORD",
    "WA_API_VERSION",
    "startup-script",
];

pub fn firewall_body(ctx: &Ctx) -> Value {
    let n = ctx.names();
    json!({
        "name": n.firewall,
        "description": "HTTPS (443) and the keepalive's HTTP proxy (80) to the WhatsApp Business API client",
        "network": "global/networks/default",
        "direction": "INGRESS",
        "priority": 1000,
        "allowed": [{"IPProtocol": "tcp", "ports": ["443", "80"]}],
        "sourceRanges": ["0.0.0.0/0"],
        "targetTags": [n.network_tag]
    })
}

pub fn instance_body(ctx: &Ctx, ip: &str, db_host: &str, db_password: &SecretString) -> Value {
    let n = ctx.names();
    let zone = &ctx.cfg.zone;
    json!({
        "name": n.vm,
        "description": format!("WhatsApp Business API client for +{}{}", ctx.cfg.country_code, ctx.cfg.phone_number),
        "machineType": format!("zones/{zone}/machineTypes/{}", ctx.cfg.vm.machine_type),
        "labels": ctx.labels(),
        "tags": {"items": [n.network_tag]},
        "disks": [{
            "boot": true,
            "autoDelete": true,
            "initializeParams": {"sourceImage": IMAGE, "diskSizeGb": "20"}
        }],
        "networkInterfaces": [{
            "network": "global/networks/default",
            "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT", "natIP": ip, "networkTier": "PREMIUM"}]
        }],
        "metadata": {"items": [
            {"key": "VM_IP_ADDRESS", "value": ip},
            {"key": "WA_DB_HOST_NAME", "value": db_host},
            {"key": "WA_DB_USERNAME", "value": n.db_user},
            {"key": "WA_DB_PASSWORD", "value": db_password.expose_secret()},
            {"key": "WA_API_VERSION", "value": ctx.cfg.vm.whatsapp_version},
            {"key": "startup-script", "value": STARTUP_SCRIPT},
            {"key": "google-logging-enabled", "value": "true"}
        ]},
        "serviceAccounts": [{
            "email": "default",
            "scopes": [
                "https://www.googleapis.com/auth/logging.write",
                "https://www.googleapis.com/auth/monitoring.write",
                "https://www.googleapis.com/auth/devstorage.read_only"
            ]
        }]
    })
}

fn metadata_value<'a>(instance: &'a Value, key: &str) -> Option<&'a str> {
    instance["metadata"]["items"]
        .as_array()?
        .iter()
        .find(|i| i["key"] == key)
        .and_then(|i| i["value"].as_str())
}

/// How an existing VM differs (secrets are compared, never shown).
pub fn differences(
    ctx: &Ctx,
    instance: &Value,
    ip: &str,
    db_host: &str,
    db_password: &SecretString,
) -> Vec<String> {
    let mut d = Vec::new();
    let nat = instance["networkInterfaces"][0]["accessConfigs"][0]["natIP"].as_str();
    if nat != Some(ip) {
        d.push(format!(
            "external IP is {}, want the static address {ip}",
            nat.unwrap_or("none")
        ));
    }
    if let Some(mt) = instance["machineType"].as_str() {
        if !mt.ends_with(&format!("/machineTypes/{}", ctx.cfg.vm.machine_type)) {
            d.push(format!(
                "machine type is {}, number.toml wants {}",
                mt.rsplit('/').next().unwrap_or(mt),
                ctx.cfg.vm.machine_type
            ));
        }
    }
    for (key, want) in [
        ("VM_IP_ADDRESS", ip),
        ("WA_DB_HOST_NAME", db_host),
        ("WA_DB_USERNAME", ctx.names().db_user.as_str()),
        ("WA_API_VERSION", ctx.cfg.vm.whatsapp_version.as_str()),
    ] {
        match metadata_value(instance, key) {
            Some(v) if v == want => {}
            Some(v) => d.push(format!("metadata {key} is {v:?}, want {want:?}")),
            None => d.push(format!("metadata {key} is missing")),
        }
    }
    match metadata_value(instance, "WA_DB_PASSWORD") {
        Some(v) if v == db_password.expose_secret() => {}
        Some(_) => {
            d.push("metadata WA_DB_PASSWORD differs from the password in Secret Manager".into())
        }
        None => d.push("metadata WA_DB_PASSWORD is missing".into()),
    }
    if metadata_value(instance, "startup-script").is_none() {
        d.push("metadata startup-script is missing".into());
    }
    let tags: Vec<&str> = instance["tags"]["items"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !tags.contains(&ctx.names().network_tag.as_str()) {
        d.push(format!(
            "network tag {} is missing (the firewall rule targets it)",
            ctx.names().network_tag
        ));
    }
    d
}

pub async fn run(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    let project = ctx.cfg.project.clone();
    println!("vm: {}", n.vm);
    let ip = address::ensure(ctx).await?;
    ensure_firewall(ctx).await?;

    // The database must exist: its address and the user's password go into the metadata.
    let sql_resource = format!("Cloud SQL instance {}", n.sql_instance);
    let sql = ctx
        .cloud
        .sql
        .get_instance(&project, &n.sql_instance, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&sql_resource))?;
    let db_host = sql.as_ref().and_then(|i| {
        i["ipAddresses"]
            .as_array()?
            .iter()
            .find(|a| a["type"] == "PRIMARY")?["ipAddress"]
            .as_str()
            .map(str::to_string)
    });
    let vm_resource = format!("VM {}", n.vm);
    let existing = ctx
        .cloud
        .compute
        .get_resource(
            &project,
            &Scope::Zone(ctx.cfg.zone.clone()),
            "instances",
            &n.vm,
            Some(ctx.call_deadline()),
        )
        .await
        .map_err(ctx.google(&vm_resource))?;
    let (Some(ip), Some(db_host)) = (ip, db_host) else {
        if ctx.dry_run {
            let action = if existing.is_some() {
                Action::Exists
            } else {
                Action::Blocked("needs the static address and the Cloud SQL instance: run `provisioner database` first".into())
            };
            ctx.report.add("VM", &n.vm, action, None);
            return Ok(());
        }
        return Err(StepError::failed(
            sql_resource,
            "does not exist or has no IP address yet: run `provisioner database` first",
        ));
    };
    let password = ctx
        .cloud
        .secrets
        .latest(&project, &n.db_password_secret, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(format!("secret {}", n.db_password_secret)))?
        .ok_or_else(|| {
            StepError::failed(
                format!("secret {}", n.db_password_secret),
                "is missing: run `provisioner database` first",
            )
        })?;

    let zone = Scope::Zone(ctx.cfg.zone.clone());
    match existing {
        Some(instance) => {
            let diffs = differences(ctx, &instance, &ip, &db_host, &password);
            let action = if diffs.is_empty() {
                Action::Exists
            } else {
                Action::Differs(diffs)
            };
            ctx.report.add(
                "VM",
                &n.vm,
                action,
                instance["status"].as_str().map(str::to_string),
            );
        }
        None if ctx.dry_run => {
            ctx.report.add(
                "VM",
                &n.vm,
                Action::WouldCreate,
                Some(format!(
                    "{} on Container-Optimized OS, IP {ip}, metadata {}",
                    ctx.cfg.vm.machine_type,
                    METADATA_KEYS.join(", ")
                )),
            );
            return Ok(());
        }
        None => {
            let body = instance_body(ctx, &ip, &db_host, &password);
            match ctx
                .cloud
                .compute
                .insert_resource(
                    &project,
                    &zone,
                    "instances",
                    &body,
                    Uuid::new_v4(),
                    Some(ctx.call_deadline()),
                )
                .await
            {
                Ok(op) => {
                    let deadline =
                        tokio::time::Instant::now() + ctx.cloud.timeout(Duration::from_secs(600));
                    ctx.cloud
                        .compute
                        .wait_operation(&project, &zone, &op.name, deadline)
                        .await
                        .map_err(ctx.google(&vm_resource))?;
                    ctx.report
                        .add("VM", &n.vm, Action::Created, Some(format!("IP {ip}")));
                }
                Err(e) if e.is_already_exists() => {
                    let instance = ctx
                        .cloud
                        .compute
                        .get_resource(
                            &project,
                            &zone,
                            "instances",
                            &n.vm,
                            Some(ctx.call_deadline()),
                        )
                        .await
                        .map_err(ctx.google(&vm_resource))?
                        .unwrap_or_default();
                    let diffs = differences(ctx, &instance, &ip, &db_host, &password);
                    let action = if diffs.is_empty() {
                        Action::Adopted
                    } else {
                        Action::Differs(diffs)
                    };
                    ctx.report.add("VM", &n.vm, action, None);
                }
                Err(e) => return Err(ctx.google(&vm_resource)(e)),
            }
        }
    }
    if ctx.dry_run {
        return Ok(());
    }

    let compute = &ctx.cloud.compute;
    wait_for(
        &format!("{vm_resource} to be RUNNING"),
        ctx.cloud.timeout(Duration::from_secs(600)),
        || async {
            let i = compute
                .get_resource(&project, &zone, "instances", &n.vm, None)
                .await
                .map_err(|e| StepError::failed(vm_resource.clone(), e.to_string()))?;
            Ok(match i.as_ref().and_then(|i| i["status"].as_str()) {
                Some("RUNNING") => Poll::Ready(()),
                Some(s) => Poll::Pending(format!("status {s}")),
                None => Poll::Pending("not visible yet".into()),
            })
        },
    )
    .await?;

    wait_for_whatsapp(ctx, &ip).await?;
    wait_for_databases(ctx).await?;
    Ok(())
}

async fn ensure_firewall(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    let project = ctx.cfg.project.clone();
    let resource = format!("firewall rule {}", n.firewall);
    let existing = ctx
        .cloud
        .compute
        .get_resource(
            &project,
            &Scope::Global,
            "firewalls",
            &n.firewall,
            Some(ctx.call_deadline()),
        )
        .await
        .map_err(ctx.google(&resource))?;
    let check = |fw: &Value| -> Vec<String> {
        let mut d = Vec::new();
        let ports: Vec<String> = fw["allowed"]
            .as_array()
            .map(|a| {
                a.iter()
                    .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for p in ["443", "80"] {
            if !ports.iter().any(|x| x == p) {
                d.push(format!("port {p} is not allowed"));
            }
        }
        let tags: Vec<&str> = fw["targetTags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !tags.contains(&n.network_tag.as_str()) {
            d.push(format!("does not target tag {}", n.network_tag));
        }
        d
    };
    if let Some(fw) = existing {
        let d = check(&fw);
        ctx.report.add(
            "firewall rule",
            &n.firewall,
            if d.is_empty() {
                Action::Exists
            } else {
                Action::Differs(d)
            },
            None,
        );
        return Ok(());
    }
    if ctx.dry_run {
        ctx.report.add(
            "firewall rule",
            &n.firewall,
            Action::WouldCreate,
            Some(format!("tcp 443, 80 to tag {}", n.network_tag)),
        );
        return Ok(());
    }
    let body = firewall_body(ctx);
    match ctx
        .cloud
        .compute
        .insert_resource(
            &project,
            &Scope::Global,
            "firewalls",
            &body,
            Uuid::new_v4(),
            Some(ctx.call_deadline()),
        )
        .await
    {
        Ok(op) => {
            let deadline =
                tokio::time::Instant::now() + ctx.cloud.timeout(Duration::from_secs(300));
            ctx.cloud
                .compute
                .wait_operation(&project, &Scope::Global, &op.name, deadline)
                .await
                .map_err(ctx.google(&resource))?;
            ctx.report.add(
                "firewall rule",
                &n.firewall,
                Action::Created,
                Some(format!("tcp 443, 80 to tag {}", n.network_tag)),
            );
        }
        Err(e) if e.is_already_exists() => {
            let fw = ctx
                .cloud
                .compute
                .get_resource(
                    &project,
                    &Scope::Global,
                    "firewalls",
                    &n.firewall,
                    Some(ctx.call_deadline()),
                )
                .await
                .map_err(ctx.google(&resource))?
                .unwrap_or_default();
            let d = check(&fw);
            ctx.report.add(
                "firewall rule",
                &n.firewall,
                if d.is_empty() {
                    Action::Adopted
                } else {
                    Action::Differs(d)
                },
                None,
            );
        }
        Err(e) => return Err(ctx.google(&resource)(e)),
    }
    Ok(())
}

/// Where the WhatsApp client's API is: `PROVISIONER_WHATSAPP_URL`, else `https://<ip>`.
pub fn whatsapp_url(ctx: &Ctx, ip: &str) -> Result<Url, StepError> {
    match &ctx.cloud.whatsapp_url {
        Some(u) => Ok(u.clone()),
        None => Url::parse(&format!("https://{ip}"))
            .map_err(|e| StepError::failed("WhatsApp URL", e.to_string())),
    }
}

/// An HTTP client for the WhatsApp client: over https, the certificate is pinned on first
/// contact (kept in Secret Manager) and a changed one is refused.
pub async fn whatsapp_http(ctx: &mut Ctx, url: &Url) -> Result<reqwest::Client, StepError> {
    if url.scheme() != "https" {
        return Ok(shared::whatsapp::WhatsAppClient::http_client());
    }
    let n = ctx.names();
    let project = ctx.cfg.project.clone();
    let resource = format!("secret {}", n.tls_pin_secret);
    let stored = ctx
        .cloud
        .secrets
        .latest(&project, &n.tls_pin_secret, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&resource))?;
    let pin = match stored {
        Some(b64) => Pin::Certificate(
            STANDARD
                .decode(b64.expose_secret().trim())
                .map_err(|_| StepError::failed(&resource, "does not hold a base64 certificate"))?,
        ),
        None => Pin::FirstUse,
    };
    let first_use = matches!(pin, Pin::FirstUse);
    let verifier = PinningVerifier::new(pin);
    let client = pinned_client(verifier.clone()).map_err(|e| StepError::failed("TLS client", e))?;
    if first_use {
        // First contact: one request to learn the certificate, which is stored before any
        // credential is sent.
        let timeout = ctx.cloud.timeout(Duration::from_secs(20 * 60));
        let probe = url
            .join("/v1/health")
            .map_err(|e| StepError::failed("WhatsApp URL", e.to_string()))?;
        let der = wait_for(
            &format!("the WhatsApp client at {url} to answer TLS"),
            timeout,
            || async {
                let r = client
                    .get(probe.clone())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                Ok(match (r, verifier.seen()) {
                    (_, Some(der)) => Poll::Ready(der),
                    (Err(e), None) => Poll::Pending(shared::google::error::describe_reqwest(&e)),
                    (Ok(_), None) => Poll::Pending("no certificate seen".into()),
                })
            },
        )
        .await?;
        ctx.cloud
            .secrets
            .store(
                &project,
                &n.tls_pin_secret,
                &SecretString::from(STANDARD.encode(&der)),
                &[("managed-by", "whatsapp-provisioner")],
                Some(ctx.call_deadline()),
            )
            .await
            .map_err(ctx.google(&resource))?;
        ctx.report.add(
            "TLS certificate pin",
            &n.tls_pin_secret,
            Action::Created,
            Some("pinned on first contact".into()),
        );
        return pinned_client(PinningVerifier::new(Pin::Certificate(der)))
            .map_err(|e| StepError::failed("TLS client", e));
    }
    Ok(client)
}

/// Waits until the client answers `POST /v1/users/login` (any HTTP answer: the web container
/// is up; 401 before the first login is expected).
async fn wait_for_whatsapp(ctx: &mut Ctx, ip: &str) -> Result<(), StepError> {
    let url = whatsapp_url(ctx, ip)?;
    let http = whatsapp_http(ctx, &url).await?;
    let login = url
        .join("/v1/users/login")
        .map_err(|e| StepError::failed("WhatsApp URL", e.to_string()))?;
    let timeout = ctx.cloud.timeout(Duration::from_secs(20 * 60));
    wait_for(&format!("the WhatsApp client to answer at {login}"), timeout, || async {
        let r = http.post(login.clone()).header(reqwest::header::CONTENT_LENGTH, "0").timeout(Duration::from_secs(15)).send().await;
        Ok(match r {
            Ok(resp) if resp.status().is_server_error() => Poll::Pending(format!("answered {}", resp.status())),
            Ok(_) => Poll::Ready(()),
            Err(e) if is_pin_mismatch(&e) => return Err(StepError::failed("WhatsApp client", format!("{login}: the TLS certificate differs from the one pinned on first contact; refusing to talk to it"))),
            Err(e) => Poll::Pending(shared::google::error::describe_reqwest(&e)),
        })
    })
    .await?;
    ctx.report.add(
        "WhatsApp client",
        url.as_str(),
        Action::Exists,
        Some("answers its login endpoint".into()),
    );
    Ok(())
}

fn is_pin_mismatch(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().contains("pinned on first contact") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Waits until WhatsApp's own databases appear in the Cloud SQL instance.
async fn wait_for_databases(ctx: &mut Ctx) -> Result<(), StepError> {
    let n = ctx.names();
    let project = ctx.cfg.project.clone();
    let resource = format!("databases of {}", n.sql_instance);
    let sql = &ctx.cloud.sql;
    let found = wait_for(
        &format!("WhatsApp to create its databases in {}", n.sql_instance),
        ctx.cloud.timeout(Duration::from_secs(20 * 60)),
        || async {
            let dbs = sql
                .list_databases(&project, &n.sql_instance, None)
                .await
                .map_err(|e| StepError::failed(resource.clone(), e.to_string()))?;
            let own: Vec<String> = dbs
                .into_iter()
                .filter(|d| !BUILTIN_DATABASES.contains(&d.as_str()))
                .collect();
            Ok(if own.is_empty() {
                Poll::Pending("only Cloud SQL's own databases".into())
            } else {
                Poll::Ready(own)
            })
        },
    )
    .await?;
    ctx.report.add(
        "WhatsApp databases",
        &n.sql_instance,
        Action::Exists,
        Some(found.join(", ")),
    );
    Ok(())
}
