//! Fakes of the outside world for the keepalive's and the provisioner's tests: real HTTP
//! servers on `127.0.0.1` (ephemeral ports, `TCP_NODELAY`, answers written in one piece) that
//! tests script and inspect; and [`binaries`], which builds and runs the real `keepalive` and
//! `provisioner` binaries.
//!
//! - [`whatsapp::FakeWhatsApp`]: the on-premises WhatsApp Business API client.
//! - [`compute::FakeCompute`]: Compute Engine v1 (instances: get, insert, reset,
//!   setMetadata, setLabels, delete; regional addresses; global firewalls; operations and the
//!   keepalive's operation filters; `requestId` deduplication).
//! - [`token::FakeTokenServer`]: the OAuth2 token endpoint of a service-account key, with
//!   the [`token::TokenRegistry`] that the Google fakes check bearer tokens against.
//! - [`secretmanager::FakeSecretManager`]: Secret Manager v1.
//! - [`sqladmin::FakeSqlAdmin`]: Cloud SQL Admin v1 (instances, operations, users,
//!   databases, and what `decommission` calls: export, final backup, delete).
//! - [`pubsub_emulator::PubSubEmulator`]: not a fake: the real Pub/Sub emulator (gRPC and
//!   REST on one port), started on first use.
//! - [`cloud_run::FakeCloudRun`]: Cloud Run Admin v2 (services with long-running operations, IAM
//!   policies).
//! - [`scheduler::FakeScheduler`]: Cloud Scheduler v1 (jobs).
//! - [`monitoring::FakeMonitoring`]: Cloud Monitoring v3 (alert policies, notification
//!   channels, open alerts).
//! - [`graph::FakeGraph`]: Meta's Graph API for WhatsApp numbers (Cloud API), and
//!   [`webhook::FakeWebhook`], a bot's webhook endpoint answering Meta's handshake.
//! - [`rest`]: what the Google REST fakes share (start, the request gate of token and scripted
//!   fault, the error shape, JSON and path helpers); [`server`]: the HTTP server under every
//!   fake, with request recording; [`tls_front`]: HTTPS before a plain fake, as Google's
//!   front ends are before its APIs.
//! - [`measure`] and [`cpus`]: for the measuring binaries (`bench`, `compare`): `/proc`
//!   readings and statistics; keepalive on a CPU of its own, the harness on the others.
//! - [`GoogleFakes`]: all of the Google fakes, the REST ones sharing one token registry, and a
//!   service-account key file pointing at the token endpoint.

pub mod binaries;
pub mod cloud_run;
pub mod compute;
pub mod cpus;
pub mod graph;
pub mod measure;
pub mod monitoring;
pub mod pubsub_emulator;
mod rest;
pub mod scheduler;
pub mod secretmanager;
pub mod server;
pub mod smtp;
pub mod sqladmin;
pub mod tls_front;
pub mod token;
pub mod webhook;
pub mod whatsapp;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

pub use cloud_run::FakeCloudRun;
pub use compute::{ComputeRoute, FakeCompute};
pub use graph::{Entity, FakeGraph, FakeToken, GraphFault};
pub use monitoring::FakeMonitoring;
pub use pubsub_emulator::{PubSubEmulator, PulledMessage};
pub use scheduler::FakeScheduler;
pub use secretmanager::FakeSecretManager;
pub use server::{HttpServer, RecordedRequest, SelfSignedCert, TempDir};
pub use sqladmin::{FakeSqlAdmin, SqlRoute};
pub use token::{FakeTokenServer, TokenRegistry, FAKE_CLIENT_EMAIL, FAKE_PROJECT};
pub use webhook::{FakeWebhook, WebhookFault};
pub use whatsapp::{Behaviour, FakeWhatsApp, Health};

/// The Google side of a test: token endpoint, Compute Engine, Secret Manager and Cloud SQL
/// Admin sharing one [`TokenRegistry`], and a service-account key file (in a temporary
/// directory removed on drop) whose `token_uri` is the fake token endpoint.
pub struct GoogleFakes {
    /// Tokens the fakes accept (those the token endpoint granted, plus any issued directly).
    pub tokens: Arc<TokenRegistry>,
    /// The OAuth2 token endpoint.
    pub token: FakeTokenServer,
    /// Compute Engine.
    pub compute: FakeCompute,
    /// Secret Manager.
    pub secrets: FakeSecretManager,
    /// Cloud SQL Admin.
    pub sql: FakeSqlAdmin,
    /// Cloud Run Admin v2.
    pub run: FakeCloudRun,
    /// Cloud Scheduler.
    pub scheduler: FakeScheduler,
    /// Cloud Monitoring (the provisioner's alert policies and channels).
    pub monitoring: FakeMonitoring,
    /// The Pub/Sub emulator, reached through `PUBSUB_EMULATOR_HOST`; started the first time
    /// it is asked for (the provisioner's environment asks).
    pub pubsub: PubSubEmulator,
    /// The service-account key file (`GOOGLE_APPLICATION_CREDENTIALS`).
    pub key_file: PathBuf,
    dir: TempDir,
}

impl GoogleFakes {
    /// Starts the fakes and writes the key file.
    pub async fn start() -> Self {
        let tokens = TokenRegistry::new();
        let token = FakeTokenServer::start(tokens.clone()).await;
        let compute = FakeCompute::start(tokens.clone()).await;
        let secrets = FakeSecretManager::start(tokens.clone()).await;
        let sql = FakeSqlAdmin::start(tokens.clone()).await;
        let run = FakeCloudRun::start(tokens.clone()).await;
        let scheduler = FakeScheduler::start(tokens.clone()).await;
        let monitoring = FakeMonitoring::start(tokens.clone()).await;
        let pubsub = PubSubEmulator::new();
        let dir = TempDir::new("google").expect("create temporary directory");
        let key_file = token.write_service_account_key(dir.path());
        GoogleFakes {
            tokens,
            token,
            compute,
            secrets,
            sql,
            run,
            scheduler,
            monitoring,
            pubsub,
            key_file,
            dir,
        }
    }

    /// The temporary directory (holds the key file; free for other files of the test).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Environment for the keepalive: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `KEEPALIVE_COMPUTE_ENDPOINT`, `KEEPALIVE_SECRETMANAGER_ENDPOINT`. (Not
    /// `GOOGLE_CLOUD_PROJECT`: the key file's `project_id` is [`FAKE_PROJECT`].)
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "GOOGLE_APPLICATION_CREDENTIALS".into(),
                self.key_file.display().to_string(),
            ),
            ("KEEPALIVE_COMPUTE_ENDPOINT".into(), self.compute.url()),
            (
                "KEEPALIVE_SECRETMANAGER_ENDPOINT".into(),
                self.secrets.url(),
            ),
        ]
    }

    /// Environment for the provisioner: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `PROVISIONER_COMPUTE_ENDPOINT`, `PROVISIONER_SQLADMIN_ENDPOINT`,
    /// `PROVISIONER_SECRETMANAGER_ENDPOINT`, `PROVISIONER_RUN_ENDPOINT`,
    /// `PROVISIONER_SCHEDULER_ENDPOINT`, `PROVISIONER_MONITORING_ENDPOINT`, `PUBSUB_EMULATOR_HOST`.
    pub fn provisioner_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "GOOGLE_APPLICATION_CREDENTIALS".into(),
                self.key_file.display().to_string(),
            ),
            ("PROVISIONER_COMPUTE_ENDPOINT".into(), self.compute.url()),
            ("PROVISIONER_SQLADMIN_ENDPOINT".into(), self.sql.url()),
            (
                "PROVISIONER_SECRETMANAGER_ENDPOINT".into(),
                self.secrets.url(),
            ),
            ("PROVISIONER_RUN_ENDPOINT".into(), self.run.url()),
            (
                "PROVISIONER_SCHEDULER_ENDPOINT".into(),
                self.scheduler.url(),
            ),
            (
                "PROVISIONER_MONITORING_ENDPOINT".into(),
                self.monitoring.url(),
            ),
            ("PUBSUB_EMULATOR_HOST".into(), self.pubsub.host()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[tokio::test]
    async fn google_fakes_share_tokens() {
        let g = GoogleFakes::start().await;
        let key: Value =
            serde_json::from_str(&std::fs::read_to_string(&g.key_file).unwrap()).unwrap();
        assert_eq!(key["token_uri"], g.token.token_uri());
        assert_eq!(key["project_id"], FAKE_PROJECT);
        assert_eq!(key["client_email"], FAKE_CLIENT_EMAIL);
        assert!(g.key_file.starts_with(g.dir()));
        assert_eq!(g.env().len(), 3);
        let penv = g.provisioner_env();
        let names: Vec<&str> = penv.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "GOOGLE_APPLICATION_CREDENTIALS",
                "PROVISIONER_COMPUTE_ENDPOINT",
                "PROVISIONER_SQLADMIN_ENDPOINT",
                "PROVISIONER_SECRETMANAGER_ENDPOINT",
                "PROVISIONER_RUN_ENDPOINT",
                "PROVISIONER_SCHEDULER_ENDPOINT",
                "PROVISIONER_MONITORING_ENDPOINT",
                "PUBSUB_EMULATOR_HOST"
            ]
        );
        assert_eq!(penv[2].1, g.sql.url());

        // A token granted by the token endpoint works on Compute and Secret Manager.
        let jwt = token::tests::sign_jwt(&token::tests::claims_for(&g.token.token_uri()));
        let client = reqwest::Client::new();
        let body: Value = client
            .post(g.token.token_uri())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair("assertion", &jwt)
                    .finish(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let access = body["access_token"].as_str().unwrap().to_owned();
        g.compute.add_instance(
            FAKE_PROJECT,
            "z",
            "vm",
            "RUNNING",
            time::OffsetDateTime::now_utc(),
        );
        let resp = client
            .get(format!(
                "{}/compute/v1/projects/{FAKE_PROJECT}/zones/z/instances/vm",
                g.compute.url()
            ))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let version = g
            .secrets
            .put(&format!("projects/{FAKE_PROJECT}/secrets/wa"), "pw");
        let resp = client
            .get(format!("{}/v1/{version}:access", g.secrets.url()))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let resp = client
            .get(format!(
                "{}/v1/projects/{FAKE_PROJECT}/instances/nope",
                g.sql.url()
            ))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);

        let dir = g.dir().to_owned();
        drop(g);
        assert!(!dir.exists());
    }
}
