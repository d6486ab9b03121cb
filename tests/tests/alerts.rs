//! Alerting (`[alerts]`) through the real `provisioner keepalive` against the fakes, with
//! Cloud Monitoring v3 as `FakeMonitoring`: the log-based policies (`alert`, and `reset` for
//! an On-Premises number) and the e-mail channels are created as documented, a second run
//! writes nothing, drift is patched back with an update mask, a policy without the tool's
//! label is left alone, a dry run writes nothing, and an API that is not enabled is named
//! with the command that enables it. `status` shows the policies and this number's incident.

use keepalive_tests::binaries::{run_provisioner, ProvisionerRun};
use keepalive_tests::{GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const NAME: &str = "whatsapp-4915112345678";
const REGION: &str = "europe-west3";
const IP: &str = "34.89.1.2";
const PINNED_DER: &[u8] = b"the client's self-signed certificate (DER)";
const ALERT_POLICY: &str = "WhatsApp keepalive (whatsapp-keepalive): a number needs a person";
const RESET_POLICY: &str = "WhatsApp keepalive (whatsapp-keepalive): a VM was reset";

struct World {
    g: GoogleFakes,
    env: BTreeMap<String, String>,
    config: PathBuf,
    /// `[alerts] channels`: a Slack channel someone made in the console.
    slack: String,
}

impl World {
    /// An On-Premises number through step 5, `[alerts]` naming a Slack channel and an
    /// address, re-notified every 3 hours.
    async fn new() -> World {
        let g = GoogleFakes::start().await;
        let env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
        let slack = g.monitoring.seed_channel(
            FAKE_PROJECT,
            json!({"type": "slack", "displayName": "#whatsapp-ops", "labels": {"channel_name": "#whatsapp-ops"}, "enabled": true}),
        );
        let config = g.dir().join("number.toml");
        let w = World {
            g,
            env,
            config,
            slack,
        };
        w.write_config("platform = \"onprem\"\n", "renotify = \"3h\"\n");
        w.g.compute
            .seed_address(FAKE_PROJECT, REGION, NAME, Some(IP));
        w.g.secrets.put(
            &format!("projects/{FAKE_PROJECT}/secrets/{NAME}-admin-password"),
            "Stored!AdminPassw0rd-kept-in-Secret-Manager-only",
        );
        w.g.secrets.put(
            &format!("projects/{FAKE_PROJECT}/secrets/{NAME}-tls-certificate"),
            &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, PINNED_DER),
        );
        w
    }

    fn write_config(&self, top: &str, alerts: &str) {
        let text = format!(
            "project = \"{FAKE_PROJECT}\"\nregion = \"{REGION}\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"15112345678\"\n{top}\n[keepalive]\nimage = \"europe-west3-docker.pkg.dev/{FAKE_PROJECT}/keepalive/keepalive:1.0.0\"\n\n[alerts]\nemails = [\"ops@example.com\"]\nchannels = [\"{}\"]\n{alerts}",
            self.slack
        );
        std::fs::write(&self.config, text).unwrap();
    }

    async fn run(&self, args: &[&str]) -> ProvisionerRun {
        let (env, config) = (self.env.clone(), self.config.clone());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_provisioner(&env, &config, &args, Duration::from_secs(120))
        })
        .await
        .unwrap()
    }

    fn policy(&self, display_name: &str) -> Option<Value> {
        self.g
            .monitoring
            .policies(FAKE_PROJECT)
            .into_iter()
            .find(|p| p["displayName"] == display_name)
    }

    fn email_channel(&self) -> Value {
        let channels = self.g.monitoring.channels(FAKE_PROJECT);
        let emails: Vec<&Value> = channels.iter().filter(|c| c["type"] == "email").collect();
        assert_eq!(emails.len(), 1, "{channels:?}");
        emails[0].clone()
    }
}

fn ok(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(0), "{}", run.output());
}

/// The keepalive's outcome lines with this verdict on its service, one incident per number.
fn assert_policy(p: &Value, verdict: &str, kinds: &str, channels: &[String]) {
    let c = &p["conditions"][0]["conditionMatchedLog"];
    assert_eq!(
        c["filter"],
        format!(
            "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"whatsapp-keepalive\" AND {kinds} AND jsonPayload.verdict=\"{verdict}\""
        ),
        "{p}"
    );
    assert_eq!(c["labelExtractors"]["vm"], "EXTRACT(jsonPayload.vm)");
    assert_eq!(
        p["alertStrategy"]["notificationRateLimit"]["period"],
        "10800s"
    );
    assert_eq!(p["alertStrategy"]["autoClose"], "1800s");
    assert_eq!(p["enabled"], true);
    assert_eq!(p["combiner"], "OR");
    assert_eq!(p["userLabels"]["managed-by"], "whatsapp-provisioner");
    assert_eq!(p["documentation"]["mimeType"], "text/markdown");
    let listed: Vec<String> = p["notificationChannels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, channels, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_channels_are_created_then_left_alone() {
    let w = World::new().await;
    let run = w.run(&["keepalive"]).await;
    ok(&run);

    let email = w.email_channel();
    assert_eq!(email["labels"]["email_address"], "ops@example.com");
    assert_eq!(email["userLabels"]["managed-by"], "whatsapp-provisioner");
    let email = email["name"].as_str().unwrap().to_string();
    let channels = [w.slack.clone(), email];
    let alert = w.policy(ALERT_POLICY).expect("the alert policy");
    assert_policy(
        &alert,
        "alert",
        r#"(jsonPayload.kind="onprem" OR jsonPayload.kind="cloud")"#,
        &channels,
    );
    assert_eq!(
        alert["conditions"][0]["conditionMatchedLog"]["labelExtractors"]["phone_number_id"],
        "EXTRACT(jsonPayload.phoneNumberId)"
    );
    let reset = w
        .policy(RESET_POLICY)
        .expect("the reset policy (On-Premises)");
    assert_policy(&reset, "reset", r#"jsonPayload.kind="onprem""#, &channels);
    // What was sent is what the fake keeps: one create each, the Slack channel only read.
    let writes = w.g.monitoring.writes();
    let posts: Vec<String> = writes
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        posts,
        [
            format!("POST /v3/projects/{FAKE_PROJECT}/notificationChannels"),
            format!("POST /v3/projects/{FAKE_PROJECT}/alertPolicies"),
            format!("POST /v3/projects/{FAKE_PROJECT}/alertPolicies"),
        ]
    );
    assert!(run.stdout.contains(ALERT_POLICY), "{}", run.stdout);
    println!(
        "created policy: {}",
        serde_json::to_string_pretty(&writes[1].json().unwrap()).unwrap()
    );

    // Again, the lists a page per item (the client follows `nextPageToken`): nothing is
    // written.
    w.g.monitoring.set_max_page(1);
    w.g.monitoring.clear_requests();
    ok(&w.run(&["keepalive"]).await);
    assert!(
        w.g.monitoring.writes().is_empty(),
        "{:?}",
        w.g.monitoring.writes()
    );
    assert_eq!(w.g.monitoring.policies(FAKE_PROJECT).len(), 2);
    assert_eq!(w.g.monitoring.channels(FAKE_PROJECT).len(), 2);
    let pages =
        w.g.monitoring
            .requests()
            .iter()
            .filter(|r| r.query_param("pageToken").is_some())
            .count();
    assert!(pages >= 2, "the second pages were read: {pages}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_patched_back_and_a_channel_someone_added_is_kept() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let alert = w.policy(ALERT_POLICY).unwrap();
    let name = alert["name"].as_str().unwrap().to_string();
    let pager = w.g.monitoring.seed_channel(
        FAKE_PROJECT,
        json!({"type": "pagerduty", "displayName": "on call", "enabled": true}),
    );
    w.g.monitoring.change_policy(&name, |p| {
        p["enabled"] = json!(false);
        p["alertStrategy"] =
            json!({"notificationRateLimit": {"period": "300s"}, "autoClose": "604800s"});
        p["conditions"][0]["conditionMatchedLog"]["filter"] = json!("severity>=ERROR");
        p["notificationChannels"] = json!([pager]);
    });
    w.g.monitoring.clear_requests();
    let run = w.run(&["keepalive"]).await;
    ok(&run);
    let writes = w.g.monitoring.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[0].path, format!("/v3/{name}"));
    let mask = writes[0].query_param("updateMask").unwrap();
    let mut mask: Vec<&str> = mask.split(',').collect();
    mask.sort();
    assert_eq!(
        mask,
        [
            "alertStrategy",
            "conditions",
            "enabled",
            "notificationChannels"
        ]
    );
    let now = w.policy(ALERT_POLICY).unwrap();
    let email = w.email_channel()["name"].as_str().unwrap().to_string();
    assert_policy(
        &now,
        "alert",
        r#"(jsonPayload.kind="onprem" OR jsonPayload.kind="cloud")"#,
        &[w.slack.clone(), email, pager],
    );
    assert!(run.stdout.contains("updated"), "{}", run.stdout);
    // The reset policy did not drift: untouched.
    assert!(writes
        .iter()
        .all(|r| r.path.ends_with(name.rsplit('/').next().unwrap())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_the_label_is_reported_and_never_changed() {
    let w = World::new().await;
    let theirs = json!({
        "displayName": ALERT_POLICY,
        "conditions": [{"displayName": "theirs", "conditionMatchedLog": {"filter": "severity>=ERROR"}}],
        "alertStrategy": {"notificationRateLimit": {"period": "300s"}},
        "enabled": false,
    });
    let name = w.g.monitoring.seed_policy(FAKE_PROJECT, theirs.clone());
    let run = w.run(&["keepalive"]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(
        run.stdout.contains("not made by this tool"),
        "{}",
        run.stdout
    );
    let mut want = theirs;
    want["name"] = json!(name);
    assert_eq!(w.policy(ALERT_POLICY).unwrap(), want);
    assert!(w
        .g
        .monitoring
        .writes()
        .iter()
        .all(|r| r.method == "POST" && !r.path.contains(&name)));
    // The reset policy, which nobody else has, is made.
    assert!(w.policy(RESET_POLICY).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing() {
    let w = World::new().await;
    let run = w.run(&["keepalive", "--dry-run"]).await;
    ok(&run);
    assert!(
        w.g.monitoring.writes().is_empty(),
        "{:?}",
        w.g.monitoring.writes()
    );
    assert!(run.stdout.contains(ALERT_POLICY), "{}", run.stdout);
    assert!(run.stdout.contains("would be created"), "{}", run.stdout);

    // Drifted: a dry run says so and changes nothing.
    ok(&w.run(&["keepalive"]).await);
    let name = w.policy(RESET_POLICY).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    w.g.monitoring
        .change_policy(&name, |p| p["enabled"] = json!(false));
    w.g.monitoring.clear_requests();
    let run = w.run(&["keepalive", "--dry-run"]).await;
    ok(&run);
    assert!(
        run.stdout.contains("would be enabled again"),
        "{}",
        run.stdout
    );
    assert!(w.g.monitoring.writes().is_empty());
    assert_eq!(w.policy(RESET_POLICY).unwrap()["enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_not_enabled_names_the_command_that_enables_it() {
    let w = World::new().await;
    w.g.monitoring.disable_api();
    let run = w.run(&["keepalive"]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(
        run.stderr.contains(&format!(
            "gcloud services enable monitoring.googleapis.com --project {FAKE_PROJECT}"
        )),
        "{}",
        run.stderr
    );
    // The rest of the step was done before.
    assert!(w.g.scheduler.requests().iter().any(|r| r.method == "POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_does_not_exist_is_a_configuration_error() {
    let w = World::new().await;
    std::fs::write(
        &w.config,
        std::fs::read_to_string(&w.config).unwrap().replace(
            &w.slack,
            &format!("projects/{FAKE_PROJECT}/notificationChannels/404"),
        ),
    )
    .unwrap();
    let run = w.run(&["keepalive"]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("alerts.channels"), "{}", run.stderr);
    assert!(w.g.monitoring.policies(FAKE_PROJECT).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_policies_and_this_numbers_open_incident() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let alert = w.policy(ALERT_POLICY).unwrap();
    for vm in ["whatsapp-4930000000", NAME] {
        w.g.monitoring.seed_alert(
            FAKE_PROJECT,
            json!({
                "name": format!("projects/{FAKE_PROJECT}/alerts/{vm}"),
                "state": "OPEN",
                "openTime": "2026-12-07T06:00:00Z",
                "policy": {"name": alert["name"], "displayName": ALERT_POLICY},
                "log": {"extractedLabels": {"kind": "onprem", "vm": vm}},
            }),
        );
    }
    let run = w.run(&["status"]).await;
    let out = run.output();
    assert!(
        out.contains(ALERT_POLICY) && out.contains(RESET_POLICY),
        "{out}"
    );
    assert!(out.contains("present, enabled, 2 channel(s)"), "{out}");
    assert!(
        out.contains(&format!("projects/{FAKE_PROJECT}/alerts/{NAME}")),
        "{out}"
    );
    assert!(!out.contains("alerts/whatsapp-4930000000"), "{out}");

    // A second address not applied yet: its channel is missing, the policy has not drifted.
    let text = std::fs::read_to_string(&w.config).unwrap().replace(
        "emails = [\"ops@example.com\"]",
        "emails = [\"ops@example.com\", \"oncall@example.com\"]",
    );
    std::fs::write(&w.config, text).unwrap();
    let out = w.run(&["status"]).await.output();
    assert!(
        out.contains("oncall@example.com") && out.contains("missing (provisioner keepalive)"),
        "{out}"
    );
    assert!(!out.contains("DRIFTED"), "{out}");
}
