//! Compute Engine's error answers: `{"error": {"code", "message", "errors": [{"message",
//! "domain": "global", "reason"}]}}`, for the refusals the fake makes itself and for the
//! statuses a test scripts on a route.

use axum::response::Response;
use serde_json::{json, Value};

use super::names::valid_name;
use super::ComputeRoute;
use crate::server::json_response;

/// A Compute Engine error answer.
pub(super) fn compute_error(status: u16, reason: &str, message: &str) -> Response {
    let mut body = json!({
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    });
    if status == 401 {
        body["error"]["errors"][0]["location"] = json!("Authorization");
        body["error"]["errors"][0]["locationType"] = json!("header");
        body["error"]["status"] = json!("UNAUTHENTICATED");
    }
    json_response(status, &body)
}

/// The answer to a status a test scripted on `route` (see [`super::FakeCompute::fail_next`]).
pub(super) fn scripted_error(status: u16, route: ComputeRoute, resource: &str) -> Response {
    match status {
        403 => compute_error(
            403,
            "forbidden",
            &format!("Required '{}' permission for '{resource}'", route.permission()),
        ),
        404 => not_found(resource),
        409 => already_exists(resource),
        429 => compute_error(
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.",
        ),
        500 => compute_error(
            500,
            "backendError",
            "Internal error. Please try again or contact Google Support.",
        ),
        503 => compute_error(503, "backendError", "Service unavailable"),
        s if s >= 500 => compute_error(s, "backendError", "Backend Error"),
        s => compute_error(s, "invalid", "Scripted error"),
    }
}

pub(super) fn unauthenticated() -> Response {
    compute_error(
        401,
        "authError",
        "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    )
}

/// A path or method the fake does not serve (as the real API answers an unknown URL).
pub(super) fn unknown_url(path: &str) -> Response {
    compute_error(
        404,
        "notFound",
        &format!("The requested URL {path} was not found on this server."),
    )
}

pub(super) fn not_found(resource: &str) -> Response {
    compute_error(
        404,
        "notFound",
        &format!("The resource '{resource}' was not found"),
    )
}

pub(super) fn already_exists(resource: &str) -> Response {
    compute_error(
        409,
        "alreadyExists",
        &format!("The resource '{resource}' already exists"),
    )
}

/// A `fingerprint` (metadata) or `labelFingerprint` that is not the current one.
pub(super) fn fingerprint_mismatch() -> Response {
    compute_error(
        412,
        "conditionNotMet",
        "Supplied fingerprint does not match current metadata fingerprint.",
    )
}

pub(super) fn invalid(field: &str, message: &str) -> Response {
    compute_error(
        400,
        "invalid",
        &format!("Invalid value for field '{field}': {message}"),
    )
}

pub(super) fn required(field: &str) -> Response {
    compute_error(
        400,
        "required",
        &format!("Required field '{field}' not specified"),
    )
}

/// The body of a POST or PATCH: a JSON object, or 400 `parseError`.
pub(super) fn parse_body(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(compute_error(
            400,
            "parseError",
            "Invalid JSON payload received. Expected a JSON object.",
        )),
    }
}

/// The `name` of an insert body, or the 400 the real API answers for a missing or invalid one.
pub(super) fn check_name(body: &Value) -> Result<String, Response> {
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(required("resource.name"));
    };
    if !valid_name(name) {
        return Err(invalid(
            "resource.name",
            &format!(
                "'{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
            ),
        ));
    }
    Ok(name.to_owned())
}
