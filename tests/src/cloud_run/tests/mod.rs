use serde_json::json;

use super::*;

/// Stores a ready service (generation 1, `CONDITION_SUCCEEDED`, with a `uri`), no
/// operation, no checks.
fn add_service(run: &FakeCloudRun, name: &str, service: Value) {
    let mut spec = service.as_object().map(user_fields).unwrap_or_default();
    fill_defaults(&mut spec);
    let mut svc = new_service(name, spec);
    svc.observed_generation = 1;
    svc.latest_ready = Some(svc.latest_created.clone());
    svc.ready_once = true;
    svc.condition = ("CONDITION_SUCCEEDED", None, svc.created);
    lock(&run.state).services.insert(name.to_owned(), svc);
}

/// Ends every pending operation now (as if polled to the end).
fn finish_operations(run: &FakeCloudRun) {
    let mut st = lock(&run.state);
    for idx in 0..st.operations.len() {
        st.finish(idx);
    }
}
use crate::rest::send;

const PARENT: &str = "projects/p/locations/europe-west1";
const NAME: &str = "projects/p/locations/europe-west1/services/keepalive";

async fn fixture() -> (FakeCloudRun, String, reqwest::Client) {
    let tokens = TokenRegistry::new();
    let token = tokens.issue();
    (
        FakeCloudRun::start(tokens).await,
        token,
        reqwest::Client::new(),
    )
}

fn service_body() -> Value {
    json!({
        "template": {
            "containers": [{
                "image": "europe-docker.pkg.dev/p/r/keepalive:1",
                "env": [
                    {"name": "RUST_LOG", "value": "info"},
                    {"name": "WA_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "wa", "version": "latest"}}}
                ],
                "resources": {"limits": {"memory": "128Mi", "cpu": "1"}},
                "ports": [{"containerPort": 8080}]
            }],
            "serviceAccount": "keepalive@p.iam.gserviceaccount.com",
            "timeout": "300s",
            "maxInstanceRequestConcurrency": 80,
            "scaling": {"minInstanceCount": 0, "maxInstanceCount": 1}
        },
        "ingress": "INGRESS_TRAFFIC_ALL",
        "labels": {"app": "keepalive"},
        "description": "WhatsApp keepalive"
    })
}

async fn create(
    run: &FakeCloudRun,
    token: &str,
    client: &reqwest::Client,
    body: Value,
) -> (u16, Value) {
    send(
        client,
        reqwest::Method::POST,
        format!("{}/v2/{PARENT}/services?serviceId=keepalive", run.url()),
        token,
        Some(body),
    )
    .await
}

async fn get(
    run: &FakeCloudRun,
    token: &str,
    client: &reqwest::Client,
    name: &str,
) -> (u16, Value) {
    send(
        client,
        reqwest::Method::GET,
        format!("{}/v2/{name}", run.url()),
        token,
        None,
    )
    .await
}

#[tokio::test]
async fn create_polls_to_done_and_the_service_gets_a_uri() {
    let (run, token, client) = fixture().await;
    let (status, op) = create(&run, &token, &client, service_body()).await;
    assert_eq!(status, 200);
    let op_name = op["name"].as_str().unwrap().to_owned();
    assert!(op_name.starts_with(&format!("{PARENT}/operations/")));
    assert_eq!(op["done"], false);
    assert_eq!(op["metadata"]["@type"], SERVICE_TYPE);
    assert_eq!(op["metadata"]["name"], NAME);
    assert!(op.get("response").is_none());

    // Reconciling: no uri yet.
    let (status, svc) = get(&run, &token, &client, NAME).await;
    assert_eq!(status, 200);
    assert_eq!(svc["reconciling"], true);
    assert!(svc.get("uri").is_none());
    assert!(svc.get("latestReadyRevision").is_none());
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_RECONCILING");

    let (status, op) = get(&run, &token, &client, &op_name).await;
    assert_eq!(status, 200);
    assert_eq!(op["done"], false);
    let (_, op) = get(&run, &token, &client, &op_name).await;
    assert_eq!(op["done"], true);
    assert!(op.get("error").is_none());
    let response = &op["response"];
    assert_eq!(response["@type"], SERVICE_TYPE);
    assert_eq!(response["uri"], "https://keepalive-abc123-ez.a.run.app");
    assert_eq!(response["reconciling"], false);

    let (_, svc) = get(&run, &token, &client, NAME).await;
    assert_eq!(svc["name"], NAME);
    assert_eq!(svc["uri"], "https://keepalive-abc123-ez.a.run.app");
    assert_eq!(svc["reconciling"], false);
    assert_eq!(svc["generation"], "1");
    assert_eq!(svc["observedGeneration"], "1");
    assert_eq!(
        svc["terminalCondition"],
        json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": svc["terminalCondition"]["lastTransitionTime"]})
    );
    assert_eq!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);
    assert!(svc["latestReadyRevision"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{NAME}/revisions/keepalive-00001-")));
    assert!(svc["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(svc["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(svc["createTime"].as_str().unwrap().ends_with('Z'));
    // What was sent, plus defaults.
    let container = &svc["template"]["containers"][0];
    assert_eq!(container["image"], "europe-docker.pkg.dev/p/r/keepalive:1");
    assert_eq!(
        container["env"],
        service_body()["template"]["containers"][0]["env"]
    );
    assert_eq!(
        container["resources"]["limits"],
        json!({"memory": "128Mi", "cpu": "1"})
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "http1", "containerPort": 8080}])
    );
    assert_eq!(svc["template"]["scaling"]["maxInstanceCount"], 1);
    assert_eq!(svc["labels"], json!({"app": "keepalive"}));
    assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_ALL");
    assert_eq!(svc["launchStage"], "GA");

    assert_eq!(run.services(), vec![NAME.to_owned()]);
    assert_eq!(run.service(NAME).unwrap()["uri"], svc["uri"]);
    assert_eq!(lock(&run.state).operations.len(), 1);

    let (status, err) = get(&run, &token, &client, &format!("{PARENT}/operations/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");
    let (status, err) = get(&run, &token, &client, &format!("{PARENT}/services/other")).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn duplicate_create_is_already_exists() {
    let (run, token, client) = fixture().await;
    assert_eq!(create(&run, &token, &client, service_body()).await.0, 200);
    let (status, err) = create(&run, &token, &client, service_body()).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], 409);
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(lock(&run.state).operations.len(), 1);
}

#[tokio::test]
async fn invalid_services_are_refused() {
    let (run, token, client) = fixture().await;
    let with = |pointer: &str, value: Value| {
        let mut b = service_body();
        *b.pointer_mut(pointer).unwrap() = value;
        b
    };
    for body in [
        with("/template/timeout", json!("0s")),
        with("/template/timeout", json!("3601s")),
        with("/template/timeout", json!("5m")),
        with(
            "/template/containers/0/resources/limits/memory",
            json!("512MB"),
        ),
        with("/template/containers/0/image", json!("")),
        with("/template/containers", json!([])),
        with("/ingress", json!("EVERYONE")),
        with(
            "/template/scaling",
            json!({"minInstanceCount": 3, "maxInstanceCount": 1}),
        ),
    ] {
        let (status, err) = create(&run, &token, &client, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    }
    for id in [
        "",
        "Keepalive",
        "1keepalive",
        "keep_alive",
        "keepalive-",
        &"k".repeat(50),
    ] {
        let (status, err) = send(
            &client,
            reqwest::Method::POST,
            format!("{}/v2/{PARENT}/services?serviceId={id}", run.url()),
            &token,
            Some(service_body()),
        )
        .await;
        assert_eq!(status, 400, "{id}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    }
    let (status, _) = send(
        &client,
        reqwest::Method::POST,
        format!("{}/v2/{PARENT}/services", run.url()),
        &token,
        Some(service_body()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(run.services().is_empty());
    // The longest valid id and other units are fine.
    let body = with(
        "/template/containers/0/resources/limits/memory",
        json!("1Gi"),
    );
    let (status, _) = send(
        &client,
        reqwest::Method::POST,
        format!(
            "{}/v2/{PARENT}/services?serviceId={}",
            run.url(),
            "k".repeat(49)
        ),
        &token,
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn iam_policy_set_then_get() {
    let (run, token, client) = fixture().await;
    add_service(&run, NAME, service_body());
    let url = |verb: &str| format!("{}/v2/{NAME}:{verb}", run.url());
    let (status, empty) = send(
        &client,
        reqwest::Method::GET,
        url("getIamPolicy"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(empty, json!({"etag": "ACAB"}));
    assert_eq!(run.iam_policy(NAME), None);

    let bindings = json!([{"role": "roles/run.invoker", "members": ["serviceAccount:x@p.iam.gserviceaccount.com"]}]);
    let (status, set) = send(
        &client,
        reqwest::Method::POST,
        url("setIamPolicy"),
        &token,
        Some(json!({"policy": {"bindings": bindings, "etag": "ACAB"}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(set["bindings"], bindings);
    assert_eq!(set["version"], 1);
    let etag = set["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag, "ACAB");
    assert_eq!(run.iam_policy(NAME), Some(set.clone()));

    let (_, got) = send(
        &client,
        reqwest::Method::GET,
        url("getIamPolicy"),
        &token,
        None,
    )
    .await;
    assert_eq!(got, set);
    let (_, got) = send(
        &client,
        reqwest::Method::POST,
        url("getIamPolicy"),
        &token,
        Some(json!({"options": {"requestedPolicyVersion": 3}})),
    )
    .await;
    assert_eq!(got, set);
    // Percent-encoded verb separator.
    let (status, got) = send(
        &client,
        reqwest::Method::GET,
        format!("{}/v2/{NAME}%3AgetIamPolicy", run.url()),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got, set);

    // A stale etag is refused.
    let (status, err) = send(
        &client,
        reqwest::Method::POST,
        url("setIamPolicy"),
        &token,
        Some(json!({"policy": {"bindings": [], "etag": "ACAB"}})),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["status"], "ABORTED");

    for member in [
        "x@p.iam.gserviceaccount.com",
        "serviceaccount:x@p.iam.gserviceaccount.com",
        "user:",
        "everyone",
    ] {
        let (status, err) = send(
            &client,
            reqwest::Method::POST,
            url("setIamPolicy"),
            &token,
            Some(json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": [member]}]}})),
        )
        .await;
        assert_eq!(status, 400, "{member}");
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    }
    assert_eq!(run.iam_policy(NAME), Some(set.clone()));

    let (status, set2) = send(
        &client,
        reqwest::Method::POST,
        url("setIamPolicy"),
        &token,
        Some(json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers", "group:g@example.com", "domain:example.com", "user:u@example.com"]}], "etag": etag}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(set2["etag"], set["etag"]);

    let (status, err) = send(
        &client,
        reqwest::Method::POST,
        format!("{}/v2/{PARENT}/services/nope:setIamPolicy", run.url()),
        &token,
        Some(json!({"policy": {"bindings": bindings}})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn requests_need_a_valid_token() {
    let (run, _token, client) = fixture().await;
    add_service(&run, NAME, service_body());
    let resp = client
        .get(format!("{}/v2/{NAME}", run.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Request had invalid authentication credentials."));
    let (status, _) = get(&run, "ya29.unknown", &client, NAME).await;
    assert_eq!(status, 401);
    assert_eq!(run.requests().len(), 2);
    assert_eq!(run.requests()[0].path, format!("/v2/{NAME}"));
    run.clear_requests();
    assert!(run.requests().is_empty());
}

#[tokio::test]
async fn fail_next_answers_the_scripted_status_once() {
    let (run, token, client) = fixture().await;
    add_service(&run, NAME, service_body());
    run.fail_next(503);
    run.fail_next(429);
    let (status, err) = get(&run, &token, &client, NAME).await;
    assert_eq!(status, 503);
    assert_eq!(err["error"]["status"], "UNAVAILABLE");
    let (status, err) = get(&run, &token, &client, NAME).await;
    assert_eq!(status, 429);
    assert_eq!(err["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(get(&run, &token, &client, NAME).await.0, 200);
    run.fail_next(403);
    let (status, err) = create(&run, &token, &client, service_body()).await;
    assert_eq!(status, 403);
    assert_eq!(err["error"]["status"], "PERMISSION_DENIED");
    run.fail_always(500);
    assert_eq!(
        get(&run, &token, &client, NAME).await.1["error"]["status"],
        "INTERNAL"
    );
    assert_eq!(get(&run, &token, &client, NAME).await.0, 500);
    run.clear_failures();
    assert_eq!(get(&run, &token, &client, NAME).await.0, 200);
}

mod patch;
