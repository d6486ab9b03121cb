//! `scheduler.yaml`: a Cloud Scheduler job every 5 minutes, the password only by reference, and
//! its payload accepted by the real binary.

use crate::common::{World, PASSWORD, USER, VM, ZONE};
use crate::read_root_file;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::{Health, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const PLACEHOLDERS: [&str; 11] = [
    "PROJECT",
    "REGION",
    "JOB_NAME",
    "TOPIC",
    "WHATSAPP_HOSTNAME",
    "TLS_FINGERPRINT",
    "WHATSAPP_USERNAME",
    "PASSWORD_SECRET",
    "VM",
    "ZONE",
    "TIME_ZONE",
];

pub const PAYLOAD_KEYS: [&str; 7] = [
    "whatsAppHostname",
    "whatsAppTlsFingerprint",
    "whatsAppUsername",
    "whatsAppPasswordSecret",
    "vm",
    "zone",
    "project",
];

/// The example number of the README and of the template's own comments.
pub fn example_values() -> BTreeMap<&'static str, String> {
    [
        ("PROJECT", "acme-prod"),
        ("REGION", "europe-west3"),
        ("JOB_NAME", "keepalive-whatsapp-4915112345678"),
        ("TOPIC", "whatsapp-keepalive"),
        ("WHATSAPP_HOSTNAME", "https://34.89.1.2"),
        (
            "TLS_FINGERPRINT",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ),
        ("WHATSAPP_USERNAME", "admin"),
        (
            "PASSWORD_SECRET",
            "projects/acme-prod/secrets/whatsapp-4915112345678-admin-password/versions/latest",
        ),
        ("VM", "whatsapp-4915112345678"),
        ("ZONE", "europe-west3-c"),
        ("TIME_ZONE", "Etc/UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// Fills in every `${NAME}`; panics on one left over.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Value {
    let mut text = template.to_string();
    for (k, v) in values {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    let job: Value = serde_norway::from_str(&text).expect("the rendered job is not YAML");
    let mut left = BTreeSet::new();
    placeholders(&job, &mut left);
    assert!(left.is_empty(), "placeholders left: {left:?}");
    job
}

/// Every `${NAME}` in the keys and string values of `v`.
pub fn placeholders(v: &Value, found: &mut BTreeSet<String>) {
    pub fn scan(s: &str, found: &mut BTreeSet<String>) {
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let end = after.find('}').expect("unclosed ${");
            found.insert(after[..end].to_string());
            rest = &after[end + 1..];
        }
    }
    match v {
        Value::String(s) => scan(s, found),
        Value::Array(a) => a.iter().for_each(|x| placeholders(x, found)),
        Value::Object(o) => {
            for (k, x) in o {
                scan(k, found);
                placeholders(x, found);
            }
        }
        _ => {}
    }
}

pub fn keys(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| keys(x, found)),
        Value::Object(o) => {
            for (k, x) in o {
                found.push(k.clone());
                keys(x, found);
            }
        }
        _ => {}
    }
}

/// The Cloud Scheduler API's `Job` for a rendered template: `pubsubTarget.payload` becomes
/// `pubsubTarget.data`, the base64 of its compact JSON (what the provisioner sends).
pub fn api_job(rendered: &Value) -> Value {
    let mut job = rendered.clone();
    let target = job["pubsubTarget"].as_object_mut().expect("pubsubTarget");
    let payload = target.remove("payload").expect("pubsubTarget.payload");
    target.insert(
        "data".into(),
        json!(STANDARD.encode(serde_json::to_vec(&payload).unwrap())),
    );
    job
}

/// What the job publishes: the decoded `data`.
pub fn published_payload(job: &Value) -> Value {
    let data = job["pubsubTarget"]["data"].as_str().expect("data");
    serde_json::from_slice(&STANDARD.decode(data).expect("data is not base64"))
        .expect("data is not JSON")
}

#[test]
fn scheduler_template_is_a_five_minute_job_with_the_password_by_reference() {
    let template = read_root_file("scheduler.yaml");
    let raw: Value = serde_norway::from_str(&template).expect("scheduler.yaml is not YAML");
    let mut found = BTreeSet::new();
    placeholders(&raw, &mut found);
    let want: BTreeSet<String> = PLACEHOLDERS.iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want, "the template's placeholders");
    assert_eq!(raw["schedule"], "*/5 * * * *");

    let mut all_keys = Vec::new();
    keys(&raw, &mut all_keys);
    assert!(all_keys.iter().any(|k| k == "whatsAppPasswordSecret"));
    for k in &all_keys {
        assert!(
            !k.to_ascii_lowercase().contains("password") || k == "whatsAppPasswordSecret",
            "a clear password field in the template: {k}"
        );
    }
    let payload_keys: BTreeSet<&str> = raw["pubsubTarget"]["payload"]
        .as_object()
        .expect("pubsubTarget.payload")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        payload_keys,
        PAYLOAD_KEYS.into_iter().collect::<BTreeSet<_>>()
    );

    let job = render(&template, &example_values());
    assert_eq!(
        job["name"],
        "projects/acme-prod/locations/europe-west3/jobs/keepalive-whatsapp-4915112345678"
    );
    assert_eq!(
        job["pubsubTarget"]["topicName"],
        "projects/acme-prod/topics/whatsapp-keepalive"
    );
    assert_eq!(job["timeZone"], "Etc/UTC");
    assert_eq!(job["retryConfig"]["retryCount"], 0);
    let deadline = job["attemptDeadline"].as_str().expect("attemptDeadline");
    assert!(
        deadline
            .strip_suffix('s')
            .is_some_and(|n| n.parse::<u32>().is_ok()),
        "{deadline}"
    );
    for (k, v) in job["pubsubTarget"]["attributes"].as_object().unwrap() {
        assert!(v.is_string(), "attribute {k} must be a string: {v}");
    }

    // Minus the documented `payload` → `data` step, the template is an API `Job`.
    let api = api_job(&job);
    let fields: BTreeSet<&str> = api
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let job_fields = [
        "name",
        "description",
        "schedule",
        "timeZone",
        "pubsubTarget",
        "retryConfig",
        "attemptDeadline",
    ];
    assert!(
        fields.is_subset(&job_fields.into_iter().collect()),
        "{fields:?}"
    );
    let target: BTreeSet<&str> = api["pubsubTarget"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        target,
        ["attributes", "data", "topicName"]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    let published = published_payload(&api);
    assert_eq!(published, job["pubsubTarget"]["payload"]);

    // The gcloud command in the comments publishes the same payload on the same schedule.
    let comments: String = template
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(comments.contains("gcloud scheduler jobs create pubsub"));
    assert!(comments.contains(r#"--schedule="*/5 * * * *""#));
    assert!(comments.contains("--time-zone=Etc/UTC"));
    assert!(comments.contains("--max-retry-attempts=0"), "retryCount 0");
    let body = comments
        .split("--message-body='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("--message-body='{...}' in the comments");
    let body: Value = serde_json::from_str(body).expect("--message-body is not JSON");
    assert_eq!(
        body, published,
        "the gcloud example and the template differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_payload_is_accepted_by_the_real_binary() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    let secret = format!("projects/{FAKE_PROJECT}/secrets/whatsapp-4915112345678-admin-password");
    w.g.secrets.put(&secret, PASSWORD);
    // The password from Secret Manager goes only to one of the VM's addresses.
    w.g.compute.set_nat_ip(FAKE_PROJECT, ZONE, VM, "127.0.0.1");
    let mut values = example_values();
    for (k, v) in [
        ("PROJECT", FAKE_PROJECT.to_string()),
        ("WHATSAPP_HOSTNAME", w.wa.host_port()),
        ("WHATSAPP_USERNAME", USER.to_string()),
        ("PASSWORD_SECRET", format!("{secret}/versions/latest")),
        ("VM", VM.to_string()),
        ("ZONE", ZONE.to_string()),
        ("JOB_NAME", format!("keepalive-{VM}")),
    ] {
        values.insert(k, v);
    }
    let job = api_job(&render(&read_root_file("scheduler.yaml"), &values));
    let mut payload = published_payload(&job);
    assert!(payload.get("whatsAppPassword").is_none(), "{payload}");
    // The fake answers plain HTTP: no certificate to pin.
    payload
        .as_object_mut()
        .unwrap()
        .remove("whatsAppTlsFingerprint");

    // Healthy: the password came from Secret Manager and the login worked.
    let run = w.check(&payload, &["--dry-run"]).await;
    let o = run.outcome();
    assert_eq!(run.code, Some(0), "{o} {}", run.stderr);
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert_eq!(
        (&o["vm"], &o["zone"], &o["project"]),
        (&json!(VM), &json!(ZONE), &json!(FAKE_PROJECT))
    );
    assert!(
        w.g.secrets.access_count() >= 1,
        "the password was read from Secret Manager"
    );
    assert_eq!(w.wa.successful_login_count(), 1);

    // Down: the VM, zone and project it names are the instance a reset would hit.
    w.wa.set_health(Health::Single("disconnected"));
    let run = w.check(&payload, &["--dry-run"]).await;
    let o = run.outcome();
    assert_eq!(
        (run.code, o["verdict"].as_str()),
        (Some(1), Some("reset")),
        "{o}"
    );
    assert_eq!(w.resets(), 0, "--dry-run never resets");
}
