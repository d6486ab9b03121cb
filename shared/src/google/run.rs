//! Cloud Run Admin v2: services (get, create, update: long-running operations) and their IAM
//! policy.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

use super::client::url_with_segments;
use super::operation::wait_until_done;
use super::{GoogleClient, GoogleError};

pub const API: &str = "Cloud Run Admin";
pub const DEFAULT_ENDPOINT: &str = "https://run.googleapis.com";

/// A `google.longrunning.Operation`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunOperation {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub done: bool,
    pub error: Option<RpcStatus>,
    pub response: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RpcStatus {
    pub code: Option<i64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CloudRun {
    client: Arc<GoogleClient>,
    /// `{endpoint}/v2`
    base: Url,
}

impl CloudRun {
    pub fn new(client: Arc<GoogleClient>, endpoint: &Url) -> Self {
        CloudRun {
            client,
            base: url_with_segments(endpoint, ["v2"]),
        }
    }

    fn services(&self, project: &str, region: &str) -> Url {
        url_with_segments(
            &self.base,
            ["projects", project, "locations", region, "services"],
        )
    }

    fn service(&self, project: &str, region: &str, service: &str) -> Url {
        url_with_segments(&self.services(project, region), [service])
    }

    /// The service, or `None` when it does not exist.
    pub async fn get_service(
        &self,
        project: &str,
        region: &str,
        service: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Value>, GoogleError> {
        let url = self.service(project, region, service);
        self.client.get_if_exists(API, &url, deadline).await
    }

    /// Starts creating the service (one attempt: a retried create would answer
    /// `ALREADY_EXISTS` for the first one's work).
    pub async fn create_service(
        &self,
        project: &str,
        region: &str,
        service: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<RunOperation, GoogleError> {
        let mut url = self.services(project, region);
        url.query_pairs_mut().append_pair("serviceId", service);
        self.client
            .call_once(API, Method::POST, &url, Some(body), deadline)
            .await
    }

    /// Replaces the service's spec (a new revision). Idempotent: retried.
    pub async fn update_service(
        &self,
        project: &str,
        region: &str,
        service: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<RunOperation, GoogleError> {
        let url = self.service(project, region, service);
        self.client
            .call(API, Method::PATCH, &url, Some(body), deadline)
            .await
    }

    /// `op` once done: as it is when the answer already says so, else polled (see
    /// [`wait_operation`](Self::wait_operation)).
    pub async fn finish(
        &self,
        op: RunOperation,
        deadline: Instant,
    ) -> Result<RunOperation, GoogleError> {
        if !op.done {
            return self.wait_operation(&op.name, deadline).await;
        }
        match &op.error {
            Some(e) => Err(GoogleError::Operation {
                api: API,
                name: op.name.clone(),
                message: e
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("error code {}", e.code.unwrap_or_default())),
            }),
            None => Ok(op),
        }
    }

    /// Polls `operation` (its full name) until done; an operation that ends in error is
    /// [`GoogleError::Operation`].
    pub async fn wait_operation(
        &self,
        operation: &str,
        deadline: Instant,
    ) -> Result<RunOperation, GoogleError> {
        let url = url_with_segments(&self.base, operation.split('/'));
        wait_until_done(
            &format!("{API} operation {operation}"),
            deadline,
            Duration::from_millis(500),
            Duration::from_secs(5),
            || async {
                let op: RunOperation = self
                    .client
                    .call(API, Method::GET, &url, None, Some(deadline))
                    .await?;
                if !op.done {
                    return Ok(None);
                }
                match &op.error {
                    Some(e) => Err(GoogleError::Operation {
                        api: API,
                        name: operation.to_string(),
                        message: e.message.clone().unwrap_or_else(|| {
                            format!("error code {}", e.code.unwrap_or_default())
                        }),
                    }),
                    None => Ok(Some(op)),
                }
            },
        )
        .await
    }

    pub async fn get_iam_policy(
        &self,
        project: &str,
        region: &str,
        service: &str,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let url = url_with_segments(
            &self.services(project, region),
            [format!("{service}:getIamPolicy").as_str()],
        );
        self.client
            .call(API, Method::GET, &url, None, deadline)
            .await
    }

    /// Sets the whole policy (with the etag it was read with, so a concurrent change is
    /// refused rather than lost).
    pub async fn set_iam_policy(
        &self,
        project: &str,
        region: &str,
        service: &str,
        policy: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let url = url_with_segments(
            &self.services(project, region),
            [format!("{service}:setIamPolicy").as_str()],
        );
        self.client
            .call(
                API,
                Method::POST,
                &url,
                Some(&json!({ "policy": policy })),
                deadline,
            )
            .await
    }
}
