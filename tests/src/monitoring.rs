//! `FakeMonitoring`: what the provisioner calls of Cloud Monitoring API v3: alert policies
//! and notification channels (list, get, create, patch with an `updateMask`) and the open
//! alerts (`projects.alerts.list`), with bearer tokens checked against a [`TokenRegistry`] and
//! the newer Google APIs' error bodies: 404 `NOT_FOUND`, 400 `INVALID_ARGUMENT` (a bad
//! update mask, a log-based policy without a notification rate limit or with one under 5
//! minutes, a name in a create), and 403 `PERMISSION_DENIED` with an `ErrorInfo` reason
//! `SERVICE_DISABLED` while the API is "not enabled" ([`FakeMonitoring::disable_api`]).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
    Router,
};
use serde_json::{json, Value};

use crate::{
    rest::google_error,
    rest::{camel_case, parse_object, set_path},
    server::{json_response, lock, now, rfc3339_utc, FakeState, HttpServer},
    token::TokenRegistry,
};

/// The fields of an alert policy an update mask may name.
const POLICY_MASK_FIELDS: &[&str] = &[
    "displayName",
    "documentation",
    "userLabels",
    "conditions",
    "combiner",
    "enabled",
    "notificationChannels",
    "alertStrategy",
    "severity",
];
/// The fields of a notification channel an update mask may name.
const CHANNEL_MASK_FIELDS: &[&str] = &[
    "displayName",
    "description",
    "labels",
    "userLabels",
    "enabled",
];

#[derive(Default)]
struct MonState {
    /// name -> policy
    policies: BTreeMap<String, Value>,
    /// name -> channel
    channels: BTreeMap<String, Value>,
    /// project -> alerts
    alerts: BTreeMap<String, Vec<Value>>,
    next_id: u64,
    disabled: bool,
    /// The most a list page holds, whatever `pageSize` asks (0: as asked).
    max_page: usize,
}

impl MonState {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        1_000 + self.next_id
    }
}

/// The fake Cloud Monitoring API.
pub struct FakeMonitoring {
    state: Arc<Mutex<MonState>>,
    server: HttpServer,
}

impl FakeMonitoring {
    crate::server::server_controls!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = Arc::new(Mutex::new(MonState::default()));
        let ctx = FakeState {
            state: state.clone(),
            tokens,
        };
        let router = Router::new().fallback(handle).with_state(ctx);
        let server = HttpServer::start(router)
            .await
            .expect("bind fake Cloud Monitoring server");
        FakeMonitoring { state, server }
    }

    /// The project's alert policies, oldest first.
    pub fn policies(&self, project: &str) -> Vec<Value> {
        let prefix = format!("projects/{project}/alertPolicies/");
        lock(&self.state)
            .policies
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The project's notification channels, oldest first.
    pub fn channels(&self, project: &str) -> Vec<Value> {
        let prefix = format!("projects/{project}/notificationChannels/");
        lock(&self.state)
            .channels
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Stores `policy` as someone else would have made it; returns its name.
    pub fn seed_policy(&self, project: &str, mut policy: Value) -> String {
        let mut st = lock(&self.state);
        let name = format!("projects/{project}/alertPolicies/{}", st.new_id());
        policy["name"] = json!(name);
        st.policies.insert(name.clone(), policy);
        name
    }

    /// Stores `channel` as someone else would have made it; returns its name.
    pub fn seed_channel(&self, project: &str, mut channel: Value) -> String {
        let mut st = lock(&self.state);
        let name = format!("projects/{project}/notificationChannels/{}", st.new_id());
        channel["name"] = json!(name);
        st.channels.insert(name.clone(), channel);
        name
    }

    /// Changes a stored policy behind the provisioner's back.
    pub fn change_policy(&self, name: &str, change: impl FnOnce(&mut Value)) {
        if let Some(p) = lock(&self.state).policies.get_mut(name) {
            change(p);
        }
    }

    /// Adds an alert (`projects.alerts`) to the project's listing.
    pub fn seed_alert(&self, project: &str, alert: Value) {
        lock(&self.state)
            .alerts
            .entry(project.to_string())
            .or_default()
            .push(alert);
    }

    /// List pages hold at most `n` items, as the API may answer fewer than `pageSize` asks;
    /// the rest follow through `nextPageToken`.
    pub fn set_max_page(&self, n: usize) {
        lock(&self.state).max_page = n;
    }

    /// Every request answers 403 `SERVICE_DISABLED`, as for a project where the API was
    /// never enabled.
    pub fn disable_api(&self) {
        lock(&self.state).disabled = true;
    }

    /// The requests that could change something (not GETs), oldest first.
    pub fn writes(&self) -> Vec<crate::server::RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }
}

fn service_disabled() -> Response {
    json_response(
        403,
        &json!({"error": {
            "code": 403,
            "message": "Cloud Monitoring API has not been used in project 123456789 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/monitoring.googleapis.com/overview?project=123456789 then retry.",
            "status": "PERMISSION_DENIED",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {"service": "monitoring.googleapis.com", "consumer": "projects/123456789"}
            }]
        }}),
    )
}

fn not_found(name: &str) -> Response {
    google_error(
        404,
        "NOT_FOUND",
        &format!("Requested entity was not found: {name}"),
    )
}

fn invalid(message: &str) -> Response {
    google_error(400, "INVALID_ARGUMENT", message)
}

/// Seconds of a proto duration (`"1800s"`).
fn seconds(v: &Value) -> Option<f64> {
    v.as_str()?.strip_suffix('s')?.parse().ok()
}

/// What the API refuses in a policy (`None`: acceptable).
fn policy_problem(p: &Value) -> Option<String> {
    let conditions = p["conditions"].as_array().filter(|c| !c.is_empty());
    let Some(conditions) = conditions else {
        return Some("Field alert_policy.conditions had an invalid value: at least one condition is required.".into());
    };
    let log_based = conditions
        .iter()
        .any(|c| c.get("conditionMatchedLog").is_some());
    if log_based {
        if conditions.len() != 1 {
            return Some("A log-based alert policy must have exactly one condition.".into());
        }
        let filter = &conditions[0]["conditionMatchedLog"]["filter"];
        if filter.as_str().is_none_or(str::is_empty) {
            return Some(
                "Field alert_policy.conditions[0].condition_matched_log.filter is required.".into(),
            );
        }
        let period = seconds(&p["alertStrategy"]["notificationRateLimit"]["period"]);
        if period.is_none_or(|s| s < 300.0) {
            return Some("Field alert_policy.alert_strategy.notification_rate_limit.period must be at least 300s for log-based alert policies.".into());
        }
    }
    None
}

/// The fields of `mask` (comma-separated, either case), each one of `allowed` or under one;
/// otherwise the 400's message.
fn mask_paths(mask: Option<String>, allowed: &[&str]) -> Result<Vec<String>, String> {
    let Some(mask) = mask.filter(|m| !m.trim().is_empty()) else {
        return Err("updateMask is required.".into());
    };
    let mut out = Vec::new();
    for path in mask.split(',').map(|p| camel_case(p.trim())) {
        let top = path.split('.').next().unwrap_or_default();
        if !allowed.contains(&top) {
            return Err(format!("Invalid update mask path: \"{path}\"."));
        }
        out.push(path);
    }
    Ok(out)
}

/// Applies `body`'s values at `paths` to `target`.
fn apply(target: &mut Value, body: &Value, paths: &[String]) {
    let (Some(obj), Some(src)) = (target.as_object_mut(), body.as_object()) else {
        return;
    };
    for path in paths {
        let parts: Vec<&str> = path.split('.').collect();
        let value = crate::rest::get_path(src, &parts).cloned();
        set_path(obj, &parts, value);
    }
}

fn record(now: &str) -> Value {
    json!({"mutateTime": now, "mutatedBy": "whatsapp-provisioner@fake"})
}

async fn handle(
    State(ctx): State<FakeState<MonState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = crate::rest::unauthenticated(&headers, &ctx.tokens) {
        return refused;
    }
    let mut st = lock(&ctx.state);
    if st.disabled {
        return service_disabled();
    }
    let path = uri.path().trim_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').collect();
    let mask = crate::server::query_param(uri.query(), "updateMask");
    let stamp = rfc3339_utc(now());
    match (method.clone(), &segs[..]) {
        (Method::GET, ["v3", "projects", p, key @ ("alertPolicies" | "notificationChannels")]) => {
            let all = if *key == "alertPolicies" {
                &st.policies
            } else {
                &st.channels
            };
            let prefix = format!("projects/{p}/{key}/");
            let list: Vec<&Value> = all
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(_, v)| v)
                .collect();
            let query = |name| crate::server::query_param(uri.query(), name);
            let asked: usize = query("pageSize")
                .and_then(|n| n.parse().ok())
                .unwrap_or(100);
            let size = match st.max_page {
                0 => asked,
                max => asked.min(max),
            }
            .max(1);
            let from: usize = match query("pageToken") {
                None => 0,
                Some(t) => match t.parse() {
                    Ok(n) => n,
                    Err(_) => return invalid("Invalid page token."),
                },
            };
            let page: Vec<&Value> = list.iter().skip(from).take(size).copied().collect();
            let mut answer = json!({ *key: page, "totalSize": list.len() });
            if from + size < list.len() {
                answer["nextPageToken"] = json!((from + size).to_string());
            }
            json_response(200, &answer)
        }
        (Method::GET, ["v3", "projects", p, "alerts"]) => {
            let filter = crate::server::query_param(uri.query(), "filter").unwrap_or_default();
            let list: Vec<Value> = st
                .alerts
                .get(*p)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| !filter.contains("OPEN") || a["state"] == "OPEN")
                .collect();
            json_response(200, &json!({"alerts": list, "totalSize": list.len()}))
        }
        (Method::GET, ["v3", "projects", _, "alertPolicies" | "notificationChannels", _]) => {
            let name = segs[1..].join("/");
            let found = st.policies.get(&name).or_else(|| st.channels.get(&name));
            match found {
                Some(v) => json_response(200, v),
                None => not_found(&name),
            }
        }
        (Method::POST, ["v3", "projects", p, "alertPolicies"]) => {
            let Some(obj) = parse_object(&body) else {
                return invalid("Invalid JSON payload received.");
            };
            let mut policy = Value::Object(obj);
            if policy.get("name").is_some() {
                return invalid("Field alert_policy.name must not be set when creating a policy.");
            }
            if let Some(problem) = policy_problem(&policy) {
                return invalid(&problem);
            }
            let name = format!("projects/{p}/alertPolicies/{}", st.new_id());
            policy["name"] = json!(name);
            if let Some(conditions) = policy["conditions"].as_array_mut() {
                for (i, c) in conditions.iter_mut().enumerate() {
                    c["name"] = json!(format!("{name}/conditions/{}", 100 + i));
                }
            }
            if policy.get("enabled").is_none() {
                policy["enabled"] = json!(true);
            }
            policy["creationRecord"] = record(&stamp);
            policy["mutationRecord"] = record(&stamp);
            st.policies.insert(name, policy.clone());
            json_response(200, &policy)
        }
        (Method::POST, ["v3", "projects", p, "notificationChannels"]) => {
            let Some(obj) = parse_object(&body) else {
                return invalid("Invalid JSON payload received.");
            };
            let mut channel = Value::Object(obj);
            if channel["type"].as_str().is_none_or(str::is_empty) {
                return invalid("Field notification_channel.type is required.");
            }
            if channel["type"] == "email"
                && channel["labels"]["email_address"]
                    .as_str()
                    .is_none_or(|a| !a.contains('@'))
            {
                return invalid(
                    "Field notification_channel.labels[email_address] must be an e-mail address.",
                );
            }
            let name = format!("projects/{p}/notificationChannels/{}", st.new_id());
            channel["name"] = json!(name);
            if channel.get("enabled").is_none() {
                channel["enabled"] = json!(true);
            }
            channel["creationRecord"] = record(&stamp);
            st.channels.insert(name, channel.clone());
            json_response(200, &channel)
        }
        (
            Method::PATCH,
            ["v3", "projects", _, kind @ ("alertPolicies" | "notificationChannels"), _],
        ) => {
            let name = segs[1..].join("/");
            let policies = *kind == "alertPolicies";
            let allowed = if policies {
                POLICY_MASK_FIELDS
            } else {
                CHANNEL_MASK_FIELDS
            };
            let paths = match mask_paths(mask, allowed) {
                Ok(p) => p,
                Err(message) => return invalid(&message),
            };
            let Some(body) = parse_object(&body).map(Value::Object) else {
                return invalid("Invalid JSON payload received.");
            };
            let store = if policies {
                &mut st.policies
            } else {
                &mut st.channels
            };
            let Some(current) = store.get(&name) else {
                return not_found(&name);
            };
            let mut next = current.clone();
            apply(&mut next, &body, &paths);
            if policies {
                if let Some(problem) = policy_problem(&next) {
                    return invalid(&problem);
                }
                next["mutationRecord"] = record(&stamp);
            }
            store.insert(name, next.clone());
            json_response(200, &next)
        }
        _ => not_found(&path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::send;
    use reqwest::Method;

    fn log_policy(period: &str) -> Value {
        json!({
            "displayName": "p",
            "conditions": [{"displayName": "c", "conditionMatchedLog": {"filter": "severity>=ERROR"}}],
            "alertStrategy": {"notificationRateLimit": {"period": period}, "autoClose": "1800s"},
        })
    }

    #[tokio::test]
    async fn create_get_patch_and_the_documented_errors() {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        let m = FakeMonitoring::start(tokens).await;
        let c = reqwest::Client::new();
        let base = format!("{}/v3/projects/p", m.url());

        let (s, e) = send(
            &c,
            Method::POST,
            format!("{base}/alertPolicies"),
            &token,
            Some(log_policy("60s")),
        )
        .await;
        assert_eq!(
            (s, e["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        let (s, made) = send(
            &c,
            Method::POST,
            format!("{base}/alertPolicies"),
            &token,
            Some(log_policy("300s")),
        )
        .await;
        assert_eq!(s, 200, "{made}");
        let name = made["name"].as_str().unwrap().to_string();
        let url = format!("{}/v3/{name}", m.url());
        let (s, got) = send(&c, Method::GET, url.clone(), &token, None).await;
        assert_eq!((s, &got), (200, &made));

        let (s, e) = send(
            &c,
            Method::PATCH,
            format!("{url}?updateMask=nonsense"),
            &token,
            Some(json!({})),
        )
        .await;
        assert_eq!(
            (s, e["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        let (s, patched) = send(
            &c,
            Method::PATCH,
            format!("{url}?updateMask=enabled"),
            &token,
            Some(json!({"enabled": false, "displayName": "ignored"})),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            (
                patched["enabled"].as_bool(),
                patched["displayName"].as_str()
            ),
            (Some(false), Some("p"))
        );

        let (s, e) = send(
            &c,
            Method::GET,
            format!("{base}/alertPolicies/999"),
            &token,
            None,
        )
        .await;
        assert_eq!((s, e["error"]["status"].as_str()), (404, Some("NOT_FOUND")));

        m.disable_api();
        let (s, e) = send(
            &c,
            Method::GET,
            format!("{base}/alertPolicies"),
            &token,
            None,
        )
        .await;
        assert_eq!(s, 403);
        assert_eq!(e["error"]["details"][0]["reason"], "SERVICE_DISABLED");
        let (s, _) = send(
            &c,
            Method::GET,
            format!("{base}/alertPolicies"),
            "not-a-token",
            None,
        )
        .await;
        assert_eq!(s, 401);
    }
}
