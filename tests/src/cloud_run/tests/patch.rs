//! Patching: the spec replaced or masked, generations and revisions, scripted operations.

use serde_json::json;

use super::*;

#[tokio::test]
async fn patch_replaces_the_spec_and_bumps_the_generation() {
    let (run, token, client) = fixture().await;
    add_service(&run, NAME, service_body());
    let before = run.service(NAME).unwrap();
    assert_eq!(before["reconciling"], false);
    assert_eq!(before["uri"], "https://keepalive-abc123-ez.a.run.app");

    let mut body = service_body();
    body["template"]["containers"][0]["image"] = json!("europe-docker.pkg.dev/p/r/keepalive:2");
    body["labels"] = json!({"app": "changed"});
    let (status, op) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{}/v2/{NAME}?updateMask=template", run.url()),
        &token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(op["done"], false);
    let svc = run.service(NAME).unwrap();
    assert_eq!(svc["generation"], "2");
    assert_eq!(svc["reconciling"], true);
    // Already served: the uri stays while the new revision rolls out.
    assert_eq!(svc["uri"], before["uri"]);
    assert_eq!(svc["latestReadyRevision"], before["latestReadyRevision"]);
    assert_eq!(
        svc["template"]["containers"][0]["image"],
        "europe-docker.pkg.dev/p/r/keepalive:2"
    );
    // Not in the mask.
    assert_eq!(svc["labels"], json!({"app": "keepalive"}));
    finish_operations(&run);
    let svc = run.service(NAME).unwrap();
    assert_eq!(svc["reconciling"], false);
    assert_eq!(svc["observedGeneration"], "2");
    assert!(svc["latestReadyRevision"]
        .as_str()
        .unwrap()
        .contains("/revisions/keepalive-00002-"));

    // Without a mask, everything is replaced.
    let (status, _) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{}/v2/{NAME}", run.url()),
        &token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        run.service(NAME).unwrap()["labels"],
        json!({"app": "changed"})
    );
    assert_eq!(run.service(NAME).unwrap()["generation"], "3");

    // Validated like a create.
    let mut bad = body.clone();
    bad["template"]["timeout"] = json!("4000s");
    let (status, _) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{}/v2/{NAME}", run.url()),
        &token,
        Some(bad),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(run.service(NAME).unwrap()["generation"], "3");

    let other = format!("{PARENT}/services/other");
    let (status, err) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{}/v2/{other}", run.url()),
        &token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");
    let (status, op) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{}/v2/{other}?allowMissing=true", run.url()),
        &token,
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(op["metadata"]["name"], other);
    assert_eq!(run.service(&other).unwrap()["generation"], "1");
}

#[tokio::test]
async fn a_new_revision_only_when_the_template_changes() {
    let (run, token, client) = fixture().await;
    run.set_operation_polls(0);
    run.fail_operation_next("Revision 'keepalive-00001-abc' is not ready: image not found");
    let (_, op) = create(&run, &token, &client, service_body()).await;
    assert_eq!(op["error"]["code"], 3);
    let first = run.service(NAME).unwrap()["latestCreatedRevision"].clone();
    let patch = |body: Value| {
        let (client, token, url) = (client.clone(), token.clone(), run.url());
        async move {
            send(
                &client,
                reqwest::Method::PATCH,
                format!("{url}/v2/{NAME}"),
                &token,
                Some(body),
            )
            .await
        }
    };

    // The same template again: no new revision, and the failed one stays failed.
    let (status, op) = patch(service_body()).await;
    assert_eq!(status, 200);
    assert_eq!(
        op["error"]["message"],
        "Revision 'keepalive-00001-abc' is not ready: image not found"
    );
    let svc = run.service(NAME).unwrap();
    assert_eq!(svc["latestCreatedRevision"], first);
    assert_eq!(svc["generation"], "1");
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");

    // A revision name of its own makes a new revision of the same spec, which succeeds.
    let mut named = service_body();
    named["template"]["revision"] = json!("keepalive-r1");
    let (status, op) = patch(named.clone()).await;
    assert_eq!(status, 200);
    assert!(op.get("error").is_none(), "{op}");
    let svc = run.service(NAME).unwrap();
    assert_eq!(
        svc["latestCreatedRevision"],
        format!("{NAME}/revisions/keepalive-r1")
    );
    assert_eq!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    assert_eq!(svc["generation"], "2");
    assert!(svc.get("uri").is_some());

    // Sent again (a retried PATCH): nothing new, nothing failed.
    let (status, op) = patch(named.clone()).await;
    assert_eq!(status, 200);
    assert!(op.get("error").is_none(), "{op}");
    assert_eq!(run.service(NAME).unwrap()["generation"], "2");

    // The same name for another template is refused; a name not of this service too.
    let mut reused = named.clone();
    reused["template"]["containers"][0]["image"] = json!("europe-docker.pkg.dev/p/r/keepalive:2");
    reused["template"]["timeout"] = json!("60s");
    let mut other = service_body();
    other["template"]["revision"] = json!("keepalive-r2");
    patch(other).await;
    let (status, err) = patch(reused).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    for bad in ["other-r1", "keepalive-", "keepalive-R1", "keepalive"] {
        let mut b = service_body();
        b["template"]["revision"] = json!(bad);
        let (status, err) = patch(b).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("template.revision"));
    }
    assert_eq!(
        run.service(NAME).unwrap()["latestCreatedRevision"],
        format!("{NAME}/revisions/keepalive-r2")
    );
}

#[tokio::test]
async fn operation_polls_and_failures_are_scripted() {
    let (run, token, client) = fixture().await;
    run.set_operation_polls(0);
    let (_, op) = create(&run, &token, &client, service_body()).await;
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["uri"],
        "https://keepalive-abc123-ez.a.run.app"
    );

    run.set_operation_polls(3);
    run.fail_operation_next(
        "Revision 'keepalive-00002-abc' is not ready and cannot serve traffic.",
    );
    let mut new_image = service_body();
    new_image["template"]["containers"][0]["image"] =
        json!("europe-docker.pkg.dev/p/r/keepalive:2");
    let (status, op) = send(
        &client,
        reqwest::Method::PATCH,
        format!("{}/v2/{NAME}", run.url()),
        &token,
        Some(new_image),
    )
    .await;
    assert_eq!(status, 200);
    let op_name = op["name"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(get(&run, &token, &client, &op_name).await.1["done"], false);
    }
    let (_, op) = get(&run, &token, &client, &op_name).await;
    assert_eq!(op["done"], true);
    assert_eq!(op["error"]["code"], 3);
    assert_eq!(
        op["error"]["message"],
        "Revision 'keepalive-00002-abc' is not ready and cannot serve traffic."
    );
    assert!(op.get("response").is_none());
    let svc = run.service(NAME).unwrap();
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
    assert_eq!(svc["reconciling"], false);
    assert_eq!(svc["generation"], "2");
    assert_ne!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);
    // Still served by the old revision.
    assert!(svc.get("uri").is_some());

    // A failed create leaves a service that was never ready.
    run.set_operation_polls(1);
    run.fail_operation_next("boom");
    let other = format!("{PARENT}/services/other");
    let (_, op) = send(
        &client,
        reqwest::Method::POST,
        format!("{}/v2/{PARENT}/services?serviceId=other", run.url()),
        &token,
        Some(service_body()),
    )
    .await;
    let op_name = op["name"].as_str().unwrap().to_owned();
    get(&run, &token, &client, &op_name).await;
    let (_, op) = get(&run, &token, &client, &op_name).await;
    assert_eq!(op["error"], json!({"code": 3, "message": "boom"}));
    let svc = run.service(&other).unwrap();
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
    assert_eq!(svc["terminalCondition"]["message"], "boom");
    assert!(svc.get("uri").is_none());
}
