//! The firewall rule that lets HTTPS (443) reach the VM's network tag: the API is served
//! there only, through the VM's proxy. Port 80 only with `vm.open_http = true`.

use shared::google::compute::model::FirewallAllowed;
use shared::google::compute::{Firewall, Scope};
use std::time::Duration;
use uuid::Uuid;

use crate::ensure::{read_back, Check, Created, Difference, Resource};
use crate::{Provisioner, StepError};

/// This number's firewall rule, as wanted.
pub struct FirewallRule {
    pub project: String,
    pub name: String,
    /// The VM's network tag the rule targets.
    pub tag: String,
    /// `443`, and `80` with `vm.open_http`.
    pub ports: Vec<&'static str>,
}

impl FirewallRule {
    pub fn of(prov: &Provisioner) -> FirewallRule {
        let n = prov.names();
        FirewallRule {
            project: prov.cfg.project.clone(),
            name: n.firewall,
            tag: n.network_tag,
            ports: if prov.cfg.vm.open_http {
                vec!["443", "80"]
            } else {
                vec!["443"]
            },
        }
    }

    pub fn spec(&self) -> Firewall {
        Firewall {
            name: self.name.clone(),
            description: Some(format!(
                "tcp {} to the WhatsApp Business API client's proxy",
                self.ports.join(", ")
            )),
            network: Some("global/networks/default".into()),
            direction: Some("INGRESS".into()),
            priority: Some(1000),
            allowed: vec![FirewallAllowed {
                ip_protocol: "tcp".into(),
                ports: self.ports.iter().map(|p| p.to_string()).collect(),
            }],
            source_ranges: vec!["0.0.0.0/0".into()],
            target_tags: vec![self.tag.clone()],
        }
    }
}

impl Resource for FirewallRule {
    type State = Firewall;

    fn kind(&self) -> &'static str {
        "firewall rule"
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<Firewall>, StepError> {
        prov.google
            .compute
            .find_firewall(&self.project, &self.name, Some(prov.call_deadline()))
            .await
            .map_err(prov.google_failed(self.resource()))
    }

    fn plan(&self) -> Option<String> {
        Some(format!("tcp {} to tag {}", self.ports.join(", "), self.tag))
    }

    async fn create(&self, prov: &Provisioner) -> Result<Created<Firewall>, StepError> {
        let compute = &prov.google.compute;
        let insert = compute
            .insert_firewall(
                &self.project,
                &self.spec(),
                Uuid::new_v4(),
                Some(prov.call_deadline()),
            )
            .await;
        let wait = Duration::from_secs(300);
        if !super::wait_for_insert(prov, self, insert, &self.project, &Scope::Global, wait).await? {
            return Ok(Created::AlreadyExists);
        }
        let now = read_back(prov, self, "not found right after it was created").await?;
        Ok(Created::New(now))
    }

    /// Reported, not changed: a rule someone widened or narrowed is theirs to settle.
    fn differences(&self, have: &Firewall, _: Check) -> Vec<Difference> {
        let mut d = Vec::new();
        for p in &self.ports {
            if !have.ports().any(|x| x == *p) {
                d.push(Difference::report(format!("port {p} is not allowed")));
            }
        }
        if !self.ports.contains(&"80") && have.ports().any(|x| x == "80") {
            d.push(Difference::report(format!(
                "port 80 is open, but the API is served on 443 only (`vm.open_http` is false): close it with `gcloud compute firewall-rules update {} --allow=tcp:443`, or set `vm.open_http = true`",
                self.name
            )));
        }
        if !have.target_tags.contains(&self.tag) {
            d.push(Difference::report(format!(
                "does not target tag {}",
                self.tag
            )));
        }
        d
    }

    fn detail(&self, have: &Firewall) -> Option<String> {
        let ports: Vec<&str> = have.ports().collect();
        Some(format!(
            "tcp {} to tag {}",
            ports.join(", "),
            have.target_tags.join(", ")
        ))
    }
}
