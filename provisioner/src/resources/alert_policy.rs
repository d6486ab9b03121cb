//! A log-based alert policy of Cloud Monitoring on the keepalive's outcome lines, one per
//! verdict a person must hear of ([`Severity`]): it opens one incident per number (label
//! extractors), notifies the channels at most once per `[alerts] renotify`, and closes the
//! incident once the verdict has stopped for [`AUTO_CLOSE_S`].
//!
//! Ours carry the user label `managed-by=whatsapp-provisioner` and are found by it and their
//! display name; drift (filter, extractors, rate limit, auto-close, channels, enabled, text) is
//! patched back with an update mask. A policy with our display name but without the label is
//! someone else's: reported, never changed.

use serde_json::{json, Map, Value};
use shared::google::GoogleError;
use std::time::Duration;

use super::notification_channel::{is_ours, MANAGED_BY};
use super::{duration_s, show};
use crate::ensure::{fields, Check, Created, Difference, Resource};
use crate::names::KeepaliveNames;
use crate::{Provisioner, StepError};

/// How long after the last matching line an incident closes: the keepalive checks every 5
/// minutes, so a broken number keeps its incident open and a mended one closes within the
/// half hour.
pub const AUTO_CLOSE_S: u64 = 1800;

/// The fields of a policy this tool owns (update-mask paths).
pub const POLICY_FIELDS: [&str; 7] = [
    "documentation",
    "conditions",
    "combiner",
    "enabled",
    "notificationChannels",
    "alertStrategy",
    "severity",
];

/// The verdicts that raise an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `verdict = "alert"`, both kinds: a person must act.
    Alert,
    /// `verdict = "reset"`, On-Premises only: the keepalive reset a VM.
    Reset,
}

impl Severity {
    pub fn verdict(self) -> &'static str {
        match self {
            Severity::Alert => "alert",
            Severity::Reset => "reset",
        }
    }
}

/// The spec of one policy, and the project's policies as the step listed them.
pub struct AlertPolicy<'a> {
    pub project: String,
    pub severity: Severity,
    pub display_name: String,
    /// The policy as it should be (no `name`).
    pub want: Value,
    pub listed: &'a [Value],
}

/// A policy as found: whether this tool made it.
#[derive(Debug, Clone)]
pub struct FoundPolicy {
    pub policy: Value,
    pub ours: bool,
}

impl FoundPolicy {
    pub fn name(&self) -> &str {
        self.policy["name"].as_str().unwrap_or_default()
    }
}

/// The display name of the policy for `severity` on service `service`.
pub fn display_name(service: &str, severity: Severity) -> String {
    match severity {
        Severity::Alert => format!("WhatsApp keepalive ({service}): a number needs a person"),
        Severity::Reset => format!("WhatsApp keepalive ({service}): a VM was reset"),
    }
}

/// The log filter: the service's outcome lines with this verdict.
pub fn filter(service: &str, severity: Severity) -> String {
    let kinds = match severity {
        Severity::Alert => r#"(jsonPayload.kind="onprem" OR jsonPayload.kind="cloud")"#,
        Severity::Reset => r#"jsonPayload.kind="onprem""#,
    };
    format!(
        r#"resource.type="cloud_run_revision" AND resource.labels.service_name="{service}" AND {kinds} AND jsonPayload.verdict="{}""#,
        severity.verdict()
    )
}

/// One incident per number: the VM (On-Premises) or the phone number id (Cloud API).
fn label_extractors(severity: Severity) -> Value {
    let mut m = Map::new();
    let mut add = |label: &str, field: &str| {
        m.insert(label.into(), json!(format!("EXTRACT(jsonPayload.{field})")));
    };
    add("kind", "kind");
    add("vm", "vm");
    add("zone", "zone");
    if severity == Severity::Alert {
        add("phone_number_id", "phoneNumberId");
        add("waba_id", "wabaId");
        add("name", "name");
    }
    Value::Object(m)
}

fn documentation(k: &KeepaliveNames, severity: Severity, renotify: Duration) -> Value {
    let every = every(renotify);
    let logs = format!(
        "https://console.cloud.google.com/logs/query;query=resource.type%3D%22cloud_run_revision%22%20resource.labels.service_name%3D%22{}%22?project={}",
        k.service, k.project
    );
    let (subject, content) = match severity {
        Severity::Alert => (
            "WhatsApp keepalive: ${log.extracted_label.vm}${log.extracted_label.name} needs a person",
            format!(
                "## A WhatsApp number needs a person\n\n\
                 The keepalive's check of **${{log.extracted_label.vm}}${{log.extracted_label.name}}** \
                 (phone number id ${{log.extracted_label.phone_number_id}}) ended in the verdict \
                 `alert`: something a reset or a repair cannot fix. The `reason` of the log line \
                 says what (for a Cloud API number, `findings` lists the kinds: `token`, \
                 `permission`, `blocked`, `status`, `platform`, `subscription`, `webhook`, `handshake`).\n\n\
                 **What to do:** open the matching log lines ({logs}), read `reason`, fix the cause \
                 (a refused password or token: renew it in Secret Manager; `unregistered`: register \
                 the number again; `blocked` or `status`: WhatsApp Manager), then check with \
                 `provisioner status`.\n\n\
                 This incident stays open while the verdict lasts (one check every 5 minutes), is \
                 notified again every {every}, and closes by itself {} minutes after the last \
                 `alert`.",
                AUTO_CLOSE_S / 60
            ),
        ),
        Severity::Reset => (
            "WhatsApp keepalive: VM ${log.extracted_label.vm} was reset",
            format!(
                "## The keepalive reset a WhatsApp VM\n\n\
                 The On-Premises client on **${{log.extracted_label.vm}}** (zone \
                 ${{log.extracted_label.zone}}) did not answer and the keepalive reset its VM. \
                 One reset is routine; a VM reset again and again (this incident staying open) \
                 means a reset does not fix it: look at the VM's serial output and the client's \
                 containers, and at the log lines ({logs}).\n\n\
                 Notified again every {every} while resets go on; closes by itself {} minutes \
                 after the last reset.",
                AUTO_CLOSE_S / 60
            ),
        ),
    };
    json!({"content": content, "mimeType": "text/markdown", "subject": subject})
}

/// `6 hours`, `90 minutes`: the re-notification period in words.
fn every(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(3600) && s >= 7200 => format!("{} hours", s / 3600),
        3600 => "hour".into(),
        _ => format!("{} minutes", s.div_ceil(60)),
    }
}

impl<'a> AlertPolicy<'a> {
    /// The policy for `severity` on `k`'s service, notifying `channels`.
    pub fn new(
        k: &KeepaliveNames,
        severity: Severity,
        channels: &[String],
        renotify: Duration,
        listed: &'a [Value],
    ) -> Self {
        let display_name = display_name(&k.service, severity);
        let want = json!({
            "displayName": display_name,
            "documentation": documentation(k, severity, renotify),
            "userLabels": {MANAGED_BY.0: MANAGED_BY.1, "keepalive-verdict": severity.verdict()},
            "conditions": [{
                "displayName": format!("keepalive verdict {}", severity.verdict()),
                "conditionMatchedLog": {
                    "filter": filter(&k.service, severity),
                    "labelExtractors": label_extractors(severity),
                },
            }],
            "combiner": "OR",
            "enabled": true,
            "notificationChannels": channels,
            "alertStrategy": {
                "notificationRateLimit": {"period": format!("{}s", renotify.as_secs())},
                "autoClose": format!("{AUTO_CLOSE_S}s"),
            },
            "severity": match severity {
                Severity::Alert => "ERROR",
                Severity::Reset => "WARNING",
            },
        });
        AlertPolicy {
            project: k.project.clone(),
            severity,
            display_name,
            want,
            listed,
        }
    }

    /// Ours by label and display name; else a policy of that name that is not ours.
    pub fn find(&self) -> Option<FoundPolicy> {
        let named = |p: &&Value| p["displayName"] == self.display_name.as_str();
        if let Some(p) = self.listed.iter().filter(named).find(|p| is_ours(p)) {
            return Some(FoundPolicy {
                policy: p.clone(),
                ours: true,
            });
        }
        self.listed.iter().find(named).map(|p| FoundPolicy {
            policy: p.clone(),
            ours: false,
        })
    }

    /// What to send for `have`: the spec, with the channels someone added to it kept.
    fn body_for(&self, have: &Value) -> Value {
        let mut body = self.want.clone();
        body["notificationChannels"] = json!(channels_with_extra(have, &self.want));
        body["name"] = have["name"].clone();
        body
    }
}

/// The wanted channels, then those already on `have` that are not wanted (a channel a person
/// added, or one another number of the project asked for, is kept).
fn channels_with_extra(have: &Value, want: &Value) -> Vec<String> {
    let list = |v: &Value| -> Vec<String> {
        v["notificationChannels"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = list(want);
    for c in list(have) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// How `have` differs from `want`: (update-mask field, in words) per difference.
pub fn policy_differences(have: &Value, want: &Value) -> Vec<(&'static str, String)> {
    let mut d = Vec::new();
    let cond = |v: &Value| v["conditions"][0]["conditionMatchedLog"].clone();
    let (hc, wc) = (cond(have), cond(want));
    let conditions = have["conditions"].as_array().map_or(0, Vec::len);
    if conditions != 1 || hc["filter"] != wc["filter"] {
        d.push((
            "conditions",
            format!(
                "log filter is {}, wanted {}",
                show(&hc["filter"]),
                show(&wc["filter"])
            ),
        ));
    } else if hc["labelExtractors"] != wc["labelExtractors"] {
        d.push(("conditions", "label extractors differ".to_string()));
    }
    let rate = |v: &Value| duration_s(&v["alertStrategy"]["notificationRateLimit"]["period"]);
    let close = |v: &Value| duration_s(&v["alertStrategy"]["autoClose"]);
    if rate(have) != rate(want) || close(have) != close(want) {
        d.push((
            "alertStrategy",
            format!(
                "notifies at most every {} and auto-closes after {}, wanted {} and {}",
                show(&have["alertStrategy"]["notificationRateLimit"]["period"]),
                show(&have["alertStrategy"]["autoClose"]),
                show(&want["alertStrategy"]["notificationRateLimit"]["period"]),
                show(&want["alertStrategy"]["autoClose"]),
            ),
        ));
    }
    let missing: Vec<String> = channels_with_extra(&json!({}), want)
        .into_iter()
        .filter(|c| !channels_with_extra(have, &json!({})).contains(c))
        .collect();
    if !missing.is_empty() {
        d.push((
            "notificationChannels",
            format!("does not notify {}", missing.join(", ")),
        ));
    }
    if have["enabled"] != true {
        d.push(("enabled", "disabled".to_string()));
    }
    if have["combiner"] != want["combiner"] {
        d.push((
            "combiner",
            format!(
                "combiner is {}, wanted {}",
                show(&have["combiner"]),
                show(&want["combiner"])
            ),
        ));
    }
    if have["severity"] != want["severity"] {
        d.push((
            "severity",
            format!(
                "severity is {}, wanted {}",
                show(&have["severity"]),
                show(&want["severity"])
            ),
        ));
    }
    if have["documentation"]["content"] != want["documentation"]["content"]
        || have["documentation"]["subject"] != want["documentation"]["subject"]
    {
        d.push((
            "documentation",
            "its documentation text differs".to_string(),
        ));
    }
    d
}

impl Resource for AlertPolicy<'_> {
    type State = FoundPolicy;

    fn kind(&self) -> &'static str {
        "alert policy"
    }

    fn name(&self) -> &str {
        &self.display_name
    }

    async fn read(&self, _prov: &Provisioner) -> Result<Option<FoundPolicy>, StepError> {
        Ok(self.find())
    }

    fn plan(&self) -> Option<String> {
        self.describe()
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<FoundPolicy>, StepError> {
        let made = prov
            .google
            .monitoring
            .create_alert_policy(&self.project, &self.want, Some(prov.call_deadline()))
            .await
            .map_err(monitoring_failed(prov, self.resource(), &self.project))?;
        Ok(Created::New(FoundPolicy {
            policy: made,
            ours: true,
        }))
    }

    fn differences(&self, have: &FoundPolicy, check: Check) -> Vec<Difference> {
        if !have.ours {
            return vec![Difference::report(format!(
                "{} has this name but not the label {}={}: not made by this tool, left alone (add the label to let the provisioner manage it, or rename it)",
                have.name(),
                MANAGED_BY.0,
                MANAGED_BY.1
            ))];
        }
        policy_differences(&have.policy, &self.want)
            .into_iter()
            .map(|(field, words)| {
                let words = if field == "enabled" {
                    format!(
                        "{words}: {}",
                        check.say("enabled again", "would be enabled again")
                    )
                } else {
                    words
                };
                Difference::update(field, words)
            })
            .collect()
    }

    async fn update(
        &self,
        prov: &Provisioner,
        have: &FoundPolicy,
        diffs: &[Difference],
    ) -> Result<FoundPolicy, StepError> {
        let now = prov
            .google
            .monitoring
            .patch_alert_policy(
                have.name(),
                &self.body_for(&have.policy),
                &fields(diffs).join(","),
                Some(prov.call_deadline()),
            )
            .await
            .map_err(monitoring_failed(prov, self.resource(), &self.project))?;
        Ok(FoundPolicy {
            policy: now,
            ours: true,
        })
    }

    fn detail(&self, have: &FoundPolicy) -> Option<String> {
        let name = have.name();
        Some(match self.describe() {
            Some(d) if !name.is_empty() => format!("{name}: {d}"),
            Some(d) => d,
            None => name.to_string(),
        })
    }
}

impl AlertPolicy<'_> {
    fn describe(&self) -> Option<String> {
        let channels = self.want["notificationChannels"]
            .as_array()
            .map_or(0, Vec::len);
        Some(format!(
            "verdict {}, notifies {channels} channel(s) at most every {}, auto-close {}",
            self.severity.verdict(),
            show(&self.want["alertStrategy"]["notificationRateLimit"]["period"]),
            show(&self.want["alertStrategy"]["autoClose"]),
        ))
    }
}

/// Maps a Monitoring error on `resource`: the API not enabled in `project` names the command
/// that enables it.
pub fn monitoring_failed(
    prov: &Provisioner,
    resource: impl Into<String>,
    project: &str,
) -> impl FnOnce(GoogleError) -> StepError {
    let resource = resource.into();
    let project = project.to_string();
    let command = prov.command;
    let fallback = prov.google_failed(resource.clone());
    move |e| {
        if e.is_service_disabled() {
            StepError::failed(
                resource,
                format!(
                    "the Cloud Monitoring API is not enabled in project {project}: run `gcloud services enable monitoring.googleapis.com --project {project}`, then `provisioner {command}` again ({e})"
                ),
            )
        } else {
            fallback(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(severity: Severity, listed: &[Value]) -> AlertPolicy<'_> {
        AlertPolicy::new(
            &KeepaliveNames::example(),
            severity,
            &["projects/acme-prod/notificationChannels/7".to_string()],
            Duration::from_secs(6 * 3600),
            listed,
        )
    }

    #[test]
    fn the_spec_matches_the_verdict_on_the_service() {
        let p = policy(Severity::Reset, &[]);
        let c = &p.want["conditions"][0]["conditionMatchedLog"];
        assert_eq!(
            c["filter"],
            r#"resource.type="cloud_run_revision" AND resource.labels.service_name="whatsapp-keepalive" AND jsonPayload.kind="onprem" AND jsonPayload.verdict="reset""#
        );
        assert_eq!(c["labelExtractors"]["vm"], "EXTRACT(jsonPayload.vm)");
        assert!(c["labelExtractors"].get("phone_number_id").is_none());
        assert_eq!(
            p.want["alertStrategy"]["notificationRateLimit"]["period"],
            "21600s"
        );
        assert_eq!(p.want["alertStrategy"]["autoClose"], "1800s");
        let a = policy(Severity::Alert, &[]);
        assert_eq!(
            a.want["conditions"][0]["conditionMatchedLog"]["labelExtractors"]["phone_number_id"],
            "EXTRACT(jsonPayload.phoneNumberId)"
        );
        assert!(policy_differences(&a.want, &a.want).is_empty());
    }

    #[test]
    fn drift_is_named_by_field_and_extra_channels_are_kept() {
        let want = policy(Severity::Alert, &[]).want;
        let mut have = want.clone();
        have["alertStrategy"]["autoClose"] = json!("604800s");
        have["enabled"] = json!(false);
        have["notificationChannels"] = json!(["projects/acme-prod/notificationChannels/99"]);
        have["conditions"][0]["conditionMatchedLog"]["filter"] = json!("severity>=ERROR");
        let names: Vec<&str> = policy_differences(&have, &want)
            .iter()
            .map(|(f, _)| *f)
            .collect();
        assert_eq!(
            names,
            [
                "conditions",
                "alertStrategy",
                "notificationChannels",
                "enabled"
            ]
        );
        assert_eq!(
            channels_with_extra(&have, &want),
            [
                "projects/acme-prod/notificationChannels/7",
                "projects/acme-prod/notificationChannels/99"
            ]
        );
        // The same durations written otherwise are no drift.
        let mut same = want.clone();
        same["alertStrategy"]["autoClose"] = json!("1800.000s");
        assert!(policy_differences(&same, &want).is_empty());
    }

    #[test]
    fn a_policy_without_the_label_is_reported_never_ours() {
        let mut theirs = policy(Severity::Alert, &[]).want;
        theirs["name"] = json!("projects/acme-prod/alertPolicies/1");
        theirs["userLabels"] = json!({});
        let listed = vec![theirs];
        let p = policy(Severity::Alert, &listed);
        let found = p.find().unwrap();
        assert!(!found.ours);
        let d = p.differences(
            &found,
            Check {
                adopted: false,
                dry_run: false,
            },
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].fix, crate::ensure::Fix::Report);
    }
}
