//! Cloud SQL Admin v1: instances, operations, users, databases.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

use super::client::{url_with_segments, Idempotent, Request};
use super::operation::{failure_text, LongRunningOperation, OperationState, Pacing};
use super::{GoogleClient, GoogleError};

pub const API: &str = "Cloud SQL Admin";
pub const DEFAULT_ENDPOINT: &str = "https://sqladmin.googleapis.com";

/// Databases every Cloud SQL for PostgreSQL instance has; anything else was created by a user.
pub const BUILTIN_DATABASES: [&str; 4] = ["postgres", "cloudsqladmin", "template0", "template1"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlOperation {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub operation_type: String,
    pub error: Option<SqlOperationErrors>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SqlOperationErrors {
    #[serde(default)]
    pub errors: Vec<SqlOperationError>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SqlOperationError {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl LongRunningOperation for SqlOperation {
    fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> OperationState {
        if self.status != "DONE" {
            return OperationState::Running(format!("status {}", self.status));
        }
        match &self.error {
            Some(e) if !e.errors.is_empty() => OperationState::Failed(failure_text(
                e.errors
                    .iter()
                    .map(|x| (x.code.as_deref(), x.message.as_deref())),
            )),
            _ => OperationState::Succeeded,
        }
    }
}

/// How often an operation is asked about: creating an instance takes minutes.
const PACING: Pacing = Pacing {
    first: Duration::from_millis(200),
    max: Duration::from_secs(10),
};

#[derive(Debug, Clone)]
pub struct SqlAdmin {
    client: Arc<GoogleClient>,
    base: Url,
}

impl SqlAdmin {
    pub fn new(client: Arc<GoogleClient>, endpoint: &Url) -> Self {
        SqlAdmin {
            client,
            base: url_with_segments(endpoint, ["v1"]),
        }
    }

    fn url(&self, project: &str, rest: &[&str]) -> Url {
        url_with_segments(
            &self.base,
            ["projects", project]
                .into_iter()
                .chain(rest.iter().copied()),
        )
    }

    /// The instance, or `None` when it does not exist.
    pub async fn get_instance(
        &self,
        project: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Value>, GoogleError> {
        let url = self.url(project, &["instances", name]);
        self.client.get_if_exists(API, &url, deadline).await
    }

    /// Starts creating the instance. Sent once: a repeat would meet the first attempt's
    /// instance as `ALREADY_EXISTS`, which the caller adopts and checks.
    pub async fn insert_instance(
        &self,
        project: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let url = self.url(project, &["instances"]);
        let request = Request::change(API, Method::POST, &url, Idempotent::No).body(body);
        self.client.send(request, deadline).await
    }

    /// Waits for operation `name` until DONE or `deadline`; a failed one is an error.
    pub async fn wait_operation(
        &self,
        project: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<SqlOperation, GoogleError> {
        let url = self.url(project, &["operations", name]);
        self.client
            .wait_operation(name, Request::get(API, &url), deadline, PACING)
            .await
    }

    pub async fn list_users(
        &self,
        project: &str,
        instance: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, GoogleError> {
        let url = self.url(project, &["instances", instance, "users"]);
        let v: Value = self.client.send(Request::get(API, &url), deadline).await?;
        Ok(names(&v))
    }

    /// Creates the user with `password`. Sent once: a repeat would meet the first attempt's
    /// user as `ALREADY_EXISTS`, which the caller adopts.
    pub async fn create_user(
        &self,
        project: &str,
        instance: &str,
        user: &str,
        password: &str,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let body = json!({"name": user, "password": password});
        let url = self.url(project, &["instances", instance, "users"]);
        let request = Request::change(API, Method::POST, &url, Idempotent::No).body(&body);
        self.client.send(request, deadline).await
    }

    /// Sets the user's password (`PUT .../users?name=U`).
    pub async fn set_user_password(
        &self,
        project: &str,
        instance: &str,
        user: &str,
        password: &str,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let body = json!({"name": user, "password": password});
        let mut url = self.url(project, &["instances", instance, "users"]);
        url.query_pairs_mut().append_pair("name", user);
        let request = Request::change(API, Method::PUT, &url, Idempotent::Yes).body(&body);
        self.client.send(request, deadline).await
    }

    pub async fn list_databases(
        &self,
        project: &str,
        instance: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, GoogleError> {
        let url = self.url(project, &["instances", instance, "databases"]);
        let v: Value = self.client.send(Request::get(API, &url), deadline).await?;
        Ok(names(&v))
    }
}

fn names(list: &Value) -> Vec<String> {
    list.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
