//! The one HTTP layer under every Google REST client: bearer token, timeout bounded by the
//! caller's deadline, answers read to at most 256 KiB (`crate::limits`), error bodies read
//! into [`GoogleError`], retries by [`RetryPolicy`].

use reqwest::Method;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

use super::{Auth, GoogleError, RetryPolicy};
use crate::limits::{read_body, too_large_words, BodyError};

#[derive(Debug, Clone)]
pub struct GoogleClient {
    http: reqwest::Client,
    auth: Arc<Auth>,
    retry: RetryPolicy,
    timeout: Duration,
}

impl GoogleClient {
    /// `timeout` bounds each request; a request never outlives the caller's deadline either.
    pub fn new(
        auth: Arc<Auth>,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Result<Self, GoogleError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("whatsapp-keepalive/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| GoogleError::Transport {
                api: "HTTP client",
                detail: e.to_string(),
            })?;
        Ok(GoogleClient {
            http,
            auth,
            retry,
            timeout,
        })
    }

    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Sends a request, retrying retryable failures, and decodes a 2xx JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        api: &'static str,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        deadline: Option<Instant>,
    ) -> Result<T, GoogleError> {
        self.retry
            .run(deadline, || {
                self.call_once(api, method.clone(), url, body, deadline)
            })
            .await
    }

    /// GETs a resource (retried like [`call`](Self::call)); `None` when the API answers 404.
    pub async fn get_if_exists<T: DeserializeOwned>(
        &self,
        api: &'static str,
        url: &Url,
        deadline: Option<Instant>,
    ) -> Result<Option<T>, GoogleError> {
        match self.call(api, Method::GET, url, None, deadline).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One attempt, no retry.
    pub async fn call_once<T: DeserializeOwned>(
        &self,
        api: &'static str,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        deadline: Option<Instant>,
    ) -> Result<T, GoogleError> {
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
            .request(method.clone(), url.clone())
            .timeout(timeout)
            .bearer_auth(token.expose_secret());
        req = match body {
            Some(b) => req.json(b),
            // POSTs without a body still need a length for Google front ends.
            None if method == Method::POST => req.header(reqwest::header::CONTENT_LENGTH, "0"),
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
