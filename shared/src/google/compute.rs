//! Compute Engine v1: the calls the keepalive needs (instances get and reset, zone operations
//! get, wait and list). The provisioner adds its own on the same client.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

use super::client::url_with_segments;
use super::operation::wait_until_done;
use super::{GoogleClient, GoogleError};
use crate::limits::quote;

pub const API: &str = "Compute Engine";
pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com";

/// One instance, by project, zone and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub project: String,
    pub zone: String,
    pub name: String,
}

impl std::fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "projects/{}/zones/{}/instances/{}",
            self.project, self.zone, self.name
        )
    }
}

/// Accepts a string, a number or null (ids are strings in the API, numbers in some tools).
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn lenient_opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(lenient_string(d)?).filter(|s| !s.is_empty()))
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: String,
    pub last_start_timestamp: Option<String>,
    pub self_link: Option<String>,
    #[serde(default, deserialize_with = "lenient_labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub network_interfaces: Vec<NetworkInterface>,
}

/// One network interface: its internal addresses and its external ones.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(rename = "networkIP", default, deserialize_with = "lenient_opt_string")]
    pub network_ip: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub ipv6_address: Option<String>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub access_configs: Vec<AccessConfig>,
    #[serde(default, deserialize_with = "lenient_list")]
    pub ipv6_access_configs: Vec<AccessConfig>,
}

/// An external address of an interface (`accessConfigs[]`, `ipv6AccessConfigs[]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessConfig {
    #[serde(rename = "natIP", default, deserialize_with = "lenient_opt_string")]
    pub nat_ip: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub external_ipv6: Option<String>,
}

impl Instance {
    /// Every address of the instance: `natIP`, `networkIP` and the IPv6 ones, internal and
    /// external, of every interface (text that is not an address is left out).
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for nic in &self.network_interfaces {
            let external = nic.access_configs.iter().chain(&nic.ipv6_access_configs);
            let texts = [&nic.network_ip, &nic.ipv6_address]
                .into_iter()
                .chain(external.flat_map(|a| [&a.nat_ip, &a.external_ipv6]));
            for ip in texts
                .flatten()
                .filter_map(|t| t.trim().parse::<IpAddr>().ok())
            {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        out
    }
}

/// Labels as a map of strings (an absent or odd `labels` is no labels).
fn lenient_labels<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(m) => m
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    })
}

/// A list whose odd entries are left out (an absent or odd list is empty).
fn lenient_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub operation_type: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub target_id: Option<String>,
    pub target_link: Option<String>,
    pub insert_time: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub self_link: Option<String>,
    pub error: Option<OperationError>,
    pub http_error_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OperationError {
    #[serde(default)]
    pub errors: Vec<OperationErrorItem>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OperationErrorItem {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl Operation {
    pub fn is_done(&self) -> bool {
        self.status == "DONE"
    }

    /// The operation's error in words, if it failed.
    pub fn failure(&self) -> Option<String> {
        let e = self.error.as_ref().filter(|e| !e.errors.is_empty())?;
        let text: Vec<String> = e
            .errors
            .iter()
            .map(|i| {
                format!(
                    "{}{}",
                    i.code
                        .as_deref()
                        .map(|c| format!("{c}: "))
                        .unwrap_or_default(),
                    i.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        Some(if text.is_empty() {
            "unknown error".into()
        } else {
            quote(&text.join("; "))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationList {
    #[serde(default)]
    items: Vec<Operation>,
    next_page_token: Option<String>,
}

/// A Compute Engine v1 client on one base URL.
#[derive(Debug, Clone)]
pub struct Compute {
    client: Arc<GoogleClient>,
    /// `{endpoint}/compute/v1`
    base: Url,
}

impl Compute {
    /// `endpoint` is the host part (`https://compute.googleapis.com` or a fake's URL).
    pub fn new(client: Arc<GoogleClient>, endpoint: &Url) -> Self {
        Compute {
            client,
            base: url_with_segments(endpoint, ["compute", "v1"]),
        }
    }

    fn zone_url(&self, project: &str, zone: &str, rest: &[&str]) -> Url {
        url_with_segments(
            &self.base,
            ["projects", project, "zones", zone]
                .into_iter()
                .chain(rest.iter().copied()),
        )
    }

    pub async fn get_instance(
        &self,
        i: &InstanceRef,
        deadline: Option<Instant>,
    ) -> Result<Instance, GoogleError> {
        let url = self.zone_url(&i.project, &i.zone, &["instances", &i.name]);
        self.client
            .call(API, Method::GET, &url, None, deadline)
            .await
    }

    /// Hard reset. `request_id` makes the call idempotent: the same id again, from this
    /// process or another, answers the first operation instead of resetting twice.
    pub async fn reset(
        &self,
        i: &InstanceRef,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let mut url = self.zone_url(&i.project, &i.zone, &["instances", &i.name, "reset"]);
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        self.client
            .call(API, Method::POST, &url, None, deadline)
            .await
    }

    pub async fn get_zone_operation(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let url = self.zone_url(project, zone, &["operations", name]);
        self.client
            .call(API, Method::GET, &url, None, deadline)
            .await
    }

    /// Waits for a zonal operation with the API's `wait` method (which answers when the
    /// operation is done or after about two minutes), until `deadline`.
    pub async fn wait_zone_operation(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, GoogleError> {
        let url = self.zone_url(project, zone, &["operations", name, "wait"]);
        self.poll_operation(Method::POST, &url, name, deadline)
            .await
    }

    /// A zone's operations matching `query`, page by page while `more(page)` says so.
    pub async fn list_zone_operations(
        &self,
        project: &str,
        zone: &str,
        query: &OperationQuery<'_>,
        deadline: Option<Instant>,
        more: impl FnMut(&[Operation]) -> bool,
    ) -> Result<Vec<Operation>, GoogleError> {
        let url = self.zone_url(project, zone, &["operations"]);
        self.list_operations(&url, query, deadline, more, |page: OperationList| {
            (page.items, page.next_page_token)
        })
        .await
    }

    /// The project's operations in every zone and region and its global ones
    /// (`aggregated/operations`), matching `query`, page by page while `more(page)` says so.
    pub async fn aggregated_operations(
        &self,
        project: &str,
        query: &OperationQuery<'_>,
        deadline: Option<Instant>,
        more: impl FnMut(&[Operation]) -> bool,
    ) -> Result<Vec<Operation>, GoogleError> {
        let url = url_with_segments(
            &self.base,
            ["projects", project, "aggregated", "operations"],
        );
        self.list_operations(
            &url,
            query,
            deadline,
            more,
            |page: AggregatedOperationList| {
                let items = page.items.into_values().flat_map(|s| s.operations);
                (items.collect(), page.next_page_token)
            },
        )
        .await
    }

    async fn list_operations<P: serde::de::DeserializeOwned>(
        &self,
        base: &Url,
        query: &OperationQuery<'_>,
        deadline: Option<Instant>,
        mut more: impl FnMut(&[Operation]) -> bool,
        items: impl Fn(P) -> (Vec<Operation>, Option<String>),
    ) -> Result<Vec<Operation>, GoogleError> {
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..query.max_pages.max(1) {
            let mut url = base.clone();
            {
                let mut q = url.query_pairs_mut();
                if !query.filter.is_empty() {
                    q.append_pair("filter", query.filter);
                }
                if query.newest_first {
                    q.append_pair("orderBy", "creationTimestamp desc");
                }
                q.append_pair("maxResults", &query.page_size.clamp(1, 500).to_string());
                if let Some(t) = &page_token {
                    q.append_pair("pageToken", t);
                }
            }
            let page: P = self
                .client
                .call(API, Method::GET, &url, None, deadline)
                .await?;
            let (page, next) = items(page);
            let go_on = more(&page);
            out.extend(page);
            match next.filter(|t| !t.is_empty()) {
                Some(t) if go_on => page_token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Which operations a list asks for.
#[derive(Debug, Clone, Copy)]
pub struct OperationQuery<'a> {
    /// Compute's filter syntax (`operationType = "reset" AND ...`); empty: all.
    pub filter: &'a str,
    /// `orderBy=creationTimestamp desc`.
    pub newest_first: bool,
    /// Operations a page (`maxResults`, at most 500). An operation takes about 1 KB: a page
    /// of 500 is more than an answer may be (256 KiB).
    pub page_size: usize,
    /// At most this many pages.
    pub max_pages: usize,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregatedOperationList {
    #[serde(default)]
    items: BTreeMap<String, ScopedOperations>,
    next_page_token: Option<String>,
}

/// One scope's part of an aggregated list (a scope without operations has a `warning`).
#[derive(Debug, Deserialize)]
struct ScopedOperations {
    #[serde(default)]
    operations: Vec<Operation>,
}

/// Where an operation lives: zonal, regional or global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Zone(String),
    Region(String),
    Global,
}

impl Compute {
    fn scoped_url(&self, project: &str, scope: &Scope, rest: &[&str]) -> Url {
        let head: Vec<&str> = match scope {
            Scope::Zone(z) => vec!["projects", project, "zones", z],
            Scope::Region(r) => vec!["projects", project, "regions", r],
            Scope::Global => vec!["projects", project, "global"],
        };
        url_with_segments(&self.base, head.into_iter().chain(rest.iter().copied()))
    }

    /// The project's number (`projects.get`'s `id`): what Google-managed service agents are
    /// named after (`service-<number>@gcp-sa-pubsub.iam.gserviceaccount.com`).
    pub async fn project_number(
        &self,
        project: &str,
        deadline: Option<Instant>,
    ) -> Result<String, GoogleError> {
        let url = url_with_segments(&self.base, ["projects", project]);
        let v: serde_json::Value = self
            .client
            .call(API, Method::GET, &url, None, deadline)
            .await?;
        let id = match &v["id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GoogleError::Decode {
                api: API,
                detail: format!("project {project} has no numeric id"),
            });
        }
        Ok(id)
    }

    /// GET a resource (`addresses/NAME`, `firewalls/NAME`, `instances/NAME`); `None` on 404.
    pub async fn get_resource(
        &self,
        project: &str,
        scope: &Scope,
        collection: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<serde_json::Value>, GoogleError> {
        let url = self.scoped_url(project, scope, &[collection, name]);
        self.client.get_if_exists(API, &url, deadline).await
    }

    /// POST a new resource into `collection` with a `requestId`, so a retried insert cannot
    /// create twice. Answers the operation.
    pub async fn insert_resource(
        &self,
        project: &str,
        scope: &Scope,
        collection: &str,
        body: &serde_json::Value,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let mut url = self.scoped_url(project, scope, &[collection]);
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        self.client
            .call(API, Method::POST, &url, Some(body), deadline)
            .await
    }

    /// POST a method of a resource (`instances/NAME/setMetadata`, ...).
    pub async fn post_method(
        &self,
        project: &str,
        scope: &Scope,
        path: &[&str],
        body: Option<&serde_json::Value>,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let url = self.scoped_url(project, scope, path);
        self.client
            .call(API, Method::POST, &url, body, deadline)
            .await
    }

    /// Waits for an operation of any scope by polling it, until `deadline`.
    pub async fn wait_operation(
        &self,
        project: &str,
        scope: &Scope,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, GoogleError> {
        let url = self.scoped_url(project, scope, &["operations", name]);
        self.poll_operation(Method::GET, &url, name, deadline).await
    }

    /// Asks `url` (an operation, or its `wait` method) until the operation is DONE; a DONE
    /// operation that carries errors is an error.
    async fn poll_operation(
        &self,
        method: Method,
        url: &Url,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, GoogleError> {
        let op: Operation = wait_until_done(
            &format!("Compute Engine operation {name}"),
            deadline,
            Duration::from_millis(200),
            Duration::from_secs(5),
            || async {
                let op: Operation = self
                    .client
                    .call(API, method.clone(), url, None, Some(deadline))
                    .await?;
                Ok(op.is_done().then_some(op))
            },
        )
        .await?;
        match op.failure() {
            Some(message) => Err(GoogleError::Operation {
                api: API,
                name: op.name,
                message,
            }),
            None => Ok(op),
        }
    }
}
