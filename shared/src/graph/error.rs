//! One error type for the Graph API, read from Meta's error body, and what each class means:
//! worth a retry, a dead token, a missing permission, a bad request, the register limit.

use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Longest error message kept (Meta's messages are short; a proxy's HTML page is not).
const MAX_MESSAGE_CHARS: usize = 300;

/// Graph codes worth another try: unknown or temporary errors, service down, maintenance, and
/// the call and throughput limits (with backoff).
const RETRYABLE_CODES: &[i64] = &[
    1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 133004, 131057,
];

/// Graph's `{"error": {...}}`, as answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphApiError {
    /// What was asked, e.g. `GET 1234` (never a query string: `debug_token` carries a token).
    pub what: String,
    pub status: u16,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    /// `type`, e.g. `OAuthException`.
    pub error_type: Option<String>,
    /// `message`, at most 300 characters.
    pub message: String,
    pub user_title: Option<String>,
    pub user_msg: Option<String>,
    /// `is_transient`, when Meta says.
    pub is_transient: Option<bool>,
    /// `error_data.details` (e.g. when to try a PIN again), at most 300 characters.
    pub details: Option<String>,
    pub fbtrace_id: Option<String>,
}

impl fmt::Display for GraphApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered {}", self.what, self.status)?;
        match (self.code, self.subcode) {
            (Some(c), Some(s)) => write!(f, " (code {c}, subcode {s})")?,
            (Some(c), None) => write!(f, " (code {c})")?,
            _ => {}
        }
        write!(f, ": {}", self.message)?;
        if let Some(d) = self.details.as_deref().filter(|d| !d.is_empty()) {
            write!(f, " ({d})")?;
        }
        if let Some(t) = &self.fbtrace_id {
            write!(f, " [fbtrace_id {t}]")?;
        }
        Ok(())
    }
}

/// What went wrong calling the Graph API. Never carries a token, PIN, code or backup.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// Graph answered an error (its body read into [`GraphApiError`]).
    #[error("Graph API {0}")]
    Api(Box<GraphApiError>),
    #[error("Graph API {what} timed out after {} ms", timeout.as_millis())]
    Timeout { what: String, timeout: Duration },
    /// No answer: refused, reset, DNS.
    #[error("Graph API {what} failed: {detail}")]
    Transport { what: String, detail: String },
    /// A 2xx answer that is not what Meta documents (or larger than the bound).
    #[error("Graph API {what} gave an unexpected answer: {detail}")]
    Decode { what: String, detail: String },
    /// A batch item Meta did not finish (`null` in the answer): worth another try.
    #[error("Graph API {what} was not finished in the batch")]
    Unfinished { what: String },
    /// The time allowed ran out before the request could be sent.
    #[error("Graph API {what} did not finish in time")]
    Deadline { what: String },
    /// The request was refused before sending (e.g. a batch of more than 50).
    #[error("Graph API {what} not sent: {detail}")]
    Invalid { what: String, detail: String },
}

impl GraphError {
    /// Builds the error from a non-2xx answer (Meta's body, or anything else: a proxy's page).
    pub fn from_response(what: &str, status: u16, body: &[u8]) -> GraphError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let text = |key: &str| {
            error
                .and_then(|e| e.get(key))
                .and_then(Value::as_str)
                .map(|s| cut(s, MAX_MESSAGE_CHARS))
        };
        let int = |key: &str| {
            error.and_then(|e| e.get(key)).and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            })
        };
        let message = text("message").unwrap_or_else(|| {
            let raw = String::from_utf8_lossy(body);
            let raw = raw.trim();
            if raw.is_empty() {
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error")
                    .to_string()
            } else {
                cut(raw, MAX_MESSAGE_CHARS)
            }
        });
        GraphError::Api(Box::new(GraphApiError {
            what: what.to_string(),
            status,
            code: int("code"),
            subcode: int("error_subcode"),
            error_type: text("type"),
            message,
            user_title: text("error_user_title"),
            user_msg: text("error_user_msg"),
            is_transient: error
                .and_then(|e| e.get("is_transient"))
                .and_then(Value::as_bool),
            details: error
                .and_then(|e| e.get("error_data"))
                .and_then(|d| d.get("details"))
                .and_then(Value::as_str)
                .map(|s| cut(s, MAX_MESSAGE_CHARS)),
            fbtrace_id: text("fbtrace_id"),
        }))
    }

    /// The error body, when Graph answered one.
    pub fn api(&self) -> Option<&GraphApiError> {
        match self {
            GraphError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Graph's `code`.
    pub fn code(&self) -> Option<i64> {
        self.api().and_then(|e| e.code)
    }

    /// Graph's `error_subcode` (e.g. 463: the token expired).
    pub fn subcode(&self) -> Option<i64> {
        self.api().and_then(|e| e.subcode)
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// The message, without what was asked (for findings that quote Meta).
    pub fn message(&self) -> String {
        match self {
            GraphError::Api(e) => e.message.clone(),
            other => other.to_string(),
        }
    }

    /// 190 or 0: the token is invalid or expired; get a new one.
    pub fn is_token_invalid(&self) -> bool {
        matches!(self.code(), Some(0 | 190))
    }

    /// 3, 10, 200-299, 131005: a permission is missing (200 also: the system user lacks the
    /// asset).
    pub fn is_permission(&self) -> bool {
        matches!(self.code(), Some(3 | 10 | 200..=299 | 131005))
    }

    /// 100: an unknown id or field, or a bad parameter.
    pub fn is_unknown_request(&self) -> bool {
        self.code() == Some(100)
    }

    /// 133016: more than 10 register or deregister calls in 72 hours; blocked for 72 hours.
    pub fn is_register_limit(&self) -> bool {
        self.code() == Some(133016)
    }

    /// 133005: the two-step PIN does not match.
    pub fn is_wrong_pin(&self) -> bool {
        self.code() == Some(133005)
    }

    /// 368, 131031: restricted or locked for a policy reason.
    pub fn is_restricted(&self) -> bool {
        matches!(self.code(), Some(368 | 131031))
    }

    /// Classes a retry can never fix, whatever the HTTP status (3 comes with a 500).
    fn is_permanent_code(&self) -> bool {
        self.is_token_invalid()
            || self.is_permission()
            || self.is_unknown_request()
            || self.is_register_limit()
            || self.is_wrong_pin()
            || self.is_restricted()
    }

    /// Worth another try, with backoff: Graph's temporary and throttling codes (1, 2, 4, 17,
    /// 32, 613, 80007, 130429, 131000, 131016, 133004, 131057), `is_transient`, HTTP 5xx,
    /// timeouts, connection failures, unfinished batch items. Never the permanent classes.
    pub fn is_retryable(&self) -> bool {
        match self {
            GraphError::Api(e) => {
                if self.is_permanent_code() {
                    return false;
                }
                e.code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
                    || e.is_transient == Some(true)
                    || e.status >= 500
            }
            GraphError::Timeout { .. }
            | GraphError::Transport { .. }
            | GraphError::Unfinished { .. } => true,
            GraphError::Decode { .. }
            | GraphError::Deadline { .. }
            | GraphError::Invalid { .. } => false,
        }
    }

    /// Replaces every occurrence of `secret` in the texts Meta sent back (a defence: Meta
    /// does not echo tokens, but a proxy or a fake might).
    pub(crate) fn redact(mut self, secret: &str) -> GraphError {
        if secret.is_empty() {
            return self;
        }
        let clean = |s: &mut String| {
            if s.contains(secret) {
                *s = s.replace(secret, "[REDACTED]");
            }
        };
        match &mut self {
            GraphError::Api(e) => {
                clean(&mut e.message);
                for s in [
                    &mut e.user_title,
                    &mut e.user_msg,
                    &mut e.details,
                    &mut e.error_type,
                    &mut e.fbtrace_id,
                ]
                .into_iter()
                .flatten()
                {
                    clean(s);
                }
            }
            GraphError::Transport { detail, .. }
            | GraphError::Decode { detail, .. }
            | GraphError::Invalid { detail, .. } => clean(detail),
            GraphError::Timeout { .. }
            | GraphError::Unfinished { .. }
            | GraphError::Deadline { .. } => {}
        }
        self
    }
}

/// At most `max` characters of `s`, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(status: u16, code: i64, subcode: Option<i64>) -> GraphError {
        let mut error = serde_json::json!({
            "message": format!("(#{code}) something"),
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "AbC123"
        });
        if let Some(s) = subcode {
            error["error_subcode"] = s.into();
        }
        GraphError::from_response("GET 1", status, error_body(error).as_bytes())
    }

    fn error_body(error: Value) -> String {
        serde_json::json!({ "error": error }).to_string()
    }

    #[test]
    fn meta_error_body_is_read() {
        let body = br#"{"error":{"message":"(#133005) Two step verification PIN Mismatch","type":"OAuthException","code":133005,"error_subcode":2388001,"error_data":{"messaging_product":"whatsapp","details":"Wait 5 minutes"},"error_user_title":"PIN","error_user_msg":"Wrong PIN","is_transient":false,"fbtrace_id":"A1b2"}}"#;
        let e = GraphError::from_response("POST 1/register", 400, body);
        let api = e.api().unwrap();
        assert_eq!(api.code, Some(133005));
        assert_eq!(api.subcode, Some(2388001));
        assert_eq!(api.error_type.as_deref(), Some("OAuthException"));
        assert_eq!(api.user_title.as_deref(), Some("PIN"));
        assert_eq!(api.user_msg.as_deref(), Some("Wrong PIN"));
        assert_eq!(api.is_transient, Some(false));
        assert_eq!(api.fbtrace_id.as_deref(), Some("A1b2"));
        assert!(e.is_wrong_pin());
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "Graph API POST 1/register answered 400 (code 133005, subcode 2388001): (#133005) Two step verification PIN Mismatch (Wait 5 minutes) [fbtrace_id A1b2]"
        );
    }

    #[test]
    fn classes() {
        let retry = [
            1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 133004, 131057,
        ];
        for code in retry {
            assert!(graph(400, code, None).is_retryable(), "{code}");
        }
        for (code, status) in [
            (190, 401),
            (0, 401),
            (3, 500),
            (10, 403),
            (200, 403),
            (299, 403),
            (131005, 403),
            (100, 400),
            (133016, 400),
            (133005, 400),
            (368, 403),
            (131031, 403),
        ] {
            assert!(!graph(status, code, None).is_retryable(), "{code}");
        }
        assert!(graph(401, 190, Some(463)).is_token_invalid());
        assert_eq!(graph(401, 190, Some(463)).subcode(), Some(463));
        assert!(graph(401, 0, None).is_token_invalid());
        for code in [3, 10, 200, 250, 299, 131005] {
            assert!(graph(403, code, None).is_permission(), "{code}");
        }
        assert!(!graph(403, 300, None).is_permission());
        assert!(graph(400, 100, None).is_unknown_request());
        assert!(graph(400, 133016, None).is_register_limit());
        assert!(graph(400, 133005, None).is_wrong_pin());
        assert!(graph(403, 368, None).is_restricted());
        // An unknown code: its HTTP status decides.
        assert!(graph(503, 999, None).is_retryable());
        assert!(!graph(400, 999, None).is_retryable());
    }

    #[test]
    fn is_transient_is_retryable_unless_permanent() {
        let body =
            error_body(serde_json::json!({"message": "x", "code": 999, "is_transient": true}));
        assert!(GraphError::from_response("GET 1", 400, body.as_bytes()).is_retryable());
        let body =
            error_body(serde_json::json!({"message": "x", "code": 190, "is_transient": true}));
        assert!(!GraphError::from_response("GET 1", 400, body.as_bytes()).is_retryable());
    }

    #[test]
    fn other_answers() {
        for (status, retry) in [
            (500, true),
            (502, true),
            (503, true),
            (404, false),
            (400, false),
        ] {
            let e = GraphError::from_response("GET 1", status, b"<html>bad gateway</html>");
            assert_eq!(e.is_retryable(), retry, "{status}");
            assert_eq!(e.code(), None);
        }
        let e = GraphError::from_response("GET 1", 502, b"");
        assert!(e.to_string().ends_with("Bad Gateway"), "{e}");
        let transport = GraphError::Transport {
            what: "GET 1".into(),
            detail: "connection refused".into(),
        };
        assert!(transport.is_retryable());
        let timeout = GraphError::Timeout {
            what: "GET 1".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.is_retryable());
        assert!(GraphError::Unfinished { what: "x".into() }.is_retryable());
        assert!(!GraphError::Decode {
            what: "x".into(),
            detail: "y".into()
        }
        .is_retryable());
    }

    #[test]
    fn long_messages_are_cut() {
        let body = error_body(serde_json::json!({"message": "é".repeat(5000), "code": 1}));
        let e = GraphError::from_response("GET 1", 400, body.as_bytes());
        assert_eq!(e.message().chars().count(), MAX_MESSAGE_CHARS + 1);
        let e = GraphError::from_response("GET 1", 502, &[b'a'; 100_000]);
        assert!(e.to_string().len() < 400, "{e}");
    }

    #[test]
    fn redact_removes_a_secret_everywhere() {
        let body = error_body(serde_json::json!({
            "message": "bad token EAAsecret here", "error_user_msg": "EAAsecret", "code": 190
        }));
        let e = GraphError::from_response("GET 1", 401, body.as_bytes()).redact("EAAsecret");
        let api = e.api().unwrap();
        assert_eq!(api.message, "bad token [REDACTED] here");
        assert_eq!(api.user_msg.as_deref(), Some("[REDACTED]"));
        assert!(!format!("{e} {e:?}").contains("EAAsecret"));
    }
}
