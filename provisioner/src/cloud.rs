//! The Google API clients of a provisioner run, on the endpoints the environment names.

use shared::events_publisher::PubSubTarget;
use shared::google::client::parse_endpoint;
use shared::google::compute::Compute;
use shared::google::run::CloudRun;
use shared::google::scheduler::Scheduler;
use shared::google::secretmanager::SecretManager;
use shared::google::sqladmin::SqlAdmin;
use shared::google::{Auth, GoogleClient, RetryPolicy};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

pub struct Cloud {
    pub compute: Compute,
    pub sql: SqlAdmin,
    pub secrets: SecretManager,
    pub run: CloudRun,
    pub scheduler: Scheduler,
    /// Pub/Sub (through `google-cloud-pubsub`): `PUBSUB_EMULATOR_HOST` or the real service.
    pub pubsub: PubSubTarget,
    /// `PROVISIONER_WHATSAPP_URL`: where the WhatsApp client's API is reached, when not at
    /// `https://<static address>`.
    pub whatsapp_url: Option<Url>,
    /// Upper bound of each long wait (`PROVISIONER_WAIT_TIMEOUT_S`); `None`: per-wait defaults.
    pub wait_timeout: Option<Duration>,
}

/// An environment variable that is set but unusable (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

fn endpoint(var: &str, default: &str) -> Result<Url, EnvError> {
    let value = std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    parse_endpoint(var, &value).map_err(EnvError)
}

impl Cloud {
    pub fn from_env() -> Result<Cloud, EnvError> {
        let auth = Arc::new(Auth::new());
        let google = Arc::new(
            GoogleClient::new(auth, RetryPolicy::default(), Duration::from_secs(60))
                .map_err(|e| EnvError(e.to_string()))?,
        );
        let whatsapp_url = match std::env::var("PROVISIONER_WHATSAPP_URL") {
            Ok(v) if !v.trim().is_empty() => {
                Some(parse_endpoint("PROVISIONER_WHATSAPP_URL", &v).map_err(EnvError)?)
            }
            _ => None,
        };
        let wait_timeout = match std::env::var("PROVISIONER_WAIT_TIMEOUT_S") {
            Ok(v) if !v.trim().is_empty() => {
                Some(Duration::from_secs(v.trim().parse().map_err(|_| {
                    EnvError(format!(
                        "PROVISIONER_WAIT_TIMEOUT_S: {v:?} is not a whole number of seconds"
                    ))
                })?))
            }
            _ => None,
        };
        Ok(Cloud {
            compute: Compute::new(
                google.clone(),
                &endpoint(
                    "PROVISIONER_COMPUTE_ENDPOINT",
                    shared::google::compute::DEFAULT_ENDPOINT,
                )?,
            ),
            sql: SqlAdmin::new(
                google.clone(),
                &endpoint(
                    "PROVISIONER_SQLADMIN_ENDPOINT",
                    shared::google::sqladmin::DEFAULT_ENDPOINT,
                )?,
            ),
            run: CloudRun::new(
                google.clone(),
                &endpoint(
                    "PROVISIONER_RUN_ENDPOINT",
                    shared::google::run::DEFAULT_ENDPOINT,
                )?,
            ),
            scheduler: Scheduler::new(
                google.clone(),
                &endpoint(
                    "PROVISIONER_SCHEDULER_ENDPOINT",
                    shared::google::scheduler::DEFAULT_ENDPOINT,
                )?,
            ),
            pubsub: PubSubTarget::from_env().map_err(EnvError)?,
            secrets: SecretManager::new(
                google,
                &endpoint(
                    "PROVISIONER_SECRETMANAGER_ENDPOINT",
                    shared::google::secretmanager::DEFAULT_ENDPOINT,
                )?,
            ),
            whatsapp_url,
            wait_timeout,
        })
    }

    /// The timeout of one wait: the environment's override, else `default`.
    pub fn timeout(&self, default: Duration) -> Duration {
        self.wait_timeout.unwrap_or(default)
    }
}
