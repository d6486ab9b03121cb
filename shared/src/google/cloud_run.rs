//! Cloud Run Admin v2: services (get, create, update: long-running operations) and their IAM
//! policy.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

use super::client::{url_with_segments, Idempotent, Request};
use super::operation::{failure_text, settle, LongRunningOperation, OperationState, Pacing, Poll};
use super::{GoogleClient, GoogleError};

pub const API: &str = "Cloud Run Admin";
pub const DEFAULT_ENDPOINT: &str = "https://run.googleapis.com";

/// How often a deployment is asked about: it takes a minute or two.
const PACING: Pacing = Pacing {
    first: Duration::from_millis(500),
    max: Duration::from_secs(5),
};

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

/// A `google.rpc.Status`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RpcStatus {
    pub code: Option<i64>,
    pub message: Option<String>,
}

impl LongRunningOperation for RunOperation {
    fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> OperationState {
        match (&self.error, self.done) {
            (Some(e), _) => {
                let code = e.code.map(|c| format!("error code {c}"));
                // The message says it all when there is one.
                let code = code.filter(|_| e.message.as_deref().is_none_or(str::is_empty));
                OperationState::Failed(failure_text([(code.as_deref(), e.message.as_deref())]))
            }
            (None, true) => OperationState::Succeeded,
            (None, false) => OperationState::Running("deploying".into()),
        }
    }
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

    /// Starts creating the service. Sent once: a repeat would answer `ALREADY_EXISTS` for the
    /// first attempt's work, which the caller could not tell from someone else's.
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
        let request = Request::change(API, Method::POST, &url, Idempotent::No).body(body);
        self.client.send(request, deadline).await
    }

    /// Replaces the service's spec (a new revision); the same spec twice is one revision.
    pub async fn update_service(
        &self,
        project: &str,
        region: &str,
        service: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<RunOperation, GoogleError> {
        let url = self.service(project, region, service);
        let request = Request::change(API, Method::PATCH, &url, Idempotent::Yes).body(body);
        self.client.send(request, deadline).await
    }

    /// `op` once done: as it is when its answer already says so, else waited for (until
    /// `deadline`). A failed operation is [`GoogleError::Operation`].
    pub async fn finish(
        &self,
        op: RunOperation,
        deadline: Instant,
    ) -> Result<RunOperation, GoogleError> {
        let name = op.name.clone();
        match settle(API, op)? {
            Poll::Ready(op) => Ok(op),
            Poll::Pending(_) => self.wait_operation(&name, deadline).await,
        }
    }

    /// Waits for `operation` (its full name) until done or `deadline`.
    pub async fn wait_operation(
        &self,
        operation: &str,
        deadline: Instant,
    ) -> Result<RunOperation, GoogleError> {
        let url = url_with_segments(&self.base, operation.split('/'));
        self.client
            .wait_operation(operation, Request::get(API, &url), deadline, PACING)
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
        self.client.send(Request::get(API, &url), deadline).await
    }

    /// Sets the whole policy, with the etag it was read with (so a concurrent change is
    /// refused rather than lost). Setting the same policy again changes nothing.
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
        let body = json!({ "policy": policy });
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes).body(&body);
        self.client.send(request, deadline).await
    }
}
