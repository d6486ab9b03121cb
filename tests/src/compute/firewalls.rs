//! Global firewall rules: insert and get, checked as the real API checks them (a direction,
//! `allowed` or `denied` rules each with an `IPProtocol`), the network kept as a full link.

use axum::response::Response;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::errors::{already_exists, check_name, invalid, not_found, required};
use super::names::{firewall_link, network_link, random_id, Scope};
use super::{ComputeState, FakeCompute};
use crate::server::{compute_timestamp, json_response, lock, now};

pub(super) struct Firewall {
    pub(super) id: u64,
    created: OffsetDateTime,
    /// The insert body, with `network` as a full link.
    body: Value,
}

impl Firewall {
    /// Checks an insert body as the real API does and makes its network a full link.
    fn new(project: &str, mut body: Value, created: OffsetDateTime) -> Result<Firewall, Response> {
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
            let rules = body
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for (i, rule) in rules.enumerate() {
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
        Ok(Firewall {
            id: random_id(),
            created,
            body,
        })
    }

    fn json(&self, (project, name): &(String, String)) -> Value {
        let mut v = self.body.clone();
        let obj = v.as_object_mut().expect("firewall body is an object");
        for (k, default) in [
            ("direction", json!("INGRESS")),
            ("priority", json!(1000)),
            ("disabled", json!(false)),
            ("logConfig", json!({"enable": false})),
        ] {
            obj.entry(k).or_insert(default);
        }
        for (k, val) in [
            ("kind", json!("compute#firewall")),
            ("id", json!(self.id.to_string())),
            ("creationTimestamp", json!(compute_timestamp(self.created))),
            ("name", json!(name)),
            ("selfLink", json!(firewall_link(project, name))),
        ] {
            obj.insert(k.into(), val);
        }
        v
    }
}

impl ComputeState {
    /// `GET .../global/firewalls/{f}`.
    pub(super) fn get_firewall(&self, key: (String, String), resource: &str) -> Response {
        match self.firewalls.get(&key) {
            Some(f) => json_response(200, &f.json(&key)),
            None => not_found(resource),
        }
    }

    /// `POST .../global/firewalls`.
    pub(super) fn insert_firewall(
        &mut self,
        project: &str,
        body: &[u8],
        request_id: Option<String>,
        collection: &str,
    ) -> Response {
        let (body, name) = match self.insert_request(project, body, request_id.as_ref()) {
            Ok(checked) => checked,
            Err(resp) => return resp,
        };
        let key = (project.to_owned(), name.clone());
        if self.firewalls.contains_key(&key) {
            return already_exists(&format!("{collection}/{name}"));
        }
        let firewall = match Firewall::new(project, body, now()) {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        let id = firewall.id;
        self.firewalls.insert(key, firewall);
        *self.created.entry("firewall").or_default() += 1;
        let link = firewall_link(project, &name);
        self.operation_answer(project, Scope::Global, link, id, "insert", request_id)
    }
}

impl FakeCompute {
    /// Adds a firewall rule from an insert body (as if created long ago; not counted).
    /// Panics on a body the insert would refuse.
    pub fn seed_firewall(&self, project: &str, body: Value) {
        let name = check_name(&body)
            .map_err(|_| ())
            .expect("FakeCompute::seed_firewall: body needs a valid name");
        let firewall = Firewall::new(project, body, now() - time::Duration::days(1))
            .map_err(|_| ())
            .expect("FakeCompute::seed_firewall: invalid body");
        lock(&self.state)
            .firewalls
            .insert((project.into(), name), firewall);
    }

    /// The firewall rule as `GET` answers it.
    pub fn firewall(&self, project: &str, name: &str) -> Option<Value> {
        let key = (project.to_owned(), name.to_owned());
        lock(&self.state).firewalls.get(&key).map(|f| f.json(&key))
    }
}
