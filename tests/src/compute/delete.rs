//! `DELETE` of an instance, a regional address or a global firewall rule (what
//! `decommission` calls). Each answers an operation (`operationType: "delete"`) and removes
//! the resource when accepted; `requestId` deduplicates as for inserts. An address still used
//! by an instance is refused (400 `resourceInUseByAnotherResource`), as the real API does.

use axum::response::Response;

use super::errors::{compute_error, not_found};
use super::names::{address_link, firewall_link, instance_link, Scope, LINK_PREFIX};
use super::ComputeState;

/// What a `DELETE` names.
pub(super) enum Target<'a> {
    Instance { z: &'a str, i: &'a str },
    Address { r: &'a str, a: &'a str },
    Firewall { f: &'a str },
}

impl Target<'_> {
    pub(super) fn resource(&self, p: &str) -> String {
        match self {
            Target::Instance { z, i } => format!("projects/{p}/zones/{z}/instances/{i}"),
            Target::Address { r, a } => format!("projects/{p}/regions/{r}/addresses/{a}"),
            Target::Firewall { f } => format!("projects/{p}/global/firewalls/{f}"),
        }
    }
}

/// Carries out one `DELETE`.
pub(super) fn delete(
    st: &mut ComputeState,
    p: &str,
    target: &Target,
    request_id: Option<String>,
) -> Response {
    if let Err(resp) = st.check_request_id(p, request_id.as_ref()) {
        return resp;
    }
    let (scope, link, id) = match *target {
        Target::Instance { z, i } => {
            let key = (p.to_owned(), z.to_owned(), i.to_owned());
            let Some(inst) = st.instances.remove(&key) else {
                return not_found(&target.resource(p));
            };
            let link = instance_link(p, z, i);
            st.detach_addresses(&link);
            (Scope::Zone(z.into()), link, inst.id)
        }
        Target::Address { r, a } => {
            let key = (p.to_owned(), r.to_owned(), a.to_owned());
            let Some(addr) = st.addresses.get(&key) else {
                return not_found(&target.resource(p));
            };
            if let Some(user) = addr.users.first() {
                return compute_error(
                    400,
                    "resourceInUseByAnotherResource",
                    &format!(
                        "The address resource '{}' is already being used by '{}'",
                        target.resource(p),
                        user.trim_start_matches(LINK_PREFIX).trim_start_matches('/')
                    ),
                );
            }
            let id = addr.id;
            st.addresses.remove(&key);
            (Scope::Region(r.into()), address_link(p, r, a), id)
        }
        Target::Firewall { f } => {
            let Some(fw) = st.firewalls.remove(&(p.to_owned(), f.to_owned())) else {
                return not_found(&target.resource(p));
            };
            (Scope::Global, firewall_link(p, f), fw.id)
        }
    };
    st.operation_answer(p, scope, link, id, "delete", request_id)
}

#[cfg(test)]
mod tests {
    use crate::compute::FakeCompute;
    use crate::token::TokenRegistry;
    use serde_json::{json, Value};

    const P: &str = "proj";
    const Z: &str = "europe-west3-a";
    const R: &str = "europe-west3";

    async fn delete(c: &FakeCompute, token: &str, rest: &str) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .delete(format!("{}/compute/v1/projects/{P}/{rest}", c.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    #[tokio::test]
    async fn the_address_goes_only_after_its_instance() {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        let c = FakeCompute::start(tokens).await;
        c.add_instance(P, Z, "vm", "RUNNING", time::OffsetDateTime::now_utc());
        c.set_nat_ip(P, Z, "vm", "203.0.113.9");
        c.seed_address(P, R, "vm", Some("203.0.113.9"));
        c.seed_firewall(P, json!({"name": "vm-allow-web", "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}], "targetTags": ["vm"]}));

        let (status, body) = delete(&c, &token, &format!("regions/{R}/addresses/vm")).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["error"]["errors"][0]["reason"],
            "resourceInUseByAnotherResource"
        );
        assert!(c.address(P, R, "vm").is_some());

        let (status, op) = delete(&c, &token, &format!("zones/{Z}/instances/vm")).await;
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["operationType"], "delete");
        assert!(c.instance(P, Z, "vm").is_none());
        assert_eq!(c.address(P, R, "vm").unwrap()["status"], "RESERVED");
        let (status, _) = delete(&c, &token, &format!("zones/{Z}/instances/vm")).await;
        assert_eq!(status, 404);

        let (status, op) = delete(&c, &token, &format!("regions/{R}/addresses/vm")).await;
        assert_eq!((status, &op["operationType"]), (200, &json!("delete")));
        assert!(c.address(P, R, "vm").is_none());
        let (status, _) = delete(&c, &token, "global/firewalls/vm-allow-web").await;
        assert_eq!(status, 200);
        assert!(c.firewall(P, "vm-allow-web").is_none());
        let (status, _) = delete(&c, &token, "global/firewalls/vm-allow-web").await;
        assert_eq!(status, 404);
    }
}
