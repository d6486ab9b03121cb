//! Provisioning a fresh install, every answer checked.

use serde_json::json;

use super::*;

/// Whether a code was sent and not yet verified.
pub(super) fn code_pending(wa: &FakeWhatsApp) -> bool {
    lock(&wa.state).code_pending
}

pub(super) fn application_settings(wa: &FakeWhatsApp) -> Value {
    lock(&wa.state).application_settings.clone()
}
pub(super) const ADMIN_PW: &str = "N3w-Admin-Pass!";
pub(super) const API_PW: &str = "Api-User-Pa55";
pub(super) const API_PW2: &str = "Other+Pa55word";
/// Base64 (standard alphabet, padded) of some bytes, as a certificate file holds.
const CERT: &str = "CmgKJAiN+/8BEgZlbnQ6d2EiC0FjbWUgR21iSFB+c2VydmVyAA==";

/// Talks to a fake over plain HTTP, or over HTTPS trusting only its certificate.
pub(super) struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    pub(super) fn new(wa: &FakeWhatsApp) -> Self {
        let http = if wa.is_tls() {
            pinned_client(&wa.certificate_pem(), None)
        } else {
            client()
        };
        Api {
            http,
            url: wa.url(),
        }
    }

    async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(super) async fn login(
        &self,
        user: &str,
        password: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{LOGIN_PATH}", self.url))
            .basic_auth(user, Some(password));
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::answer(req).await
    }

    /// Logs in (no body) and returns the token; panics unless 200.
    pub(super) async fn token(&self, user: &str, password: &str) -> String {
        let (status, body) = self.login(user, password, None).await;
        assert_eq!(status, 200, "{body}");
        body["users"][0]["token"].as_str().unwrap().to_owned()
    }

    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::answer(req).await
    }

    pub(super) async fn raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned());
        Self::answer(req).await
    }
}

/// `(code, title, details)` of an errors body.
pub(super) fn error_of(body: &Value) -> (u64, String, String) {
    let e = &body["errors"][0];
    assert_eq!(body["meta"]["version"], API_VERSION, "{body}");
    (
        e["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code: {body}")),
        e["title"].as_str().unwrap().to_owned(),
        e["details"].as_str().unwrap().to_owned(),
    )
}

pub(super) fn account_body() -> Value {
    json!({"cc": "49", "phone_number": "15112345678", "method": "sms", "cert": CERT})
}

pub(super) async fn gateway_status(api: &Api, token: &str) -> Value {
    let (status, body) = api.call("GET", HEALTH_PATH, token, None).await;
    assert_eq!(status, 200);
    body["health"]["gateway_status"].clone()
}

/// The runbook's steps 3 and 4 against a fresh install, every answer checked.
async fn fresh_install_flow(tls: bool) {
    let wa = FakeWhatsApp::start_fresh(tls).await;
    assert_eq!(wa.is_tls(), tls);
    assert_eq!(wa.url().starts_with("https://"), tls);
    let api = Api::new(&wa);
    assert_eq!(wa.admin_password(), "secret");
    assert!(!wa.registered());
    assert_eq!(wa.user_password("loyjoy"), None);

    // First login without a new password: 400, no token.
    for body in [None, Some(json!({})), Some(json!({"new_password": null}))] {
        let (status, answer) = api.login("admin", "secret", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.get("users").is_none(), "{answer}");
        let (code, title, details) = error_of(&answer);
        assert_eq!(
            (code, title.as_str(), details.as_str()),
            (1005, "Access denied", PASSWORD_CHANGE_REQUIRED)
        );
    }
    // Wrong credentials: 401 whatever the body (the new password is still recorded).
    let (status, answer) = api
        .login("admin", "nope", Some(json!({"new_password": ADMIN_PW})))
        .await;
    assert_eq!((status, error_of(&answer).0), (401, 1005));
    // A weak password: 400 naming the rule, nothing changes.
    let (status, answer) = api
        .login("admin", "secret", Some(json!({"new_password": "Sh0rt!"})))
        .await;
    assert_eq!(status, 400);
    let (code, _, details) = error_of(&answer);
    assert_eq!(code, 1009);
    assert_eq!(details, "new_password: must be at least 8 characters long");
    assert_eq!(wa.admin_password(), "secret");
    assert_eq!(api.login("admin", "secret", None).await.0, 400);
    assert!(wa.issued_tokens().is_empty());

    // The change: a token, and the new password from now on.
    let (status, answer) = api
        .login("admin", "secret", Some(json!({"new_password": ADMIN_PW})))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["users"][0]["token"].as_str().unwrap().len() >= 32);
    assert_eq!(wa.admin_password(), ADMIN_PW);
    let (status, answer) = api.login("admin", "secret", None).await;
    assert_eq!((status, error_of(&answer).0), (401, 1005));
    let admin = api.token("admin", ADMIN_PW).await;
    assert_eq!(
        wa.received_new_passwords(),
        vec![ADMIN_PW, "Sh0rt!", ADMIN_PW]
    );

    // Registration: a code is sent, a wrong one leaves things as they were.
    assert_eq!(gateway_status(&api, &admin).await, "unregistered");
    let (status, answer) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "123456"})))
        .await;
    assert_eq!((status, error_of(&answer).0), (400, 1000));
    let (status, answer) = api
        .call("POST", ACCOUNT_PATH, &admin, Some(account_body()))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["account"][0]["vname"], "Acme GmbH");
    assert_eq!(answer["meta"]["api_status"], "stable");
    assert!(code_pending(&wa));
    assert_eq!(wa.account_requests(), vec![account_body()]);
    let (status, answer) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "654321"})))
        .await;
    assert_eq!(status, 400);
    let (code, title, _) = error_of(&answer);
    assert_eq!(
        (code, title.as_str()),
        (2060, "Incorrect verification code")
    );
    assert!(!wa.registered() && code_pending(&wa));
    assert_eq!(gateway_status(&api, &admin).await, "unregistered");
    let (status, answer) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "123456"})))
        .await;
    assert_eq!(status, 201, "{answer}");
    assert!(wa.registered() && !code_pending(&wa));
    assert_eq!(gateway_status(&api, &admin).await, "connected");
    // Again: already registered.
    let (status, answer) = api
        .call("POST", ACCOUNT_PATH, &admin, Some(account_body()))
        .await;
    assert_eq!((status, answer), (201, json!({"meta": meta()})));
    let (status, answer) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "123456"})))
        .await;
    assert_eq!((status, error_of(&answer).0), (400, 1000));

    // The webhook, merged into the settings.
    let url = "https://example.loyjoy.com/whatsapp/webhook";
    let (status, _) = api
        .call(
            "PATCH",
            SETTINGS_PATH,
            &admin,
            Some(json!({"webhooks": {"url": url}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(wa.webhook_url().as_deref(), Some(url));
    let (_, answer) = api.call("GET", SETTINGS_PATH, &admin, None).await;
    let settings = &answer["settings"]["application"];
    assert_eq!(settings["webhooks"]["url"], url);
    assert_eq!(settings["webhooks"]["max_concurrent_requests"], 6);
    assert_eq!(settings["callback_persist"], true);
    assert_eq!(&application_settings(&wa), settings);

    // The API user: created, logs in at once, is not an admin.
    let (status, answer) = api
        .call(
            "POST",
            USERS_PATH,
            &admin,
            Some(json!({"username": "loyjoy", "password": API_PW})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["users"], json!([{"username": "loyjoy"}]));
    assert_eq!(wa.user_password("loyjoy").as_deref(), Some(API_PW));
    let user = api.token("loyjoy", API_PW).await;
    assert_eq!(gateway_status(&api, &user).await, "connected");
    for (method, path, body) in [
        ("POST", ACCOUNT_PATH, account_body()),
        ("POST", VERIFY_PATH, json!({"code": "123456"})),
        ("PATCH", SETTINGS_PATH, json!({"webhooks": {"url": ""}})),
        (
            "POST",
            USERS_PATH,
            json!({"username": "x", "password": API_PW}),
        ),
        ("PUT", "/v1/users/loyjoy", json!({"password": API_PW2})),
    ] {
        let (status, answer) = api.call(method, path, &user, Some(body)).await;
        assert_eq!(
            (status, error_of(&answer).0),
            (403, 1005),
            "{method} {path}"
        );
    }
    assert_eq!(wa.webhook_url().as_deref(), Some(url));
    let (status, answer) = api
        .call(
            "POST",
            USERS_PATH,
            &admin,
            Some(json!({"username": "loyjoy", "password": API_PW2})),
        )
        .await;
    assert_eq!(status, 409);
    let (code, title, _) = error_of(&answer);
    assert_eq!((code, title.as_str()), (1004, "Resource already exists"));
    assert_eq!(wa.user_password("loyjoy").as_deref(), Some(API_PW));

    // A new password for it.
    let (status, _) = api
        .call(
            "PUT",
            "/v1/users/loyjoy",
            &admin,
            Some(json!({"password": API_PW2})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(wa.user_password("loyjoy").as_deref(), Some(API_PW2));
    assert_eq!(api.login("loyjoy", API_PW, None).await.0, 401);
    api.token("loyjoy", API_PW2).await;
    let (status, answer) = api
        .call(
            "PUT",
            "/v1/users/nobody",
            &admin,
            Some(json!({"password": API_PW2})),
        )
        .await;
    assert_eq!((status, error_of(&answer).0), (404, 1006));
}

#[tokio::test]
async fn fresh_install_over_http() {
    fresh_install_flow(false).await;
}

#[tokio::test]
async fn fresh_install_over_tls() {
    fresh_install_flow(true).await;
}

#[tokio::test]
async fn started_fakes_are_registered_and_admin_is_admin() {
    let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
    let api = Api::new(&wa);
    assert!(wa.registered());
    assert_eq!(wa.admin_password(), "S3cret!pass");
    let admin = api.token("admin", "S3cret!pass").await;
    let (status, _) = api
        .call("POST", ACCOUNT_PATH, &admin, Some(account_body()))
        .await;
    assert_eq!(status, 201);

    let wa = FakeWhatsApp::start_tls("loyjoy", "S3cret!pass").await;
    let api = Api::new(&wa);
    assert_eq!(wa.admin_password(), "");
    let user = api.token("loyjoy", "S3cret!pass").await;
    assert_eq!(gateway_status(&api, &user).await, "connected");
    let (status, _) = api
        .call("POST", ACCOUNT_PATH, &user, Some(account_body()))
        .await;
    assert_eq!(status, 403);
}
