//! The world of the Cloud API, `migrate` and `decommission` tests: the Google fakes, the
//! Graph API fake (one number, one WABA, one app, one token), the bot's webhook, and — for a
//! number set up by this tool on On-Premises — the WhatsApp client with its admin password
//! stored, its VM, address, firewall rule, Cloud SQL instance and keepalive job. The real
//! `provisioner` binary runs against all of it.

#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::{run_provisioner, run_provisioner_at_terminal, ProvisionerRun};
use keepalive_tests::graph::{FakeGraph, FakeToken};
use keepalive_tests::webhook::FakeWebhook;
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "whatsapp-4915112345678";
pub const REGION: &str = "europe-west3";
pub const ZONE: &str = "europe-west3-c";
pub const PHONE_ID: &str = "106540352242922";
pub const WABA: &str = "102290129340398";
pub const APP: &str = "634900000000001";
/// Distinctive, so a leak anywhere is found by a plain substring search.
pub const TOKEN: &str = "EAAGsystemUserTokenDoNotLog0123456789";
pub const ADMIN_PASSWORD: &str = "Adm1n!pass-of-the-onprem-client-do-not-log";
pub const TOKEN_SECRET: &str = "meta-system-user-token";
/// The keepalive service's identity (`keepalive.service_account`'s default).
pub const KEEPALIVE_SA: &str =
    "serviceAccount:whatsapp-keepalive@fake-project.iam.gserviceaccount.com";

pub struct World {
    pub g: GoogleFakes,
    pub graph: FakeGraph,
    pub hook: FakeWebhook,
    /// The On-Premises client (registered, admin password set) for migrations.
    pub wa: Arc<FakeWhatsApp>,
    pub env: BTreeMap<String, String>,
    pub config: PathBuf,
}

/// Which platform `number.toml` names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    OnPrem,
    Cloud,
}

impl World {
    /// A number that reads `platform_type` `platform_type` on the Graph API (`NOT_APPLICABLE`
    /// for one not registered yet, `ON_PREMISE`, `CLOUD_API`).
    pub async fn new(platform: Platform, platform_type: &str) -> World {
        let g = GoogleFakes::start().await;
        let graph = FakeGraph::start().await;
        graph.add_app(APP, "LoyJoy", None);
        graph.add_token(TOKEN, FakeToken::valid(APP));
        graph.add_number(PHONE_ID, WABA, "+49 151 12345678");
        graph.update_number(PHONE_ID, |n| {
            n.platform_type = platform_type.into();
            if platform_type == "NOT_APPLICABLE" {
                n.status = "PENDING".into();
                n.code_verification_status = "NOT_VERIFIED".into();
                n.throughput_level = "NOT_APPLICABLE".into();
            }
        });
        let hook = FakeWebhook::start_tls("not-known-yet").await;
        let wa = Arc::new(FakeWhatsApp::start("admin", ADMIN_PASSWORD).await);
        let disconnected = wa.clone();
        graph.on_disconnect(move |_| disconnected.migrated_away());
        g.secrets.put(
            &format!("projects/{FAKE_PROJECT}/secrets/{TOKEN_SECRET}"),
            TOKEN,
        );
        let mut env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
        env.insert("PROVISIONER_GRAPH_ENDPOINT".into(), graph.url());
        env.insert("PROVISIONER_WHATSAPP_URL".into(), wa.url());
        env.insert("PROVISIONER_WAIT_TIMEOUT_S".into(), "20".into());
        env.insert("HOME".into(), g.dir().display().to_string());
        env.insert("RUST_LOG".into(), "debug".into());
        let config = g.dir().join("number.toml");
        let w = World {
            g,
            graph,
            hook,
            wa,
            env,
            config,
        };
        w.write_config(platform, "");
        w
    }

    pub fn config_text(&self, platform: Platform, extra: &str) -> String {
        format!(
            "project = \"{FAKE_PROJECT}\"\nregion = \"{REGION}\"\nzone = \"{ZONE}\"\ncountry_code = \"49\"\nphone_number = \"15112345678\"\nplatform = \"{}\"\n\n[loyjoy]\nwebhook_url = \"https://example.loyjoy.com/whatsapp/webhook\"\n\n[cloud]\nphone_number_id = \"{PHONE_ID}\"\nwaba_id = \"{WABA}\"\naccess_token_secret = \"projects/{FAKE_PROJECT}/secrets/{TOKEN_SECRET}/versions/latest\"\nwebhook_url = \"{}\"\ngraph_version = \"v23.0\"\n{extra}",
            if platform == Platform::Cloud { "cloud" } else { "onprem" },
            self.hook.callback_url()
        )
    }

    pub fn write_config(&self, platform: Platform, extra: &str) {
        std::fs::write(&self.config, self.config_text(platform, extra)).unwrap();
    }

    /// What `database`, `vm`, `whatsapp`, `connect` and `keepalive` left for an On-Premises
    /// number: the passwords, the VM with its address and firewall rule, the Cloud SQL
    /// instance with WhatsApp's databases, and the keepalive job with the On-Premises payload.
    pub fn install_onprem(&self) {
        let secret = |s: &str, v: &str| {
            self.g
                .secrets
                .put(&format!("projects/{FAKE_PROJECT}/secrets/{NAME}-{s}"), v)
        };
        secret("admin-password", ADMIN_PASSWORD);
        secret("db-password", "Db-pass!word-do-not-log-7");
        secret("api-password", "Api-pass!word-do-not-log-8");
        let c = &self.g.compute;
        c.add_instance(
            FAKE_PROJECT,
            ZONE,
            NAME,
            "RUNNING",
            time::OffsetDateTime::now_utc() - time::Duration::days(30),
        );
        c.set_nat_ip(FAKE_PROJECT, ZONE, NAME, "203.0.113.50");
        c.seed_address(FAKE_PROJECT, REGION, NAME, Some("203.0.113.50"));
        c.seed_firewall(
            FAKE_PROJECT,
            json!({"name": format!("{NAME}-allow-web"), "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}], "targetTags": [NAME]}),
        );
        self.g.sql.seed_instance(
            FAKE_PROJECT,
            json!({"name": NAME, "databaseVersion": "POSTGRES_13", "region": REGION, "settings": {"tier": "db-custom-1-3840"}}),
        );
        self.g.sql.add_database(NAME, "wa");
        self.g.sql.add_database(NAME, "wa_messages");
        let payload = json!({
            "whatsAppHostname": "203.0.113.50", "whatsAppUsername": "admin",
            "whatsAppPasswordSecret": format!("projects/{FAKE_PROJECT}/secrets/{NAME}-admin-password/versions/latest"),
            "vm": NAME, "zone": ZONE, "project": FAKE_PROJECT,
        });
        self.g.scheduler.add_job(json!({
            "name": self.job_name(),
            "schedule": "*/5 * * * *",
            "timeZone": "Etc/UTC",
            "pubsubTarget": {
                "topicName": format!("projects/{FAKE_PROJECT}/topics/whatsapp-keepalive"),
                "data": STANDARD.encode(payload.to_string()),
                "attributes": {"vm": NAME, "zone": ZONE},
            },
            "retryConfig": {"retryCount": 0},
        }));
    }

    pub fn job_name(&self) -> String {
        format!("projects/{FAKE_PROJECT}/locations/{REGION}/jobs/keepalive-{NAME}")
    }

    /// The payload the number's job publishes, if it has one.
    pub fn job_payload(&self) -> Option<Value> {
        let job = self.g.scheduler.job(&self.job_name())?;
        let data = STANDARD
            .decode(job["pubsubTarget"]["data"].as_str()?)
            .ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub async fn run(&self, args: &[&str]) -> ProvisionerRun {
        self.run_for(args, Duration::from_secs(120)).await
    }

    /// Runs the binary, killed after `timeout` (then `code` is `None`); checks that no
    /// secret reached its output.
    pub async fn run_for(&self, args: &[&str], timeout: Duration) -> ProvisionerRun {
        let env = self.env.clone();
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let run = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_provisioner(&env, &config, &args, timeout)
        })
        .await
        .unwrap();
        self.assert_no_secrets(&run.output());
        run
    }

    /// Runs the binary at a (pseudo-)terminal where `typed` is typed; checks that no secret
    /// reached the terminal.
    pub async fn run_at_terminal(&self, args: &[&str], typed: &str) -> ProvisionerRun {
        let env = self.env.clone();
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let typed = typed.to_string();
        let run = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_provisioner_at_terminal(&env, &config, &args, &typed, Duration::from_secs(120))
        })
        .await
        .unwrap();
        self.assert_no_secrets(&run.output());
        run
    }

    /// The latest value of this number's secret `<NAME>-<suffix>`.
    pub fn secret(&self, suffix: &str) -> Option<String> {
        self.g
            .secrets
            .get_latest(FAKE_PROJECT, &format!("{NAME}-{suffix}"))
    }

    /// Every secret of this world: the token, the passwords, the PIN, the verify token, the
    /// backup and its password, the On-Premises client's tokens, the Google tokens.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = vec![TOKEN.to_string(), ADMIN_PASSWORD.to_string()];
        for suffix in [
            "db-password",
            "api-password",
            "two-step-pin",
            "webhook-verify-token",
            "backup-password",
            "backup",
        ] {
            s.extend(self.secret(suffix));
        }
        for (password, data) in self.wa.backups() {
            s.push(password);
            s.push(data);
        }
        s.extend(self.wa.issued_tokens());
        s.extend(self.g.tokens.tokens());
        s
    }

    pub fn assert_no_secrets(&self, text: &str) {
        for secret in self.secrets() {
            // A 6-digit PIN is checked as a word: digits like it appear in ids and times.
            let leaked = if secret.len() == 6 && secret.bytes().all(|b| b.is_ascii_digit()) {
                text.split(|c: char| !c.is_ascii_digit())
                    .any(|w| w == secret)
            } else {
                text.contains(&secret)
            };
            assert!(
                !leaked,
                "a secret (starts {:?}) leaked into:\n{text}",
                &secret[..4.min(secret.len())]
            );
        }
    }

    /// Register calls Meta received for the number.
    pub fn register_calls(&self) -> usize {
        self.graph.count("POST", &format!("{PHONE_ID}/register"))
    }

    /// The bodies of the register calls, oldest first.
    pub fn register_bodies(&self) -> Vec<Value> {
        self.graph
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(&format!("{PHONE_ID}/register")))
            .filter_map(|r| r.json())
            .collect()
    }

    /// Who may read secret `secret` (the members of `roles/secretmanager.secretAccessor`).
    pub fn readers(&self, secret: &str) -> Vec<String> {
        let policy = self.g.secrets.policy(FAKE_PROJECT, secret);
        policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["role"] == "roles/secretmanager.secretAccessor")
            .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect()
    }

    pub fn platform_type(&self) -> String {
        self.graph.number(PHONE_ID).unwrap().platform_type
    }
}

pub fn ok(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(0), "{}", run.output());
}

pub fn failed(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(1), "{}", run.output());
}
