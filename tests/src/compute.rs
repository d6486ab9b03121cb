//! `FakeCompute`: the part of Compute Engine v1 the keepalive uses, under
//! `/compute/v1/projects/{p}/zones/{z}/...`: instances (get, reset, start, stop) and zonal
//! operations (get, wait, list with filters), with `requestId` deduplication, scripted
//! errors in Compute's error shape, and bearer tokens checked against a [`TokenRegistry`].

use std::time::Duration;
use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
    Router,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    server::{
        bearer_token, compute_timestamp, hang, json_response, lock, now, parse_rfc3339,
        query_pairs, HttpServer, RecordedRequest,
    },
    token::{TokenRegistry, FAKE_CLIENT_EMAIL},
};

/// The routes whose answers can be scripted (and that are counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComputeRoute {
    /// `GET .../instances/{i}`
    GetInstance,
    /// `POST .../instances/{i}/reset`
    Reset,
    /// `POST .../instances/{i}/start`
    Start,
    /// `POST .../instances/{i}/stop`
    Stop,
    /// `GET .../zones/{z}/operations`
    ListOperations,
    /// `GET .../zones/{z}/operations/{op}`
    GetOperation,
    /// `POST .../zones/{z}/operations/{op}/wait`
    WaitOperation,
}

impl ComputeRoute {
    fn permission(self) -> &'static str {
        match self {
            ComputeRoute::GetInstance => "compute.instances.get",
            ComputeRoute::Reset => "compute.instances.reset",
            ComputeRoute::Start => "compute.instances.start",
            ComputeRoute::Stop => "compute.instances.stop",
            ComputeRoute::ListOperations => "compute.zoneOperations.list",
            ComputeRoute::GetOperation | ComputeRoute::WaitOperation => {
                "compute.zoneOperations.get"
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Status(u16),
    Hang,
    Delay(Duration),
}

#[derive(Default)]
struct Faults {
    next: VecDeque<Fault>,
    always: Option<Fault>,
}

type Key = (String, String, String);

struct Instance {
    id: u64,
    status: String,
    created: OffsetDateTime,
    last_start: OffsetDateTime,
    last_stop: Option<OffsetDateTime>,
    nat_ip: String,
    metadata: Vec<(String, String)>,
    resets: usize,
}

struct Operation {
    seq: u64,
    id: u64,
    name: String,
    project: String,
    zone: String,
    op_type: String,
    target: String,
    target_id: u64,
    status: String,
    insert_time: OffsetDateTime,
    start_time: Option<OffsetDateTime>,
    end_time: Option<OffsetDateTime>,
    /// GETs left before DONE; `None`: does not advance on GET (seeded operations).
    polls_left: Option<u32>,
    request_id: Option<String>,
    error: Option<(String, String)>,
}

impl Operation {
    fn advance_on_get(&mut self) {
        if self.status == "DONE" {
            return;
        }
        let Some(left) = self.polls_left.as_mut() else {
            return;
        };
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.finish();
        } else {
            self.status = "RUNNING".into();
            self.start_time.get_or_insert_with(now);
        }
    }

    fn finish(&mut self) {
        if self.status != "DONE" {
            let t = now();
            self.status = "DONE".into();
            self.start_time.get_or_insert(t);
            self.end_time = Some(t);
        }
    }
}

struct ComputeState {
    base: String,
    instances: HashMap<Key, Instance>,
    operations: Vec<Operation>,
    /// (project, requestId) -> operation name
    request_ids: HashMap<(String, String), String>,
    polls_to_done: u32,
    wait_completes: bool,
    new_op_error: Option<(String, String)>,
    faults: HashMap<ComputeRoute, Faults>,
    counts: HashMap<ComputeRoute, usize>,
    seq: u64,
}

impl ComputeState {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn zone_link(&self, project: &str, zone: &str) -> String {
        format!("{}/compute/v1/projects/{project}/zones/{zone}", self.base)
    }

    fn instance_json(&self, (project, zone, name): &Key, inst: &Instance) -> Value {
        let zone_link = self.zone_link(project, zone);
        let mut v = json!({
            "kind": "compute#instance",
            "id": inst.id.to_string(),
            "creationTimestamp": compute_timestamp(inst.created),
            "name": name,
            "status": inst.status,
            "lastStartTimestamp": compute_timestamp(inst.last_start),
            "zone": zone_link,
            "machineType": format!("{zone_link}/machineTypes/e2-medium"),
            "selfLink": format!("{zone_link}/instances/{name}"),
            "networkInterfaces": [{
                "kind": "compute#networkInterface",
                "name": "nic0",
                "network": format!("{}/compute/v1/projects/{project}/global/networks/default", self.base),
                "networkIP": "10.128.0.2",
                "accessConfigs": [{
                    "kind": "compute#accessConfig",
                    "type": "ONE_TO_ONE_NAT",
                    "name": "External NAT",
                    "natIP": inst.nat_ip,
                    "networkTier": "PREMIUM"
                }]
            }],
            "metadata": {
                "kind": "compute#metadata",
                "fingerprint": "fake-fingerprint=",
                "items": inst.metadata.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            },
        });
        if let Some(t) = inst.last_stop {
            v["lastStopTimestamp"] = json!(compute_timestamp(t));
        }
        v
    }

    fn op_json(&self, op: &Operation) -> Value {
        let zone_link = self.zone_link(&op.project, &op.zone);
        let mut v = json!({
            "kind": "compute#operation",
            "id": op.id.to_string(),
            "name": op.name,
            "zone": zone_link,
            "operationType": op.op_type,
            "targetLink": format!("{zone_link}/instances/{}", op.target),
            "targetId": op.target_id.to_string(),
            "status": op.status,
            "user": FAKE_CLIENT_EMAIL,
            "progress": if op.status == "DONE" { 100 } else { 0 },
            "insertTime": compute_timestamp(op.insert_time),
            "creationTimestamp": compute_timestamp(op.insert_time),
            "selfLink": format!("{zone_link}/operations/{}", op.name),
        });
        if let Some(t) = op.start_time {
            v["startTime"] = json!(compute_timestamp(t));
        }
        if let Some(t) = op.end_time {
            v["endTime"] = json!(compute_timestamp(t));
        }
        if let Some(rid) = &op.request_id {
            v["clientOperationId"] = json!(rid);
        }
        if op.status == "DONE" {
            if let Some((code, message)) = &op.error {
                v["error"] = json!({"errors": [{"code": code, "message": message}]});
                v["httpErrorStatusCode"] = json!(400);
                v["httpErrorMessage"] = json!("BAD REQUEST");
            }
        }
        v
    }

    fn new_operation(
        &mut self,
        project: &str,
        zone: &str,
        target: &str,
        target_id: u64,
        op_type: &str,
        request_id: Option<String>,
    ) -> usize {
        let seq = self.next_seq();
        let t = now();
        let polls = self.polls_to_done;
        let mut op = Operation {
            seq,
            id: random_id(),
            name: operation_name(t),
            project: project.into(),
            zone: zone.into(),
            op_type: op_type.into(),
            target: target.into(),
            target_id,
            status: "PENDING".into(),
            insert_time: t,
            start_time: None,
            end_time: None,
            polls_left: Some(polls),
            request_id,
            error: self.new_op_error.clone(),
        };
        if polls == 0 {
            op.finish();
        }
        self.operations.push(op);
        self.operations.len() - 1
    }

    fn find_op(&self, project: &str, zone: &str, name: &str) -> Option<usize> {
        self.operations
            .iter()
            .position(|o| o.name == name && o.project == project && o.zone == zone)
    }
}

fn random_id() -> u64 {
    use rand::Rng as _;
    rand::rng().random_range(1_000_000_000_000_000_000..9_000_000_000_000_000_000)
}

fn operation_name(t: OffsetDateTime) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    format!(
        "operation-{}-{:013x}-{:08x}-{:08x}",
        t.unix_timestamp_nanos() / 1_000_000,
        rng.random::<u64>() & 0x1f_ffff_ffff_ffff,
        rng.random::<u32>(),
        rng.random::<u32>()
    )
}

#[derive(Clone)]
struct Ctx {
    state: Arc<Mutex<ComputeState>>,
    tokens: Arc<TokenRegistry>,
}

/// The fake Compute Engine API.
pub struct FakeCompute {
    state: Arc<Mutex<ComputeState>>,
    server: HttpServer,
}

impl FakeCompute {
    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = Arc::new(Mutex::new(ComputeState {
            base: String::new(),
            instances: HashMap::new(),
            operations: Vec::new(),
            request_ids: HashMap::new(),
            polls_to_done: 1,
            wait_completes: true,
            new_op_error: None,
            faults: HashMap::new(),
            counts: HashMap::new(),
            seq: 0,
        }));
        let ctx = Ctx {
            state: state.clone(),
            tokens,
        };
        let router = Router::new().fallback(handle).with_state(ctx);
        let server = HttpServer::start(router)
            .await
            .expect("bind fake Compute Engine server");
        lock(&state).base = server.url();
        FakeCompute { state, server }
    }

    /// `http://127.0.0.1:PORT` (what `KEEPALIVE_COMPUTE_ENDPOINT` should be).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Adds an instance (natIP `203.0.113.7`, no metadata) and returns its id.
    pub fn add_instance(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        status: &str,
        last_start: OffsetDateTime,
    ) -> u64 {
        let id = random_id();
        lock(&self.state).instances.insert(
            (project.into(), zone.into(), name.into()),
            Instance {
                id,
                status: status.into(),
                created: last_start - time::Duration::days(30),
                last_start,
                last_stop: None,
                nat_ip: "203.0.113.7".into(),
                metadata: Vec::new(),
                resets: 0,
            },
        );
        id
    }

    fn with_instance<R>(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        f: impl FnOnce(&mut Instance) -> R,
    ) -> R {
        let mut st = lock(&self.state);
        let inst = st
            .instances
            .get_mut(&(project.into(), zone.into(), name.into()))
            .unwrap_or_else(|| panic!("FakeCompute: no instance {project}/{zone}/{name}"));
        f(inst)
    }

    /// Sets the instance's status (`RUNNING`, `TERMINATED`, `STAGING`, ...). Panics if unknown.
    pub fn set_status(&self, project: &str, zone: &str, name: &str, status: &str) {
        self.with_instance(project, zone, name, |i| i.status = status.into());
    }

    /// Sets the instance's `lastStartTimestamp`. Panics if unknown.
    pub fn set_last_start(&self, project: &str, zone: &str, name: &str, t: OffsetDateTime) {
        self.with_instance(project, zone, name, |i| i.last_start = t);
    }

    /// Sets the instance's external address. Panics if unknown.
    pub fn set_nat_ip(&self, project: &str, zone: &str, name: &str, ip: &str) {
        self.with_instance(project, zone, name, |i| i.nat_ip = ip.into());
    }

    /// Sets the instance's metadata items. Panics if unknown.
    pub fn set_metadata(&self, project: &str, zone: &str, name: &str, items: &[(&str, &str)]) {
        self.with_instance(project, zone, name, |i| {
            i.metadata = items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        });
    }

    /// Removes the instance (GET and reset then answer 404).
    pub fn remove_instance(&self, project: &str, zone: &str, name: &str) {
        lock(&self.state)
            .instances
            .remove(&(project.into(), zone.into(), name.into()));
    }

    /// The instance as `GET` would answer it.
    pub fn instance(&self, project: &str, zone: &str, name: &str) -> Option<Value> {
        let st = lock(&self.state);
        let key = (project.to_owned(), zone.to_owned(), name.to_owned());
        st.instances.get(&key).map(|i| st.instance_json(&key, i))
    }

    /// The instance's status.
    pub fn status(&self, project: &str, zone: &str, name: &str) -> Option<String> {
        lock(&self.state)
            .instances
            .get(&(project.into(), zone.into(), name.into()))
            .map(|i| i.status.clone())
    }

    /// Real resets of instances named `name` (in any project and zone): reset requests
    /// that created an operation, not requestId duplicates nor seeded operations.
    pub fn resets(&self, name: &str) -> usize {
        lock(&self.state)
            .instances
            .iter()
            .filter(|((_, _, n), _)| n == name)
            .map(|(_, i)| i.resets)
            .sum()
    }

    /// Real resets of all instances.
    pub fn total_resets(&self) -> usize {
        lock(&self.state).instances.values().map(|i| i.resets).sum()
    }

    /// New operations need this many `GET`s to be `DONE` (PENDING, then RUNNING on the GETs
    /// before the last). Default 1: the POST answers PENDING, the first GET answers DONE.
    /// 0: the POST already answers DONE.
    pub fn set_op_polls_to_done(&self, n: u32) {
        lock(&self.state).polls_to_done = n;
    }

    /// Whether `.../wait` finishes the operation (default true). When false, wait answers
    /// the operation as it is, as the real API does after its ~2 minutes.
    pub fn set_wait_completes(&self, completes: bool) {
        lock(&self.state).wait_completes = completes;
    }

    /// New operations end `DONE` with `error.errors[{code, message}]` (None: no error).
    pub fn set_new_op_error(&self, error: Option<(&str, &str)>) {
        lock(&self.state).new_op_error = error.map(|(c, m)| (c.to_owned(), m.to_owned()));
    }

    /// Seeds an operation (e.g. an old reset, for grace tests) and returns its name. Its
    /// status stays as given (GETs do not advance it; wait finishes it). It does not count
    /// in [`resets`](Self::resets). The target need not exist (then `targetId` is random).
    pub fn add_operation(
        &self,
        project: &str,
        zone: &str,
        instance: &str,
        operation_type: &str,
        status: &str,
        insert_time: OffsetDateTime,
    ) -> String {
        let mut st = lock(&self.state);
        let target_id = st
            .instances
            .get(&(project.into(), zone.into(), instance.into()))
            .map(|i| i.id)
            .unwrap_or_else(random_id);
        let seq = st.next_seq();
        let name = operation_name(insert_time);
        let done = status == "DONE";
        st.operations.push(Operation {
            seq,
            id: random_id(),
            name: name.clone(),
            project: project.into(),
            zone: zone.into(),
            op_type: operation_type.into(),
            target: instance.into(),
            target_id,
            status: status.into(),
            insert_time,
            start_time: (status != "PENDING").then_some(insert_time),
            end_time: done.then(|| insert_time + time::Duration::seconds(1)),
            polls_left: None,
            request_id: None,
            error: None,
        });
        name
    }

    /// Changes an operation's status (`DONE` sets its end time).
    pub fn set_operation_status(&self, name: &str, status: &str) {
        let mut st = lock(&self.state);
        if let Some(op) = st.operations.iter_mut().find(|o| o.name == name) {
            if status == "DONE" {
                op.finish();
            } else {
                op.status = status.into();
            }
        }
    }

    /// Every operation, oldest first, as the API shows it.
    pub fn operations(&self) -> Vec<Value> {
        let st = lock(&self.state);
        st.operations.iter().map(|o| st.op_json(o)).collect()
    }

    /// One operation by name.
    pub fn operation(&self, name: &str) -> Option<Value> {
        let st = lock(&self.state);
        st.operations
            .iter()
            .find(|o| o.name == name)
            .map(|o| st.op_json(o))
    }

    /// The next `n` requests to `route` (after authentication) answer `status` in Compute's
    /// error shape (429 rateLimitExceeded, 403 forbidden, 404 notFound, 5xx backendError).
    pub fn fail_next(&self, route: ComputeRoute, n: usize, status: u16) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .next
            .extend(std::iter::repeat_n(Fault::Status(status), n));
    }

    /// Every request to `route` answers `status` until [`clear_faults`](Self::clear_faults).
    pub fn fail_always(&self, route: ComputeRoute, status: u16) {
        lock(&self.state).faults.entry(route).or_default().always = Some(Fault::Status(status));
    }

    /// The next `n` requests to `route` never get an answer.
    pub fn hang_next(&self, route: ComputeRoute, n: usize) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .next
            .extend(std::iter::repeat_n(Fault::Hang, n));
    }

    /// Requests to `route` are answered normally, but only after `delay` (until cleared): a
    /// slow API, and a way to make two clients' reads overlap.
    pub fn delay_always(&self, route: ComputeRoute, delay: Duration) {
        lock(&self.state).faults.entry(route).or_default().always = Some(Fault::Delay(delay));
    }

    /// Requests to `route` never get an answer until cleared.
    pub fn hang_always(&self, route: ComputeRoute) {
        lock(&self.state).faults.entry(route).or_default().always = Some(Fault::Hang);
    }

    /// Removes every scripted fault.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Requests to `route` so far (whatever the answer, authenticated or not).
    pub fn route_count(&self, route: ComputeRoute) -> usize {
        lock(&self.state).counts.get(&route).copied().unwrap_or(0)
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Closes the listener and drops connections in progress.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Listens again on the same port.
    pub async fn restart(&self) -> io::Result<()> {
        self.server.restart().await
    }
}

/// A Compute Engine error answer.
pub fn compute_error(status: u16, reason: &str, message: &str) -> Response {
    let mut body = json!({
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    });
    if status == 401 {
        body["error"]["errors"][0]["location"] = json!("Authorization");
        body["error"]["errors"][0]["locationType"] = json!("header");
        body["error"]["status"] = json!("UNAUTHENTICATED");
    }
    json_response(status, &body)
}

fn scripted_error(status: u16, route: ComputeRoute, resource: &str) -> Response {
    match status {
        400 => compute_error(400, "invalid", "Invalid value for field 'resource'"),
        401 => compute_error(
            401,
            "authError",
            "Request had invalid authentication credentials.",
        ),
        403 => compute_error(
            403,
            "forbidden",
            &format!("Required '{}' permission for '{resource}'", route.permission()),
        ),
        404 => not_found(resource),
        409 => compute_error(
            409,
            "alreadyExists",
            &format!("The resource '{resource}' already exists"),
        ),
        429 => compute_error(
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.",
        ),
        500 => compute_error(
            500,
            "backendError",
            "Internal error. Please try again or contact Google Support.",
        ),
        502 => compute_error(502, "backendError", "Bad Gateway"),
        503 => compute_error(503, "backendError", "Service unavailable"),
        504 => compute_error(504, "backendError", "Deadline exceeded"),
        s if s >= 500 => compute_error(s, "backendError", "Backend Error"),
        s => compute_error(s, "invalid", "Scripted error"),
    }
}

fn not_found(resource: &str) -> Response {
    compute_error(
        404,
        "notFound",
        &format!("The resource '{resource}' was not found"),
    )
}

enum Route<'a> {
    GetInstance {
        p: &'a str,
        z: &'a str,
        i: &'a str,
    },
    Action {
        p: &'a str,
        z: &'a str,
        i: &'a str,
        action: &'a str,
        route: ComputeRoute,
    },
    ListOps {
        p: &'a str,
        z: &'a str,
    },
    GetOp {
        p: &'a str,
        z: &'a str,
        op: &'a str,
    },
    WaitOp {
        p: &'a str,
        z: &'a str,
        op: &'a str,
    },
}

impl Route<'_> {
    fn route(&self) -> ComputeRoute {
        match self {
            Route::GetInstance { .. } => ComputeRoute::GetInstance,
            Route::Action { route, .. } => *route,
            Route::ListOps { .. } => ComputeRoute::ListOperations,
            Route::GetOp { .. } => ComputeRoute::GetOperation,
            Route::WaitOp { .. } => ComputeRoute::WaitOperation,
        }
    }

    fn resource(&self) -> String {
        match self {
            Route::GetInstance { p, z, i } | Route::Action { p, z, i, .. } => {
                format!("projects/{p}/zones/{z}/instances/{i}")
            }
            Route::ListOps { p, z } => format!("projects/{p}/zones/{z}"),
            Route::GetOp { p, z, op } | Route::WaitOp { p, z, op } => {
                format!("projects/{p}/zones/{z}/operations/{op}")
            }
        }
    }
}

fn parse_route<'a>(method: &Method, segs: &[&'a str]) -> Option<Route<'a>> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    match *segs {
        ["compute", "v1", "projects", p, "zones", z, "instances", i] if get => {
            Some(Route::GetInstance { p, z, i })
        }
        ["compute", "v1", "projects", p, "zones", z, "instances", i, action] if post => {
            let route = match action {
                "reset" => ComputeRoute::Reset,
                "start" => ComputeRoute::Start,
                "stop" => ComputeRoute::Stop,
                _ => return None,
            };
            Some(Route::Action {
                p,
                z,
                i,
                action,
                route,
            })
        }
        ["compute", "v1", "projects", p, "zones", z, "operations"] if get => {
            Some(Route::ListOps { p, z })
        }
        ["compute", "v1", "projects", p, "zones", z, "operations", op] if get => {
            Some(Route::GetOp { p, z, op })
        }
        ["compute", "v1", "projects", p, "zones", z, "operations", op, "wait"] if post => {
            Some(Route::WaitOp { p, z, op })
        }
        _ => None,
    }
}

async fn handle(State(ctx): State<Ctx>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let Some(route) = parse_route(&method, &segs) else {
        return compute_error(
            404,
            "notFound",
            &format!(
                "The requested URL {} was not found on this server.",
                uri.path()
            ),
        );
    };
    let which = route.route();
    *lock(&ctx.state).counts.entry(which).or_default() += 1;
    if !bearer_token(&headers).is_some_and(|t| ctx.tokens.is_valid(t)) {
        return compute_error(
            401,
            "authError",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let fault = {
        let mut st = lock(&ctx.state);
        st.faults
            .get_mut(&which)
            .and_then(|f| f.next.pop_front().or(f.always))
    };
    match fault {
        Some(Fault::Hang) => match hang().await {},
        Some(Fault::Status(status)) => return scripted_error(status, which, &route.resource()),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let query = query_pairs(uri.query());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut st = lock(&ctx.state);
    match route {
        Route::GetInstance { p, z, i } => {
            let key = (p.to_owned(), z.to_owned(), i.to_owned());
            match st.instances.get(&key) {
                Some(inst) => json_response(200, &st.instance_json(&key, inst)),
                None => not_found(&route.resource()),
            }
        }
        Route::Action {
            p, z, i, action, ..
        } => {
            let key = (p.to_owned(), z.to_owned(), i.to_owned());
            let Some(inst) = st.instances.get(&key) else {
                return not_found(&route.resource());
            };
            let (inst_id, inst_status) = (inst.id, inst.status.clone());
            let request_id = param("requestId").filter(|r| !r.is_empty());
            // Check-and-insert of the requestId under the one lock: concurrent duplicates
            // see the first operation.
            if let Some(rid) = &request_id {
                if uuid::Uuid::parse_str(rid).map_or(true, |u| u.is_nil()) {
                    return compute_error(
                        400,
                        "invalid",
                        &format!("Invalid value for field 'requestId': '{rid}'. Must be a non-zero UUID."),
                    );
                }
                if let Some(name) = st.request_ids.get(&(p.to_owned(), rid.clone())) {
                    let idx = st.find_op_any(name);
                    if let Some(idx) = idx {
                        return json_response(200, &st.op_json(&st.operations[idx]));
                    }
                }
            }
            if action == "reset" && inst_status != "RUNNING" {
                return compute_error(
                    400,
                    "resourceNotReady",
                    &format!("The resource '{}' is not ready", route.resource()),
                );
            }
            let idx = st.new_operation(p, z, i, inst_id, action, request_id.clone());
            if let Some(rid) = request_id {
                let name = st.operations[idx].name.clone();
                st.request_ids.insert((p.to_owned(), rid), name);
            }
            if let Some(inst) = st.instances.get_mut(&key) {
                match action {
                    "reset" => inst.resets += 1,
                    "stop" => {
                        inst.status = "TERMINATED".into();
                        inst.last_stop = Some(now());
                    }
                    _ => {
                        inst.status = "RUNNING".into();
                        inst.last_start = now();
                    }
                }
            }
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::GetOp { p, z, op } => match st.find_op(p, z, op) {
            Some(idx) => {
                st.operations[idx].advance_on_get();
                json_response(200, &st.op_json(&st.operations[idx]))
            }
            None => not_found(&route.resource()),
        },
        Route::WaitOp { p, z, op } => match st.find_op(p, z, op) {
            Some(idx) => {
                if st.wait_completes {
                    st.operations[idx].finish();
                }
                json_response(200, &st.op_json(&st.operations[idx]))
            }
            None => not_found(&route.resource()),
        },
        Route::ListOps { p, z } => {
            let filter = match param("filter").filter(|f| !f.trim().is_empty()) {
                Some(f) => match filter::parse(&f) {
                    Ok(expr) => Some(expr),
                    Err(_) => {
                        return compute_error(
                            400,
                            "invalid",
                            &format!("Invalid value for field 'filter': '{f}'. Invalid list filter expression."),
                        )
                    }
                },
                None => None,
            };
            let ascending = param("orderBy").is_some_and(|o| {
                let o = o.to_ascii_lowercase();
                !o.contains("desc")
            });
            let max = param("maxResults")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(500)
                .clamp(1, 500);
            let offset = param("pageToken")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(0);
            let mut ops: Vec<(OffsetDateTime, u64, Value)> = st
                .operations
                .iter()
                .filter(|o| o.project == p && o.zone == z)
                .map(|o| (o.insert_time, o.seq, st.op_json(o)))
                .filter(|(_, _, v)| filter.as_ref().is_none_or(|f| f.matches(v)))
                .collect();
            ops.sort_by_key(|(t, seq, _)| (*t, *seq));
            if !ascending {
                ops.reverse();
            }
            let total = ops.len();
            let items: Vec<Value> = ops
                .into_iter()
                .skip(offset)
                .take(max)
                .map(|(_, _, v)| v)
                .collect();
            let zone_link = st.zone_link(p, z);
            let mut body = json!({
                "kind": "compute#operationList",
                "id": format!("projects/{p}/zones/{z}/operations"),
                "selfLink": format!("{zone_link}/operations"),
            });
            if offset + items.len() < total {
                body["nextPageToken"] = json!((offset + items.len()).to_string());
            }
            if !items.is_empty() {
                body["items"] = Value::Array(items);
            }
            json_response(200, &body)
        }
    }
}

impl ComputeState {
    fn find_op_any(&self, name: &str) -> Option<usize> {
        self.operations.iter().position(|o| o.name == name)
    }
}

/// Compute Engine list filters: `field op value` terms (`=`, `!=`, `>`, `<`, `>=`, `<=`,
/// `:`, `eq`, `ne`), values quoted or bare, optionally parenthesised, joined with `AND`
/// (or juxtaposition), `OR`, and `NOT`. A field absent from the resource makes `=` false
/// and `!=` true. `targetLink`/`selfLink`/`zone` compare on the part after `/compute/v1/`.
pub mod filter {
    use super::parse_rfc3339;
    use serde_json::Value;

    /// A parsed filter.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Expr {
        /// `field op value`
        Term(String, Op, String),
        /// all of
        And(Vec<Expr>),
        /// any of
        Or(Vec<Expr>),
        /// negation
        Not(Box<Expr>),
    }

    /// Comparison operators.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Op {
        /// `=` or `eq`
        Eq,
        /// `!=` or `ne`
        Ne,
        /// `>`
        Gt,
        /// `<`
        Lt,
        /// `>=`
        Ge,
        /// `<=`
        Le,
        /// `:` (contains; `:*` present)
        Has,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        LParen,
        RParen,
        Op(Op),
        Word(String),
        Str(String),
    }

    const MAX_DEPTH: usize = 32;

    fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
        let mut toks = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                '(' => {
                    chars.next();
                    toks.push(Tok::LParen);
                }
                ')' => {
                    chars.next();
                    toks.push(Tok::RParen);
                }
                '=' => {
                    chars.next();
                    toks.push(Tok::Op(Op::Eq));
                }
                ':' => {
                    chars.next();
                    toks.push(Tok::Op(Op::Has));
                }
                '!' | '>' | '<' => {
                    chars.next();
                    let eq = chars.peek() == Some(&'=');
                    if eq {
                        chars.next();
                    }
                    toks.push(Tok::Op(match (c, eq) {
                        ('!', true) => Op::Ne,
                        ('>', false) => Op::Gt,
                        ('>', true) => Op::Ge,
                        ('<', false) => Op::Lt,
                        ('<', true) => Op::Le,
                        _ => return Err("'!' must be followed by '='".into()),
                    }));
                }
                '"' | '\'' => {
                    let quote = c;
                    chars.next();
                    let mut out = String::new();
                    let mut closed = false;
                    while let Some(ch) = chars.next() {
                        if ch == '\\' {
                            if let Some(esc) = chars.next() {
                                out.push(esc);
                            }
                        } else if ch == quote {
                            closed = true;
                            break;
                        } else {
                            out.push(ch);
                        }
                    }
                    if !closed {
                        return Err("unterminated string".into());
                    }
                    toks.push(Tok::Str(out));
                }
                _ => {
                    let mut w = String::new();
                    while let Some(&ch) = chars.peek() {
                        if ch.is_whitespace() || "()=!<>\"':".contains(ch) {
                            // ':' inside a bare word (a URL) is not allowed: quote it.
                            break;
                        }
                        w.push(ch);
                        chars.next();
                    }
                    toks.push(Tok::Word(w));
                }
            }
        }
        Ok(toks)
    }

    struct Parser {
        toks: Vec<Tok>,
        pos: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.pos)
        }

        fn next(&mut self) -> Option<Tok> {
            let t = self.toks.get(self.pos).cloned();
            self.pos += 1;
            t
        }

        fn is_kw(&self, kw: &str) -> bool {
            matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
        }

        fn or(&mut self, depth: usize) -> Result<Expr, String> {
            if depth > MAX_DEPTH {
                return Err("filter nested too deeply".into());
            }
            let mut parts = vec![self.and(depth)?];
            while self.is_kw("OR") {
                self.pos += 1;
                parts.push(self.and(depth)?);
            }
            Ok(if parts.len() == 1 {
                parts.remove(0)
            } else {
                Expr::Or(parts)
            })
        }

        fn and(&mut self, depth: usize) -> Result<Expr, String> {
            let mut parts = vec![self.unary(depth)?];
            loop {
                if self.is_kw("AND") {
                    self.pos += 1;
                    parts.push(self.unary(depth)?);
                } else if matches!(self.peek(), Some(Tok::LParen | Tok::Word(_)))
                    && !self.is_kw("OR")
                {
                    parts.push(self.unary(depth)?);
                } else {
                    break;
                }
            }
            Ok(if parts.len() == 1 {
                parts.remove(0)
            } else {
                Expr::And(parts)
            })
        }

        fn unary(&mut self, depth: usize) -> Result<Expr, String> {
            if self.is_kw("NOT") {
                self.pos += 1;
                return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
            }
            match self.next() {
                Some(Tok::LParen) => {
                    let e = self.or(depth + 1)?;
                    match self.next() {
                        Some(Tok::RParen) => Ok(e),
                        _ => Err("missing ')'".into()),
                    }
                }
                Some(Tok::Word(field)) => {
                    let op = match self.next() {
                        Some(Tok::Op(op)) => op,
                        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("eq") => Op::Eq,
                        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("ne") => Op::Ne,
                        _ => return Err(format!("expected an operator after '{field}'")),
                    };
                    let value = match self.next() {
                        Some(Tok::Str(s) | Tok::Word(s)) => s,
                        _ => return Err(format!("expected a value after '{field}'")),
                    };
                    Ok(Expr::Term(field, op, value))
                }
                _ => Err("expected a term".into()),
            }
        }
    }

    /// Parses a filter expression.
    pub fn parse(s: &str) -> Result<Expr, String> {
        let mut p = Parser {
            toks: tokenize(s)?,
            pos: 0,
        };
        let e = p.or(0)?;
        if p.pos != p.toks.len() {
            return Err("trailing input".into());
        }
        Ok(e)
    }

    fn lookup<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
        field.split('.').try_fold(v, |v, k| v.get(k))
    }

    fn as_text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    fn normalize_link(s: &str) -> &str {
        s.find("/compute/v1/")
            .map_or(s, |i| &s[i + "/compute/v1/".len()..])
    }

    fn glob(pattern: &str, text: &str) -> bool {
        if !pattern.contains('*') {
            return pattern == text;
        }
        let parts: Vec<&str> = pattern.split('*').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !text.starts_with(first)
            || !text.ends_with(last)
            || text.len() < first.len() + last.len()
        {
            return false;
        }
        let mut rest = &text[first.len()..text.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    }

    fn compare(a: &str, b: &str) -> std::cmp::Ordering {
        if let (Some(x), Some(y)) = (parse_rfc3339(a), parse_rfc3339(b)) {
            return x.cmp(&y);
        }
        if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
            return x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
        }
        a.cmp(b)
    }

    impl Expr {
        /// Whether the resource `v` matches.
        pub fn matches(&self, v: &Value) -> bool {
            match self {
                Expr::And(parts) => parts.iter().all(|e| e.matches(v)),
                Expr::Or(parts) => parts.iter().any(|e| e.matches(v)),
                Expr::Not(e) => !e.matches(v),
                Expr::Term(field, op, want) => {
                    let Some(have) = lookup(v, field) else {
                        return *op == Op::Ne;
                    };
                    let have = as_text(have);
                    let (have, want) = if field.ends_with("Link") || field == "zone" {
                        (
                            normalize_link(&have).to_owned(),
                            normalize_link(want).to_owned(),
                        )
                    } else {
                        (have, want.clone())
                    };
                    use std::cmp::Ordering::*;
                    match op {
                        Op::Eq => glob(&want, &have),
                        Op::Ne => !glob(&want, &have),
                        Op::Has => want == "*" || have.contains(&want),
                        Op::Gt => compare(&have, &want) == Greater,
                        Op::Lt => compare(&have, &want) == Less,
                        Op::Ge => compare(&have, &want) != Less,
                        Op::Le => compare(&have, &want) != Greater,
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        #[test]
        fn parses_and_matches() {
            let op = json!({
                "operationType": "reset", "targetId": "123", "status": "DONE",
                "targetLink": "http://127.0.0.1:1/compute/v1/projects/p/zones/z/instances/vm",
                "insertTime": "2026-11-24T10:00:00.123-08:00"
            });
            for (f, want) in [
                (r#"operationType = "reset""#, true),
                (r#"operationType="reset" AND targetId="123""#, true),
                (r#"(operationType = "reset") AND (targetId = "123")"#, true),
                (r#"(operationType = "reset") (targetId = "124")"#, false),
                (r#"operationType = "reset" AND targetId = "124""#, false),
                (r#"operationType = "stop" OR targetId = 123"#, true),
                (r#"NOT (status = "DONE")"#, false),
                (r#"status != "DONE""#, false),
                (r#"operationType eq reset"#, true),
                (
                    r#"targetLink = "https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/vm""#,
                    true,
                ),
                (
                    r#"targetLink = "https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances/other""#,
                    false,
                ),
                (r#"insertTime > "2026-11-24T17:00:00Z""#, true),
                (r#"insertTime > "2026-11-24T19:00:00Z""#, false),
                (r#"unknownField = "x""#, false),
                (r#"unknownField != "x""#, true),
                (r#"operationType = "res*""#, true),
            ] {
                let e = parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
                assert_eq!(e.matches(&op), want, "{f}");
            }
            for bad in [
                r#"operationType = "reset"#,
                "operationType",
                "(a = b",
                "a = b)",
                "= b",
            ] {
                assert!(parse(bad).is_err(), "{bad}");
            }
            let deep = "(".repeat(100) + "a = b" + &")".repeat(100);
            assert!(parse(&deep).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const P: &str = "proj";
    const Z: &str = "europe-west3-a";

    struct Fixture {
        compute: FakeCompute,
        token: String,
        client: reqwest::Client,
    }

    async fn fixture() -> Fixture {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        let compute = FakeCompute::start(tokens).await;
        Fixture {
            compute,
            token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    impl Fixture {
        fn url(&self, rest: &str) -> String {
            format!(
                "{}/compute/v1/projects/{P}/zones/{Z}/{rest}",
                self.compute.url()
            )
        }

        async fn get(&self, rest: &str) -> (u16, Value) {
            let resp = self
                .client
                .get(self.url(rest))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        }

        async fn post(&self, rest: &str) -> (u16, Value) {
            let resp = self
                .client
                .post(self.url(rest))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        }
    }

    #[tokio::test]
    async fn get_instance_and_404_and_auth() {
        let f = fixture().await;
        let started = OffsetDateTime::now_utc() - time::Duration::hours(3);
        let id = f.compute.add_instance(P, Z, "vm", "RUNNING", started);
        let (status, body) = f.get("instances/vm").await;
        assert_eq!(status, 200);
        assert_eq!(body["kind"], "compute#instance");
        assert_eq!(body["id"], id.to_string());
        assert_eq!(body["name"], "vm");
        assert_eq!(body["status"], "RUNNING");
        let ts = body["lastStartTimestamp"].as_str().unwrap();
        assert!(ts.ends_with("-08:00"));
        assert_eq!(
            parse_rfc3339(ts).unwrap().unix_timestamp(),
            started.unix_timestamp()
        );
        assert_eq!(
            body["networkInterfaces"][0]["accessConfigs"][0]["natIP"],
            "203.0.113.7"
        );
        assert!(body["zone"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/zones/{Z}")));

        let (status, body) = f.get("instances/nope").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], 404);
        assert_eq!(
            body["error"]["message"],
            format!("The resource 'projects/{P}/zones/{Z}/instances/nope' was not found")
        );
        assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
        assert_eq!(body["error"]["errors"][0]["domain"], "global");

        let resp = f.client.get(f.url("instances/vm")).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["errors"][0]["reason"], "authError");
        let resp = f
            .client
            .get(f.url("instances/vm"))
            .bearer_auth("ya29.not-issued")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(f.compute.route_count(ComputeRoute::GetInstance), 4);
        assert_eq!(f.compute.requests().len(), 4);
    }

    #[tokio::test]
    async fn reset_operation_lifecycle() {
        let f = fixture().await;
        let id = f
            .compute
            .add_instance(P, Z, "vm", "RUNNING", OffsetDateTime::now_utc());
        let before = f.compute.instance(P, Z, "vm").unwrap();
        let rid = uuid::Uuid::new_v4().to_string();
        let (status, op) = f.post(&format!("instances/vm/reset?requestId={rid}")).await;
        assert_eq!(status, 200);
        assert_eq!(op["kind"], "compute#operation");
        assert_eq!(op["operationType"], "reset");
        assert_eq!(op["status"], "PENDING");
        assert_eq!(op["targetId"], id.to_string());
        assert_eq!(op["clientOperationId"], rid);
        assert!(op["targetLink"]
            .as_str()
            .unwrap()
            .ends_with("/instances/vm"));
        let name = op["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("operation-"));
        let (_, op) = f.get(&format!("operations/{name}")).await;
        assert_eq!(op["status"], "DONE");
        assert!(op["endTime"].is_string());
        assert_eq!(f.compute.resets("vm"), 1);
        assert_eq!(f.compute.instance(P, Z, "vm").unwrap(), before);

        f.compute.set_op_polls_to_done(3);
        let (_, op) = f.post("instances/vm/reset").await;
        let name = op["name"].as_str().unwrap().to_owned();
        let (_, op) = f.get(&format!("operations/{name}")).await;
        assert_eq!(op["status"], "RUNNING");
        let (_, op) = f.get(&format!("operations/{name}")).await;
        assert_eq!(op["status"], "RUNNING");
        let (_, op) = f.get(&format!("operations/{name}")).await;
        assert_eq!(op["status"], "DONE");

        let (_, op) = f.post("instances/vm/reset").await;
        let name = op["name"].as_str().unwrap().to_owned();
        let (_, op) = f.post(&format!("operations/{name}/wait")).await;
        assert_eq!(op["status"], "DONE");
        assert_eq!(f.compute.resets("vm"), 3);

        let (status, body) = f.get("operations/operation-nope").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["errors"][0]["reason"], "notFound");

        let (status, _) = f.post("instances/vm/reset?requestId=not-a-uuid").await;
        assert_eq!(status, 400);

        let (_, op) = f.post("instances/vm/stop").await;
        assert_eq!(op["operationType"], "stop");
        assert_eq!(f.compute.status(P, Z, "vm").as_deref(), Some("TERMINATED"));
        let (status, body) = f.post("instances/vm/reset").await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["errors"][0]["reason"], "resourceNotReady");
        let (_, op) = f.post("instances/vm/start").await;
        assert_eq!(op["operationType"], "start");
        assert_eq!(f.compute.status(P, Z, "vm").as_deref(), Some("RUNNING"));
        assert_eq!(f.compute.resets("vm"), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reset_dedup_by_request_id_under_concurrency() {
        let f = Arc::new(fixture().await);
        const ROUNDS: usize = 20;
        for round in 0..ROUNDS {
            let name = format!("vm{round}");
            f.compute
                .add_instance(P, Z, &name, "RUNNING", OffsetDateTime::now_utc());
            let same = format!("instances/{name}/reset?requestId={}", uuid::Uuid::new_v4());
            let (f1, f2, p1, p2) = (f.clone(), f.clone(), same.clone(), same);
            let a = tokio::spawn(async move { f1.post(&p1).await });
            let b = tokio::spawn(async move { f2.post(&p2).await });
            let (a, b) = (a.await.unwrap(), b.await.unwrap());
            assert_eq!((a.0, b.0), (200, 200));
            assert_eq!(a.1["name"], b.1["name"]);
            assert_eq!(f.compute.resets(&name), 1, "round {round}");

            let p1 = format!("instances/{name}/reset?requestId={}", uuid::Uuid::new_v4());
            let p2 = format!("instances/{name}/reset?requestId={}", uuid::Uuid::new_v4());
            let (f1, f2) = (f.clone(), f.clone());
            let a = tokio::spawn(async move { f1.post(&p1).await });
            let b = tokio::spawn(async move { f2.post(&p2).await });
            let (a, b) = (a.await.unwrap(), b.await.unwrap());
            assert_ne!(a.1["name"], b.1["name"]);
            assert_eq!(f.compute.resets(&name), 3, "round {round}");
        }
        assert_eq!(f.compute.route_count(ComputeRoute::Reset), 4 * ROUNDS);
        assert_eq!(f.compute.operations().len(), 3 * ROUNDS);
        assert_eq!(f.compute.total_resets(), 3 * ROUNDS);
    }

    #[tokio::test]
    async fn list_operations_with_filters() {
        let f = fixture().await;
        let id = f
            .compute
            .add_instance(P, Z, "vm", "RUNNING", OffsetDateTime::now_utc());
        let other = f
            .compute
            .add_instance(P, Z, "other", "RUNNING", OffsetDateTime::now_utc());
        let (_, body) = f.get("operations").await;
        assert_eq!(body["kind"], "compute#operationList");
        assert!(body.get("items").is_none());

        let old = OffsetDateTime::now_utc() - time::Duration::hours(2);
        let seeded = f.compute.add_operation(P, Z, "vm", "reset", "DONE", old);
        f.compute.add_operation(P, Z, "other", "reset", "DONE", old);
        f.compute.add_operation(P, Z, "vm", "stop", "DONE", old);
        f.compute
            .add_operation(P, "other-zone", "vm", "reset", "DONE", old);
        let (_, newest) = f.post("instances/vm/reset").await;

        let q = |filter: &str| {
            let enc: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
            format!("operations?filter={enc}&orderBy=creationTimestamp%20desc")
        };
        for filter in [
            format!(r#"(operationType = "reset") AND (targetId = "{id}")"#),
            format!(r#"operationType="reset" AND targetId="{id}""#),
            format!(
                r#"operationType = "reset" AND targetLink = "https://www.googleapis.com/compute/v1/projects/{P}/zones/{Z}/instances/vm""#
            ),
        ] {
            let (status, body) = f.get(&q(&filter)).await;
            assert_eq!(status, 200, "{filter}");
            let items = body["items"].as_array().unwrap();
            assert_eq!(items.len(), 2, "{filter}");
            assert_eq!(items[0]["name"], newest["name"], "newest first");
            assert_eq!(items[1]["name"], seeded.as_str());
            let id_text = id.to_string();
            assert!(items.iter().all(|o| o["targetId"] == id_text));
        }
        let (_, body) = f.get(&q(&format!(r#"targetId = "{other}""#))).await;
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        let (_, body) = f.get(&q(r#"operationType = "delete""#)).await;
        assert!(body.get("items").is_none());

        let (_, body) = f.get("operations?maxResults=2").await;
        assert_eq!(body["items"].as_array().unwrap().len(), 2);
        assert_eq!(body["nextPageToken"], "2");
        let (_, body) = f.get("operations?maxResults=2&pageToken=2").await;
        assert_eq!(body["items"].as_array().unwrap().len(), 2);
        assert!(body.get("nextPageToken").is_none());

        let (status, body) = f.get(&q(r#"operationType = "reset"#)).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["errors"][0]["reason"], "invalid");
    }

    #[tokio::test]
    async fn scripted_errors() {
        let f = fixture().await;
        f.compute
            .add_instance(P, Z, "vm", "RUNNING", OffsetDateTime::now_utc());
        f.compute.fail_next(ComputeRoute::Reset, 2, 429);
        let (status, body) = f.post("instances/vm/reset").await;
        assert_eq!(status, 429);
        assert_eq!(body["error"]["errors"][0]["reason"], "rateLimitExceeded");
        assert_eq!(f.post("instances/vm/reset").await.0, 429);
        assert_eq!(f.post("instances/vm/reset").await.0, 200);
        assert_eq!(f.compute.resets("vm"), 1);

        f.compute.fail_always(ComputeRoute::Reset, 403);
        for _ in 0..2 {
            let (status, body) = f.post("instances/vm/reset").await;
            assert_eq!(status, 403);
            assert_eq!(body["error"]["errors"][0]["reason"], "forbidden");
            assert_eq!(
                body["error"]["message"],
                format!("Required 'compute.instances.reset' permission for 'projects/{P}/zones/{Z}/instances/vm'")
            );
        }
        f.compute.fail_always(ComputeRoute::GetInstance, 503);
        let (status, body) = f.get("instances/vm").await;
        assert_eq!(status, 503);
        assert_eq!(body["error"]["errors"][0]["reason"], "backendError");
        assert_eq!(body["error"]["message"], "Service unavailable");
        f.compute.fail_next(ComputeRoute::ListOperations, 1, 500);
        assert_eq!(f.get("operations").await.0, 500);
        assert_eq!(f.get("operations").await.0, 200);
        f.compute.clear_faults();
        assert_eq!(f.get("instances/vm").await.0, 200);
        assert_eq!(f.compute.resets("vm"), 1);

        f.compute.hang_next(ComputeRoute::GetInstance, 1);
        let err = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap()
            .get(f.url("instances/vm"))
            .bearer_auth(&f.token)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(f.get("instances/vm").await.0, 200);
    }

    #[tokio::test]
    async fn failed_operations() {
        let f = fixture().await;
        f.compute
            .add_instance(P, Z, "vm", "RUNNING", OffsetDateTime::now_utc());
        f.compute
            .set_new_op_error(Some(("RESOURCE_NOT_READY", "not ready")));
        f.compute.set_op_polls_to_done(0);
        let (_, op) = f.post("instances/vm/reset").await;
        assert_eq!(op["status"], "DONE");
        assert_eq!(op["error"]["errors"][0]["code"], "RESOURCE_NOT_READY");
    }
}
