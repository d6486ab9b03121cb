//! Dispatch: counting, scripted behaviours and latency, authentication, then the endpoint.

use std::collections::VecDeque;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use serde_json::json;

use super::{
    answers::{self, error_response},
    backup, meta, normalize, register, settings, users, Behaviour, Health, Shared, ACCOUNT_PATH,
    BACKUP_PATH, CA_CERT_PATH, HEALTH_PATH, LOGIN_PATH, SETTINGS_PATH, USERS_PATH, VERIFY_PATH,
};
use crate::server::{bearer_token, close_connection, hang, json_response, lock, raw_response};

pub(super) async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = normalize(uri.path());
    let (behaviour, latency) = {
        let mut st = lock(&state);
        *st.counts
            .entry((method.as_str().to_owned(), path.clone()))
            .or_default() += 1;
        let queued = st.next.get_mut(&path).and_then(VecDeque::pop_front);
        let behaviour = queued
            .or_else(|| st.behaviours.get(&path).cloned())
            .unwrap_or(Behaviour::Normal);
        (behaviour, st.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match behaviour {
        Behaviour::Normal => {}
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        Behaviour::Status(status) => {
            return error_response(status, "Scripted failure of the fake WhatsApp client")
        }
        Behaviour::Json(status, body) => return json_response(status, &body),
        Behaviour::BadJson => return raw_response(200, "application/json", "not json{"),
        Behaviour::Hang => match hang().await {},
        Behaviour::Close => return close_connection(),
        Behaviour::Redirect(location) => {
            let mut resp = raw_response(302, "text/plain", "");
            if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(axum::http::header::LOCATION, v);
            }
            return resp;
        }
        Behaviour::Huge(len) => return answers::huge_response(len),
    }
    endpoint(&state, &method, &path, &headers, &body)
}

fn endpoint(
    state: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if path == LOGIN_PATH {
        if method != Method::POST {
            return error_response(405, "Method not allowed");
        }
        return users::login(state, headers, body);
    }
    if !path.starts_with("/v1/") {
        return error_response(404, &format!("Unknown path: {path}"));
    }
    let mut st = lock(state);
    if path == CA_CERT_PATH && method == Method::GET {
        // No authentication: a client fetches it before it trusts anything.
        return match &st.ca_pem {
            Some(pem) => raw_response(200, "text/plain", pem.clone()),
            None => error_response(404, "This client does not serve HTTPS"),
        };
    }
    let Some(caller) = bearer_token(headers)
        .and_then(|t| st.tokens.get(t))
        .cloned()
    else {
        return error_response(401, "Missing, invalid or expired bearer token");
    };
    let is_admin = st.users.get(&caller).is_some_and(|u| u.admin);
    let m = method.as_str();
    let admin_only = matches!(
        (m, path),
        (
            "POST",
            ACCOUNT_PATH | VERIFY_PATH | USERS_PATH | BACKUP_PATH
        ) | ("PATCH", SETTINGS_PATH)
    ) || (path.starts_with("/v1/users/") && m == "PUT");
    if admin_only && !is_admin {
        return error_response(403, &format!("{m} {path} is for the admin user only"));
    }
    if st.migrated && path != HEALTH_PATH {
        return backup::shut_down();
    }
    match (m, path) {
        ("GET", HEALTH_PATH) => {
            let health = st.health.clone().unwrap_or(Health::Single(if st.migrated {
                "disconnected"
            } else if st.registered {
                "connected"
            } else {
                "unregistered"
            }));
            json_response(200, &health.body())
        }
        ("GET", "/v1/stats/app") => json_response(
            200,
            &json!({
                "app": {"stats": {"type": "app", "data": {
                    "messages_sent": 12, "messages_received": 7, "pending_callbacks": 0,
                    "uptime_s": 86400
                }}},
                "meta": meta(),
            }),
        ),
        ("GET", "/v1/stats/db") => json_response(
            200,
            &json!({
                "db": {"stats": {"type": "db", "data": {
                    "message_store_size": 1024, "pending_messages": 0, "receipts": 19
                }}},
                "meta": meta(),
            }),
        ),
        ("GET", "/v1/settings/application") => json_response(
            200,
            &json!({
                "settings": {"application": st.application_settings},
                "meta": meta(),
            }),
        ),
        ("GET", "/v1/settings/profile/about") => json_response(
            200,
            &json!({
                "settings": {"profile": {"about": {"text": st.about}}},
                "meta": meta(),
            }),
        ),
        ("GET", "/v1/settings/business/profile") => json_response(
            200,
            &json!({
                "settings": {"business": {"profile": st.business_profile}},
                "meta": meta(),
            }),
        ),
        ("PUT", "/v1/services/message/gc") => json_response(200, &json!({"meta": meta()})),
        ("POST", ACCOUNT_PATH) => register::request_code(&mut st, body),
        ("POST", VERIFY_PATH) => register::verify_code(&mut st, body),
        ("POST", BACKUP_PATH) => backup::take(&mut st, body),
        ("PATCH", SETTINGS_PATH) => settings::patch(&mut st, body),
        ("POST", USERS_PATH) => users::create(&mut st, body),
        ("PUT", _) if admin_only => users::set_password(&mut st, &path["/v1/users/".len()..], body),
        _ => error_response(404, &format!("Unknown path: {m} {path}")),
    }
}
