//! `PATCH /v1/settings/application`.

use axum::response::Response;
use serde_json::Value;

use super::{
    answers::{invalid, json_object, ok_meta},
    WaState,
};

/// Objects merge key by key; anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn valid_webhook_url(url: &str) -> bool {
    if url.is_empty() {
        return true;
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `PATCH /v1/settings/application`.
pub(super) fn patch(st: &mut WaState, body: &[u8]) -> Response {
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    match obj.get("webhooks") {
        None => {}
        Some(Value::Object(webhooks)) => match webhooks.get("url") {
            None => {}
            Some(Value::String(url)) if valid_webhook_url(url) => {}
            Some(_) => {
                return invalid(
                    "webhooks.url",
                    "must be empty or an http:// or https:// URL",
                )
            }
        },
        Some(_) => return invalid("webhooks", "must be an object"),
    }
    merge(&mut st.application_settings, &Value::Object(obj));
    ok_meta(200)
}
