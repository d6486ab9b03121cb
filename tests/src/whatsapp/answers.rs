//! The answers every endpoint shares: the documented errors body, the scripted huge body,
//! and the checks of a JSON body's fields.

use axum::response::Response;
use serde_json::{json, Value};

use super::{meta, CODE_INVALID_PARAMETER, CODE_MISSING_PARAMETER};
use crate::server::json_response;

/// A 200 JSON-looking body of `len` bytes (`{"pad":"xxxx…"}` when long enough), streamed in
/// 64 KiB chunks.
pub(super) fn huge_response(len: usize) -> Response {
    const CHUNK: usize = 64 * 1024;
    let (head, tail) = (&b"{\"pad\":\""[..], &b"\"}"[..]);
    let fill = len.saturating_sub(head.len() + tail.len());
    let chunks = std::iter::once(bytes_of(head.iter().copied().take(len)))
        .chain((0..fill.div_ceil(CHUNK)).map(move |i| {
            let n = CHUNK.min(fill - i * CHUNK);
            axum::body::Bytes::from(vec![b'x'; n])
        }))
        .chain(std::iter::once(bytes_of(
            tail.iter().copied().take(len.saturating_sub(head.len())),
        )))
        .map(Ok::<_, std::io::Error>);
    let mut resp = Response::new(axum::body::Body::from_stream(futures::stream::iter(chunks)));
    resp.extensions_mut().insert(crate::server::Streamed);
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn bytes_of(b: impl Iterator<Item = u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(b.collect::<Vec<u8>>())
}

/// The documented errors body.
pub(super) fn errors_body(code: u32, title: &str, details: &str) -> Value {
    json!({
        "errors": [{"code": code, "title": title, "details": details}],
        "meta": meta(),
    })
}

/// An errors answer for `status`, with the error code the client uses for it.
pub(super) fn error_response(status: u16, details: &str) -> Response {
    let (code, title) = match status {
        400 => (1009, "Parameter value is not valid"),
        401 | 403 => (1005, "Access denied"),
        404 => (1006, "Resource not found"),
        405 => (1000, "Generic error"),
        429 => (1015, "Too many requests"),
        500 => (1014, "Internal error"),
        503 => (1011, "Service not ready"),
        _ => (1000, "Generic error"),
    };
    if (200..300).contains(&status) {
        return json_response(status, &json!({"meta": meta()}));
    }
    json_response(status, &errors_body(code, title, details))
}

/// An errors answer with this status, code, title and details.
pub(super) fn error_with(status: u16, code: u32, title: &str, details: &str) -> Response {
    json_response(status, &errors_body(code, title, details))
}

pub(super) fn missing(field: &str) -> Response {
    error_with(
        400,
        CODE_MISSING_PARAMETER,
        "Required parameter is missing",
        &format!("{field}: required"),
    )
}

pub(super) fn invalid(field: &str, why: &str) -> Response {
    error_with(
        400,
        CODE_INVALID_PARAMETER,
        "Parameter value is not valid",
        &format!("{field}: {why}"),
    )
}

pub(super) fn ok_meta(status: u16) -> Response {
    json_response(status, &json!({"meta": meta()}))
}

pub(super) type Object = serde_json::Map<String, Value>;

/// An error answer, boxed (a `Response` is large).
pub(super) type Reject = Box<Response>;

/// The body as a JSON object, or the 400 answer.
pub(super) fn json_object(body: &[u8]) -> Result<Object, Reject> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(Box::new(invalid("body", "must be a JSON object"))),
    }
}

/// A required string field, or the 400 answer.
pub(super) fn required_str<'a>(obj: &'a Object, field: &str) -> Result<&'a str, Reject> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(Box::new(missing(field))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Box::new(invalid(field, "must be a string"))),
    }
}

pub(super) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}
