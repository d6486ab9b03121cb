//! Runbook step 6: the keepalive in production.
//!
//! Per project, shared by every number: the Pub/Sub topic the scheduler jobs publish to, its
//! dead-letter topic (with a pull subscription that keeps what could not be delivered for a
//! week), the Cloud Run service from `keepalive.image` (128 MiB, request timeout above the
//! keepalive's deadline, not public: only the push identity holds `roles/run.invoker`), and
//! the push subscription that calls it with an OIDC token. Per number: the Cloud Scheduler
//! job rendered from `scheduler.yaml`, every 5 minutes, whose payload names the password's
//! Secret Manager version, never the password. A second number adds only its job.
//!
//! Pub/Sub goes through `google-cloud-pubsub`; Cloud Run and Cloud Scheduler through the
//! shared REST layer. The service and the subscription are ours alone, so a run brings them
//! back to the spec (a new image, a moved endpoint); a subscription on another topic cannot be
//! changed in place and is reported instead.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{Subscription, Topic, UpdateSubscriptionRequest};
use serde_json::{json, Value};
use shared::events_publisher::google_error;
use shared::payload::Payload;
use std::time::Duration;

use super::{address, Ctx};
use crate::report::Action;
use crate::StepError;

/// The template, kept as a file at the top of the repository and read at build time.
pub const SCHEDULER_TEMPLATE: &str = include_str!("../../../scheduler.yaml");

/// The keepalive's upper bound on one check (`KEEPALIVE_DEADLINE_S`), set on the service.
pub const CHECK_DEADLINE_S: u64 = 100;
/// Cloud Run's request timeout: above the check's deadline, below the ack deadline.
pub const REQUEST_TIMEOUT_S: u64 = 115;
/// The push subscription's ack deadline: a check (≤ 100 s) is never redelivered for being slow.
pub const ACK_DEADLINE_S: i32 = 120;
/// Unacknowledged messages are dropped after 10 minutes: by then two newer checks are due.
pub const RETENTION_S: u64 = 600;
/// Deliveries before a message goes to the dead-letter topic (the API's minimum).
pub const MAX_DELIVERY_ATTEMPTS: i32 = 5;
/// What the dead-letter subscription keeps (the API's maximum).
pub const DEAD_LETTER_RETENTION_S: u64 = 7 * 86_400;
pub const MEMORY: &str = "128Mi";

/// The names this step works with.
#[derive(Debug, Clone)]
pub struct KeepaliveNames {
    pub project: String,
    /// Cloud Run and Cloud Scheduler location.
    pub region: String,
    pub image: String,
    pub topic: String,
    pub dead_letter_topic: String,
    pub subscription: String,
    pub dead_letter_subscription: String,
    pub service: String,
    pub service_account: String,
    pub invoker: String,
    /// `projects/P/topics/T` for the keepalive's events, if configured.
    pub events_topic: Option<String>,
    pub job: String,
    /// The Secret Manager version the job's payload names.
    pub password_version: String,
}

impl KeepaliveNames {
    pub fn of(ctx: &Ctx) -> KeepaliveNames {
        let cfg = &ctx.cfg;
        let k = &cfg.keepalive;
        let p = &cfg.project;
        let region = if k.region.is_empty() {
            cfg.region.clone()
        } else {
            k.region.clone()
        };
        let or = |v: &str, default: String| {
            if v.is_empty() {
                default
            } else {
                v.to_string()
            }
        };
        let n = ctx.names();
        KeepaliveNames {
            image: or(
                &k.image,
                format!("{region}-docker.pkg.dev/{p}/keepalive/keepalive:latest"),
            ),
            topic: format!("projects/{p}/topics/{}", k.topic),
            dead_letter_topic: format!("projects/{p}/topics/{}-dead-letter", k.topic),
            subscription: format!("projects/{p}/subscriptions/{}-push", k.topic),
            dead_letter_subscription: format!("projects/{p}/subscriptions/{}-dead-letter", k.topic),
            service: k.service.clone(),
            service_account: or(
                &k.service_account,
                format!("whatsapp-keepalive@{p}.iam.gserviceaccount.com"),
            ),
            invoker: or(
                &k.invoker_service_account,
                format!("whatsapp-keepalive-invoker@{p}.iam.gserviceaccount.com"),
            ),
            events_topic: match k.events_topic.as_str() {
                "" => None,
                t if t.starts_with("projects/") => Some(t.to_string()),
                t => Some(format!("projects/{p}/topics/{t}")),
            },
            job: format!("keepalive-{}", n.vm),
            password_version: format!(
                "projects/{p}/secrets/{}/versions/latest",
                n.admin_password_secret
            ),
            project: p.clone(),
            region,
        }
    }

    /// The events topic when it is in this project (this step creates and grants it).
    pub fn own_events_topic(&self) -> Option<&str> {
        self.events_topic
            .as_deref()
            .filter(|t| t.starts_with(&format!("projects/{}/", self.project)))
    }

    pub fn job_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/jobs/{}",
            self.project, self.region, self.job
        )
    }

    fn service_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.service
        )
    }
}

/// The Cloud Run service as this step wants it.
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

fn show(v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Seconds of a protobuf JSON duration (`"600s"`, `"600.5s"`); `None` if absent or malformed.
pub fn duration_s(v: &Value) -> Option<f64> {
    v.as_str()?.strip_suffix('s')?.parse().ok()
}

/// The policy with `member` holding `roles/run.invoker` and no public member (`allUsers`,
/// `allAuthenticatedUsers`) on any role; other bindings kept. `None`: nothing to change.
pub fn invoker_policy(policy: &Value, member: &str) -> Option<(Value, Vec<String>)> {
    const ROLE: &str = "roles/run.invoker";
    let mut changes = Vec::new();
    let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
    for b in bindings.iter_mut() {
        if let Some(members) = b["members"].as_array_mut() {
            let before = members.len();
            members.retain(|m| !matches!(m.as_str(), Some("allUsers" | "allAuthenticatedUsers")));
            if members.len() != before {
                changes.push(format!(
                    "public access removed from {}",
                    b["role"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    bindings.retain(|b| b["members"].as_array().is_some_and(|m| !m.is_empty()));
    let mut out = policy.clone();
    out["bindings"] = Value::Array(bindings);
    if let Some(granted) = with_member(&out, ROLE, member) {
        out = granted;
        changes.push(format!("{ROLE} granted to {member}"));
    }
    (!changes.is_empty()).then_some((out, changes))
}

/// The policy with `member` in an unconditional binding of `role`; `None` when it is there.
pub fn with_member(policy: &Value, role: &str, member: &str) -> Option<Value> {
    let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
    let unconditional =
        |b: &Value| b["role"] == role && b.get("condition").is_none_or(Value::is_null);
    if bindings.iter().any(|b| {
        unconditional(b)
            && b["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == member))
    }) {
        return None;
    }
    match bindings.iter_mut().find(|b| unconditional(b)) {
        Some(b) => match b["members"].as_array_mut() {
            Some(m) => m.push(json!(member)),
            None => b["members"] = json!([member]),
        },
        None => bindings.push(json!({"role": role, "members": [member]})),
    }
    let mut out = policy.clone();
    out["bindings"] = Value::Array(bindings);
    Some(out)
}

/// The push subscription as this step wants it (the API's JSON).
pub fn push_subscription_body(k: &KeepaliveNames, url: &str) -> Value {
    json!({
        "name": k.subscription,
        "topic": k.topic,
        "pushConfig": {
            "pushEndpoint": url,
            "oidcToken": {"serviceAccountEmail": k.invoker, "audience": url}
        },
        "ackDeadlineSeconds": ACK_DEADLINE_S,
        "messageRetentionDuration": format!("{RETENTION_S}s"),
        "deadLetterPolicy": {
            "deadLetterTopic": k.dead_letter_topic,
            "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS
        },
        // A 503 (Compute Engine busy) comes back after 10 s, then up to a minute apart.
        "retryPolicy": {"minimumBackoff": "10s", "maximumBackoff": "60s"},
        // Never expires, however long the service stays quiet.
        "expirationPolicy": {},
        "labels": {"managed-by": "whatsapp-provisioner"}
    })
}

pub fn dead_letter_subscription_body(k: &KeepaliveNames) -> Value {
    json!({
        "name": k.dead_letter_subscription,
        "topic": k.dead_letter_topic,
        "ackDeadlineSeconds": 60,
        "messageRetentionDuration": format!("{DEAD_LETTER_RETENTION_S}s"),
        "expirationPolicy": {},
        "labels": {"managed-by": "whatsapp-provisioner"}
    })
}

/// The fields of `want` that `have` does not match, as update-mask paths (the API's JSON
/// names). `topic` is immutable: reported, not updated, by the caller.
pub fn subscription_differences(have: &Value, want: &Value) -> Vec<(&'static str, String)> {
    let mut d = Vec::new();
    let push = |v: &Value| {
        (
            v["pushConfig"]["pushEndpoint"].clone(),
            v["pushConfig"]["oidcToken"]["serviceAccountEmail"].clone(),
            v["pushConfig"]["oidcToken"]["audience"].clone(),
        )
    };
    if push(have) != push(want) {
        let (e, sa, _) = push(have);
        let (we, wsa, _) = push(want);
        d.push((
            "pushConfig",
            format!(
                "push endpoint {} with OIDC identity {}, wanted {} with {}",
                show(&e),
                show(&sa),
                show(&we),
                show(&wsa)
            ),
        ));
    }
    if have["ackDeadlineSeconds"].as_i64() != want["ackDeadlineSeconds"].as_i64() {
        d.push((
            "ackDeadlineSeconds",
            format!(
                "ack deadline {} s, wanted {} s",
                show(&have["ackDeadlineSeconds"]),
                show(&want["ackDeadlineSeconds"])
            ),
        ));
    }
    if duration_s(&have["messageRetentionDuration"])
        != duration_s(&want["messageRetentionDuration"])
    {
        d.push((
            "messageRetentionDuration",
            format!(
                "retention {}, wanted {}",
                show(&have["messageRetentionDuration"]),
                show(&want["messageRetentionDuration"])
            ),
        ));
    }
    let dlp = |v: &Value| {
        (
            v["deadLetterPolicy"]["deadLetterTopic"].clone(),
            v["deadLetterPolicy"]["maxDeliveryAttempts"].as_i64(),
        )
    };
    if dlp(have) != dlp(want) {
        d.push((
            "deadLetterPolicy",
            format!(
                "dead-letter policy {}, wanted {}",
                show(&have["deadLetterPolicy"]),
                show(&want["deadLetterPolicy"])
            ),
        ));
    }
    let rp = |v: &Value| {
        (
            duration_s(&v["retryPolicy"]["minimumBackoff"]),
            duration_s(&v["retryPolicy"]["maximumBackoff"]),
        )
    };
    if want.get("retryPolicy").is_some() && rp(have) != rp(want) {
        d.push((
            "retryPolicy",
            format!(
                "retry policy {}, wanted {}",
                show(&have["retryPolicy"]),
                show(&want["retryPolicy"])
            ),
        ));
    }
    let expires = have["expirationPolicy"]["ttl"].as_str().map(str::to_string);
    if let Some(ttl) = expires {
        d.push((
            "expirationPolicy",
            format!("expires after {ttl} of inactivity, wanted never"),
        ));
    }
    d
}

/// What `scheduler.yaml` needs for one number.
#[derive(Debug, Clone)]
pub struct JobValues {
    pub project: String,
    pub region: String,
    pub job: String,
    pub topic_id: String,
    pub whatsapp_hostname: String,
    pub whatsapp_username: String,
    pub password_secret: String,
    pub vm: String,
    pub zone: String,
    pub time_zone: String,
}

/// Renders `template` (the text of `scheduler.yaml`) into the Cloud Scheduler job's JSON:
/// placeholders filled in, `pubsubTarget.payload` turned into `data` (base64 of compact JSON).
pub fn render_job(template: &str, v: &JobValues) -> Result<Value, String> {
    let pairs = [
        ("${PROJECT}", &v.project),
        ("${REGION}", &v.region),
        ("${JOB_NAME}", &v.job),
        ("${TOPIC}", &v.topic_id),
        ("${WHATSAPP_HOSTNAME}", &v.whatsapp_hostname),
        ("${WHATSAPP_USERNAME}", &v.whatsapp_username),
        ("${PASSWORD_SECRET}", &v.password_secret),
        ("${VM}", &v.vm),
        ("${ZONE}", &v.zone),
        ("${TIME_ZONE}", &v.time_zone),
    ];
    for (name, value) in pairs {
        if value.is_empty() || value.contains(['"', '\\', '\n', '\r']) {
            return Err(format!(
                "scheduler.yaml: {name} would be {value:?}, which cannot stand in a double-quoted YAML string"
            ));
        }
    }
    // Substitute line by line, leaving comments alone (they show placeholders as examples).
    let mut text = String::with_capacity(template.len());
    for line in template.lines() {
        if line.trim_start().starts_with('#') {
            text.push_str(line);
        } else {
            let mut l = line.to_string();
            for (name, value) in pairs {
                l = l.replace(name, value);
            }
            if let Some(start) = l.find("${") {
                let end = l[start..].find('}').map_or(l.len(), |e| start + e + 1);
                return Err(format!(
                    "scheduler.yaml: unknown placeholder {}",
                    &l[start..end]
                ));
            }
            text.push_str(&l);
        }
        text.push('\n');
    }
    let mut job: Value = serde_norway::from_str(&text)
        .map_err(|e| format!("scheduler.yaml: not valid YAML: {e}"))?;
    let target = job
        .get_mut("pubsubTarget")
        .and_then(Value::as_object_mut)
        .ok_or("scheduler.yaml: no pubsubTarget mapping")?;
    let payload = target
        .remove("payload")
        .ok_or("scheduler.yaml: pubsubTarget has no payload")?;
    let data = serde_json::to_vec(&payload).map_err(|e| e.to_string())?;
    // What the keepalive will do with it: refuse a template whose payload it would refuse.
    Payload::parse(&data)
        .map_err(|e| format!("scheduler.yaml: the rendered payload is not valid: {e}"))?;
    target.insert("data".into(), Value::String(STANDARD.encode(&data)));
    Ok(job)
}

/// The job's fields compared as they are (update-mask names).
const PLAIN_JOB_FIELDS: [&str; 4] = ["schedule", "timeZone", "description", "attemptDeadline"];

/// Every field of the job this step owns (update-mask names).
pub const JOB_FIELDS: [&str; 6] = [
    PLAIN_JOB_FIELDS[0],
    PLAIN_JOB_FIELDS[1],
    PLAIN_JOB_FIELDS[2],
    PLAIN_JOB_FIELDS[3],
    "pubsubTarget",
    "retryConfig",
];

/// How an existing job differs from the rendered one: (update-mask field, in words) per
/// difference; empty when as wanted.
pub fn job_differences(have: &Value, want: &Value) -> Vec<(&'static str, String)> {
    let mut d = Vec::new();
    for field in PLAIN_JOB_FIELDS {
        let (h, w) = (&have[field], &want[field]);
        let optional = matches!(field, "description" | "attemptDeadline");
        if !w.is_null() && h != w && !(optional && h.is_null()) {
            let same_duration = field == "attemptDeadline" && duration_s(h) == duration_s(w);
            if !same_duration {
                d.push((field, format!("{field} is {}, wanted {}", show(h), show(w))));
            }
        }
    }
    let (ht, wt) = (&have["pubsubTarget"], &want["pubsubTarget"]);
    let decoded = |t: &Value| decoded_payload(t).unwrap_or(Value::Null);
    let attrs = |t: &Value| t["attributes"].as_object().cloned().unwrap_or_default();
    if ht["topicName"] != wt["topicName"] || decoded(ht) != decoded(wt) || attrs(ht) != attrs(wt) {
        d.push((
            "pubsubTarget",
            format!(
                "publishes {} to {}, wanted {} to {}",
                redacted(&decoded(ht)),
                show(&ht["topicName"]),
                redacted(&decoded(wt)),
                show(&wt["topicName"])
            ),
        ));
    }
    let retries = |v: &Value| v["retryConfig"]["retryCount"].as_i64().unwrap_or(0);
    if retries(have) != retries(want) {
        d.push((
            "retryConfig",
            format!("retryCount is {}, wanted {}", retries(have), retries(want)),
        ));
    }
    d
}

/// The JSON payload inside a `pubsubTarget`'s `data`.
fn decoded_payload(target: &Value) -> Option<Value> {
    target["data"]
        .as_str()
        .and_then(|d| STANDARD.decode(d).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// A payload for printing: every password field's value replaced.
fn redacted(payload: &Value) -> Value {
    let mut p = payload.clone();
    if let Some(map) = p.as_object_mut() {
        for (k, v) in map.iter_mut() {
            if k.to_ascii_lowercase().contains("password") && !k.ends_with("Secret") {
                *v = json!("<redacted>");
            }
        }
    }
    p
}

/// `want` with the payload fields an existing job carries that the template does not set
/// (SMTP settings added by hand, say) kept; a clear `whatsAppPassword` is never kept: the
/// template's secret reference replaces it.
pub fn keep_extra_payload_fields(have: &Value, want: &Value) -> Value {
    let (Some(old), Some(new)) = (
        decoded_payload(&have["pubsubTarget"]),
        decoded_payload(&want["pubsubTarget"]),
    ) else {
        return want.clone();
    };
    let (Some(old), Some(mut new)) = (old.as_object().cloned(), new.as_object().cloned()) else {
        return want.clone();
    };
    for (k, v) in old {
        if k != "whatsAppPassword" && !new.contains_key(&k) {
            new.insert(k, v);
        }
    }
    let mut out = want.clone();
    let data = serde_json::to_vec(&Value::Object(new)).expect("JSON");
    out["pubsubTarget"]["data"] = Value::String(STANDARD.encode(data));
    out
}

fn pubsub_err(ctx: &Ctx, resource: &str) -> impl Fn(google_cloud_pubsub::Error) -> StepError {
    let command = ctx.command;
    let resource = resource.to_string();
    move |e| StepError::Google {
        resource: resource.clone(),
        command,
        source: google_error(&e),
    }
}

pub async fn run(ctx: &mut Ctx) -> Result<(), StepError> {
    let k = KeepaliveNames::of(ctx);
    let n = ctx.names();
    println!(
        "keepalive: service {} in {}, topic {}, job {}",
        k.service, k.region, k.topic, k.job
    );

    // What the job's payload names must exist: the address and the password (step 3).
    let ip = address::read(ctx)
        .await?
        .and_then(|a| a["address"].as_str().map(str::to_string));
    let password_exists = ctx
        .cloud
        .secrets
        .version_exists(&k.password_version, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(format!("secret {}", n.admin_password_secret)))?;
    let mut blocked = Vec::new();
    if ip.is_none() {
        blocked.push(format!(
            "the static address {} does not exist yet: run `provisioner vm` first",
            n.address
        ));
    }
    if !password_exists {
        blocked.push(format!(
            "the WhatsApp password secret {} does not exist yet: run `provisioner whatsapp` first",
            n.admin_password_secret
        ));
    }
    if !blocked.is_empty() && !ctx.dry_run {
        return Err(StepError::failed(
            format!("Cloud Scheduler job {}", k.job),
            blocked.join("; "),
        ));
    }

    let topics = ctx
        .cloud
        .pubsub
        .topic_admin()
        .await
        .map_err(ctx.google("Pub/Sub client"))?;
    let subs = ctx
        .cloud
        .pubsub
        .subscription_admin()
        .await
        .map_err(ctx.google("Pub/Sub client"))?;

    ensure_topic(ctx, &topics, &k.topic).await?;
    ensure_topic(ctx, &topics, &k.dead_letter_topic).await?;
    if let Some(events) = k.own_events_topic() {
        ensure_topic(ctx, &topics, events).await?;
    }
    let url = ensure_service(ctx, &k).await?;
    ensure_invoker(ctx, &k).await?;
    ensure_subscription(
        ctx,
        &subs,
        "dead-letter subscription",
        dead_letter_subscription_body(&k),
    )
    .await?;
    match &url {
        Some(url) => {
            ensure_subscription(ctx, &subs, "push subscription", push_subscription_body(&k, url))
                .await?
        }
        None => ctx.report.add(
            "push subscription",
            &k.subscription,
            Action::WouldCreate,
            Some(format!(
                "to the service's URL with an OIDC token for {}, ack deadline {ACK_DEADLINE_S} s, retention {RETENTION_S} s, dead letters to {} after {MAX_DELIVERY_ATTEMPTS} attempts",
                k.invoker, k.dead_letter_topic
            )),
        ),
    }

    // The grants first: a job this step cannot fix (DISABLED) stops it, and what dead
    // letters and events need should be in place all the same.
    ensure_grants(ctx, &k).await?;
    match ip {
        Some(ip) if password_exists => ensure_job(ctx, &k, &ip).await?,
        _ => ctx.report.add(
            "Cloud Scheduler job",
            &k.job,
            Action::Blocked(blocked.join("; ")),
            None,
        ),
    }
    Ok(())
}

async fn ensure_topic(ctx: &mut Ctx, topics: &TopicAdmin, name: &str) -> Result<(), StepError> {
    let resource = format!("Pub/Sub topic {name}");
    let err = pubsub_err(ctx, &resource);
    match topics.get_topic().set_topic(name).send().await {
        Ok(_) => {
            ctx.report.add("Pub/Sub topic", name, Action::Exists, None);
            return Ok(());
        }
        Err(e) if google_error(&e).is_not_found() => {}
        Err(e) => return Err(err(e)),
    }
    if ctx.dry_run {
        ctx.report
            .add("Pub/Sub topic", name, Action::WouldCreate, None);
        return Ok(());
    }
    let topic = Topic::new()
        .set_name(name)
        .set_labels([("managed-by", "whatsapp-provisioner")]);
    match topics.create_topic().with_request(topic).send().await {
        Ok(_) => ctx.report.add("Pub/Sub topic", name, Action::Created, None),
        Err(e) if google_error(&e).is_already_exists() => {
            ctx.report.add("Pub/Sub topic", name, Action::Adopted, None)
        }
        Err(e) => return Err(err(e)),
    }
    Ok(())
}

/// The service, created or brought to the spec; its URL once it has one (`None` only under
/// `--dry-run` when it does not exist yet).
async fn ensure_service(ctx: &mut Ctx, k: &KeepaliveNames) -> Result<Option<String>, StepError> {
    const KIND: &str = "Cloud Run service";
    let resource = format!("{KIND} {}", k.service_name());
    let want = service_body(k);
    let run = &ctx.cloud.run;
    let existing = run
        .get_service(&k.project, &k.region, &k.service, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&resource))?;
    let wait = ctx.cloud.timeout(Duration::from_secs(600));
    let (service, action) = match existing {
        Some(have) => {
            let mut diffs = service_differences(&have, &want);
            // A latest revision that failed (an image pushed only after the deployment,
            // say) is deployed again. An unchanged template makes no new revision, so the
            // new one is named.
            let mut want = want;
            if let Some(why) = failed_deployment(&have) {
                let again = if ctx.dry_run {
                    "would deploy again"
                } else {
                    "deployed again"
                };
                diffs.push(format!("its latest revision failed ({why}): {again}"));
                want["template"]["revision"] = json!(fresh_revision_name(&k.service));
            }
            if diffs.is_empty() {
                (have, Action::Exists)
            } else if ctx.dry_run {
                (have, Action::WouldUpdate(diffs.join("; ")))
            } else {
                let op = run
                    .update_service(
                        &k.project,
                        &k.region,
                        &k.service,
                        &want,
                        Some(ctx.call_deadline()),
                    )
                    .await
                    .map_err(ctx.google(&resource))?;
                eprintln!("  updating {resource} (operation {})", op.name);
                run.finish(op, tokio::time::Instant::now() + wait)
                    .await
                    .map_err(ctx.google(&resource))?;
                let have = get_service_or_fail(ctx, k, &resource).await?;
                (have, Action::Updated(diffs.join("; ")))
            }
        }
        None if ctx.dry_run => {
            ctx.report.add(
                KIND,
                &k.service,
                Action::WouldCreate,
                Some(format!(
                    "{} with {MEMORY}, request timeout {REQUEST_TIMEOUT_S} s, runs as {}, invokable only by {}",
                    k.image, k.service_account, k.invoker
                )),
            );
            return Ok(None);
        }
        None => {
            let action = match run
                .create_service(
                    &k.project,
                    &k.region,
                    &k.service,
                    &want,
                    Some(ctx.call_deadline()),
                )
                .await
            {
                Ok(op) => {
                    eprintln!(
                        "  creating {resource} (operation {}); this takes a minute or two",
                        op.name
                    );
                    run.finish(op, tokio::time::Instant::now() + wait)
                        .await
                        .map_err(ctx.google(&resource))?;
                    Action::Created
                }
                Err(e) if e.is_already_exists() => Action::Adopted,
                Err(e) => return Err(ctx.google(&resource)(e)),
            };
            let have = get_service_or_fail(ctx, k, &resource).await?;
            let mut diffs = service_differences(&have, &want);
            // Someone else's create that failed: the next run deploys it again.
            if let Some(why) = failed_deployment(&have).filter(|_| action == Action::Adopted) {
                diffs.push(format!(
                    "its latest revision failed ({why}): run `provisioner keepalive` again to deploy it again"
                ));
            }
            let action = if diffs.is_empty() || action == Action::Created {
                action
            } else {
                Action::Differs(diffs)
            };
            (have, action)
        }
    };
    let url = service
        .get("uri")
        .and_then(Value::as_str)
        .map(str::to_string);
    ctx.report.add(KIND, &k.service, action, url.clone());
    if url.is_none() && !ctx.dry_run {
        return Err(StepError::failed(
            resource,
            match failed_deployment(&service) {
                Some(why) => format!("it has never been ready: its latest revision failed ({why}); run `provisioner keepalive` again to deploy it again"),
                None => "the service has no URL yet (still deploying?); run `provisioner keepalive` again in a minute".into(),
            },
        ));
    }
    Ok(url)
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

async fn get_service_or_fail(
    ctx: &Ctx,
    k: &KeepaliveNames,
    resource: &str,
) -> Result<Value, StepError> {
    ctx.cloud
        .run
        .get_service(&k.project, &k.region, &k.service, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(resource))?
        .ok_or_else(|| {
            StepError::failed(
                resource,
                "not found right after it was created; run `provisioner keepalive` again",
            )
        })
}

async fn ensure_invoker(ctx: &mut Ctx, k: &KeepaliveNames) -> Result<(), StepError> {
    const KIND: &str = "run.invoker binding";
    let member = format!("serviceAccount:{}", k.invoker);
    let resource = format!("IAM policy of Cloud Run service {}", k.service);
    let exists = ctx
        .report
        .lines
        .iter()
        .any(|l| l.kind == "Cloud Run service" && !matches!(l.action, Action::WouldCreate));
    if !exists {
        ctx.report.add(
            KIND,
            &member,
            Action::WouldCreate,
            Some("the only invoker; no public access".into()),
        );
        return Ok(());
    }
    let policy = match ctx
        .cloud
        .run
        .get_iam_policy(&k.project, &k.region, &k.service, Some(ctx.call_deadline()))
        .await
    {
        Ok(p) => p,
        // An endpoint that serves only setIamPolicy: start from an empty policy (the service
        // was just read, so a 404 here is about the method, not the service).
        Err(e) if matches!(e.status(), Some(404 | 405 | 501)) => {
            tracing::warn!(error = %e, "getIamPolicy not served; setting the invoker binding on an empty policy");
            json!({})
        }
        Err(e) => return Err(ctx.google(&resource)(e)),
    };
    match invoker_policy(&policy, &member) {
        None => ctx.report.add(
            KIND,
            &member,
            Action::Exists,
            Some("no public access".into()),
        ),
        Some((_, changes)) if ctx.dry_run => {
            ctx.report
                .add(KIND, &member, Action::WouldUpdate(changes.join("; ")), None)
        }
        Some((new, changes)) => {
            ctx.cloud
                .run
                .set_iam_policy(
                    &k.project,
                    &k.region,
                    &k.service,
                    &new,
                    Some(ctx.call_deadline()),
                )
                .await
                .map_err(ctx.google(&resource))?;
            ctx.report
                .add(KIND, &member, Action::Updated(changes.join("; ")), None);
        }
    }
    Ok(())
}

async fn ensure_subscription(
    ctx: &mut Ctx,
    subs: &SubscriptionAdmin,
    kind: &'static str,
    want: Value,
) -> Result<(), StepError> {
    let name = want["name"].as_str().unwrap_or_default().to_string();
    let resource = format!("Pub/Sub {kind} {name}");
    let err = pubsub_err(ctx, &resource);
    let decode = |v: &Value| -> Result<Subscription, StepError> {
        serde_json::from_value(v.clone())
            .map_err(|e| StepError::failed(resource.clone(), format!("subscription spec: {e}")))
    };
    let existing = match subs.get_subscription().set_subscription(&name).send().await {
        Ok(s) => Some(s),
        Err(e) if google_error(&e).is_not_found() => None,
        Err(e) => return Err(err(e)),
    };
    let existing = match existing {
        Some(s) => s,
        None if ctx.dry_run => {
            ctx.report
                .add(kind, &name, Action::WouldCreate, Some(summary(&want)));
            return Ok(());
        }
        None => match subs
            .create_subscription()
            .with_request(decode(&want)?)
            .send()
            .await
        {
            Ok(_) => {
                ctx.report
                    .add(kind, &name, Action::Created, Some(summary(&want)));
                return Ok(());
            }
            Err(e) if google_error(&e).is_already_exists() => subs
                .get_subscription()
                .set_subscription(&name)
                .send()
                .await
                .map_err(&err)?,
            Err(e) => return Err(err(e)),
        },
    };
    let have = serde_json::to_value(&existing)
        .map_err(|e| StepError::failed(resource.clone(), e.to_string()))?;
    if have["topic"] != want["topic"] {
        ctx.report.add(
            kind,
            &name,
            Action::Differs(vec![format!(
                "it is attached to {}, wanted {} (a subscription cannot change topic: delete it and run again)",
                show(&have["topic"]),
                show(&want["topic"])
            )]),
            None,
        );
        return Ok(());
    }
    let diffs = subscription_differences(&have, &want);
    if diffs.is_empty() {
        ctx.report
            .add(kind, &name, Action::Exists, Some(summary(&want)));
        return Ok(());
    }
    let words = diffs
        .iter()
        .map(|(_, w)| w.clone())
        .collect::<Vec<_>>()
        .join("; ");
    if ctx.dry_run {
        ctx.report
            .add(kind, &name, Action::WouldUpdate(words), None);
        return Ok(());
    }
    let mask = diffs.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(",");
    let request: UpdateSubscriptionRequest = serde_json::from_value(json!({
        "subscription": want,
        "updateMask": mask,
    }))
    .map_err(|e| StepError::failed(resource.clone(), format!("update request: {e}")))?;
    subs.update_subscription()
        .with_request(request)
        .send()
        .await
        .map_err(&err)?;
    ctx.report.add(kind, &name, Action::Updated(words), None);
    Ok(())
}

/// One topic- or subscription-level grant this step makes.
struct Grant<'a> {
    kind: &'static str,
    resource: &'a str,
    role: &'static str,
    /// `None`: Pub/Sub's service agent of the project (its e-mail needs the project number).
    member: Option<String>,
    /// Who it is, in words.
    who: &'static str,
}

/// The grants the step's resources need to work:
/// - dead-lettering: Pub/Sub's own service agent publishes to the dead-letter topic and
///   acknowledges on the subscription it takes messages from;
/// - events: the service's account publishes to the events topic (when it is in this
///   project; a topic elsewhere is its owner's to grant).
async fn ensure_grants(ctx: &mut Ctx, k: &KeepaliveNames) -> Result<(), StepError> {
    let mut grants = vec![
        Grant {
            kind: "dead-letter grant",
            resource: &k.dead_letter_topic,
            role: "roles/pubsub.publisher",
            member: None,
            who: "the Pub/Sub service agent",
        },
        Grant {
            kind: "dead-letter grant",
            resource: &k.subscription,
            role: "roles/pubsub.subscriber",
            member: None,
            who: "the Pub/Sub service agent",
        },
    ];
    match (k.own_events_topic(), k.events_topic.as_deref()) {
        (Some(events), _) => {
            grants.push(Grant {
                kind: "events grant",
                resource: events,
                role: "roles/pubsub.publisher",
                member: Some(format!("serviceAccount:{}", k.service_account)),
                who: "the service's account",
            });
        }
        // Another project's topic is its owner's to grant; without the grant every event
        // is refused (403), so say what to run there.
        (None, Some(events)) => {
            let (project, topic) = match events.split('/').collect::<Vec<_>>()[..] {
                ["projects", p, "topics", t] => (p, t),
                _ => ("PROJECT", events),
            };
            ctx.report.add(
                "events grant",
                events,
                Action::ByHand(format!(
                    "the topic is in project {project}: gcloud pubsub topics add-iam-policy-binding {topic} --project={project} --member=serviceAccount:{} --role=roles/pubsub.publisher",
                    k.service_account
                )),
                None,
            );
        }
        (None, None) => {}
    }
    let planned = |name: &str| {
        ctx.report
            .lines
            .iter()
            .any(|l| l.name == name && l.action == Action::WouldCreate)
    };
    if grants.iter().any(|g| planned(g.resource)) {
        for g in &grants {
            ctx.report.add(
                g.kind,
                g.resource,
                Action::WouldCreate,
                Some(format!("{} for {}", g.role, g.who)),
            );
        }
        return Ok(());
    }
    // An endpoint without IAM (the Pub/Sub emulator) or without projects.get: the grants
    // cannot be made here; say so and how to make them by hand, and go on.
    let unsupported = |e: &shared::google::GoogleError| matches!(e.status(), Some(404 | 405 | 501));
    let by_hand = |ctx: &mut Ctx, why: String, grants: &[Grant]| {
        for g in grants {
            let member = g.member.clone().unwrap_or_else(|| {
                "serviceAccount:service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com".into()
            });
            ctx.report.add(
                g.kind,
                g.resource,
                Action::ByHand(format!(
                    "{why}; grant it by hand: gcloud pubsub {} add-iam-policy-binding {} --member={member} --role={}",
                    if g.resource.contains("/topics/") { "topics" } else { "subscriptions" },
                    g.resource.rsplit('/').next().unwrap_or(g.resource),
                    g.role,
                )),
                None,
            );
        }
    };
    let iam = ctx
        .cloud
        .pubsub
        .iam()
        .await
        .map_err(ctx.google("Pub/Sub client"))?;
    let mut policies = Vec::new();
    for g in &grants {
        match iam.get_iam_policy().set_resource(g.resource).send().await {
            Ok(p) => policies.push(p),
            Err(e) if unsupported(&google_error(&e)) => {
                by_hand(
                    ctx,
                    format!("this Pub/Sub endpoint has no IAM ({})", google_error(&e)),
                    &grants,
                );
                return Ok(());
            }
            Err(e) => return Err(pubsub_err(ctx, &format!("IAM policy of {}", g.resource))(e)),
        }
    }
    let number = match ctx
        .cloud
        .compute
        .project_number(&k.project, Some(ctx.call_deadline()))
        .await
    {
        Ok(n) => n,
        Err(e) if unsupported(&e) => {
            by_hand(
                ctx,
                format!("the project number could not be read ({e})"),
                &grants,
            );
            return Ok(());
        }
        Err(e) => return Err(ctx.google(format!("project {}", k.project))(e)),
    };
    let agent = format!("serviceAccount:service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com");
    for (g, policy) in grants.iter().zip(policies) {
        let member = g.member.clone().unwrap_or_else(|| agent.clone());
        let what = format!("IAM policy of {}", g.resource);
        let err = pubsub_err(ctx, &what);
        let have = serde_json::to_value(&policy)
            .map_err(|e| StepError::failed(what.clone(), e.to_string()))?;
        let Some(new) = with_member(&have, g.role, &member) else {
            ctx.report.add(
                g.kind,
                g.resource,
                Action::Exists,
                Some(format!("{} for {member}", g.role)),
            );
            continue;
        };
        if ctx.dry_run {
            ctx.report.add(
                g.kind,
                g.resource,
                Action::WouldUpdate(format!("{} for {member}", g.role)),
                None,
            );
            continue;
        }
        let new: google_cloud_iam_v1::model::Policy = serde_json::from_value(new)
            .map_err(|e| StepError::failed(what.clone(), format!("policy: {e}")))?;
        iam.set_iam_policy()
            .set_resource(g.resource)
            .set_policy(new)
            .send()
            .await
            .map_err(&err)?;
        ctx.report.add(
            g.kind,
            g.resource,
            Action::Updated(format!("{} granted to {member}", g.role)),
            None,
        );
    }
    Ok(())
}

fn summary(sub: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(e) = sub["pushConfig"]["pushEndpoint"].as_str() {
        parts.push(format!(
            "push to {e} with an OIDC token for {}",
            show(&sub["pushConfig"]["oidcToken"]["serviceAccountEmail"])
        ));
    } else {
        parts.push("pull".to_string());
    }
    parts.push(format!(
        "ack deadline {} s",
        show(&sub["ackDeadlineSeconds"])
    ));
    parts.push(format!(
        "retention {}",
        show(&sub["messageRetentionDuration"])
    ));
    if let Some(t) = sub["deadLetterPolicy"]["deadLetterTopic"].as_str() {
        parts.push(format!(
            "dead letters to {t} after {} attempts",
            show(&sub["deadLetterPolicy"]["maxDeliveryAttempts"])
        ));
    }
    parts.join(", ")
}

async fn ensure_job(ctx: &mut Ctx, k: &KeepaliveNames, ip: &str) -> Result<(), StepError> {
    const KIND: &str = "Cloud Scheduler job";
    let resource = format!("{KIND} {}", k.job_name());
    let values = JobValues {
        project: k.project.clone(),
        region: k.region.clone(),
        job: k.job.clone(),
        topic_id: ctx.cfg.keepalive.topic.clone(),
        whatsapp_hostname: ip.to_string(),
        whatsapp_username: "admin".into(),
        password_secret: k.password_version.clone(),
        vm: ctx.names().vm,
        zone: ctx.cfg.zone.clone(),
        time_zone: "Etc/UTC".into(),
    };
    let want =
        render_job(SCHEDULER_TEMPLATE, &values).map_err(|e| StepError::failed(&resource, e))?;
    let sched = &ctx.cloud.scheduler;
    let existing = sched
        .get_job(&k.project, &k.region, &k.job, Some(ctx.call_deadline()))
        .await
        .map_err(ctx.google(&resource))?;
    let detail = Some(format!(
        "{} to {}, password from {}",
        show(&want["schedule"]),
        k.topic,
        k.password_version
    ));
    let have = match existing {
        Some(have) => have,
        None if ctx.dry_run => {
            ctx.report.add(KIND, &k.job, Action::WouldCreate, detail);
            return Ok(());
        }
        None => match sched
            .create_job(&k.project, &k.region, &want, Some(ctx.call_deadline()))
            .await
        {
            Ok(_) => {
                ctx.report.add(KIND, &k.job, Action::Created, detail);
                return Ok(());
            }
            Err(e) if e.is_already_exists() => sched
                .get_job(&k.project, &k.region, &k.job, Some(ctx.call_deadline()))
                .await
                .map_err(ctx.google(&resource))?
                .ok_or_else(|| {
                    StepError::failed(
                        &resource,
                        "answered ALREADY_EXISTS, then not found; run `provisioner keepalive` again",
                    )
                })?,
            Err(e) => return Err(ctx.google(&resource)(e)),
        },
    };
    let want = keep_extra_payload_fields(&have, &want);
    let mut diffs = job_differences(&have, &want);
    let state = have["state"].as_str().unwrap_or("ENABLED");
    if state == "DISABLED" {
        let how = "Cloud Scheduler disabled the job after errors (state DISABLED): look at its last attempt in the console, delete it (gcloud scheduler jobs delete) and run `provisioner keepalive` again to create it anew";
        if ctx.dry_run {
            ctx.report
                .add(KIND, &k.job, Action::ByHand(how.into()), None);
            return Ok(());
        }
        return Err(StepError::failed(&resource, how));
    }
    let (written, resumed) = if ctx.dry_run {
        ("would be written again", "would resume")
    } else {
        ("written again", "resumed")
    };
    // A failed update leaves the job in UPDATE_FAILED until an update succeeds: write every
    // field this step owns again.
    if state == "UPDATE_FAILED" && diffs.is_empty() {
        diffs = JOB_FIELDS
            .iter()
            .map(|f| (*f, format!("{f} {written} after a failed update")))
            .collect();
    }
    // A paused job is a keepalive that does not run: this step is asked to make it run.
    let paused = (state == "PAUSED").then(|| {
        format!(
            "paused (last changed {}): {resumed}",
            have["userUpdateTime"]
                .as_str()
                .unwrap_or("at an unknown time")
        )
    });
    if diffs.is_empty() && paused.is_none() {
        ctx.report.add(KIND, &k.job, Action::Exists, detail);
        return Ok(());
    }
    let words = diffs
        .iter()
        .map(|(_, w)| w.clone())
        .chain(paused.clone())
        .collect::<Vec<_>>()
        .join("; ");
    if ctx.dry_run {
        ctx.report
            .add(KIND, &k.job, Action::WouldUpdate(words), None);
        return Ok(());
    }
    if !diffs.is_empty() {
        let mask = diffs.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(",");
        ctx.cloud
            .scheduler
            .patch_job(
                &k.project,
                &k.region,
                &k.job,
                &want,
                &mask,
                Some(ctx.call_deadline()),
            )
            .await
            .map_err(ctx.google(&resource))?;
    }
    if paused.is_some() {
        let sched = &ctx.cloud.scheduler;
        let deadline = Some(ctx.call_deadline());
        if let Err(e) = sched
            .resume_job(&k.project, &k.region, &k.job, deadline)
            .await
        {
            // Refused because it is no longer paused (a retried resume whose first attempt
            // went through, or someone else): fine when it is enabled now.
            let now = sched
                .get_job(&k.project, &k.region, &k.job, deadline)
                .await
                .map_err(ctx.google(&resource))?;
            if now.as_ref().map(|j| &j["state"]) != Some(&json!("ENABLED")) {
                return Err(ctx.google(&resource)(e));
            }
        }
    }
    ctx.report.add(KIND, &k.job, Action::Updated(words), detail);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> JobValues {
        JobValues {
            project: "acme-prod".into(),
            region: "europe-west3".into(),
            job: "keepalive-whatsapp-4915112345678".into(),
            topic_id: "whatsapp-keepalive".into(),
            whatsapp_hostname: "34.89.1.2".into(),
            whatsapp_username: "admin".into(),
            password_secret:
                "projects/acme-prod/secrets/whatsapp-4915112345678-admin-password/versions/latest"
                    .into(),
            vm: "whatsapp-4915112345678".into(),
            zone: "europe-west3-c".into(),
            time_zone: "Etc/UTC".into(),
        }
    }

    #[test]
    fn the_template_renders_into_a_job_with_a_valid_payload() {
        let job = render_job(SCHEDULER_TEMPLATE, &values()).unwrap();
        assert_eq!(
            job["name"],
            "projects/acme-prod/locations/europe-west3/jobs/keepalive-whatsapp-4915112345678"
        );
        assert_eq!(job["schedule"], "*/5 * * * *");
        assert_eq!(job["timeZone"], "Etc/UTC");
        assert_eq!(
            job["pubsubTarget"]["topicName"],
            "projects/acme-prod/topics/whatsapp-keepalive"
        );
        assert!(job["pubsubTarget"].get("payload").is_none());
        let data = STANDARD
            .decode(job["pubsubTarget"]["data"].as_str().unwrap())
            .unwrap();
        let payload: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(payload["whatsAppHostname"], "34.89.1.2");
        assert_eq!(
            payload["whatsAppPasswordSecret"],
            "projects/acme-prod/secrets/whatsapp-4915112345678-admin-password/versions/latest"
        );
        assert!(payload.get("whatsAppPassword").is_none());
        let p = Payload::parse(&data).unwrap();
        assert_eq!(p.vm, "whatsapp-4915112345678");
        assert_eq!(job["retryConfig"]["retryCount"], 0);
        assert!(job_differences(&job, &job).is_empty());
    }

    #[test]
    fn a_value_that_breaks_the_yaml_is_refused() {
        let mut v = values();
        v.whatsapp_hostname = "34.89.1.2\" evil: \"x".into();
        assert!(render_job(SCHEDULER_TEMPLATE, &v)
            .unwrap_err()
            .contains("${WHATSAPP_HOSTNAME}"));
        let mut v = values();
        v.vm = String::new();
        assert!(render_job(SCHEDULER_TEMPLATE, &v).is_err());
        let e = render_job("name: \"${NOPE}\"\n", &values()).unwrap_err();
        assert!(e.contains("${NOPE}"), "{e}");
    }

    #[test]
    fn extra_payload_fields_are_kept_and_passwords_never_printed() {
        let want = render_job(SCHEDULER_TEMPLATE, &values()).unwrap();
        let mut payload = decoded_payload(&want["pubsubTarget"]).unwrap();
        payload["whatsAppPassword"] = json!("clear-text-pw");
        payload["smtpHost"] = json!("smtp.example.com");
        payload["smtpPassword"] = json!("smtp-secret-pw");
        let mut have = want.clone();
        have["pubsubTarget"]["data"] = json!(STANDARD.encode(payload.to_string()));

        let merged = keep_extra_payload_fields(&have, &want);
        let p = decoded_payload(&merged["pubsubTarget"]).unwrap();
        assert_eq!(p["smtpHost"], "smtp.example.com");
        assert_eq!(p["smtpPassword"], "smtp-secret-pw");
        assert!(p.get("whatsAppPassword").is_none(), "{p}");
        assert!(p["whatsAppPasswordSecret"]
            .as_str()
            .unwrap()
            .ends_with("/versions/latest"));

        let d = job_differences(&have, &merged);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            !d[0].1.contains("clear-text-pw") && !d[0].1.contains("smtp-secret-pw"),
            "{}",
            d[0].1
        );
        assert!(d[0].1.contains("<redacted>"), "{}", d[0].1);
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

        let job = render_job(SCHEDULER_TEMPLATE, &values()).unwrap();
        let mut have = job.clone();
        have.as_object_mut().unwrap().remove("attemptDeadline");
        have.as_object_mut().unwrap().remove("description");
        assert!(job_differences(&have, &job).is_empty());
    }

    #[test]
    fn a_changed_payload_or_schedule_is_a_difference() {
        let want = render_job(SCHEDULER_TEMPLATE, &values()).unwrap();
        let mut have = want.clone();
        have["schedule"] = json!("*/10 * * * *");
        let mut v = values();
        v.whatsapp_hostname = "34.89.9.9".into();
        have["pubsubTarget"] = render_job(SCHEDULER_TEMPLATE, &v).unwrap()["pubsubTarget"].clone();
        have["state"] = json!("ENABLED");
        let d = job_differences(&have, &want);
        let fields: Vec<&str> = d.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["schedule", "pubsubTarget"]);
        assert!(d[1].1.contains("34.89.9.9"), "{}", d[1].1);
    }

    fn names() -> KeepaliveNames {
        KeepaliveNames {
            project: "acme-prod".into(),
            region: "europe-west3".into(),
            image: "europe-west3-docker.pkg.dev/acme-prod/keepalive/keepalive:1".into(),
            topic: "projects/acme-prod/topics/whatsapp-keepalive".into(),
            dead_letter_topic: "projects/acme-prod/topics/whatsapp-keepalive-dead-letter".into(),
            subscription: "projects/acme-prod/subscriptions/whatsapp-keepalive-push".into(),
            dead_letter_subscription:
                "projects/acme-prod/subscriptions/whatsapp-keepalive-dead-letter".into(),
            service: "whatsapp-keepalive".into(),
            service_account: "whatsapp-keepalive@acme-prod.iam.gserviceaccount.com".into(),
            invoker: "whatsapp-keepalive-invoker@acme-prod.iam.gserviceaccount.com".into(),
            events_topic: None,
            job: "keepalive-whatsapp-4915112345678".into(),
            password_version: "projects/acme-prod/secrets/s/versions/latest".into(),
        }
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

    #[test]
    fn the_invoker_policy_removes_public_access_and_keeps_the_rest() {
        let member = "serviceAccount:inv@p.iam.gserviceaccount.com";
        let (p, changes) = invoker_policy(&json!({"etag": "BwX"}), member).unwrap();
        assert_eq!(
            p,
            json!({"etag": "BwX", "bindings": [{"role": "roles/run.invoker", "members": [member]}]})
        );
        assert_eq!(changes.len(), 1);
        assert!(invoker_policy(&p, member).is_none());

        let public = json!({"etag": "e", "bindings": [
            {"role": "roles/run.invoker", "members": ["allUsers"]},
            {"role": "roles/run.developer", "members": ["user:ops@acme.com", "allAuthenticatedUsers"]}
        ]});
        let (p, changes) = invoker_policy(&public, member).unwrap();
        assert_eq!(
            p["bindings"],
            json!([
                {"role": "roles/run.developer", "members": ["user:ops@acme.com"]},
                {"role": "roles/run.invoker", "members": [member]}
            ])
        );
        assert_eq!(changes.len(), 3, "{changes:?}");
    }

    #[test]
    fn with_member_adds_once_and_leaves_conditional_bindings_alone() {
        let agent = "serviceAccount:service-1@gcp-sa-pubsub.iam.gserviceaccount.com";
        let conditional = json!({"etag": "BwX", "bindings": [
            {"role": "roles/pubsub.publisher", "members": ["user:a@b.c"], "condition": {"expression": "false"}}
        ]});
        let p = with_member(&conditional, "roles/pubsub.publisher", agent).unwrap();
        assert_eq!(p["bindings"].as_array().unwrap().len(), 2);
        assert_eq!(
            p["bindings"][1],
            json!({"role": "roles/pubsub.publisher", "members": [agent]})
        );
        assert_eq!(p["etag"], "BwX");
        assert!(with_member(&p, "roles/pubsub.publisher", agent).is_none());
        let p2 = with_member(&p, "roles/pubsub.publisher", "user:x@y.z").unwrap();
        assert_eq!(p2["bindings"][1]["members"], json!([agent, "user:x@y.z"]));
    }

    #[test]
    fn subscription_differences_name_update_mask_fields() {
        let k = names();
        let want = push_subscription_body(&k, "https://svc.a.run.app");
        assert!(subscription_differences(&want, &want).is_empty());
        let mut have = want.clone();
        have["ackDeadlineSeconds"] = json!(10);
        have["messageRetentionDuration"] = json!("604800s");
        have["pushConfig"]["pushEndpoint"] = json!("https://old.a.run.app");
        have["expirationPolicy"] = json!({"ttl": "2678400s"});
        let fields: Vec<&str> = subscription_differences(&have, &want)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            [
                "pushConfig",
                "ackDeadlineSeconds",
                "messageRetentionDuration",
                "expirationPolicy"
            ]
        );
        // The crate's model takes the spec as is.
        let sub: Subscription = serde_json::from_value(want.clone()).unwrap();
        let back = serde_json::to_value(&sub).unwrap();
        assert!(subscription_differences(&back, &want).is_empty(), "{back}");
        assert_eq!(back["ackDeadlineSeconds"], 120);
    }
}
