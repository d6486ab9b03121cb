//! Cloud Monitoring API v3: alert policies and notification channels (list, get, create,
//! patch with an update mask), and the open alerts of a project (`projects.alerts.list`).
//!
//! Lists are read whole, page by page (at most [`MAX_PAGES`]), and filtered by the caller:
//! the provisioner finds what it made by a user label, which the list filters of the API
//! would need quoting rules for that are not worth the risk.

use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use tokio::time::Instant;
use url::Url;

use super::client::{url_with_segments, Idempotent, Request};
use super::{GoogleClient, GoogleError};

pub const API: &str = "Cloud Monitoring";
pub const DEFAULT_ENDPOINT: &str = "https://monitoring.googleapis.com";
/// The bound of one listing: pages of [`PAGE_SIZE`].
pub const MAX_PAGES: usize = 50;
const PAGE_SIZE: &str = "1000";

#[derive(Debug, Clone)]
pub struct Monitoring {
    client: Arc<GoogleClient>,
    /// `{endpoint}/v3`
    base: Url,
}

impl Monitoring {
    pub fn new(client: Arc<GoogleClient>, endpoint: &Url) -> Self {
        Monitoring {
            client,
            base: url_with_segments(endpoint, ["v3"]),
        }
    }

    /// `{base}/projects/{project}/{collection}`
    fn collection(&self, project: &str, collection: &str) -> Url {
        url_with_segments(&self.base, ["projects", project, collection])
    }

    /// `{base}/{name}` for a resource name `projects/P/alertPolicies/ID`.
    fn resource(&self, name: &str) -> Url {
        url_with_segments(&self.base, name.split('/').filter(|s| !s.is_empty()))
    }

    /// Every item of a list under `key`, following `nextPageToken`.
    async fn list_all(
        &self,
        url: Url,
        key: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, GoogleError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_url = url.clone();
            page_url
                .query_pairs_mut()
                .append_pair("pageSize", PAGE_SIZE);
            if let Some(t) = &token {
                page_url.query_pairs_mut().append_pair("pageToken", t);
            }
            let page: Value = self
                .client
                .send(Request::get(API, &page_url), deadline)
                .await?;
            if let Some(list) = page.get(key).and_then(Value::as_array) {
                items.extend(list.iter().cloned());
            }
            token = page
                .get("nextPageToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(items);
            }
        }
        Err(GoogleError::Decode {
            api: API,
            detail: format!("more than {MAX_PAGES} pages of {key}"),
        })
    }

    /// Every alert policy of the project.
    pub async fn list_alert_policies(
        &self,
        project: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, GoogleError> {
        let url = self.collection(project, "alertPolicies");
        self.list_all(url, "alertPolicies", deadline).await
    }

    /// The policy `name` (`projects/P/alertPolicies/ID`), or `None`.
    pub async fn get_alert_policy(
        &self,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Value>, GoogleError> {
        self.client
            .get_if_exists(API, &self.resource(name), deadline)
            .await
    }

    /// Creates a policy (the server names it). Sent once: the API has no request id, and a
    /// repeat after a lost answer would make a second policy.
    pub async fn create_alert_policy(
        &self,
        project: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let url = self.collection(project, "alertPolicies");
        let request = Request::change(API, Method::POST, &url, Idempotent::No).body(body);
        self.client.send(request, deadline).await
    }

    /// Sets the fields named in `update_mask` (comma-separated, e.g.
    /// `conditions,alertStrategy`) of policy `name` to their values in `body`.
    pub async fn patch_alert_policy(
        &self,
        name: &str,
        body: &Value,
        update_mask: &str,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        self.patch(name, body, update_mask, deadline).await
    }

    /// Every notification channel of the project.
    pub async fn list_notification_channels(
        &self,
        project: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, GoogleError> {
        let url = self.collection(project, "notificationChannels");
        self.list_all(url, "notificationChannels", deadline).await
    }

    /// The channel `name` (`projects/P/notificationChannels/ID`), or `None`.
    pub async fn get_notification_channel(
        &self,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Value>, GoogleError> {
        self.client
            .get_if_exists(API, &self.resource(name), deadline)
            .await
    }

    /// Creates a channel (the server names it); sent once, as a policy.
    pub async fn create_notification_channel(
        &self,
        project: &str,
        body: &Value,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let url = self.collection(project, "notificationChannels");
        let request = Request::change(API, Method::POST, &url, Idempotent::No).body(body);
        self.client.send(request, deadline).await
    }

    /// Sets the fields named in `update_mask` of channel `name` to their values in `body`.
    pub async fn patch_notification_channel(
        &self,
        name: &str,
        body: &Value,
        update_mask: &str,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        self.patch(name, body, update_mask, deadline).await
    }

    /// The same patch twice is one: retried.
    async fn patch(
        &self,
        name: &str,
        body: &Value,
        update_mask: &str,
        deadline: Option<Instant>,
    ) -> Result<Value, GoogleError> {
        let mut url = self.resource(name);
        url.query_pairs_mut().append_pair("updateMask", update_mask);
        let request = Request::change(API, Method::PATCH, &url, Idempotent::Yes).body(body);
        self.client.send(request, deadline).await
    }

    /// The project's open alerts (`projects.alerts.list` with `state = "OPEN"`); each has
    /// `policy` (a snapshot: `name`, `displayName`, `userLabels`), `openTime` and, for a
    /// log-based policy, `log.extractedLabels`.
    pub async fn list_open_alerts(
        &self,
        project: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, GoogleError> {
        let mut url = self.collection(project, "alerts");
        url.query_pairs_mut()
            .append_pair("filter", "state = \"OPEN\"");
        let alerts = self.list_all(url, "alerts", deadline).await?;
        // The filter is the server's; the state is checked here all the same.
        Ok(alerts
            .into_iter()
            .filter(|a| a.get("state").and_then(Value::as_str).unwrap_or("OPEN") == "OPEN")
            .collect())
    }
}
