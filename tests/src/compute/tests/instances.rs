//! Instances: get, reset, insert and boot, setMetadata.

use std::sync::Arc;

use super::*;

#[tokio::test]
async fn get_instance_and_404_and_auth() {
    let f = fixture().await;
    let started = OffsetDateTime::now_utc() - time::Duration::hours(3);
    let id = f.compute.add_instance(P, Z, "vm", "RUNNING", started);
    let (status, body) = f.get("instances/vm").await;
    assert_eq!(status, 200);
    assert_eq!(body["kind"], "compute#instance");
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["name"], "vm");
    assert_eq!(body["status"], "RUNNING");
    let ts = body["lastStartTimestamp"].as_str().unwrap();
    assert!(ts.ends_with("-08:00"));
    assert_eq!(
        parse_rfc3339(ts).unwrap().unix_timestamp(),
        started.unix_timestamp()
    );
    assert_eq!(
        body["networkInterfaces"][0]["accessConfigs"][0]["natIP"],
        "203.0.113.7"
    );
    assert!(body["zone"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/zones/{Z}")));

    let (status, body) = f.get("instances/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], 404);
    assert_eq!(
        body["error"]["message"],
        format!("The resource 'projects/{P}/zones/{Z}/instances/nope' was not found")
    );
    assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(body["error"]["errors"][0]["domain"], "global");

    let resp = f.client.get(f.url("instances/vm")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");
    let resp = f
        .client
        .get(f.url("instances/vm"))
        .bearer_auth("ya29.not-issued")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(f.compute.route_count(ComputeRoute::GetInstance), 4);
    assert_eq!(f.compute.requests().len(), 4);
}

#[tokio::test]
async fn reset_operation_lifecycle() {
    let f = fixture().await;
    let id = f
        .compute
        .add_instance(P, Z, "vm", "RUNNING", OffsetDateTime::now_utc());
    let before = f.compute.instance(P, Z, "vm").unwrap();
    let rid = uuid::Uuid::new_v4().to_string();
    let (status, op) = f.post(&format!("instances/vm/reset?requestId={rid}")).await;
    assert_eq!(status, 200);
    assert_eq!(op["kind"], "compute#operation");
    assert_eq!(op["operationType"], "reset");
    assert_eq!(op["status"], "PENDING");
    assert_eq!(op["targetId"], id.to_string());
    assert_eq!(op["clientOperationId"], rid);
    assert!(op["targetLink"]
        .as_str()
        .unwrap()
        .ends_with("/instances/vm"));
    let name = op["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("operation-"));
    let (_, op) = f.get(&format!("operations/{name}")).await;
    assert_eq!(op["status"], "DONE");
    assert!(op["endTime"].is_string());
    assert_eq!(f.compute.resets("vm"), 1);
    assert_eq!(f.compute.instance(P, Z, "vm").unwrap(), before);

    f.compute.set_op_polls_to_done(3);
    let (_, op) = f.post("instances/vm/reset").await;
    let name = op["name"].as_str().unwrap().to_owned();
    let (_, op) = f.get(&format!("operations/{name}")).await;
    assert_eq!(op["status"], "RUNNING");
    let (_, op) = f.get(&format!("operations/{name}")).await;
    assert_eq!(op["status"], "RUNNING");
    let (_, op) = f.get(&format!("operations/{name}")).await;
    assert_eq!(op["status"], "DONE");

    let (_, op) = f.post("instances/vm/reset").await;
    let name = op["name"].as_str().unwrap().to_owned();
    let (_, op) = f.post(&format!("operations/{name}/wait")).await;
    assert_eq!(op["status"], "DONE");
    assert_eq!(f.compute.resets("vm"), 3);

    let (status, body) = f.get("operations/operation-nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["errors"][0]["reason"], "notFound");

    let (status, _) = f.post("instances/vm/reset?requestId=not-a-uuid").await;
    assert_eq!(status, 400);

    // A VM that is not RUNNING is not reset.
    f.compute.set_status(P, Z, "vm", "TERMINATED");
    let (status, body) = f.post("instances/vm/reset").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["errors"][0]["reason"], "resourceNotReady");
    assert_eq!(f.compute.resets("vm"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_dedup_by_request_id_under_concurrency() {
    let f = Arc::new(fixture().await);
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let name = format!("vm{round}");
        f.compute
            .add_instance(P, Z, &name, "RUNNING", OffsetDateTime::now_utc());
        let same = format!("instances/{name}/reset?requestId={}", uuid::Uuid::new_v4());
        let (f1, f2, p1, p2) = (f.clone(), f.clone(), same.clone(), same);
        let a = tokio::spawn(async move { f1.post(&p1).await });
        let b = tokio::spawn(async move { f2.post(&p2).await });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!((a.0, b.0), (200, 200));
        assert_eq!(a.1["name"], b.1["name"]);
        assert_eq!(f.compute.resets(&name), 1, "round {round}");

        let p1 = format!("instances/{name}/reset?requestId={}", uuid::Uuid::new_v4());
        let p2 = format!("instances/{name}/reset?requestId={}", uuid::Uuid::new_v4());
        let (f1, f2) = (f.clone(), f.clone());
        let a = tokio::spawn(async move { f1.post(&p1).await });
        let b = tokio::spawn(async move { f2.post(&p2).await });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_ne!(a.1["name"], b.1["name"]);
        assert_eq!(f.compute.resets(&name), 3, "round {round}");
    }
    assert_eq!(f.compute.route_count(ComputeRoute::Reset), 4 * ROUNDS);
    assert_eq!(f.compute.total_resets(), 3 * ROUNDS);
}

#[tokio::test]
async fn instance_insert_boots_and_uses_the_address() {
    let f = fixture().await;
    f.call(
        "POST",
        &format!("regions/{R}/addresses"),
        Some(&json!({"name": "wa-ip"})),
    )
    .await;
    let ip = f.compute.address(P, R, "wa-ip").unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = instance_body("wa", &ip);
    let path = format!("zones/{ZC}/instances");
    let (status, op) = f.call("POST", &path, Some(&body)).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], "insert");
    assert_eq!(op["zone"], format!("{LINK_PREFIX}/projects/{P}/zones/{ZC}"));
    let self_link = format!("{LINK_PREFIX}/projects/{P}/zones/{ZC}/instances/wa");
    assert_eq!(op["targetLink"], self_link);
    let name = op["name"].as_str().unwrap().to_owned();
    let (_, op) = f
        .call("GET", &format!("zones/{ZC}/operations/{name}"), None)
        .await;
    assert_eq!(op["status"], "DONE");
    assert_eq!(f.compute.insert_count("instance"), 1);
    assert_eq!(f.compute.inserted_body(P, ZC, "wa").unwrap(), body);

    let get = format!("zones/{ZC}/instances/wa");
    let (_, vm) = f.call("GET", &get, None).await;
    assert_eq!(vm["status"], "PROVISIONING");
    assert!(vm.get("lastStartTimestamp").is_none());
    assert_eq!(vm["id"], op["targetId"]);
    assert_eq!(vm["selfLink"], self_link);
    assert_eq!(
        vm["machineType"],
        format!(
            "https://www.googleapis.com/compute/v1/projects/{P}/zones/{ZC}/machineTypes/e2-medium"
        )
    );
    let disk = &vm["disks"][0];
    assert_eq!(disk["boot"], true);
    assert_eq!(disk["autoDelete"], true);
    assert_eq!(
        disk["source"],
        format!("{LINK_PREFIX}/projects/{P}/zones/{ZC}/disks/wa")
    );
    assert_eq!(disk["deviceName"], "persistent-disk-0");
    assert_eq!(disk["diskSizeGb"], "20");
    assert!(disk["licenses"][0]
        .as_str()
        .unwrap()
        .ends_with("/cos-cloud/global/licenses/cos"));
    assert!(disk.get("initializeParams").is_none());
    let nic = &vm["networkInterfaces"][0];
    assert_eq!(nic["accessConfigs"][0]["natIP"], ip);
    assert_eq!(
        nic["network"],
        format!("{LINK_PREFIX}/projects/{P}/global/networks/default")
    );
    assert!(vm["metadata"]["fingerprint"].as_str().unwrap().len() >= 8);
    assert_eq!(vm["metadata"]["items"], body["metadata"]["items"]);
    assert_eq!(vm["tags"]["items"], json!(["whatsapp"]));
    assert!(vm["tags"]["fingerprint"].is_string());
    assert_eq!(vm["serviceAccounts"], body["serviceAccounts"]);
    assert_eq!(vm["labels"], json!({"app": "whatsapp"}));

    let (_, vm) = f.call("GET", &get, None).await;
    assert_eq!(vm["status"], "STAGING");
    assert!(vm.get("lastStartTimestamp").is_none());
    let (_, vm) = f.call("GET", &get, None).await;
    assert_eq!(vm["status"], "RUNNING");
    let started = parse_rfc3339(vm["lastStartTimestamp"].as_str().unwrap()).unwrap();
    assert!((OffsetDateTime::now_utc() - started).whole_seconds().abs() < 60);
    assert_eq!(f.call("GET", &get, None).await.1["status"], "RUNNING");

    // The address is now in use by the instance.
    let (_, a) = f
        .call("GET", &format!("regions/{R}/addresses/wa-ip"), None)
        .await;
    assert_eq!(a["status"], "IN_USE");
    assert_eq!(a["users"], json!([self_link]));

    // Duplicate name: 409, nothing new.
    let (status, err) = f.call("POST", &path, Some(&body)).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["errors"][0]["reason"], "alreadyExists");
    assert_eq!(
        err["error"]["message"],
        format!("The resource 'projects/{P}/zones/{ZC}/instances/wa' already exists")
    );
    // A natIP that is not a reserved address of the region is refused.
    let (status, err) = f
        .call("POST", &path, Some(&instance_body("wa2", "192.0.2.1")))
        .await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("natIP"));
    // A machine type of another zone is refused, and a missing one.
    let mut bad = instance_body("wa3", &ip);
    bad["machineType"] = json!("zones/us-central1-a/machineTypes/e2-medium");
    assert_eq!(f.call("POST", &path, Some(&bad)).await.0, 400);
    bad.as_object_mut().unwrap().remove("machineType");
    assert_eq!(f.call("POST", &path, Some(&bad)).await.0, 400);
    assert_eq!(f.compute.insert_count("instance"), 1);

    // Boot polls 0: RUNNING at once. No natIP given: an ephemeral address.
    f.compute.set_instance_boot_polls(0);
    let mut eph = instance_body("eph", &ip);
    eph["networkInterfaces"][0]["accessConfigs"][0]
        .as_object_mut()
        .unwrap()
        .remove("natIP");
    assert_eq!(f.call("POST", &path, Some(&eph)).await.0, 200);
    let vm = f.compute.instance(P, ZC, "eph").unwrap();
    assert_eq!(vm["status"], "RUNNING");
    assert!(vm["lastStartTimestamp"].is_string());
    let eph_ip = vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
        .as_str()
        .unwrap();
    assert!(!eph_ip.is_empty() && eph_ip != ip);
    assert_eq!(f.compute.insert_count("instance"), 2);

    // Removing the instance frees the address.
    f.compute.remove_instance(P, ZC, "wa");
    assert_eq!(
        f.compute.address(P, R, "wa-ip").unwrap()["status"],
        "RESERVED"
    );
    // A seeded instance (not counted) marks a seeded address IN_USE.
    let seeded_ip = f.compute.seed_address(P, R, "seed-ip", None);
    f.compute
        .seed_instance(P, ZC, instance_body("seeded", &seeded_ip));
    assert_eq!(
        f.compute.instance(P, ZC, "seeded").unwrap()["status"],
        "RUNNING"
    );
    assert_eq!(
        f.compute.address(P, R, "seed-ip").unwrap()["status"],
        "IN_USE"
    );
    assert_eq!(f.compute.insert_count("instance"), 2);
    assert_eq!(f.compute.route_count(ComputeRoute::InsertInstance), 6);
}

#[tokio::test]
async fn set_metadata_checks_the_fingerprint() {
    let f = fixture().await;
    f.compute.set_instance_boot_polls(0);
    let ip = f.compute.seed_address(P, R, "wa-ip", None);
    f.call(
        "POST",
        &format!("zones/{ZC}/instances"),
        Some(&instance_body("wa", &ip)),
    )
    .await;
    let get = format!("zones/{ZC}/instances/wa");
    let fp = f.call("GET", &get, None).await.1["metadata"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let set = format!("zones/{ZC}/instances/wa/setMetadata");
    let items = json!([{"key": "WA_API_VERSION", "value": "v2.53.2"}]);
    let (status, err) = f
        .call(
            "POST",
            &set,
            Some(&json!({"fingerprint": "wrong=", "items": items})),
        )
        .await;
    assert_eq!(status, 412);
    assert_eq!(err["error"]["errors"][0]["reason"], "conditionNotMet");
    let (status, _) = f.call("POST", &set, Some(&json!({"items": items}))).await;
    assert_eq!(status, 412);
    let (status, op) = f
        .call(
            "POST",
            &set,
            Some(&json!({"fingerprint": fp, "items": items})),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], "setMetadata");
    let vm = f.call("GET", &get, None).await.1;
    assert_eq!(vm["metadata"]["items"], items);
    assert_ne!(vm["metadata"]["fingerprint"], fp);
    assert_eq!(
        f.compute
            .metadata_value(P, ZC, "wa", "WA_API_VERSION")
            .as_deref(),
        Some("v2.53.2")
    );
    // The old fingerprint is stale now.
    let (status, _) = f
        .call("POST", &set, Some(&json!({"fingerprint": fp, "items": []})))
        .await;
    assert_eq!(status, 412);
    // Duplicate keys are refused.
    let fp2 = vm["metadata"]["fingerprint"].clone();
    let (status, _) = f
            .call(
                "POST",
                &set,
                Some(&json!({"fingerprint": fp2, "items": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]})),
            )
            .await;
    assert_eq!(status, 400);
    assert_eq!(
        f.call(
            "POST",
            &format!("zones/{ZC}/instances/nope/setMetadata"),
            Some(&json!({}))
        )
        .await
        .0,
        404
    );
    assert_eq!(f.compute.route_count(ComputeRoute::SetMetadata), 6);
}

#[tokio::test]
async fn a_slow_boot_can_be_shortened() {
    let f = fixture().await;
    f.compute.set_instance_boot_polls(100);
    let ip = f.compute.seed_address(P, R, "wa-ip", None);
    let path = format!("zones/{ZC}/instances");
    assert_eq!(
        f.call("POST", &path, Some(&instance_body("wa", &ip)))
            .await
            .0,
        200
    );
    let get = format!("zones/{ZC}/instances/wa");
    assert_eq!(f.call("GET", &get, None).await.1["status"], "PROVISIONING");
    assert_eq!(f.call("GET", &get, None).await.1["status"], "STAGING");
    f.compute.set_instance_boot_polls(0);
    assert_eq!(f.call("GET", &get, None).await.1["status"], "RUNNING");
}
