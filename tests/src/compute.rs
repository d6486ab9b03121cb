//! `FakeCompute`: the part of Compute Engine v1 the keepalive and the provisioner use, under
//! `/compute/v1/projects/{p}/...`:
//!
//! - zonal instances: get, insert, reset, start, stop, setMetadata;
//! - regional addresses (static external IPs): insert, get;
//! - global firewall rules: insert, get, patch;
//! - zonal, regional and global operations: get and wait; list, for zonal ones, and the
//!   project's aggregated list of every scope, with filters and `orderBy=creationTimestamp
//!   desc`;
//! - the project itself: get (every project exists, with a stable number derived from its
//!   name, see [`FakeCompute::project_number`]);
//!
//! with `requestId` deduplication on every mutating call, scripted errors in Compute's error
//! shape, and bearer tokens checked against a [`TokenRegistry`].
//!
//! Links in answers (`selfLink`, `targetLink`, `zone`, `region`, `network`, `machineType`,
//! disk `source`, address `users`) have the real API's form,
//! `https://www.googleapis.com/compute/v1/projects/...` ([`LINK_PREFIX`]), never the fake's
//! own address: a client builds its URLs from names and its configured endpoint.
//!
//! Resources are created when the insert is accepted (the operation then only has to be
//! polled to `DONE`), unless [`FakeCompute::set_new_op_error`] is set: then the insert's
//! operation ends `DONE` with that error and nothing is created, as when the real API fails
//! an insert.

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
use base64::Engine as _;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::server::{FakeState, Fault, Faults};
use crate::{
    server::{
        bearer_token, compute_timestamp, hang, json_response, lock, now, parse_rfc3339,
        query_pairs, HttpServer,
    },
    token::{TokenRegistry, FAKE_CLIENT_EMAIL},
};

/// How the real API writes links: every `selfLink`, `targetLink`, `zone`, `network`, ...
/// starts with this.
pub const LINK_PREFIX: &str = "https://www.googleapis.com/compute/v1";

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
    /// `PATCH .../global/firewalls/{f}`
    PatchFirewall,
    /// `GET .../regions/{r}/operations/{op}`
    GetRegionOperation,
    /// `POST .../regions/{r}/operations/{op}/wait`
    WaitRegionOperation,
    /// `GET .../global/operations/{op}`
    GetGlobalOperation,
    /// `POST .../global/operations/{op}/wait`
    WaitGlobalOperation,
    /// `GET /compute/v1/projects/{p}`
    GetProject,
    /// `GET /compute/v1/projects/{p}/aggregated/operations`
    AggregatedOperations,
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
            ComputeRoute::InsertInstance => "compute.instances.create",
            ComputeRoute::SetMetadata => "compute.instances.setMetadata",
            ComputeRoute::SetLabels => "compute.instances.setLabels",
            ComputeRoute::GetAddress => "compute.addresses.get",
            ComputeRoute::InsertAddress => "compute.addresses.create",
            ComputeRoute::GetFirewall => "compute.firewalls.get",
            ComputeRoute::InsertFirewall => "compute.firewalls.create",
            ComputeRoute::PatchFirewall => "compute.firewalls.update",
            ComputeRoute::GetRegionOperation | ComputeRoute::WaitRegionOperation => {
                "compute.regionOperations.get"
            }
            ComputeRoute::GetGlobalOperation | ComputeRoute::WaitGlobalOperation => {
                "compute.globalOperations.get"
            }
            ComputeRoute::GetProject => "compute.projects.get",
            ComputeRoute::AggregatedOperations => "compute.globalOperations.list",
        }
    }
}

type Key = (String, String, String);

/// Where an operation lives.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    Zone(String),
    Region(String),
    Global,
}

impl Scope {
    /// `projects/p/zones/z` (the form of error messages).
    fn path(&self, project: &str) -> String {
        match self {
            Scope::Zone(z) => format!("projects/{project}/zones/{z}"),
            Scope::Region(r) => format!("projects/{project}/regions/{r}"),
            Scope::Global => format!("projects/{project}/global"),
        }
    }

    /// `https://www.googleapis.com/compute/v1/projects/p/zones/z`
    fn link(&self, project: &str) -> String {
        format!("{LINK_PREFIX}/{}", self.path(project))
    }
}

struct Instance {
    id: u64,
    status: String,
    created: OffsetDateTime,
    last_start: Option<OffsetDateTime>,
    last_stop: Option<OffsetDateTime>,
    /// natIP of the first access config of the first interface ("" when none).
    nat_ip: String,
    metadata: Vec<(String, String)>,
    metadata_fingerprint: String,
    /// Set by [`FakeCompute::set_labels`] (or [`FakeCompute::add_instance`]); `None`: those of
    /// the insert body, if any.
    labels: Option<Vec<(String, String)>>,
    resets: usize,
    /// While booting after an insert: (GETs answered so far, GETs that answer before RUNNING).
    boot: Option<(u32, u32)>,
    /// Instances created by insert (or seeded from an insert body).
    inserted: Option<Inserted>,
}

struct Inserted {
    /// The insert body exactly as posted.
    raw: Value,
    /// The answer's fields computed at insert: machineType, disks, networkInterfaces, tags,
    /// serviceAccounts, labels, scheduling, fingerprints...
    shape: Value,
}

struct Address {
    id: u64,
    created: OffsetDateTime,
    address: String,
    status: String,
    /// selfLinks of the instances using it.
    users: Vec<String>,
    /// The insert body (name, addressType, networkTier, description, ...).
    body: Value,
}

struct Firewall {
    id: u64,
    created: OffsetDateTime,
    /// The insert body, patched, with `network` as a full URL.
    body: Value,
}

struct Operation {
    seq: u64,
    id: u64,
    name: String,
    project: String,
    scope: Scope,
    op_type: String,
    target_link: String,
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
    instances: HashMap<Key, Instance>,
    /// (project, region, name)
    addresses: HashMap<Key, Address>,
    /// (project, name)
    firewalls: HashMap<(String, String), Firewall>,
    operations: Vec<Operation>,
    /// (project, requestId) -> operation name
    request_ids: HashMap<(String, String), String>,
    polls_to_done: u32,
    boot_polls: u32,
    wait_completes: bool,
    new_op_error: Option<(String, String)>,
    faults: HashMap<ComputeRoute, Faults<Fault>>,
    counts: HashMap<ComputeRoute, usize>,
    /// Successful creations by kind ("instance", "address", "firewall").
    created: HashMap<&'static str, usize>,
    /// Project numbers set by [`FakeCompute::set_project_number`] (others are derived from
    /// the name).
    project_numbers: HashMap<String, String>,
    next_external: u32,
    next_internal: u32,
    seq: u64,
}

fn instance_link(project: &str, zone: &str, name: &str) -> String {
    format!(
        "{}/instances/{name}",
        Scope::Zone(zone.into()).link(project)
    )
}

fn address_link(project: &str, region: &str, name: &str) -> String {
    format!(
        "{}/addresses/{name}",
        Scope::Region(region.into()).link(project)
    )
}

fn firewall_link(project: &str, name: &str) -> String {
    format!("{}/firewalls/{name}", Scope::Global.link(project))
}

fn project_link(project: &str) -> String {
    format!("{LINK_PREFIX}/projects/{project}")
}

/// FNV-1a of the project name: fixed by its definition (unlike `DefaultHasher`), so the
/// same name gives the same number in every fake, run and toolchain.
fn project_hash(project: &str) -> u64 {
    project.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The number of a project nobody set one for: 12 decimal digits, no leading zero, derived
/// from its name.
fn default_project_number(project: &str) -> String {
    (100_000_000_000 + project_hash(project) % 900_000_000_000).to_string()
}

/// The region of a zone (`europe-west3-c` -> `europe-west3`; a zone without a dash is its
/// own region).
pub fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

/// A link as the real API writes it, from any form a client may send: a full URL (any host),
/// `projects/p/...`, or a path relative to the project (`global/networks/default`,
/// `zones/z/...`, `regions/r/...`).
fn full_link(project: &str, given: &str) -> String {
    let rel = match given.split_once("/compute/v1/") {
        Some((_, rest)) => rest,
        None => given.trim_start_matches('/'),
    };
    if rel.starts_with("projects/") {
        format!("{LINK_PREFIX}/{rel}")
    } else {
        format!("{LINK_PREFIX}/projects/{project}/{rel}")
    }
}

/// A network link (a bare name `default` means `global/networks/default`).
fn network_link(project: &str, given: &str) -> String {
    if given.contains('/') {
        full_link(project, given)
    } else {
        full_link(project, &format!("global/networks/{given}"))
    }
}

/// An 8-byte base64 fingerprint, as the real API's.
fn fingerprint() -> String {
    use rand::Rng as _;
    base64::engine::general_purpose::STANDARD.encode(rand::rng().random::<[u8; 8]>())
}

/// Whether `name` is a valid Compute resource name (RFC 1035, at most 63 characters).
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn invalid(field: &str, message: &str) -> Response {
    compute_error(
        400,
        "invalid",
        &format!("Invalid value for field '{field}': {message}"),
    )
}

fn required(field: &str) -> Response {
    compute_error(
        400,
        "required",
        &format!("Required field '{field}' not specified"),
    )
}

fn check_name(body: &Value) -> Result<String, Response> {
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(required("resource.name"));
    };
    if !valid_name(name) {
        return Err(invalid(
            "resource.name",
            &format!(
                "'{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
            ),
        ));
    }
    Ok(name.to_owned())
}

fn parse_body(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(compute_error(
            400,
            "parseError",
            "Invalid JSON payload received. Expected a JSON object.",
        )),
    }
}

/// `metadata.items` (`[{key, value}]`) checked as the real API does: keys of letters,
/// digits, `-` and `_` (at most 128), unique; values strings; at most 512 KiB in all.
fn parse_metadata_items(
    items: Option<&Value>,
    field: &str,
) -> Result<Vec<(String, String)>, Response> {
    let Some(items) = items.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(items) = items.as_array() else {
        return Err(invalid(field, "must be a list of {key, value}"));
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut total = 0;
    for (i, item) in items.iter().enumerate() {
        let key = item.get("key").and_then(Value::as_str).unwrap_or("");
        let ok_key = !key.is_empty()
            && key.len() <= 128
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !ok_key {
            return Err(invalid(
                &format!("{field}[{i}].key"),
                &format!("'{key}'. Must be a match of regex '[a-zA-Z0-9-_]{{1,128}}'"),
            ));
        }
        let value = match item.get("value") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(invalid(&format!("{field}[{i}].value"), "must be a string")),
        };
        if out.iter().any(|(k, _)| k == key) {
            return Err(invalid(field, &format!("Duplicate metadata key '{key}'")));
        }
        total += key.len() + value.len();
        out.push((key.to_owned(), value.to_owned()));
    }
    if total > 512 * 1024 {
        return Err(invalid(field, "Metadata is larger than 512 KiB"));
    }
    Ok(out)
}

fn string_field(v: &Value, name: &str, default: &str) -> Value {
    json!(v.get(name).and_then(Value::as_str).unwrap_or(default))
}

impl ComputeState {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn project_number(&self, project: &str) -> String {
        self.project_numbers
            .get(project)
            .cloned()
            .unwrap_or_else(|| default_project_number(project))
    }

    /// The project as `GET /compute/v1/projects/{p}` answers it. Its creation time is
    /// derived from its name too (some day of 2018-2021), so answers are stable.
    fn project_json(&self, project: &str) -> Value {
        let number = self.project_number(project);
        let h = project_hash(project);
        // 2018-01-01T00:00:00Z, plus up to four years and some seconds.
        let secs = 1_514_764_800 + (h >> 40) % 1461 * 86_400 + (h >> 8) % 86_400;
        let created = OffsetDateTime::UNIX_EPOCH
            + time::Duration::seconds(secs as i64)
            + time::Duration::milliseconds(((h >> 20) % 1000) as i64);
        json!({
            "kind": "compute#project",
            "id": number,
            "name": project,
            "creationTimestamp": compute_timestamp(created),
            "selfLink": project_link(project),
            "defaultServiceAccount": format!("{number}-compute@developer.gserviceaccount.com"),
            "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
        })
    }

    /// A fresh external address, `203.0.113.10`, `.11`, ... (then `198.18.x.y`).
    fn fresh_external_ip(&mut self) -> String {
        loop {
            let n = self.next_external;
            self.next_external += 1;
            let ip = if n <= 254 {
                format!("203.0.113.{n}")
            } else {
                let m = n - 255;
                format!("198.18.{}.{}", (m / 250) % 256, 1 + m % 250)
            };
            let used = self.addresses.values().any(|a| a.address == ip)
                || self.instances.values().any(|i| i.nat_ip == ip);
            if !used {
                return ip;
            }
        }
    }

    fn fresh_internal_ip(&mut self) -> String {
        let n = self.next_internal;
        self.next_internal += 1;
        format!("10.156.{}.{}", (n / 250) % 256, 2 + n % 250)
    }

    fn instance_json(&self, (project, zone, name): &Key, inst: &Instance) -> Value {
        let zone_link = Scope::Zone(zone.clone()).link(project);
        let metadata = json!({
            "kind": "compute#metadata",
            "fingerprint": inst.metadata_fingerprint,
            "items": inst.metadata.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        let mut v = match &inst.inserted {
            Some(ins) => {
                let mut v = ins.shape.clone();
                if !inst.nat_ip.is_empty() {
                    if let Some(ac) = v
                        .pointer_mut("/networkInterfaces/0/accessConfigs/0")
                        .and_then(Value::as_object_mut)
                    {
                        ac.insert("natIP".into(), json!(inst.nat_ip));
                    }
                }
                v
            }
            None => json!({
                "machineType": format!("{zone_link}/machineTypes/e2-medium"),
                "networkInterfaces": [{
                    "kind": "compute#networkInterface",
                    "name": "nic0",
                    "network": format!("{LINK_PREFIX}/projects/{project}/global/networks/default"),
                    "networkIP": "10.128.0.2",
                    "accessConfigs": [{
                        "kind": "compute#accessConfig",
                        "type": "ONE_TO_ONE_NAT",
                        "name": "External NAT",
                        "natIP": inst.nat_ip,
                        "networkTier": "PREMIUM"
                    }]
                }],
            }),
        };
        let obj = v.as_object_mut().expect("instance shape is an object");
        for (k, val) in [
            ("kind", json!("compute#instance")),
            ("id", json!(inst.id.to_string())),
            ("creationTimestamp", json!(compute_timestamp(inst.created))),
            ("name", json!(name)),
            ("status", json!(inst.status)),
            ("zone", json!(zone_link)),
            ("selfLink", json!(format!("{zone_link}/instances/{name}"))),
            ("metadata", metadata),
        ] {
            obj.insert(k.into(), val);
        }
        if let Some(t) = inst.last_start {
            obj.insert("lastStartTimestamp".into(), json!(compute_timestamp(t)));
        }
        if let Some(t) = inst.last_stop {
            obj.insert("lastStopTimestamp".into(), json!(compute_timestamp(t)));
        }
        if let Some(labels) = &inst.labels {
            let map: Map<String, Value> =
                labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            obj.insert("labels".into(), Value::Object(map));
        }
        v
    }

    fn address_json(&self, (project, region, name): &Key, a: &Address) -> Value {
        let mut v = json!({
            "kind": "compute#address",
            "id": a.id.to_string(),
            "creationTimestamp": compute_timestamp(a.created),
            "name": name,
            "address": a.address,
            "status": a.status,
            "region": Scope::Region(region.clone()).link(project),
            "selfLink": address_link(project, region, name),
            "networkTier": string_field(&a.body, "networkTier", "PREMIUM"),
            "addressType": string_field(&a.body, "addressType", "EXTERNAL"),
            "ipVersion": string_field(&a.body, "ipVersion", "IPV4"),
            "labelFingerprint": "42WmSpB8rSM=",
        });
        if let Some(d) = a.body.get("description").and_then(Value::as_str) {
            v["description"] = json!(d);
        }
        if let Some(l) = a.body.get("labels").filter(|l| l.is_object()) {
            v["labels"] = l.clone();
        }
        if !a.users.is_empty() {
            v["users"] = json!(a.users);
        }
        v
    }

    fn firewall_json(&self, (project, name): &(String, String), f: &Firewall) -> Value {
        let mut v = f.body.clone();
        let obj = v.as_object_mut().expect("firewall body is an object");
        for (k, default) in [
            ("direction", json!("INGRESS")),
            ("priority", json!(1000)),
            ("disabled", json!(false)),
            ("logConfig", json!({"enable": false})),
            (
                "network",
                json!(network_link(project, "global/networks/default")),
            ),
        ] {
            obj.entry(k).or_insert(default);
        }
        for (k, val) in [
            ("kind", json!("compute#firewall")),
            ("id", json!(f.id.to_string())),
            ("creationTimestamp", json!(compute_timestamp(f.created))),
            ("name", json!(name)),
            ("selfLink", json!(firewall_link(project, name))),
        ] {
            obj.insert(k.into(), val);
        }
        v
    }

    fn op_json(&self, op: &Operation) -> Value {
        let scope_link = op.scope.link(&op.project);
        let mut v = json!({
            "kind": "compute#operation",
            "id": op.id.to_string(),
            "name": op.name,
            "operationType": op.op_type,
            "targetLink": op.target_link,
            "targetId": op.target_id.to_string(),
            "status": op.status,
            "user": FAKE_CLIENT_EMAIL,
            "progress": if op.status == "DONE" { 100 } else { 0 },
            "insertTime": compute_timestamp(op.insert_time),
            "creationTimestamp": compute_timestamp(op.insert_time),
            "selfLink": format!("{scope_link}/operations/{}", op.name),
        });
        match &op.scope {
            Scope::Zone(_) => v["zone"] = json!(scope_link),
            Scope::Region(_) => v["region"] = json!(scope_link),
            Scope::Global => {}
        }
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
        scope: Scope,
        target_link: String,
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
            scope,
            op_type: op_type.into(),
            target_link,
            target_id,
            status: "PENDING".into(),
            insert_time: t,
            start_time: None,
            end_time: None,
            polls_left: Some(polls),
            request_id: request_id.clone(),
            error: self.new_op_error.clone(),
        };
        if polls == 0 {
            op.finish();
        }
        let name = op.name.clone();
        self.operations.push(op);
        if let Some(rid) = request_id {
            self.request_ids.insert((project.to_owned(), rid), name);
        }
        self.operations.len() - 1
    }

    fn find_op(&self, project: &str, scope: &Scope, name: &str) -> Option<usize> {
        self.operations
            .iter()
            .position(|o| o.name == name && o.project == project && o.scope == *scope)
    }

    fn find_op_any(&self, name: &str) -> Option<usize> {
        self.operations.iter().position(|o| o.name == name)
    }

    /// Checks a `requestId`: `Err` with the answer to give when it is invalid (400) or was
    /// seen before (the first operation, and nothing else happens).
    fn check_request_id(&self, project: &str, request_id: Option<&String>) -> Result<(), Response> {
        let Some(rid) = request_id else {
            return Ok(());
        };
        if uuid::Uuid::parse_str(rid).map_or(true, |u| u.is_nil()) {
            return Err(compute_error(
                400,
                "invalid",
                &format!("Invalid value for field 'requestId': '{rid}'. Must be a non-zero UUID."),
            ));
        }
        if let Some(idx) = self
            .request_ids
            .get(&(project.to_owned(), rid.clone()))
            .and_then(|name| self.find_op_any(name))
        {
            return Err(json_response(200, &self.op_json(&self.operations[idx])));
        }
        Ok(())
    }

    /// Marks the reserved addresses an instance uses as `IN_USE` by it.
    fn attach_addresses(&mut self, project: &str, nat_ips: &[String], link: &str) {
        for ((p, _, _), a) in self.addresses.iter_mut() {
            if p == project && nat_ips.contains(&a.address) && !a.users.iter().any(|u| u == link) {
                a.users.push(link.to_owned());
                a.status = "IN_USE".into();
            }
        }
    }

    /// Frees the addresses an instance used.
    fn detach_addresses(&mut self, link: &str) {
        for a in self.addresses.values_mut() {
            a.users.retain(|u| u != link);
            if a.users.is_empty() && a.status == "IN_USE" {
                a.status = "RESERVED".into();
            }
        }
    }

    /// Builds an inserted instance from an insert body: checks it as the real API does, and
    /// computes the answer's shape. `check_nat_ips`: a `natIP` must be a reserved address of
    /// the project in the zone's region. Returns the instance (status PROVISIONING, or RUNNING
    /// when `boot_polls` is 0) and every natIP it uses.
    fn build_instance(
        &mut self,
        project: &str,
        zone: &str,
        name: &str,
        body: &Value,
        check_nat_ips: bool,
        boot_polls: u32,
    ) -> Result<(Instance, Vec<String>), Response> {
        let zone_link = Scope::Zone(zone.into()).link(project);
        let region = region_of(zone).to_owned();

        let Some(mt) = body.get("machineType").and_then(Value::as_str) else {
            return Err(required("resource.machineType"));
        };
        let Some((scope_part, mt_name)) = mt.rsplit_once("machineTypes/") else {
            return Err(invalid(
                "resource.machineType",
                &format!("'{mt}'. Expected zones/{zone}/machineTypes/TYPE"),
            ));
        };
        if mt_name.is_empty() || mt_name.contains('/') {
            return Err(invalid("resource.machineType", &format!("'{mt}'")));
        }
        if let Some((_, z)) = scope_part.trim_end_matches('/').rsplit_once("zones/") {
            if z != zone {
                return Err(invalid(
                    "resource.machineType",
                    &format!("'{mt}'. Machine type specified is in a different scope than the instance ('{zone}')."),
                ));
            }
        }

        let Some(disks_in) = body
            .get("disks")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
        else {
            return Err(required("resource.disks"));
        };
        let boots = disks_in
            .iter()
            .filter(|d| d.get("boot").and_then(Value::as_bool) == Some(true))
            .count();
        if boots != 1 {
            return Err(invalid(
                "resource.disks",
                "Exactly one boot disk must be specified.",
            ));
        }
        let mut disks = Vec::new();
        for (i, d) in disks_in.iter().enumerate() {
            let init = d.get("initializeParams");
            let image = init
                .and_then(|p| p.get("sourceImage"))
                .and_then(Value::as_str);
            let source = d.get("source").and_then(Value::as_str);
            if source.is_none() && image.is_none() {
                return Err(invalid(
                    &format!("resource.disks[{i}]"),
                    "A disk needs either a source or initializeParams.sourceImage.",
                ));
            }
            let disk_name = init
                .and_then(|p| p.get("diskName"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    if i == 0 {
                        name.to_owned()
                    } else {
                        format!("{name}-{i}")
                    }
                });
            let size = match init.and_then(|p| p.get("diskSizeGb")) {
                Some(Value::String(s)) if s.parse::<u64>().is_ok() => s.clone(),
                Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
                None | Some(Value::Null) => "10".to_owned(),
                Some(other) => {
                    return Err(invalid(
                        &format!("resource.disks[{i}].initializeParams.diskSizeGb"),
                        &format!("'{other}'"),
                    ))
                }
            };
            let mut out = json!({
                "kind": "compute#attachedDisk",
                "type": string_field(d, "type", "PERSISTENT"),
                "mode": string_field(d, "mode", "READ_WRITE"),
                "source": source.map_or_else(
                    || format!("{zone_link}/disks/{disk_name}"),
                    |s| full_link(project, s),
                ),
                "deviceName": d
                    .get("deviceName")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("persistent-disk-{i}"), str::to_owned),
                "index": i,
                "boot": d.get("boot").and_then(Value::as_bool).unwrap_or(false),
                "autoDelete": d.get("autoDelete").and_then(Value::as_bool).unwrap_or(false),
                "interface": string_field(d, "interface", "SCSI"),
                "diskSizeGb": size,
                "architecture": "X86_64",
            });
            if image.is_some_and(|img| img.contains("cos-cloud/")) {
                out["licenses"] = json!([
                    format!("{LINK_PREFIX}/projects/cos-cloud/global/licenses/cos"),
                    format!(
                        "{LINK_PREFIX}/projects/cos-cloud-shielded/global/licenses/shielded-cos"
                    ),
                ]);
                out["guestOsFeatures"] = json!([
                    {"type": "VIRTIO_SCSI_MULTIQUEUE"},
                    {"type": "SEV_CAPABLE"},
                    {"type": "UEFI_COMPATIBLE"},
                    {"type": "GVNIC"},
                ]);
            }
            disks.push(out);
        }

        let Some(nics_in) = body
            .get("networkInterfaces")
            .and_then(Value::as_array)
            .filter(|n| !n.is_empty())
        else {
            return Err(required("resource.networkInterfaces"));
        };
        let mut nics = Vec::new();
        let mut nat_ips = Vec::new();
        for (i, n) in nics_in.iter().enumerate() {
            let network = network_link(
                project,
                n.get("network")
                    .and_then(Value::as_str)
                    .unwrap_or("global/networks/default"),
            );
            let net_name = network.rsplit('/').next().unwrap_or("default").to_owned();
            let subnetwork = n.get("subnetwork").and_then(Value::as_str).map_or_else(
                || {
                    format!(
                        "{LINK_PREFIX}/projects/{project}/regions/{region}/subnetworks/{net_name}"
                    )
                },
                |s| full_link(project, s),
            );
            let network_ip = n
                .get("networkIP")
                .and_then(Value::as_str)
                .map_or_else(|| self.fresh_internal_ip(), str::to_owned);
            let mut acs = Vec::new();
            let acs_in = n
                .get("accessConfigs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, ac) in acs_in.iter().enumerate() {
                let nat_ip = match ac.get("natIP").and_then(Value::as_str) {
                    Some(ip) => {
                        let reserved = self
                            .addresses
                            .iter()
                            .any(|((p, r, _), a)| p == project && *r == region && a.address == ip);
                        if check_nat_ips && !reserved {
                            return Err(invalid(
                                &format!(
                                    "resource.networkInterfaces[{i}].accessConfigs[{j}].natIP"
                                ),
                                &format!(
                                    "'{ip}'. The specified external IP address '{ip}' was not \
                                     found in region '{region}'."
                                ),
                            ));
                        }
                        ip.to_owned()
                    }
                    None => self.fresh_external_ip(),
                };
                nat_ips.push(nat_ip.clone());
                acs.push(json!({
                    "kind": "compute#accessConfig",
                    "type": string_field(ac, "type", "ONE_TO_ONE_NAT"),
                    "name": string_field(ac, "name", "External NAT"),
                    "natIP": nat_ip,
                    "networkTier": string_field(ac, "networkTier", "PREMIUM"),
                }));
            }
            let mut nic = json!({
                "kind": "compute#networkInterface",
                "network": network,
                "subnetwork": subnetwork,
                "networkIP": network_ip,
                "name": format!("nic{i}"),
                "fingerprint": fingerprint(),
                "stackType": "IPV4_ONLY",
            });
            if !acs.is_empty() {
                nic["accessConfigs"] = Value::Array(acs);
            }
            nics.push(nic);
        }

        let metadata = parse_metadata_items(
            body.get("metadata").and_then(|m| m.get("items")),
            "resource.metadata.items",
        )?;

        let mut tags = json!({"fingerprint": fingerprint()});
        if let Some(items) = body.get("tags").and_then(|t| t.get("items")) {
            let Some(list) = items.as_array() else {
                return Err(invalid("resource.tags.items", "must be a list of strings"));
            };
            for (i, t) in list.iter().enumerate() {
                if !t.as_str().is_some_and(valid_name) {
                    return Err(invalid(
                        &format!("resource.tags.items[{i}]"),
                        &format!("'{t}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"),
                    ));
                }
            }
            if !list.is_empty() {
                tags["items"] = items.clone();
            }
        }

        let mut shape = Map::new();
        shape.insert(
            "machineType".into(),
            json!(format!("{zone_link}/machineTypes/{mt_name}")),
        );
        shape.insert("disks".into(), Value::Array(disks));
        shape.insert("networkInterfaces".into(), Value::Array(nics));
        shape.insert("tags".into(), tags);
        shape.insert(
            "canIpForward".into(),
            json!(body
                .get("canIpForward")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
        );
        shape.insert(
            "scheduling".into(),
            body.get("scheduling").cloned().unwrap_or_else(|| {
                json!({
                    "onHostMaintenance": "MIGRATE",
                    "automaticRestart": true,
                    "preemptible": false,
                    "provisioningModel": "STANDARD",
                })
            }),
        );
        shape.insert("cpuPlatform".into(), json!("Intel Broadwell"));
        shape.insert("labelFingerprint".into(), json!(fingerprint()));
        shape.insert("startRestricted".into(), json!(false));
        shape.insert(
            "deletionProtection".into(),
            json!(body
                .get("deletionProtection")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
        );
        shape.insert("fingerprint".into(), json!(fingerprint()));
        for key in [
            "description",
            "serviceAccounts",
            "labels",
            "shieldedInstanceConfig",
            "minCpuPlatform",
            "guestAccelerators",
        ] {
            if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
                shape.insert(key.into(), v.clone());
            }
        }

        let t = now();
        let running = boot_polls == 0;
        let inst = Instance {
            id: random_id(),
            status: if running { "RUNNING" } else { "PROVISIONING" }.into(),
            created: t,
            last_start: running.then_some(t),
            last_stop: None,
            nat_ip: nat_ips_first(&shape),
            metadata,
            metadata_fingerprint: fingerprint(),
            labels: None,
            resets: 0,
            boot: (!running).then_some((0, boot_polls)),
            inserted: Some(Inserted {
                raw: body.clone(),
                shape: Value::Object(shape),
            }),
        };
        Ok((inst, nat_ips))
    }

    /// Validates a firewall body and normalises its network.
    fn check_firewall(project: &str, body: &mut Value) -> Result<(), Response> {
        if let Some(d) = body.get("direction").and_then(Value::as_str) {
            if d != "INGRESS" && d != "EGRESS" {
                return Err(invalid("resource.direction", &format!("'{d}'")));
            }
        }
        let has = |k: &str| {
            body.get(k)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        };
        if !has("allowed") && !has("denied") {
            return Err(invalid(
                "resource",
                "A firewall rule must have 'allowed' or 'denied' rules.",
            ));
        }
        for list in ["allowed", "denied"] {
            for (i, rule) in body
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if rule.get("IPProtocol").and_then(Value::as_str).is_none() {
                    return Err(required(&format!("resource.{list}[{i}].IPProtocol")));
                }
            }
        }
        let network = body
            .get("network")
            .and_then(Value::as_str)
            .unwrap_or("global/networks/default")
            .to_owned();
        body["network"] = json!(network_link(project, &network));
        Ok(())
    }
}

fn nat_ips_first(shape: &Map<String, Value>) -> String {
    shape
        .get("networkInterfaces")
        .and_then(|n| n.pointer("/0/accessConfigs/0/natIP"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
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
            new_op_error: None,
            faults: HashMap::new(),
            counts: HashMap::new(),
            created: HashMap::new(),
            project_numbers: HashMap::new(),
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

    /// Adds an instance as the provisioner leaves it (natIP `203.0.113.7`, networkIP
    /// `10.128.0.2`, label `whatsapp-keepalive=enabled`, no metadata) and returns its id.
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
                last_start: Some(last_start),
                last_stop: None,
                nat_ip: "203.0.113.7".into(),
                metadata: Vec::new(),
                metadata_fingerprint: "fake-fingerprint=".into(),
                labels: Some(vec![("whatsapp-keepalive".into(), "enabled".into())]),
                resets: 0,
                boot: None,
                inserted: None,
            },
        );
        id
    }

    /// Adds an instance as if an insert with `body` (the insert body documented for
    /// `POST .../zones/{z}/instances`, `name` included) had succeeded long ago: `RUNNING`,
    /// not counted by [`insert_count`](Self::insert_count), no operation. Reserved addresses
    /// it names as natIP become `IN_USE` (a natIP need not be reserved here). Returns its id.
    /// Panics on a body the insert would refuse.
    pub fn seed_instance(&self, project: &str, zone: &str, body: Value) -> u64 {
        let mut st = lock(&self.state);
        let name = check_name(&body)
            .map_err(|_| ())
            .expect("FakeCompute::seed_instance: body needs a valid name");
        let (mut inst, nat_ips) = st
            .build_instance(project, zone, &name, &body, false, 0)
            .unwrap_or_else(|_| panic!("FakeCompute::seed_instance: invalid body {body}"));
        let t = now() - time::Duration::days(1);
        inst.created = t;
        inst.last_start = Some(t);
        let id = inst.id;
        st.instances
            .insert((project.into(), zone.into(), name.clone()), inst);
        st.attach_addresses(project, &nat_ips, &instance_link(project, zone, &name));
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

    /// Sets the instance's status (`RUNNING`, `TERMINATED`, `STAGING`, ...); ends a boot in
    /// progress. Panics if unknown.
    pub fn set_status(&self, project: &str, zone: &str, name: &str, status: &str) {
        self.with_instance(project, zone, name, |i| {
            i.status = status.into();
            i.boot = None;
        });
    }

    /// Replaces the instance's labels. Panics if unknown.
    pub fn set_labels(&self, project: &str, zone: &str, name: &str, labels: &[(&str, &str)]) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.with_instance(project, zone, name, |i| i.labels = Some(labels));
    }

    /// Sets the instance's `lastStartTimestamp`. Panics if unknown.
    pub fn set_last_start(&self, project: &str, zone: &str, name: &str, t: OffsetDateTime) {
        self.with_instance(project, zone, name, |i| i.last_start = Some(t));
    }

    /// Sets the instance's external address. Panics if unknown.
    pub fn set_nat_ip(&self, project: &str, zone: &str, name: &str, ip: &str) {
        self.with_instance(project, zone, name, |i| i.nat_ip = ip.into());
    }

    /// Sets the instance's metadata items (and gives it a new metadata fingerprint, as a
    /// change by someone else would). Panics if unknown.
    pub fn set_metadata(&self, project: &str, zone: &str, name: &str, items: &[(&str, &str)]) {
        self.with_instance(project, zone, name, |i| {
            i.metadata = items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            i.metadata_fingerprint = fingerprint();
        });
    }

    /// The instance's metadata items, in order.
    pub fn metadata(&self, project: &str, zone: &str, name: &str) -> Option<Vec<(String, String)>> {
        lock(&self.state)
            .instances
            .get(&(project.into(), zone.into(), name.into()))
            .map(|i| i.metadata.clone())
    }

    /// One metadata value of the instance.
    pub fn metadata_value(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        key: &str,
    ) -> Option<String> {
        self.metadata(project, zone, name)?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Removes the instance (GET and reset then answer 404); the addresses it used become
    /// `RESERVED` again.
    pub fn remove_instance(&self, project: &str, zone: &str, name: &str) {
        let mut st = lock(&self.state);
        if st
            .instances
            .remove(&(project.into(), zone.into(), name.into()))
            .is_some()
        {
            st.detach_addresses(&instance_link(project, zone, name));
        }
    }

    /// The instance as `GET` would answer it (without advancing a boot).
    pub fn instance(&self, project: &str, zone: &str, name: &str) -> Option<Value> {
        let st = lock(&self.state);
        let key = (project.to_owned(), zone.to_owned(), name.to_owned());
        st.instances.get(&key).map(|i| st.instance_json(&key, i))
    }

    /// The body of the insert that created the instance, exactly as posted (`None` for
    /// instances added with [`add_instance`](Self::add_instance), or unknown).
    pub fn inserted_body(&self, project: &str, zone: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .instances
            .get(&(project.into(), zone.into(), name.into()))
            .and_then(|i| i.inserted.as_ref())
            .map(|ins| ins.raw.clone())
    }

    /// The instance's status.
    pub fn status(&self, project: &str, zone: &str, name: &str) -> Option<String> {
        lock(&self.state)
            .instances
            .get(&(project.into(), zone.into(), name.into()))
            .map(|i| i.status.clone())
    }

    /// Instances created by insert answer `PROVISIONING` on the first GET, `STAGING` on the
    /// following ones, for `n` GETs in all; the next GET answers `RUNNING` (and sets
    /// `lastStartTimestamp`). Default 2 (PROVISIONING, STAGING, RUNNING). 0: `RUNNING` at
    /// once. Instances booting now get at most `n` more GETs before RUNNING.
    pub fn set_instance_boot_polls(&self, n: u32) {
        let mut st = lock(&self.state);
        st.boot_polls = n;
        for inst in st.instances.values_mut() {
            if let Some((seen, total)) = inst.boot.as_mut() {
                *total = (*total).min(seen.saturating_add(n));
            }
        }
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

    /// Successful creations through the API of `kind`: `"instance"`, `"address"` or
    /// `"firewall"` (not seeded ones, nor refused inserts, nor requestId duplicates, nor
    /// inserts failed by [`set_new_op_error`](Self::set_new_op_error)).
    pub fn insert_count(&self, kind: &str) -> usize {
        lock(&self.state).created.get(kind).copied().unwrap_or(0)
    }

    /// Adds a reserved external address (as if reserved long ago; not counted). Returns its
    /// address. `ip`: `None` picks a fresh `203.0.113.N`.
    pub fn seed_address(
        &self,
        project: &str,
        region: &str,
        name: &str,
        ip: Option<&str>,
    ) -> String {
        let mut st = lock(&self.state);
        let address = ip.map_or_else(|| st.fresh_external_ip(), str::to_owned);
        let users: Vec<String> = st
            .instances
            .iter()
            .filter(|((p, _, _), i)| p == project && i.nat_ip == address)
            .map(|((p, z, n), _)| instance_link(p, z, n))
            .collect();
        st.addresses.insert(
            (project.into(), region.into(), name.into()),
            Address {
                id: random_id(),
                created: now() - time::Duration::days(1),
                address: address.clone(),
                status: if users.is_empty() {
                    "RESERVED"
                } else {
                    "IN_USE"
                }
                .into(),
                users,
                body: json!({"name": name, "addressType": "EXTERNAL", "networkTier": "PREMIUM"}),
            },
        );
        address
    }

    /// The address as `GET` answers it.
    pub fn address(&self, project: &str, region: &str, name: &str) -> Option<Value> {
        let st = lock(&self.state);
        let key = (project.to_owned(), region.to_owned(), name.to_owned());
        st.addresses.get(&key).map(|a| st.address_json(&key, a))
    }

    /// Adds a firewall rule from an insert body (as if created long ago; not counted).
    /// Panics on a body the insert would refuse.
    pub fn seed_firewall(&self, project: &str, mut body: Value) {
        let name = check_name(&body)
            .map_err(|_| ())
            .expect("FakeCompute::seed_firewall: body needs a valid name");
        ComputeState::check_firewall(project, &mut body)
            .map_err(|_| ())
            .expect("FakeCompute::seed_firewall: invalid body");
        lock(&self.state).firewalls.insert(
            (project.into(), name),
            Firewall {
                id: random_id(),
                created: now() - time::Duration::days(1),
                body,
            },
        );
    }

    /// The firewall rule as `GET` answers it.
    pub fn firewall(&self, project: &str, name: &str) -> Option<Value> {
        let st = lock(&self.state);
        let key = (project.to_owned(), name.to_owned());
        st.firewalls.get(&key).map(|f| st.firewall_json(&key, f))
    }

    /// The project's number, as `GET /compute/v1/projects/{p}` answers it (`id`, and the
    /// prefix of `defaultServiceAccount`): the one set by
    /// [`set_project_number`](Self::set_project_number), else 12 decimal digits derived from
    /// the name (the same in every `FakeCompute`).
    pub fn project_number(&self, project: &str) -> String {
        lock(&self.state).project_number(project)
    }

    /// Gives the project this number (in this fake only).
    pub fn set_project_number(&self, project: &str, number: &str) {
        lock(&self.state)
            .project_numbers
            .insert(project.to_owned(), number.to_owned());
    }

    /// New operations need this many `GET`s to be `DONE` (PENDING, then RUNNING on the GETs
    /// before the last). Default 1: the POST answers PENDING, the first GET answers DONE.
    /// 0: the POST already answers DONE. Zonal, regional and global operations alike.
    pub fn set_op_polls_to_done(&self, n: u32) {
        lock(&self.state).polls_to_done = n;
    }

    /// Whether `.../wait` finishes the operation (default true). When false, wait answers
    /// the operation as it is, as the real API does after its ~2 minutes.
    pub fn set_wait_completes(&self, completes: bool) {
        lock(&self.state).wait_completes = completes;
    }

    /// New operations end `DONE` with `error.errors[{code, message}]` (None: no error).
    /// Inserts and setMetadata then change nothing (the resource is not created); resets,
    /// starts and stops still happen.
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
            scope: Scope::Zone(zone.into()),
            op_type: operation_type.into(),
            target_link: instance_link(project, zone, instance),
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
            .next(n, Fault::Status(status));
    }

    /// Every request to `route` answers `status` until [`clear_faults`](Self::clear_faults).
    pub fn fail_always(&self, route: ComputeRoute, status: u16) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .always(Fault::Status(status));
    }

    /// The next `n` requests to `route` never get an answer.
    pub fn hang_next(&self, route: ComputeRoute, n: usize) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .next(n, Fault::Hang);
    }

    /// Requests to `route` are answered normally, but only after `delay` (until cleared): a
    /// slow API, and a way to make two clients' reads overlap.
    pub fn delay_always(&self, route: ComputeRoute, delay: Duration) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .always(Fault::Delay(delay));
    }

    /// Requests to `route` never get an answer until cleared.
    pub fn hang_always(&self, route: ComputeRoute) {
        lock(&self.state)
            .faults
            .entry(route)
            .or_default()
            .always(Fault::Hang);
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
        412 => compute_error(
            412,
            "conditionNotMet",
            "Supplied fingerprint does not match current metadata fingerprint.",
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

fn already_exists(resource: &str) -> Response {
    compute_error(
        409,
        "alreadyExists",
        &format!("The resource '{resource}' already exists"),
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
    InsertInstance {
        p: &'a str,
        z: &'a str,
    },
    SetMetadata {
        p: &'a str,
        z: &'a str,
        i: &'a str,
    },
    SetLabels {
        p: &'a str,
        z: &'a str,
        i: &'a str,
    },
    ListOps {
        p: &'a str,
        z: &'a str,
    },
    GetOp {
        p: &'a str,
        scope: Scope,
        op: &'a str,
    },
    WaitOp {
        p: &'a str,
        scope: Scope,
        op: &'a str,
    },
    GetAddress {
        p: &'a str,
        r: &'a str,
        a: &'a str,
    },
    InsertAddress {
        p: &'a str,
        r: &'a str,
    },
    GetFirewall {
        p: &'a str,
        f: &'a str,
    },
    InsertFirewall {
        p: &'a str,
    },
    PatchFirewall {
        p: &'a str,
        f: &'a str,
    },
    GetProject {
        p: &'a str,
    },
    AggregatedOps {
        p: &'a str,
    },
}

impl Route<'_> {
    fn route(&self) -> ComputeRoute {
        match self {
            Route::GetInstance { .. } => ComputeRoute::GetInstance,
            Route::Action { route, .. } => *route,
            Route::InsertInstance { .. } => ComputeRoute::InsertInstance,
            Route::SetMetadata { .. } => ComputeRoute::SetMetadata,
            Route::SetLabels { .. } => ComputeRoute::SetLabels,
            Route::ListOps { .. } => ComputeRoute::ListOperations,
            Route::GetOp { scope, .. } => match scope {
                Scope::Zone(_) => ComputeRoute::GetOperation,
                Scope::Region(_) => ComputeRoute::GetRegionOperation,
                Scope::Global => ComputeRoute::GetGlobalOperation,
            },
            Route::WaitOp { scope, .. } => match scope {
                Scope::Zone(_) => ComputeRoute::WaitOperation,
                Scope::Region(_) => ComputeRoute::WaitRegionOperation,
                Scope::Global => ComputeRoute::WaitGlobalOperation,
            },
            Route::GetAddress { .. } => ComputeRoute::GetAddress,
            Route::InsertAddress { .. } => ComputeRoute::InsertAddress,
            Route::GetFirewall { .. } => ComputeRoute::GetFirewall,
            Route::InsertFirewall { .. } => ComputeRoute::InsertFirewall,
            Route::PatchFirewall { .. } => ComputeRoute::PatchFirewall,
            Route::GetProject { .. } => ComputeRoute::GetProject,
            Route::AggregatedOps { .. } => ComputeRoute::AggregatedOperations,
        }
    }

    /// The resource named in error messages; `body_name`: the `name` of an insert's body.
    fn resource(&self, body_name: Option<&str>) -> String {
        let named = |collection: String| match body_name {
            Some(n) => format!("{collection}/{n}"),
            None => collection,
        };
        match self {
            Route::GetInstance { p, z, i }
            | Route::Action { p, z, i, .. }
            | Route::SetMetadata { p, z, i }
            | Route::SetLabels { p, z, i } => {
                format!("projects/{p}/zones/{z}/instances/{i}")
            }
            Route::InsertInstance { p, z } => named(format!("projects/{p}/zones/{z}/instances")),
            Route::ListOps { p, z } => format!("projects/{p}/zones/{z}"),
            Route::GetOp { p, scope, op } | Route::WaitOp { p, scope, op } => {
                format!("{}/operations/{op}", scope.path(p))
            }
            Route::GetAddress { p, r, a } => format!("projects/{p}/regions/{r}/addresses/{a}"),
            Route::InsertAddress { p, r } => named(format!("projects/{p}/regions/{r}/addresses")),
            Route::GetFirewall { p, f } | Route::PatchFirewall { p, f } => {
                format!("projects/{p}/global/firewalls/{f}")
            }
            Route::InsertFirewall { p } => named(format!("projects/{p}/global/firewalls")),
            Route::GetProject { p } | Route::AggregatedOps { p } => format!("projects/{p}"),
        }
    }
}

fn parse_route<'a>(method: &Method, segs: &[&'a str]) -> Option<Route<'a>> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    let patch = method == Method::PATCH;
    let ["compute", "v1", "projects", p, ref rest @ ..] = *segs else {
        return None;
    };
    match *rest {
        [] if get => Some(Route::GetProject { p }),
        ["aggregated", "operations"] if get => Some(Route::AggregatedOps { p }),
        ["zones", z, "instances"] if post => Some(Route::InsertInstance { p, z }),
        ["zones", z, "instances", i] if get => Some(Route::GetInstance { p, z, i }),
        ["zones", z, "instances", i, "setMetadata"] if post => Some(Route::SetMetadata { p, z, i }),
        ["zones", z, "instances", i, "setLabels"] if post => Some(Route::SetLabels { p, z, i }),
        ["zones", z, "instances", i, action] if post => {
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
        ["zones", z, "operations"] if get => Some(Route::ListOps { p, z }),
        ["zones", z, "operations", op] if get => Some(Route::GetOp {
            p,
            scope: Scope::Zone(z.into()),
            op,
        }),
        ["zones", z, "operations", op, "wait"] if post => Some(Route::WaitOp {
            p,
            scope: Scope::Zone(z.into()),
            op,
        }),
        ["regions", r, "operations", op] if get => Some(Route::GetOp {
            p,
            scope: Scope::Region(r.into()),
            op,
        }),
        ["regions", r, "operations", op, "wait"] if post => Some(Route::WaitOp {
            p,
            scope: Scope::Region(r.into()),
            op,
        }),
        ["global", "operations", op] if get => Some(Route::GetOp {
            p,
            scope: Scope::Global,
            op,
        }),
        ["global", "operations", op, "wait"] if post => Some(Route::WaitOp {
            p,
            scope: Scope::Global,
            op,
        }),
        ["regions", r, "addresses"] if post => Some(Route::InsertAddress { p, r }),
        ["regions", r, "addresses", a] if get => Some(Route::GetAddress { p, r, a }),
        ["global", "firewalls"] if post => Some(Route::InsertFirewall { p }),
        ["global", "firewalls", f] if get => Some(Route::GetFirewall { p, f }),
        ["global", "firewalls", f] if patch => Some(Route::PatchFirewall { p, f }),
        _ => None,
    }
}

async fn handle(
    State(ctx): State<FakeState<ComputeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
        st.faults.get_mut(&which).and_then(Faults::take)
    };
    match fault {
        Some(Fault::Hang) => match hang().await {},
        Some(Fault::Status(status)) => {
            let body_name = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned));
            return scripted_error(status, which, &route.resource(body_name.as_deref()));
        }
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
    let request_id = param("requestId").filter(|r| !r.is_empty());
    let mut st = lock(&ctx.state);
    let st = &mut *st;
    match route {
        Route::GetInstance { p, z, i } => {
            let key = (p.to_owned(), z.to_owned(), i.to_owned());
            match st.instances.get_mut(&key) {
                Some(inst) => {
                    advance_boot(inst);
                    json_response(200, &st.instance_json(&key, &st.instances[&key]))
                }
                None => not_found(&route.resource(None)),
            }
        }
        Route::Action {
            p, z, i, action, ..
        } => {
            let key = (p.to_owned(), z.to_owned(), i.to_owned());
            let Some(inst) = st.instances.get(&key) else {
                return not_found(&route.resource(None));
            };
            let (inst_id, inst_status) = (inst.id, inst.status.clone());
            // Check-and-insert of the requestId under the one lock: concurrent duplicates
            // see the first operation.
            if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
                return resp;
            }
            if action == "reset" && inst_status != "RUNNING" {
                return compute_error(
                    400,
                    "resourceNotReady",
                    &format!("The resource '{}' is not ready", route.resource(None)),
                );
            }
            let idx = st.new_operation(
                p,
                Scope::Zone(z.into()),
                instance_link(p, z, i),
                inst_id,
                action,
                request_id,
            );
            if let Some(inst) = st.instances.get_mut(&key) {
                match action {
                    "reset" => inst.resets += 1,
                    "stop" => {
                        inst.status = "TERMINATED".into();
                        inst.last_stop = Some(now());
                        inst.boot = None;
                    }
                    _ => {
                        inst.status = "RUNNING".into();
                        inst.last_start = Some(now());
                        inst.boot = None;
                    }
                }
            }
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::InsertInstance { p, z } => {
            let body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
                return resp;
            }
            let name = match check_name(&body) {
                Ok(n) => n,
                Err(resp) => return resp,
            };
            let key = (p.to_owned(), z.to_owned(), name.clone());
            if st.instances.contains_key(&key) {
                return already_exists(&route.resource(Some(&name)));
            }
            let boot_polls = st.boot_polls;
            let (inst, nat_ips) = match st.build_instance(p, z, &name, &body, true, boot_polls) {
                Ok(x) => x,
                Err(resp) => return resp,
            };
            let link = instance_link(p, z, &name);
            let id = inst.id;
            if st.new_op_error.is_none() {
                st.instances.insert(key, inst);
                st.attach_addresses(p, &nat_ips, &link);
                *st.created.entry("instance").or_default() += 1;
            }
            let idx = st.new_operation(p, Scope::Zone(z.into()), link, id, "insert", request_id);
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::SetMetadata { p, z, i } => {
            let key = (p.to_owned(), z.to_owned(), i.to_owned());
            let Some(inst) = st.instances.get(&key) else {
                return not_found(&route.resource(None));
            };
            let inst_id = inst.id;
            let current = inst.metadata_fingerprint.clone();
            let body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
                return resp;
            }
            if body.get("fingerprint").and_then(Value::as_str) != Some(current.as_str()) {
                return scripted_error(412, ComputeRoute::SetMetadata, &route.resource(None));
            }
            let items = match parse_metadata_items(body.get("items"), "metadata.items") {
                Ok(items) => items,
                Err(resp) => return resp,
            };
            if st.new_op_error.is_none() {
                if let Some(inst) = st.instances.get_mut(&key) {
                    inst.metadata = items;
                    inst.metadata_fingerprint = fingerprint();
                }
            }
            let idx = st.new_operation(
                p,
                Scope::Zone(z.into()),
                instance_link(p, z, i),
                inst_id,
                "setMetadata",
                request_id,
            );
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        // Labels live in the inserted shape (instances added without one have none).
        Route::SetLabels { p, z, i } => {
            let key = (p.to_owned(), z.to_owned(), i.to_owned());
            let Some(inst) = st.instances.get(&key) else {
                return not_found(&route.resource(None));
            };
            let inst_id = inst.id;
            let current = inst
                .inserted
                .as_ref()
                .map(|ins| ins.shape["labelFingerprint"].clone());
            let body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
                return resp;
            }
            if current.as_ref() != body.get("labelFingerprint") {
                return scripted_error(412, ComputeRoute::SetLabels, &route.resource(None));
            }
            let labels = body.get("labels").cloned().unwrap_or_else(|| json!({}));
            if st.new_op_error.is_none() {
                if let Some(ins) = st.instances.get_mut(&key).and_then(|i| i.inserted.as_mut()) {
                    ins.shape["labels"] = labels;
                    ins.shape["labelFingerprint"] = json!(fingerprint());
                }
            }
            let idx = st.new_operation(
                p,
                Scope::Zone(z.into()),
                instance_link(p, z, i),
                inst_id,
                "setLabels",
                request_id,
            );
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::GetAddress { p, r, a } => {
            let key = (p.to_owned(), r.to_owned(), a.to_owned());
            match st.addresses.get(&key) {
                Some(addr) => json_response(200, &st.address_json(&key, addr)),
                None => not_found(&route.resource(None)),
            }
        }
        Route::InsertAddress { p, r } => {
            let body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
                return resp;
            }
            let name = match check_name(&body) {
                Ok(n) => n,
                Err(resp) => return resp,
            };
            let key = (p.to_owned(), r.to_owned(), name.clone());
            if st.addresses.contains_key(&key) {
                return already_exists(&route.resource(Some(&name)));
            }
            for (field, allowed) in [
                ("addressType", &["EXTERNAL", "INTERNAL"][..]),
                ("networkTier", &["PREMIUM", "STANDARD"][..]),
            ] {
                if let Some(v) = body.get(field) {
                    if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                        return invalid(&format!("resource.{field}"), &format!("'{v}'"));
                    }
                }
            }
            let address = match body.get("address").and_then(Value::as_str) {
                Some(ip) if st.addresses.values().any(|a| a.address == ip) => {
                    return invalid(
                        "resource.address",
                        &format!("'{ip}'. The IP address is already reserved."),
                    )
                }
                Some(ip) => ip.to_owned(),
                None => st.fresh_external_ip(),
            };
            let id = random_id();
            if st.new_op_error.is_none() {
                let users: Vec<String> = st
                    .instances
                    .iter()
                    .filter(|((ip, _, _), i)| *ip == p && i.nat_ip == address)
                    .map(|((ip, iz, n), _)| instance_link(ip, iz, n))
                    .collect();
                st.addresses.insert(
                    key,
                    Address {
                        id,
                        created: now(),
                        address,
                        status: if users.is_empty() {
                            "RESERVED"
                        } else {
                            "IN_USE"
                        }
                        .into(),
                        users,
                        body,
                    },
                );
                *st.created.entry("address").or_default() += 1;
            }
            let idx = st.new_operation(
                p,
                Scope::Region(r.into()),
                address_link(p, r, &name),
                id,
                "insert",
                request_id,
            );
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::GetFirewall { p, f } => {
            let key = (p.to_owned(), f.to_owned());
            match st.firewalls.get(&key) {
                Some(fw) => json_response(200, &st.firewall_json(&key, fw)),
                None => not_found(&route.resource(None)),
            }
        }
        Route::InsertFirewall { p } => {
            let mut body = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
                return resp;
            }
            let name = match check_name(&body) {
                Ok(n) => n,
                Err(resp) => return resp,
            };
            let key = (p.to_owned(), name.clone());
            if st.firewalls.contains_key(&key) {
                return already_exists(&route.resource(Some(&name)));
            }
            if let Err(resp) = ComputeState::check_firewall(p, &mut body) {
                return resp;
            }
            let id = random_id();
            if st.new_op_error.is_none() {
                st.firewalls.insert(
                    key,
                    Firewall {
                        id,
                        created: now(),
                        body,
                    },
                );
                *st.created.entry("firewall").or_default() += 1;
            }
            let idx = st.new_operation(
                p,
                Scope::Global,
                firewall_link(p, &name),
                id,
                "insert",
                request_id,
            );
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::PatchFirewall { p, f } => {
            let key = (p.to_owned(), f.to_owned());
            let Some(fw) = st.firewalls.get(&key) else {
                return not_found(&route.resource(None));
            };
            let (id, mut merged) = (fw.id, fw.body.clone());
            let patch = match parse_body(&body) {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
                return resp;
            }
            if patch
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n != f)
            {
                return invalid(
                    "resource.name",
                    "The name of a firewall rule cannot change.",
                );
            }
            if let (Some(m), Some(changes)) = (merged.as_object_mut(), patch.as_object()) {
                for (k, v) in changes {
                    if matches!(k.as_str(), "kind" | "id" | "selfLink" | "creationTimestamp") {
                        continue;
                    }
                    if v.is_null() {
                        m.remove(k);
                    } else {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            if let Err(resp) = ComputeState::check_firewall(p, &mut merged) {
                return resp;
            }
            if st.new_op_error.is_none() {
                if let Some(fw) = st.firewalls.get_mut(&key) {
                    fw.body = merged;
                }
            }
            let idx = st.new_operation(
                p,
                Scope::Global,
                firewall_link(p, f),
                id,
                "patch",
                request_id,
            );
            json_response(200, &st.op_json(&st.operations[idx]))
        }
        Route::GetProject { p } => json_response(200, &st.project_json(p)),
        Route::GetOp { p, ref scope, op } => match st.find_op(p, scope, op) {
            Some(idx) => {
                st.operations[idx].advance_on_get();
                json_response(200, &st.op_json(&st.operations[idx]))
            }
            None => not_found(&route.resource(None)),
        },
        Route::WaitOp { p, ref scope, op } => match st.find_op(p, scope, op) {
            Some(idx) => {
                if st.wait_completes {
                    st.operations[idx].finish();
                }
                json_response(200, &st.op_json(&st.operations[idx]))
            }
            None => not_found(&route.resource(None)),
        },
        Route::ListOps { p, z } => {
            let zone_scope = Scope::Zone(z.into());
            let (items, next) = match st.list_operations(p, Some(&zone_scope), &param) {
                Ok(page) => page,
                Err(resp) => return resp,
            };
            let zone_link = zone_scope.link(p);
            let mut body = json!({
                "kind": "compute#operationList",
                "id": format!("projects/{p}/zones/{z}/operations"),
                "selfLink": format!("{zone_link}/operations"),
            });
            if let Some(t) = next {
                body["nextPageToken"] = json!(t);
            }
            if !items.is_empty() {
                body["items"] = Value::Array(items.into_iter().map(|(_, v)| v).collect());
            }
            json_response(200, &body)
        }
        Route::AggregatedOps { p } => {
            let (items, next) = match st.list_operations(p, None, &param) {
                Ok(page) => page,
                Err(resp) => return resp,
            };
            // Grouped by scope, as `zones/{z}`, `regions/{r}` and `global`.
            let mut scopes = Map::new();
            for (scope, v) in items {
                let key = match scope {
                    Scope::Zone(z) => format!("zones/{z}"),
                    Scope::Region(r) => format!("regions/{r}"),
                    Scope::Global => "global".into(),
                };
                let entry = scopes
                    .entry(key)
                    .or_insert_with(|| json!({"operations": []}));
                if let Some(list) = entry["operations"].as_array_mut() {
                    list.push(v);
                }
            }
            let mut body = json!({
                "kind": "compute#operationAggregatedList",
                "id": format!("projects/{p}/aggregated/operations"),
                "items": scopes,
                "selfLink": format!("{}/aggregated/operations", project_link(p)),
            });
            if let Some(t) = next {
                body["nextPageToken"] = json!(t);
            }
            json_response(200, &body)
        }
    }
}

impl ComputeState {
    /// One page of the project's operations (of `scope` only, when given) that match the
    /// `filter` parameter, oldest first or, with `orderBy=creationTimestamp desc`, newest
    /// first; `maxResults` (at most 500) a page, `pageToken` the offset. Answers the page
    /// with each operation's scope, and the next page's token.
    #[allow(clippy::type_complexity)]
    fn list_operations(
        &self,
        p: &str,
        scope: Option<&Scope>,
        param: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Vec<(Scope, Value)>, Option<String>), Response> {
        let filter = match param("filter").filter(|f| !f.trim().is_empty()) {
            Some(f) => match filter::parse(&f) {
                Ok(expr) => Some(expr),
                Err(_) => {
                    return Err(compute_error(
                        400,
                        "invalid",
                        &format!(
                        "Invalid value for field 'filter': '{f}'. Invalid list filter expression."
                    ),
                    ))
                }
            },
            None => None,
        };
        let ascending = param("orderBy").is_none_or(|o| !o.to_ascii_lowercase().contains("desc"));
        let max = param("maxResults")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(500)
            .clamp(1, 500);
        let offset = param("pageToken")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        let mut ops: Vec<(OffsetDateTime, u64, Scope, Value)> = self
            .operations
            .iter()
            .filter(|o| o.project == p && scope.is_none_or(|s| o.scope == *s))
            .map(|o| (o.insert_time, o.seq, o.scope.clone(), self.op_json(o)))
            .filter(|(_, _, _, v)| filter.as_ref().is_none_or(|f| f.matches(v)))
            .collect();
        ops.sort_by_key(|(t, seq, _, _)| (*t, *seq));
        if !ascending {
            ops.reverse();
        }
        let total = ops.len();
        let items: Vec<(Scope, Value)> = ops
            .into_iter()
            .skip(offset)
            .take(max)
            .map(|(_, _, scope, v)| (scope, v))
            .collect();
        let next = (offset + items.len() < total).then(|| (offset + items.len()).to_string());
        Ok((items, next))
    }
}

/// One GET of a booting instance: PROVISIONING on the first, STAGING on the next ones, then
/// RUNNING.
fn advance_boot(inst: &mut Instance) {
    let Some((seen, total)) = inst.boot.as_mut() else {
        return;
    };
    if *seen >= *total {
        inst.status = "RUNNING".into();
        inst.last_start = Some(now());
        inst.boot = None;
    } else {
        inst.status = if *seen == 0 {
            "PROVISIONING"
        } else {
            "STAGING"
        }
        .into();
        *seen += 1;
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

        /// `method` on `.../projects/{P}/{rest}` with a JSON body.
        async fn call(&self, method: &str, rest: &str, body: Option<&Value>) -> (u16, Value) {
            let url = format!("{}/compute/v1/projects/{P}/{rest}", self.compute.url());
            let mut req = self
                .client
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
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
    async fn aggregated_operations_span_every_zone() {
        let f = fixture().await;
        let now = OffsetDateTime::now_utc();
        f.compute
            .add_operation(P, Z, "a", "reset", "DONE", now - time::Duration::minutes(1));
        f.compute.add_operation(
            P,
            "us-east1-b",
            "b",
            "reset",
            "DONE",
            now - time::Duration::minutes(2),
        );
        f.compute
            .add_operation(P, Z, "c", "reset", "DONE", now - time::Duration::hours(3));
        f.compute
            .add_operation(P, Z, "a", "stop", "DONE", now - time::Duration::minutes(1));
        f.compute
            .add_operation("other-project", Z, "d", "reset", "DONE", now);
        let url = |query: &str| {
            format!(
                "{}/compute/v1/projects/{P}/aggregated/operations{query}",
                f.compute.url()
            )
        };
        let get = |u: String| {
            let req = f.client.get(u).bearer_auth(&f.token);
            async move {
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let since = compute_timestamp(now - time::Duration::minutes(10));
        let filter = format!(r#"operationType = "reset" AND insertTime > "{since}""#);
        let enc: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        let (status, body) = get(url(&format!("?filter={enc}"))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["kind"], "compute#operationAggregatedList");
        let names = |scope: &str| -> Vec<String> {
            body["items"][scope]["operations"]
                .as_array()
                .map(|ops| {
                    ops.iter()
                        .map(|o| {
                            o["targetLink"]
                                .as_str()
                                .unwrap()
                                .rsplit('/')
                                .next()
                                .unwrap()
                                .to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(names(&format!("zones/{Z}")), ["a"]);
        assert_eq!(names("zones/us-east1-b"), ["b"]);
        let (_, body) = get(url("?maxResults=2")).await;
        assert_eq!(body["nextPageToken"], "2");
        f.compute
            .fail_next(ComputeRoute::AggregatedOperations, 1, 403);
        let (status, body) = get(url("")).await;
        assert_eq!(status, 403);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("compute.globalOperations.list"));
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

    const R: &str = "europe-west3";
    const ZC: &str = "europe-west3-c";

    fn instance_body(name: &str, nat_ip: &str) -> Value {
        json!({
            "name": name,
            "machineType": format!("zones/{ZC}/machineTypes/e2-medium"),
            "disks": [{
                "boot": true,
                "autoDelete": true,
                "initializeParams": {
                    "sourceImage": "projects/cos-cloud/global/images/family/cos-stable",
                    "diskSizeGb": "20"
                }
            }],
            "networkInterfaces": [{
                "network": "global/networks/default",
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT", "natIP": nat_ip}]
            }],
            "metadata": {"items": [
                {"key": "VM_IP_ADDRESS", "value": nat_ip},
                {"key": "startup-script", "value": "#!/bin/bash\\necho hi"}
            ]},
            "tags": {"items": ["whatsapp"]},
            "serviceAccounts": [{
                "email": "default",
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"]
            }],
            "labels": {"app": "whatsapp"}
        })
    }

    #[tokio::test]
    async fn addresses_and_regional_operations() {
        let f = fixture().await;
        let body = json!({"name": "wa-ip", "addressType": "EXTERNAL", "networkTier": "PREMIUM", "description": "d"});
        let (status, op) = f
            .call("POST", &format!("regions/{R}/addresses"), Some(&body))
            .await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["kind"], "compute#operation");
        assert_eq!(op["operationType"], "insert");
        assert_eq!(op["status"], "PENDING");
        assert_eq!(
            op["targetLink"],
            format!("{LINK_PREFIX}/projects/{P}/regions/{R}/addresses/wa-ip")
        );
        assert_eq!(
            op["region"],
            format!("{LINK_PREFIX}/projects/{P}/regions/{R}")
        );
        assert!(op.get("zone").is_none());
        let name = op["name"].as_str().unwrap().to_owned();
        assert_eq!(
            op["selfLink"],
            format!("{LINK_PREFIX}/projects/{P}/regions/{R}/operations/{name}")
        );
        let (status, done) = f
            .call("GET", &format!("regions/{R}/operations/{name}"), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(done["status"], "DONE");
        assert_eq!(done["progress"], 100);
        assert!(done["endTime"].is_string() && done["startTime"].is_string());
        // Not visible as a zonal or global operation.
        assert_eq!(f.get(&format!("operations/{name}")).await.0, 404);
        assert_eq!(
            f.call("GET", &format!("global/operations/{name}"), None)
                .await
                .0,
            404
        );

        let (status, a) = f
            .call("GET", &format!("regions/{R}/addresses/wa-ip"), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(a["kind"], "compute#address");
        assert_eq!(a["name"], "wa-ip");
        assert_eq!(a["status"], "RESERVED");
        assert_eq!(a["addressType"], "EXTERNAL");
        assert_eq!(a["networkTier"], "PREMIUM");
        assert_eq!(a["description"], "d");
        assert_eq!(a["id"], done["targetId"]);
        assert_eq!(
            a["region"],
            format!("{LINK_PREFIX}/projects/{P}/regions/{R}")
        );
        assert_eq!(a["selfLink"], done["targetLink"]);
        assert!(a.get("users").is_none());
        let ip = a["address"].as_str().unwrap().to_owned();
        assert!(ip.starts_with("203.0.113."), "{ip}");
        assert_eq!(f.compute.address(P, R, "wa-ip").unwrap(), a);

        // Another address gets another IP.
        let (_, _) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "other"})),
            )
            .await;
        let other = f.compute.address(P, R, "other").unwrap();
        assert_ne!(other["address"], a["address"]);
        assert_eq!(f.compute.insert_count("address"), 2);

        // Duplicate: 409 in Compute's shape, nothing created.
        let (status, err) = f
            .call("POST", &format!("regions/{R}/addresses"), Some(&body))
            .await;
        assert_eq!(status, 409);
        let msg = format!("The resource 'projects/{P}/regions/{R}/addresses/wa-ip' already exists");
        assert_eq!(
            err,
            json!({"error": {"code": 409, "message": msg, "errors": [{"message": msg, "domain": "global", "reason": "alreadyExists"}]}})
        );
        let (status, err) = f
            .call("GET", &format!("regions/{R}/addresses/nope"), None)
            .await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["errors"][0]["reason"], "notFound");
        assert_eq!(
            err["error"]["message"],
            format!("The resource 'projects/{P}/regions/{R}/addresses/nope' was not found")
        );
        assert_eq!(f.compute.insert_count("address"), 2);

        // requestId: a retry answers the first operation and creates nothing.
        let rid = uuid::Uuid::new_v4();
        let path = format!("regions/{R}/addresses?requestId={rid}");
        let (s1, op1) = f.call("POST", &path, Some(&json!({"name": "third"}))).await;
        let (s2, op2) = f.call("POST", &path, Some(&json!({"name": "third"}))).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(op1["name"], op2["name"]);
        assert_eq!(op1["clientOperationId"], rid.to_string());
        assert_eq!(f.compute.insert_count("address"), 3);

        // Progression and wait.
        f.compute.set_op_polls_to_done(3);
        let (_, op) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "fourth"})),
            )
            .await;
        let name = op["name"].as_str().unwrap().to_owned();
        let op_path = format!("regions/{R}/operations/{name}");
        for want in ["RUNNING", "RUNNING", "DONE", "DONE"] {
            assert_eq!(f.call("GET", &op_path, None).await.1["status"], want);
        }
        let (_, op) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "fifth"})),
            )
            .await;
        let name = op["name"].as_str().unwrap().to_owned();
        let (status, op) = f
            .call("POST", &format!("regions/{R}/operations/{name}/wait"), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(op["status"], "DONE");

        // Bad bodies.
        let (status, err) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "Bad_Name"})),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(err["error"]["errors"][0]["reason"], "invalid");
        let (status, _) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "x", "networkTier": "GOLD"})),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(f.compute.route_count(ComputeRoute::InsertAddress), 9);
        assert_eq!(f.compute.route_count(ComputeRoute::GetAddress), 2);
        assert_eq!(f.compute.route_count(ComputeRoute::GetRegionOperation), 5);
        assert_eq!(f.compute.route_count(ComputeRoute::WaitRegionOperation), 1);
    }

    #[tokio::test]
    async fn firewalls_and_global_operations() {
        let f = fixture().await;
        let body = json!({
            "name": "wa-https",
            "network": "global/networks/default",
            "direction": "INGRESS",
            "allowed": [{"IPProtocol": "tcp", "ports": ["443", "80"]}],
            "sourceRanges": ["0.0.0.0/0"],
            "targetTags": ["whatsapp"],
            "description": "WhatsApp API"
        });
        let (status, op) = f.call("POST", "global/firewalls", Some(&body)).await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["operationType"], "insert");
        assert!(op.get("zone").is_none() && op.get("region").is_none());
        assert_eq!(
            op["targetLink"],
            format!("{LINK_PREFIX}/projects/{P}/global/firewalls/wa-https")
        );
        let name = op["name"].as_str().unwrap().to_owned();
        assert_eq!(
            op["selfLink"],
            format!("{LINK_PREFIX}/projects/{P}/global/operations/{name}")
        );
        let (_, op) = f
            .call("GET", &format!("global/operations/{name}"), None)
            .await;
        assert_eq!(op["status"], "DONE");
        let (_, op) = f
            .call("POST", &format!("global/operations/{name}/wait"), None)
            .await;
        assert_eq!(op["status"], "DONE");

        let (status, fw) = f.call("GET", "global/firewalls/wa-https", None).await;
        assert_eq!(status, 200);
        assert_eq!(fw["kind"], "compute#firewall");
        assert_eq!(
            fw["network"],
            "https://www.googleapis.com/compute/v1/projects/proj/global/networks/default"
        );
        assert_eq!(fw["allowed"], body["allowed"]);
        assert_eq!(fw["sourceRanges"], body["sourceRanges"]);
        assert_eq!(fw["targetTags"], body["targetTags"]);
        assert_eq!(fw["description"], "WhatsApp API");
        assert_eq!(fw["direction"], "INGRESS");
        assert_eq!(fw["priority"], 1000);
        assert_eq!(fw["id"], op["targetId"]);
        assert_eq!(fw["selfLink"], op["targetLink"]);
        assert!(fw["creationTimestamp"].is_string());
        assert_eq!(f.compute.firewall(P, "wa-https").unwrap(), fw);
        assert_eq!(f.compute.insert_count("firewall"), 1);

        let (status, err) = f.call("POST", "global/firewalls", Some(&body)).await;
        assert_eq!(status, 409);
        assert_eq!(err["error"]["errors"][0]["reason"], "alreadyExists");
        assert_eq!(
            err["error"]["message"],
            format!("The resource 'projects/{P}/global/firewalls/wa-https' already exists")
        );
        let (status, err) = f.call("GET", "global/firewalls/nope", None).await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["errors"][0]["reason"], "notFound");

        // Patch: given fields replace the stored ones.
        let (status, op) = f
            .call(
                "PATCH",
                "global/firewalls/wa-https",
                Some(&json!({"sourceRanges": ["203.0.113.0/24"]})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(op["operationType"], "patch");
        let fw2 = f.compute.firewall(P, "wa-https").unwrap();
        assert_eq!(fw2["sourceRanges"], json!(["203.0.113.0/24"]));
        assert_eq!(fw2["allowed"], body["allowed"]);
        assert_eq!(fw2["id"], fw["id"]);
        assert_eq!(f.compute.insert_count("firewall"), 1);

        // Full URLs of the network are kept (in the real form); no rules is refused.
        let (status, _) = f
            .call(
                "POST",
                "global/firewalls",
                Some(&json!({"name": "other", "network": format!("{}/compute/v1/projects/{P}/global/networks/default", f.compute.url()), "allowed": [{"IPProtocol": "tcp"}]})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            f.compute.firewall(P, "other").unwrap()["network"],
            fw["network"]
        );
        let (status, _) = f
            .call("POST", "global/firewalls", Some(&json!({"name": "none"})))
            .await;
        assert_eq!(status, 400);
        assert_eq!(f.compute.insert_count("firewall"), 2);
        f.compute.seed_firewall(
            P,
            json!({"name": "seeded", "allowed": [{"IPProtocol": "icmp"}]}),
        );
        assert_eq!(f.call("GET", "global/firewalls/seeded", None).await.0, 200);
        assert_eq!(f.compute.insert_count("firewall"), 2);
    }

    #[tokio::test]
    async fn instance_insert_boots_and_uses_the_address() {
        let f = fixture().await;
        f.call(
            "POST",
            &format!("regions/{R}/addresses"),
            Some(&json!({"name": "wa-ip"})),
        )
        .await;
        let ip = f.compute.address(P, R, "wa-ip").unwrap()["address"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = instance_body("wa", &ip);
        let path = format!("zones/{ZC}/instances");
        let (status, op) = f.call("POST", &path, Some(&body)).await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["operationType"], "insert");
        assert_eq!(op["zone"], format!("{LINK_PREFIX}/projects/{P}/zones/{ZC}"));
        let self_link = format!("{LINK_PREFIX}/projects/{P}/zones/{ZC}/instances/wa");
        assert_eq!(op["targetLink"], self_link);
        let name = op["name"].as_str().unwrap().to_owned();
        let (_, op) = f
            .call("GET", &format!("zones/{ZC}/operations/{name}"), None)
            .await;
        assert_eq!(op["status"], "DONE");
        assert_eq!(f.compute.insert_count("instance"), 1);
        assert_eq!(f.compute.inserted_body(P, ZC, "wa").unwrap(), body);

        let get = format!("zones/{ZC}/instances/wa");
        let (_, vm) = f.call("GET", &get, None).await;
        assert_eq!(vm["status"], "PROVISIONING");
        assert!(vm.get("lastStartTimestamp").is_none());
        assert_eq!(vm["id"], op["targetId"]);
        assert_eq!(vm["selfLink"], self_link);
        assert_eq!(
            vm["machineType"],
            format!("https://www.googleapis.com/compute/v1/projects/{P}/zones/{ZC}/machineTypes/e2-medium")
        );
        let disk = &vm["disks"][0];
        assert_eq!(disk["boot"], true);
        assert_eq!(disk["autoDelete"], true);
        assert_eq!(
            disk["source"],
            format!("{LINK_PREFIX}/projects/{P}/zones/{ZC}/disks/wa")
        );
        assert_eq!(disk["deviceName"], "persistent-disk-0");
        assert_eq!(disk["diskSizeGb"], "20");
        assert!(disk["licenses"][0]
            .as_str()
            .unwrap()
            .ends_with("/cos-cloud/global/licenses/cos"));
        assert!(disk.get("initializeParams").is_none());
        let nic = &vm["networkInterfaces"][0];
        assert_eq!(nic["accessConfigs"][0]["natIP"], ip);
        assert_eq!(
            nic["network"],
            format!("{LINK_PREFIX}/projects/{P}/global/networks/default")
        );
        assert!(vm["metadata"]["fingerprint"].as_str().unwrap().len() >= 8);
        assert_eq!(vm["metadata"]["items"], body["metadata"]["items"]);
        assert_eq!(vm["tags"]["items"], json!(["whatsapp"]));
        assert!(vm["tags"]["fingerprint"].is_string());
        assert_eq!(vm["serviceAccounts"], body["serviceAccounts"]);
        assert_eq!(vm["labels"], json!({"app": "whatsapp"}));

        let (_, vm) = f.call("GET", &get, None).await;
        assert_eq!(vm["status"], "STAGING");
        assert!(vm.get("lastStartTimestamp").is_none());
        let (_, vm) = f.call("GET", &get, None).await;
        assert_eq!(vm["status"], "RUNNING");
        let started = parse_rfc3339(vm["lastStartTimestamp"].as_str().unwrap()).unwrap();
        assert!((OffsetDateTime::now_utc() - started).whole_seconds().abs() < 60);
        assert_eq!(f.call("GET", &get, None).await.1["status"], "RUNNING");

        // The address is now in use by the instance.
        let (_, a) = f
            .call("GET", &format!("regions/{R}/addresses/wa-ip"), None)
            .await;
        assert_eq!(a["status"], "IN_USE");
        assert_eq!(a["users"], json!([self_link]));

        // Duplicate name: 409, nothing new.
        let (status, err) = f.call("POST", &path, Some(&body)).await;
        assert_eq!(status, 409);
        assert_eq!(err["error"]["errors"][0]["reason"], "alreadyExists");
        assert_eq!(
            err["error"]["message"],
            format!("The resource 'projects/{P}/zones/{ZC}/instances/wa' already exists")
        );
        // A natIP that is not a reserved address of the region is refused.
        let (status, err) = f
            .call("POST", &path, Some(&instance_body("wa2", "192.0.2.1")))
            .await;
        assert_eq!(status, 400);
        assert!(err["error"]["message"].as_str().unwrap().contains("natIP"));
        // A machine type of another zone is refused, and a missing one.
        let mut bad = instance_body("wa3", &ip);
        bad["machineType"] = json!("zones/us-central1-a/machineTypes/e2-medium");
        assert_eq!(f.call("POST", &path, Some(&bad)).await.0, 400);
        bad.as_object_mut().unwrap().remove("machineType");
        assert_eq!(f.call("POST", &path, Some(&bad)).await.0, 400);
        assert_eq!(f.compute.insert_count("instance"), 1);

        // Boot polls 0: RUNNING at once. No natIP given: an ephemeral address.
        f.compute.set_instance_boot_polls(0);
        let mut eph = instance_body("eph", &ip);
        eph["networkInterfaces"][0]["accessConfigs"][0]
            .as_object_mut()
            .unwrap()
            .remove("natIP");
        assert_eq!(f.call("POST", &path, Some(&eph)).await.0, 200);
        let vm = f.compute.instance(P, ZC, "eph").unwrap();
        assert_eq!(vm["status"], "RUNNING");
        assert!(vm["lastStartTimestamp"].is_string());
        let eph_ip = vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
            .as_str()
            .unwrap();
        assert!(!eph_ip.is_empty() && eph_ip != ip);
        assert_eq!(f.compute.insert_count("instance"), 2);

        // Removing the instance frees the address.
        f.compute.remove_instance(P, ZC, "wa");
        assert_eq!(
            f.compute.address(P, R, "wa-ip").unwrap()["status"],
            "RESERVED"
        );
        // A seeded instance (not counted) marks a seeded address IN_USE.
        let seeded_ip = f.compute.seed_address(P, R, "seed-ip", None);
        f.compute
            .seed_instance(P, ZC, instance_body("seeded", &seeded_ip));
        assert_eq!(
            f.compute.status(P, ZC, "seeded").as_deref(),
            Some("RUNNING")
        );
        assert_eq!(
            f.compute.address(P, R, "seed-ip").unwrap()["status"],
            "IN_USE"
        );
        assert_eq!(f.compute.insert_count("instance"), 2);
        assert_eq!(f.compute.route_count(ComputeRoute::InsertInstance), 6);
    }

    #[tokio::test]
    async fn set_metadata_checks_the_fingerprint() {
        let f = fixture().await;
        f.compute.set_instance_boot_polls(0);
        let ip = f.compute.seed_address(P, R, "wa-ip", None);
        f.call(
            "POST",
            &format!("zones/{ZC}/instances"),
            Some(&instance_body("wa", &ip)),
        )
        .await;
        let get = format!("zones/{ZC}/instances/wa");
        let fp = f.call("GET", &get, None).await.1["metadata"]["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned();
        let set = format!("zones/{ZC}/instances/wa/setMetadata");
        let items = json!([{"key": "WA_API_VERSION", "value": "v2.53.2"}]);
        let (status, err) = f
            .call(
                "POST",
                &set,
                Some(&json!({"fingerprint": "wrong=", "items": items})),
            )
            .await;
        assert_eq!(status, 412);
        assert_eq!(err["error"]["errors"][0]["reason"], "conditionNotMet");
        let (status, _) = f.call("POST", &set, Some(&json!({"items": items}))).await;
        assert_eq!(status, 412);
        let (status, op) = f
            .call(
                "POST",
                &set,
                Some(&json!({"fingerprint": fp, "items": items})),
            )
            .await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["operationType"], "setMetadata");
        let vm = f.call("GET", &get, None).await.1;
        assert_eq!(vm["metadata"]["items"], items);
        assert_ne!(vm["metadata"]["fingerprint"], fp);
        assert_eq!(
            f.compute
                .metadata_value(P, ZC, "wa", "WA_API_VERSION")
                .as_deref(),
            Some("v2.53.2")
        );
        // The old fingerprint is stale now.
        let (status, _) = f
            .call("POST", &set, Some(&json!({"fingerprint": fp, "items": []})))
            .await;
        assert_eq!(status, 412);
        // Duplicate keys are refused.
        let fp2 = vm["metadata"]["fingerprint"].clone();
        let (status, _) = f
            .call(
                "POST",
                &set,
                Some(&json!({"fingerprint": fp2, "items": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]})),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            f.call(
                "POST",
                &format!("zones/{ZC}/instances/nope/setMetadata"),
                Some(&json!({}))
            )
            .await
            .0,
            404
        );
        assert_eq!(f.compute.route_count(ComputeRoute::SetMetadata), 6);
    }

    #[tokio::test]
    async fn failed_inserts_and_scripted_errors_on_new_routes() {
        let f = fixture().await;
        f.compute.set_new_op_error(Some((
            "QUOTA_EXCEEDED",
            "Quota 'STATIC_ADDRESSES' exceeded.",
        )));
        let (_, op) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "wa-ip"})),
            )
            .await;
        let name = op["name"].as_str().unwrap().to_owned();
        let (_, op) = f
            .call("GET", &format!("regions/{R}/operations/{name}"), None)
            .await;
        assert_eq!(op["status"], "DONE");
        assert_eq!(op["error"]["errors"][0]["code"], "QUOTA_EXCEEDED");
        assert!(f.compute.address(P, R, "wa-ip").is_none());
        let (_, op) = f
            .call(
                "POST",
                "global/firewalls",
                Some(&json!({"name": "fw", "allowed": [{"IPProtocol": "tcp"}]})),
            )
            .await;
        let name = op["name"].as_str().unwrap().to_owned();
        let (_, op) = f
            .call("POST", &format!("global/operations/{name}/wait"), None)
            .await;
        assert_eq!(op["error"]["errors"][0]["code"], "QUOTA_EXCEEDED");
        assert!(f.compute.firewall(P, "fw").is_none());
        assert_eq!(f.compute.insert_count("address"), 0);
        assert_eq!(f.compute.insert_count("firewall"), 0);
        f.compute.set_new_op_error(None);

        f.compute.fail_next(ComputeRoute::InsertAddress, 1, 409);
        let (status, err) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "wa-ip"})),
            )
            .await;
        assert_eq!(status, 409);
        assert_eq!(
            err["error"]["message"],
            format!("The resource 'projects/{P}/regions/{R}/addresses/wa-ip' already exists")
        );
        f.compute.fail_next(ComputeRoute::InsertInstance, 1, 403);
        let (status, err) = f
            .call(
                "POST",
                &format!("zones/{ZC}/instances"),
                Some(&instance_body("wa", "x")),
            )
            .await;
        assert_eq!(status, 403);
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("compute.instances.create"));
        let (_, op) = f
            .call(
                "POST",
                &format!("regions/{R}/addresses"),
                Some(&json!({"name": "wa-ip"})),
            )
            .await;
        let name = op["name"].as_str().unwrap().to_owned();
        f.compute
            .fail_next(ComputeRoute::GetRegionOperation, 1, 503);
        let op_path = format!("regions/{R}/operations/{name}");
        assert_eq!(f.call("GET", &op_path, None).await.0, 503);
        assert_eq!(f.call("GET", &op_path, None).await.1["status"], "DONE");
        f.compute.fail_always(ComputeRoute::GetFirewall, 500);
        assert_eq!(f.call("GET", "global/firewalls/x", None).await.0, 500);
        f.compute.clear_faults();
        assert_eq!(f.call("GET", "global/firewalls/x", None).await.0, 404);
        assert_eq!(f.compute.insert_count("address"), 1);
        // Unauthenticated.
        let resp = f
            .client
            .get(format!(
                "{}/compute/v1/projects/{P}/global/firewalls/x",
                f.compute.url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }

    #[tokio::test]
    async fn get_project_number_auth_and_faults() {
        let f = fixture().await;
        let url = format!("{}/compute/v1/projects/{P}", f.compute.url());
        let number = f.compute.project_number(P);
        assert_eq!(number.len(), 12);
        assert!(number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0'));
        // Stable: the same in another fake, different for another name.
        let other = FakeCompute::start(TokenRegistry::new()).await;
        assert_eq!(other.project_number(P), number);
        assert_ne!(other.project_number("other-proj"), number);

        let resp = f
            .client
            .get(&url)
            .bearer_auth(&f.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["kind"], "compute#project");
        assert_eq!(body["id"], number);
        assert_eq!(body["name"], P);
        assert_eq!(body["selfLink"], format!("{LINK_PREFIX}/projects/{P}"));
        assert_eq!(
            body["defaultServiceAccount"],
            format!("{number}-compute@developer.gserviceaccount.com")
        );
        assert_eq!(body["xpnProjectStatus"], "UNSPECIFIED_XPN_PROJECT_STATUS");
        let ts = body["creationTimestamp"].as_str().unwrap();
        assert!(ts.ends_with("-08:00"));
        assert!(parse_rfc3339(ts).is_some());
        assert_eq!(f.call("GET", "", None).await.1, body);
        // Other methods on the project are not routes.
        assert_eq!(f.call("POST", "", None).await.0, 404);

        f.compute.set_project_number(P, "123456789012");
        assert_eq!(f.compute.project_number(P), "123456789012");
        let (_, body) = f.call("GET", "", None).await;
        assert_eq!(body["id"], "123456789012");
        assert_eq!(
            body["defaultServiceAccount"],
            "123456789012-compute@developer.gserviceaccount.com"
        );
        assert_eq!(other.project_number(P), number);

        // Bad or missing token: 401, as for other routes.
        let resp = f.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["errors"][0]["reason"], "authError");
        let resp = f
            .client
            .get(&url)
            .bearer_auth("ya29.not-issued")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);

        // Scripted faults.
        f.compute.fail_next(ComputeRoute::GetProject, 1, 403);
        let (status, body) = f.call("GET", "", None).await;
        assert_eq!(status, 403);
        assert_eq!(body["error"]["errors"][0]["reason"], "forbidden");
        assert_eq!(
            body["error"]["message"],
            format!("Required 'compute.projects.get' permission for 'projects/{P}'")
        );
        assert_eq!(f.call("GET", "", None).await.0, 200);
        f.compute.fail_always(ComputeRoute::GetProject, 503);
        assert_eq!(f.call("GET", "", None).await.0, 503);
        assert_eq!(f.call("GET", "", None).await.0, 503);
        f.compute.clear_faults();
        f.compute.hang_next(ComputeRoute::GetProject, 1);
        let err = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap()
            .get(&url)
            .bearer_auth(&f.token)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(f.call("GET", "", None).await.0, 200);

        // Counted (the POST is no route), and recorded.
        assert_eq!(f.compute.route_count(ComputeRoute::GetProject), 11);
        let requests = f.compute.requests();
        assert_eq!(requests.len(), 12);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].path, format!("/compute/v1/projects/{P}"));
        other.stop().await;
    }

    #[tokio::test]
    async fn a_slow_boot_can_be_shortened() {
        let f = fixture().await;
        f.compute.set_instance_boot_polls(100);
        let ip = f.compute.seed_address(P, R, "wa-ip", None);
        let path = format!("zones/{ZC}/instances");
        assert_eq!(
            f.call("POST", &path, Some(&instance_body("wa", &ip)))
                .await
                .0,
            200
        );
        let get = format!("zones/{ZC}/instances/wa");
        assert_eq!(f.call("GET", &get, None).await.1["status"], "PROVISIONING");
        assert_eq!(f.call("GET", &get, None).await.1["status"], "STAGING");
        f.compute.set_instance_boot_polls(0);
        assert_eq!(f.call("GET", &get, None).await.1["status"], "RUNNING");
    }
}
