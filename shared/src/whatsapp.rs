//! A client for the WhatsApp Business API on-premises client (`/v1/...`): login, health in
//! both its shapes, the probe endpoints, typed errors from the API's `errors` body.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use url::Url;

use crate::google::error::describe_reqwest;
use crate::limits::{quote, read_body, too_large_words, BodyError};

/// One entry of the API's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub details: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = self.code {
            write!(f, "{c} ")?;
        }
        f.write_str(self.title.as_deref().unwrap_or("error"))?;
        if let Some(d) = self.details.as_deref().filter(|d| !d.is_empty()) {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// What went wrong talking to the WhatsApp client. Never carries a password or token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WaError {
    #[error("{what} timed out after {} ms", timeout.as_millis())]
    Timeout { what: String, timeout: Duration },
    #[error("{what} failed: {detail}")]
    Unreachable { what: String, detail: String },
    #[error("{what} answered {status}{}", fmt_errors(errors))]
    Api {
        what: String,
        status: u16,
        errors: Vec<ApiError>,
    },
    #[error("{what} answered {detail}")]
    BadBody { what: String, detail: String },
    /// A body longer than [`MAX_ANSWER_BYTES`](crate::limits::MAX_ANSWER_BYTES), not read.
    #[error(
        "{what} answered {status} with {}: not read further",
        too_large_words()
    )]
    TooLarge { what: String, status: u16 },
    /// Any 3xx: redirects are never followed (they would take credentials elsewhere).
    #[error("{what} answered {status}, a redirect{}: redirects are not followed", location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default())]
    Redirect {
        what: String,
        status: u16,
        location: Option<String>,
    },
    /// The TLS certificate was refused: not trusted by the roots, or not the pinned one.
    #[error("{what}: the client's TLS certificate was refused ({detail})")]
    Certificate { what: String, detail: String },
}

fn fmt_errors(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(": {}", parts.join("; "))
    }
}

impl WaError {
    /// The API's first error code, e.g. 1005 (access denied).
    pub fn api_code(&self) -> Option<i64> {
        match self {
            WaError::Api { errors, .. } => errors.first().and_then(|e| e.code),
            _ => None,
        }
    }
    /// The HTTP status, when the client answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            WaError::Api { status, .. }
            | WaError::TooLarge { status, .. }
            | WaError::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A logged-in session: the bearer token (7 days valid).
pub struct Session {
    pub token: SecretString,
    pub expires_after: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &"[REDACTED]")
            .field("expires_after", &self.expires_after)
            .finish()
    }
}

/// `GET /v1/health`, in either of its shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `{"health": {"gateway_status": S}}`
    Single { gateway_status: String },
    /// `{"health": {"<host>:<container>": {"gateway_status": S, "role": R}, ...}}`
    Nodes(Vec<Node>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub gateway_status: String,
    pub role: Option<String>,
}

/// What the health answer says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthState {
    Up(String),
    /// Down: a restart should help.
    Down(String),
    /// The number is not registered: a person must act, a reset does not help.
    Unregistered(String),
}

fn is_good(status: &str) -> bool {
    status.eq_ignore_ascii_case("connected") || status.eq_ignore_ascii_case("connecting")
}

fn is_unregistered(status: &str) -> bool {
    status.eq_ignore_ascii_case("unregistered")
}

impl Health {
    pub fn parse(body: &Value) -> Result<Health, String> {
        let health = body
            .get("health")
            .ok_or("no `health` field")?
            .as_object()
            .ok_or("`health` is not an object")?;
        if let Some(s) = health.get("gateway_status") {
            let s = s
                .as_str()
                .ok_or("`health.gateway_status` is not a string")?;
            return Ok(Health::Single {
                gateway_status: quote(s),
            });
        }
        let mut nodes = Vec::new();
        for (name, node) in health {
            let Some(status) = node.get("gateway_status").and_then(Value::as_str) else {
                continue;
            };
            nodes.push(Node {
                name: quote(name),
                gateway_status: quote(status),
                role: node.get("role").and_then(Value::as_str).map(quote),
            });
        }
        if nodes.is_empty() {
            return Err("`health` has neither `gateway_status` nor nodes with one".into());
        }
        Ok(Health::Nodes(nodes))
    }

    /// `connected`/`connecting` are good; a multi-node client is up when one `coreapp` is;
    /// `unregistered` anywhere needs a person.
    pub fn state(&self) -> HealthState {
        match self {
            Health::Single { gateway_status: s } if is_unregistered(s) => {
                HealthState::Unregistered("gateway_status is unregistered".into())
            }
            Health::Single { gateway_status: s } if is_good(s) => {
                HealthState::Up(format!("gateway_status is {s}"))
            }
            Health::Single { gateway_status: s } => {
                HealthState::Down(format!("gateway_status is {s}"))
            }
            Health::Nodes(nodes) => {
                if let Some(n) = nodes.iter().find(|n| is_unregistered(&n.gateway_status)) {
                    return HealthState::Unregistered(format!("node {} is unregistered", n.name));
                }
                let coreapps: Vec<&Node> = nodes
                    .iter()
                    .filter(|n| {
                        n.role
                            .as_deref()
                            .is_some_and(|r| r.eq_ignore_ascii_case("coreapp"))
                    })
                    .collect();
                if let Some(n) = coreapps.iter().find(|n| is_good(&n.gateway_status)) {
                    return HealthState::Up(format!(
                        "coreapp {} is {} ({} nodes)",
                        n.name,
                        n.gateway_status,
                        nodes.len()
                    ));
                }
                let seen: Vec<String> = nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{} {} {}",
                            n.name,
                            n.role.as_deref().unwrap_or("?"),
                            n.gateway_status
                        )
                    })
                    .collect();
                HealthState::Down(format!(
                    "no coreapp node is connected ({})",
                    seen.join(", ")
                ))
            }
        }
    }
}

/// A client for one WhatsApp installation.
#[derive(Debug, Clone)]
pub struct WhatsAppClient {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl WhatsAppClient {
    /// `base` is the API's root (`http://host:port`); `timeout` bounds every request.
    pub fn new(http: reqwest::Client, base: Url, timeout: Duration) -> Self {
        WhatsAppClient {
            http,
            base,
            timeout,
        }
    }

    /// A reqwest client fit for talking to WhatsApp clients (no proxy, no redirects, small
    /// connection pool).
    pub fn http_client() -> reqwest::Client {
        Self::http_client_builder().build().unwrap_or_default()
    }

    /// What [`http_client`](Self::http_client) is built from, for a client of its own (a
    /// pinned certificate, a pinned name resolution).
    pub fn http_client_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .user_agent(concat!("whatsapp-keepalive/", env!("CARGO_PKG_VERSION")))
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// `POST /v1/users/login` with HTTP Basic credentials.
    pub async fn login(&self, username: &str, password: &SecretString) -> Result<Session, WaError> {
        self.login_inner(username, password, None).await
    }

    /// First login of the built-in admin, setting its new password.
    pub async fn login_with_new_password(
        &self,
        username: &str,
        password: &SecretString,
        new_password: &SecretString,
    ) -> Result<Session, WaError> {
        self.login_inner(username, password, Some(new_password))
            .await
    }

    async fn login_inner(
        &self,
        username: &str,
        password: &SecretString,
        new_password: Option<&SecretString>,
    ) -> Result<Session, WaError> {
        let what = "POST /v1/users/login";
        let mut req = self
            .http
            .post(self.url("/v1/users/login"))
            .timeout(self.timeout)
            .basic_auth(username, Some(password.expose_secret()));
        req = match new_password {
            Some(p) => req.json(&serde_json::json!({"new_password": p.expose_secret()})),
            None => req.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        let (_, body) = self.send(what, req).await?;
        let users = body.get("users").and_then(|u| u.get(0));
        let token = users
            .and_then(|u| u.get("token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WaError::BadBody {
                what: what.into(),
                detail: "200 without users[0].token".into(),
            })?;
        Ok(Session {
            token: SecretString::from(token.to_string()),
            expires_after: users
                .and_then(|u| u.get("expires_after"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// Any authenticated call; a 2xx with a JSON body (an empty body counts as `{}`).
    pub async fn call(
        &self,
        token: &SecretString,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WaError> {
        self.call_with_status(token, method, path, body)
            .await
            .map(|(_, v)| v)
    }

    /// Like [`call`](Self::call), with the 2xx status (202 and 201 mean different things for
    /// `POST /v1/account`).
    pub async fn call_with_status(
        &self,
        token: &SecretString,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), WaError> {
        let what = format!("{method} {path}");
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .timeout(self.timeout)
            .bearer_auth(token.expose_secret());
        req = match body {
            Some(b) => req.json(b),
            None if method != Method::GET => req.header(reqwest::header::CONTENT_LENGTH, "0"),
            None => req,
        };
        self.send(&what, req).await
    }

    pub async fn health(&self, token: &SecretString) -> Result<Health, WaError> {
        let body = self.call(token, Method::GET, "/v1/health", None).await?;
        Health::parse(&body).map_err(|detail| WaError::BadBody {
            what: "GET /v1/health".into(),
            detail,
        })
    }

    /// Sends `req`; a 2xx answers its status and JSON body (an empty body counts as `{}`).
    /// The body is read to at most 256 KiB; a 3xx is an error, never followed.
    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), WaError> {
        let resp = req.send().await.map_err(|e| self.transport(what, &e))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| quote(&String::from_utf8_lossy(l.as_bytes())));
            return Err(WaError::Redirect {
                what: what.into(),
                status,
                location,
            });
        }
        let bytes = match read_body(resp).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Err(WaError::TooLarge {
                    what: what.into(),
                    status,
                })
            }
            Err(BodyError::Transport(e)) => return Err(self.transport(what, &e)),
        };
        if !(200..300).contains(&status) {
            return Err(WaError::Api {
                what: what.into(),
                status,
                errors: parse_errors(&bytes),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Object(Default::default())));
        }
        let value = serde_json::from_slice(&bytes).map_err(|_| WaError::BadBody {
            what: what.into(),
            detail: format!("{status} with a body that is not JSON"),
        })?;
        Ok((status, value))
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> WaError {
        if let Some(detail) = certificate_problem(e) {
            WaError::Certificate {
                what: what.into(),
                detail,
            }
        } else if e.is_timeout() {
            WaError::Timeout {
                what: what.into(),
                timeout: self.timeout,
            }
        } else {
            WaError::Unreachable {
                what: what.into(),
                detail: describe_reqwest(e),
            }
        }
    }
}

/// What rustls said about a refused certificate, if that is why `e` failed. (An
/// `io::Error`'s `source()` skips the error it wraps, so that one is opened instead.)
fn certificate_problem(e: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(rustls::Error::InvalidCertificate(c)) = err.downcast_ref::<rustls::Error>() {
            return Some(quote(&match c {
                rustls::CertificateError::Other(other) => other.0.to_string(),
                c => format!("{c:?}"),
            }));
        }
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// The API's `{"errors": [{"code", "title", "details"}]}`; empty when the body is otherwise.
/// Titles and details are quoted: cut to 300 characters.
pub fn parse_errors(body: &[u8]) -> Vec<ApiError> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v.get("errors")
        .and_then(Value::as_array)
        .map(|errs| {
            errs.iter()
                .map(|e| ApiError {
                    code: e.get("code").and_then(Value::as_i64),
                    title: e.get("title").and_then(Value::as_str).map(quote),
                    details: e.get("details").and_then(Value::as_str).map(quote),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(v: Value) -> HealthState {
        Health::parse(&v).unwrap().state()
    }

    #[test]
    fn single_instance_statuses() {
        for (s, up) in [
            ("connected", Some(true)),
            ("connecting", Some(true)),
            ("uninitialized", Some(false)),
            ("disconnected", Some(false)),
            ("unregistered", None),
        ] {
            let st = state(json!({"health": {"gateway_status": s}, "meta": {}}));
            match up {
                Some(true) => assert!(matches!(st, HealthState::Up(_)), "{s}"),
                Some(false) => assert!(matches!(st, HealthState::Down(_)), "{s}"),
                None => assert!(matches!(st, HealthState::Unregistered(_)), "{s}"),
            }
        }
    }

    #[test]
    fn high_availability_is_up_with_one_coreapp_connected() {
        let st = state(json!({"health": {
            "wa-1:primary_master": {"gateway_status": "disconnected", "role": "primary_master"},
            "wa-2:secondary_master": {"gateway_status": "disconnected", "role": "secondary_master"},
            "wa-3:coreapp": {"gateway_status": "connected", "role": "coreapp"},
            "wa-4:coreapp": {"gateway_status": "disconnected", "role": "coreapp"}
        }}));
        assert!(matches!(st, HealthState::Up(_)), "{st:?}");
    }

    #[test]
    fn multi_node_down_and_unregistered() {
        let st = state(json!({"health": {
            "wa-1:primary_master": {"gateway_status": "connected", "role": "primary_master"},
            "wa-3:coreapp": {"gateway_status": "disconnected", "role": "coreapp"}
        }}));
        assert!(
            matches!(st, HealthState::Down(ref r) if r.contains("no coreapp")),
            "{st:?}"
        );
        let st = state(json!({"health": {
            "wa-3:coreapp": {"gateway_status": "connected", "role": "coreapp"},
            "wa-4:coreapp": {"gateway_status": "unregistered", "role": "coreapp"}
        }}));
        assert!(matches!(st, HealthState::Unregistered(_)), "{st:?}");
    }

    #[test]
    fn malformed_health_is_an_error() {
        for v in [
            json!({}),
            json!({"health": 1}),
            json!({"health": {"gateway_status": 3}}),
            json!({"health": {}}),
        ] {
            assert!(Health::parse(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn errors_body_is_typed() {
        let errs = parse_errors(
            br#"{"errors":[{"code":1005,"title":"Access denied","details":"Invalid credentials"}],"meta":{}}"#,
        );
        assert_eq!(errs[0].code, Some(1005));
        let e = WaError::Api {
            what: "POST /v1/users/login".into(),
            status: 401,
            errors: errs,
        };
        assert_eq!(
            e.to_string(),
            "POST /v1/users/login answered 401: 1005 Access denied: Invalid credentials"
        );
        assert_eq!(e.api_code(), Some(1005));
    }

    #[test]
    fn url_keeps_a_base_path() {
        let c = WhatsAppClient::new(
            reqwest::Client::new(),
            Url::parse("http://h:1/base").unwrap(),
            Duration::from_secs(1),
        );
        assert_eq!(c.url("/v1/health").as_str(), "http://h:1/base/v1/health");
        let c = WhatsAppClient::new(
            reqwest::Client::new(),
            Url::parse("http://h:1/").unwrap(),
            Duration::from_secs(1),
        );
        assert_eq!(c.url("/v1/health").as_str(), "http://h:1/v1/health");
    }
}
