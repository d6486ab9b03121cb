//! The one HTTP layer under every Google REST client: bearer token, timeout bounded by the
//! caller's deadline, answers read to at most 256 KiB (`crate::limits`), error bodies read into
//! [`GoogleError`], retries by [`RetryPolicy`] for the requests that say they may be repeated
//! ([`Idempotent`]), and the waits for long-running operations ([`GoogleClient::wait_operation`]).

use reqwest::Method;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

use super::clock::{Clock, SystemClock};
use super::operation::{settle, LongRunningOperation, Pacing, Silent, WaitProgress, Waiter};
use super::{Auth, GoogleError, RetryPolicy};
use crate::limits::{read_body, too_large_words, BodyError};

/// May this request be sent again after a failure that may have reached the server (a 503, a
/// timeout, a lost answer)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent {
    /// Twice has the effect of once: a read, a whole-spec PUT or PATCH, a POST carrying a
    /// `requestId`, a create whose repeat answers `ALREADY_EXISTS` that the caller adopts.
    /// Retried by the client's [`RetryPolicy`].
    Yes,
    /// A repeat could act twice (a new secret version) or meet its own first attempt as
    /// someone else's work. Sent once; the caller decides what a failure means.
    No,
}

/// One call of a Google REST API.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub api: &'static str,
    pub method: Method,
    pub url: &'a Url,
    pub body: Option<&'a Value>,
    pub idempotent: Idempotent,
}

impl<'a> Request<'a> {
    /// A GET: always safe to repeat.
    pub fn get(api: &'static str, url: &'a Url) -> Self {
        Request {
            api,
            method: Method::GET,
            url,
            body: None,
            idempotent: Idempotent::Yes,
        }
    }

    /// A call that changes something; `idempotent` says whether it may be repeated.
    pub fn change(api: &'static str, method: Method, url: &'a Url, idempotent: Idempotent) -> Self {
        Request {
            api,
            method,
            url,
            body: None,
            idempotent,
        }
    }

    /// With a JSON body.
    pub fn body(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }
}

#[derive(Debug, Clone)]
pub struct GoogleClient {
    http: reqwest::Client,
    auth: Arc<Auth>,
    retry: RetryPolicy,
    timeout: Duration,
    waiter: Waiter,
}

impl GoogleClient {
    /// `timeout` bounds each request; a request never outlives the caller's deadline either.
    /// Pauses on the system clock and tells no one of its waits (see
    /// [`with_clock`](Self::with_clock), [`with_progress`](Self::with_progress)).
    pub fn new(
        auth: Arc<Auth>,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Result<Self, GoogleError> {
        Self::with_tls(auth, retry, timeout, None)
    }

    /// As [`new`](Self::new), with `https://` verified against `tls`'s roots (the keepalive
    /// passes the ones all its other clients trust: `SSL_CERT_FILE`'s or the system's) instead
    /// of the copy of Mozilla's roots built into reqwest.
    pub fn with_tls(
        auth: Arc<Auth>,
        retry: RetryPolicy,
        timeout: Duration,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, GoogleError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("whatsapp-keepalive/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10));
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder.build().map_err(|e| GoogleError::Transport {
            api: "HTTP client",
            detail: e.to_string(),
        })?;
        Ok(GoogleClient {
            http,
            auth,
            retry,
            timeout,
            waiter: Waiter::new(Arc::new(SystemClock), Arc::new(Silent)),
        })
    }

    /// Retries and waits pause on `clock` (a test's [`ManualClock`](super::clock::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.waiter = Waiter::new(clock, self.progress());
        self
    }

    /// Every operation wait is told to `progress` (the provisioner's spinner).
    pub fn with_progress(mut self, progress: Arc<dyn WaitProgress>) -> Self {
        self.waiter = Waiter::new(self.waiter.clock().clone(), progress);
        self
    }

    fn progress(&self) -> Arc<dyn WaitProgress> {
        self.waiter.progress().clone()
    }

    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The loop every wait of this client goes through, on its clock and progress.
    pub fn waiter(&self) -> &Waiter {
        &self.waiter
    }

    /// Sends `request` (again, per the retry policy, when it is [`Idempotent::Yes`] and the
    /// failure is retryable) and decodes a 2xx JSON answer.
    pub async fn send<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        deadline: Option<Instant>,
    ) -> Result<T, GoogleError> {
        match request.idempotent {
            Idempotent::Yes => {
                self.retry
                    .run(self.waiter.clock().as_ref(), deadline, || {
                        self.send_once(&request, deadline)
                    })
                    .await
            }
            Idempotent::No => self.send_once(&request, deadline).await,
        }
    }

    /// GETs a resource (retried); `None` when the API answers 404.
    pub async fn get_if_exists<T: DeserializeOwned>(
        &self,
        api: &'static str,
        url: &Url,
        deadline: Option<Instant>,
    ) -> Result<Option<T>, GoogleError> {
        match self.send(Request::get(api, url), deadline).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks `request` (an operation's GET, or its `wait` method) until operation `name` is
    /// done, pausing as `pacing` says, until `deadline`. A failed operation is
    /// [`GoogleError::Operation`]; running out of time is [`GoogleError::Deadline`].
    pub async fn wait_operation<Op>(
        &self,
        name: &str,
        request: Request<'_>,
        deadline: Instant,
        pacing: Pacing,
    ) -> Result<Op, GoogleError>
    where
        Op: LongRunningOperation + DeserializeOwned,
    {
        let what = format!("{} operation {name}", request.api);
        self.waiter
            .until(&what, deadline, pacing, || async {
                let op: Op = self.send(request.clone(), Some(deadline)).await?;
                settle(request.api, op)
            })
            .await?
            .or_deadline(&what)
    }

    /// One attempt.
    async fn send_once<T: DeserializeOwned>(
        &self,
        request: &Request<'_>,
        deadline: Option<Instant>,
    ) -> Result<T, GoogleError> {
        let Request {
            api, method, url, ..
        } = request;
        let api = *api;
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(GoogleError::Deadline {
                        what: format!("{api} {method}"),
                    });
                }
                left.min(self.timeout)
            }
            None => self.timeout,
        };
        let token = self.auth.token().await?;
        let mut req = self
            .http
            .request(method.clone(), (*url).clone())
            .timeout(timeout)
            .bearer_auth(token.expose_secret());
        req = match request.body {
            Some(b) => req.json(b),
            // POSTs without a body still need a length for Google front ends.
            None if *method == Method::POST => req.header(reqwest::header::CONTENT_LENGTH, "0"),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| GoogleError::transport(api, &e))?;
        let status = resp.status();
        let bytes = match read_body(resp).await {
            Ok(b) => b,
            Err(BodyError::Transport(e)) => return Err(GoogleError::transport(api, &e)),
            // Neither an answer nor an error this client can use: not read further.
            Err(BodyError::TooLarge) if status.is_success() => {
                return Err(GoogleError::Decode {
                    api,
                    detail: format!("an answer of {}", too_large_words()),
                })
            }
            Err(BodyError::TooLarge) => {
                return Err(GoogleError::from_response(
                    api,
                    status.as_u16(),
                    format!("an error body of {}", too_large_words()).as_bytes(),
                ))
            }
        };
        if !status.is_success() {
            return Err(GoogleError::from_response(api, status.as_u16(), &bytes));
        }
        let bytes = if bytes.is_empty() {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| GoogleError::Decode {
            api,
            detail: e.to_string(),
        })
    }
}

/// `base` with `segments` appended as escaped path segments.
pub fn url_with_segments<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .expect("Google API base URLs are http(s) URLs");
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// Parses an endpoint override (`KEEPALIVE_COMPUTE_ENDPOINT`, ...) into a base URL.
pub fn parse_endpoint(var: &str, value: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| format!("{var}: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{var}: must be an http:// or https:// URL"));
    }
    Ok(url)
}
