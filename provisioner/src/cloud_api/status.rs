//! `status` of a Cloud API number: what Meta says about it (status, platform, quality, health
//! per entity), the app's subscription, the effective webhook, and the keepalive's service
//! and job. Reads only; a read that fails is shown and the rest still printed.

use shared::graph::{HealthEntity, PhoneNumber};

use super::{full_number, job, Meta};
use crate::names::KeepaliveNames;
use crate::status::{job_state, service_state};
use crate::{Provisioner, StepError};

fn line(kind: &str, name: &str, state: &str) {
    println!("  {kind:<22} {name:<40} {state}");
}

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    println!(
        "status: {} on the Cloud API, project {}",
        full_number(prov),
        prov.cfg.project
    );
    match Meta::open(prov, "platform = \"cloud\"").await {
        Ok(meta) => graph(prov, &meta).await,
        Err(StepError::Config(m)) => return Err(StepError::Config(m)),
        Err(e) => line("Graph API", "access token", &format!("unreadable: {e}")),
    }
    keepalive(prov).await;
    Ok(())
}

async fn graph(prov: &Provisioner, meta: &Meta) {
    let c = &meta.cloud;
    let deadline = Some(prov.call_deadline());
    match meta
        .graph
        .phone_number(&meta.token, &c.phone_number_id, deadline)
        .await
    {
        Ok(n) => number(&n, &c.webhook_url),
        Err(e) => line("phone number", &c.phone_number_id, &format!("unknown: {e}")),
    }
    let app = if c.app_id.is_empty() {
        match meta.graph.debug_token(&meta.token, deadline).await {
            Ok(info) => info.app_id,
            Err(e) => {
                line(
                    "access token",
                    &c.access_token_secret,
                    &format!("unknown: {e}"),
                );
                None
            }
        }
    } else {
        Some(c.app_id.clone())
    };
    match meta
        .graph
        .subscribed_apps(&meta.token, &c.waba_id, deadline)
        .await
    {
        Ok(apps) => {
            let names: Vec<String> = apps.iter().map(|a| a.id.clone()).collect();
            let state = match &app {
                Some(app) if names.contains(app) => format!("app {app} subscribed"),
                Some(app) => format!(
                    "app {app} NOT subscribed (subscribed: {}): run `provisioner connect`",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
                None => format!("subscribed: {}", names.join(", ")),
            };
            line("subscription", &format!("WABA {}", c.waba_id), &state);
        }
        Err(e) => line(
            "subscription",
            &format!("WABA {}", c.waba_id),
            &format!("unknown: {e}"),
        ),
    }
}

fn number(n: &PhoneNumber, wanted_webhook: &str) {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    line(
        "phone number",
        &n.id,
        &format!(
            "{} {}: status {}, platform {}, quality {}, throughput {}",
            or(&n.display_phone_number),
            or(&n.verified_name),
            or(&n.status),
            or(&n.platform_type),
            or(&n.quality_rating),
            or(&n.throughput_level)
        ),
    );
    match &n.health_status {
        Some(h) => {
            for e in &h.entities {
                line("health", &entity_name(e), &entity_state(e));
            }
            if h.entities.is_empty() {
                line("health", "overall", &or(&h.can_send_message));
            }
        }
        None => line("health", &n.id, "not said"),
    }
    let w = &n.webhook_configuration;
    let (level, url) = [
        ("number override", &w.phone_number),
        ("WABA override", &w.whatsapp_business_account),
        ("app", &w.application),
    ]
    .into_iter()
    .find_map(|(l, u)| u.as_deref().filter(|u| !u.is_empty()).map(|u| (l, u)))
    .unwrap_or(("none", ""));
    let verdict = if url == wanted_webhook {
        "as in number.toml".to_string()
    } else {
        format!("DIFFERS from cloud.webhook_url {wanted_webhook}: run `provisioner connect`")
    };
    line("webhook", &format!("{url} ({level})"), &verdict);
}

fn entity_name(e: &HealthEntity) -> String {
    format!(
        "{} {}",
        e.entity_type.as_deref().unwrap_or("?"),
        e.id.as_deref().unwrap_or("")
    )
}

/// Messaging first (what matters), calling apart; errors and limits spelled out.
fn entity_state(e: &HealthEntity) -> String {
    let mut s = format!("messaging {}", e.can_send_message.as_deref().unwrap_or("?"));
    for err in &e.errors {
        s.push_str(&format!(
            "; {}: {} (solution: {})",
            err.error_code.map(|c| c.to_string()).unwrap_or_default(),
            err.error_description.as_deref().unwrap_or(""),
            err.possible_solution.as_deref().unwrap_or("")
        ));
    }
    if !e.additional_info.is_empty() {
        s.push_str(&format!("; {}", e.additional_info.join("; ")));
    }
    if let Some(sip) = &e.can_receive_call_sip {
        s.push_str(&format!("; calling {sip}"));
    }
    s
}

async fn keepalive(prov: &Provisioner) {
    let k = KeepaliveNames::of(&prov.cfg);
    let deadline = Some(prov.call_deadline());
    let state = match prov
        .google
        .cloud_run
        .get_service(&k.project, &k.region, &k.service, deadline)
        .await
    {
        Ok(s) => service_state(s.as_ref()),
        Err(e) => format!("unknown: {e}"),
    };
    line("keepalive service", &k.service, &state);
    let state = match prov
        .google
        .scheduler
        .get_job(&k.project, &k.region, &k.job, deadline)
        .await
    {
        Ok(Some(j)) if job::is_onprem(&j) => format!(
            "{} — still the On-Premises payload: run `provisioner keepalive`",
            job_state(Some(&j))
        ),
        Ok(j) => job_state(j.as_ref()),
        Err(e) => format!("unknown: {e}"),
    };
    line("keepalive job", &k.job, &state);
    crate::steps::alerts::status(prov).await;
}
