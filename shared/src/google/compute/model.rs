//! Compute Engine's resources as this project reads and writes them: instances, regional
//! addresses, firewall rules, operations. Fields the API may leave out are optional or
//! default; ids are read whether the API writes them as strings or numbers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::google::operation::{failure_text, LongRunningOperation, OperationState};

/// Accepts a string, a number or null (ids are strings in the API, numbers in some tools).
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn lenient_opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(lenient_string(d)?).filter(|s| !s.is_empty()))
}

/// A VM. What the keepalive reads (id, status, last start) and what the provisioner writes
/// and compares (machine type, address, metadata, tags); absent fields are left out of a
/// written body.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "String::is_empty"
    )]
    pub id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "String::is_empty"
    )]
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_start_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    /// What `setLabels` must be sent with (so a concurrent change is refused, not lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_fingerprint: Option<String>,
    #[serde(flatten)]
    pub spec: InstanceSpec,
}

/// What a VM is made of: what the provisioner creates it with and checks it against.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `zones/Z/machineTypes/T` (or its full URL, as the API answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<AttachedDisk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_interfaces: Vec<NetworkInterface>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccount>,
}

impl Instance {
    /// Every address of the instance: `natIP`, `networkIP` and the IPv6 ones, internal and
    /// external, of every interface (text that is not an address is left out).
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        let mut out: Vec<std::net::IpAddr> = Vec::new();
        for nic in &self.spec.network_interfaces {
            let external = nic.access_configs.iter().chain(&nic.ipv6_access_configs);
            let texts = [&nic.network_ip, &nic.ipv6_address]
                .into_iter()
                .chain(external.flat_map(|a| [&a.nat_ip, &a.external_ipv6]));
            for ip in texts.flatten().filter_map(|t| t.trim().parse().ok()) {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        out
    }

    /// The value of metadata entry `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.spec
            .metadata
            .as_ref()?
            .items
            .iter()
            .find(|i| i.key == key)?
            .value
            .as_deref()
    }

    /// The external address of the first interface.
    pub fn nat_ip(&self) -> Option<&str> {
        self.spec
            .network_interfaces
            .first()?
            .access_configs
            .first()?
            .nat_ip
            .as_deref()
    }

    pub fn tags(&self) -> &[String] {
        self.spec.tags.as_ref().map_or(&[], |t| &t.items)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Tags {
    #[serde(default)]
    pub items: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedDisk {
    #[serde(default)]
    pub boot: bool,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initialize_params: Option<DiskInitializeParams>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskInitializeParams {
    pub source_image: String,
    /// An int64, written as a string.
    pub disk_size_gb: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The internal address (read only).
    #[serde(rename = "networkIP", skip_serializing_if = "Option::is_none")]
    pub network_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_configs: Vec<AccessConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_access_configs: Vec<AccessConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessConfig {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "natIP", skip_serializing_if = "Option::is_none")]
    pub nat_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_tier: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Metadata {
    #[serde(default)]
    pub items: Vec<MetadataItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// One metadata entry. Its value may be a password (`WA_DB_PASSWORD`): `Debug` shows only
/// its length.
#[derive(Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct MetadataItem {
    pub key: String,
    pub value: Option<String>,
}

impl MetadataItem {
    pub fn new(key: &str, value: &str) -> Self {
        MetadataItem {
            key: key.to_string(),
            value: Some(value.to_string()),
        }
    }
}

impl fmt::Debug for MetadataItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataItem")
            .field("key", &self.key)
            .field(
                "value",
                &self.value.as_ref().map(|v| format!("<{} bytes>", v.len())),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ServiceAccount {
    pub email: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A regional static address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub name: String,
    /// The IP; empty while it is being reserved.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A firewall rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default)]
    pub allowed: Vec<FirewallAllowed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_tags: Vec<String>,
}

impl Firewall {
    /// Every port any rule allows.
    pub fn ports(&self) -> impl Iterator<Item = &str> {
        self.allowed
            .iter()
            .flat_map(|a| a.ports.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct FirewallAllowed {
    #[serde(rename = "IPProtocol")]
    pub ip_protocol: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

/// A zonal, regional or global operation.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub operation_type: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub target_id: Option<String>,
    pub target_link: Option<String>,
    pub insert_time: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub self_link: Option<String>,
    pub error: Option<OperationError>,
    pub http_error_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OperationError {
    #[serde(default)]
    pub errors: Vec<OperationErrorItem>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OperationErrorItem {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl Operation {
    pub fn is_done(&self) -> bool {
        self.status == "DONE"
    }

    /// The operation's error in words, if it failed.
    pub fn failure(&self) -> Option<String> {
        let e = self.error.as_ref().filter(|e| !e.errors.is_empty())?;
        Some(failure_text(
            e.errors
                .iter()
                .map(|i| (i.code.as_deref(), i.message.as_deref())),
        ))
    }
}

impl LongRunningOperation for Operation {
    fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> OperationState {
        match self.failure() {
            _ if !self.is_done() => OperationState::Running(format!("status {}", self.status)),
            Some(message) => OperationState::Failed(message),
            None => OperationState::Succeeded,
        }
    }
}

/// `projects.get`: only the number is read.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Project {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: String,
}
