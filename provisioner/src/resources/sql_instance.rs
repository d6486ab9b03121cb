//! The Cloud SQL for PostgreSQL instance: `max_connections` from `number.toml`, SSL required,
//! reachable only from the VM's static address unless configured otherwise.

use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::config::NumberConfig;
use crate::ensure::{read_back, Check, Created, Difference, Resource};
use crate::{Provisioner, StepError};

/// This number's instance, as wanted.
pub struct SqlInstance {
    pub project: String,
    pub name: String,
    pub region: String,
    pub version: String,
    pub tier: String,
    pub max_connections: u32,
    /// CIDR ranges that may connect; empty only under `--dry-run` before the address exists.
    pub networks: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The authorized networks the config asks for, given the VM's address.
pub fn authorized_networks(cfg: &NumberConfig, vm_ip: Option<&str>) -> Vec<String> {
    if cfg.database.authorized_networks.is_empty() {
        vm_ip.map(|ip| vec![format!("{ip}/32")]).unwrap_or_default()
    } else {
        cfg.database.authorized_networks.clone()
    }
}

impl SqlInstance {
    pub fn of(prov: &Provisioner, vm_ip: Option<&str>) -> SqlInstance {
        let cfg = &prov.cfg;
        SqlInstance {
            project: cfg.project.clone(),
            name: prov.names().sql_instance,
            region: cfg.region.clone(),
            version: cfg.database.version.clone(),
            tier: cfg.database.tier.clone(),
            max_connections: cfg.database.max_connections,
            networks: authorized_networks(cfg, vm_ip),
            labels: prov.labels(),
        }
    }

    pub fn body(&self) -> Value {
        let nets: Vec<Value> = self
            .networks
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"name": if i == 0 { "whatsapp-vm".to_string() } else { format!("network-{i}") }, "value": v}))
            .collect();
        json!({
            "name": self.name,
            "databaseVersion": self.version,
            "region": self.region,
            "settings": {
                "tier": self.tier,
                "userLabels": self.labels,
                "ipConfiguration": {
                    "ipv4Enabled": true,
                    "authorizedNetworks": nets,
                    // SSL required, no client certificates (the API refuses requireSsl=true with it).
                    "sslMode": "ENCRYPTED_ONLY"
                },
                "databaseFlags": [
                    {"name": "max_connections", "value": self.max_connections.to_string()}
                ],
                "backupConfiguration": {
                    "enabled": true,
                    "startTime": "02:00",
                    "pointInTimeRecoveryEnabled": true
                },
                "deletionProtectionEnabled": true
            }
        })
    }
}

/// The instance's `PRIMARY` IP address, once it has one.
pub fn primary_ip(instance: &Value) -> Option<String> {
    instance["ipAddresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "PRIMARY")?["ipAddress"]
        .as_str()
        .map(str::to_string)
}

impl Resource for SqlInstance {
    type State = Value;

    fn kind(&self) -> &'static str {
        "Cloud SQL instance"
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Value>, StepError> {
        prov.google
            .sql
            .get_instance(&self.project, &self.name, Some(prov.call_deadline()))
            .await
            .map_err(prov.google_failed(self.resource()))
    }

    fn plan(&self) -> Option<String> {
        Some(format!(
            "{} {} max_connections={} SSL required, authorized networks {:?}",
            self.version,
            self.tier,
            self.max_connections,
            if self.networks.is_empty() {
                vec!["<the VM's static address>/32".to_string()]
            } else {
                self.networks.clone()
            }
        ))
    }

    /// Starts the creation (minutes): the step waits until it is `RUNNABLE`.
    async fn create(&self, prov: &Provisioner) -> Result<Created<Value>, StepError> {
        let insert = prov
            .google
            .sql
            .insert_instance(&self.project, &self.body(), Some(prov.call_deadline()))
            .await;
        match insert {
            Ok(op) => {
                eprintln!(
                    "  creating {} (operation {}); this takes several minutes",
                    self.resource(),
                    op.name
                );
                let now = read_back(prov, self, "not found right after it was created").await?;
                Ok(Created::New(now))
            }
            Err(e) if e.is_already_exists() => Ok(Created::AlreadyExists),
            Err(e) => Err(prov.google_failed(self.resource())(e)),
        }
    }

    /// Reported, not changed: the database is the number's memory.
    fn differences(&self, instance: &Value, _: Check) -> Vec<Difference> {
        let mut d = Vec::new();
        let s = &instance["settings"];
        let want_max = self.max_connections.to_string();
        let flag = s["databaseFlags"]
            .as_array()
            .and_then(|flags| flags.iter().find(|f| f["name"] == "max_connections"))
            .and_then(|f| f["value"].as_str().map(str::to_string));
        match flag {
            Some(v) if v == want_max => {}
            Some(v) => d.push(format!(
                "max_connections is {v}, number.toml wants {want_max}"
            )),
            None => d.push(format!(
                "max_connections is not set (PostgreSQL's default), number.toml wants {want_max}"
            )),
        }
        if let Some(v) = instance["databaseVersion"].as_str() {
            if v != self.version {
                d.push(format!(
                    "databaseVersion is {v}, number.toml wants {}",
                    self.version
                ));
            }
        }
        if let Some(t) = s["tier"].as_str() {
            if t != self.tier {
                d.push(format!("tier is {t}, number.toml wants {}", self.tier));
            }
        }
        let ip = &s["ipConfiguration"];
        let ssl_required = ip["requireSsl"].as_bool() == Some(true)
            || matches!(
                ip["sslMode"].as_str(),
                Some("ENCRYPTED_ONLY" | "TRUSTED_CLIENT_CERTIFICATE_REQUIRED")
            );
        if !ssl_required {
            d.push("SSL is not required".into());
        }
        let mut have: Vec<String> = ip["authorizedNetworks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        have.sort();
        let mut want = self.networks.clone();
        want.sort();
        if !want.is_empty() && have != want {
            d.push(format!(
                "authorized networks are {have:?}, number.toml wants {want:?}"
            ));
        }
        d.into_iter().map(Difference::report).collect()
    }

    fn detail(&self, instance: &Value) -> Option<String> {
        instance["state"].as_str().map(str::to_string)
    }
}
