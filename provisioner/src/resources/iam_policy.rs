//! IAM policy arithmetic, on the policies' JSON: add a member to a role, take public access
//! away. Shared by the Cloud Run invoker binding and the Pub/Sub grants.

use serde_json::{json, Value};

pub const PUBLIC_MEMBERS: [&str; 2] = ["allUsers", "allAuthenticatedUsers"];

/// The policy with `member` holding `roles/run.invoker` and no public member (`allUsers`,
/// `allAuthenticatedUsers`) on any role; other bindings kept. `None`: nothing to change.
pub fn invoker_policy(policy: &Value, member: &str) -> Option<(Value, Vec<String>)> {
    const ROLE: &str = "roles/run.invoker";
    let mut changes = Vec::new();
    let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
    for b in bindings.iter_mut() {
        if let Some(members) = b["members"].as_array_mut() {
            let before = members.len();
            members.retain(|m| !m.as_str().is_some_and(|m| PUBLIC_MEMBERS.contains(&m)));
            if members.len() != before {
                changes.push(format!(
                    "public access removed from {}",
                    b["role"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    bindings.retain(|b| b["members"].as_array().is_some_and(|m| !m.is_empty()));
    let mut out = policy.clone();
    out["bindings"] = Value::Array(bindings);
    if let Some(granted) = with_member(&out, ROLE, member) {
        out = granted;
        changes.push(format!("{ROLE} granted to {member}"));
    }
    (!changes.is_empty()).then_some((out, changes))
}

/// The policy with `member` in an unconditional binding of `role`; `None` when it is there.
pub fn with_member(policy: &Value, role: &str, member: &str) -> Option<Value> {
    let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
    let unconditional =
        |b: &Value| b["role"] == role && b.get("condition").is_none_or(Value::is_null);
    if bindings.iter().any(|b| {
        unconditional(b)
            && b["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == member))
    }) {
        return None;
    }
    match bindings.iter_mut().find(|b| unconditional(b)) {
        Some(b) => match b["members"].as_array_mut() {
            Some(m) => m.push(json!(member)),
            None => b["members"] = json!([member]),
        },
        None => bindings.push(json!({"role": role, "members": [member]})),
    }
    let mut out = policy.clone();
    out["bindings"] = Value::Array(bindings);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_invoker_policy_removes_public_access_and_keeps_the_rest() {
        let member = "serviceAccount:inv@p.iam.gserviceaccount.com";
        let (p, changes) = invoker_policy(&json!({"etag": "BwX"}), member).unwrap();
        assert_eq!(
            p,
            json!({"etag": "BwX", "bindings": [{"role": "roles/run.invoker", "members": [member]}]})
        );
        assert_eq!(changes.len(), 1);
        assert!(invoker_policy(&p, member).is_none());

        let public = json!({"etag": "e", "bindings": [
            {"role": "roles/run.invoker", "members": ["allUsers"]},
            {"role": "roles/run.developer", "members": ["user:ops@acme.com", "allAuthenticatedUsers"]}
        ]});
        let (p, changes) = invoker_policy(&public, member).unwrap();
        assert_eq!(
            p["bindings"],
            json!([
                {"role": "roles/run.developer", "members": ["user:ops@acme.com"]},
                {"role": "roles/run.invoker", "members": [member]}
            ])
        );
        assert_eq!(changes.len(), 3, "{changes:?}");
    }

    #[test]
    fn with_member_adds_once_and_leaves_conditional_bindings_alone() {
        let agent = "serviceAccount:service-1@gcp-sa-pubsub.iam.gserviceaccount.com";
        let conditional = json!({"etag": "BwX", "bindings": [
            {"role": "roles/pubsub.publisher", "members": ["user:a@b.c"], "condition": {"expression": "false"}}
        ]});
        let p = with_member(&conditional, "roles/pubsub.publisher", agent).unwrap();
        assert_eq!(p["bindings"].as_array().unwrap().len(), 2);
        assert_eq!(
            p["bindings"][1],
            json!({"role": "roles/pubsub.publisher", "members": [agent]})
        );
        assert_eq!(p["etag"], "BwX");
        assert!(with_member(&p, "roles/pubsub.publisher", agent).is_none());
        let p2 = with_member(&p, "roles/pubsub.publisher", "user:x@y.z").unwrap();
        assert_eq!(p2["bindings"][1]["members"], json!([agent, "user:x@y.z"]));
    }
}
