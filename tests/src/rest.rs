//! What the fakes of Google's REST APIs share: starting one (state behind a lock, the tokens
//! it accepts, one handler for every request); for the newer APIs (Secret Manager, Cloud Run,
//! Cloud Scheduler) the error shape, the gate every request passes (authentication, then a
//! scripted fault) with the knobs that script it, and the JSON and path helpers their update
//! masks and resource names need.

use std::sync::{Arc, Mutex};

use axum::{handler::Handler, http::HeaderMap, response::Response, Router};
use serde_json::{json, Map, Value};

use crate::{
    server::{bearer_token, json_response, FakeState, Faults, HttpServer},
    token::TokenRegistry,
};

/// Starts a fake whose every request goes to `handler`, with `state` and the `tokens` it
/// accepts; `api` names it in the panic when no port can be bound.
pub(crate) async fn start<S, H, T>(
    state: S,
    tokens: Arc<TokenRegistry>,
    handler: H,
    api: &str,
) -> (Arc<Mutex<S>>, HttpServer)
where
    S: Send + 'static,
    H: Handler<T, FakeState<S>>,
    T: 'static,
{
    let state = Arc::new(Mutex::new(state));
    let ctx = FakeState {
        state: state.clone(),
        tokens,
    };
    let router = Router::new().fallback(handler).with_state(ctx);
    let server = HttpServer::start(router)
        .await
        .unwrap_or_else(|e| panic!("bind fake {api} server: {e}"));
    (state, server)
}

/// An error answer in the newer Google APIs' shape.
pub(crate) fn google_error(code: u16, status: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// What a request meets before its endpoint: the 401 of [`unauthenticated`], then the next
/// scripted fault of `faults` (in the API's words, see [`scripted_error`]); `None` when it
/// may go on.
pub(crate) fn gate(
    headers: &HeaderMap,
    tokens: &TokenRegistry,
    faults: &mut Faults,
    messages: &[(u16, &str, &str)],
) -> Option<Response> {
    unauthenticated(headers, tokens)
        .or_else(|| faults.take().map(|code| scripted_error(code, messages)))
}

/// `fail_next`, `fail_always` and `clear_failures` of a fake whose state (field `state`, a
/// mutex) has `faults: Faults` checked by [`gate`] (invoked inside its `impl`).
macro_rules! scripted_failures {
    () => {
        /// The next request (after authentication) answers `status` in the error shape (429
        /// `RESOURCE_EXHAUSTED`, 500 `INTERNAL`, 503 `UNAVAILABLE`, 403 `PERMISSION_DENIED`,
        /// ...). Calls queue: two calls fail the next two requests.
        pub fn fail_next(&self, status: u16) {
            crate::server::lock(&self.state).faults.next(1, status);
        }

        /// Every request (after authentication) answers `status` until cleared.
        pub fn fail_always(&self, status: u16) {
            crate::server::lock(&self.state).faults.always(status);
        }

        /// Removes the scripted request failures.
        pub fn clear_failures(&self) {
            crate::server::lock(&self.state).faults.clear();
        }
    };
}
pub(crate) use scripted_failures;

/// The decoded segments of a path (`/v2/a/b%3Ac` -> `["v2", "a", "b:c"]`).
pub(crate) fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect()
}

/// The 401 the newer APIs answer a request whose bearer token `tokens` never issued (or that
/// has none); `None` when it may go on.
pub(crate) fn unauthenticated(headers: &HeaderMap, tokens: &TokenRegistry) -> Option<Response> {
    if bearer_token(headers).is_some_and(|t| tokens.is_valid(t)) {
        return None;
    }
    Some(google_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    ))
}

/// The answer to a scripted fault `code`, in the newer APIs' error shape. `messages` gives an
/// API's own `(code, status, message)` where it differs from the common one.
pub(crate) fn scripted_error(code: u16, messages: &[(u16, &str, &str)]) -> Response {
    if let Some((_, status, message)) = messages.iter().find(|(c, _, _)| *c == code) {
        return google_error(code, status, message);
    }
    let (status, message) = match code {
        400 => ("INVALID_ARGUMENT", "Invalid argument."),
        401 => (
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ),
        404 => ("NOT_FOUND", "Not found."),
        409 => ("ALREADY_EXISTS", "Already exists."),
        500 => ("INTERNAL", "Internal error encountered."),
        503 => ("UNAVAILABLE", "The service is currently unavailable."),
        504 => ("DEADLINE_EXCEEDED", "Deadline exceeded."),
        _ => ("UNKNOWN", "Scripted error."),
    };
    google_error(code, status, message)
}

/// `a_b` -> `aB` (field masks may be written in either case).
pub(crate) fn camel_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Sets (or, with `None`, removes) the field at a dotted path, creating objects on the way.
pub(crate) fn set_path(target: &mut Map<String, Value>, path: &[&str], value: Option<Value>) {
    match path {
        [] => {}
        [last] => {
            match value {
                Some(v) => target.insert((*last).to_owned(), v),
                None => target.remove(*last),
            };
        }
        [first, rest @ ..] => {
            let entry = target
                .entry((*first).to_owned())
                .or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            if let Some(obj) = entry.as_object_mut() {
                set_path(obj, rest, value);
            }
        }
    }
}

pub(crate) fn get_path<'a>(source: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = source.get(*first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        get_path(v.as_object()?, rest)
    }
}

/// Percent-decodes a path segment (`svc%3AsetIamPolicy` -> `svc:setIamPolicy`).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// An integer written as a JSON number or (proto3 JSON for 64-bit integers) a string.
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// For the REST fakes' unit tests: one request with a bearer token and an optional JSON body;
/// the status and the JSON answer.
#[cfg(test)]
pub(crate) async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}
