//! What a number's Cloud Scheduler job publishes ([`JobPayload`], by platform) and how the job
//! is rendered from its template ([`render_job`]): `scheduler.yaml` with its placeholders
//! filled in, the payload mapping turned into `pubsubTarget.data` (base64 of compact JSON) and
//! checked the way the keepalive will read it. The payload names the password's Secret
//! Manager version, never the password.
//!
//! A new kind of number (a Cloud API number, say) is a new [`JobPayload`] variant with its
//! template and placeholders; the job resource ([`super::job`]) stays as it is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use shared::payload::AnyPayload;

/// The template of an On-Premises number's job, kept as a file at the top of the repository
/// and read at build time.
pub const SCHEDULER_TEMPLATE: &str = include_str!("../../../scheduler.yaml");

/// The template of a Cloud API number's job (same job name, so a migration rewrites it).
pub const CLOUD_API_TEMPLATE: &str = include_str!("../../../scheduler-cloud-api.yaml");

/// The template of a fleet job (`provisioner fleet`): many Cloud API numbers, one token.
pub const FLEET_TEMPLATE: &str = include_str!("../../../scheduler-fleet.yaml");

/// The most bytes of a job's JSON: Cloud Scheduler takes at most 1 MB per job, about 1 KB of
/// which is its request's overhead (its quotas page); kept well under both. The keepalive
/// then reads the payload in a push envelope (its `data` base64 as in the job) under axum's
/// default request body cap of 2 MiB, which such a job cannot reach.
pub const MAX_JOB_BYTES: usize = 1_000_000 - 8 * 1024;

/// The job's own fields, whatever it publishes.
#[derive(Debug, Clone)]
pub struct JobFields {
    pub project: String,
    /// Cloud Scheduler location.
    pub region: String,
    /// The job's id (`keepalive-whatsapp-4915112345678`).
    pub job: String,
    /// The topic's id (not its full name).
    pub topic_id: String,
    pub time_zone: String,
}

/// What the job publishes, by platform.
#[derive(Debug, Clone)]
pub enum JobPayload {
    /// An On-Premises WhatsApp client on a VM (`keepalive-contract.md`).
    OnPremises(OnPremisesTarget),
    /// A number on Meta's Cloud API (`cloud-api-contract.md`).
    CloudApi(CloudApiTarget),
    /// Many Cloud API numbers with one token (`cloud-api-contract.md`, "Fleet messages").
    Fleet(FleetTarget),
}

/// The Cloud API numbers one fleet job checks: all read with the token in
/// `access_token_secret`, in a stable order.
#[derive(Debug, Clone)]
pub struct FleetTarget {
    pub access_token_secret: String,
    /// Each with the same `access_token_secret`.
    pub numbers: Vec<CloudApiTarget>,
}

impl FleetTarget {
    /// The payload's fields besides `accessTokenSecret`: `numbers`, one entry per number,
    /// and as top-level defaults the optional fields every entry shares (`appId`,
    /// `webhookUrl`), so that a large fleet stays small.
    fn fields(&self) -> Vec<(&'static str, Value)> {
        let mut entries: Vec<Map<String, Value>> = self
            .numbers
            .iter()
            .map(|t| {
                let mut e = Map::new();
                e.insert("phoneNumberId".into(), json!(t.phone_number_id));
                e.insert("wabaId".into(), json!(t.waba_id));
                e.insert("name".into(), json!(t.name));
                for (k, v) in [
                    ("appId", &t.app_id),
                    ("webhookUrl", &t.webhook_url),
                    ("webhookVerifyTokenSecret", &t.webhook_verify_token_secret),
                ] {
                    if !v.is_empty() {
                        e.insert(k.into(), json!(v));
                    }
                }
                e
            })
            .collect();
        let mut out = Vec::new();
        for key in ["appId", "webhookUrl"] {
            let first = entries.first().and_then(|e| e.get(key)).cloned();
            let shared = first.filter(|v| entries.iter().all(|e| e.get(key) == Some(v)));
            if let Some(v) = shared.filter(|_| entries.len() > 1) {
                entries.iter_mut().for_each(|e| {
                    e.remove(key);
                });
                out.push((key, v));
            }
        }
        out.push((
            "numbers",
            Value::Array(entries.into_iter().map(Value::Object).collect()),
        ));
        out
    }
}

/// The Cloud API number a job checks: ids and where its secrets are, never their values.
#[derive(Debug, Clone)]
pub struct CloudApiTarget {
    pub phone_number_id: String,
    pub waba_id: String,
    /// Secret Manager version of the system user's access token.
    pub access_token_secret: String,
    /// The app that must be subscribed; empty: the token's own.
    pub app_id: String,
    pub webhook_url: String,
    /// Secret Manager version of the webhook's verify token.
    pub webhook_verify_token_secret: String,
    /// A label (`+4915112345678`).
    pub name: String,
}

/// The On-Premises client a job keeps alive.
#[derive(Debug, Clone)]
pub struct OnPremisesTarget {
    /// host[:port] or URL of the client's API (`https://<static address>`).
    pub whatsapp_hostname: String,
    /// `sha256:` + 64 hex digits of the client's pinned certificate.
    pub tls_fingerprint: String,
    pub whatsapp_username: String,
    /// The Secret Manager version holding the password.
    pub password_secret: String,
    pub vm: String,
    pub zone: String,
}

impl JobPayload {
    /// The template the job is rendered from.
    pub fn template(&self) -> &'static str {
        match self {
            JobPayload::OnPremises(_) => SCHEDULER_TEMPLATE,
            JobPayload::CloudApi(_) => CLOUD_API_TEMPLATE,
            JobPayload::Fleet(_) => FLEET_TEMPLATE,
        }
    }

    /// The placeholders this payload fills in, beyond the job's own.
    fn placeholders(&self) -> Vec<(&'static str, &str)> {
        match self {
            JobPayload::OnPremises(t) => vec![
                ("${WHATSAPP_HOSTNAME}", t.whatsapp_hostname.as_str()),
                ("${TLS_FINGERPRINT}", &t.tls_fingerprint),
                ("${WHATSAPP_USERNAME}", &t.whatsapp_username),
                ("${PASSWORD_SECRET}", &t.password_secret),
                ("${VM}", &t.vm),
                ("${ZONE}", &t.zone),
            ],
            JobPayload::CloudApi(t) => vec![
                ("${PHONE_NUMBER_ID}", t.phone_number_id.as_str()),
                ("${WABA_ID}", &t.waba_id),
                ("${ACCESS_TOKEN_SECRET}", &t.access_token_secret),
                ("${WEBHOOK_URL}", &t.webhook_url),
                (
                    "${WEBHOOK_VERIFY_TOKEN_SECRET}",
                    &t.webhook_verify_token_secret,
                ),
                ("${NAME}", &t.name),
            ],
            JobPayload::Fleet(t) => vec![("${ACCESS_TOKEN_SECRET}", t.access_token_secret.as_str())],
        }
    }

    /// Payload fields set only when they have a value (no placeholder may be empty).
    /// A fleet's entries are such fields too.
    fn optional_fields(&self) -> Vec<(&'static str, Value)> {
        match self {
            JobPayload::OnPremises(_) => Vec::new(),
            JobPayload::CloudApi(t) if !t.app_id.is_empty() => vec![("appId", json!(t.app_id))],
            JobPayload::CloudApi(_) => Vec::new(),
            JobPayload::Fleet(t) => t.fields(),
        }
    }

    /// Whether `payload` (an existing job's) is of this kind: only then are its extra fields
    /// kept (see [`keep_extra_payload_fields`]).
    pub fn is_kind_of(&self, payload: &Map<String, Value>) -> bool {
        match self {
            JobPayload::OnPremises(_) => payload.contains_key("vm"),
            JobPayload::CloudApi(_) => payload.contains_key("phoneNumberId"),
            JobPayload::Fleet(_) => payload.contains_key("numbers"),
        }
    }

    /// Where its credentials come from, in words (never a secret).
    pub fn describe(&self) -> String {
        match self {
            JobPayload::OnPremises(t) => format!("password from {}", t.password_secret),
            JobPayload::CloudApi(t) => format!(
                "Cloud API number {}, token from {}",
                t.phone_number_id, t.access_token_secret
            ),
            JobPayload::Fleet(t) => format!(
                "{} Cloud API number(s), token from {}",
                t.numbers.len(),
                t.access_token_secret
            ),
        }
    }
}

/// Renders `payload`'s template into the Cloud Scheduler job's JSON.
pub fn render_job(job: &JobFields, payload: &JobPayload) -> Result<Value, String> {
    render_template(payload.template(), job, payload)
}

/// Renders `template` (the text of `scheduler.yaml` or alike): placeholders filled in,
/// `pubsubTarget.payload` turned into `data`.
pub fn render_template(
    template: &str,
    job: &JobFields,
    payload: &JobPayload,
) -> Result<Value, String> {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("${PROJECT}", &job.project),
        ("${REGION}", &job.region),
        ("${JOB_NAME}", &job.job),
        ("${TOPIC}", &job.topic_id),
        ("${TIME_ZONE}", &job.time_zone),
    ];
    pairs.extend(payload.placeholders());
    for (name, value) in &pairs {
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
            for (name, value) in &pairs {
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
    let mut rendered: Value = serde_norway::from_str(&text)
        .map_err(|e| format!("scheduler.yaml: not valid YAML: {e}"))?;
    let target = rendered
        .get_mut("pubsubTarget")
        .and_then(Value::as_object_mut)
        .ok_or("scheduler.yaml: no pubsubTarget mapping")?;
    let mut mapping = target
        .remove("payload")
        .ok_or("scheduler.yaml: pubsubTarget has no payload")?;
    if let Some(m) = mapping.as_object_mut() {
        for (k, v) in payload.optional_fields() {
            m.insert(k.into(), v);
        }
    }
    let data = serde_json::to_vec(&mapping).map_err(|e| e.to_string())?;
    // What the keepalive will do with it: refuse a template whose payload it would refuse.
    AnyPayload::parse(&data)
        .map_err(|e| format!("scheduler.yaml: the rendered payload is not valid: {e}"))?;
    target.insert("data".into(), Value::String(STANDARD.encode(&data)));
    Ok(rendered)
}

/// The JSON payload inside a `pubsubTarget`'s `data`.
pub fn decoded_payload(target: &Value) -> Option<Value> {
    target["data"]
        .as_str()
        .and_then(|d| STANDARD.decode(d).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// A payload for printing: every password field's value replaced.
pub fn redacted(payload: &Value) -> Value {
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

/// `want` with the payload fields an existing job of the same kind carries that the template
/// does not set (SMTP settings added by hand, say) kept; a clear `whatsAppPassword` is never
/// kept: the template's secret reference replaces it.
pub fn keep_extra_payload_fields(have: &Value, want: &Value, kind: &JobPayload) -> Value {
    let (Some(old), Some(new)) = (
        decoded_payload(&have["pubsubTarget"]),
        decoded_payload(&want["pubsubTarget"]),
    ) else {
        return want.clone();
    };
    let (Some(old), Some(mut new)) = (old.as_object().cloned(), new.as_object().cloned()) else {
        return want.clone();
    };
    if !kind.is_kind_of(&old) {
        return want.clone();
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use shared::payload::Payload;

    pub fn job_fields() -> JobFields {
        JobFields {
            project: "acme-prod".into(),
            region: "europe-west3".into(),
            job: "keepalive-whatsapp-4915112345678".into(),
            topic_id: "whatsapp-keepalive".into(),
            time_zone: "Etc/UTC".into(),
        }
    }

    pub fn on_premises() -> OnPremisesTarget {
        OnPremisesTarget {
            whatsapp_hostname: "https://34.89.1.2".into(),
            tls_fingerprint: format!("sha256:{}", "ab".repeat(32)),
            whatsapp_username: "admin".into(),
            password_secret:
                "projects/acme-prod/secrets/whatsapp-4915112345678-admin-password/versions/latest"
                    .into(),
            vm: "whatsapp-4915112345678".into(),
            zone: "europe-west3-c".into(),
        }
    }

    pub fn rendered() -> Value {
        render_job(&job_fields(), &JobPayload::OnPremises(on_premises())).unwrap()
    }

    #[test]
    fn the_template_renders_into_a_job_with_a_valid_payload() {
        let job = rendered();
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
        assert_eq!(payload["whatsAppHostname"], "https://34.89.1.2");
        assert_eq!(
            payload["whatsAppTlsFingerprint"],
            format!("sha256:{}", "ab".repeat(32))
        );
        assert_eq!(
            payload["whatsAppPasswordSecret"],
            "projects/acme-prod/secrets/whatsapp-4915112345678-admin-password/versions/latest"
        );
        assert!(payload.get("whatsAppPassword").is_none());
        let p = Payload::parse(&data).unwrap();
        assert_eq!(p.vm, "whatsapp-4915112345678");
        assert_eq!(job["retryConfig"]["retryCount"], 0);
    }

    pub fn cloud_api() -> CloudApiTarget {
        CloudApiTarget {
            phone_number_id: "106540352242922".into(),
            waba_id: "102290129340398".into(),
            access_token_secret: "projects/acme-prod/secrets/meta-token/versions/latest".into(),
            app_id: String::new(),
            webhook_url: "https://example.loyjoy.com/whatsapp/cloud/webhook".into(),
            webhook_verify_token_secret:
                "projects/acme-prod/secrets/whatsapp-4915112345678-webhook-verify-token/versions/latest"
                    .into(),
            name: "+4915112345678".into(),
        }
    }

    #[test]
    fn the_cloud_api_template_renders_the_contract_payload_under_the_same_job_name() {
        let job = render_job(&job_fields(), &JobPayload::CloudApi(cloud_api())).unwrap();
        assert_eq!(job["name"], rendered()["name"]);
        assert_eq!(job["schedule"], "*/5 * * * *");
        let p = decoded_payload(&job["pubsubTarget"]).unwrap();
        assert_eq!(
            p,
            json!({
                "phoneNumberId": "106540352242922",
                "wabaId": "102290129340398",
                "accessTokenSecret": "projects/acme-prod/secrets/meta-token/versions/latest",
                "webhookUrl": "https://example.loyjoy.com/whatsapp/cloud/webhook",
                "webhookVerifyTokenSecret": "projects/acme-prod/secrets/whatsapp-4915112345678-webhook-verify-token/versions/latest",
                "name": "+4915112345678",
            })
        );
        assert!(matches!(
            AnyPayload::parse(p.to_string().as_bytes()),
            Ok(AnyPayload::CloudApi(_))
        ));
        let mut t = cloud_api();
        t.app_id = "634900000000001".into();
        let job = render_job(&job_fields(), &JobPayload::CloudApi(t)).unwrap();
        assert_eq!(
            decoded_payload(&job["pubsubTarget"]).unwrap()["appId"],
            "634900000000001"
        );
        // A webhook the keepalive would refuse is refused here.
        let mut t = cloud_api();
        t.webhook_url = "http://example.loyjoy.com/hook".into();
        assert!(render_job(&job_fields(), &JobPayload::CloudApi(t)).is_err());
    }

    #[test]
    fn a_value_that_breaks_the_yaml_is_refused() {
        let mut t = on_premises();
        t.whatsapp_hostname = "34.89.1.2\" evil: \"x".into();
        assert!(render_job(&job_fields(), &JobPayload::OnPremises(t))
            .unwrap_err()
            .contains("${WHATSAPP_HOSTNAME}"));
        let mut t = on_premises();
        t.vm = String::new();
        assert!(render_job(&job_fields(), &JobPayload::OnPremises(t)).is_err());
        let e = render_template(
            "name: \"${NOPE}\"\n",
            &job_fields(),
            &JobPayload::OnPremises(on_premises()),
        )
        .unwrap_err();
        assert!(e.contains("${NOPE}"), "{e}");
    }

    #[test]
    fn extra_payload_fields_of_the_same_kind_are_kept_and_a_clear_password_never() {
        let want = rendered();
        let mut payload = decoded_payload(&want["pubsubTarget"]).unwrap();
        payload["whatsAppPassword"] = json!("clear-text-pw");
        payload["smtpHost"] = json!("smtp.example.com");
        let mut have = want.clone();
        have["pubsubTarget"]["data"] = json!(STANDARD.encode(payload.to_string()));
        let kind = JobPayload::OnPremises(on_premises());

        let merged = keep_extra_payload_fields(&have, &want, &kind);
        let p = decoded_payload(&merged["pubsubTarget"]).unwrap();
        assert_eq!(p["smtpHost"], "smtp.example.com");
        assert!(p.get("whatsAppPassword").is_none(), "{p}");

        // Another kind's payload (no `vm`): nothing of it is carried over.
        let mut other = json!({"phoneNumberId": "1", "smtpHost": "smtp.example.com"});
        have["pubsubTarget"]["data"] = json!(STANDARD.encode(other.to_string()));
        assert_eq!(keep_extra_payload_fields(&have, &want, &kind), want);
        other["password"] = json!("x");
        assert_eq!(redacted(&other)["password"], "<redacted>");
    }
}
