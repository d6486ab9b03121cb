//! Cloud SQL's error answers.

use axum::response::Response;
use serde_json::json;

use crate::server::json_response;

/// A Cloud SQL error answer.
pub(super) fn sql_error(status: u16, reason: &str, message: &str) -> Response {
    let mut body = json!({
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    });
    if status == 401 {
        body["error"]["errors"][0]["location"] = json!("Authorization");
        body["error"]["errors"][0]["locationType"] = json!("header");
        body["error"]["status"] = json!("UNAUTHENTICATED");
    }
    json_response(status, &body)
}

pub(super) fn instance_not_found() -> Response {
    sql_error(
        404,
        "instanceDoesNotExist",
        "The Cloud SQL instance does not exist.",
    )
}

pub(super) fn already_exists() -> Response {
    sql_error(
        409,
        "instanceAlreadyExists",
        "The Cloud SQL instance already exists.",
    )
}

pub(super) fn operation_in_progress() -> Response {
    sql_error(
        409,
        "operationInProgress",
        "Operation failed because another operation was already in progress.",
    )
}

pub(super) fn invalid_state() -> Response {
    sql_error(
        400,
        "invalidState",
        "The instance or operation is not in an appropriate state to handle the request.",
    )
}

pub(super) fn invalid(message: &str) -> Response {
    sql_error(400, "invalid", &format!("Invalid request: {message}"))
}
