//! Every environment variable the provisioner reads, read once into [`Environment`]. An
//! unusable value is [`EnvError`] (exit status 2) naming the variable.

use shared::events_publisher::PubSubTarget;
use shared::google::client::parse_endpoint;
use std::time::Duration;
use url::Url;

/// Where each API is and how long waits may last.
#[derive(Debug, Clone)]
pub struct Environment {
    /// `PROVISIONER_COMPUTE_ENDPOINT`
    pub compute_endpoint: Url,
    /// `PROVISIONER_SQLADMIN_ENDPOINT`
    pub sqladmin_endpoint: Url,
    /// `PROVISIONER_SECRETMANAGER_ENDPOINT`
    pub secretmanager_endpoint: Url,
    /// `PROVISIONER_RUN_ENDPOINT` (Cloud Run Admin)
    pub cloud_run_endpoint: Url,
    /// `PROVISIONER_SCHEDULER_ENDPOINT`
    pub scheduler_endpoint: Url,
    /// `PROVISIONER_MONITORING_ENDPOINT` (Cloud Monitoring: alert policies, channels)
    pub monitoring_endpoint: Url,
    /// Pub/Sub (through `google-cloud-pubsub`): `PUBSUB_EMULATOR_HOST` or the real service.
    pub pubsub: PubSubTarget,
    /// `PROVISIONER_WHATSAPP_URL`: where the WhatsApp client's API is reached, when not at
    /// `https://<static address>`.
    pub whatsapp_url: Option<Url>,
    /// `PROVISIONER_GRAPH_ENDPOINT`: Meta's Graph API (Cloud API numbers, `migrate`,
    /// `decommission`), without the version.
    pub graph_endpoint: Url,
    /// Upper bound of each long wait (`PROVISIONER_WAIT_TIMEOUT_S`); `None`: per-wait defaults.
    pub wait_timeout: Option<Duration>,
}

/// An environment variable that is set but unusable (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// The variable's value, `None` when unset or blank.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn endpoint(name: &str, default: &str) -> Result<Url, EnvError> {
    let value = var(name).unwrap_or_else(|| default.to_string());
    parse_endpoint(name, &value).map_err(EnvError)
}

impl Environment {
    pub fn from_env() -> Result<Environment, EnvError> {
        use shared::google::{cloud_run, compute, monitoring, scheduler, secretmanager, sqladmin};
        let whatsapp_url = var("PROVISIONER_WHATSAPP_URL")
            .map(|v| parse_endpoint("PROVISIONER_WHATSAPP_URL", &v).map_err(EnvError))
            .transpose()?;
        let wait_timeout = var("PROVISIONER_WAIT_TIMEOUT_S")
            .map(|v| {
                v.trim().parse().map(Duration::from_secs).map_err(|_| {
                    EnvError(format!(
                        "PROVISIONER_WAIT_TIMEOUT_S: {v:?} is not a whole number of seconds"
                    ))
                })
            })
            .transpose()?;
        Ok(Environment {
            compute_endpoint: endpoint("PROVISIONER_COMPUTE_ENDPOINT", compute::DEFAULT_ENDPOINT)?,
            sqladmin_endpoint: endpoint(
                "PROVISIONER_SQLADMIN_ENDPOINT",
                sqladmin::DEFAULT_ENDPOINT,
            )?,
            secretmanager_endpoint: endpoint(
                "PROVISIONER_SECRETMANAGER_ENDPOINT",
                secretmanager::DEFAULT_ENDPOINT,
            )?,
            cloud_run_endpoint: endpoint("PROVISIONER_RUN_ENDPOINT", cloud_run::DEFAULT_ENDPOINT)?,
            scheduler_endpoint: endpoint(
                "PROVISIONER_SCHEDULER_ENDPOINT",
                scheduler::DEFAULT_ENDPOINT,
            )?,
            monitoring_endpoint: endpoint(
                "PROVISIONER_MONITORING_ENDPOINT",
                monitoring::DEFAULT_ENDPOINT,
            )?,
            pubsub: PubSubTarget::from_env().map_err(EnvError)?,
            whatsapp_url,
            graph_endpoint: endpoint(
                "PROVISIONER_GRAPH_ENDPOINT",
                shared::graph::DEFAULT_GRAPH_ENDPOINT,
            )?,
            wait_timeout,
        })
    }
}
