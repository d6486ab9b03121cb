//! [`GraphClient`]: one HTTP layer for the Graph API. The token goes only in
//! `Authorization: Bearer` (and as `debug_token`'s `input_token`); every answer is read to at
//! most [`MAX_ANSWER_BYTES`]; reads are retried within the caller's deadline, the calls that
//! change a registration are sent once.

use futures::future::BoxFuture;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

use super::types::{CodeMethod, PhoneNumber, RegisterBackup, SubscribedApp, TokenInfo};
use super::{GraphError, PHONE_NUMBER_FIELDS};
use crate::google::client::url_with_segments;
use crate::google::error::describe_reqwest;
use crate::google::RetryPolicy;

/// The most of any answer the client reads; a longer one is an error, not read further.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// How the client pauses between retries (injectable so tests need not wait).
pub type SleepFn = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// A client for the Graph API at one base URL and version.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    version: String,
    timeout: Duration,
    retry: RetryPolicy,
    sleep: SleepFn,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base.as_str())
            .field("version", &self.version)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// `base` is the Graph root (`https://graph.facebook.com`), `version` the path prefix
    /// (`v26.0`), `timeout` bounds each request (a request never outlives the caller's
    /// deadline either). Retries follow [`RetryPolicy::default`] until
    /// [`with_retry`](Self::with_retry).
    pub fn new(
        http: reqwest::Client,
        base: Url,
        version: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        GraphClient {
            http,
            base,
            version: version.into(),
            timeout,
            retry: RetryPolicy::default(),
            sleep: Arc::new(|d| Box::pin(tokio::time::sleep(d))),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_sleep(mut self, sleep: SleepFn) -> Self {
        self.sleep = sleep;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A reqwest client fit for the Graph API: no redirects (a redirect would carry the
    /// token elsewhere), no proxy from the environment, `TCP_NODELAY`.
    pub fn http_client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(32)
            .user_agent(concat!("whatsapp-keepalive/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// `{base}/{version}/{segments...}`, each segment escaped.
    pub fn url(&self, segments: &[&str]) -> Url {
        url_with_segments(
            &self.base,
            std::iter::once(self.version.as_str()).chain(segments.iter().copied()),
        )
    }

    /// `GET /{PHONE_NUMBER_ID}?fields=` [`PHONE_NUMBER_FIELDS`]; retried.
    pub async fn phone_number(
        &self,
        token: &SecretString,
        phone_number_id: &str,
        deadline: Option<Instant>,
    ) -> Result<PhoneNumber, GraphError> {
        check_id("phone number id", phone_number_id)?;
        self.read(
            token,
            &[phone_number_id],
            &[("fields", PHONE_NUMBER_FIELDS)],
            deadline,
        )
        .await
    }

    /// `GET /{WABA_ID}/subscribed_apps`; retried.
    pub async fn subscribed_apps(
        &self,
        token: &SecretString,
        waba_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<SubscribedApp>, GraphError> {
        check_id("WABA id", waba_id)?;
        let body: Value = self
            .read(token, &[waba_id, "subscribed_apps"], &[], deadline)
            .await?;
        SubscribedApp::parse_list(&body).map_err(|detail| GraphError::Decode {
            what: format!("GET {waba_id}/subscribed_apps"),
            detail,
        })
    }

    /// `GET /debug_token?input_token=<token>` with the same token as bearer; retried.
    pub async fn debug_token(
        &self,
        token: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<TokenInfo, GraphError> {
        let mut body: Value = self
            .read(
                token,
                &["debug_token"],
                &[("input_token", token.expose_secret())],
                deadline,
            )
            .await?;
        let data = body
            .get_mut("data")
            .map(Value::take)
            .ok_or_else(|| GraphError::Decode {
                what: "GET debug_token".into(),
                detail: "no `data` object".into(),
            })?;
        decode("GET debug_token", data)
    }

    /// `POST /{WABA_ID}/subscribed_apps` (no body): subscribes the token's app. Idempotent,
    /// so retried.
    pub async fn subscribe_app(
        &self,
        token: &SecretString,
        waba_id: &str,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        check_id("WABA id", waba_id)?;
        let segments = [waba_id, "subscribed_apps"];
        self.retrying(deadline, || {
            self.send_success(token, &segments, None, deadline)
        })
        .await
    }

    /// `POST /{PHONE_NUMBER_ID}` `{"webhook_configuration": {"override_callback_uri",
    /// "verify_token"}}`: the number's override (`""` clears it). Meta runs the handshake
    /// against `url` first. Idempotent, so retried.
    pub async fn set_webhook_override(
        &self,
        token: &SecretString,
        phone_number_id: &str,
        url: &str,
        verify_token: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        check_id("phone number id", phone_number_id)?;
        let body = json!({"webhook_configuration": {
            "override_callback_uri": url,
            "verify_token": verify_token.expose_secret(),
        }});
        let segments = [phone_number_id];
        self.retrying(deadline, || {
            self.send_success(token, &segments, Some(&body), deadline)
        })
        .await
        .map_err(|e| e.redact(verify_token.expose_secret()))
    }

    /// `POST /{id}/request_code`. Sent once: never retried.
    pub async fn request_code(
        &self,
        token: &SecretString,
        phone_number_id: &str,
        method: CodeMethod,
        language: &str,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        let body = json!({"code_method": method.as_str(), "language": language});
        self.post_once(token, phone_number_id, "request_code", &body, deadline)
            .await
    }

    /// `POST /{id}/verify_code`. Sent once: never retried.
    pub async fn verify_code(
        &self,
        token: &SecretString,
        phone_number_id: &str,
        code: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        let body = json!({"code": code.expose_secret()});
        self.post_once(token, phone_number_id, "verify_code", &body, deadline)
            .await
            .map_err(|e| e.redact(code.expose_secret()))
    }

    /// `POST /{phone_number_id}/{action}` with `body`, sent once.
    async fn post_once(
        &self,
        token: &SecretString,
        phone_number_id: &str,
        action: &str,
        body: &serde_json::Value,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        check_id("phone number id", phone_number_id)?;
        self.send_success(token, &[phone_number_id, action], Some(body), deadline)
            .await
    }

    /// `POST /{id}/register` with the two-step PIN and, for a migration, the On-Premises
    /// backup. Sent once, never retried: Meta allows 10 per number in 72 hours. A timeout
    /// does not say whether Meta registered the number: read `platform_type` before trying
    /// again.
    pub async fn register(
        &self,
        token: &SecretString,
        phone_number_id: &str,
        pin: &SecretString,
        backup: Option<&RegisterBackup>,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        check_id("phone number id", phone_number_id)?;
        let mut body = json!({"messaging_product": "whatsapp", "pin": pin.expose_secret()});
        if let Some(b) = backup {
            body["backup"] = json!({
                "data": b.data.expose_secret(),
                "password": b.password.expose_secret(),
            });
        }
        let mut result = self
            .send_success(token, &[phone_number_id, "register"], Some(&body), deadline)
            .await
            .map_err(|e| e.redact(pin.expose_secret()));
        if let Some(b) = backup {
            result = result.map_err(|e| {
                e.redact(b.data.expose_secret())
                    .redact(b.password.expose_secret())
            });
        }
        result
    }

    /// `POST /{id}` `{"pin"}`: sets or changes the two-step PIN. Sent once: never retried.
    pub async fn set_pin(
        &self,
        token: &SecretString,
        phone_number_id: &str,
        pin: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        check_id("phone number id", phone_number_id)?;
        let body = json!({"pin": pin.expose_secret()});
        self.send_success(token, &[phone_number_id], Some(&body), deadline)
            .await
            .map_err(|e| e.redact(pin.expose_secret()))
    }

    /// A GET of `{version}/{segments}?{query}`, retried by the policy within `deadline`, the
    /// answer decoded into `T`.
    pub async fn read<T: DeserializeOwned>(
        &self,
        token: &SecretString,
        segments: &[&str],
        query: &[(&str, &str)],
        deadline: Option<Instant>,
    ) -> Result<T, GraphError> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let what = format!("GET {}", segments.join("/"));
        let value = self
            .retrying(deadline, || {
                self.attempt(token, Method::GET, &url, &what, None, deadline)
            })
            .await?;
        decode(&what, value).map_err(|e| e.redact(token.expose_secret()))
    }

    /// One request, never retried; the answer decoded into `T` (an empty body reads `{}`).
    pub async fn send_once<T: DeserializeOwned>(
        &self,
        token: &SecretString,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        deadline: Option<Instant>,
    ) -> Result<T, GraphError> {
        let what = format!("{method} {}", segments.join("/"));
        let value = self
            .attempt(
                token,
                method,
                &self.url(segments),
                &what,
                body.map(RequestBody::Json),
                deadline,
            )
            .await?;
        decode(&what, value).map_err(|e| e.redact(token.expose_secret()))
    }

    /// A POST that must answer `{"success": true}`; one attempt.
    async fn send_success(
        &self,
        token: &SecretString,
        segments: &[&str],
        body: Option<&Value>,
        deadline: Option<Instant>,
    ) -> Result<(), GraphError> {
        let answer: Value = self
            .send_once(token, Method::POST, segments, body, deadline)
            .await?;
        if answer.get("success").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(GraphError::Decode {
                what: format!("POST {}", segments.join("/")),
                detail: "2xx without `success: true`".into(),
            })
        }
    }

    /// Pauses between retries (the injected sleep).
    pub(crate) async fn pause(&self, d: Duration) {
        (self.sleep)(d).await;
    }

    /// Runs `op` until it succeeds, fails for good, runs out of attempts, or the next pause
    /// would end past `deadline`.
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        deadline: Option<Instant>,
        mut op: F,
    ) -> Result<T, GraphError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GraphError>>,
    {
        let mut attempt = 1;
        // The last answer Graph gave: when the deadline cuts the final attempt short, that
        // answer (say, 80007) says more than "timed out".
        let mut last_answer: Option<GraphError> = None;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() || attempt >= self.retry.max_attempts => {
                    return Err(prefer_answer(e, last_answer))
                }
                Err(e) => {
                    let pause = self.retry.backoff(attempt);
                    // No attempt squeezed into the last moments: it could only time out.
                    if deadline.is_some_and(|d| Instant::now() + pause + MIN_ATTEMPT >= d) {
                        return Err(prefer_answer(e, last_answer));
                    }
                    if matches!(e, GraphError::Api(_)) {
                        last_answer = Some(e.clone());
                    }
                    tracing::warn!(error = %e, attempt, pause_ms = pause.as_millis() as u64, "retrying Graph API call");
                    self.pause(pause).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One request: bearer token, timeout bounded by the deadline, answer bounded, a non-2xx
    /// read into [`GraphError`]. Every error is cleaned of the token.
    pub(crate) async fn attempt(
        &self,
        token: &SecretString,
        method: Method,
        url: &Url,
        what: &str,
        body: Option<RequestBody<'_>>,
        deadline: Option<Instant>,
    ) -> Result<Value, GraphError> {
        self.attempt_inner(token, method, url, what, body, deadline)
            .await
            .map_err(|e| e.redact(token.expose_secret()))
    }

    async fn attempt_inner(
        &self,
        token: &SecretString,
        method: Method,
        url: &Url,
        what: &str,
        body: Option<RequestBody<'_>>,
        deadline: Option<Instant>,
    ) -> Result<Value, GraphError> {
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(GraphError::Deadline { what: what.into() });
                }
                left.min(self.timeout)
            }
            None => self.timeout,
        };
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .timeout(timeout)
            .bearer_auth(token.expose_secret());
        req = match body {
            Some(RequestBody::Json(b)) => req.json(b),
            Some(RequestBody::Form(f)) => req
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(f.to_owned()),
            None if method == Method::POST => req.header(reqwest::header::CONTENT_LENGTH, "0"),
            None => req,
        };
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                GraphError::Timeout {
                    what: what.into(),
                    timeout,
                }
            } else {
                GraphError::Transport {
                    what: what.into(),
                    detail: describe_reqwest(&e),
                }
            }
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let too_large = |status: u16| {
            let detail = format!("an answer larger than {} KiB", MAX_ANSWER_BYTES / 1024);
            if (200..300).contains(&status) {
                GraphError::Decode {
                    what: what.into(),
                    detail,
                }
            } else {
                GraphError::from_response(what, status, detail.as_bytes())
            }
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large(status));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large(status));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            return Err(GraphError::from_response(what, status, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&bytes).map_err(|_| GraphError::Decode {
            what: what.into(),
            detail: format!("{status} with a body that is not JSON"),
        })
    }
}

/// A request body: JSON (most calls) or a form (batch).
#[derive(Clone, Copy)]
pub(crate) enum RequestBody<'a> {
    Json(&'a Value),
    Form(&'a str),
}

impl<'a> From<&'a Value> for RequestBody<'a> {
    fn from(v: &'a Value) -> Self {
        RequestBody::Json(v)
    }
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, GraphError> {
    serde_json::from_value(value).map_err(|e| GraphError::Decode {
        what: what.into(),
        detail: e.to_string(),
    })
}

/// Graph ids are digits; anything else is refused before it reaches a URL.
pub(crate) fn check_id(name: &str, id: &str) -> Result<(), GraphError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(GraphError::Invalid {
            what: name.into(),
            detail: format!("{name} must be digits, got {:?}", cut_id(id)),
        })
    }
}

fn cut_id(id: &str) -> String {
    id.chars().take(40).collect()
}

/// The shortest time left for which a retry is still worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// A timeout or deadline after Graph has answered with an error is reported as that answer.
fn prefer_answer(last: GraphError, answer: Option<GraphError>) -> GraphError {
    match (last, answer) {
        (GraphError::Timeout { .. } | GraphError::Deadline { .. }, Some(answer)) => answer,
        (last, _) => last,
    }
}
