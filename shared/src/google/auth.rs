//! Access tokens from `gcp_auth`: a service-account key in `GOOGLE_APPLICATION_CREDENTIALS`
//! (whose `token_uri` receives the signed JWT), else gcloud's application-default
//! credentials, else the metadata server. Found lazily, on the first call that needs Google,
//! so a process starts at once and a healthy check never touches the credential chain.

use secrecy::SecretString;
use std::sync::Arc;
use tokio::sync::OnceCell;

use super::GoogleError;

pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where tokens come from. `gcp_auth` caches tokens and refreshes them before they expire.
#[derive(Default)]
pub struct Auth {
    provider: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("initialised", &self.provider.initialized())
            .finish()
    }
}

impl Auth {
    pub fn new() -> Self {
        Self::default()
    }

    async fn provider(&self) -> Result<&Arc<dyn gcp_auth::TokenProvider>, GoogleError> {
        self.provider
            .get_or_try_init(|| async {
                gcp_auth::provider()
                    .await
                    .map_err(|e| GoogleError::Auth(format!("no usable credentials: {e}")))
            })
            .await
    }

    /// A bearer token for the cloud-platform scope.
    pub async fn token(&self) -> Result<SecretString, GoogleError> {
        let provider = self.provider().await?;
        let token = provider
            .token(&[CLOUD_PLATFORM_SCOPE])
            .await
            .map_err(|e| GoogleError::Auth(e.to_string()))?;
        Ok(SecretString::from(token.as_str().to_string()))
    }

    /// The project of the credentials (key file's `project_id`, gcloud's, or the metadata
    /// server's).
    pub async fn project_id(&self) -> Result<String, GoogleError> {
        let provider = self.provider().await?;
        provider
            .project_id()
            .await
            .map(|p| p.to_string())
            .map_err(|e| GoogleError::Auth(format!("no project in the credentials: {e}")))
    }
}
