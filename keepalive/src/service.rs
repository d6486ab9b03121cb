//! [`Service`]: the configuration and every client a check needs, built once per process and
//! shared by all checks (`serve` holds it for its lifetime, `check` for one run).

use shared::google::compute::Compute;
use shared::google::secretmanager::SecretManager;
use shared::google::{Auth, GoogleClient, RetryPolicy};
use shared::graph::GraphClient;
use shared::payload::PayloadError;
use shared::whatsapp::WhatsAppClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::error::CheckError;
use crate::report::Reporter;

pub struct Service {
    pub config: Config,
    /// The HTTP client every WhatsApp client is reached through (one connection pool).
    pub whatsapp_http: reqwest::Client,
    /// Google access tokens, and the project of the credentials.
    pub auth: Arc<Auth>,
    pub compute: Compute,
    pub secrets: SecretManager,
    /// Bounds the WhatsApp clients probed at once: each probing check holds about seven
    /// connections (~0.2 MB); a burst of a thousand tenants would otherwise hold 7,000.
    pub probing: tokio::sync::Semaphore,
    /// Checks of the same VM in this process take turns (see `onprem/act.rs`).
    pub vm_locks: KeyedLocks,
    /// One turn per project at the fleet brake: from reading the project's recent resets to
    /// Compute Engine accepting this one, so concurrent checks of one process cannot all pass
    /// a brake that none of their resets has reached yet.
    pub brake_locks: KeyedLocks,
    /// Mails and events, after the verdict.
    pub reporter: Reporter,
    /// Meta's Graph API (Cloud API numbers); TLS verified against the system's roots.
    pub graph: GraphClient,
    /// The bots' webhook endpoints (the handshake): the system's roots, no redirects.
    pub hooks: reqwest::Client,
}

impl Service {
    pub fn new(config: Config) -> Result<Service, String> {
        if config.worst_case_health_time() >= config.deadline {
            tracing::warn!(
                worst_case_ms = config.worst_case_health_time().as_millis() as u64,
                deadline_s = config.deadline.as_secs(),
                "KEEPALIVE_ATTEMPTS × 2 × KEEPALIVE_REQUEST_TIMEOUT_MS + the retry delays may exceed KEEPALIVE_DEADLINE_S: a slow client may be answered 503 instead of reset"
            );
        }
        let auth = Arc::new(Auth::new());
        let retry = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            multiplier: 2.0,
        };
        let roots = &config.roots;
        if roots.count == 0 {
            tracing::warn!("no root certificates found (set SSL_CERT_FILE): every https:// call to Google's APIs, the Graph API, webhook endpoints and WhatsApp clients without a pinned fingerprint will fail");
        }
        let google = Arc::new(
            GoogleClient::with_tls(
                auth.clone(),
                retry,
                config.google_timeout,
                Some((*roots.config).clone()),
            )
            .map_err(|e| e.to_string())?,
        );
        let graph_http = roots
            .client_builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| format!("cannot build the Graph API client: {e}"))?;
        let hooks = roots
            .client_builder()
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        let graph = GraphClient::new(
            graph_http,
            config.graph.endpoint.clone(),
            config.graph.version.clone(),
            config.request_timeout,
        )
        .with_retry(retry);
        Ok(Service {
            graph,
            hooks,
            whatsapp_http: whatsapp_client_builder(&config)
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
            auth,
            compute: Compute::new(google.clone(), &config.compute_endpoint),
            secrets: SecretManager::new(google, &config.secretmanager_endpoint),
            probing: tokio::sync::Semaphore::new(config.max_concurrent_probes),
            vm_locks: KeyedLocks::default(),
            brake_locks: KeyedLocks::default(),
            reporter: Reporter::new(&config),
            config,
        })
    }
}

/// What every HTTP client to a WhatsApp client is built from: no proxy, no redirects, and
/// the roots every `https://` client trusts (a pinned fingerprint replaces them).
pub fn whatsapp_client_builder(config: &Config) -> reqwest::ClientBuilder {
    WhatsAppClient::http_client_builder().use_preconfigured_tls((*config.roots.config).clone())
}

impl Service {
    /// The project a payload acts in: the one it names (`asked`), else the default one
    /// (`GOOGLE_CLOUD_PROJECT`, else the credentials'). Refused, naming `field`, unless
    /// `KEEPALIVE_PROJECTS` lists it (unset: only the default project).
    pub async fn project_for(
        &self,
        asked: Option<&str>,
        field: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<String, CheckError> {
        let default = || async {
            match &self.config.default_project {
                Some(p) => Ok(p.clone()),
                None => self
                    .auth
                    .project_id()
                    .await
                    .map_err(|e| CheckError::NoProject(e.to_string())),
            }
        };
        let project = match asked {
            Some(p) => p.to_string(),
            None => default().await?,
        };
        let allowed = match &self.config.projects {
            Some(list) => list.contains(&project),
            None => asked.is_none() || default().await? == project,
        };
        if allowed {
            return Ok(project);
        }
        let may = match &self.config.projects {
            Some(list) => format!("KEEPALIVE_PROJECTS ({})", list.join(", ")),
            None => format!("the default project {}", default().await?),
        };
        let what = match asked {
            Some(_) => format!("names the project {project}"),
            None => format!("is missing and the default project is {project}"),
        };
        Err(CheckError::Refused(PayloadError {
            field: field.into(),
            problem: format!("{what}: this deployment may act only in {may}"),
        }))
    }
}

/// One async lock per key (a VM, a project), so that checks of the same key in this process
/// take turns.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}
