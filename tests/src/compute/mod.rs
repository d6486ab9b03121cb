//! `FakeCompute`: the part of Compute Engine v1 the keepalive and the provisioner call, under
//! `/compute/v1/projects/{p}/...`, a file per resource:
//!
//! - [`instances`]: zonal instances: get, insert ([`instance_insert`] checks the body and
//!   builds the answer), reset, setMetadata, setLabels;
//! - [`addresses`]: regional addresses (static external IPs): insert, get;
//! - [`firewalls`]: global firewall rules: insert, get;
//! - [`delete`]: deleting an instance, an address (refused while an instance uses it) or a
//!   firewall rule;
//! - [`operations`]: zonal, regional and global operations: get, and wait (zonal);
//!   [`operation_lists`]: a zone's list and the project's aggregated list, with the
//!   keepalive's [`filter`]s only;
//! - [`project`]: the project itself: get (every project exists, with a number derived from
//!   its name);
//!
//! with `requestId` deduplication on every change, scripted faults per [`ComputeRoute`] in
//! Compute's error shape ([`errors`]), and bearer tokens checked against a [`TokenRegistry`].
//! Other paths and methods answer 404, as the real API answers a URL it does not know.
//!
//! Links in answers (`selfLink`, `targetLink`, `zone`, `region`, `network`, `machineType`,
//! disk `source`, address `users`) have the real API's form,
//! `https://www.googleapis.com/compute/v1/projects/...` ([`names`]), never the fake's own
//! address: a client builds its URLs from names and its configured endpoint. Resources are
//! created when the change is accepted; the operation then only has to be polled to `DONE`.

// Checks return the answer to give as their error: one allocation less is not worth boxing.
#![allow(clippy::result_large_err)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
    Router,
};
use serde_json::{json, Value};

mod addresses;
mod delete;
mod errors;
mod filter;
mod firewalls;
mod instance_insert;
mod instances;
mod names;
mod operation_lists;
mod operations;
mod project;
mod routes;
#[cfg(test)]
mod tests;

use crate::server::{
    bearer_token, hang, json_response, lock, query_pairs, FakeState, Fault, Faults, HttpServer,
};
use crate::token::TokenRegistry;
use routes::Route;

/// The routes whose answers can be scripted (and that are counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComputeRoute {
    /// `GET .../instances/{i}`
    GetInstance,
    /// `POST .../instances/{i}/reset`
    Reset,
    /// `GET .../zones/{z}/operations`
    ListOperations,
    /// `GET .../zones/{z}/operations/{op}`
    GetOperation,
    /// `POST .../zones/{z}/operations/{op}/wait`
    WaitOperation,
    /// `POST .../zones/{z}/instances`
    InsertInstance,
    /// `POST .../instances/{i}/setMetadata`
    SetMetadata,
    /// `POST .../instances/{i}/setLabels`
    SetLabels,
    /// `GET .../regions/{r}/addresses/{a}`
    GetAddress,
    /// `POST .../regions/{r}/addresses`
    InsertAddress,
    /// `GET .../global/firewalls/{f}`
    GetFirewall,
    /// `POST .../global/firewalls`
    InsertFirewall,
    /// `GET .../regions/{r}/operations/{op}`
    GetRegionOperation,
    /// `GET .../global/operations/{op}`
    GetGlobalOperation,
    /// `GET /compute/v1/projects/{p}`
    GetProject,
    /// `GET /compute/v1/projects/{p}/aggregated/operations`
    AggregatedOperations,
    /// `DELETE` of an instance, an address or a firewall rule
    Delete,
}

impl ComputeRoute {
    /// The permission a scripted 403 names.
    fn permission(self) -> &'static str {
        match self {
            ComputeRoute::GetInstance => "compute.instances.get",
            ComputeRoute::Delete => "compute.*.delete",
            ComputeRoute::Reset => "compute.instances.reset",
            ComputeRoute::ListOperations => "compute.zoneOperations.list",
            ComputeRoute::GetOperation | ComputeRoute::WaitOperation => {
                "compute.zoneOperations.get"
            }
            ComputeRoute::InsertInstance => "compute.instances.create",
            ComputeRoute::SetMetadata => "compute.instances.setMetadata",
            ComputeRoute::SetLabels => "compute.instances.setLabels",
            ComputeRoute::GetAddress => "compute.addresses.get",
            ComputeRoute::InsertAddress => "compute.addresses.create",
            ComputeRoute::GetFirewall => "compute.firewalls.get",
            ComputeRoute::InsertFirewall => "compute.firewalls.create",
            ComputeRoute::GetRegionOperation => "compute.regionOperations.get",
            ComputeRoute::GetGlobalOperation => "compute.globalOperations.get",
            ComputeRoute::GetProject => "compute.projects.get",
            ComputeRoute::AggregatedOperations => "compute.globalOperations.list",
        }
    }
}

/// (project, zone or region, name)
type Key = (String, String, String);

struct ComputeState {
    instances: HashMap<Key, instances::Instance>,
    /// (project, region, name)
    addresses: HashMap<Key, addresses::Address>,
    /// (project, name)
    firewalls: HashMap<(String, String), firewalls::Firewall>,
    operations: Vec<operations::Operation>,
    /// (project, requestId) -> operation name
    request_ids: HashMap<(String, String), String>,
    polls_to_done: u32,
    boot_polls: u32,
    wait_completes: bool,
    faults: HashMap<ComputeRoute, Faults<Fault>>,
    counts: HashMap<ComputeRoute, usize>,
    /// Successful creations by kind ("instance", "address", "firewall").
    created: HashMap<&'static str, usize>,
    next_external: u32,
    next_internal: u32,
    /// Operations created so far (orders operations inserted at the same time).
    seq: u64,
}

/// A string field of an insert body, or the default the API fills in.
fn string_field(v: &Value, name: &str, default: &str) -> Value {
    json!(v.get(name).and_then(Value::as_str).unwrap_or(default))
}

/// The fake Compute Engine API.
pub struct FakeCompute {
    state: Arc<Mutex<ComputeState>>,
    server: HttpServer,
}

impl FakeCompute {
    crate::server::server_controls!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = Arc::new(Mutex::new(ComputeState {
            instances: HashMap::new(),
            addresses: HashMap::new(),
            firewalls: HashMap::new(),
            operations: Vec::new(),
            request_ids: HashMap::new(),
            polls_to_done: 1,
            boot_polls: 2,
            wait_completes: true,
            faults: HashMap::new(),
            counts: HashMap::new(),
            created: HashMap::new(),
            next_external: 10,
            next_internal: 0,
            seq: 0,
        }));
        let ctx = FakeState {
            state: state.clone(),
            tokens,
        };
        let router = Router::new().fallback(handle).with_state(ctx);
        let server = HttpServer::start(router)
            .await
            .expect("bind fake Compute Engine server");
        FakeCompute { state, server }
    }

    /// Successful creations through the API of `kind`: `"instance"`, `"address"` or
    /// `"firewall"` (not seeded ones, nor refused inserts, nor requestId duplicates).
    pub fn insert_count(&self, kind: &str) -> usize {
        lock(&self.state).created.get(kind).copied().unwrap_or(0)
    }

    fn script(&self, route: ComputeRoute, set: impl FnOnce(&mut Faults<Fault>)) {
        set(lock(&self.state).faults.entry(route).or_default());
    }

    /// The next `n` requests to `route` (after authentication) answer `status` in Compute's
    /// error shape (429 rateLimitExceeded, 403 forbidden, 404 notFound, 5xx backendError).
    pub fn fail_next(&self, route: ComputeRoute, n: usize, status: u16) {
        self.script(route, |f| f.next(n, Fault::Status(status)));
    }

    /// Every request to `route` answers `status` until [`clear_faults`](Self::clear_faults).
    pub fn fail_always(&self, route: ComputeRoute, status: u16) {
        self.script(route, |f| f.always(Fault::Status(status)));
    }

    /// Requests to `route` are answered normally, but only after `delay` (until cleared): a
    /// slow API, and a way to make two clients' reads overlap.
    pub fn delay_always(&self, route: ComputeRoute, delay: Duration) {
        self.script(route, |f| f.always(Fault::Delay(delay)));
    }

    /// Requests to `route` never get an answer until cleared.
    pub fn hang_always(&self, route: ComputeRoute) {
        self.script(route, |f| f.always(Fault::Hang));
    }

    /// Removes every scripted fault.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Requests to `route` so far (whatever the answer, authenticated or not).
    pub fn route_count(&self, route: ComputeRoute) -> usize {
        lock(&self.state).counts.get(&route).copied().unwrap_or(0)
    }
}

/// Routes a request: counted, authenticated, a scripted fault if any, then served.
async fn handle(
    State(ctx): State<FakeState<ComputeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let Some(route) = Route::parse(&method, &segs) else {
        return errors::unknown_url(uri.path());
    };
    let which = route.route();
    *lock(&ctx.state).counts.entry(which).or_default() += 1;
    if !bearer_token(&headers).is_some_and(|t| ctx.tokens.is_valid(t)) {
        return errors::unauthenticated();
    }
    let fault = lock(&ctx.state)
        .faults
        .get_mut(&which)
        .and_then(Faults::take);
    match fault {
        Some(Fault::Hang) => match hang().await {},
        Some(Fault::Status(status)) => {
            return errors::scripted_error(status, which, &route.scripted_resource(&body))
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let query = query_pairs(uri.query());
    let request_id = query
        .iter()
        .find(|(k, v)| k == "requestId" && !v.is_empty())
        .map(|(_, v)| v.clone());
    let resource = route.resource();
    let instance = |p: &str, z: &str, i: &str| instances::InstanceCall {
        key: (p.to_owned(), z.to_owned(), i.to_owned()),
        resource: &resource,
        request_id: request_id.clone(),
    };
    let mut st = lock(&ctx.state);
    match route {
        Route::GetProject { p } => json_response(200, &project::project_json(p)),
        Route::AggregatedOps { p } => st.aggregated_operations(p, &query),
        Route::InsertInstance { p, z } => st.insert_instance(p, z, &body, request_id, &resource),
        Route::GetInstance { p, z, i } => st.get_instance(instance(p, z, i)),
        Route::Reset { p, z, i } => st.reset_instance(instance(p, z, i)),
        Route::SetMetadata { p, z, i } => st.set_metadata(instance(p, z, i), &body),
        Route::SetLabels { p, z, i } => st.set_labels(instance(p, z, i), &body),
        Route::ListOps { p, z } => st.list_zone_operations(p, z, &query),
        Route::GetOp { p, ref scope, op } => st.get_operation(p, scope, op, &resource),
        Route::WaitOp { p, z, op } => st.wait_operation(p, z, op, &resource),
        Route::InsertAddress { p, r } => st.insert_address(p, r, &body, request_id, &resource),
        Route::GetAddress { p, r, a } => st.get_address((p.into(), r.into(), a.into()), &resource),
        Route::InsertFirewall { p } => st.insert_firewall(p, &body, request_id, &resource),
        Route::GetFirewall { p, f } => st.get_firewall((p.into(), f.into()), &resource),
        Route::Delete { p, ref target } => delete::delete(&mut st, p, target, request_id),
    }
}
