//! Regional addresses (static external IPs): insert, get, and who uses them. An address an
//! instance names as `natIP` is `IN_USE` by it (and listed in `users`) until the instance
//! goes; fresh addresses are `203.0.113.10`, `.11`, ... (then `198.18.x.y`).

use axum::response::Response;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::errors::{already_exists, invalid, not_found};
use super::names::{address_link, instance_link, random_id, Scope};
use super::{string_field, ComputeState, FakeCompute, Key};
use crate::server::{compute_timestamp, json_response, lock, now};

pub(super) struct Address {
    pub(super) id: u64,
    created: OffsetDateTime,
    pub(super) address: String,
    status: String,
    /// selfLinks of the instances using it.
    pub(super) users: Vec<String>,
    /// The insert body (name, addressType, networkTier, description, ...).
    body: Value,
}

impl Address {
    fn json(&self, (project, region, name): &Key) -> Value {
        let mut v = json!({
            "kind": "compute#address",
            "id": self.id.to_string(),
            "creationTimestamp": compute_timestamp(self.created),
            "name": name,
            "address": self.address,
            "status": self.status,
            "region": Scope::Region(region.clone()).link(project),
            "selfLink": address_link(project, region, name),
            "networkTier": string_field(&self.body, "networkTier", "PREMIUM"),
            "addressType": string_field(&self.body, "addressType", "EXTERNAL"),
            "ipVersion": string_field(&self.body, "ipVersion", "IPV4"),
            "labelFingerprint": "42WmSpB8rSM=",
        });
        if let Some(d) = self.body.get("description").and_then(Value::as_str) {
            v["description"] = json!(d);
        }
        if let Some(l) = self.body.get("labels").filter(|l| l.is_object()) {
            v["labels"] = l.clone();
        }
        if !self.users.is_empty() {
            v["users"] = json!(self.users);
        }
        v
    }
}

impl ComputeState {
    /// A fresh external address, `203.0.113.10`, `.11`, ... (then `198.18.x.y`).
    pub(super) fn fresh_external_ip(&mut self) -> String {
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

    /// A new address `ip` of `project`, `IN_USE` by the instances that already use it.
    fn new_address(
        &self,
        project: &str,
        ip: String,
        created: OffsetDateTime,
        body: Value,
    ) -> Address {
        let users: Vec<String> = self
            .instances
            .iter()
            .filter(|((p, _, _), i)| p == project && i.nat_ip == ip)
            .map(|((p, z, n), _)| instance_link(p, z, n))
            .collect();
        Address {
            id: random_id(),
            created,
            address: ip,
            status: if users.is_empty() {
                "RESERVED"
            } else {
                "IN_USE"
            }
            .into(),
            users,
            body,
        }
    }

    /// Marks the reserved addresses an instance uses as `IN_USE` by it.
    pub(super) fn attach_addresses(&mut self, project: &str, nat_ips: &[String], link: &str) {
        for ((p, _, _), a) in self.addresses.iter_mut() {
            if p == project && nat_ips.contains(&a.address) && !a.users.iter().any(|u| u == link) {
                a.users.push(link.to_owned());
                a.status = "IN_USE".into();
            }
        }
    }

    /// Frees the addresses an instance used.
    pub(super) fn detach_addresses(&mut self, link: &str) {
        for a in self.addresses.values_mut() {
            a.users.retain(|u| u != link);
            if a.users.is_empty() && a.status == "IN_USE" {
                a.status = "RESERVED".into();
            }
        }
    }

    /// `GET .../regions/{r}/addresses/{a}`.
    pub(super) fn get_address(&self, key: Key, resource: &str) -> Response {
        match self.addresses.get(&key) {
            Some(a) => json_response(200, &a.json(&key)),
            None => not_found(resource),
        }
    }

    /// `POST .../regions/{r}/addresses`.
    pub(super) fn insert_address(
        &mut self,
        project: &str,
        region: &str,
        body: &[u8],
        request_id: Option<String>,
        collection: &str,
    ) -> Response {
        let (body, name) = match self.insert_request(project, body, request_id.as_ref()) {
            Ok(checked) => checked,
            Err(resp) => return resp,
        };
        let key = (project.to_owned(), region.to_owned(), name.clone());
        if self.addresses.contains_key(&key) {
            return already_exists(&format!("{collection}/{name}"));
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
        let ip = match body.get("address").and_then(Value::as_str) {
            Some(ip) if self.addresses.values().any(|a| a.address == ip) => {
                return invalid(
                    "resource.address",
                    &format!("'{ip}'. The IP address is already reserved."),
                )
            }
            Some(ip) => ip.to_owned(),
            None => self.fresh_external_ip(),
        };
        let address = self.new_address(project, ip, now(), body);
        let id = address.id;
        self.addresses.insert(key, address);
        *self.created.entry("address").or_default() += 1;
        self.operation_answer(
            project,
            Scope::Region(region.into()),
            address_link(project, region, &name),
            id,
            "insert",
            request_id,
        )
    }
}

impl FakeCompute {
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
        let ip = ip.map_or_else(|| st.fresh_external_ip(), str::to_owned);
        let body = json!({"name": name, "addressType": "EXTERNAL", "networkTier": "PREMIUM"});
        let address = st.new_address(project, ip.clone(), now() - time::Duration::days(1), body);
        st.addresses
            .insert((project.into(), region.into(), name.into()), address);
        ip
    }

    /// The address as `GET` answers it.
    pub fn address(&self, project: &str, region: &str, name: &str) -> Option<Value> {
        let key = (project.to_owned(), region.to_owned(), name.to_owned());
        lock(&self.state).addresses.get(&key).map(|a| a.json(&key))
    }
}
