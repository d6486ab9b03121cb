//! The VM: Container-Optimized OS on the static address, with the metadata its startup script
//! reads to start the WhatsApp containers (the database's address, user and password).

use secrecy::{ExposeSecret, SecretString};
use shared::google::compute::model::{
    AccessConfig, AttachedDisk, DiskInitializeParams, Metadata, MetadataItem, NetworkInterface,
    ServiceAccount, Tags,
};
use shared::google::compute::{Instance, InstanceRef, InstanceSpec, Scope};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

use crate::ensure::{read_back, Check, Created, Difference, Resource};
use crate::{Provisioner, StepError};

/// The startup script, kept as a file in the repository and read at build time.
pub const STARTUP_SCRIPT: &str = include_str!("../../startup-script.sh");
pub const IMAGE: &str = "projects/cos-cloud/global/images/family/cos-stable";
pub const METADATA_KEYS: [&str; 6] = [
    "VM_IP_ADDRESS",
    "WA_DB_HOST_NAME",
    "WA_DB_USERNAME",
    "WA_DB_PASSWORD",
    "WA_API_VERSION",
    "startup-script",
];

/// The label the keepalive looks for: it resets only VMs that carry it.
pub const KEEPALIVE_LABEL: (&str, &str) = ("whatsapp-keepalive", "enabled");

/// This number's VM, as wanted, given the address and the database it uses.
pub struct WhatsAppVm {
    pub vm: InstanceRef,
    pub description: String,
    pub machine_type: String,
    pub whatsapp_version: String,
    pub network_tag: String,
    pub labels: BTreeMap<String, String>,
    /// The static address.
    pub ip: String,
    pub db_host: String,
    pub db_user: String,
    pub db_password: SecretString,
}

/// This number's VM, by project, zone and name.
pub fn vm_ref(prov: &Provisioner) -> InstanceRef {
    InstanceRef {
        project: prov.cfg.project.clone(),
        zone: prov.cfg.zone.clone(),
        name: prov.names().vm,
    }
}

/// This number's VM as it is, or `None`.
pub async fn read_vm(prov: &Provisioner) -> Result<Option<Instance>, StepError> {
    let vm = vm_ref(prov);
    prov.google
        .compute
        .find_instance(&vm, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(format!("VM {}", vm.name)))
}

impl WhatsAppVm {
    pub fn of(
        prov: &Provisioner,
        ip: &str,
        db_host: &str,
        db_password: SecretString,
    ) -> WhatsAppVm {
        let cfg = &prov.cfg;
        let n = prov.names();
        WhatsAppVm {
            vm: vm_ref(prov),
            description: format!(
                "WhatsApp Business API client for +{}{}",
                cfg.country_code, cfg.phone_number
            ),
            machine_type: cfg.vm.machine_type.clone(),
            whatsapp_version: cfg.vm.whatsapp_version.clone(),
            network_tag: n.network_tag,
            labels: {
                let mut labels = prov.labels();
                labels.insert(KEEPALIVE_LABEL.0.into(), KEEPALIVE_LABEL.1.into());
                labels
            },
            ip: ip.to_string(),
            db_host: db_host.to_string(),
            db_user: n.db_user,
            db_password,
        }
    }

    pub fn spec(&self) -> Instance {
        let zone = &self.vm.zone;
        let items = [
            ("VM_IP_ADDRESS", self.ip.as_str()),
            ("WA_DB_HOST_NAME", &self.db_host),
            ("WA_DB_USERNAME", &self.db_user),
            ("WA_DB_PASSWORD", self.db_password.expose_secret()),
            ("WA_API_VERSION", &self.whatsapp_version),
            ("startup-script", STARTUP_SCRIPT),
            ("google-logging-enabled", "true"),
        ]
        .into_iter()
        .map(|(k, v)| MetadataItem::new(k, v))
        .collect();
        Instance {
            name: self.vm.name.clone(),
            spec: InstanceSpec {
                description: Some(self.description.clone()),
                machine_type: Some(format!("zones/{zone}/machineTypes/{}", self.machine_type)),
                labels: self.labels.clone(),
                tags: Some(Tags {
                    items: vec![self.network_tag.clone()],
                }),
                disks: vec![AttachedDisk {
                    boot: true,
                    auto_delete: true,
                    initialize_params: Some(DiskInitializeParams {
                        source_image: IMAGE.into(),
                        disk_size_gb: "20".into(),
                    }),
                }],
                network_interfaces: vec![NetworkInterface {
                    network: Some("global/networks/default".into()),
                    access_configs: vec![AccessConfig {
                        kind: Some("ONE_TO_ONE_NAT".into()),
                        name: Some("External NAT".into()),
                        nat_ip: Some(self.ip.clone()),
                        network_tier: Some("PREMIUM".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                metadata: Some(Metadata {
                    items,
                    fingerprint: None,
                }),
                service_accounts: vec![ServiceAccount {
                    email: "default".into(),
                    scopes: [
                        "https://www.googleapis.com/auth/logging.write",
                        "https://www.googleapis.com/auth/monitoring.write",
                        "https://www.googleapis.com/auth/devstorage.read_only",
                    ]
                    .map(String::from)
                    .to_vec(),
                }],
            },
            ..Instance::default()
        }
    }
}

/// Adds the keepalive's label to a VM that lacks it (one created before, or by hand), keeping
/// its other labels. Done apart from the other differences, which are only reported: without
/// the label the keepalive would never reset this VM.
pub async fn ensure_keepalive_label(prov: &Provisioner, have: &Instance) -> Result<(), StepError> {
    let (key, value) = KEEPALIVE_LABEL;
    let label = format!("{key}={value}");
    if have.spec.labels.get(key).map(String::as_str) == Some(value) {
        return Ok(());
    }
    let vm = vm_ref(prov);
    if prov.dry_run {
        prov.report.add(
            "VM label",
            &vm.name,
            crate::report::Action::WouldUpdate(format!("add {label}")),
            None,
        );
        return Ok(());
    }
    let mut labels = have.spec.labels.clone();
    labels.insert(key.into(), value.into());
    let compute = &prov.google.compute;
    let resource = format!("VM {} (label {label})", vm.name);
    let op = compute
        .set_labels(
            &vm,
            &labels,
            have.label_fingerprint.as_deref(),
            Uuid::new_v4(),
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(&resource))?;
    wait_for_change(prov, &vm, &op.name, &resource).await?;
    prov.report.add(
        "VM label",
        &vm.name,
        crate::report::Action::Updated(format!("added {label}")),
        Some("the keepalive resets only labelled VMs".into()),
    );
    Ok(())
}

/// Waits (at most 5 minutes) for a change of the VM (labels, metadata) to be carried out.
async fn wait_for_change(
    prov: &Provisioner,
    vm: &InstanceRef,
    operation: &str,
    resource: &str,
) -> Result<(), StepError> {
    prov.google
        .compute
        .wait_operation(
            &vm.project,
            &Scope::Zone(vm.zone.clone()),
            operation,
            prov.wait_deadline(Duration::from_secs(300)),
        )
        .await
        .map_err(prov.google_failed(resource))?;
    Ok(())
}

/// Writes `password` into the VM's metadata `WA_DB_PASSWORD`, the other items kept (after a
/// `database --rotate-password`). No VM yet: nothing to do, `vm` writes it when it creates one.
pub async fn set_db_password(prov: &Provisioner, password: &SecretString) -> Result<(), StepError> {
    const KEY: &str = "WA_DB_PASSWORD";
    let vm = vm_ref(prov);
    let Some(have) = read_vm(prov).await? else {
        return Ok(());
    };
    let metadata = have.spec.metadata.clone().unwrap_or_default();
    let mut items: Vec<MetadataItem> = metadata
        .items
        .into_iter()
        .filter(|i| i.key != KEY)
        .collect();
    items.push(MetadataItem::new(KEY, password.expose_secret()));
    let resource = format!("VM {} (metadata {KEY})", vm.name);
    let compute = &prov.google.compute;
    let op = compute
        .set_metadata(
            &vm,
            &items,
            metadata.fingerprint.as_deref(),
            Uuid::new_v4(),
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(&resource))?;
    wait_for_change(prov, &vm, &op.name, &resource).await?;
    prov.report.add(
        "VM metadata",
        &format!("{} {KEY}", vm.name),
        crate::report::Action::Updated("the new database password".into()),
        Some("the WhatsApp containers read it at the next boot: reset the VM to use it now".into()),
    );
    Ok(())
}

impl Resource for WhatsAppVm {
    type State = Instance;

    fn kind(&self) -> &'static str {
        "VM"
    }

    fn name(&self) -> &str {
        &self.vm.name
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Instance>, StepError> {
        read_vm(prov).await
    }

    fn plan(&self) -> Option<String> {
        Some(format!(
            "{} on Container-Optimized OS, IP {}, metadata {}",
            self.machine_type,
            self.ip,
            METADATA_KEYS.join(", ")
        ))
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<Instance>, StepError> {
        let compute = &prov.google.compute;
        let (project, zone) = (&self.vm.project, &self.vm.zone);
        let insert = compute
            .insert_instance(
                project,
                zone,
                &self.spec(),
                Uuid::new_v4(),
                Some(prov.call_deadline()),
            )
            .await;
        let (scope, wait) = (Scope::Zone(zone.clone()), Duration::from_secs(600));
        if !super::wait_for_insert(prov, self, insert, project, &scope, wait).await? {
            return Ok(Created::AlreadyExists);
        }
        let now = read_back(prov, self, "not found right after it was created").await?;
        Ok(Created::New(now))
    }

    /// Reported, not changed: changing a running VM's address, machine or metadata is a
    /// person's decision. Secrets are compared, never shown.
    fn differences(&self, have: &Instance, _: Check) -> Vec<Difference> {
        let mut d = Vec::new();
        if have.nat_ip() != Some(self.ip.as_str()) {
            d.push(format!(
                "external IP is {}, want the static address {}",
                have.nat_ip().unwrap_or("none"),
                self.ip
            ));
        }
        if let Some(mt) = &have.spec.machine_type {
            if !mt.ends_with(&format!("/machineTypes/{}", self.machine_type)) {
                d.push(format!(
                    "machine type is {}, number.toml wants {}",
                    mt.rsplit('/').next().unwrap_or(mt),
                    self.machine_type
                ));
            }
        }
        for (key, want) in [
            ("VM_IP_ADDRESS", self.ip.as_str()),
            ("WA_DB_HOST_NAME", &self.db_host),
            ("WA_DB_USERNAME", &self.db_user),
            ("WA_API_VERSION", &self.whatsapp_version),
        ] {
            match have.metadata_value(key) {
                Some(v) if v == want => {}
                Some(v) => d.push(format!("metadata {key} is {v:?}, want {want:?}")),
                None => d.push(format!("metadata {key} is missing")),
            }
        }
        match have.metadata_value("WA_DB_PASSWORD") {
            Some(v) if v == self.db_password.expose_secret() => {}
            Some(_) => {
                d.push("metadata WA_DB_PASSWORD differs from the password in Secret Manager".into())
            }
            None => d.push("metadata WA_DB_PASSWORD is missing".into()),
        }
        if have.metadata_value("startup-script").is_none() {
            d.push("metadata startup-script is missing".into());
        }
        if !have.tags().contains(&self.network_tag) {
            d.push(format!(
                "network tag {} is missing (the firewall rule targets it)",
                self.network_tag
            ));
        }
        d.into_iter().map(Difference::report).collect()
    }

    fn detail(&self, have: &Instance) -> Option<String> {
        Some(have.status.clone()).filter(|s| !s.is_empty())
    }
}
