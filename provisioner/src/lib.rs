//! The WhatsApp onboarding runbook as commands. Every command is callable from Rust with a
//! [`Provisioner`]: [`steps::database::run`], [`steps::vm::run`], [`plan::run`],
//! [`status::run`], ...; for a number on Meta's Cloud API, [`cloud_api`]; moving a number
//! there, [`migrate`]; removing what is left of its On-Premises installation,
//! [`decommission`].
//!
//! Every step reads before it creates, adopts what already exists (`ALREADY_EXISTS` included)
//! and checks it against `number.toml`, and keeps nothing on the local disk: what a later run
//! needs is read back from Google Cloud, secrets from Secret Manager.
//!
//! # From a command to an API call
//!
//! | layer | where | what it does |
//! |---|---|---|
//! | command line | `main.rs` | parses the command, reads [`config`] and [`environment`], builds a [`Provisioner`], calls the step |
//! | commands | [`steps`] (`database`, `vm`, `onboard`: `whatsapp` `verify` `connect`, `link`, `keepalive`), [`up`], [`plan`], [`status`], [`secrets`]; [`cloud_api`] (the same steps for a Cloud API number), [`migrate`], [`decommission`], [`fleet`] (one scheduler job per project, region and token for a directory of Cloud API numbers), `steps::alerts` (Cloud Monitoring alerting) | the runbook: which resources, in which order, and what one step hands the next (an IP, a URL) |
//! | resources | [`resources`]: one file per kind (address, firewall, instance, sql_instance, database_user, secret, topic, service, invoker, subscription, grant, job, job_payload) | each kind's spec, how to read and create it, and how what exists differs |
//! | one loop | [`ensure::ensure`] | read → differences → create or adopt → update, `--dry-run`, one [`report`] line per resource |
//! | waits | [`progress`] | a spinner or log lines for every wait, through the shared waiter |
//! | Google APIs | [`google_apis`] → `shared::google::{compute, sqladmin, secretmanager, cloud_run, scheduler}`, `shared::events_publisher` | one typed client per API on one HTTP layer: retries only for idempotent calls, one long-running-operation waiter |
//!
//! Following `provisioner keepalive`: `main.rs` → [`steps::keepalive::run`] → for the service,
//! [`ensure::ensure`] with [`resources::service::KeepaliveService`] → its `read`
//! (`CloudRun::get_service`), `create` (`CloudRun::create_service`, then `finish` waits for
//! the operation) or `update` (`CloudRun::update_service`) → `GoogleClient::send`.

pub mod cloud_api;
pub mod config;
pub mod decommission;
pub mod ensure;
pub mod environment;
pub mod fleet;
pub mod google_apis;
pub mod migrate;
pub mod names;
pub mod plan;
pub mod progress;
pub mod report;
pub mod resources;
pub mod secrets;
pub mod status;
pub mod steps;
pub mod up;

use shared::google::GoogleError;
use std::time::Duration;
use tokio::time::Instant;

use crate::config::NumberConfig;
use crate::environment::{EnvError, Environment};
use crate::google_apis::GoogleApis;
use crate::names::Names;
use crate::report::Report;

/// Why a command stopped. Exit status 1 (2 is for configuration, see [`config`]).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{resource}: {source}\n  to resume: fix the cause and run `provisioner {command}` again (it picks up where it stopped)")]
    Google {
        resource: String,
        command: &'static str,
        #[source]
        source: GoogleError,
    },
    #[error("{resource}: {message}")]
    Failed { resource: String, message: String },
    /// Bad configuration or arguments (exit status 2); names the key.
    #[error("{0}")]
    Config(String),
}

impl StepError {
    pub fn failed(resource: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::Failed {
            resource: resource.into(),
            message: message.into(),
        }
    }
}

/// The provisioner set up for one number and one command: the number's configuration, the
/// Google clients, whether this is a dry run, the report of what was done, and the settings
/// of the environment.
pub struct Provisioner {
    pub cfg: NumberConfig,
    pub google: GoogleApis,
    pub env: Environment,
    /// `--dry-run` or `plan`: read everything, change nothing.
    pub dry_run: bool,
    pub report: Report,
    /// The command being run, for "how to resume" hints.
    pub command: &'static str,
    /// `--register-again`: send register even though an earlier run's call, which Meta may
    /// still carry out, is under 72 hours old (see `cloud_api::register_record`).
    pub register_again: bool,
}

impl Provisioner {
    pub fn new(
        cfg: NumberConfig,
        env: Environment,
        command: &'static str,
        dry_run: bool,
    ) -> Result<Provisioner, EnvError> {
        Ok(Provisioner {
            google: GoogleApis::new(&env)?,
            cfg,
            env,
            dry_run,
            report: Report::default(),
            command,
            register_again: false,
        })
    }

    pub fn names(&self) -> Names {
        Names::of(&self.cfg)
    }

    /// Maps a Google error on `resource` to a step error with the resume hint.
    pub fn google_failed(
        &self,
        resource: impl Into<String>,
    ) -> impl FnOnce(GoogleError) -> StepError {
        let command = self.command;
        let resource = resource.into();
        move |source| StepError::Google {
            resource,
            command,
            source,
        }
    }

    /// A deadline for one Google call sequence (not the long waits).
    pub fn call_deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(300)
    }

    /// The bound of one long wait: the environment's override, else `default`.
    pub fn wait_timeout(&self, default: Duration) -> Duration {
        self.env.wait_timeout.unwrap_or(default)
    }

    /// When a long wait that starts now must end (see [`wait_timeout`](Self::wait_timeout)).
    pub fn wait_deadline(&self, default: Duration) -> Instant {
        Instant::now() + self.wait_timeout(default)
    }

    /// Labels every resource carries.
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        [
            (
                "whatsapp-number",
                format!("{}{}", self.cfg.country_code, self.cfg.phone_number),
            ),
            ("managed-by", "whatsapp-provisioner".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
