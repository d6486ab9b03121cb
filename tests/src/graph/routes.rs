//! The fake's HTTP side: version and token checks, scripted faults, batches and single calls
//! (each endpoint's answer is `dispatch`'s, Meta's error body `errors`').

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use serde_json::{json, Map, Value};

use super::dispatch::*;
use super::errors::*;
use super::webhook_override::*;
use super::{GraphCall, GraphFault, GraphState, Shared};
use crate::server::{
    bearer_token, close_connection, hang, json_response, lock, now, query_pairs, Faults,
};

pub(super) async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = lock(&state).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let token = bearer_token(&headers).map(str::to_string);
    let (version, path) = match uri.path().trim_start_matches('/').split_once('/') {
        Some((v, rest)) => (v, rest.trim_end_matches('/').to_string()),
        None => (uri.path().trim_start_matches('/'), String::new()),
    };
    let mut params = parse_params(uri.query(), &body);
    let outcome = if !is_version(version) {
        fail(2500, format!("Unknown path components: /{version}")).outcome()
    } else if path.is_empty() && method == Method::POST {
        batch(&state, token.as_deref(), &mut params).await
    } else {
        call(
            &state,
            token.as_deref(),
            method.as_str(),
            &path,
            &params,
            false,
        )
        .await
    };
    match outcome {
        Outcome::Answer(status, v) => json_response(status, &v),
        Outcome::Hang | Outcome::Lost => match hang().await {},
        Outcome::Close => close_connection(),
    }
}

fn is_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|r| r.split_once('.'))
        .is_some_and(|(a, b)| {
            [a, b]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        })
}

/// Query and body parameters in one object: a JSON body, or a form whose values may be JSON.
fn parse_params(query: Option<&str>, body: &[u8]) -> Map<String, Value> {
    let mut params = Map::new();
    let form = |s: &str| {
        query_pairs(Some(s)).into_iter().map(|(k, v)| {
            let parsed = serde_json::from_str::<Value>(&v)
                .ok()
                .filter(|j| j.is_object() || j.is_array());
            (k, parsed.unwrap_or(Value::String(v)))
        })
    };
    params.extend(form(query.unwrap_or("")));
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => params.extend(m),
        _ => params.extend(form(&String::from_utf8_lossy(body))),
    }
    params
}

async fn batch(state: &Shared, token: Option<&str>, params: &mut Map<String, Value>) -> Outcome {
    if let Some(o) = take_fault_outcome(state, "", "POST", false).await {
        return o;
    }
    let items = match params.remove("batch") {
        Some(Value::String(s)) => serde_json::from_str::<Value>(&s).ok(),
        other => other,
    };
    let Some(Value::Array(items)) = items else {
        return fail(100, "The parameter batch is required").outcome();
    };
    if items.len() > 50 {
        return fail(
            100,
            "Too many requests in batch message. Maximum batch size is 50",
        )
        .outcome();
    }
    let headers = params
        .get("include_headers")
        .is_none_or(|v| v != "false" && v != &json!(false));
    let answers = futures::future::join_all(items.iter().map(|item| async move {
        let method = item.get("method").and_then(Value::as_str).unwrap_or("GET").to_uppercase();
        let url = item.get("relative_url").and_then(Value::as_str).unwrap_or("");
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let path = path.trim_matches('/');
        let path = match path.split_once('/') {
            Some((v, rest)) if is_version(v) => rest,
            _ if is_version(path) => "",
            _ => path,
        };
        let body = item.get("body").and_then(Value::as_str).unwrap_or("");
        let params = parse_params(Some(query), body.as_bytes());
        match call(state, token, &method, path, &params, true).await {
            Outcome::Answer(code, v) => {
                let mut a = json!({"code": code, "body": v.to_string()});
                if headers {
                    a["headers"] = json!([{"name": "Content-Type", "value": "application/json; charset=UTF-8"}]);
                }
                a
            }
            Outcome::Hang | Outcome::Close | Outcome::Lost => Value::Null,
        }
    }))
    .await;
    Outcome::Answer(200, Value::Array(answers))
}

/// Records the call and applies its scripted fault; `None` when it goes on.
async fn take_fault_outcome(
    state: &Shared,
    path: &str,
    method: &str,
    batched: bool,
) -> Option<Outcome> {
    let fault = {
        let mut st = lock(state);
        st.calls.push(GraphCall {
            method: method.into(),
            path: path.into(),
            batched,
        });
        let first = path.split('/').next().unwrap_or("");
        let this_method = format!("{method} {path}");
        [this_method.as_str(), path, first]
            .iter()
            .find_map(|k| st.faults.get_mut(*k).and_then(Faults::take))
    };
    match fault? {
        GraphFault::Error { code, subcode } => Some(Fail(code, subcode, String::new()).outcome()),
        GraphFault::Status(s) => Some(Outcome::Answer(s, json!({"message": "upstream error"}))),
        GraphFault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        GraphFault::Hang => Some(Outcome::Hang),
        GraphFault::Close => Some(Outcome::Close),
        GraphFault::Ignore => Some(Outcome::Answer(200, json!({"success": true}))),
        GraphFault::LoseAnswer => Some(Outcome::Lost),
    }
}

async fn call(
    state: &Shared,
    token: Option<&str>,
    method: &str,
    path: &str,
    params: &Map<String, Value>,
    batched: bool,
) -> Outcome {
    let lose_answer = match take_fault_outcome(state, path, method, batched).await {
        Some(Outcome::Lost) => true,
        Some(o) => return o,
        None => false,
    };
    let app = match authenticate(&lock(state), token, path) {
        Ok(app) => app,
        Err(f) => return f.outcome(),
    };
    let segs: Vec<&str> = path.split('/').collect();
    if let Some((url, verify_token)) = override_request(method, &segs, params) {
        if let Err(f) = check_override(state, &app, &segs, &url, &verify_token).await {
            return f.outcome();
        }
    }
    let (result, disconnect) = {
        let mut st = lock(state);
        let result = dispatch(&mut st, &app, method, &segs, params);
        let disconnect = st.on_disconnect.clone();
        (result, disconnect)
    };
    match result {
        Ok((v, disconnected)) => {
            if let (Some(id), Some(f)) = (disconnected, disconnect) {
                f(&id);
            }
            if lose_answer {
                return Outcome::Lost;
            }
            Outcome::Answer(200, v)
        }
        Err((f, disconnected)) => {
            if let (Some(id), Some(f)) = (disconnected, disconnect) {
                f(&id);
            }
            f.outcome()
        }
    }
}

/// The token's app id, or the error Meta answers.
fn authenticate(st: &GraphState, token: Option<&str>, path: &str) -> Result<String, Fail> {
    let Some(token) = token else {
        return Err(fail(
            104,
            "An access token is required to request this resource.",
        ));
    };
    let Some(t) = st.tokens.get(token) else {
        return Err(fail(190, ""));
    };
    if t.invalid == Some(463) || t.expires_at.is_some_and(|e| e <= now()) {
        return Err(Fail(
            190,
            Some(463),
            "Error validating access token: Session has expired.".into(),
        ));
    }
    if let Some(sub) = t.invalid {
        return Err(Fail(
            190,
            Some(sub),
            "Error validating access token: The session is invalid.".into(),
        ));
    }
    if !t.permitted && path != "debug_token" {
        return Err(fail(200, "Permissions error"));
    }
    Ok(t.app_id.clone())
}
