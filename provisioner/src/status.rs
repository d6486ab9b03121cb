//! `status`: what exists for this number, in what state, and whether the WhatsApp client
//! answers now. Reads only.

use serde_json::Value;
use std::time::Duration;

use crate::ensure::Resource;
use crate::names::KeepaliveNames;
use crate::resources::address::StaticAddress;
use crate::resources::instance::read_vm;
use crate::resources::secret::read_newest;
use crate::resources::service::failed_deployment;
use crate::steps::client_health;
use crate::steps::whatsapp_endpoint::{whatsapp_http, whatsapp_url};
use crate::{Provisioner, StepError};
use shared::whatsapp::WhatsAppClient;

fn line(kind: &str, name: &str, state: &str) {
    println!("  {kind:<22} {name:<40} {state}");
}

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let n = prov.names();
    let project = prov.cfg.project.clone();
    let deadline = Some(prov.call_deadline());
    println!(
        "status: +{}{} in project {project}",
        prov.cfg.country_code, prov.cfg.phone_number
    );

    let address = StaticAddress::of(prov).read(prov).await?;
    let ip = address
        .as_ref()
        .map(|a| a.address.clone())
        .filter(|ip| !ip.is_empty());
    match &address {
        Some(a) => line(
            "static address",
            &n.address,
            &format!(
                "{} {}",
                Some(a.address.as_str())
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or("?"),
                a.status.as_deref().unwrap_or("")
            ),
        ),
        None => line("static address", &n.address, "missing"),
    }

    let fw = prov
        .google
        .compute
        .find_firewall(&project, &n.firewall, deadline)
        .await
        .map_err(prov.google_failed(format!("firewall rule {}", n.firewall)))?;
    line(
        "firewall rule",
        &n.firewall,
        if fw.is_some() { "present" } else { "missing" },
    );

    let sql = prov
        .google
        .sql
        .get_instance(&project, &n.sql_instance, deadline)
        .await
        .map_err(prov.google_failed(format!("Cloud SQL instance {}", n.sql_instance)))?;
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
                let dbs = prov
                    .google
                    .sql
                    .list_databases(&project, &n.sql_instance, deadline)
                    .await
                    .map_err(prov.google_failed(format!("databases of {}", n.sql_instance)))?;
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

    let secret = match read_newest(prov, &n.db_password_secret).await {
        Ok(Some(_)) => "present (value not shown)".to_string(),
        Ok(None) => "missing".to_string(),
        Err(e) => format!("UNUSABLE: {e}"),
    };
    line("secret", &n.db_password_secret, &secret);

    let instance = read_vm(prov).await?;
    match &instance {
        Some(i) => line(
            "VM",
            &n.vm,
            &format!(
                "{} since {}",
                Some(i.status.as_str())
                    .filter(|s| !s.is_empty())
                    .unwrap_or("?"),
                i.last_start_timestamp.as_deref().unwrap_or("?")
            ),
        ),
        None => line("VM", &n.vm, "missing"),
    }

    if let (Some(ip), Some(_)) = (ip, instance) {
        let url = whatsapp_url(prov, &ip)?;
        let pinned =
            url.scheme() != "https" || read_newest(prov, &n.tls_pin_secret).await?.is_some();
        if !pinned {
            line(
                "WhatsApp client",
                url.as_str(),
                "not contacted yet (no pinned certificate: run `provisioner vm`)",
            );
        } else {
            let http = whatsapp_http(prov, &url).await?;
            let wa = WhatsAppClient::new(http.clone(), url.clone(), Duration::from_secs(30));
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
            let answers = state.starts_with("answers its");
            line("WhatsApp client", url.as_str(), &state);
            if answers {
                client_health::show(prov, &wa, line).await?;
            }
        }
    }
    keepalive(prov).await
}

/// Step 6: is this number's keepalive running? A read that fails (the API not enabled yet,
/// no permission) is shown, not fatal: the rest of the status stands.
async fn keepalive(prov: &Provisioner) -> Result<(), StepError> {
    let k = KeepaliveNames::of(&prov.cfg);
    let deadline = Some(prov.call_deadline());
    let service = prov
        .google
        .cloud_run
        .get_service(&k.project, &k.region, &k.service, deadline)
        .await;
    let state = match service {
        Ok(s) => service_state(s.as_ref()),
        Err(e) => format!("unknown: {e}"),
    };
    line("keepalive service", &k.service, &state);
    let job = prov
        .google
        .scheduler
        .get_job(&k.project, &k.region, &k.job, deadline)
        .await;
    let state = match job {
        Ok(j) => job_state(j.as_ref()),
        Err(e) => format!("unknown: {e}"),
    };
    line("keepalive job", &k.job, &state);
    crate::steps::alerts::status(prov).await;
    Ok(())
}

/// A Cloud Run service (v2) in words.
pub fn service_state(service: Option<&Value>) -> String {
    let Some(s) = service else {
        return "missing (provisioner keepalive)".into();
    };
    if s["reconciling"] == true {
        return "deploying".into();
    }
    if let Some(why) = failed_deployment(s) {
        let older = if s["latestReadyRevision"].is_string() {
            " (an older revision still serves)"
        } else {
            " (never ready)"
        };
        return format!("latest revision FAILED: {why}{older}");
    }
    match (s["terminalCondition"]["state"].as_str(), s["uri"].as_str()) {
        (Some("CONDITION_SUCCEEDED"), Some(uri)) => format!("ready at {uri}"),
        (state, _) => format!("not ready ({})", state.unwrap_or("no condition yet")),
    }
}

/// A Cloud Scheduler job (v1) in words: state, schedule, and how its last run went
/// (`status` is that attempt's google.rpc.Status: empty when it succeeded).
pub fn job_state(job: Option<&Value>) -> String {
    let Some(j) = job else {
        return "missing (provisioner keepalive)".into();
    };
    let mut words = format!(
        "{} {}",
        j["state"].as_str().unwrap_or("?"),
        j["schedule"].as_str().unwrap_or("?")
    );
    match j["lastAttemptTime"].as_str() {
        None => words.push_str(", not run yet"),
        Some(t) => match j["status"]["code"].as_i64().filter(|c| *c != 0) {
            None => words.push_str(&format!(", last run {t} ok")),
            Some(code) => words.push_str(&format!(
                ", last run {t} FAILED (code {code}: {})",
                j["status"]["message"].as_str().unwrap_or("no message")
            )),
        },
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_in_words() {
        assert_eq!(service_state(None), "missing (provisioner keepalive)");
        let ready = json!({"terminalCondition": {"state": "CONDITION_SUCCEEDED"}, "uri": "https://k.run.app", "latestReadyRevision": "r1"});
        assert_eq!(service_state(Some(&ready)), "ready at https://k.run.app");
        let mut deploying = ready.clone();
        deploying["reconciling"] = json!(true);
        deploying["terminalCondition"]["state"] = json!("CONDITION_FAILED");
        assert_eq!(service_state(Some(&deploying)), "deploying");
        let mut older = ready.clone();
        older["terminalCondition"] =
            json!({"state": "CONDITION_FAILED", "message": "image not found"});
        assert_eq!(
            service_state(Some(&older)),
            "latest revision FAILED: image not found (an older revision still serves)"
        );
        let never = json!({"terminalCondition": {"state": "CONDITION_FAILED", "message": "boom"}});
        assert_eq!(
            service_state(Some(&never)),
            "latest revision FAILED: boom (never ready)"
        );
        assert_eq!(
            service_state(Some(&json!({}))),
            "not ready (no condition yet)"
        );
    }

    #[test]
    fn a_job_in_words() {
        assert_eq!(job_state(None), "missing (provisioner keepalive)");
        let mut j = json!({"state": "ENABLED", "schedule": "*/5 * * * *"});
        assert_eq!(job_state(Some(&j)), "ENABLED */5 * * * *, not run yet");
        j["lastAttemptTime"] = json!("2026-11-25T01:00:00Z");
        j["status"] = json!({});
        assert_eq!(
            job_state(Some(&j)),
            "ENABLED */5 * * * *, last run 2026-11-25T01:00:00Z ok"
        );
        j["status"] = json!({"code": 5, "message": "Topic not found"});
        assert_eq!(
            job_state(Some(&j)),
            "ENABLED */5 * * * *, last run 2026-11-25T01:00:00Z FAILED (code 5: Topic not found)"
        );
    }
}
