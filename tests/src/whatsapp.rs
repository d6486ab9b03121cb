//! `FakeWhatsApp`: the REST API of the on-premises WhatsApp Business API client, as the
//! keepalive sees it (login, the seven probes), scriptable per path. Over plain HTTP
//! ([`FakeWhatsApp::start`], what the runbook's port-80 proxy gives) or over HTTPS with a
//! self-signed certificate, as the `web` container serves it ([`FakeWhatsApp::start_tls`]);
//! then `GET /v1/certificates/external/ca` answers that certificate (PEM, no auth needed).
//!
//! Order of evaluation for every request: count it, wait the global latency, then the
//! scripted behaviour of its path (a `fail_next` entry first, else the `set_behaviour` one);
//! only `Behaviour::Normal` and `Behaviour::Delay` go on to authentication and the real
//! endpoint. So a scripted `Status(500)` on `/v1/stats/db` answers 500 whatever the token.

use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
    Router,
};
use serde_json::{json, Value};
use time::{macros::format_description, OffsetDateTime};

use crate::server::{
    basic_auth, bearer_token, close_connection, hang, json_response, lock, random_string,
    raw_response, HttpServer, RecordedRequest, SelfSignedCert,
};

/// The version the fake reports in `meta.version`.
pub const API_VERSION: &str = "v2.53.2";

/// Login path.
pub const LOGIN_PATH: &str = "/v1/users/login";
/// Health path.
pub const HEALTH_PATH: &str = "/v1/health";
/// Where the client answers the CA certificate of its HTTPS certificate.
pub const CA_CERT_PATH: &str = "/v1/certificates/external/ca";

/// The probes a check makes after logging in, as `(method, path)`.
pub const PROBES: [(&str, &str); 7] = [
    ("GET", "/v1/stats/app"),
    ("GET", "/v1/stats/db"),
    ("GET", "/v1/settings/application"),
    ("GET", "/v1/settings/profile/about"),
    ("GET", "/v1/settings/business/profile"),
    ("PUT", "/v1/services/message/gc"),
    ("GET", "/v1/health"),
];

/// What `GET /v1/health` answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    /// Single instance: `{"health": {"gateway_status": S}}`.
    Single(&'static str),
    /// High Availability / Multiconnect: `(node "host:container", gateway_status, role)`,
    /// giving `{"health": {node: {"gateway_status": S, "role": R}, ...}}`.
    Nodes(Vec<(&'static str, &'static str, &'static str)>),
    /// Any body at all (sent with status 200, as is).
    Raw(Value),
}

impl Health {
    fn body(&self) -> Value {
        match self {
            Health::Single(status) => json!({
                "health": {"gateway_status": status},
                "meta": meta(),
            }),
            Health::Nodes(nodes) => {
                let map: serde_json::Map<String, Value> = nodes
                    .iter()
                    .map(|(node, status, role)| {
                        (
                            (*node).to_owned(),
                            json!({"gateway_status": status, "role": role}),
                        )
                    })
                    .collect();
                json!({"health": map, "meta": meta()})
            }
            Health::Raw(v) => v.clone(),
        }
    }
}

/// How the fake answers requests to a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Behaviour {
    /// The real endpoint.
    Normal,
    /// This status with the documented errors body.
    Status(u16),
    /// Never answers (until the client gives up or the fake is stopped/dropped).
    Hang,
    /// 200 with the body `not json{`.
    BadJson,
    /// Waits this long, then the real endpoint.
    Delay(Duration),
    /// This status with this JSON body.
    Json(u16, Value),
    /// Drops the connection without answering.
    Close,
}

struct User {
    password: String,
}

struct WaState {
    users: HashMap<String, User>,
    /// token -> user name
    tokens: HashMap<String, String>,
    /// every token ever issued, in order
    issued: Vec<String>,
    health: Health,
    behaviours: HashMap<String, Behaviour>,
    next: HashMap<String, VecDeque<Behaviour>>,
    latency: Duration,
    counts: HashMap<(String, String), usize>,
    successful_logins: usize,
    application_settings: Value,
    about: String,
    business_profile: Value,
    /// The HTTPS certificate (PEM), when serving TLS.
    ca_pem: Option<String>,
}

type Shared = Arc<Mutex<WaState>>;

/// The fake WhatsApp Business API client.
pub struct FakeWhatsApp {
    state: Shared,
    server: HttpServer,
    cert: Mutex<Option<SelfSignedCert>>,
}

const CERT_COMMON_NAME: &str = "WhatsApp Business API client (fake)";

fn normalize(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

impl FakeWhatsApp {
    /// Starts the fake (plain HTTP) with one API user; health `connected`.
    pub async fn start(username: &str, password: &str) -> Self {
        let state = new_state(username, password);
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = HttpServer::start(router)
            .await
            .expect("bind fake WhatsApp server");
        FakeWhatsApp {
            state,
            server,
            cert: Mutex::new(None),
        }
    }

    /// Starts the fake over HTTPS, with a self-signed certificate generated now (IP SAN
    /// `127.0.0.1`, DNS SAN `localhost`); otherwise as [`start`](Self::start).
    pub async fn start_tls(username: &str, password: &str) -> Self {
        let cert = SelfSignedCert::generate(CERT_COMMON_NAME);
        let state = new_state(username, password);
        lock(&state).ca_pem = Some(cert.cert_pem.clone());
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = HttpServer::start_tls(router, cert.server_config())
            .await
            .expect("bind fake WhatsApp server");
        FakeWhatsApp {
            state,
            server,
            cert: Mutex::new(Some(cert)),
        }
    }

    fn current_cert(&self) -> SelfSignedCert {
        lock(&self.cert)
            .clone()
            .expect("FakeWhatsApp: not serving TLS (use start_tls)")
    }

    /// The certificate served now (PEM). Panics unless started with
    /// [`start_tls`](Self::start_tls).
    pub fn certificate_pem(&self) -> String {
        self.current_cert().cert_pem
    }

    /// The certificate served now (DER), what a client pins. Panics unless TLS.
    pub fn certificate_der(&self) -> Vec<u8> {
        self.current_cert().cert_der
    }

    /// Replaces the certificate with a new self-signed one (new key), as a re-created `web`
    /// container would: connections from now on get it, and connections in progress are
    /// dropped shortly after (await [`drop_connections`](Self::drop_connections) to be sure
    /// they are gone). Returns the new PEM. Panics unless TLS.
    pub fn rotate_certificate(&self) -> String {
        let old = self.current_cert();
        let mut cert = SelfSignedCert::generate(CERT_COMMON_NAME);
        while cert.cert_der == old.cert_der {
            cert = SelfSignedCert::generate(CERT_COMMON_NAME);
        }
        self.server.set_tls_config(cert.server_config());
        lock(&self.state).ca_pem = Some(cert.cert_pem.clone());
        *lock(&self.cert) = Some(cert.clone());
        let _ = self.server.request_drop_connections();
        cert.cert_pem
    }

    /// Drops every connection in progress (the listener stays open); returns once they are
    /// gone.
    pub async fn drop_connections(&self) {
        self.server.drop_connections().await;
    }

    /// Whether the fake serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.server.is_tls()
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` when serving TLS.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`, the bare `whatsAppHostname` form.
    pub fn host_port(&self) -> String {
        self.server.addr().to_string()
    }

    /// Adds (or changes the password of) an API user.
    pub fn add_user(&self, username: &str, password: &str) {
        lock(&self.state).users.insert(
            username.to_owned(),
            User {
                password: password.to_owned(),
            },
        );
    }

    /// What `GET /v1/health` answers from now on.
    pub fn set_health(&self, health: Health) {
        lock(&self.state).health = health;
    }

    /// How requests to `path` (e.g. `/v1/stats/db`, `/v1/users/login`) are answered from now
    /// on (all methods; the query is ignored).
    pub fn set_behaviour(&self, path: &str, behaviour: Behaviour) {
        let path = normalize(path);
        let mut st = lock(&self.state);
        if behaviour == Behaviour::Normal {
            st.behaviours.remove(&path);
        } else {
            st.behaviours.insert(path, behaviour);
        }
    }

    /// The next `n` requests to `path` get `behaviour`, then the `set_behaviour` one again.
    /// Calls queue up: `fail_next(p, 1, Hang); fail_next(p, 1, Status(500))` answers the
    /// next request by hanging and the one after with 500.
    pub fn fail_next(&self, path: &str, n: usize, behaviour: Behaviour) {
        lock(&self.state)
            .next
            .entry(normalize(path))
            .or_default()
            .extend(std::iter::repeat_n(behaviour, n));
    }

    /// Back to normal on every path (scripted behaviours, queued failures and latency).
    pub fn clear_behaviours(&self) {
        let mut st = lock(&self.state);
        st.behaviours.clear();
        st.next.clear();
        st.latency = Duration::ZERO;
    }

    /// Waits this long before every answer (then writes it at once).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }

    /// Requests to `POST /v1/users/login`, successful or not.
    pub fn login_count(&self) -> usize {
        self.count("POST", LOGIN_PATH)
    }

    /// Logins that got a token.
    pub fn successful_login_count(&self) -> usize {
        lock(&self.state).successful_logins
    }

    /// Requests with this method to this path, whatever the answer.
    pub fn count(&self, method: &str, path: &str) -> usize {
        lock(&self.state)
            .counts
            .get(&(method.to_ascii_uppercase(), normalize(path)))
            .copied()
            .unwrap_or(0)
    }

    /// Every token issued so far (to check none leaks into logs or outcomes).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state).issued.clone()
    }

    /// Invalidates every issued token (as if they had expired): probes answer 401.
    pub fn revoke_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    /// The current application settings (`settings.application`).
    pub fn application_settings(&self) -> Value {
        lock(&self.state).application_settings.clone()
    }

    /// Replaces the application settings.
    pub fn set_application_settings(&self, settings: Value) {
        lock(&self.state).application_settings = settings;
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// Forgets the recorded requests (counters are kept).
    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Closes the listener (connections are refused) and drops connections in progress.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Listens again on the same port.
    pub async fn restart(&self) -> io::Result<()> {
        self.server.restart().await
    }
}

fn new_state(username: &str, password: &str) -> Shared {
    let mut users = HashMap::new();
    users.insert(
        username.to_owned(),
        User {
            password: password.to_owned(),
        },
    );
    Arc::new(Mutex::new(WaState {
        users,
        tokens: HashMap::new(),
        issued: Vec::new(),
        health: Health::Single("connected"),
        behaviours: HashMap::new(),
        next: HashMap::new(),
        latency: Duration::ZERO,
        counts: HashMap::new(),
        successful_logins: 0,
        application_settings: default_application_settings(),
        about: "Hey there! I am using WhatsApp.".to_owned(),
        business_profile: json!({
            "address": "1 Example Street, Berlin",
            "description": "Fake business for tests",
            "email": "info@example.com",
            "vertical": "Professional Services",
            "websites": ["https://www.example.com/"]
        }),
        ca_pem: None,
    }))
}

fn default_application_settings() -> Value {
    json!({
        "callback_persist": true,
        "callback_backoff_delay_ms": 3000,
        "max_callback_backoff_delay_ms": 900000,
        "heartbeat_interval": 5,
        "unhealthy_interval": 30,
        "media": {"auto_download": ["image", "document", "audio"]},
        "pass_through": false,
        "sent_status": false,
        "on_call_pager": "",
        "webhooks": {"url": "", "max_concurrent_requests": 6}
    })
}

fn meta() -> Value {
    json!({"api_status": "stable", "version": API_VERSION})
}

/// The documented errors body.
pub fn errors_body(code: u32, title: &str, details: &str) -> Value {
    json!({
        "errors": [{"code": code, "title": title, "details": details}],
        "meta": meta(),
    })
}

/// An errors answer for `status`, with the error code the client uses for it.
fn error_response(status: u16, details: &str) -> Response {
    let (code, title) = match status {
        400 => (1009, "Parameter value is not valid"),
        401 | 403 => (1005, "Access denied"),
        404 => (1006, "Resource not found"),
        405 => (1000, "Generic error"),
        429 => (1015, "Too many requests"),
        500 => (1014, "Internal error"),
        503 => (1011, "Service not ready"),
        _ => (1000, "Generic error"),
    };
    if (200..300).contains(&status) {
        return json_response(status, &json!({"meta": meta()}));
    }
    json_response(status, &errors_body(code, title, details))
}

async fn handle(
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
        return login(state, headers, body);
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
    let authorized = bearer_token(headers).is_some_and(|t| st.tokens.contains_key(t));
    if !authorized {
        return error_response(401, "Missing, invalid or expired bearer token");
    }
    let m = method.as_str();
    match (m, path) {
        ("POST", "/v1/users/logout") => {
            if let Some(t) = bearer_token(headers) {
                st.tokens.remove(t);
            }
            json_response(200, &json!({"meta": meta()}))
        }
        ("GET", HEALTH_PATH) => json_response(200, &st.health.body()),
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
        _ => error_response(404, &format!("Unknown path: {m} {path}")),
    }
}

fn login(state: &Shared, headers: &HeaderMap, _body: &[u8]) -> Response {
    // (Later: the admin's first login with {"new_password": ...} in `_body`.)
    let Some((user, password)) = basic_auth(headers) else {
        return error_response(401, "Missing or malformed HTTP Basic credentials");
    };
    let mut st = lock(state);
    let ok = st.users.get(&user).is_some_and(|u| u.password == password);
    if !ok {
        return error_response(401, "Invalid username or password");
    }
    let token = random_string(64);
    st.tokens.insert(token.clone(), user);
    st.issued.push(token.clone());
    st.successful_logins += 1;
    let expires = (OffsetDateTime::now_utc() + time::Duration::days(7))
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]+00:00"
        ))
        .unwrap_or_default();
    json_response(
        200,
        &json!({"users": [{"token": token, "expires_after": expires}], "meta": meta()}),
    )
}

#[cfg(test)]
mod tests {
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

        wa.add_user("other", "Pa55word!");
        assert_eq!(login(&wa, "other", "Pa55word!").await.status(), 200);

        assert_eq!(wa.login_count(), 4);
        assert_eq!(wa.successful_login_count(), 2);
        assert_eq!(wa.issued_tokens().len(), 2);
        assert_eq!(wa.requests().len(), 4);
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

        wa.revoke_tokens();
        assert_eq!(get(&wa, "/v1/health", &token).await.status(), 401);
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
}
