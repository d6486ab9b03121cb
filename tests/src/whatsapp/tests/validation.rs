//! The fresh install's validation rules: passwords, account requests, settings and users.

use serde_json::json;

use super::{
    provisioning::{
        account_body, application_settings, code_pending, error_of, gateway_status, Api, ADMIN_PW,
        API_PW, API_PW2,
    },
    *,
};

#[test]
fn password_rules() {
    assert_eq!(users::password_problem("Aa1!aaaa"), None);
    assert_eq!(
        users::password_problem(&format!("Aa1!{}", "x".repeat(60))),
        None
    );
    assert_eq!(
        users::password_problem("Aa1 aaaa"),
        None,
        "a space is special"
    );
    for (password, rule) in [
        ("Aa1!aaa", "at least 8"),
        (&*format!("Aa1!{}", "x".repeat(61)), "at most 64"),
        ("aa1!aaaa", "upper-case"),
        ("AA1!AAAA", "lower-case"),
        ("Aab!aaaa", "digit"),
        ("Aa1aaaaa", "special"),
        ("", "at least 8"),
    ] {
        let problem = users::password_problem(password).unwrap_or("none");
        assert!(problem.contains(rule), "{password:?}: {problem}");
    }
}

#[tokio::test]
async fn new_password_rules_over_http() {
    let wa = FakeWhatsApp::start_fresh(false).await;
    let api = Api::new(&wa);
    let long_ok = format!("Aa1!{}", "y".repeat(60));
    let too_long = format!("{long_ok}z");
    for (password, rule) in [
        ("Aa1!aaa", "at least 8"),
        (too_long.as_str(), "at most 64"),
        ("aa1!aaaa", "upper-case"),
        ("AA1!AAAA", "lower-case"),
        ("Aab!aaaa", "digit"),
        ("Aa1aaaaa", "special"),
    ] {
        let (status, answer) = api
            .login("admin", "secret", Some(json!({"new_password": password})))
            .await;
        assert_eq!(status, 400, "{password}");
        let (code, title, details) = error_of(&answer);
        assert_eq!(
            (code, title.as_str()),
            (1009, "Parameter value is not valid")
        );
        assert!(
            details.starts_with("new_password: ") && details.contains(rule),
            "{details}"
        );
        assert_eq!(wa.admin_password(), "secret");
    }
    // Not a string, not an object, not JSON.
    let (status, answer) = api
        .login("admin", "secret", Some(json!({"new_password": 12345678})))
        .await;
    assert_eq!((status, error_of(&answer).0), (400, 1009));
    let (status, answer) = api.login("admin", "secret", Some(json!(["x"]))).await;
    assert_eq!((status, error_of(&answer).0), (400, 1009));
    let resp = client()
        .post(format!("{}{LOGIN_PATH}", wa.url()))
        .basic_auth("admin", Some("secret"))
        .body("new_password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(wa.admin_password(), "secret");

    // 64 characters is fine; the admin may change its password again later.
    let (status, _) = api
        .login("admin", "secret", Some(json!({"new_password": long_ok})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(wa.admin_password(), long_ok);
    let (status, _) = api
        .login("admin", &long_ok, Some(json!({"new_password": "Aa1!aaaa"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(wa.admin_password(), "Aa1!aaaa");
    assert_eq!(api.login("admin", &long_ok, None).await.0, 401);
    // Only strings are recorded.
    let received = wa.received_new_passwords();
    assert_eq!(received.len(), 8);
    assert_eq!(received[0], "Aa1!aaa");
    assert_eq!(received[6..], [long_ok.clone(), "Aa1!aaaa".to_owned()]);
    assert_eq!(wa.successful_login_count(), 2);
}

#[tokio::test]
async fn account_request_validation() {
    let wa = FakeWhatsApp::start_fresh(false).await;
    let api = Api::new(&wa);
    api.login("admin", "secret", Some(json!({"new_password": ADMIN_PW})))
        .await;
    let admin = api.token("admin", ADMIN_PW).await;

    let mut sent = 0;
    for field in ["cc", "phone_number", "method", "cert"] {
        let mut body = account_body();
        body.as_object_mut().unwrap().remove(field);
        let (status, answer) = api.call("POST", ACCOUNT_PATH, &admin, Some(body)).await;
        sent += 1;
        assert_eq!(status, 400);
        let (code, title, details) = error_of(&answer);
        assert_eq!(
            (code, title.as_str()),
            (1008, "Required parameter is missing")
        );
        assert_eq!(details, format!("{field}: required"));
    }
    for (field, value) in [
        ("cc", json!("+49")),
        ("cc", json!("0049")),
        ("cc", json!(49)),
        ("phone_number", json!("0151 1234567")),
        ("phone_number", json!("+4915112345678")),
        ("phone_number", json!("1234567890123456")),
        ("method", json!("email")),
        ("method", json!("SMS")),
        ("cert", json!("")),
        ("cert", json!("not base64!")),
        ("cert", json!("CmgKJAiN-_8B")),
        ("cert", json!("CmgKJAiN+/8BEg")),
        ("pin", json!("12345")),
        ("pin", json!(123456)),
    ] {
        let mut body = account_body();
        body[field] = value.clone();
        let (status, answer) = api.call("POST", ACCOUNT_PATH, &admin, Some(body)).await;
        sent += 1;
        assert_eq!(status, 400, "{field} = {value}");
        let (code, title, details) = error_of(&answer);
        assert_eq!(
            (code, title.as_str()),
            (1009, "Parameter value is not valid")
        );
        assert!(details.starts_with(&format!("{field}: ")), "{details}");
    }
    let (status, answer) = api.raw("POST", ACCOUNT_PATH, &admin, "cc=49").await;
    sent += 1;
    assert_eq!((status, error_of(&answer).0), (400, 1009));
    assert!(!code_pending(&wa));

    // Voice, with a PIN: fine.
    let mut body = account_body();
    body["method"] = json!("voice");
    body["pin"] = json!("246810");
    let (status, _) = api
        .call("POST", ACCOUNT_PATH, &admin, Some(body.clone()))
        .await;
    sent += 1;
    assert_eq!(status, 202);
    let recorded = wa.account_requests();
    assert_eq!(recorded.len(), sent);
    assert_eq!(recorded.last(), Some(&body));
    assert_eq!(recorded[sent - 2], json!("cc=49"));

    // No token, or a user's: refused and not recorded.
    let (status, _) = api
        .call("POST", ACCOUNT_PATH, "made-up", Some(account_body()))
        .await;
    assert_eq!(status, 401);
    add_user(&wa, "api", API_PW);
    let user = api.token("api", API_PW).await;
    let (status, _) = api
        .call("POST", ACCOUNT_PATH, &user, Some(account_body()))
        .await;
    assert_eq!(status, 403);
    assert_eq!(wa.account_requests().len(), sent);

    // Verify: a missing or non-string code.
    let (status, answer) = api.call("POST", VERIFY_PATH, &admin, Some(json!({}))).await;
    assert_eq!((status, error_of(&answer).0), (400, 1008));
    let (status, answer) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": 123456})))
        .await;
    assert_eq!((status, error_of(&answer).0), (400, 1009));
    assert!(code_pending(&wa));
}

#[tokio::test]
async fn scripted_registration() {
    let wa = FakeWhatsApp::start_fresh(false).await;
    let api = Api::new(&wa);
    api.login("admin", "secret", Some(json!({"new_password": ADMIN_PW})))
        .await;
    let admin = api.token("admin", ADMIN_PW).await;
    wa.set_verification_code("654321");
    let (status, answer) = api
        .call("POST", ACCOUNT_PATH, &admin, Some(account_body()))
        .await;
    assert_eq!(
        (status, &answer["account"][0]["vname"]),
        (202, &json!(DEFAULT_VERIFIED_NAME))
    );
    let (status, _) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "123456"})))
        .await;
    assert_eq!(status, 400);
    // Changed while pending: the pending code changes too.
    wa.set_verification_code("111111");
    let (status, _) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "654321"})))
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "111111"})))
        .await;
    assert_eq!(status, 201);

    // Registered beforehand: 201 at once, nothing to verify; health follows.
    let wa = FakeWhatsApp::start_fresh(false).await;
    let api = Api::new(&wa);
    api.login("admin", "secret", Some(json!({"new_password": ADMIN_PW})))
        .await;
    let admin = api.token("admin", ADMIN_PW).await;
    wa.set_registered(true);
    assert_eq!(gateway_status(&api, &admin).await, "connected");
    let (status, answer) = api
        .call("POST", ACCOUNT_PATH, &admin, Some(account_body()))
        .await;
    assert_eq!((status, answer), (201, json!({"meta": meta()})));
    assert!(!code_pending(&wa));
    let (status, answer) = api
        .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "123456"})))
        .await;
    assert_eq!((status, error_of(&answer).0), (400, 1000));
    // An explicit health wins over the registration state.
    wa.set_health(Health::Single("disconnected"));
    wa.set_registered(false);
    assert_eq!(gateway_status(&api, &admin).await, "disconnected");
}

#[tokio::test]
async fn settings_and_users_validation() {
    let wa = FakeWhatsApp::start_fresh(false).await;
    let api = Api::new(&wa);
    api.login("admin", "secret", Some(json!({"new_password": ADMIN_PW})))
        .await;
    let admin = api.token("admin", ADMIN_PW).await;
    assert_eq!(wa.webhook_url(), None);

    for patch in [
        json!({"webhooks": "https://x.example"}),
        json!({"webhooks": {"url": "ftp://x.example"}}),
        json!({"webhooks": {"url": "https://"}}),
        json!({"webhooks": {"url": "https://a b.example"}}),
        json!({"webhooks": {"url": 7}}),
        json!([1]),
    ] {
        let (status, answer) = api.call("PATCH", SETTINGS_PATH, &admin, Some(patch)).await;
        assert_eq!((status, error_of(&answer).0), (400, 1009), "{answer}");
    }
    assert_eq!(application_settings(&wa), default_application_settings());
    let (status, _) = api
        .call(
            "PATCH",
            SETTINGS_PATH,
            &admin,
            Some(json!({"webhooks": {"url": "http://10.0.0.1:8080/hook"}, "sent_status": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        wa.webhook_url().as_deref(),
        Some("http://10.0.0.1:8080/hook")
    );
    assert_eq!(application_settings(&wa)["sent_status"], true);
    assert_eq!(application_settings(&wa)["heartbeat_interval"], 5);
    let (status, _) = api
        .call(
            "PATCH",
            SETTINGS_PATH,
            &admin,
            Some(json!({"webhooks": {"url": ""}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(wa.webhook_url(), None);

    for (body, code, detail) in [
        (json!({"password": API_PW}), 1008, "username: required"),
        (json!({"username": "loyjoy"}), 1008, "password: required"),
        (
            json!({"username": "a:b", "password": API_PW}),
            1009,
            "username: ",
        ),
        (
            json!({"username": "", "password": API_PW}),
            1009,
            "username: ",
        ),
        (
            json!({"username": "a b", "password": API_PW}),
            1009,
            "username: ",
        ),
        (
            json!({"username": "loyjoy", "password": "weakpass"}),
            1009,
            "password: must contain an upper-case letter",
        ),
        (
            json!({"username": "loyjoy", "password": 5}),
            1009,
            "password: ",
        ),
    ] {
        let (status, answer) = api.call("POST", USERS_PATH, &admin, Some(body)).await;
        assert_eq!(status, 400);
        let (c, _, details) = error_of(&answer);
        assert_eq!(c, code, "{details}");
        assert!(details.starts_with(detail), "{details}");
    }
    assert_eq!(wa.user_password("loyjoy"), None);
    let (status, answer) = api
        .call(
            "POST",
            USERS_PATH,
            &admin,
            Some(json!({"username": "admin", "password": API_PW})),
        )
        .await;
    assert_eq!((status, error_of(&answer).0), (409, 1004));
    assert_eq!(wa.admin_password(), ADMIN_PW);

    add_user(&wa, "loyjoy", API_PW);
    let (status, answer) = api
        .call(
            "PUT",
            "/v1/users/loyjoy",
            &admin,
            Some(json!({"password": "short"})),
        )
        .await;
    assert_eq!((status, error_of(&answer).0), (400, 1009));
    let (status, answer) = api.call("PUT", "/v1/users/loyjoy", &admin, None).await;
    assert_eq!((status, error_of(&answer).0), (400, 1009));
    assert_eq!(wa.user_password("loyjoy").as_deref(), Some(API_PW));

    // The admin may set its own password this way too.
    let (status, _) = api
        .call(
            "PUT",
            "/v1/users/admin",
            &admin,
            Some(json!({"password": API_PW2})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(wa.admin_password(), API_PW2);
    assert_eq!(wa.user_password("nobody"), None);
}

/// Adds an API user directly (no password change required of it).
fn add_user(wa: &FakeWhatsApp, username: &str, password: &str) {
    lock(&wa.state)
        .users
        .insert(username.to_owned(), User::new(username, password));
}
