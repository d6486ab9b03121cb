//! One error type for every Google REST API, and whether it is worth retrying.

use serde_json::Value;

use crate::limits::quote;

/// What went wrong calling a Google API.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GoogleError {
    /// The API answered with an error status.
    #[error("{api} answered {status}{}: {message}", reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Api {
        api: &'static str,
        status: u16,
        /// Compute's `errors[].reason` (`notFound`, `rateLimitExceeded`) or the newer APIs'
        /// `status` (`NOT_FOUND`, `ALREADY_EXISTS`).
        reason: Option<String>,
        message: String,
    },
    /// The request did not get an answer (refused, reset, timed out).
    #[error("{api} could not be reached: {detail}")]
    Transport { api: &'static str, detail: String },
    /// No access token could be had.
    #[error("no Google access token: {0}")]
    Auth(String),
    /// The answer was not what the API documents.
    #[error("{api} gave an unexpected answer: {detail}")]
    Decode { api: &'static str, detail: String },
    /// A long-running operation finished with an error.
    #[error("{api} operation {name} failed: {message}")]
    Operation {
        api: &'static str,
        name: String,
        message: String,
    },
    /// The time allowed ran out.
    #[error("{what} did not finish in time")]
    Deadline { what: String },
}

impl GoogleError {
    /// 429, 500, 502, 503, 504 and transport failures are worth another try; 4xx are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            GoogleError::Api { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            GoogleError::Transport { .. } | GoogleError::Auth(_) => true,
            GoogleError::Decode { .. }
            | GoogleError::Operation { .. }
            | GoogleError::Deadline { .. } => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GoogleError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_already_exists(&self) -> bool {
        match self {
            GoogleError::Api { status, reason, .. } => {
                *status == 409
                    || matches!(reason.as_deref(), Some("alreadyExists" | "ALREADY_EXISTS"))
            }
            _ => false,
        }
    }

    /// The API is not enabled in the project (403 with an `ErrorInfo` reason
    /// `SERVICE_DISABLED`): `gcloud services enable` fixes it.
    pub fn is_service_disabled(&self) -> bool {
        matches!(self, GoogleError::Api { reason: Some(r), .. } if r == "SERVICE_DISABLED")
    }

    /// Builds the error from a non-2xx answer, reading either error body shape.
    pub fn from_response(api: &'static str, status: u16, body: &[u8]) -> GoogleError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(quote)
            .or_else(|| error.and_then(Value::as_str).map(quote))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    http_reason(status).to_string()
                } else {
                    quote(text)
                }
            });
        // An API that is not enabled says so only in an `ErrorInfo` detail (the status is
        // PERMISSION_DENIED): that reason wins, so callers can name `gcloud services enable`.
        let service_disabled = error
            .and_then(|e| e.get("details"))
            .and_then(Value::as_array)
            .is_some_and(|d| {
                d.iter()
                    .any(|i| i.get("reason").and_then(Value::as_str) == Some("SERVICE_DISABLED"))
            });
        let reason = error
            .and_then(|e| e.get("errors"))
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("reason"))
            .and_then(Value::as_str)
            .or_else(|| error.and_then(|e| e.get("status")).and_then(Value::as_str))
            .map(quote);
        let reason = if service_disabled {
            Some("SERVICE_DISABLED".to_string())
        } else {
            reason
        };
        GoogleError::Api {
            api,
            status,
            reason,
            message,
        }
    }

    pub(crate) fn transport(api: &'static str, e: &reqwest::Error) -> GoogleError {
        GoogleError::Transport {
            api,
            detail: describe_reqwest(e),
        }
    }
}

/// A reqwest error in words, without the URL's query (request ids) and never with headers.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else if e.is_request() {
        "sending the request failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut root = String::new();
    while let Some(s) = source {
        root = s.to_string();
        source = s.source();
    }
    if root.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({root})")
    }
}

fn http_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_error_shape() {
        let body = br#"{"error":{"code":404,"message":"The resource 'projects/p/zones/z/instances/x' was not found","errors":[{"message":"...","domain":"global","reason":"notFound"}]}}"#;
        let e = GoogleError::from_response("Compute Engine", 404, body);
        assert!(e.is_not_found());
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "Compute Engine answered 404 notFound: The resource 'projects/p/zones/z/instances/x' was not found"
        );
    }

    #[test]
    fn newer_api_error_shape() {
        let body = br#"{"error":{"code":409,"message":"Secret exists","status":"ALREADY_EXISTS"}}"#;
        let e = GoogleError::from_response("Secret Manager", 409, body);
        assert!(e.is_already_exists());
        assert!(e.to_string().contains("ALREADY_EXISTS"));
    }

    #[test]
    fn an_api_not_enabled_is_told_by_its_error_info() {
        let body = br#"{"error":{"code":403,"message":"Cloud Monitoring API has not been used in project 123 before or it is disabled.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com","metadata":{"service":"monitoring.googleapis.com","consumer":"projects/123"}}]}}"#;
        let e = GoogleError::from_response("Cloud Monitoring", 403, body);
        assert!(e.is_service_disabled());
        assert!(!e.is_retryable());
        let denied = br#"{"error":{"code":403,"message":"Permission denied.","status":"PERMISSION_DENIED"}}"#;
        assert!(!GoogleError::from_response("x", 403, denied).is_service_disabled());
    }

    #[test]
    fn retryable_statuses() {
        for (status, retry) in [
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (409, false),
        ] {
            let e = GoogleError::from_response("x", status, b"");
            assert_eq!(e.is_retryable(), retry, "{status}");
        }
    }

    #[test]
    fn non_json_body_is_kept_short() {
        let e = GoogleError::from_response("x", 502, &[b'a'; 5000]);
        assert!(e.to_string().len() < 400);
    }

    #[test]
    fn a_long_message_is_cut_to_300_characters() {
        let long = "m".repeat(100_000);
        let body = serde_json::json!({"error": {"code": 403, "message": long, "errors": [{"reason": long}]}});
        let e = GoogleError::from_response("x", 403, body.to_string().as_bytes());
        let GoogleError::Api {
            message, reason, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(message.chars().count(), 300);
        assert_eq!(reason.as_deref().unwrap().chars().count(), 300);
    }
}
