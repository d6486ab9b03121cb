//! A webhook override (on the number or on the WABA's subscription): the app must be
//! subscribed, then Meta's verification handshake against the URL must pass.

use std::time::Duration;

use serde_json::{Map, Value};

use super::errors::*;
use super::Shared;
use crate::server::lock;

/// `(url, verify_token)` of a call that sets a non-empty webhook override.
pub(super) fn override_request(
    method: &str,
    segs: &[&str],
    params: &Map<String, Value>,
) -> Option<(String, String)> {
    let src = match (method, segs) {
        ("POST", [_]) => params.get("webhook_configuration")?,
        ("POST", [_, "subscribed_apps"]) => &Value::Object(params.clone()),
        _ => return None,
    };
    let url = src
        .get("override_callback_uri")?
        .as_str()
        .filter(|u| !u.is_empty())?;
    let vt = src
        .get("verify_token")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some((url.to_string(), vt.to_string()))
}

/// A number override needs the app subscribed; then Meta's handshake must pass.
pub(super) async fn check_override(
    state: &Shared,
    app: &str,
    segs: &[&str],
    url: &str,
    verify_token: &str,
) -> Result<(), Fail> {
    let skip = {
        let st = lock(state);
        if let Some(n) = st.numbers.get(segs[0]) {
            if !st
                .subscriptions
                .get(&n.waba_id)
                .is_some_and(|a| a.iter().any(|x| x == app))
            {
                return Err(fail(100, "The app must be subscribed to the WhatsApp Business Account before setting an override"));
            }
        }
        st.no_handshake
    };
    if skip {
        return Ok(());
    }
    handshake(url, verify_token).await.map_err(|why| {
        fail(
            2200,
            format!("Callback verification failed with the following errors: {why}"),
        )
    })
}

/// Meta's verification request: 200 with the bare challenge passes.
pub(super) async fn handshake(url: &str, verify_token: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "URL couldn't be validated".to_string())?;
    if !matches!(parsed.host_str(), Some("127.0.0.1" | "localhost")) {
        return Err("the fake only calls 127.0.0.1 or localhost".into());
    }
    let challenge = (rand::random::<u32>() % 900_000_000 + 100_000_000).to_string();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(parsed)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.challenge", &challenge),
            ("hub.verify_token", verify_token),
        ])
        .send()
        .await
        .map_err(|_| "Couldn't connect to server".to_string())?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    if status != 200 {
        return Err(format!("HTTP Status Code = {status}"));
    }
    if body.trim() != challenge {
        return Err("The URL couldn't be validated. Response does not match challenge".into());
    }
    Ok(())
}
