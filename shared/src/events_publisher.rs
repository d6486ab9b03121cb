//! Publishing to Pub/Sub through the `google-cloud-pubsub` crate: where to reach it, the
//! keepalive's event publisher, the topic and subscription clients the provisioner uses, and
//! the crate's errors in the words of [`GoogleError`]. (Decoding what Pub/Sub pushes to the
//! keepalive is [`crate::envelope`].)
//!
//! `PUBSUB_EMULATOR_HOST=host:port` points every client at an emulator (or a test fake) over
//! plain HTTP with anonymous credentials, the convention of every Google client library.
//! Otherwise the clients reach `pubsub.googleapis.com` with Application Default Credentials
//! (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's credentials, or the metadata server).

use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_auth::credentials::Credentials;
use google_cloud_gax::client_builder::internal::ClientFactory;
use google_cloud_gax::client_builder::ClientBuilder;
use google_cloud_pubsub::client::{Publisher, SchemaService, SubscriptionAdmin, TopicAdmin};
use std::time::Duration;

use crate::google::GoogleError;

pub const API: &str = "Pub/Sub";

/// Where the Pub/Sub clients go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubTarget {
    /// `http://host:port` of an emulator; `None`: the real service.
    emulator: Option<String>,
}

impl PubSubTarget {
    /// The real service.
    pub fn google() -> Self {
        PubSubTarget { emulator: None }
    }

    /// An emulator at `host:port` (or a full `http://` URL).
    pub fn emulator(host: &str) -> Result<Self, String> {
        let host = host.trim();
        let url = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", host.trim_end_matches('/'))
        };
        let parsed = url::Url::parse(&url)
            .map_err(|e| format!("PUBSUB_EMULATOR_HOST: {host:?} is not host:port ({e})"))?;
        if parsed.host_str().is_none() || parsed.path() != "/" {
            return Err(format!("PUBSUB_EMULATOR_HOST: {host:?} is not host:port"));
        }
        Ok(PubSubTarget {
            emulator: Some(url),
        })
    }

    /// `PUBSUB_EMULATOR_HOST` when set (and not empty), else the real service.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("PUBSUB_EMULATOR_HOST") {
            Ok(v) if !v.trim().is_empty() => Self::emulator(&v),
            _ => Ok(Self::google()),
        }
    }

    /// The emulator's URL, if this is one.
    pub fn emulator_url(&self) -> Option<&str> {
        self.emulator.as_deref()
    }

    pub async fn topic_admin(&self) -> Result<TopicAdmin, GoogleError> {
        self.build(TopicAdmin::builder()).await
    }

    pub async fn subscription_admin(&self) -> Result<SubscriptionAdmin, GoogleError> {
        self.build(SubscriptionAdmin::builder()).await
    }

    /// The client whose IAM methods serve topics and subscriptions too.
    pub async fn iam(&self) -> Result<SchemaService, GoogleError> {
        self.build(SchemaService::builder()).await
    }

    /// A publisher for `topic` (`projects/P/topics/T`) that sends each message at once (no
    /// batching delay: events are rare and each matters alone).
    pub async fn publisher(&self, topic: &str) -> Result<Publisher, GoogleError> {
        install_crypto_provider();
        let mut b = Publisher::builder(topic.to_string())
            .set_message_count_threshold(1)
            .set_delay_threshold(Duration::ZERO);
        if let Some(url) = &self.emulator {
            b = b
                .with_endpoint(url.clone())
                .with_credentials(Anonymous::new().build());
        }
        b.build().await.map_err(builder_error)
    }
}

/// The crate is built without its own TLS provider (aws-lc); the process uses ring, like
/// every other client here. Installing it twice is harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl PubSubTarget {
    /// Builds an admin client aimed at the emulator, if this is one.
    async fn build<F, C>(&self, builder: ClientBuilder<F, Credentials>) -> Result<C, GoogleError>
    where
        F: ClientFactory<Client = C, Credentials = Credentials>,
    {
        install_crypto_provider();
        let builder = match &self.emulator {
            Some(url) => builder
                .with_endpoint(url.clone())
                .with_credentials(Anonymous::new().build()),
            None => builder,
        };
        builder.build().await.map_err(builder_error)
    }
}

fn builder_error(e: google_cloud_gax::client_builder::Error) -> GoogleError {
    GoogleError::Auth(format!("{API} client: {e}"))
}

/// The HTTP status that stands for a gRPC status code (Google's own mapping).
fn http_status_of(code: &str) -> u16 {
    match code {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// A `google-cloud-pubsub` error as a [`GoogleError`]: a service answer keeps its status
/// (`ALREADY_EXISTS` → 409, `NOT_FOUND` → 404, ...) and message, so callers treat Pub/Sub
/// like every other API.
pub fn google_error(e: &google_cloud_pubsub::Error) -> GoogleError {
    if let Some(status) = e.status() {
        let code = status.code.name();
        let status_code = e.http_status_code().unwrap_or_else(|| http_status_of(code));
        return GoogleError::Api {
            api: API,
            status: status_code,
            reason: Some(code.to_string()),
            message: status.message.clone(),
        };
    }
    if let Some(code) = e.http_status_code() {
        let message = e
            .http_payload()
            .map(|b| GoogleError::from_response(API, code, b))
            .unwrap_or_else(|| GoogleError::Api {
                api: API,
                status: code,
                reason: None,
                message: "no message".into(),
            });
        return message;
    }
    if e.is_authentication() {
        return GoogleError::Auth(format!("{API}: {e}"));
    }
    if e.is_timeout() {
        return GoogleError::Deadline {
            what: format!("{API} call"),
        };
    }
    if e.is_deserialization() || e.is_serialization() || e.is_binding() {
        return GoogleError::Decode {
            api: API,
            detail: e.to_string(),
        };
    }
    GoogleError::Transport {
        api: API,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_host_forms() {
        assert_eq!(
            PubSubTarget::emulator("127.0.0.1:8085")
                .unwrap()
                .emulator_url(),
            Some("http://127.0.0.1:8085")
        );
        assert_eq!(
            PubSubTarget::emulator("http://localhost:8085/")
                .unwrap()
                .emulator_url(),
            Some("http://localhost:8085")
        );
        assert!(PubSubTarget::emulator("127.0.0.1:8085/v1").is_err());
        assert!(PubSubTarget::emulator("").is_err());
        assert_eq!(PubSubTarget::google().emulator_url(), None);
    }

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        assert_eq!(http_status_of("ALREADY_EXISTS"), 409);
        assert_eq!(http_status_of("NOT_FOUND"), 404);
        assert_eq!(http_status_of("UNAVAILABLE"), 503);
        assert_eq!(http_status_of("PERMISSION_DENIED"), 403);
        assert_eq!(http_status_of("SOMETHING_NEW"), 500);
    }

    #[test]
    fn service_errors_keep_status_and_message() {
        use google_cloud_gax::error::rpc::{Code, Status};
        let e = google_cloud_pubsub::Error::service(
            Status::default()
                .set_code(Code::AlreadyExists)
                .set_message("Topic already exists"),
        );
        let g = google_error(&e);
        assert!(g.is_already_exists(), "{g:?}");
        assert_eq!(
            g.to_string(),
            "Pub/Sub answered 409 ALREADY_EXISTS: Topic already exists"
        );
        let e = google_cloud_pubsub::Error::service(
            Status::default()
                .set_code(Code::Unavailable)
                .set_message("later"),
        );
        assert!(google_error(&e).is_retryable());
    }
}
