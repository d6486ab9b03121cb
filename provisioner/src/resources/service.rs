//! The keepalive's Cloud Run service, one per project: the image from `keepalive.image`,
//! 128 MiB, a request timeout above the keepalive's deadline, not public (who may call it is
//! [`invoker`](super::invoker)'s). Ours alone, so a run brings it back to the spec (a new
//! image, a changed setting) and deploys a failed revision again.

use serde_json::{json, Value};
use std::time::Duration;

use super::subscription::ACK_DEADLINE_S;
use super::{duration_s, show};
use crate::ensure::{fields, read_back, Check, Created, Difference, Resource};
use crate::names::KeepaliveNames;
use crate::{Provisioner, StepError};

/// The keepalive's upper bound on one check (`KEEPALIVE_DEADLINE_S`), set on the service.
pub const CHECK_DEADLINE_S: u64 = 100;
/// Cloud Run's request timeout: above the check's deadline, below the ack deadline.
pub const REQUEST_TIMEOUT_S: u64 = 115;
pub const MEMORY: &str = "128Mi";
const _: () =
    assert!(CHECK_DEADLINE_S < REQUEST_TIMEOUT_S && REQUEST_TIMEOUT_S < ACK_DEADLINE_S as u64);

/// The field a failed revision is deployed again through: a new revision name.
const REVISION: &str = "template.revision";

pub struct KeepaliveService {
    pub project: String,
    pub region: String,
    pub service: String,
    /// `projects/P/locations/R/services/S`
    pub full_name: String,
    pub image: String,
    pub service_account: String,
    pub invoker: String,
    pub want: Value,
}

impl KeepaliveService {
    pub fn of(k: &KeepaliveNames) -> KeepaliveService {
        KeepaliveService {
            project: k.project.clone(),
            region: k.region.clone(),
            service: k.service.clone(),
            full_name: k.service_name(),
            image: k.image.clone(),
            service_account: k.service_account.clone(),
            invoker: k.invoker.clone(),
            want: service_body(k),
        }
    }

    /// The service's URL, once it has one.
    pub fn url(service: &Value) -> Option<String> {
        service
            .get("uri")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    async fn finish(
        &self,
        prov: &Provisioner,
        op: shared::google::cloud_run::RunOperation,
    ) -> Result<Value, StepError> {
        prov.google
            .cloud_run
            .finish(op, prov.wait_deadline(Duration::from_secs(600)))
            .await
            .map_err(prov.google_failed(self.resource()))?;
        read_back(prov, self, "not found right after it was deployed").await
    }
}

impl Resource for KeepaliveService {
    type State = Value;

    fn kind(&self) -> &'static str {
        "Cloud Run service"
    }

    fn name(&self) -> &str {
        &self.service
    }

    fn resource(&self) -> String {
        format!("{} {}", self.kind(), self.full_name)
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Value>, StepError> {
        prov.google
            .cloud_run
            .get_service(
                &self.project,
                &self.region,
                &self.service,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(prov.google_failed(self.resource()))
    }

    fn plan(&self) -> Option<String> {
        Some(format!(
            "{} with {MEMORY}, request timeout {REQUEST_TIMEOUT_S} s, runs as {}, invokable only by {}",
            self.image, self.service_account, self.invoker
        ))
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<Value>, StepError> {
        let create = prov
            .google
            .cloud_run
            .create_service(
                &self.project,
                &self.region,
                &self.service,
                &self.want,
                Some(prov.call_deadline()),
            )
            .await;
        match create {
            Ok(op) => {
                eprintln!(
                    "  creating {} (operation {}); this takes a minute or two",
                    self.resource(),
                    op.name
                );
                Ok(Created::New(self.finish(prov, op).await?))
            }
            Err(e) if e.is_already_exists() => Ok(Created::AlreadyExists),
            Err(e) => Err(prov.google_failed(self.resource())(e)),
        }
    }

    /// Differences are brought back, and a failed latest revision is deployed again. Adopted
    /// (someone else's create, maybe still deploying): only reported.
    fn differences(&self, have: &Value, check: Check) -> Vec<Difference> {
        let mut words = service_differences(have, &self.want);
        let failed = failed_deployment(have);
        if check.adopted {
            if let Some(why) = failed {
                words.push(format!(
                    "its latest revision failed ({why}): run `provisioner keepalive` again to deploy it again"
                ));
            }
            return words.into_iter().map(Difference::report).collect();
        }
        let mut d: Vec<Difference> = words
            .into_iter()
            .map(|w| Difference::update("template", w))
            .collect();
        // An unchanged template makes no new revision, so the new one is named.
        if let Some(why) = failed {
            let again = check.say("deployed again", "would deploy again");
            d.push(Difference::update(
                REVISION,
                format!("its latest revision failed ({why}): {again}"),
            ));
        }
        d
    }

    async fn update(
        &self,
        prov: &Provisioner,
        _have: &Value,
        diffs: &[Difference],
    ) -> Result<Value, StepError> {
        let mut want = self.want.clone();
        if fields(diffs).contains(&REVISION) {
            want["template"]["revision"] = json!(fresh_revision_name(&self.service));
        }
        let op = prov
            .google
            .cloud_run
            .update_service(
                &self.project,
                &self.region,
                &self.service,
                &want,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(prov.google_failed(self.resource()))?;
        eprintln!("  updating {} (operation {})", self.resource(), op.name);
        self.finish(prov, op).await
    }

    fn detail(&self, have: &Value) -> Option<String> {
        Self::url(have)
    }
}

/// The Cloud Run service as step 6 wants it.
pub fn service_body(k: &KeepaliveNames) -> Value {
    let mut env = vec![
        json!({"name": "GOOGLE_CLOUD_PROJECT", "value": k.project}),
        json!({"name": "KEEPALIVE_DEADLINE_S", "value": CHECK_DEADLINE_S.to_string()}),
    ];
    if let Some(t) = &k.events_topic {
        env.push(json!({"name": "KEEPALIVE_EVENTS_TOPIC", "value": t}));
    }
    json!({
        "description": "Keeps the self-hosted WhatsApp Business API clients of this project alive (called by Pub/Sub push)",
        "labels": {"managed-by": "whatsapp-provisioner"},
        // Pub/Sub push comes from Google's front end, not from a VPC: ingress stays open and
        // IAM keeps everyone out but the push identity (no allUsers binding, ever).
        "ingress": "INGRESS_TRAFFIC_ALL",
        // IAM decides who may invoke (true would open the service to anyone).
        "invokerIamDisabled": false,
        "template": {
            "serviceAccount": k.service_account,
            "timeout": format!("{REQUEST_TIMEOUT_S}s"),
            "maxInstanceRequestConcurrency": 80,
            "scaling": {"minInstanceCount": 0, "maxInstanceCount": 5},
            // The first generation runs in 128 MiB (the second needs 512 MiB).
            "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN1",
            "containers": [{
                "image": k.image,
                "env": env,
                "resources": {"limits": {"memory": MEMORY, "cpu": "1"}, "cpuIdle": true},
                "ports": [{"containerPort": 8080}]
            }]
        }
    })
}

/// How an existing service differs from [`service_body`], in words (empty: as wanted).
pub fn service_differences(have: &Value, want: &Value) -> Vec<String> {
    let mut d = Vec::new();
    let mut cmp = |what: &str, h: &Value, w: &Value| {
        if h != w {
            d.push(format!("{what} is {}, wanted {}", show(h), show(w)));
        }
    };
    let (ht, wt) = (&have["template"], &want["template"]);
    let (hc, wc) = (&ht["containers"][0], &wt["containers"][0]);
    cmp("image", &hc["image"], &wc["image"]);
    cmp(
        "memory",
        &hc["resources"]["limits"]["memory"],
        &wc["resources"]["limits"]["memory"],
    );
    cmp(
        "request timeout",
        &json!(duration_s(&ht["timeout"])),
        &json!(duration_s(&wt["timeout"])),
    );
    cmp(
        "service account",
        &ht["serviceAccount"],
        &wt["serviceAccount"],
    );
    // What the API leaves out when it is the default counts as the default.
    let or = |v: &Value, default: &str| {
        if v.is_null() {
            json!(default)
        } else {
            v.clone()
        }
    };
    cmp(
        "ingress",
        &or(&have["ingress"], "INGRESS_TRAFFIC_ALL"),
        &want["ingress"],
    );
    cmp(
        "invokerIamDisabled (true: anyone may call it)",
        &json!(have["invokerIamDisabled"] == true),
        &json!(false),
    );
    if !ht["executionEnvironment"].is_null() {
        cmp(
            "execution environment",
            &ht["executionEnvironment"],
            &wt["executionEnvironment"],
        );
    }
    let env = |c: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = c["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["name"].as_str().unwrap_or_default().to_string(),
                            e["value"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let (he, we) = (env(hc), env(wc));
    if he != we {
        let names = |e: &[(String, String)]| {
            e.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        d.push(format!(
            "environment is [{}], wanted [{}]",
            names(&he),
            names(&we)
        ));
    }
    d
}

/// Why the service's latest revision failed, when it did and nothing is deploying now.
pub fn failed_deployment(service: &Value) -> Option<String> {
    let c = &service["terminalCondition"];
    (c["state"] == "CONDITION_FAILED" && service["reconciling"] != true).then(|| {
        c["message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .unwrap_or("no reason given")
            .to_string()
    })
}

/// A revision name no earlier deployment used: the service's name, `-r` and the time in
/// milliseconds, base 36 (at most 63 characters: service names have at most 49).
pub fn fresh_revision_name(service: &str) -> String {
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(ms % 36) as usize]);
        ms /= 36;
        if ms == 0 {
            break;
        }
    }
    digits.reverse();
    format!("{service}-r{}", String::from_utf8_lossy(&digits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::KeepaliveNames;

    fn names() -> KeepaliveNames {
        KeepaliveNames::example()
    }

    #[test]
    fn fields_the_api_leaves_out_are_not_differences() {
        let want = service_body(&names());
        let mut have = want.clone();
        have.as_object_mut().unwrap().remove("ingress");
        have.as_object_mut().unwrap().remove("invokerIamDisabled");
        have["template"]
            .as_object_mut()
            .unwrap()
            .remove("executionEnvironment");
        assert!(service_differences(&have, &want).is_empty());
        have["invokerIamDisabled"] = json!(true);
        assert_eq!(service_differences(&have, &want).len(), 1);
    }

    #[test]
    fn a_failed_revision_is_told_apart_and_a_fresh_name_is_valid() {
        let failed = json!({"terminalCondition": {"state": "CONDITION_FAILED", "message": "image not found"}});
        assert_eq!(
            failed_deployment(&failed).as_deref(),
            Some("image not found")
        );
        let mut deploying = failed.clone();
        deploying["reconciling"] = json!(true);
        assert_eq!(failed_deployment(&deploying), None);
        for state in ["CONDITION_SUCCEEDED", "CONDITION_RECONCILING"] {
            assert_eq!(
                failed_deployment(&json!({"terminalCondition": {"state": state}})),
                None
            );
        }
        assert_eq!(
            failed_deployment(&json!({"terminalCondition": {"state": "CONDITION_FAILED"}}))
                .as_deref(),
            Some("no reason given")
        );
        // The longest service name Cloud Run takes (49) still makes a valid revision name.
        let service = "a".repeat(49);
        let name = fresh_revision_name(&service);
        assert!(name.starts_with(&format!("{service}-r")), "{name}");
        assert!(name.len() <= 63, "{name}");
        assert!(name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_ne!(fresh_revision_name(&service), name);
    }

    #[test]
    fn a_failed_revision_is_deployed_again_unless_adopted() {
        let s = KeepaliveService::of(&names());
        let mut have = s.want.clone();
        have["terminalCondition"] = json!({"state": "CONDITION_FAILED", "message": "no image"});
        let found = Check {
            adopted: false,
            dry_run: false,
        };
        let d = s.differences(&have, found);
        assert_eq!(fields(&d), [REVISION]);
        assert!(d[0].words.ends_with("(no image): deployed again"), "{d:?}");
        let d = s.differences(
            &have,
            Check {
                adopted: true,
                ..found
            },
        );
        assert!(
            d.iter().all(|d| d.fix == crate::ensure::Fix::Report),
            "{d:?}"
        );
        assert!(
            d[0].words.contains("run `provisioner keepalive` again"),
            "{d:?}"
        );
    }

    #[test]
    fn the_service_spec_is_small_private_and_outlasts_a_check() {
        let s = service_body(&names());
        let c = &s["template"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["memory"], "128Mi");
        assert!(duration_s(&s["template"]["timeout"]).unwrap() > CHECK_DEADLINE_S as f64);
        assert!(duration_s(&s["template"]["timeout"]).unwrap() < f64::from(ACK_DEADLINE_S));
        assert!(!s.to_string().contains("allUsers"));
        assert!(service_differences(&s, &s).is_empty());
        let mut old = s.clone();
        old["template"]["containers"][0]["image"] = json!("old:1");
        old["template"]["timeout"] = json!("300.000s");
        let d = service_differences(&old, &s);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("image is old:1"));
        let mut with_events = names();
        with_events.events_topic = Some("projects/acme-prod/topics/events".into());
        let d = service_differences(&s, &service_body(&with_events));
        assert!(
            d[0].contains("KEEPALIVE_EVENTS_TOPIC=projects/acme-prod/topics/events"),
            "{d:?}"
        );
    }
}
