//! Meta's errors: the HTTP status and default message of each Graph code, the error body, and
//! a call's failure as the answer it gives.

use serde_json::{json, Value};

use crate::server::random_string;

/// A call's failure: Graph code, subcode, message.
pub(super) struct Fail(pub(super) i64, pub(super) Option<i64>, pub(super) String);

pub(super) enum Outcome {
    Answer(u16, Value),
    Hang,
    Close,
    /// Carry the call out, then do not answer ([`GraphFault::LoseAnswer`]).
    Lost,
}

/// HTTP status of a Graph error code, per the error table.
pub fn http_status(code: i64) -> u16 {
    match code {
        0 | 190 => 401,
        3 | 1 | 131000 | 131057 => 500,
        2 | 131016 | 133004 => 503,
        10 | 200..=299 | 131005 | 368 | 131031 => 403,
        _ => 400,
    }
}

pub(super) fn default_message(code: i64) -> &'static str {
    match code {
        1 => "An unknown error occurred",
        2 => "Service temporarily unavailable",
        3 => "Application does not have the capability to make this API call.",
        4 => "Application request limit reached",
        10 => "Application does not have permission for this action",
        17 => "User request limit reached",
        100 => "Invalid parameter",
        190 => "Invalid OAuth access token - Cannot parse access token",
        200..=299 => "Permissions error",
        368 => "Temporarily blocked for policies violations",
        80007 => "Rate limit issues",
        130429 => "Rate limit hit",
        131000 => "Something went wrong",
        131016 => "Service unavailable",
        131057 => "Business Account is in maintenance mode",
        133004 => "Server temporarily unavailable",
        133005 => "Two step verification PIN Mismatch",
        133006 => "Phone number needs to be verified before registering",
        133016 => "Account register deregister rate limit exceeded",
        136025 => "Verification code couldn't be verified",
        2200 => "Callback verification failed",
        _ => "An error occurred",
    }
}

/// Meta's error body.
pub fn graph_error_body(code: i64, subcode: Option<i64>, message: &str) -> Value {
    let mut e = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": random_string(27)});
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    json!({ "error": e })
}

pub(super) fn fail(code: i64, message: impl Into<String>) -> Fail {
    Fail(code, None, message.into())
}

impl Fail {
    pub(super) fn outcome(self) -> Outcome {
        let msg = if self.2.is_empty() {
            default_message(self.0).to_string()
        } else {
            self.2
        };
        let msg = if matches!(self.0, 0 | 1 | 2 | 190) {
            msg
        } else {
            format!("(#{}) {msg}", self.0)
        };
        Outcome::Answer(http_status(self.0), graph_error_body(self.0, self.1, &msg))
    }
}
