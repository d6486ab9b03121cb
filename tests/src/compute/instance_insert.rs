//! An instance from an insert body, checked as the real API checks it (machine type of the
//! zone, one boot disk, interfaces, a `natIP` reserved in the region, metadata keys, tags),
//! with the fields the API adds to its answer (full links, disk sources and licenses,
//! interface names and internal addresses, fingerprints, scheduling).

// Checks return the answer to give as their error: one allocation less is not worth boxing.
#![allow(clippy::result_large_err)]

use axum::response::Response;
use serde_json::{json, Map, Value};

use super::errors::{invalid, required};
use super::instances::{Inserted, Instance};
use super::names::{
    fingerprint, full_link, network_link, random_id, region_of, valid_name, Scope, LINK_PREFIX,
};
use super::{string_field, ComputeState};
use crate::server::now;

/// `metadata.items` (`[{key, value}]`) checked as the real API does: keys of letters,
/// digits, `-` and `_` (at most 128), unique; values strings; at most 512 KiB in all.
pub(super) fn parse_metadata_items(
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

impl ComputeState {
    fn fresh_internal_ip(&mut self) -> String {
        let n = self.next_internal;
        self.next_internal += 1;
        format!("10.156.{}.{}", (n / 250) % 256, 2 + n % 250)
    }

    /// Builds an inserted instance from an insert body: checks it as the real API does, and
    /// computes the answer's shape. `check_nat_ips`: a `natIP` must be a reserved address of
    /// the project in the zone's region. Returns the instance (status PROVISIONING, or RUNNING
    /// when `boot_polls` is 0) and every natIP it uses.
    pub(super) fn build_instance(
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
}

fn nat_ips_first(shape: &Map<String, Value>) -> String {
    shape
        .get("networkInterfaces")
        .and_then(|n| n.pointer("/0/accessConfigs/0/natIP"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}
