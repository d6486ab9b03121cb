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
//!
//! # Provisioning a fresh install ([`FakeWhatsApp::start_fresh`])
//!
//! Every error below is the documented errors body
//! `{"errors": [{"code", "title", "details"}], "meta": {...}}`; `details` names the field or
//! the rule. Missing or unknown bearer token: 401 / 1005 on every endpoint below.
//!
//! **Login** (`POST /v1/users/login`, HTTP Basic; body none, or a JSON object with
//! `new_password`). Every `new_password` received is recorded
//! ([`received_new_passwords`](FakeWhatsApp::received_new_passwords)), valid or not.
//! - No or malformed Basic credentials, unknown user, wrong password: 401 / 1005 "Access
//!   denied" (so `admin:secret` once the admin password was changed).
//! - Right credentials, body not JSON or not an object, or `new_password` not a string:
//!   400 / 1009 "Parameter value is not valid".
//! - Fresh admin (`admin:secret`, password change pending) without `new_password`: 400 /
//!   1005 "Access denied", details [`PASSWORD_CHANGE_REQUIRED`]; no token.
//! - `new_password` breaking the password rules ([`password_problem`]: 8 to 64
//!   characters, at least one upper-case letter, one lower-case letter, one digit and one
//!   special, i.e. non-alphanumeric, character): 400 / 1009, details
//!   `new_password: <rule>`; the password is unchanged.
//! - Otherwise 200 `{"users": [{"token", "expires_after"}]}`, and a valid `new_password`
//!   is the user's password from now on (any user may change its own this way; no body
//!   needed afterwards). API users never have to change their password.
//!
//! **Admin-only endpoints** (a token of the user `admin`; any other user's token: 403 /
//! 1005). Bodies must be JSON objects (else 400 / 1009). A missing (or `null`) required
//! field is 400 / 1008 "Required parameter is missing", a wrong one 400 / 1009 "Parameter
//! value is not valid"; details `<field>: <why>`.
//! - `POST /v1/account` `{cc, phone_number, method, cert, pin?}`: `cc` 1 to 3 digits not
//!   starting with 0; `phone_number` digits only, with `cc` at most 15 digits; `method`
//!   `sms` or `voice`; `cert` non-empty standard base64 (`+/`, padded); `pin` 6 digits.
//!   Every body is recorded ([`account_requests`](FakeWhatsApp::account_requests)). Valid
//!   and registered: 201 `{"meta"}`. Valid and not registered: 202
//!   `{"account": [{"vname"}]}`, and a code is pending (the one of
//!   [`set_verification_code`](FakeWhatsApp::set_verification_code)).
//! - `POST /v1/account/verify` `{code}` (a string): no code pending (never requested, or
//!   already verified): 400 / 1000 "Generic error"; wrong code: 400 / 2060 "Incorrect
//!   verification code", nothing changes (retry with the right one); right code: 201
//!   `{"meta"}`, registered, health `connected`.
//! - `PATCH /v1/settings/application`: deep-merged into the application settings (objects
//!   merge, anything else replaces); `webhooks` must be an object and `webhooks.url` a
//!   string, empty or an `http://` / `https://` URL with a host; 200 `{"meta"}`.
//! - `POST /v1/users` `{username, password}`: `username` 1 to 64 characters, no `:`, `/`,
//!   `%`, whitespace or control characters; `password` by the password rules (details
//!   `password: <rule>`); then an existing user: 409 / 1004 "Resource already exists";
//!   else 201 `{"users": [{"username"}]}`, and the user logs in at once.
//! - `GET /v1/users/{username}`: 200 `{"users": [{"username"}]}`. `PUT` `{password}`
//!   (password rules): 200 `{"meta"}`, the user's password changes (its tokens stay
//!   valid). `DELETE`: 200 `{"meta"}`, its tokens are revoked; deleting `admin`: 400 /
//!   1009. Unknown user: 404 / 1006 "Resource not found".
//!
//! Health: unless set with [`set_health`](FakeWhatsApp::set_health), a single instance
//! `connected` when registered and `unregistered` before.

use std::{
    collections::{HashMap, VecDeque},
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
use base64::Engine as _;
use serde_json::{json, Value};
use time::{macros::format_description, OffsetDateTime};

use crate::server::{
    basic_auth, bearer_token, close_connection, hang, json_response, lock, random_string,
    raw_response, HttpServer, SelfSignedCert,
};

/// The version the fake reports in `meta.version`.
pub const API_VERSION: &str = "v2.53.2";

/// Login path.
pub const LOGIN_PATH: &str = "/v1/users/login";
/// Health path.
pub const HEALTH_PATH: &str = "/v1/health";
/// Where the client answers the CA certificate of its HTTPS certificate.
pub const CA_CERT_PATH: &str = "/v1/certificates/external/ca";
/// Registration: requests the code.
pub const ACCOUNT_PATH: &str = "/v1/account";
/// Registration: verifies the code.
pub const VERIFY_PATH: &str = "/v1/account/verify";
/// Application settings (`GET`, `PATCH`).
pub const SETTINGS_PATH: &str = "/v1/settings/application";
/// Creating users (`POST`); `/v1/users/{username}` for one user (`GET`, `PUT`, `DELETE`).
pub const USERS_PATH: &str = "/v1/users";

/// The built-in admin's name; the only user allowed the admin-only endpoints.
pub const ADMIN_USERNAME: &str = "admin";
/// The built-in admin's password on a fresh install.
pub const FRESH_ADMIN_PASSWORD: &str = "secret";
/// The code `POST /v1/account` "sends" unless told otherwise.
pub const DEFAULT_VERIFICATION_CODE: &str = "123456";
/// The `vname` `POST /v1/account` answers unless told otherwise.
pub const DEFAULT_VERIFIED_NAME: &str = "Acme GmbH";

/// Error code (with HTTP 401 or 403, and with 400 when a password change is required):
/// "Access denied".
pub const CODE_ACCESS_DENIED: u32 = 1005;
/// Error code (404): "Resource not found".
pub const CODE_NOT_FOUND: u32 = 1006;
/// Error code (400): "Required parameter is missing".
pub const CODE_MISSING_PARAMETER: u32 = 1008;
/// Error code (400): "Parameter value is not valid" (bad value, weak password, bad body).
pub const CODE_INVALID_PARAMETER: u32 = 1009;
/// Error code (409): "Resource already exists".
pub const CODE_ALREADY_EXISTS: u32 = 1004;
/// Error code (400): "Incorrect verification code".
pub const CODE_WRONG_VERIFICATION_CODE: u32 = 2060;
/// Error code (400, `POST /v1/account/verify` with no code pending): "Generic error".
pub const CODE_GENERIC: u32 = 1000;
/// The `details` of the 400 answering a login that must set a new password first.
pub const PASSWORD_CHANGE_REQUIRED: &str =
    "Password change required: send new_password in the login body";

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
    /// 302 with this `Location` (and an empty body), as a misconfigured proxy answers.
    Redirect(String),
    /// 200 `application/json`, a body of this many bytes streamed in chunks without a
    /// `content-length` (a reader finds out how long it is only by reading).
    Huge(usize),
}

struct User {
    password: String,
    /// May call the admin-only endpoints: the user named `admin`.
    admin: bool,
    /// Must set a new password (`new_password` in the login body) before it gets a token.
    must_change: bool,
}

impl User {
    fn new(username: &str, password: &str) -> Self {
        User {
            password: password.to_owned(),
            admin: username == ADMIN_USERNAME,
            must_change: false,
        }
    }
}

struct WaState {
    users: HashMap<String, User>,
    /// token -> user name
    tokens: HashMap<String, String>,
    /// every token ever issued, in order
    issued: Vec<String>,
    /// `None`: derived from `registered` (`connected` or `unregistered`).
    health: Option<Health>,
    /// Whether the number is registered (a fresh install is not).
    registered: bool,
    /// Whether `POST /v1/account` "sent" a code that `POST /v1/account/verify` has not used.
    code_pending: bool,
    verification_code: String,
    verified_name: String,
    /// Every body `POST /v1/account` received with an admin token.
    account_requests: Vec<Value>,
    /// Every `new_password` a login body carried.
    new_passwords: Vec<String>,
    /// Whether the admin's password was changed through the API.
    admin_password_changed: bool,
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
    crate::server::server_controls!();

    /// Starts the fake (plain HTTP) with one API user (the admin if named `admin`, with no
    /// password change pending); the number is registered, health `connected`.
    pub async fn start(username: &str, password: &str) -> Self {
        Self::serve(new_state(username, password), false).await
    }

    /// Starts the fake over HTTPS, with a self-signed certificate generated now (IP SAN
    /// `127.0.0.1`, DNS SAN `localhost`); otherwise as [`start`](Self::start).
    pub async fn start_tls(username: &str, password: &str) -> Self {
        Self::serve(new_state(username, password), true).await
    }

    /// Starts a brand-new installation, over HTTPS (as [`start_tls`](Self::start_tls)) when
    /// `tls`, else plain HTTP. See the module documentation for its rules: only the
    /// built-in `admin` / `secret` exists and must set a new password on its first login;
    /// the number is not registered (health `unregistered`) until `POST /v1/account` and
    /// `POST /v1/account/verify` (or [`set_registered`](Self::set_registered)).
    pub async fn start_fresh(tls: bool) -> Self {
        Self::serve(fresh_state(), tls).await
    }

    async fn serve(state: Shared, tls: bool) -> Self {
        let cert = tls.then(|| SelfSignedCert::generate(CERT_COMMON_NAME));
        if let Some(cert) = &cert {
            lock(&state).ca_pem = Some(cert.cert_pem.clone());
        }
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = match &cert {
            Some(cert) => HttpServer::start_tls(router, cert.server_config()).await,
            None => HttpServer::start(router).await,
        }
        .expect("bind fake WhatsApp server");
        FakeWhatsApp {
            state,
            server,
            cert: Mutex::new(cert),
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

    /// `127.0.0.1:PORT`, the bare `whatsAppHostname` form.
    pub fn host_port(&self) -> String {
        self.server.addr().to_string()
    }

    /// Adds (or changes the password of) an API user; one named `admin` is the admin. No
    /// password change is required of it.
    pub fn add_user(&self, username: &str, password: &str) {
        lock(&self.state)
            .users
            .insert(username.to_owned(), User::new(username, password));
    }

    /// What `GET /v1/health` answers from now on, whatever the registration state (until
    /// [`reset_health`](Self::reset_health)).
    pub fn set_health(&self, health: Health) {
        lock(&self.state).health = Some(health);
    }

    /// Back to the health derived from the registration state: single instance,
    /// `connected` when registered, else `unregistered`.
    pub fn reset_health(&self) {
        lock(&self.state).health = None;
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

    /// Every `new_password` a login body carried (valid or not, whatever the credentials),
    /// oldest first.
    pub fn received_new_passwords(&self) -> Vec<String> {
        lock(&self.state).new_passwords.clone()
    }

    /// The admin's current password (empty if there is no user `admin`).
    pub fn admin_password(&self) -> String {
        self.user_password(ADMIN_USERNAME).unwrap_or_default()
    }

    /// Whether the admin's password was changed through the API (a login with
    /// `new_password`, or `PUT /v1/users/admin`).
    pub fn password_changed(&self) -> bool {
        lock(&self.state).admin_password_changed
    }

    /// The current password of a user, if it exists.
    pub fn user_password(&self, username: &str) -> Option<String> {
        lock(&self.state)
            .users
            .get(username)
            .map(|u| u.password.clone())
    }

    /// Every user name, sorted (the admin included).
    pub fn usernames(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.state).users.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether the number is registered.
    pub fn registered(&self) -> bool {
        lock(&self.state).registered
    }

    /// Marks the number registered or not: `POST /v1/account` then answers 201 (nothing to
    /// verify) or 202 (a code is sent), and the derived health is `connected` or
    /// `unregistered`.
    pub fn set_registered(&self, registered: bool) {
        let mut st = lock(&self.state);
        st.registered = registered;
        if registered {
            st.code_pending = false;
        }
    }

    /// The code `POST /v1/account` "sends" (default [`DEFAULT_VERIFICATION_CODE`]); a code
    /// already pending becomes this one too.
    pub fn set_verification_code(&self, code: &str) {
        lock(&self.state).verification_code = code.to_owned();
    }

    /// Whether a code was sent and not yet verified.
    pub fn verification_pending(&self) -> bool {
        lock(&self.state).code_pending
    }

    /// The verified name `POST /v1/account` answers as `vname` (default
    /// [`DEFAULT_VERIFIED_NAME`]).
    pub fn set_verified_name(&self, name: &str) {
        lock(&self.state).verified_name = name.to_owned();
    }

    /// Every body `POST /v1/account` received with an admin token (valid or not; a body
    /// that is not JSON as a JSON string), oldest first.
    pub fn account_requests(&self) -> Vec<Value> {
        lock(&self.state).account_requests.clone()
    }

    /// `settings.application.webhooks.url`; `None` when absent or empty.
    pub fn webhook_url(&self) -> Option<String> {
        lock(&self.state)
            .application_settings
            .pointer("/webhooks/url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    }
}

fn new_state(username: &str, password: &str) -> Shared {
    let mut users = HashMap::new();
    users.insert(username.to_owned(), User::new(username, password));
    state_with(users, true)
}

fn fresh_state() -> Shared {
    let mut admin = User::new(ADMIN_USERNAME, FRESH_ADMIN_PASSWORD);
    admin.must_change = true;
    let mut users = HashMap::new();
    users.insert(ADMIN_USERNAME.to_owned(), admin);
    state_with(users, false)
}

fn state_with(users: HashMap<String, User>, registered: bool) -> Shared {
    Arc::new(Mutex::new(WaState {
        users,
        tokens: HashMap::new(),
        issued: Vec::new(),
        health: None,
        registered,
        code_pending: false,
        verification_code: DEFAULT_VERIFICATION_CODE.to_owned(),
        verified_name: DEFAULT_VERIFIED_NAME.to_owned(),
        account_requests: Vec::new(),
        new_passwords: Vec::new(),
        admin_password_changed: false,
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

/// A 200 JSON-looking body of `len` bytes (`{"pad":"xxxx…"}` when long enough), streamed in
/// 64 KiB chunks.
fn huge_response(len: usize) -> Response {
    const CHUNK: usize = 64 * 1024;
    let (head, tail) = (&b"{\"pad\":\""[..], &b"\"}"[..]);
    let fill = len.saturating_sub(head.len() + tail.len());
    let chunks = std::iter::once(bytes_of(head.iter().copied().take(len)))
        .chain((0..fill.div_ceil(CHUNK)).map(move |i| {
            let n = CHUNK.min(fill - i * CHUNK);
            axum::body::Bytes::from(vec![b'x'; n])
        }))
        .chain(std::iter::once(bytes_of(
            tail.iter().copied().take(len.saturating_sub(head.len())),
        )))
        .map(Ok::<_, std::io::Error>);
    let mut resp = Response::new(axum::body::Body::from_stream(futures::stream::iter(chunks)));
    resp.extensions_mut().insert(crate::server::Streamed);
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn bytes_of(b: impl Iterator<Item = u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(b.collect::<Vec<u8>>())
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
        Behaviour::Redirect(location) => {
            let mut resp = raw_response(302, "text/plain", "");
            if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(axum::http::header::LOCATION, v);
            }
            return resp;
        }
        Behaviour::Huge(len) => return huge_response(len),
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
        ("POST", ACCOUNT_PATH | VERIFY_PATH | USERS_PATH) | ("PATCH", SETTINGS_PATH)
    ) || (path.starts_with("/v1/users/")
        && path != "/v1/users/logout"
        && matches!(m, "GET" | "PUT" | "DELETE"));
    if admin_only && !is_admin {
        return error_response(403, &format!("{m} {path} is for the admin user only"));
    }
    match (m, path) {
        ("POST", "/v1/users/logout") => {
            if let Some(t) = bearer_token(headers) {
                st.tokens.remove(t);
            }
            json_response(200, &json!({"meta": meta()}))
        }
        ("GET", HEALTH_PATH) => {
            let health = st
                .health
                .clone()
                .unwrap_or(Health::Single(if st.registered {
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
        ("POST", ACCOUNT_PATH) => request_code(&mut st, body),
        ("POST", VERIFY_PATH) => verify_code(&mut st, body),
        ("PATCH", SETTINGS_PATH) => patch_settings(&mut st, body),
        ("POST", USERS_PATH) => create_user(&mut st, body),
        ("GET" | "PUT" | "DELETE", _) if admin_only => {
            let name = &path["/v1/users/".len()..];
            one_user(&mut st, m, name, body)
        }
        _ => error_response(404, &format!("Unknown path: {m} {path}")),
    }
}

/// An errors answer with this status, code, title and details.
fn error_with(status: u16, code: u32, title: &str, details: &str) -> Response {
    json_response(status, &errors_body(code, title, details))
}

fn missing(field: &str) -> Response {
    error_with(
        400,
        CODE_MISSING_PARAMETER,
        "Required parameter is missing",
        &format!("{field}: required"),
    )
}

fn invalid(field: &str, why: &str) -> Response {
    error_with(
        400,
        CODE_INVALID_PARAMETER,
        "Parameter value is not valid",
        &format!("{field}: {why}"),
    )
}

fn ok_meta(status: u16) -> Response {
    json_response(status, &json!({"meta": meta()}))
}

type Object = serde_json::Map<String, Value>;

/// An error answer, boxed (a `Response` is large).
type Reject = Box<Response>;

/// The body as a JSON object, or the 400 answer.
fn json_object(body: &[u8]) -> Result<Object, Reject> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(Box::new(invalid("body", "must be a JSON object"))),
    }
}

/// A required string field, or the 400 answer.
fn required_str<'a>(obj: &'a Object, field: &str) -> Result<&'a str, Reject> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(Box::new(missing(field))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Box::new(invalid(field, "must be a string"))),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// What is wrong with a password by the client's rules (8 to 64 characters, at least one
/// upper-case letter, one lower-case letter, one digit and one special, i.e.
/// non-alphanumeric, character), or `None` if it is acceptable.
pub fn password_problem(password: &str) -> Option<&'static str> {
    let len = password.chars().count();
    if len < 8 {
        Some("must be at least 8 characters long")
    } else if len > 64 {
        Some("must be at most 64 characters long")
    } else if !password.chars().any(char::is_uppercase) {
        Some("must contain an upper-case letter")
    } else if !password.chars().any(char::is_lowercase) {
        Some("must contain a lower-case letter")
    } else if !password.chars().any(|c| c.is_ascii_digit()) {
        Some("must contain a digit")
    } else if password.chars().all(char::is_alphanumeric) {
        Some("must contain a special (non-alphanumeric) character")
    } else {
        None
    }
}

/// A required password field checked by the password rules, or the 400 answer.
fn required_password<'a>(obj: &'a Object, field: &str) -> Result<&'a str, Reject> {
    let password = required_str(obj, field)?;
    match password_problem(password) {
        Some(problem) => Err(Box::new(invalid(field, problem))),
        None => Ok(password),
    }
}

/// `POST /v1/account`.
fn request_code(st: &mut WaState, body: &[u8]) -> Response {
    st.account_requests.push(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    );
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let check = || -> Result<(), Reject> {
        let cc = required_str(&obj, "cc")?;
        if !all_digits(cc) || cc.len() > 3 || cc.starts_with('0') {
            return Err(Box::new(invalid(
                "cc",
                "must be 1 to 3 digits, not starting with 0",
            )));
        }
        let number = required_str(&obj, "phone_number")?;
        if !all_digits(number) {
            return Err(Box::new(invalid("phone_number", "must be digits only")));
        }
        if cc.len() + number.len() > 15 {
            return Err(Box::new(invalid(
                "phone_number",
                "with the country code, at most 15 digits",
            )));
        }
        let method = required_str(&obj, "method")?;
        if method != "sms" && method != "voice" {
            return Err(Box::new(invalid("method", "must be \"sms\" or \"voice\"")));
        }
        let cert = required_str(&obj, "cert")?;
        if cert.is_empty()
            || base64::engine::general_purpose::STANDARD
                .decode(cert)
                .is_err()
        {
            return Err(Box::new(invalid("cert", "must be the base64 certificate")));
        }
        match obj.get("pin") {
            None | Some(Value::Null) => {}
            Some(Value::String(pin)) if pin.len() == 6 && all_digits(pin) => {}
            Some(_) => return Err(Box::new(invalid("pin", "must be 6 digits"))),
        }
        Ok(())
    };
    if let Err(resp) = check() {
        return *resp;
    }
    if st.registered {
        return ok_meta(201);
    }
    st.code_pending = true;
    json_response(
        202,
        &json!({"account": [{"vname": st.verified_name}], "meta": meta()}),
    )
}

/// `POST /v1/account/verify`.
fn verify_code(st: &mut WaState, body: &[u8]) -> Response {
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let code = match required_str(&obj, "code") {
        Ok(code) => code,
        Err(resp) => return *resp,
    };
    if !st.code_pending {
        let details = if st.registered {
            "Already registered: no verification code pending"
        } else {
            "No verification code pending: request one with POST /v1/account"
        };
        return error_with(400, CODE_GENERIC, "Generic error", details);
    }
    if code != st.verification_code {
        return error_with(
            400,
            CODE_WRONG_VERIFICATION_CODE,
            "Incorrect verification code",
            "code: does not match the code sent",
        );
    }
    st.code_pending = false;
    st.registered = true;
    ok_meta(201)
}

/// Objects merge key by key; anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn valid_webhook_url(url: &str) -> bool {
    if url.is_empty() {
        return true;
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `PATCH /v1/settings/application`.
fn patch_settings(st: &mut WaState, body: &[u8]) -> Response {
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    match obj.get("webhooks") {
        None => {}
        Some(Value::Object(webhooks)) => match webhooks.get("url") {
            None => {}
            Some(Value::String(url)) if valid_webhook_url(url) => {}
            Some(_) => {
                return invalid(
                    "webhooks.url",
                    "must be empty or an http:// or https:// URL",
                )
            }
        },
        Some(_) => return invalid("webhooks", "must be an object"),
    }
    merge(&mut st.application_settings, &Value::Object(obj));
    ok_meta(200)
}

fn valid_username(name: &str) -> bool {
    let len = name.chars().count();
    (1..=64).contains(&len)
        && !name
            .chars()
            .any(|c| matches!(c, ':' | '/' | '%') || c.is_whitespace() || c.is_control())
}

/// `POST /v1/users`.
fn create_user(st: &mut WaState, body: &[u8]) -> Response {
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let username = match required_str(&obj, "username") {
        Ok(name) if valid_username(name) => name,
        Ok(_) => {
            return invalid(
                "username",
                "must be 1 to 64 characters without ':', '/', '%' or whitespace",
            )
        }
        Err(resp) => return *resp,
    };
    let password = match required_password(&obj, "password") {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    if st.users.contains_key(username) {
        return error_with(
            409,
            CODE_ALREADY_EXISTS,
            "Resource already exists",
            &format!("User {username} already exists"),
        );
    }
    st.users
        .insert(username.to_owned(), User::new(username, password));
    json_response(
        201,
        &json!({"users": [{"username": username}], "meta": meta()}),
    )
}

/// `GET`, `PUT` and `DELETE /v1/users/{name}`.
fn one_user(st: &mut WaState, method: &str, name: &str, body: &[u8]) -> Response {
    if !st.users.contains_key(name) {
        return error_response(404, &format!("No user {name}"));
    }
    match method {
        "GET" => json_response(200, &json!({"users": [{"username": name}], "meta": meta()})),
        "PUT" => {
            let obj = match json_object(body) {
                Ok(obj) => obj,
                Err(resp) => return *resp,
            };
            let password = match required_password(&obj, "password") {
                Ok(p) => p.to_owned(),
                Err(resp) => return *resp,
            };
            if let Some(user) = st.users.get_mut(name) {
                user.password = password;
                user.must_change = false;
            }
            if name == ADMIN_USERNAME {
                st.admin_password_changed = true;
            }
            ok_meta(200)
        }
        _ => {
            if name == ADMIN_USERNAME {
                return invalid("username", "the built-in admin cannot be deleted");
            }
            st.users.remove(name);
            st.tokens.retain(|_, user| user != name);
            ok_meta(200)
        }
    }
}

/// `POST /v1/users/login`: see the module documentation.
fn login(state: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    // `None`: no body at all; `Some(Err)`: not JSON.
    let parsed =
        (!body.iter().all(u8::is_ascii_whitespace)).then(|| serde_json::from_slice::<Value>(body));
    let mut st = lock(state);
    if let Some(Ok(v)) = &parsed {
        if let Some(p) = v.get("new_password").and_then(Value::as_str) {
            st.new_passwords.push(p.to_owned());
        }
    }
    let Some((user, password)) = basic_auth(headers) else {
        return error_response(401, "Missing or malformed HTTP Basic credentials");
    };
    let Some(must_change) = st
        .users
        .get(&user)
        .filter(|u| u.password == password)
        .map(|u| u.must_change)
    else {
        return error_response(401, "Invalid username or password");
    };
    let new_password = match &parsed {
        None => None,
        Some(Ok(Value::Object(obj))) => match obj.get("new_password") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return invalid("new_password", "must be a string"),
        },
        Some(_) => return invalid("body", "must be a JSON object"),
    };
    match new_password {
        None if must_change => {
            return error_with(
                400,
                CODE_ACCESS_DENIED,
                "Access denied",
                PASSWORD_CHANGE_REQUIRED,
            )
        }
        None => {}
        Some(p) => {
            if let Some(problem) = password_problem(&p) {
                return invalid("new_password", problem);
            }
            if let Some(u) = st.users.get_mut(&user) {
                u.password = p;
                u.must_change = false;
            }
            if user == ADMIN_USERNAME {
                st.admin_password_changed = true;
            }
        }
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

    // --- Provisioning a fresh install ---------------------------------------------------

    const ADMIN_PW: &str = "N3w-Admin-Pass!";
    const API_PW: &str = "Api-User-Pa55";
    const API_PW2: &str = "Other+Pa55word";
    /// Base64 (standard alphabet, padded) of some bytes, as a certificate file holds.
    const CERT: &str = "CmgKJAiN+/8BEgZlbnQ6d2EiC0FjbWUgR21iSFB+c2VydmVyAA==";

    /// Talks to a fake over plain HTTP, or over HTTPS trusting only its certificate.
    struct Api {
        http: reqwest::Client,
        url: String,
    }

    impl Api {
        fn new(wa: &FakeWhatsApp) -> Self {
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

        async fn login(&self, user: &str, password: &str, body: Option<Value>) -> (u16, Value) {
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
        async fn token(&self, user: &str, password: &str) -> String {
            let (status, body) = self.login(user, password, None).await;
            assert_eq!(status, 200, "{body}");
            body["users"][0]["token"].as_str().unwrap().to_owned()
        }

        async fn call(
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

        async fn raw(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
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
    fn error_of(body: &Value) -> (u64, String, String) {
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

    fn account_body() -> Value {
        json!({"cc": "49", "phone_number": "15112345678", "method": "sms", "cert": CERT})
    }

    async fn gateway_status(api: &Api, token: &str) -> Value {
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
        assert!(!wa.password_changed());
        assert!(!wa.registered());
        assert_eq!(wa.usernames(), vec!["admin"]);

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
        assert!(wa.password_changed());
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
        assert!(wa.verification_pending());
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
        assert!(!wa.registered() && wa.verification_pending());
        assert_eq!(gateway_status(&api, &admin).await, "unregistered");
        let (status, answer) = api
            .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "123456"})))
            .await;
        assert_eq!(status, 201, "{answer}");
        assert!(wa.registered() && !wa.verification_pending());
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
        assert_eq!(&wa.application_settings(), settings);

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
        assert_eq!(wa.usernames(), vec!["admin", "loyjoy"]);
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
            ("DELETE", "/v1/users/admin", json!({})),
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

        // Deleted: its tokens go too.
        let (status, _) = api.call("DELETE", "/v1/users/loyjoy", &admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(wa.usernames(), vec!["admin"]);
        assert_eq!(api.call("GET", HEALTH_PATH, &user, None).await.0, 401);
        assert_eq!(api.login("loyjoy", API_PW2, None).await.0, 401);
        let (status, answer) = api.call("DELETE", "/v1/users/loyjoy", &admin, None).await;
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

    #[test]
    fn password_rules() {
        assert_eq!(password_problem("Aa1!aaaa"), None);
        assert_eq!(password_problem(&format!("Aa1!{}", "x".repeat(60))), None);
        assert_eq!(password_problem("Aa1 aaaa"), None, "a space is special");
        for (password, rule) in [
            ("Aa1!aaa", "at least 8"),
            (&*format!("Aa1!{}", "x".repeat(61)), "at most 64"),
            ("aa1!aaaa", "upper-case"),
            ("AA1!AAAA", "lower-case"),
            ("Aab!aaaa", "digit"),
            ("Aa1aaaaa", "special"),
            ("", "at least 8"),
        ] {
            let problem = password_problem(password).unwrap_or("none");
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
        assert!(!wa.password_changed());

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
        assert!(!wa.verification_pending());

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
        wa.add_user("api", API_PW);
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
        assert!(wa.verification_pending());
    }

    #[tokio::test]
    async fn scripted_registration() {
        let wa = FakeWhatsApp::start_fresh(false).await;
        let api = Api::new(&wa);
        api.login("admin", "secret", Some(json!({"new_password": ADMIN_PW})))
            .await;
        let admin = api.token("admin", ADMIN_PW).await;
        wa.set_verified_name("Beispiel AG");
        wa.set_verification_code("654321");
        let (status, answer) = api
            .call("POST", ACCOUNT_PATH, &admin, Some(account_body()))
            .await;
        assert_eq!(
            (status, &answer["account"][0]["vname"]),
            (202, &json!("Beispiel AG"))
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
        assert!(!wa.verification_pending());
        let (status, answer) = api
            .call("POST", VERIFY_PATH, &admin, Some(json!({"code": "123456"})))
            .await;
        assert_eq!((status, error_of(&answer).0), (400, 1000));
        // An explicit health wins until reset.
        wa.set_health(Health::Single("disconnected"));
        wa.set_registered(false);
        assert_eq!(gateway_status(&api, &admin).await, "disconnected");
        wa.reset_health();
        assert_eq!(gateway_status(&api, &admin).await, "unregistered");
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
        assert_eq!(wa.application_settings(), default_application_settings());
        let (status, _) = api
            .call(
                "PATCH",
                SETTINGS_PATH,
                &admin,
                Some(
                    json!({"webhooks": {"url": "http://10.0.0.1:8080/hook"}, "sent_status": true}),
                ),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            wa.webhook_url().as_deref(),
            Some("http://10.0.0.1:8080/hook")
        );
        assert_eq!(wa.application_settings()["sent_status"], true);
        assert_eq!(wa.application_settings()["heartbeat_interval"], 5);
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
        assert_eq!(wa.usernames(), vec!["admin"]);
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

        wa.add_user("loyjoy", API_PW);
        let (status, answer) = api.call("GET", "/v1/users/loyjoy", &admin, None).await;
        assert_eq!(
            (status, &answer["users"][0]["username"]),
            (200, &json!("loyjoy"))
        );
        let (status, answer) = api.call("GET", "/v1/users/nobody", &admin, None).await;
        assert_eq!((status, error_of(&answer).0), (404, 1006));
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
        let (status, answer) = api.call("DELETE", "/v1/users/admin", &admin, None).await;
        assert_eq!((status, error_of(&answer).0), (400, 1009));

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
        assert!(wa.password_changed());
        assert_eq!(wa.user_password("nobody"), None);
    }

    #[tokio::test]
    async fn started_fakes_are_registered_and_admin_is_admin() {
        let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
        let api = Api::new(&wa);
        assert!(wa.registered());
        assert!(!wa.password_changed());
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
}
