use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn login(wa: &FakeWhatsApp, user: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{}{LOGIN_PATH}", wa.url()))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

async fn token(wa: &FakeWhatsApp) -> String {
    let body: Value = login(wa, "admin", "S3cret!pass")
        .await
        .json()
        .await
        .unwrap();
    body["users"][0]["token"].as_str().unwrap().to_owned()
}

async fn get(wa: &FakeWhatsApp, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", wa.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_ok_and_401() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    let resp = login(&wa, "admin", "S3cret!pass").await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("S3cret!pass"));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body["users"][0]["token"].as_str().unwrap().len() >= 32);
    assert!(body["users"][0]["expires_after"].is_string());

    let resp = login(&wa, "admin", "wrong").await;
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("S3cret!pass") && !text.contains("wrong"));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["errors"][0]["code"], 1005);
    assert_eq!(body["errors"][0]["title"], "Access denied");
    assert_eq!(body["meta"]["version"], API_VERSION);

    let resp = client()
        .post(format!("{}{LOGIN_PATH}", wa.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    assert_eq!(wa.login_count(), 3);
    assert_eq!(wa.successful_login_count(), 1);
    assert_eq!(wa.issued_tokens().len(), 1);
    assert_eq!(wa.requests().len(), 3);
    assert!(wa.requests()[0]
        .header("authorization")
        .unwrap()
        .starts_with("Basic "));
}

#[tokio::test]
async fn probes_need_a_bearer_token() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    let resp = client()
        .get(format!("{}/v1/health", wa.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1005);
    assert_eq!(get(&wa, "/v1/health", "made-up").await.status(), 401);

    let token = token(&wa).await;
    for (method, path) in PROBES {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client()
            .request(m, format!("{}{path}", wa.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["meta"]["api_status"], "stable", "{path}");
        assert_eq!(
            wa.count(method, path),
            1 + usize::from(path == HEALTH_PATH) * 2
        );
    }
    let body: Value = get(&wa, "/v1/settings/application", &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(body["settings"]["application"].is_object());

    let resp = get(&wa, "/v1/nope", &token).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1006);
}

#[tokio::test]
async fn health_shapes() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    let token = token(&wa).await;
    let body: Value = get(&wa, HEALTH_PATH, &token).await.json().await.unwrap();
    assert_eq!(body["health"]["gateway_status"], "connected");

    wa.set_health(Health::Nodes(vec![
        ("wa-1:primary_master", "disconnected", "primary_master"),
        ("wa-2:coreapp", "connected", "coreapp"),
    ]));
    let body: Value = get(&wa, HEALTH_PATH, &token).await.json().await.unwrap();
    assert_eq!(
        body["health"]["wa-1:primary_master"],
        json!({"gateway_status": "disconnected", "role": "primary_master"})
    );
    assert_eq!(
        body["health"]["wa-2:coreapp"]["gateway_status"],
        "connected"
    );

    wa.set_health(Health::Raw(json!({"health": 42})));
    let body: Value = get(&wa, HEALTH_PATH, &token).await.json().await.unwrap();
    assert_eq!(body, json!({"health": 42}));
}

#[tokio::test]
async fn hang_actually_hangs() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    let token = token(&wa).await;
    wa.set_behaviour("/v1/stats/db", Behaviour::Hang);
    let started = std::time::Instant::now();
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .get(format!("{}/v1/stats/db", wa.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Other paths are unaffected.
    assert_eq!(get(&wa, "/v1/stats/app", &token).await.status(), 200);
    wa.set_behaviour("/v1/stats/db", Behaviour::Normal);
    assert_eq!(get(&wa, "/v1/stats/db", &token).await.status(), 200);
}

#[tokio::test]
async fn fail_next_counts_down() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    wa.fail_next(LOGIN_PATH, 2, Behaviour::Status(503));
    let resp = login(&wa, "admin", "S3cret!pass").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1011);
    assert_eq!(login(&wa, "admin", "S3cret!pass").await.status(), 503);
    assert_eq!(login(&wa, "admin", "S3cret!pass").await.status(), 200);
    assert_eq!(wa.login_count(), 3);
    assert_eq!(wa.successful_login_count(), 1);

    let token = token(&wa).await;
    wa.fail_next("/v1/health", 1, Behaviour::BadJson);
    wa.fail_next("/v1/health", 1, Behaviour::Json(200, json!({"users": []})));
    let resp = get(&wa, HEALTH_PATH, &token).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "not json{");
    let body: Value = get(&wa, HEALTH_PATH, &token).await.json().await.unwrap();
    assert_eq!(body, json!({"users": []}));
    let body: Value = get(&wa, HEALTH_PATH, &token).await.json().await.unwrap();
    assert_eq!(body["health"]["gateway_status"], "connected");
}

#[tokio::test]
async fn delay_latency_and_close() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    let token = token(&wa).await;
    wa.set_latency(Duration::from_millis(50));
    wa.fail_next(
        "/v1/stats/app",
        1,
        Behaviour::Delay(Duration::from_millis(100)),
    );
    let started = std::time::Instant::now();
    assert_eq!(get(&wa, "/v1/stats/app", &token).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    wa.clear_behaviours();

    wa.fail_next("/v1/stats/app", 1, Behaviour::Close);
    let err = client()
        .get(format!("{}/v1/stats/app", wa.url()))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(err.is_err());
    assert_eq!(get(&wa, "/v1/stats/app", &token).await.status(), 200);
}

#[tokio::test]
async fn stop_refuses_and_restart_serves_again() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    wa.stop().await;
    let err = client()
        .post(format!("{}{LOGIN_PATH}", wa.url()))
        .basic_auth("admin", Some("S3cret!pass"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    wa.restart().await.unwrap();
    assert_eq!(login(&wa, "admin", "S3cret!pass").await.status(), 200);
}

/// A client trusting only `pem`, with hostname checks on; `resolve` pins a name to the
/// fake's address.
fn pinned_client(pem: &str, resolve: Option<(&str, std::net::SocketAddr)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .danger_accept_invalid_hostnames(false);
    if let Some((name, addr)) = resolve {
        b = b.resolve(name, addr);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn tls_fake_is_reachable_with_its_certificate_as_only_root() {
    let wa = FakeWhatsApp::start_tls("admin", "S3cret!pass").await;
    assert!(wa.is_tls());
    let url = wa.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let pem = wa.certificate_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(!wa.certificate_der().is_empty());

    // IP SAN 127.0.0.1.
    let client = pinned_client(&pem, None);
    let resp = client
        .post(format!("{url}{LOGIN_PATH}"))
        .basic_auth("admin", Some("S3cret!pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let token = body["users"][0]["token"].as_str().unwrap().to_owned();
    let resp = client
        .get(format!("{url}{HEALTH_PATH}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The CA endpoint answers the certificate, without authentication.
    let resp = client
        .get(format!("{url}{CA_CERT_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(resp.text().await.unwrap(), pem);

    // DNS SAN localhost.
    let addr = wa.server.addr();
    let by_name = pinned_client(&pem, Some(("localhost", addr)));
    let resp = by_name
        .get(format!("https://localhost:{}{CA_CERT_PATH}", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A name the certificate does not carry is refused.
    let other = pinned_client(&pem, Some(("wa.example.test", addr)));
    let err = other
        .get(format!(
            "https://wa.example.test:{}{CA_CERT_PATH}",
            addr.port()
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // Without the certificate as a root: refused. Plain HTTP: no answer.
    let err = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{url}{CA_CERT_PATH}"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let plain = url.replacen("https://", "http://", 1);
    assert!(super::tests::client()
        .get(format!("{plain}{CA_CERT_PATH}"))
        .send()
        .await
        .is_err());
    assert_eq!(wa.count("GET", CA_CERT_PATH), 2);
    assert_eq!(wa.successful_login_count(), 1);
}

#[tokio::test]
async fn rotated_certificate_is_refused_by_a_pinned_client() {
    let wa = FakeWhatsApp::start_tls("admin", "S3cret!pass").await;
    let url = wa.url();
    let old_pem = wa.certificate_pem();
    let old = pinned_client(&old_pem, None);
    // A kept-alive connection exists before the rotation.
    assert_eq!(
        old.get(format!("{url}{CA_CERT_PATH}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let new_pem = wa.rotate_certificate();
    wa.drop_connections().await;
    assert_ne!(new_pem, old_pem);
    assert_eq!(wa.certificate_pem(), new_pem);
    let err = old
        .get(format!("{url}{CA_CERT_PATH}"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    let new = pinned_client(&new_pem, None);
    let resp = new
        .get(format!("{url}{CA_CERT_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), new_pem);
    // The same port, the same users.
    let resp = new
        .post(format!("{url}{LOGIN_PATH}"))
        .basic_auth("admin", Some("S3cret!pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Stop and restart keep TLS with the current certificate (a fresh client: the old
    // one's kept-alive connection died with the stop).
    wa.stop().await;
    wa.restart().await.unwrap();
    let resp = pinned_client(&new_pem, None)
        .get(format!("{url}{CA_CERT_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), new_pem);
}

#[tokio::test]
async fn plain_fake_has_no_certificate() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    assert!(!wa.is_tls());
    assert!(wa.url().starts_with("http://"));
    let resp = client()
        .get(format!("{}{CA_CERT_PATH}", wa.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

mod provisioning;
mod validation;
