//! The regional static external address the VM uses and the database admits.

use shared::google::compute::Address;
use shared::google::operation::Poll;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

use crate::ensure::{ensure, Check, Created, Difference, Ensured, Resource};
use crate::progress::wait_for;
use crate::{Provisioner, StepError};

/// This number's static address, as wanted.
pub struct StaticAddress {
    pub project: String,
    pub region: String,
    pub name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
}

impl StaticAddress {
    pub fn of(prov: &Provisioner) -> StaticAddress {
        let cfg = &prov.cfg;
        StaticAddress {
            project: cfg.project.clone(),
            region: cfg.region.clone(),
            name: prov.names().address,
            description: format!(
                "WhatsApp Business API client for +{}{}",
                cfg.country_code, cfg.phone_number
            ),
            labels: prov.labels(),
        }
    }

    fn spec(&self) -> Address {
        Address {
            name: self.name.clone(),
            address_type: Some("EXTERNAL".into()),
            network_tier: Some("PREMIUM".into()),
            description: Some(self.description.clone()),
            labels: self.labels.clone(),
            ..Address::default()
        }
    }

    /// Waits until the address has its IP (reserving takes a moment).
    async fn wait_for_ip(&self, prov: &Provisioner) -> Result<Address, StepError> {
        let what = format!("{} to get its IP", self.resource());
        wait_for(prov, &what, Duration::from_secs(300), || async {
            Ok(match self.read(prov).await? {
                Some(a) if !a.address.is_empty() => Poll::Ready(a),
                _ => Poll::Pending("reserving".into()),
            })
        })
        .await
    }
}

impl Resource for StaticAddress {
    type State = Address;

    fn kind(&self) -> &'static str {
        "static address"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn resource(&self) -> String {
        format!("address {}", self.name)
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Address>, StepError> {
        prov.google
            .compute
            .find_address(
                &self.project,
                &self.region,
                &self.name,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(prov.google_failed(self.resource()))
    }

    fn plan(&self) -> Option<String> {
        Some(format!("EXTERNAL, PREMIUM, in {}", self.region))
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<Address>, StepError> {
        let compute = &prov.google.compute;
        let insert = compute
            .insert_address(
                &self.project,
                &self.region,
                &self.spec(),
                Uuid::new_v4(),
                Some(prov.call_deadline()),
            )
            .await;
        let scope = shared::google::compute::Scope::Region(self.region.clone());
        let wait = Duration::from_secs(300);
        if !super::wait_for_insert(prov, self, insert, &self.project, &scope, wait).await? {
            return Ok(Created::AlreadyExists);
        }
        Ok(Created::New(self.wait_for_ip(prov).await?))
    }

    fn differences(&self, have: &Address, _: Check) -> Vec<Difference> {
        match have.address_type.as_deref() {
            Some(t) if t != "EXTERNAL" => {
                vec![Difference::report(format!(
                    "addressType is {t}, want EXTERNAL"
                ))]
            }
            _ => Vec::new(),
        }
    }

    fn detail(&self, have: &Address) -> Option<String> {
        Some(have.address.clone()).filter(|ip| !ip.is_empty())
    }
}

/// The address, reserved if needed, and its IP (waited for when it has none yet). `None` only
/// under `--dry-run` when it does not exist yet.
pub async fn ensure_ip(prov: &Provisioner) -> Result<Option<String>, StepError> {
    let wanted = StaticAddress::of(prov);
    let address = match ensure(prov, &wanted).await? {
        Ensured::Planned => return Ok(None),
        Ensured::Present(a) => a,
    };
    if !address.address.is_empty() || prov.dry_run {
        return Ok(Some(address.address).filter(|ip| !ip.is_empty()));
    }
    Ok(Some(wanted.wait_for_ip(prov).await?.address))
}

/// The address's IP, when it is reserved and has one.
pub async fn read_ip(prov: &Provisioner) -> Result<Option<String>, StepError> {
    Ok(StaticAddress::of(prov)
        .read(prov)
        .await?
        .map(|a| a.address)
        .filter(|ip| !ip.is_empty()))
}
