//! Zonal instances: get, insert, reset, setMetadata and setLabels. An inserted instance
//! boots (`PROVISIONING`, `STAGING`, then `RUNNING`, one step a GET); a reset of an instance
//! that is not `RUNNING` is refused, as the real API refuses it.

use axum::response::Response;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::errors::{
    already_exists, check_name, compute_error, fingerprint_mismatch, not_found, parse_body,
};
use super::instance_insert::parse_metadata_items;
use super::names::{fingerprint, instance_link, random_id, Scope, LINK_PREFIX};
use super::{ComputeState, FakeCompute, Key};
use crate::server::{compute_timestamp, json_response, lock, now};

pub(super) struct Instance {
    pub(super) id: u64,
    pub(super) status: String,
    pub(super) created: OffsetDateTime,
    pub(super) last_start: Option<OffsetDateTime>,
    /// natIP of the first access config of the first interface ("" when none).
    pub(super) nat_ip: String,
    pub(super) metadata: Vec<(String, String)>,
    pub(super) metadata_fingerprint: String,
    /// Set by [`FakeCompute::set_labels`] (or [`FakeCompute::add_instance`]); `None`: those of
    /// the insert body, if any.
    pub(super) labels: Option<Vec<(String, String)>>,
    pub(super) resets: usize,
    /// While booting after an insert: (GETs answered so far, GETs that answer before RUNNING).
    pub(super) boot: Option<(u32, u32)>,
    /// Instances created by insert (or seeded from an insert body).
    pub(super) inserted: Option<Inserted>,
}

pub(super) struct Inserted {
    /// The insert body exactly as posted.
    pub(super) raw: Value,
    /// The answer's fields computed at insert: machineType, disks, networkInterfaces, tags,
    /// serviceAccounts, labels, scheduling, fingerprints...
    pub(super) shape: Value,
}

impl Instance {
    fn json(&self, (project, zone, name): &Key) -> Value {
        let zone_link = Scope::Zone(zone.clone()).link(project);
        let metadata = json!({
            "kind": "compute#metadata",
            "fingerprint": self.metadata_fingerprint,
            "items": self.metadata.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        let mut v = match &self.inserted {
            Some(ins) => {
                let mut v = ins.shape.clone();
                if !self.nat_ip.is_empty() {
                    if let Some(ac) = v
                        .pointer_mut("/networkInterfaces/0/accessConfigs/0")
                        .and_then(Value::as_object_mut)
                    {
                        ac.insert("natIP".into(), json!(self.nat_ip));
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
                        "natIP": self.nat_ip,
                        "networkTier": "PREMIUM"
                    }]
                }],
            }),
        };
        let obj = v.as_object_mut().expect("instance shape is an object");
        for (k, val) in [
            ("kind", json!("compute#instance")),
            ("id", json!(self.id.to_string())),
            ("creationTimestamp", json!(compute_timestamp(self.created))),
            ("name", json!(name)),
            ("status", json!(self.status)),
            ("zone", json!(zone_link)),
            ("selfLink", json!(format!("{zone_link}/instances/{name}"))),
            ("metadata", metadata),
        ] {
            obj.insert(k.into(), val);
        }
        if let Some(t) = self.last_start {
            obj.insert("lastStartTimestamp".into(), json!(compute_timestamp(t)));
        }
        if let Some(labels) = &self.labels {
            let map: Map<String, Value> =
                labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            obj.insert("labels".into(), Value::Object(map));
        }
        v
    }

    /// One GET of a booting instance: PROVISIONING on the first, STAGING on the next ones,
    /// then RUNNING.
    fn advance_boot(&mut self) {
        let Some((seen, total)) = self.boot.as_mut() else {
            return;
        };
        if *seen >= *total {
            self.status = "RUNNING".into();
            self.last_start = Some(now());
            self.boot = None;
        } else {
            self.status = if *seen == 0 {
                "PROVISIONING"
            } else {
                "STAGING"
            }
            .into();
            *seen += 1;
        }
    }
}

/// A request on one instance: its key, its name in error messages, its `requestId`.
pub(super) struct InstanceCall<'a> {
    pub(super) key: Key,
    pub(super) resource: &'a str,
    pub(super) request_id: Option<String>,
}

impl InstanceCall<'_> {
    fn link(&self) -> String {
        let (p, z, i) = &self.key;
        instance_link(p, z, i)
    }

    fn zone(&self) -> Scope {
        Scope::Zone(self.key.1.clone())
    }
}

impl ComputeState {
    /// `GET .../instances/{i}` (a booting instance boots one step).
    pub(super) fn get_instance(&mut self, call: InstanceCall) -> Response {
        match self.instances.get_mut(&call.key) {
            Some(inst) => {
                inst.advance_boot();
                json_response(200, &inst.json(&call.key))
            }
            None => not_found(call.resource),
        }
    }

    /// `POST .../instances/{i}/reset`.
    pub(super) fn reset_instance(&mut self, call: InstanceCall) -> Response {
        let Some(inst) = self.instances.get(&call.key) else {
            return not_found(call.resource);
        };
        let (id, running) = (inst.id, inst.status == "RUNNING");
        // Check-and-insert of the requestId under the one lock: concurrent duplicates see
        // the first operation.
        if let Err(resp) = self.check_request_id(&call.key.0, call.request_id.as_ref()) {
            return resp;
        }
        if !running {
            return compute_error(
                400,
                "resourceNotReady",
                &format!("The resource '{}' is not ready", call.resource),
            );
        }
        if let Some(inst) = self.instances.get_mut(&call.key) {
            inst.resets += 1;
        }
        let (link, zone) = (call.link(), call.zone());
        self.operation_answer(&call.key.0, zone, link, id, "reset", call.request_id)
    }

    /// `POST .../zones/{z}/instances`; `collection` names the zone's instances in errors.
    pub(super) fn insert_instance(
        &mut self,
        p: &str,
        z: &str,
        body: &[u8],
        request_id: Option<String>,
        collection: &str,
    ) -> Response {
        let (body, name) = match self.insert_request(p, body, request_id.as_ref()) {
            Ok(checked) => checked,
            Err(resp) => return resp,
        };
        let key = (p.to_owned(), z.to_owned(), name.clone());
        if self.instances.contains_key(&key) {
            return already_exists(&format!("{collection}/{name}"));
        }
        let boot_polls = self.boot_polls;
        let (inst, nat_ips) = match self.build_instance(p, z, &name, &body, true, boot_polls) {
            Ok(x) => x,
            Err(resp) => return resp,
        };
        let link = instance_link(p, z, &name);
        let id = inst.id;
        self.instances.insert(key, inst);
        self.attach_addresses(p, &nat_ips, &link);
        *self.created.entry("instance").or_default() += 1;
        self.operation_answer(p, Scope::Zone(z.into()), link, id, "insert", request_id)
    }

    /// `POST .../instances/{i}/setMetadata`: the items replace the metadata when the body's
    /// `fingerprint` is the current one (else 412).
    pub(super) fn set_metadata(&mut self, call: InstanceCall, body: &[u8]) -> Response {
        let Some(inst) = self.instances.get(&call.key) else {
            return not_found(call.resource);
        };
        let (id, current) = (inst.id, inst.metadata_fingerprint.clone());
        let body = match parse_body(body) {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        if let Err(resp) = self.check_request_id(&call.key.0, call.request_id.as_ref()) {
            return resp;
        }
        if body.get("fingerprint").and_then(Value::as_str) != Some(current.as_str()) {
            return fingerprint_mismatch();
        }
        let items = match parse_metadata_items(body.get("items"), "metadata.items") {
            Ok(items) => items,
            Err(resp) => return resp,
        };
        if let Some(inst) = self.instances.get_mut(&call.key) {
            inst.metadata = items;
            inst.metadata_fingerprint = fingerprint();
        }
        let (link, zone) = (call.link(), call.zone());
        self.operation_answer(&call.key.0, zone, link, id, "setMetadata", call.request_id)
    }

    /// `POST .../instances/{i}/setLabels`: the labels replace those of the insert when the
    /// body's `labelFingerprint` is the current one (else 412). Labels live in the inserted
    /// shape (instances added without one have none to change).
    pub(super) fn set_labels(&mut self, call: InstanceCall, body: &[u8]) -> Response {
        let Some(inst) = self.instances.get(&call.key) else {
            return not_found(call.resource);
        };
        let id = inst.id;
        let current = inst
            .inserted
            .as_ref()
            .map(|ins| ins.shape["labelFingerprint"].clone());
        let body = match parse_body(body) {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        if let Err(resp) = self.check_request_id(&call.key.0, call.request_id.as_ref()) {
            return resp;
        }
        if current.as_ref() != body.get("labelFingerprint") {
            return fingerprint_mismatch();
        }
        let labels = body.get("labels").cloned().unwrap_or_else(|| json!({}));
        let inserted = self
            .instances
            .get_mut(&call.key)
            .and_then(|i| i.inserted.as_mut());
        if let Some(ins) = inserted {
            ins.shape["labels"] = labels;
            ins.shape["labelFingerprint"] = json!(fingerprint());
        }
        let (link, zone) = (call.link(), call.zone());
        self.operation_answer(&call.key.0, zone, link, id, "setLabels", call.request_id)
    }
}

impl FakeCompute {
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

    /// One metadata value of the instance.
    pub fn metadata_value(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        key: &str,
    ) -> Option<String> {
        let st = lock(&self.state);
        let inst = st
            .instances
            .get(&(project.into(), zone.into(), name.into()))?;
        let (_, value) = inst.metadata.iter().find(|(k, _)| k == key)?;
        Some(value.clone())
    }

    /// Removes the instance (GET and reset then answer 404); the addresses it used become
    /// `RESERVED` again.
    pub fn remove_instance(&self, project: &str, zone: &str, name: &str) {
        let mut st = lock(&self.state);
        let key = (project.into(), zone.into(), name.into());
        if st.instances.remove(&key).is_some() {
            st.detach_addresses(&instance_link(project, zone, name));
        }
    }

    /// The instance as `GET` would answer it (without advancing a boot).
    pub fn instance(&self, project: &str, zone: &str, name: &str) -> Option<Value> {
        let key = (project.to_owned(), zone.to_owned(), name.to_owned());
        lock(&self.state).instances.get(&key).map(|i| i.json(&key))
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
}
