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
//! - `new_password` breaking the password rules (8 to 64
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
//! - `PUT /v1/users/{username}` `{password}` (password rules): 200 `{"meta"}`, the user's
//!   password changes (its tokens stay valid). Unknown user: 404 / 1006 "Resource not
//!   found".
//!
//! Health: unless set with [`set_health`](FakeWhatsApp::set_health), a single instance
//! `connected` when registered and `unregistered` before.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use serde_json::{json, Value};

mod answers;
mod backup;
mod register;
mod routes;
mod settings;
mod users;

pub use backup::{backup_matches, BACKUP_PATH};

use crate::server::{lock, HttpServer, SelfSignedCert};

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
/// Creating users (`POST`); `/v1/users/{username}` changes one user's password (`PUT`).
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
    /// Every body `POST /v1/account` received with an admin token.
    account_requests: Vec<Value>,
    /// Every `new_password` a login body carried.
    new_passwords: Vec<String>,
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
    /// Every backup taken: (password, data).
    backups: Vec<(String, String)>,
    /// Meta moved the number to the Cloud API and shut this client down.
    migrated: bool,
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
        let router = Router::new()
            .fallback(routes::handle)
            .with_state(state.clone());
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

    /// What `GET /v1/health` answers from now on, whatever the registration state.
    pub fn set_health(&self, health: Health) {
        lock(&self.state).health = Some(health);
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

    /// Every `new_password` a login body carried (valid or not, whatever the credentials),
    /// oldest first.
    pub fn received_new_passwords(&self) -> Vec<String> {
        lock(&self.state).new_passwords.clone()
    }

    /// The admin's current password (empty if there is no user `admin`).
    pub fn admin_password(&self) -> String {
        self.user_password(ADMIN_USERNAME).unwrap_or_default()
    }

    /// The current password of a user, if it exists.
    pub fn user_password(&self, username: &str) -> Option<String> {
        lock(&self.state)
            .users
            .get(username)
            .map(|u| u.password.clone())
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

    /// Every body `POST /v1/account` received with an admin token (valid or not; a body
    /// that is not JSON as a JSON string), oldest first.
    pub fn account_requests(&self) -> Vec<Value> {
        lock(&self.state).account_requests.clone()
    }

    /// Every backup `POST /v1/settings/backup` produced, as (password, data), oldest first.
    pub fn backups(&self) -> Vec<(String, String)> {
        lock(&self.state).backups.clone()
    }

    /// What Meta does to the client when its number registers on the Cloud API with a
    /// backup: disconnects and shuts it down (health `disconnected`, every other call 503).
    pub fn migrated_away(&self) {
        lock(&self.state).migrated = true;
    }

    /// Whether [`migrated_away`](Self::migrated_away) happened.
    pub fn is_migrated(&self) -> bool {
        lock(&self.state).migrated
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
        account_requests: Vec::new(),
        new_passwords: Vec::new(),
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
        backups: Vec::new(),
        migrated: false,
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

#[cfg(test)]
mod tests;
