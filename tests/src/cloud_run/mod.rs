//! `FakeCloudRun`: the part of the Cloud Run Admin API v2 that deploys a service, under
//! `/v2/projects/{p}/locations/{l}/...`: services (create, get, patch),
//! their IAM policy (`:setIamPolicy`, `:getIamPolicy`) and long-running operations (get),
//! with bearer tokens checked against a [`TokenRegistry`], scripted errors, and the newer
//! Google APIs' error shape `{"error": {"code", "message", "status"}}`.
//!
//! Time is counted in polls, not seconds: a create or patch answers an operation
//! `{"name": "projects/{p}/locations/{l}/operations/{uuid}", "metadata": {"@type":
//! SERVICE_TYPE, ...service}, "done": false}`; its first [`FakeCloudRun::set_operation_polls`]
//! GETs (default 1) answer `done: false`, the next one `done: true` with `response` (the
//! service, with `"@type"`) or `error` (`{code: 3, message}`, see
//! [`FakeCloudRun::fail_operation_next`]). With 0 polls the operation is done at once (the
//! create or patch answer itself has `done: true`). Only GETs of the operation count as polls;
//! a GET of the service does not.
//!
//! While an operation on a service is not done, the service shows `reconciling: true` and a
//! `terminalCondition` in state `CONDITION_RECONCILING`; a service that has never been ready
//! has no `uri` (nor `urls`, `latestReadyRevision`). When the operation succeeds the service
//! is `CONDITION_SUCCEEDED`, `latestReadyRevision` is the revision the operation made and
//! `uri` is `https://{service}-abc123-ez.a.run.app`. When it fails (scripted) the service
//! stays, in state `CONDITION_FAILED` with the message: a failed create leaves a service that
//! was never ready (no `uri`); a failed patch keeps the new spec and generation but the old
//! `latestReadyRevision` and `uri`, as the real API does when a new revision fails.
//! As in Knative, only a change of `template` makes a new revision (named `template.revision`
//! when the request names one: it must start with the service's name and a hyphen, and a
//! name already used for another template is `409 ALREADY_EXISTS`); a patch that leaves the
//! template as it is makes none, and its operation ends as the latest revision did (a failed
//! one fails again).
//!
//! Like the real API, answers carry defaults the request left out: `ingress`
//! (`INGRESS_TRAFFIC_ALL`), `launchStage` (`GA`), `traffic` (100% to the latest revision),
//! `template.timeout` (`300s`), `template.maxInstanceRequestConcurrency` (80), each
//! container's `resources.limits` (`cpu: "1000m"`, `memory: "512Mi"`, per missing key) and
//! `ports` (`[{name: "http1", containerPort: 8080}]`; a port without a name gets `http1`).
//! Output-only fields in a request body are ignored.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::{
    rest::{self, as_int, camel_case, get_path, google_error, parse_object, set_path},
    server::{
        json_response, lock, now, query_param, random_string, rfc3339_utc, FakeState, Faults,
        HttpServer,
    },
    token::{TokenRegistry, FAKE_CLIENT_EMAIL},
};

mod changes;
mod operations;
mod service;

use service::*;

/// Cloud Run's own words for scripted faults (see [`rest::scripted_error`]).
const RUN_ERRORS: &[(u16, &str, &str)] = &[
    (
        403,
        "PERMISSION_DENIED",
        "Permission denied on resource project (or it may not exist).",
    ),
    (412, "FAILED_PRECONDITION", "Precondition failed."),
    (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Write requests' of service 'run.googleapis.com'.",
    ),
];

/// The `@type` of a service in an operation's `metadata` and `response`.
pub const SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";

/// The etag of a policy that was never set (`getIamPolicy` answers `{"etag": "ACAB"}`).
pub const EMPTY_POLICY_ETAG: &str = "ACAB";

/// Fields of a service that only the server sets (ignored in request bodies).
const OUTPUT_ONLY: &[&str] = &[
    "name",
    "uid",
    "generation",
    "createTime",
    "updateTime",
    "deleteTime",
    "expireTime",
    "creator",
    "lastModifier",
    "etag",
    "observedGeneration",
    "terminalCondition",
    "conditions",
    "latestReadyRevision",
    "latestCreatedRevision",
    "trafficStatuses",
    "uri",
    "urls",
    "reconciling",
    "satisfiesPzs",
];

const INGRESS_VALUES: &[&str] = &[
    "INGRESS_TRAFFIC_UNSPECIFIED",
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "INGRESS_TRAFFIC_NONE",
];

struct Service {
    /// The user's fields (template, ingress, labels, ...), defaults filled in.
    spec: Map<String, Value>,
    uid: String,
    generation: u64,
    observed_generation: u64,
    created: OffsetDateTime,
    updated: OffsetDateTime,
    etag: String,
    latest_created: String,
    latest_ready: Option<String>,
    /// Whether it has ever been ready (then it has a `uri`).
    ready_once: bool,
    /// Terminal condition when not reconciling: state, message, last transition.
    condition: (&'static str, Option<String>, OffsetDateTime),
    /// Every revision made so far (short names) with the template it was made from.
    revisions: BTreeMap<String, Value>,
}

struct Operation {
    name: String,
    /// Full name of the service it acts on.
    service: String,
    polls_left: u32,
    done: bool,
    error: Option<String>,
    /// The service as it was when the operation ended.
    response: Option<Value>,
}

struct RunState {
    /// Full name -> service.
    services: BTreeMap<String, Service>,
    /// Full service name -> policy as answered.
    policies: BTreeMap<String, Value>,
    operations: Vec<Operation>,
    operation_polls: u32,
    fail_operation_next: VecDeque<String>,
    faults: Faults,
}

/// The fake Cloud Run Admin API v2.
pub struct FakeCloudRun {
    state: Arc<Mutex<RunState>>,
    server: HttpServer,
}

fn not_found(name: &str) -> Response {
    let (p, l, s) = split_service_name(name).unwrap_or(("-", "-", name));
    google_error(
        404,
        "NOT_FOUND",
        &format!(
            "Resource '{s}' of kind 'SERVICE' in region '{l}' in project '{p}' does not exist."
        ),
    )
}

fn bad_json() -> Response {
    google_error(
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload received. Expected a JSON object.",
    )
}

impl FakeCloudRun {
    crate::server::server_controls!();
    rest::scripted_failures!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = RunState {
            services: BTreeMap::new(),
            policies: BTreeMap::new(),
            operations: Vec::new(),
            operation_polls: 1,
            fail_operation_next: VecDeque::new(),
            faults: Faults::default(),
        };
        let (state, server) = rest::start(state, tokens, handle, "Cloud Run").await;
        FakeCloudRun { state, server }
    }

    /// Operations created from now on answer `done: false` to their first `n` GETs and
    /// `done: true` to the next (default 1). 0: done at once (the create or patch answer
    /// already has `done: true`). Operations already pending keep their count.
    pub fn set_operation_polls(&self, n: u32) {
        lock(&self.state).operation_polls = n;
    }

    /// The next create or patch operation ends with `error: {code: 3, message}` and leaves
    /// its service in state `CONDITION_FAILED` (see the module documentation). Calls queue.
    pub fn fail_operation_next(&self, message: &str) {
        lock(&self.state)
            .fail_operation_next
            .push_back(message.to_owned());
    }

    /// The service as a GET answers it (full name `projects/P/locations/L/services/S`).
    pub fn service(&self, name: &str) -> Option<Value> {
        lock(&self.state).service_view(name)
    }

    /// Full names of the services, sorted.
    pub fn services(&self) -> Vec<String> {
        lock(&self.state).services.keys().cloned().collect()
    }

    /// The IAM policy last set on the service (full name), as answered; `None` if never set.
    pub fn iam_policy(&self, service_name: &str) -> Option<Value> {
        lock(&self.state).policies.get(service_name).cloned()
    }
}

async fn handle(
    State(ctx): State<FakeState<RunState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&ctx.state);
    if let Some(refused) = rest::gate(&headers, &ctx.tokens, &mut st.faults, RUN_ERRORS) {
        return refused;
    }
    let path = uri.path().trim_matches('/');
    let decoded = rest::segments(path);
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let query = uri.query();
    match segs[..] {
        ["v2", "projects", p, "locations", l, "services"] if method == Method::POST => {
            let Some(id) = query_param(query, "serviceId").filter(|s| !s.is_empty()) else {
                return google_error(400, "INVALID_ARGUMENT", "service_id: is required.");
            };
            if !valid_service_id(&id) {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid value specified for service_id ({id:?}): must use only lowercase alphanumeric characters and dashes, begin with a letter, not end with a dash, and be at most 49 characters long."),
                );
            }
            let Some(body) = parse_object(&body) else {
                return bad_json();
            };
            st.create(&format!("projects/{p}/locations/{l}/services/{id}"), &body)
        }
        ["v2", "projects", p, "locations", l, "services", last] => {
            let (s, verb) = match last.split_once(':') {
                Some((s, verb)) => (s, Some(verb)),
                None => (last, None),
            };
            let name = format!("projects/{p}/locations/{l}/services/{s}");
            match (verb, method) {
                (None, Method::GET) => match st.service_view(&name) {
                    Some(v) => json_response(200, &v),
                    None => not_found(&name),
                },
                (None, Method::PATCH) => {
                    let Some(body) = parse_object(&body) else {
                        return bad_json();
                    };
                    if !st.services.contains_key(&name) && !valid_service_id(s) {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Invalid value specified for service_id ({s:?})."),
                        );
                    }
                    st.update(&name, query, &body)
                }
                (Some("setIamPolicy"), Method::POST) => {
                    let Some(body) = parse_object(&body) else {
                        return bad_json();
                    };
                    st.set_policy(&name, &body)
                }
                (Some("getIamPolicy"), Method::GET | Method::POST) => {
                    if !st.services.contains_key(&name) {
                        return not_found(&name);
                    }
                    let policy = st
                        .policies
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| json!({"etag": EMPTY_POLICY_ETAG}));
                    json_response(200, &policy)
                }
                _ => google_error(
                    404,
                    "NOT_FOUND",
                    &format!("The requested URL /{path} was not found on this server."),
                ),
            }
        }
        ["v2", "projects", p, "locations", l, "operations", id] if method == Method::GET => {
            let name = format!("projects/{p}/locations/{l}/operations/{id}");
            let Some(idx) = st.operations.iter().position(|o| o.name == name) else {
                return google_error(404, "NOT_FOUND", &format!("Operation {name} not found."));
            };
            st.poll(idx);
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        _ => google_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL /{path} was not found on this server."),
        ),
    }
}

#[cfg(test)]
mod tests;
