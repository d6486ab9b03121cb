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

/// `projects/P/locations/L/services/S` -> `(P, L, S)`.
fn split_service_name(name: &str) -> Option<(&str, &str, &str)> {
    match *name.split('/').collect::<Vec<_>>() {
        ["projects", p, "locations", l, "services", s]
            if !p.is_empty() && !l.is_empty() && !s.is_empty() =>
        {
            Some((p, l, s))
        }
        _ => None,
    }
}

/// Lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen,
/// at most 49 characters.
fn valid_service_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 49
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whole seconds of a proto `Duration` written `<n>s`.
fn whole_seconds(s: &str) -> Option<u64> {
    let n = s.strip_suffix('s')?;
    if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `<n>Mi` or `<n>Gi`, n > 0.
fn valid_memory(s: &str) -> bool {
    let Some(n) = s.strip_suffix("Mi").or_else(|| s.strip_suffix("Gi")) else {
        return false;
    };
    !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) && n.parse::<u64>().is_ok_and(|n| n > 0)
}

/// `user:`, `serviceAccount:`, `group:` (an e-mail address), `domain:` (a domain),
/// `allUsers`, `allAuthenticatedUsers`.
fn valid_member(m: &str) -> bool {
    if m == "allUsers" || m == "allAuthenticatedUsers" {
        return true;
    }
    let email = |s: &str| {
        s.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !s.contains(char::is_whitespace)
    };
    if let Some(rest) = m
        .strip_prefix("user:")
        .or_else(|| m.strip_prefix("serviceAccount:"))
        .or_else(|| m.strip_prefix("group:"))
    {
        return email(rest);
    }
    m.strip_prefix("domain:")
        .is_some_and(|d| d.contains('.') && !d.contains(['@', ' ']))
}

/// `roles/x`, or a custom role `projects/p/roles/x`, `organizations/o/roles/x`.
fn valid_role(r: &str) -> bool {
    match *r.split('/').collect::<Vec<_>>() {
        ["roles", x] => !x.is_empty(),
        ["projects" | "organizations", o, "roles", x] => !o.is_empty() && !x.is_empty(),
        _ => false,
    }
}

fn user_fields(body: &Map<String, Value>) -> Map<String, Value> {
    body.iter()
        .filter(|(k, _)| !OUTPUT_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn invalid(message: impl Into<String>) -> Result<(), String> {
    Err(message.into())
}

/// The checks the real API makes that matter to a deployment (message of a 400 otherwise).
fn validate_service(spec: &Map<String, Value>) -> Result<(), String> {
    let Some(template) = spec.get("template").and_then(Value::as_object) else {
        return invalid("service.template: is required.");
    };
    let Some(containers) = template
        .get("containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return invalid("service.template.containers: at least one container is required.");
    };
    for (i, c) in containers.iter().enumerate() {
        let at = format!("service.template.containers[{i}]");
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        if image.trim().is_empty() {
            return invalid(format!("{at}.image: Must specify a container image."));
        }
        if let Some(env) = c.get("env") {
            let Some(env) = env.as_array() else {
                return invalid(format!("{at}.env: must be a list."));
            };
            for (j, e) in env.iter().enumerate() {
                let name = e.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return invalid(format!("{at}.env[{j}].name: is required."));
                }
                if e.get("value").is_some() && e.get("valueSource").is_some() {
                    return invalid(format!(
                        "{at}.env[{j}]: value and valueSource cannot both be set."
                    ));
                }
                if let Some(source) = e.get("valueSource") {
                    let secret = source
                        .pointer("/secretKeyRef/secret")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if secret.is_empty() {
                        return invalid(format!(
                            "{at}.env[{j}].valueSource.secretKeyRef.secret: is required."
                        ));
                    }
                }
            }
        }
        if let Some(memory) = c.pointer("/resources/limits/memory") {
            if !memory.as_str().is_some_and(valid_memory) {
                return invalid(format!(
                    "{at}.resources.limits.memory: Invalid value {memory}: must be a quantity such as 512Mi or 1Gi."
                ));
            }
        }
        if let Some(ports) = c.get("ports") {
            let Some(ports) = ports.as_array() else {
                return invalid(format!("{at}.ports: must be a list."));
            };
            for p in ports {
                if let Some(port) = p.get("containerPort") {
                    if !as_int(port).is_some_and(|n| (1..=65535).contains(&n)) {
                        return invalid(format!(
                            "{at}.ports.containerPort: must be between 1 and 65535."
                        ));
                    }
                }
            }
        }
    }
    if let Some(timeout) = template.get("timeout") {
        if !timeout
            .as_str()
            .and_then(whole_seconds)
            .is_some_and(|s| (1..=3600).contains(&s))
        {
            return invalid(format!(
                "service.template.timeout: Invalid value {timeout}: must be between 1s and 3600s."
            ));
        }
    }
    if let Some(c) = template.get("maxInstanceRequestConcurrency") {
        if !as_int(c).is_some_and(|n| (1..=1000).contains(&n)) {
            return invalid(
                "service.template.maxInstanceRequestConcurrency: must be between 1 and 1000.",
            );
        }
    }
    if let Some(scaling) = template.get("scaling") {
        let count = |k: &str| scaling.get(k).map(as_int);
        let (min, max) = (count("minInstanceCount"), count("maxInstanceCount"));
        if matches!(min, Some(None) | Some(Some(i64::MIN..=-1)))
            || matches!(max, Some(None) | Some(Some(i64::MIN..=-1)))
        {
            return invalid(
                "service.template.scaling: instance counts must be non-negative integers.",
            );
        }
        if let (Some(Some(min)), Some(Some(max))) = (min, max) {
            if max > 0 && min > max {
                return invalid(
                    "service.template.scaling: minInstanceCount must not exceed maxInstanceCount.",
                );
            }
        }
    }
    if let Some(ingress) = spec.get("ingress") {
        if !ingress
            .as_str()
            .is_some_and(|s| INGRESS_VALUES.contains(&s))
        {
            return invalid(format!(
                "Invalid value at 'service.ingress' ({ingress}): not a valid enum value."
            ));
        }
    }
    Ok(())
}

/// The defaults the real API fills in.
fn fill_defaults(spec: &mut Map<String, Value>) {
    spec.entry("ingress")
        .or_insert_with(|| json!("INGRESS_TRAFFIC_ALL"));
    spec.entry("launchStage").or_insert_with(|| json!("GA"));
    spec.entry("traffic").or_insert_with(
        || json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]),
    );
    let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    template.entry("timeout").or_insert_with(|| json!("300s"));
    template
        .entry("maxInstanceRequestConcurrency")
        .or_insert_with(|| json!(80));
    let Some(containers) = template.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    for c in containers.iter_mut().filter_map(Value::as_object_mut) {
        let resources = c.entry("resources").or_insert_with(|| json!({}));
        if let Some(resources) = resources.as_object_mut() {
            let limits = resources.entry("limits").or_insert_with(|| json!({}));
            if let Some(limits) = limits.as_object_mut() {
                limits.entry("cpu").or_insert_with(|| json!("1000m"));
                limits.entry("memory").or_insert_with(|| json!("512Mi"));
            }
        }
        let ports = c
            .entry("ports")
            .or_insert_with(|| json!([{"containerPort": 8080}]));
        if let Some(ports) = ports.as_array_mut() {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.entry("name").or_insert_with(|| json!("http1"));
            }
        }
    }
}

fn with_type(mut service: Value) -> Value {
    if let Some(obj) = service.as_object_mut() {
        obj.insert("@type".into(), json!(SERVICE_TYPE));
    }
    service
}

fn new_etag() -> String {
    format!("\"{}\"", random_string(27))
}

/// An IAM policy etag, as IAM writes them (base64 of 8 bytes).
fn new_policy_etag() -> String {
    let id = uuid::Uuid::new_v4();
    base64::engine::general_purpose::STANDARD.encode(&id.as_bytes()[..8])
}

/// The revision a template makes: the name it asks for (`template.revision`), else a
/// generated one.
fn revision_for(service: &str, spec: &Map<String, Value>, generation: u64) -> String {
    match spec
        .get("template")
        .and_then(|t| t.get("revision"))
        .and_then(Value::as_str)
    {
        Some(r) => format!("{service}/revisions/{r}"),
        None => revision_name(service, generation),
    }
}

/// The last segment of a revision's full name.
fn short(revision: &str) -> String {
    revision.rsplit('/').next().unwrap_or(revision).to_string()
}

/// A revision name the template asks for must start with the service's name and a hyphen,
/// and be a valid name of at most 63 characters.
fn validate_revision(service: &str, spec: &Map<String, Value>) -> Result<(), String> {
    let Some(r) = spec.get("template").and_then(|t| t.get("revision")) else {
        return Ok(());
    };
    let id = service.rsplit('/').next().unwrap_or(service);
    let ok = r.as_str().is_some_and(|r| {
        r.len() <= 63
            && r.strip_prefix(id)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| !rest.is_empty())
            && !r.ends_with('-')
            && r.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    });
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "service.template.revision: Invalid value {r}: must start with '{id}-' and use lowercase letters, digits and hyphens, at most 63 characters."
        ))
    }
}

fn revision_name(service: &str, generation: u64) -> String {
    let id = service.rsplit('/').next().unwrap_or(service);
    format!(
        "{service}/revisions/{id}-{generation:05}-{}",
        random_string(3).to_ascii_lowercase()
    )
}

/// The URI a ready service answers.
fn service_uri(service_id: &str) -> String {
    format!("https://{service_id}-abc123-ez.a.run.app")
}

fn new_service(name: &str, spec: Map<String, Value>) -> Service {
    let t = now();
    let latest_created = revision_for(name, &spec, 1);
    let revisions = BTreeMap::from([(short(&latest_created), spec["template"].clone())]);
    Service {
        spec,
        uid: uuid::Uuid::new_v4().to_string(),
        generation: 1,
        observed_generation: 0,
        created: t,
        updated: t,
        etag: new_etag(),
        latest_created,
        latest_ready: None,
        ready_once: false,
        condition: ("CONDITION_RECONCILING", None, t),
        revisions,
    }
}

impl RunState {
    fn reconciling(&self, name: &str) -> bool {
        self.operations.iter().any(|o| !o.done && o.service == name)
    }

    fn service_json(&self, name: &str, svc: &Service) -> Value {
        let reconciling = self.reconciling(name);
        let id = name.rsplit('/').next().unwrap_or(name);
        let mut v = Value::Object(svc.spec.clone());
        v["name"] = json!(name);
        v["uid"] = json!(svc.uid);
        v["generation"] = json!(svc.generation.to_string());
        v["createTime"] = json!(rfc3339_utc(svc.created));
        v["updateTime"] = json!(rfc3339_utc(svc.updated));
        v["creator"] = json!(FAKE_CLIENT_EMAIL);
        v["lastModifier"] = json!(FAKE_CLIENT_EMAIL);
        v["etag"] = json!(svc.etag);
        if svc.observed_generation > 0 {
            v["observedGeneration"] = json!(svc.observed_generation.to_string());
        }
        v["latestCreatedRevision"] = json!(svc.latest_created);
        if let Some(r) = &svc.latest_ready {
            v["latestReadyRevision"] = json!(r);
        }
        let (state, message, t) = if reconciling {
            ("CONDITION_RECONCILING", None, svc.updated)
        } else {
            (svc.condition.0, svc.condition.1.clone(), svc.condition.2)
        };
        let condition = |kind: &str| {
            let mut c = json!({"type": kind, "state": state, "lastTransitionTime": rfc3339_utc(t)});
            if let Some(m) = &message {
                c["message"] = json!(m);
            }
            c
        };
        v["terminalCondition"] = condition("Ready");
        v["conditions"] = json!([condition("RoutesReady"), condition("ConfigurationsReady")]);
        if svc.ready_once {
            v["uri"] = json!(service_uri(id));
            v["urls"] = json!([service_uri(id)]);
        }
        v["reconciling"] = json!(reconciling);
        v
    }

    fn service_view(&self, name: &str) -> Option<Value> {
        self.services
            .get(name)
            .map(|svc| self.service_json(name, svc))
    }

    fn op_json(&self, op: &Operation) -> Value {
        let metadata = self
            .service_view(&op.service)
            .or_else(|| op.response.clone())
            .unwrap_or_else(|| json!({"name": op.service}));
        let mut v = json!({"name": op.name, "metadata": with_type(metadata), "done": op.done});
        if op.done {
            if let Some(message) = &op.error {
                v["error"] = json!({"code": 3, "message": message});
            } else if let Some(response) = &op.response {
                v["response"] = with_type(response.clone());
            }
        }
        v
    }

    /// A new operation on `service`; `still_failing` is the failure it ends with unless a
    /// scripted one comes first (a patch that makes no new revision leaves a failed latest
    /// revision failed).
    fn new_operation(&mut self, service: &str, still_failing: Option<String>) -> usize {
        let error = self.fail_operation_next.pop_front().or(still_failing);
        let (p, l, _) = split_service_name(service).unwrap_or(("-", "-", "-"));
        self.operations.push(Operation {
            name: format!(
                "projects/{p}/locations/{l}/operations/{}",
                uuid::Uuid::new_v4()
            ),
            service: service.to_owned(),
            polls_left: self.operation_polls,
            done: false,
            error,
            response: None,
        });
        let idx = self.operations.len() - 1;
        if self.operation_polls == 0 {
            self.finish(idx);
        }
        idx
    }

    /// One GET of an operation.
    fn poll(&mut self, idx: usize) {
        let op = &mut self.operations[idx];
        if op.done {
            return;
        }
        if op.polls_left == 0 {
            self.finish(idx);
        } else {
            op.polls_left -= 1;
        }
    }

    fn finish(&mut self, idx: usize) {
        let op = &mut self.operations[idx];
        if op.done {
            return;
        }
        op.done = true;
        let (service, error) = (op.service.clone(), op.error.clone());
        if let Some(svc) = self.services.get_mut(&service) {
            let t = now();
            svc.observed_generation = svc.generation;
            match error {
                Some(message) => svc.condition = ("CONDITION_FAILED", Some(message), t),
                None => {
                    svc.latest_ready = Some(svc.latest_created.clone());
                    svc.ready_once = true;
                    svc.condition = ("CONDITION_SUCCEEDED", None, t);
                }
            }
        }
        let response = self.service_view(&service);
        self.operations[idx].response = response;
    }

    /// Validates a service body, stores the service and answers its create operation.
    fn create(&mut self, name: &str, body: &Map<String, Value>) -> Response {
        let mut spec = user_fields(body);
        if let Err(message) = validate_service(&spec).and_then(|()| validate_revision(name, &spec))
        {
            return google_error(400, "INVALID_ARGUMENT", &message);
        }
        if self.services.contains_key(name) {
            let id = name.rsplit('/').next().unwrap_or(name);
            return google_error(
                409,
                "ALREADY_EXISTS",
                &format!("Resource '{id}' already exists."),
            );
        }
        fill_defaults(&mut spec);
        self.services
            .insert(name.to_owned(), new_service(name, spec));
        let idx = self.new_operation(name, None);
        json_response(200, &self.op_json(&self.operations[idx]))
    }

    fn update(&mut self, name: &str, query: Option<&str>, body: &Map<String, Value>) -> Response {
        if let Some(given) = body.get("name").and_then(Value::as_str) {
            if !given.is_empty() && given != name {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("service.name {given:?} does not match the URL ({name})."),
                );
            }
        }
        let Some(svc) = self.services.get(name) else {
            if query_param(query, "allowMissing").as_deref() == Some("true") {
                return self.create(name, body);
            }
            return not_found(name);
        };
        let mask = query_param(query, "updateMask").filter(|m| !m.trim().is_empty());
        let mut spec = match mask {
            None => user_fields(body),
            Some(mask) => {
                let mut spec = svc.spec.clone();
                for path in mask.split(',').map(|p| camel_case(p.trim())) {
                    let segs: Vec<&str> = path.split('.').collect();
                    if segs.iter().any(|s| s.is_empty()) || OUTPUT_ONLY.contains(&segs[0]) {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Invalid field mask path: {path:?}."),
                        );
                    }
                    set_path(&mut spec, &segs, get_path(body, &segs).cloned());
                }
                spec
            }
        };
        if let Err(message) = validate_service(&spec).and_then(|()| validate_revision(name, &spec))
        {
            return google_error(400, "INVALID_ARGUMENT", &message);
        }
        fill_defaults(&mut spec);
        // As in Knative: a new revision only when the template changes. A patch that leaves
        // it as it is makes none, so a failed latest revision stays failed.
        let template = spec.get("template").cloned().unwrap_or(Value::Null);
        let new_revision = svc.spec.get("template") != Some(&template);
        let asked = revision_for(name, &spec, svc.generation + 1);
        if new_revision
            && svc
                .revisions
                .get(&short(&asked))
                .is_some_and(|made| *made != template)
        {
            return google_error(
                409,
                "ALREADY_EXISTS",
                &format!(
                    "Revision named '{}' with different configuration already exists.",
                    short(&asked)
                ),
            );
        }
        let still_failing = match svc.condition {
            ("CONDITION_FAILED", ref message, _) if !new_revision => message.clone(),
            _ => None,
        };
        if let Some(svc) = self.services.get_mut(name) {
            if svc.spec != spec {
                svc.generation += 1;
            }
            svc.spec = spec;
            svc.updated = now();
            svc.etag = new_etag();
            if new_revision {
                svc.latest_created = asked;
                svc.revisions.insert(short(&svc.latest_created), template);
            }
        }
        let idx = self.new_operation(name, still_failing);
        json_response(200, &self.op_json(&self.operations[idx]))
    }

    fn set_policy(&mut self, name: &str, body: &Map<String, Value>) -> Response {
        if !self.services.contains_key(name) {
            return not_found(name);
        }
        let Some(policy) = body.get("policy").and_then(Value::as_object) else {
            return google_error(400, "INVALID_ARGUMENT", "policy: is required.");
        };
        let current = self
            .policies
            .get(name)
            .and_then(|p| p["etag"].as_str())
            .unwrap_or(EMPTY_POLICY_ETAG);
        if let Some(etag) = policy
            .get("etag")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            if etag != current {
                return google_error(
                    409,
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
                );
            }
        }
        let empty = Vec::new();
        let bindings = match policy.get("bindings") {
            None => &empty,
            Some(b) => match b.as_array() {
                Some(b) => b,
                None => {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "policy.bindings: must be a list.",
                    )
                }
            },
        };
        let mut kept = Vec::new();
        for binding in bindings {
            let role = binding.get("role").and_then(Value::as_str).unwrap_or("");
            if !valid_role(role) {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Role ({role}) does not exist in the resource's hierarchy."),
                );
            }
            let members = binding
                .get("members")
                .map(|m| m.as_array().cloned().unwrap_or_default())
                .unwrap_or_default();
            for m in &members {
                let ok = m.as_str().is_some_and(valid_member);
                if !ok {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("Invalid member: {m}. Members must be of the form user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers."),
                    );
                }
            }
            // IAM drops bindings without members.
            if !members.is_empty() {
                let mut b = binding.clone();
                b["members"] = Value::Array(members);
                kept.push(b);
            }
        }
        let version = policy.get("version").and_then(as_int).unwrap_or(1);
        let mut answer = json!({"version": version, "etag": new_policy_etag()});
        if !kept.is_empty() {
            answer["bindings"] = Value::Array(kept);
        }
        self.policies.insert(name.to_owned(), answer.clone());
        json_response(200, &answer)
    }
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
mod tests {
    use super::*;

    /// Stores a ready service (generation 1, `CONDITION_SUCCEEDED`, with a `uri`), no
    /// operation, no checks.
    fn add_service(run: &FakeCloudRun, name: &str, service: Value) {
        let mut spec = service.as_object().map(user_fields).unwrap_or_default();
        fill_defaults(&mut spec);
        let mut svc = new_service(name, spec);
        svc.observed_generation = 1;
        svc.latest_ready = Some(svc.latest_created.clone());
        svc.ready_once = true;
        svc.condition = ("CONDITION_SUCCEEDED", None, svc.created);
        lock(&run.state).services.insert(name.to_owned(), svc);
    }

    /// Ends every pending operation now (as if polled to the end).
    fn finish_operations(run: &FakeCloudRun) {
        let mut st = lock(&run.state);
        for idx in 0..st.operations.len() {
            st.finish(idx);
        }
    }
    use crate::rest::send;

    const PARENT: &str = "projects/p/locations/europe-west1";
    const NAME: &str = "projects/p/locations/europe-west1/services/keepalive";

    async fn fixture() -> (FakeCloudRun, String, reqwest::Client) {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        (
            FakeCloudRun::start(tokens).await,
            token,
            reqwest::Client::new(),
        )
    }

    fn service_body() -> Value {
        json!({
            "template": {
                "containers": [{
                    "image": "europe-docker.pkg.dev/p/r/keepalive:1",
                    "env": [
                        {"name": "RUST_LOG", "value": "info"},
                        {"name": "WA_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "wa", "version": "latest"}}}
                    ],
                    "resources": {"limits": {"memory": "128Mi", "cpu": "1"}},
                    "ports": [{"containerPort": 8080}]
                }],
                "serviceAccount": "keepalive@p.iam.gserviceaccount.com",
                "timeout": "300s",
                "maxInstanceRequestConcurrency": 80,
                "scaling": {"minInstanceCount": 0, "maxInstanceCount": 1}
            },
            "ingress": "INGRESS_TRAFFIC_ALL",
            "labels": {"app": "keepalive"},
            "description": "WhatsApp keepalive"
        })
    }

    async fn create(
        run: &FakeCloudRun,
        token: &str,
        client: &reqwest::Client,
        body: Value,
    ) -> (u16, Value) {
        send(
            client,
            reqwest::Method::POST,
            format!("{}/v2/{PARENT}/services?serviceId=keepalive", run.url()),
            token,
            Some(body),
        )
        .await
    }

    async fn get(
        run: &FakeCloudRun,
        token: &str,
        client: &reqwest::Client,
        name: &str,
    ) -> (u16, Value) {
        send(
            client,
            reqwest::Method::GET,
            format!("{}/v2/{name}", run.url()),
            token,
            None,
        )
        .await
    }

    #[tokio::test]
    async fn create_polls_to_done_and_the_service_gets_a_uri() {
        let (run, token, client) = fixture().await;
        let (status, op) = create(&run, &token, &client, service_body()).await;
        assert_eq!(status, 200);
        let op_name = op["name"].as_str().unwrap().to_owned();
        assert!(op_name.starts_with(&format!("{PARENT}/operations/")));
        assert_eq!(op["done"], false);
        assert_eq!(op["metadata"]["@type"], SERVICE_TYPE);
        assert_eq!(op["metadata"]["name"], NAME);
        assert!(op.get("response").is_none());

        // Reconciling: no uri yet.
        let (status, svc) = get(&run, &token, &client, NAME).await;
        assert_eq!(status, 200);
        assert_eq!(svc["reconciling"], true);
        assert!(svc.get("uri").is_none());
        assert!(svc.get("latestReadyRevision").is_none());
        assert_eq!(svc["terminalCondition"]["state"], "CONDITION_RECONCILING");

        let (status, op) = get(&run, &token, &client, &op_name).await;
        assert_eq!(status, 200);
        assert_eq!(op["done"], false);
        let (_, op) = get(&run, &token, &client, &op_name).await;
        assert_eq!(op["done"], true);
        assert!(op.get("error").is_none());
        let response = &op["response"];
        assert_eq!(response["@type"], SERVICE_TYPE);
        assert_eq!(response["uri"], "https://keepalive-abc123-ez.a.run.app");
        assert_eq!(response["reconciling"], false);

        let (_, svc) = get(&run, &token, &client, NAME).await;
        assert_eq!(svc["name"], NAME);
        assert_eq!(svc["uri"], "https://keepalive-abc123-ez.a.run.app");
        assert_eq!(svc["reconciling"], false);
        assert_eq!(svc["generation"], "1");
        assert_eq!(svc["observedGeneration"], "1");
        assert_eq!(
            svc["terminalCondition"],
            json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": svc["terminalCondition"]["lastTransitionTime"]})
        );
        assert_eq!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);
        assert!(svc["latestReadyRevision"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{NAME}/revisions/keepalive-00001-")));
        assert!(svc["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(svc["etag"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(svc["createTime"].as_str().unwrap().ends_with('Z'));
        // What was sent, plus defaults.
        let container = &svc["template"]["containers"][0];
        assert_eq!(container["image"], "europe-docker.pkg.dev/p/r/keepalive:1");
        assert_eq!(
            container["env"],
            service_body()["template"]["containers"][0]["env"]
        );
        assert_eq!(
            container["resources"]["limits"],
            json!({"memory": "128Mi", "cpu": "1"})
        );
        assert_eq!(
            container["ports"],
            json!([{"name": "http1", "containerPort": 8080}])
        );
        assert_eq!(svc["template"]["scaling"]["maxInstanceCount"], 1);
        assert_eq!(svc["labels"], json!({"app": "keepalive"}));
        assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_ALL");
        assert_eq!(svc["launchStage"], "GA");

        assert_eq!(run.services(), vec![NAME.to_owned()]);
        assert_eq!(run.service(NAME).unwrap()["uri"], svc["uri"]);
        assert_eq!(lock(&run.state).operations.len(), 1);

        let (status, err) = get(&run, &token, &client, &format!("{PARENT}/operations/nope")).await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["status"], "NOT_FOUND");
        let (status, err) = get(&run, &token, &client, &format!("{PARENT}/services/other")).await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["code"], 404);
        assert_eq!(err["error"]["status"], "NOT_FOUND");
    }

    #[tokio::test]
    async fn duplicate_create_is_already_exists() {
        let (run, token, client) = fixture().await;
        assert_eq!(create(&run, &token, &client, service_body()).await.0, 200);
        let (status, err) = create(&run, &token, &client, service_body()).await;
        assert_eq!(status, 409);
        assert_eq!(err["error"]["code"], 409);
        assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
        assert_eq!(lock(&run.state).operations.len(), 1);
    }

    #[tokio::test]
    async fn invalid_services_are_refused() {
        let (run, token, client) = fixture().await;
        let with = |pointer: &str, value: Value| {
            let mut b = service_body();
            *b.pointer_mut(pointer).unwrap() = value;
            b
        };
        for body in [
            with("/template/timeout", json!("0s")),
            with("/template/timeout", json!("3601s")),
            with("/template/timeout", json!("5m")),
            with(
                "/template/containers/0/resources/limits/memory",
                json!("512MB"),
            ),
            with("/template/containers/0/image", json!("")),
            with("/template/containers", json!([])),
            with("/ingress", json!("EVERYONE")),
            with(
                "/template/scaling",
                json!({"minInstanceCount": 3, "maxInstanceCount": 1}),
            ),
        ] {
            let (status, err) = create(&run, &token, &client, body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        }
        for id in [
            "",
            "Keepalive",
            "1keepalive",
            "keep_alive",
            "keepalive-",
            &"k".repeat(50),
        ] {
            let (status, err) = send(
                &client,
                reqwest::Method::POST,
                format!("{}/v2/{PARENT}/services?serviceId={id}", run.url()),
                &token,
                Some(service_body()),
            )
            .await;
            assert_eq!(status, 400, "{id}");
            assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        }
        let (status, _) = send(
            &client,
            reqwest::Method::POST,
            format!("{}/v2/{PARENT}/services", run.url()),
            &token,
            Some(service_body()),
        )
        .await;
        assert_eq!(status, 400);
        assert!(run.services().is_empty());
        // The longest valid id and other units are fine.
        let body = with(
            "/template/containers/0/resources/limits/memory",
            json!("1Gi"),
        );
        let (status, _) = send(
            &client,
            reqwest::Method::POST,
            format!(
                "{}/v2/{PARENT}/services?serviceId={}",
                run.url(),
                "k".repeat(49)
            ),
            &token,
            Some(body),
        )
        .await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn iam_policy_set_then_get() {
        let (run, token, client) = fixture().await;
        add_service(&run, NAME, service_body());
        let url = |verb: &str| format!("{}/v2/{NAME}:{verb}", run.url());
        let (status, empty) = send(
            &client,
            reqwest::Method::GET,
            url("getIamPolicy"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(empty, json!({"etag": "ACAB"}));
        assert_eq!(run.iam_policy(NAME), None);

        let bindings = json!([{"role": "roles/run.invoker", "members": ["serviceAccount:x@p.iam.gserviceaccount.com"]}]);
        let (status, set) = send(
            &client,
            reqwest::Method::POST,
            url("setIamPolicy"),
            &token,
            Some(json!({"policy": {"bindings": bindings, "etag": "ACAB"}})),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(set["bindings"], bindings);
        assert_eq!(set["version"], 1);
        let etag = set["etag"].as_str().unwrap().to_owned();
        assert_ne!(etag, "ACAB");
        assert_eq!(run.iam_policy(NAME), Some(set.clone()));

        let (_, got) = send(
            &client,
            reqwest::Method::GET,
            url("getIamPolicy"),
            &token,
            None,
        )
        .await;
        assert_eq!(got, set);
        let (_, got) = send(
            &client,
            reqwest::Method::POST,
            url("getIamPolicy"),
            &token,
            Some(json!({"options": {"requestedPolicyVersion": 3}})),
        )
        .await;
        assert_eq!(got, set);
        // Percent-encoded verb separator.
        let (status, got) = send(
            &client,
            reqwest::Method::GET,
            format!("{}/v2/{NAME}%3AgetIamPolicy", run.url()),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(got, set);

        // A stale etag is refused.
        let (status, err) = send(
            &client,
            reqwest::Method::POST,
            url("setIamPolicy"),
            &token,
            Some(json!({"policy": {"bindings": [], "etag": "ACAB"}})),
        )
        .await;
        assert_eq!(status, 409);
        assert_eq!(err["error"]["status"], "ABORTED");

        for member in [
            "x@p.iam.gserviceaccount.com",
            "serviceaccount:x@p.iam.gserviceaccount.com",
            "user:",
            "everyone",
        ] {
            let (status, err) = send(
                &client,
                reqwest::Method::POST,
                url("setIamPolicy"),
                &token,
                Some(json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": [member]}]}})),
            )
            .await;
            assert_eq!(status, 400, "{member}");
            assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        }
        assert_eq!(run.iam_policy(NAME), Some(set.clone()));

        let (status, set2) = send(
            &client,
            reqwest::Method::POST,
            url("setIamPolicy"),
            &token,
            Some(json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers", "group:g@example.com", "domain:example.com", "user:u@example.com"]}], "etag": etag}})),
        )
        .await;
        assert_eq!(status, 200);
        assert_ne!(set2["etag"], set["etag"]);

        let (status, err) = send(
            &client,
            reqwest::Method::POST,
            format!("{}/v2/{PARENT}/services/nope:setIamPolicy", run.url()),
            &token,
            Some(json!({"policy": {"bindings": bindings}})),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["status"], "NOT_FOUND");
    }

    #[tokio::test]
    async fn requests_need_a_valid_token() {
        let (run, _token, client) = fixture().await;
        add_service(&run, NAME, service_body());
        let resp = client
            .get(format!("{}/v2/{NAME}", run.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Request had invalid authentication credentials."));
        let (status, _) = get(&run, "ya29.unknown", &client, NAME).await;
        assert_eq!(status, 401);
        assert_eq!(run.requests().len(), 2);
        assert_eq!(run.requests()[0].path, format!("/v2/{NAME}"));
        run.clear_requests();
        assert!(run.requests().is_empty());
    }

    #[tokio::test]
    async fn fail_next_answers_the_scripted_status_once() {
        let (run, token, client) = fixture().await;
        add_service(&run, NAME, service_body());
        run.fail_next(503);
        run.fail_next(429);
        let (status, err) = get(&run, &token, &client, NAME).await;
        assert_eq!(status, 503);
        assert_eq!(err["error"]["status"], "UNAVAILABLE");
        let (status, err) = get(&run, &token, &client, NAME).await;
        assert_eq!(status, 429);
        assert_eq!(err["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(get(&run, &token, &client, NAME).await.0, 200);
        run.fail_next(403);
        let (status, err) = create(&run, &token, &client, service_body()).await;
        assert_eq!(status, 403);
        assert_eq!(err["error"]["status"], "PERMISSION_DENIED");
        run.fail_always(500);
        assert_eq!(
            get(&run, &token, &client, NAME).await.1["error"]["status"],
            "INTERNAL"
        );
        assert_eq!(get(&run, &token, &client, NAME).await.0, 500);
        run.clear_failures();
        assert_eq!(get(&run, &token, &client, NAME).await.0, 200);
    }

    #[tokio::test]
    async fn patch_replaces_the_spec_and_bumps_the_generation() {
        let (run, token, client) = fixture().await;
        add_service(&run, NAME, service_body());
        let before = run.service(NAME).unwrap();
        assert_eq!(before["reconciling"], false);
        assert_eq!(before["uri"], "https://keepalive-abc123-ez.a.run.app");

        let mut body = service_body();
        body["template"]["containers"][0]["image"] = json!("europe-docker.pkg.dev/p/r/keepalive:2");
        body["labels"] = json!({"app": "changed"});
        let (status, op) = send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v2/{NAME}?updateMask=template", run.url()),
            &token,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(op["done"], false);
        let svc = run.service(NAME).unwrap();
        assert_eq!(svc["generation"], "2");
        assert_eq!(svc["reconciling"], true);
        // Already served: the uri stays while the new revision rolls out.
        assert_eq!(svc["uri"], before["uri"]);
        assert_eq!(svc["latestReadyRevision"], before["latestReadyRevision"]);
        assert_eq!(
            svc["template"]["containers"][0]["image"],
            "europe-docker.pkg.dev/p/r/keepalive:2"
        );
        // Not in the mask.
        assert_eq!(svc["labels"], json!({"app": "keepalive"}));
        finish_operations(&run);
        let svc = run.service(NAME).unwrap();
        assert_eq!(svc["reconciling"], false);
        assert_eq!(svc["observedGeneration"], "2");
        assert!(svc["latestReadyRevision"]
            .as_str()
            .unwrap()
            .contains("/revisions/keepalive-00002-"));

        // Without a mask, everything is replaced.
        let (status, _) = send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v2/{NAME}", run.url()),
            &token,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            run.service(NAME).unwrap()["labels"],
            json!({"app": "changed"})
        );
        assert_eq!(run.service(NAME).unwrap()["generation"], "3");

        // Validated like a create.
        let mut bad = body.clone();
        bad["template"]["timeout"] = json!("4000s");
        let (status, _) = send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v2/{NAME}", run.url()),
            &token,
            Some(bad),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(run.service(NAME).unwrap()["generation"], "3");

        let other = format!("{PARENT}/services/other");
        let (status, err) = send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v2/{other}", run.url()),
            &token,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["status"], "NOT_FOUND");
        let (status, op) = send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v2/{other}?allowMissing=true", run.url()),
            &token,
            Some(body),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(op["metadata"]["name"], other);
        assert_eq!(run.service(&other).unwrap()["generation"], "1");
    }

    #[tokio::test]
    async fn a_new_revision_only_when_the_template_changes() {
        let (run, token, client) = fixture().await;
        run.set_operation_polls(0);
        run.fail_operation_next("Revision 'keepalive-00001-abc' is not ready: image not found");
        let (_, op) = create(&run, &token, &client, service_body()).await;
        assert_eq!(op["error"]["code"], 3);
        let first = run.service(NAME).unwrap()["latestCreatedRevision"].clone();
        let patch = |body: Value| {
            let (client, token, url) = (client.clone(), token.clone(), run.url());
            async move {
                send(
                    &client,
                    reqwest::Method::PATCH,
                    format!("{url}/v2/{NAME}"),
                    &token,
                    Some(body),
                )
                .await
            }
        };

        // The same template again: no new revision, and the failed one stays failed.
        let (status, op) = patch(service_body()).await;
        assert_eq!(status, 200);
        assert_eq!(
            op["error"]["message"],
            "Revision 'keepalive-00001-abc' is not ready: image not found"
        );
        let svc = run.service(NAME).unwrap();
        assert_eq!(svc["latestCreatedRevision"], first);
        assert_eq!(svc["generation"], "1");
        assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");

        // A revision name of its own makes a new revision of the same spec, which succeeds.
        let mut named = service_body();
        named["template"]["revision"] = json!("keepalive-r1");
        let (status, op) = patch(named.clone()).await;
        assert_eq!(status, 200);
        assert!(op.get("error").is_none(), "{op}");
        let svc = run.service(NAME).unwrap();
        assert_eq!(
            svc["latestCreatedRevision"],
            format!("{NAME}/revisions/keepalive-r1")
        );
        assert_eq!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);
        assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
        assert_eq!(svc["generation"], "2");
        assert!(svc.get("uri").is_some());

        // Sent again (a retried PATCH): nothing new, nothing failed.
        let (status, op) = patch(named.clone()).await;
        assert_eq!(status, 200);
        assert!(op.get("error").is_none(), "{op}");
        assert_eq!(run.service(NAME).unwrap()["generation"], "2");

        // The same name for another template is refused; a name not of this service too.
        let mut reused = named.clone();
        reused["template"]["containers"][0]["image"] =
            json!("europe-docker.pkg.dev/p/r/keepalive:2");
        reused["template"]["timeout"] = json!("60s");
        let mut other = service_body();
        other["template"]["revision"] = json!("keepalive-r2");
        patch(other).await;
        let (status, err) = patch(reused).await;
        assert_eq!(status, 409, "{err}");
        assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
        for bad in ["other-r1", "keepalive-", "keepalive-R1", "keepalive"] {
            let mut b = service_body();
            b["template"]["revision"] = json!(bad);
            let (status, err) = patch(b).await;
            assert_eq!(status, 400, "{bad}: {err}");
            assert!(err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("template.revision"));
        }
        assert_eq!(
            run.service(NAME).unwrap()["latestCreatedRevision"],
            format!("{NAME}/revisions/keepalive-r2")
        );
    }

    #[tokio::test]
    async fn operation_polls_and_failures_are_scripted() {
        let (run, token, client) = fixture().await;
        run.set_operation_polls(0);
        let (_, op) = create(&run, &token, &client, service_body()).await;
        assert_eq!(op["done"], true);
        assert_eq!(
            op["response"]["uri"],
            "https://keepalive-abc123-ez.a.run.app"
        );

        run.set_operation_polls(3);
        run.fail_operation_next(
            "Revision 'keepalive-00002-abc' is not ready and cannot serve traffic.",
        );
        let mut new_image = service_body();
        new_image["template"]["containers"][0]["image"] =
            json!("europe-docker.pkg.dev/p/r/keepalive:2");
        let (status, op) = send(
            &client,
            reqwest::Method::PATCH,
            format!("{}/v2/{NAME}", run.url()),
            &token,
            Some(new_image),
        )
        .await;
        assert_eq!(status, 200);
        let op_name = op["name"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            assert_eq!(get(&run, &token, &client, &op_name).await.1["done"], false);
        }
        let (_, op) = get(&run, &token, &client, &op_name).await;
        assert_eq!(op["done"], true);
        assert_eq!(op["error"]["code"], 3);
        assert_eq!(
            op["error"]["message"],
            "Revision 'keepalive-00002-abc' is not ready and cannot serve traffic."
        );
        assert!(op.get("response").is_none());
        let svc = run.service(NAME).unwrap();
        assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
        assert_eq!(svc["reconciling"], false);
        assert_eq!(svc["generation"], "2");
        assert_ne!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);
        // Still served by the old revision.
        assert!(svc.get("uri").is_some());

        // A failed create leaves a service that was never ready.
        run.set_operation_polls(1);
        run.fail_operation_next("boom");
        let other = format!("{PARENT}/services/other");
        let (_, op) = send(
            &client,
            reqwest::Method::POST,
            format!("{}/v2/{PARENT}/services?serviceId=other", run.url()),
            &token,
            Some(service_body()),
        )
        .await;
        let op_name = op["name"].as_str().unwrap().to_owned();
        get(&run, &token, &client, &op_name).await;
        let (_, op) = get(&run, &token, &client, &op_name).await;
        assert_eq!(op["error"], json!({"code": 3, "message": "boom"}));
        let svc = run.service(&other).unwrap();
        assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
        assert_eq!(svc["terminalCondition"]["message"], "boom");
        assert!(svc.get("uri").is_none());
    }
}
