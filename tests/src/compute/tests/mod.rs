//! The fake's own tests, through HTTP as a client sees it: a file per resource.

use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::names::LINK_PREFIX;
use crate::compute::{ComputeRoute, FakeCompute};
use crate::server::{compute_timestamp, parse_rfc3339};
use crate::token::TokenRegistry;

mod addresses_and_firewalls;
mod instances;
mod operations;
mod project;

const P: &str = "proj";
const Z: &str = "europe-west3-a";

pub struct Fixture {
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
