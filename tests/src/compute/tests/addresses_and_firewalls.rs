//! Addresses and firewall rules, their regional and global operations, scripted errors on inserts.

use super::*;

#[tokio::test]
async fn addresses_and_regional_operations() {
    let f = fixture().await;
    let body = json!({"name": "wa-ip", "addressType": "EXTERNAL", "networkTier": "PREMIUM", "description": "d"});
    let (status, op) = f
        .call("POST", &format!("regions/{R}/addresses"), Some(&body))
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["kind"], "compute#operation");
    assert_eq!(op["operationType"], "insert");
    assert_eq!(op["status"], "PENDING");
    assert_eq!(
        op["targetLink"],
        format!("{LINK_PREFIX}/projects/{P}/regions/{R}/addresses/wa-ip")
    );
    assert_eq!(
        op["region"],
        format!("{LINK_PREFIX}/projects/{P}/regions/{R}")
    );
    assert!(op.get("zone").is_none());
    let name = op["name"].as_str().unwrap().to_owned();
    assert_eq!(
        op["selfLink"],
        format!("{LINK_PREFIX}/projects/{P}/regions/{R}/operations/{name}")
    );
    let (status, done) = f
        .call("GET", &format!("regions/{R}/operations/{name}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["progress"], 100);
    assert!(done["endTime"].is_string() && done["startTime"].is_string());
    // Not visible as a zonal or global operation.
    assert_eq!(f.get(&format!("operations/{name}")).await.0, 404);
    assert_eq!(
        f.call("GET", &format!("global/operations/{name}"), None)
            .await
            .0,
        404
    );

    let (status, a) = f
        .call("GET", &format!("regions/{R}/addresses/wa-ip"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(a["kind"], "compute#address");
    assert_eq!(a["name"], "wa-ip");
    assert_eq!(a["status"], "RESERVED");
    assert_eq!(a["addressType"], "EXTERNAL");
    assert_eq!(a["networkTier"], "PREMIUM");
    assert_eq!(a["description"], "d");
    assert_eq!(a["id"], done["targetId"]);
    assert_eq!(
        a["region"],
        format!("{LINK_PREFIX}/projects/{P}/regions/{R}")
    );
    assert_eq!(a["selfLink"], done["targetLink"]);
    assert!(a.get("users").is_none());
    let ip = a["address"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("203.0.113."), "{ip}");
    assert_eq!(f.compute.address(P, R, "wa-ip").unwrap(), a);

    // Another address gets another IP.
    let (_, _) = f
        .call(
            "POST",
            &format!("regions/{R}/addresses"),
            Some(&json!({"name": "other"})),
        )
        .await;
    let other = f.compute.address(P, R, "other").unwrap();
    assert_ne!(other["address"], a["address"]);
    assert_eq!(f.compute.insert_count("address"), 2);

    // Duplicate: 409 in Compute's shape, nothing created.
    let (status, err) = f
        .call("POST", &format!("regions/{R}/addresses"), Some(&body))
        .await;
    assert_eq!(status, 409);
    let msg = format!("The resource 'projects/{P}/regions/{R}/addresses/wa-ip' already exists");
    assert_eq!(
        err,
        json!({"error": {"code": 409, "message": msg, "errors": [{"message": msg, "domain": "global", "reason": "alreadyExists"}]}})
    );
    let (status, err) = f
        .call("GET", &format!("regions/{R}/addresses/nope"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(
        err["error"]["message"],
        format!("The resource 'projects/{P}/regions/{R}/addresses/nope' was not found")
    );
    assert_eq!(f.compute.insert_count("address"), 2);

    // requestId: a retry answers the first operation and creates nothing.
    let rid = uuid::Uuid::new_v4();
    let path = format!("regions/{R}/addresses?requestId={rid}");
    let (s1, op1) = f.call("POST", &path, Some(&json!({"name": "third"}))).await;
    let (s2, op2) = f.call("POST", &path, Some(&json!({"name": "third"}))).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(op1["name"], op2["name"]);
    assert_eq!(op1["clientOperationId"], rid.to_string());
    assert_eq!(f.compute.insert_count("address"), 3);

    // Progression and wait.
    f.compute.set_op_polls_to_done(3);
    let (_, op) = f
        .call(
            "POST",
            &format!("regions/{R}/addresses"),
            Some(&json!({"name": "fourth"})),
        )
        .await;
    let name = op["name"].as_str().unwrap().to_owned();
    let op_path = format!("regions/{R}/operations/{name}");
    for want in ["RUNNING", "RUNNING", "DONE", "DONE"] {
        assert_eq!(f.call("GET", &op_path, None).await.1["status"], want);
    }
    // Bad bodies.
    let (status, err) = f
        .call(
            "POST",
            &format!("regions/{R}/addresses"),
            Some(&json!({"name": "Bad_Name"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["errors"][0]["reason"], "invalid");
    let (status, _) = f
        .call(
            "POST",
            &format!("regions/{R}/addresses"),
            Some(&json!({"name": "x", "networkTier": "GOLD"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(f.compute.route_count(ComputeRoute::InsertAddress), 8);
    assert_eq!(f.compute.route_count(ComputeRoute::GetAddress), 2);
    assert_eq!(f.compute.route_count(ComputeRoute::GetRegionOperation), 5);
}

#[tokio::test]
async fn firewalls_and_global_operations() {
    let f = fixture().await;
    let body = json!({
        "name": "wa-https",
        "network": "global/networks/default",
        "direction": "INGRESS",
        "allowed": [{"IPProtocol": "tcp", "ports": ["443", "80"]}],
        "sourceRanges": ["0.0.0.0/0"],
        "targetTags": ["whatsapp"],
        "description": "WhatsApp API"
    });
    let (status, op) = f.call("POST", "global/firewalls", Some(&body)).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], "insert");
    assert!(op.get("zone").is_none() && op.get("region").is_none());
    assert_eq!(
        op["targetLink"],
        format!("{LINK_PREFIX}/projects/{P}/global/firewalls/wa-https")
    );
    let name = op["name"].as_str().unwrap().to_owned();
    assert_eq!(
        op["selfLink"],
        format!("{LINK_PREFIX}/projects/{P}/global/operations/{name}")
    );
    let (_, op) = f
        .call("GET", &format!("global/operations/{name}"), None)
        .await;
    assert_eq!(op["status"], "DONE");

    let (status, fw) = f.call("GET", "global/firewalls/wa-https", None).await;
    assert_eq!(status, 200);
    assert_eq!(fw["kind"], "compute#firewall");
    assert_eq!(
        fw["network"],
        "https://www.googleapis.com/compute/v1/projects/proj/global/networks/default"
    );
    assert_eq!(fw["allowed"], body["allowed"]);
    assert_eq!(fw["sourceRanges"], body["sourceRanges"]);
    assert_eq!(fw["targetTags"], body["targetTags"]);
    assert_eq!(fw["description"], "WhatsApp API");
    assert_eq!(fw["direction"], "INGRESS");
    assert_eq!(fw["priority"], 1000);
    assert_eq!(fw["id"], op["targetId"]);
    assert_eq!(fw["selfLink"], op["targetLink"]);
    assert!(fw["creationTimestamp"].is_string());
    assert_eq!(f.compute.firewall(P, "wa-https").unwrap(), fw);
    assert_eq!(f.compute.insert_count("firewall"), 1);

    let (status, err) = f.call("POST", "global/firewalls", Some(&body)).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["errors"][0]["reason"], "alreadyExists");
    assert_eq!(
        err["error"]["message"],
        format!("The resource 'projects/{P}/global/firewalls/wa-https' already exists")
    );
    let (status, err) = f.call("GET", "global/firewalls/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["errors"][0]["reason"], "notFound");

    // Full URLs of the network are kept (in the real form); no rules is refused.
    let (status, _) = f
            .call(
                "POST",
                "global/firewalls",
                Some(&json!({"name": "other", "network": format!("{}/compute/v1/projects/{P}/global/networks/default", f.compute.url()), "allowed": [{"IPProtocol": "tcp"}]})),
            )
            .await;
    assert_eq!(status, 200);
    assert_eq!(
        f.compute.firewall(P, "other").unwrap()["network"],
        fw["network"]
    );
    let (status, _) = f
        .call("POST", "global/firewalls", Some(&json!({"name": "none"})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(f.compute.insert_count("firewall"), 2);
    f.compute.seed_firewall(
        P,
        json!({"name": "seeded", "allowed": [{"IPProtocol": "icmp"}]}),
    );
    assert_eq!(f.call("GET", "global/firewalls/seeded", None).await.0, 200);
    assert_eq!(f.compute.insert_count("firewall"), 2);
}

#[tokio::test]
async fn scripted_errors_on_inserts_and_reads() {
    let f = fixture().await;
    f.compute.fail_next(ComputeRoute::InsertAddress, 1, 409);
    let (status, err) = f
        .call(
            "POST",
            &format!("regions/{R}/addresses"),
            Some(&json!({"name": "wa-ip"})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        err["error"]["message"],
        format!("The resource 'projects/{P}/regions/{R}/addresses/wa-ip' already exists")
    );
    f.compute.fail_next(ComputeRoute::InsertInstance, 1, 403);
    let (status, err) = f
        .call(
            "POST",
            &format!("zones/{ZC}/instances"),
            Some(&instance_body("wa", "x")),
        )
        .await;
    assert_eq!(status, 403);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("compute.instances.create"));
    let (_, op) = f
        .call(
            "POST",
            &format!("regions/{R}/addresses"),
            Some(&json!({"name": "wa-ip"})),
        )
        .await;
    let name = op["name"].as_str().unwrap().to_owned();
    f.compute
        .fail_next(ComputeRoute::GetRegionOperation, 1, 503);
    let op_path = format!("regions/{R}/operations/{name}");
    assert_eq!(f.call("GET", &op_path, None).await.0, 503);
    assert_eq!(f.call("GET", &op_path, None).await.1["status"], "DONE");
    f.compute.fail_always(ComputeRoute::GetFirewall, 500);
    assert_eq!(f.call("GET", "global/firewalls/x", None).await.0, 500);
    f.compute.clear_faults();
    assert_eq!(f.call("GET", "global/firewalls/x", None).await.0, 404);
    assert_eq!(f.compute.insert_count("address"), 1);
    // Unauthenticated.
    let resp = f
        .client
        .get(format!(
            "{}/compute/v1/projects/{P}/global/firewalls/x",
            f.compute.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
