//! Compute Engine v1: what the keepalive needs (an instance, its reset, the zone's reset
//! operations) and what the provisioner creates (regional addresses, firewall rules,
//! instances), typed in [`model`].

pub mod model;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

pub use model::{Address, Firewall, Instance, InstanceSpec, Operation};

use super::client::{url_with_segments, Idempotent, Request};
use super::operation::Pacing;
use super::{GoogleClient, GoogleError};

pub const API: &str = "Compute Engine";
pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com";

/// How often an operation is asked about: most take seconds.
const PACING: Pacing = Pacing {
    first: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

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

/// Where a resource or an operation lives: zonal, regional or global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Zone(String),
    Region(String),
    Global,
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

    fn url(&self, project: &str, scope: &Scope, rest: &[&str]) -> Url {
        let head: Vec<&str> = match scope {
            Scope::Zone(z) => vec!["projects", project, "zones", z],
            Scope::Region(r) => vec!["projects", project, "regions", r],
            Scope::Global => vec!["projects", project, "global"],
        };
        url_with_segments(&self.base, head.into_iter().chain(rest.iter().copied()))
    }

    fn instance_url(&self, i: &InstanceRef, rest: &[&str]) -> Url {
        let path: Vec<&str> = ["instances", i.name.as_str()]
            .into_iter()
            .chain(rest.iter().copied())
            .collect();
        self.url(&i.project, &Scope::Zone(i.zone.clone()), &path)
    }

    /// The instance; a 404 is an error (the keepalive checks an instance that must exist).
    pub async fn get_instance(
        &self,
        i: &InstanceRef,
        deadline: Option<Instant>,
    ) -> Result<Instance, GoogleError> {
        let url = self.instance_url(i, &[]);
        self.client.send(Request::get(API, &url), deadline).await
    }

    /// The instance, or `None` when it does not exist.
    pub async fn find_instance(
        &self,
        i: &InstanceRef,
        deadline: Option<Instant>,
    ) -> Result<Option<Instance>, GoogleError> {
        let url = self.instance_url(i, &[]);
        self.client.get_if_exists(API, &url, deadline).await
    }

    /// The regional address, or `None` when it is not reserved.
    pub async fn find_address(
        &self,
        project: &str,
        region: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Address>, GoogleError> {
        let url = self.url(project, &Scope::Region(region.into()), &["addresses", name]);
        self.client.get_if_exists(API, &url, deadline).await
    }

    /// The firewall rule, or `None` when it does not exist.
    pub async fn find_firewall(
        &self,
        project: &str,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Firewall>, GoogleError> {
        let url = self.url(project, &Scope::Global, &["firewalls", name]);
        self.client.get_if_exists(API, &url, deadline).await
    }

    /// Starts creating `instance` in `zone` (see [`insert`](Self::insert)).
    pub async fn insert_instance(
        &self,
        project: &str,
        zone: &str,
        instance: &Instance,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let scope = Scope::Zone(zone.into());
        self.insert(project, &scope, "instances", instance, request_id, deadline)
            .await
    }

    /// Starts reserving `address` in `region` (see [`insert`](Self::insert)).
    pub async fn insert_address(
        &self,
        project: &str,
        region: &str,
        address: &Address,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let scope = Scope::Region(region.into());
        self.insert(project, &scope, "addresses", address, request_id, deadline)
            .await
    }

    /// Starts creating `firewall` (see [`insert`](Self::insert)).
    pub async fn insert_firewall(
        &self,
        project: &str,
        firewall: &Firewall,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        self.insert(
            project,
            &Scope::Global,
            "firewalls",
            firewall,
            request_id,
            deadline,
        )
        .await
    }

    /// POSTs a new resource into `collection` with `request_id`: a repeat with the same id
    /// answers the first operation instead of creating twice, so it is retried.
    async fn insert<T: Serialize>(
        &self,
        project: &str,
        scope: &Scope,
        collection: &str,
        resource: &T,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let body = serde_json::to_value(resource).map_err(|e| GoogleError::Decode {
            api: API,
            detail: format!("{collection} body: {e}"),
        })?;
        let mut url = self.url(project, scope, &[collection]);
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes).body(&body);
        self.client.send(request, deadline).await
    }

    /// Hard reset. `request_id` makes the call idempotent: the same id again, from this
    /// process or another, answers the first operation instead of resetting twice.
    pub async fn reset(
        &self,
        i: &InstanceRef,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let mut url = self.instance_url(i, &["reset"]);
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes);
        self.client.send(request, deadline).await
    }

    /// Replaces the instance's labels; `fingerprint` is the `labelFingerprint` they were read
    /// with (a concurrent change answers 412 instead of being lost).
    pub async fn set_labels(
        &self,
        i: &InstanceRef,
        labels: &std::collections::BTreeMap<String, String>,
        fingerprint: Option<&str>,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let mut url = self.instance_url(i, &["setLabels"]);
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        let body = serde_json::json!({"labels": labels, "labelFingerprint": fingerprint});
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes).body(&body);
        self.client.send(request, deadline).await
    }

    /// Replaces the instance's metadata items; `fingerprint` is the metadata's fingerprint
    /// they were read with (a concurrent change answers 412 instead of being lost).
    pub async fn set_metadata(
        &self,
        i: &InstanceRef,
        items: &[model::MetadataItem],
        fingerprint: Option<&str>,
        request_id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Operation, GoogleError> {
        let mut url = self.instance_url(i, &["setMetadata"]);
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        let body = serde_json::json!({"items": items, "fingerprint": fingerprint});
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes).body(&body);
        self.client.send(request, deadline).await
    }

    /// The project's number (`projects.get`'s `id`): what Google-managed service agents are
    /// named after (`service-<number>@gcp-sa-pubsub.iam.gserviceaccount.com`).
    pub async fn project_number(
        &self,
        project: &str,
        deadline: Option<Instant>,
    ) -> Result<String, GoogleError> {
        let url = url_with_segments(&self.base, ["projects", project]);
        let p: model::Project = self.client.send(Request::get(API, &url), deadline).await?;
        if p.id.is_empty() || !p.id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GoogleError::Decode {
                api: API,
                detail: format!("project {project} has no numeric id"),
            });
        }
        Ok(p.id)
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
        let url = self.url(
            project,
            &Scope::Zone(zone.into()),
            &["operations", name, "wait"],
        );
        // `wait` only waits: asking again changes nothing.
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes);
        self.wait(name, request, deadline).await
    }

    /// Waits for an operation of any scope by polling it, until `deadline`.
    pub async fn wait_operation(
        &self,
        project: &str,
        scope: &Scope,
        name: &str,
        deadline: Instant,
    ) -> Result<Operation, GoogleError> {
        let url = self.url(project, scope, &["operations", name]);
        self.wait(name, Request::get(API, &url), deadline).await
    }

    async fn wait<Op>(
        &self,
        name: &str,
        request: Request<'_>,
        deadline: Instant,
    ) -> Result<Op, GoogleError>
    where
        Op: super::operation::LongRunningOperation + DeserializeOwned,
    {
        self.client
            .wait_operation(name, request, deadline, PACING)
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
        let url = self.url(project, &Scope::Zone(zone.into()), &["operations"]);
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

    async fn list_operations<P: DeserializeOwned>(
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
            let page: P = self.client.send(Request::get(API, &url), deadline).await?;
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
    items: std::collections::BTreeMap<String, ScopedOperations>,
    next_page_token: Option<String>,
}

/// One scope's part of an aggregated list (a scope without operations has a `warning`).
#[derive(Debug, Deserialize)]
struct ScopedOperations {
    #[serde(default)]
    operations: Vec<Operation>,
}
