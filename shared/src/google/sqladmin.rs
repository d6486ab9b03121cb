//! Cloud SQL Admin v1: instances, operations, users, databases.

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

mod decommission;

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

    pub async fn insert_instance(
        &self,
        project: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let url = self.url(project, &["instances"]);
        self.client
            .call_once(API, Method::POST, &url, Some(body), deadline)
            .await
    }

    pub async fn patch_instance(
        &self,
        project: &str,
        name: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let url = self.url(project, &["instances", name]);
        self.client
            .call(API, Method::PATCH, &url, Some(body), deadline)
            .await
    }

    /// Polls an operation until DONE (or `deadline`); a failed operation is an error.
    pub async fn wait_operation(
        &self,
        project: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<SqlOperation, GoogleError> {
        let url = self.url(project, &["operations", name]);
        let op: SqlOperation = wait_until_done(
            &format!("Cloud SQL operation {name}"),
            deadline,
            Duration::from_millis(200),
            Duration::from_secs(10),
            || async {
                let op: SqlOperation = self
                    .client
                    .call(API, Method::GET, &url, None, Some(deadline))
                    .await?;
                Ok((op.status == "DONE").then_some(op))
            },
        )
        .await?;
        match &op.error {
            Some(e) if !e.errors.is_empty() => Err(GoogleError::Operation {
                api: API,
                name: op.name.clone(),
                message: e
                    .errors
                    .iter()
                    .map(|x| {
                        format!(
                            "{}: {}",
                            x.code.as_deref().unwrap_or("ERROR"),
                            x.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            _ => Ok(op),
        }
    }

    pub async fn list_users(
        &self,
        project: &str,
        instance: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, GoogleError> {
        let url = self.url(project, &["instances", instance, "users"]);
        let v: Value = self
            .client
            .call(API, Method::GET, &url, None, deadline)
            .await?;
        Ok(names(&v))
    }

    /// Creates the user, or sets its password when it exists.
    pub async fn put_user(
        &self,
        project: &str,
        instance: &str,
        user: &str,
        password: &str,
        exists: bool,
        deadline: Option<Instant>,
    ) -> Result<SqlOperation, GoogleError> {
        let body = json!({"name": user, "password": password});
        if exists {
            let mut url = self.url(project, &["instances", instance, "users"]);
            url.query_pairs_mut().append_pair("name", user);
            self.client
                .call(API, Method::PUT, &url, Some(&body), deadline)
                .await
        } else {
            let url = self.url(project, &["instances", instance, "users"]);
            self.client
                .call(API, Method::POST, &url, Some(&body), deadline)
                .await
        }
    }

    pub async fn list_databases(
        &self,
        project: &str,
        instance: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, GoogleError> {
        let url = self.url(project, &["instances", instance, "databases"]);
        let v: Value = self
            .client
            .call(API, Method::GET, &url, None, deadline)
            .await?;
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
