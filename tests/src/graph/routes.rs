//! The fake's HTTP side: version and token checks, scripted faults, batches, and each
//! endpoint's answer or Meta's error body.

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use serde_json::{json, Map, Value};

use super::{Entity, FakeNumber, GraphCall, GraphFault, GraphState, Shared, REGISTER_LIMIT};
use crate::server::{
    bearer_token, close_connection, hang, json_response, lock, now, query_pairs, random_string,
    Faults,
};

const REGISTER_WINDOW: time::Duration = time::Duration::hours(72);
const DEFAULT_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating";

/// A call's failure: Graph code, subcode, message.
struct Fail(i64, Option<i64>, String);

enum Outcome {
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

fn default_message(code: i64) -> &'static str {
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

fn fail(code: i64, message: impl Into<String>) -> Fail {
    Fail(code, None, message.into())
}

impl Fail {
    fn outcome(self) -> Outcome {
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

/// `(url, verify_token)` of a call that sets a non-empty webhook override.
fn override_request(
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
async fn check_override(
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
async fn handshake(url: &str, verify_token: &str) -> Result<(), String> {
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

/// `Ok((answer, number to disconnect))`, `Err((failure, number to disconnect))`.
type Dispatched = Result<(Value, Option<String>), (Fail, Option<String>)>;

fn dispatch(
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

fn is_pin(pin: &str) -> bool {
    pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit())
}

/// `request_code`, `verify_code`, `register` on a number.
fn registration(n: &mut FakeNumber, action: &str, params: &Map<String, Value>) -> Dispatched {
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

fn debug_token(st: &GraphState, input: &str) -> Value {
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

fn number_fields(st: &GraphState, app: &str, id: &str, fields: &str) -> Result<Value, Fail> {
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
