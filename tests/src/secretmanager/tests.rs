//! The fake against its API: versions destroyed for good and once, CRC32C, access, create,
//! add and get.

use super::*;

async fn fixture() -> (FakeSecretManager, String, reqwest::Client) {
    let tokens = TokenRegistry::new();
    let token = tokens.issue();
    (
        FakeSecretManager::start(tokens).await,
        token,
        reqwest::Client::new(),
    )
}

#[tokio::test]
async fn a_version_is_destroyed_for_good_and_once() {
    let (sm, token, client) = fixture().await;
    sm.put("projects/p/secrets/pw", "one");
    sm.put("projects/p/secrets/pw", "two");
    let url = format!("{}/v1/projects/p/secrets/pw/versions/2:destroy", sm.url());
    let destroy = || {
        client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
    };
    assert_eq!(destroy().await.unwrap().status(), 200);
    assert_eq!(sm.version_states("p", "pw"), ["ENABLED", "DESTROYED"]);
    assert_eq!(sm.get_latest("p", "pw").as_deref(), Some("one"));
    assert_eq!(destroy().await.unwrap().status(), 400);
}

#[test]
fn crc32c_known_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[tokio::test]
async fn access_versions() {
    let (sm, token, client) = fixture().await;
    assert_eq!(
        sm.put("projects/p/secrets/wa", "first"),
        "projects/p/secrets/wa/versions/1"
    );
    assert_eq!(
        sm.put("projects/p/secrets/wa", "second"),
        "projects/p/secrets/wa/versions/2"
    );
    let access = |v: &str| {
        client
            .get(format!(
                "{}/v1/projects/p/secrets/wa/versions/{v}:access",
                sm.url()
            ))
            .bearer_auth(&token)
            .send()
    };
    let resp = access("latest").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["name"], "projects/p/secrets/wa/versions/2");
    assert_eq!(
        b64()
            .decode(body["payload"]["data"].as_str().unwrap())
            .unwrap(),
        b"second"
    );
    assert_eq!(body["payload"]["dataCrc32c"], crc32c(b"second").to_string());
    let body: Value = access("1").await.unwrap().json().await.unwrap();
    assert_eq!(body["name"], "projects/p/secrets/wa/versions/1");

    let resp = access("7").await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client
        .get(format!(
            "{}/v1/projects/p/secrets/nope/versions/latest:access",
            sm.url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    assert_eq!(
        body["error"]["message"],
        "Secret [projects/p/secrets/nope] not found or has no versions."
    );

    let resp = client
        .get(format!(
            "{}/v1/projects/p/secrets/wa/versions/latest:access",
            sm.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(sm.access_count(), 2);

    sm.set_version_state("projects/p/secrets/wa/versions/2", "DISABLED");
    let body: Value = access("latest").await.unwrap().json().await.unwrap();
    assert_eq!(body["name"], "projects/p/secrets/wa/versions/1");
    assert_eq!(access("2").await.unwrap().status(), 400);

    sm.fail_next(1, 503);
    assert_eq!(access("1").await.unwrap().status(), 503);
    assert_eq!(access("1").await.unwrap().status(), 200);
}

#[tokio::test]
async fn create_add_and_get() {
    let (sm, token, client) = fixture().await;
    let create = || {
        client
            .post(format!("{}/v1/projects/p/secrets?secretId=pw", sm.url()))
            .bearer_auth(&token)
            .json(&json!({"replication": {"automatic": {}}}))
            .send()
    };
    let resp = create().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["name"], "projects/p/secrets/pw");
    let resp = create().await.unwrap();
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], "ALREADY_EXISTS");

    let resp = client
        .post(format!("{}/v1/projects/p/secrets/pw:addVersion", sm.url()))
        .bearer_auth(&token)
        .json(&json!({"payload": {"data": b64().encode("hunter2")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["name"], "projects/p/secrets/pw/versions/1");
    assert_eq!(body["state"], "ENABLED");
    assert_eq!(sm.get_latest("p", "pw").as_deref(), Some("hunter2"));

    let resp = client
        .post(format!(
            "{}/v1/projects/p/secrets/missing:addVersion",
            sm.url()
        ))
        .bearer_auth(&token)
        .json(&json!({"payload": {"data": b64().encode("x")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let resp = client
        .get(format!("{}/v1/projects/p/secrets/pw", sm.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(format!("{}/v1/projects/p/secrets/missing", sm.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(sm.version_count("p", "pw"), 1);
}
