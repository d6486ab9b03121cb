//! The last part of step 6 (`keepalive`, and the fleet command): Cloud Monitoring's alerting
//! on the keepalive's outcome lines, per project. In order: the channels of `[alerts]
//! channels` read once (they must exist; never changed), an e-mail channel per address of
//! `[alerts] emails`, then the log-based policies: `alert` for every number, and `reset` once
//! the project has an On-Premises number. [`status`] shows them and the open incidents of this
//! number.

use serde_json::Value;

use crate::config::Platform;
use crate::ensure::ensure;
use crate::names::KeepaliveNames;
use crate::resources::alert_policy::{monitoring_failed, AlertPolicy, Severity};
use crate::resources::notification_channel::{self, EmailChannel};
use crate::{Provisioner, StepError};

/// Ensures the channels and the policies of this number's project.
pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let k = KeepaliveNames::of(&prov.cfg);
    let alerts = &prov.cfg.alerts;
    let monitoring = &prov.google.monitoring;
    notification_channel::read_named(prov, &alerts.channels).await?;
    let mut channels = alerts.channels.clone();
    if !alerts.emails.is_empty() {
        let listed = monitoring
            .list_notification_channels(&k.project, Some(prov.call_deadline()))
            .await
            .map_err(monitoring_failed(prov, "notification channels", &k.project))?;
        for email in &alerts.emails {
            let channel = EmailChannel::new(&k.project, email, &listed);
            match ensure(prov, &channel).await?.present() {
                Some(c) => channels.push(c.name().to_string()),
                // Dry run: what the policy would name once it exists.
                None => channels.push(format!("(new e-mail channel for {email})")),
            }
        }
    }
    let listed = monitoring
        .list_alert_policies(&k.project, Some(prov.call_deadline()))
        .await
        .map_err(monitoring_failed(prov, "alert policies", &k.project))?;
    let renotify = alerts.renotify_period();
    for severity in severities(prov) {
        ensure(
            prov,
            &AlertPolicy::new(&k, severity, &channels, renotify, &listed),
        )
        .await?;
    }
    Ok(())
}

/// The verdicts that get a policy: `alert` always, `reset` once the project has an
/// On-Premises number (this one).
fn severities(prov: &Provisioner) -> Vec<Severity> {
    match prov.cfg.platform {
        Platform::OnPrem => vec![Severity::Alert, Severity::Reset],
        Platform::Cloud => vec![Severity::Alert],
    }
}

fn line(kind: &str, name: &str, state: &str) {
    println!("  {kind:<22} {name:<40} {state}");
}

/// `status`: the policies (missing, present, drifted, someone else's), their channels, and
/// the open alerts of this number. A read that fails is shown, not fatal.
pub async fn status(prov: &Provisioner) {
    let k = KeepaliveNames::of(&prov.cfg);
    let monitoring = &prov.google.monitoring;
    let deadline = Some(prov.call_deadline());
    let listed = match monitoring.list_alert_policies(&k.project, deadline).await {
        Ok(l) => l,
        Err(e) => {
            let why = monitoring_failed(prov, "alert policies", &k.project)(e);
            line("alert policies", &k.project, &format!("unknown: {why}"));
            return;
        }
    };
    let channels_listed = monitoring
        .list_notification_channels(&k.project, deadline)
        .await
        .unwrap_or_default();
    let mut channels = prov.cfg.alerts.channels.clone();
    for email in &prov.cfg.alerts.emails {
        match EmailChannel::new(&k.project, email, &channels_listed).find() {
            Some(c) => channels.push(c.name().to_string()),
            None => {
                // Shown here, and left out of the policy's comparison: a channel that does
                // not exist yet is not the policy's drift.
                line(
                    "notification channel",
                    email,
                    "missing (provisioner keepalive)",
                );
            }
        }
    }
    let renotify = prov.cfg.alerts.renotify_period();
    let mut ours = Vec::new();
    for severity in severities(prov) {
        let p = AlertPolicy::new(&k, severity, &channels, renotify, &listed);
        let state = match p.find() {
            None => "missing (provisioner keepalive)".to_string(),
            Some(f) if !f.ours => {
                format!("{}: not made by this tool (no managed-by label)", f.name())
            }
            Some(f) => {
                ours.push(f.name().to_string());
                let drift = crate::resources::alert_policy::policy_differences(&f.policy, &p.want);
                let channels = f.policy["notificationChannels"]
                    .as_array()
                    .map_or(0, Vec::len);
                let enabled = if f.policy["enabled"] == true {
                    "enabled"
                } else {
                    "DISABLED"
                };
                if drift.is_empty() {
                    format!("present, {enabled}, {channels} channel(s)")
                } else {
                    let words: Vec<String> = drift.into_iter().map(|(_, w)| w).collect();
                    format!(
                        "DRIFTED ({}): provisioner keepalive repairs it",
                        words.join("; ")
                    )
                }
            }
        };
        line("alert policy", &p.display_name, &state);
    }
    match monitoring.list_open_alerts(&k.project, deadline).await {
        Ok(alerts) => {
            let mine: Vec<&Value> = alerts
                .iter()
                .filter(|a| {
                    a["policy"]["name"]
                        .as_str()
                        .is_some_and(|n| ours.iter().any(|o| o == n))
                })
                .filter(|a| is_this_number(prov, &a["log"]["extractedLabels"]))
                .collect();
            if mine.is_empty() {
                line("open incidents", &prov.cfg.resource_name(), "none");
            }
            for a in mine {
                line(
                    "open incident",
                    a["name"].as_str().unwrap_or_default(),
                    &format!(
                        "{} since {}",
                        a["policy"]["displayName"].as_str().unwrap_or_default(),
                        a["openTime"].as_str().unwrap_or("?")
                    ),
                );
            }
        }
        Err(e) => line(
            "open incidents",
            &prov.cfg.resource_name(),
            &format!("cannot be shown: reading the project's alerts failed ({e})"),
        ),
    }
}

/// Do an alert's extracted labels name this number (its VM, or its phone number id)?
fn is_this_number(prov: &Provisioner, labels: &Value) -> bool {
    match prov.cfg.platform {
        Platform::OnPrem => labels["vm"] == prov.names().vm.as_str(),
        Platform::Cloud => {
            !prov.cfg.cloud.phone_number_id.is_empty()
                && labels["phone_number_id"] == prov.cfg.cloud.phone_number_id.as_str()
        }
    }
}
