//! Each endpoint's answer: `debug_token`, a number's fields, a WABA's subscribed apps and
//! numbers, a number's settings and its registration (`request_code`, `verify_code`, `register`).

use serde_json::{json, Map, Value};

use super::errors::*;
use super::{Entity, FakeNumber, GraphState, REGISTER_LIMIT};
use crate::server::now;

pub(super) const REGISTER_WINDOW: time::Duration = time::Duration::hours(72);
pub(super) const DEFAULT_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating";

/// `Ok((answer, number to disconnect))`, `Err((failure, number to disconnect))`.
pub(super) type Dispatched = Result<(Value, Option<String>), (Fail, Option<String>)>;

pub(super) fn dispatch(
    st: &mut GraphState,
    app: &str,
    method: &str,
    segs: &[&str],
    params: &Map<String, Value>,
) -> Dispatched {
    let ok = |v: Value| Ok((v, None));
    let success = || Ok((json!({"success": true}), None));
    let text = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match (method, segs) {
        ("GET", ["debug_token"]) => ok(debug_token(st, &text("input_token"))),
        ("GET", [id]) if st.numbers.contains_key(*id) => {
            let fields = params.get("fields").and_then(Value::as_str).unwrap_or(DEFAULT_FIELDS).to_string();
            number_fields(st, app, id, &fields).map(|v| (v, None)).map_err(|f| (f, None))
        }
        ("GET", [waba, "subscribed_apps"]) if st.subscriptions.contains_key(*waba) => {
            let over = st.waba_overrides.get(*waba);
            let data: Vec<Value> = st.subscriptions[*waba].iter().map(|a| {
                let name = st.apps.get(a).map_or(format!("App {a}"), |x| x.0.clone());
                let mut v = json!({"whatsapp_business_api_data": {"id": a, "link": format!("https://www.facebook.com/games/?app_id={a}"), "name": name}});
                if let (Some(o), true) = (over, a == app) {
                    v["override_callback_uri"] = json!(o);
                }
                v
            }).collect();
            ok(json!({"data": data}))
        }
        ("POST", [waba, "subscribed_apps"]) if st.subscriptions.contains_key(*waba) => {
            let apps = st.subscriptions.get_mut(*waba).expect("checked");
            if !apps.iter().any(|a| a == app) {
                apps.push(app.into());
            }
            if let Some(u) = params.get("override_callback_uri").and_then(Value::as_str) {
                if u.is_empty() { st.waba_overrides.remove(*waba) } else { st.waba_overrides.insert(waba.to_string(), u.into()) };
            }
            success()
        }
        ("GET", [waba, "phone_numbers"]) if st.subscriptions.contains_key(*waba) => {
            let fields = params.get("fields").and_then(Value::as_str).unwrap_or(DEFAULT_FIELDS).to_string();
            let ids: Vec<String> = st.numbers.values().filter(|n| n.waba_id == *waba).map(|n| n.id.clone()).collect();
            let data: Result<Vec<Value>, Fail> = ids.iter().map(|id| number_fields(st, app, id, &fields)).collect();
            data.map(|d| (json!({"data": d, "paging": {"cursors": {"before": "QVFI", "after": "QVFI"}}}), None)).map_err(|f| (f, None))
        }
        ("POST", [id, action]) if st.numbers.contains_key(*id) => {
            let n = st.numbers.get_mut(*id).expect("checked");
            registration(n, action, params)
        }
        ("POST", [id]) if st.numbers.contains_key(*id) => {
            let n = st.numbers.get_mut(*id).expect("checked");
            if let Some(pin) = params.get("pin").and_then(Value::as_str) {
                if !is_pin(pin) {
                    return Err((fail(100, "Param pin must be 6 digits"), None));
                }
                n.pin = Some(pin.into());
            } else if let Some(w) = params.get("webhook_configuration") {
                let url = w.get("override_callback_uri").and_then(Value::as_str).unwrap_or("");
                n.webhook_override = (!url.is_empty()).then(|| url.to_string());
            } else {
                return Err((fail(100, "No parameter to update"), None));
            }
            success()
        }
        _ => Err((Fail(100, Some(33), format!(
            "Unsupported {} request. Object with ID '{}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
            method.to_lowercase(), segs[0]
        )), None)),
    }
}

pub(super) fn is_pin(pin: &str) -> bool {
    pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit())
}

/// `request_code`, `verify_code`, `register` on a number.
pub(super) fn registration(
    n: &mut FakeNumber,
    action: &str,
    params: &Map<String, Value>,
) -> Dispatched {
    let text = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let success = Ok((json!({"success": true}), None));
    match action {
        "request_code" => {
            if !matches!(text("code_method").as_str(), "SMS" | "VOICE")
                || text("language").is_empty()
            {
                return Err((
                    fail(
                        100,
                        "Param code_method must be one of {SMS, VOICE}; language is required",
                    ),
                    None,
                ));
            }
            n.code_requests += 1;
            success
        }
        "verify_code" => {
            if text("code") != n.verification_code {
                return Err((fail(136025, ""), None));
            }
            n.code_verification_status = "VERIFIED".into();
            success
        }
        "register" => {
            let cutoff = now() - REGISTER_WINDOW;
            n.register_calls.retain(|t| *t > cutoff);
            if n.register_calls.len() >= REGISTER_LIMIT {
                return Err((fail(133016, ""), None));
            }
            n.register_calls.push(now());
            let pin = text("pin");
            if text("messaging_product") != "whatsapp" || !is_pin(&pin) {
                return Err((
                    fail(
                        100,
                        "Param messaging_product must be whatsapp and pin 6 digits",
                    ),
                    None,
                ));
            }
            let backup = params.get("backup");
            let migrating = backup.is_some().then(|| n.id.clone());
            if n.pin.as_deref().is_some_and(|p| p != pin) {
                return Err((fail(133005, ""), migrating));
            }
            if let Some(b) = backup {
                let field = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let given = (field("data"), field("password"));
                let good = match &n.backup {
                    Some(expected) => *expected == given,
                    None => !given.0.is_empty() && !given.1.is_empty(),
                };
                if n.platform_type != "ON_PREMISE" || !good {
                    return Err((fail(100, "Invalid parameter: backup"), None));
                }
            } else if n.code_verification_status != "VERIFIED" {
                return Err((fail(133006, ""), None));
            }
            n.pin = Some(pin);
            n.platform_type = "CLOUD_API".into();
            n.status = "CONNECTED".into();
            n.throughput_level = "STANDARD".into();
            Ok((json!({"success": true}), migrating))
        }
        _ => Err((
            fail(100, format!("Unknown path components: /{action}")),
            None,
        )),
    }
}

pub(super) fn debug_token(st: &GraphState, input: &str) -> Value {
    let Some(t) = st.tokens.get(input) else {
        return json!({"data": {"is_valid": false, "error": {"code": 190, "message": "Invalid OAuth access token."}, "scopes": []}});
    };
    let expired = t.invalid.is_some() || t.expires_at.is_some_and(|e| e <= now());
    let scopes = [
        "whatsapp_business_management",
        "whatsapp_business_messaging",
    ];
    json!({"data": {
        "app_id": t.app_id, "type": "SYSTEM_USER",
        "application": st.apps.get(&t.app_id).map_or("Fake App".into(), |a| a.0.clone()),
        "data_access_expires_at": 0,
        "expires_at": t.expires_at.map_or(0, |e| e.unix_timestamp()),
        "is_valid": !expired, "issued_at": 1_712_099_387,
        "scopes": scopes,
        "granular_scopes": scopes.iter().map(|s| json!({"scope": s})).collect::<Vec<_>>(),
        "user_id": "1041000000000001"
    }})
}

pub(super) fn number_fields(
    st: &GraphState,
    app: &str,
    id: &str,
    fields: &str,
) -> Result<Value, Fail> {
    let n = &st.numbers[id];
    let mut out = Map::new();
    for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let v = match f {
            "id" => json!(n.id),
            "display_phone_number" => json!(n.display_phone_number),
            "verified_name" => json!(n.verified_name),
            "status" => json!(n.status),
            "name_status" => json!(n.name_status),
            "code_verification_status" => json!(n.code_verification_status),
            "quality_rating" => json!(n.quality_rating),
            "platform_type" => json!(n.platform_type),
            "throughput" => json!({"level": n.throughput_level}),
            "health_status" => {
                let any = |s: &str| {
                    n.entities.iter().any(|e| {
                        e.can_send_message == s || e.can_receive_call_sip.as_deref() == Some(s)
                    })
                };
                let overall = if any("BLOCKED") {
                    "BLOCKED"
                } else if any("LIMITED") {
                    "LIMITED"
                } else {
                    "AVAILABLE"
                };
                json!({"can_send_message": overall, "entities": n.entities.iter().map(Entity::to_json).collect::<Vec<_>>()})
            }
            "webhook_configuration" => {
                let mut w = Map::new();
                if let Some(u) = &n.webhook_override {
                    w.insert("phone_number".into(), json!(u));
                }
                if let Some(u) = st.waba_overrides.get(&n.waba_id) {
                    w.insert("whatsapp_business_account".into(), json!(u));
                }
                if let Some(u) = st.apps.get(app).and_then(|a| a.1.as_ref()) {
                    w.insert("application".into(), json!(u));
                }
                Value::Object(w)
            }
            other => {
                return Err(fail(100, format!("Tried accessing nonexisting field ({other}) on node type (WhatsAppBusinessPhoneNumber)")));
            }
        };
        out.insert(f.to_string(), v);
    }
    out.entry("id").or_insert(json!(n.id));
    Ok(Value::Object(out))
}
