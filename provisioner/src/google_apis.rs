//! The Google API clients of a provisioner run, on the endpoints of the [`Environment`], all
//! on one [`GoogleClient`] whose operation waits show on the terminal ([`progress`]).
//!
//! [`progress`]: crate::progress

use shared::events_publisher::PubSubTarget;
use shared::google::cloud_run::CloudRun;
use shared::google::compute::Compute;
use shared::google::monitoring::Monitoring;
use shared::google::scheduler::Scheduler;
use shared::google::secretmanager::SecretManager;
use shared::google::sqladmin::SqlAdmin;
use shared::google::{Auth, GoogleClient, RetryPolicy};
use std::sync::Arc;
use std::time::Duration;

use crate::environment::{EnvError, Environment};
use crate::progress::TerminalProgress;

pub struct GoogleApis {
    /// The client under all the REST ones (its waiter runs every wait of the run).
    pub client: Arc<GoogleClient>,
    pub compute: Compute,
    pub sql: SqlAdmin,
    pub secrets: SecretManager,
    pub cloud_run: CloudRun,
    pub scheduler: Scheduler,
    /// Cloud Monitoring: the alert policies and notification channels.
    pub monitoring: Monitoring,
    /// Pub/Sub, through `google-cloud-pubsub` (its own retries).
    pub pubsub: PubSubTarget,
}

impl GoogleApis {
    pub fn new(env: &Environment) -> Result<GoogleApis, EnvError> {
        let client = GoogleClient::new(
            Arc::new(Auth::new()),
            RetryPolicy::default(),
            Duration::from_secs(60),
        )
        .map_err(|e| EnvError(e.to_string()))?
        .with_progress(Arc::new(TerminalProgress::default()));
        let client = Arc::new(client);
        Ok(GoogleApis {
            compute: Compute::new(client.clone(), &env.compute_endpoint),
            sql: SqlAdmin::new(client.clone(), &env.sqladmin_endpoint),
            secrets: SecretManager::new(client.clone(), &env.secretmanager_endpoint),
            cloud_run: CloudRun::new(client.clone(), &env.cloud_run_endpoint),
            scheduler: Scheduler::new(client.clone(), &env.scheduler_endpoint),
            monitoring: Monitoring::new(client.clone(), &env.monitoring_endpoint),
            pubsub: env.pubsub.clone(),
            client,
        })
    }
}
