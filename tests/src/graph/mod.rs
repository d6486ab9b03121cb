//! `FakeGraph`: Meta's Graph API for WhatsApp numbers (`meta-cloud-api.md`) under
//! `/{vN.M}/...`: a number's fields (`health_status`, `webhook_configuration` included), a
//! WABA's `subscribed_apps` (GET; POST with or without the WABA's override) and
//! `phone_numbers`, `debug_token`, the number's webhook override and PIN (`POST /{id}`),
//! `request_code`, `verify_code`, `register` (with or without an On-Premises backup), and
//! batches (`POST /{vN.M}/`, form or JSON `batch`). Errors are Meta's body with the HTTP status
//! of the error table.
//!
//! Tokens only count in `Authorization: Bearer`; an `access_token` parameter is not read (see
//! [`FakeGraph::access_token_requests`]). Faults are keyed by a method and a path
//! (`POST 9999/subscribed_apps`), a call's relative path (`1111/register`) or its first
//! segment (a number or WABA id, `debug_token`, `` for the batch call itself), the most
//! precise first; inside a batch they hit only their item (a hang there is a `null`).
//! A webhook override is accepted only for an app subscribed to the WABA, and (unless
//! [`FakeGraph::set_handshake`] turns it off) after Meta's handshake against the URL, which
//! must be on 127.0.0.1 or localhost.
//!
//! This module: the state and the test controls; `routes`: the HTTP side (tokens, faults,
//! batches); `dispatch`: each endpoint's answer; `webhook_override`: the override's checks and
//! handshake; `errors`: Meta's error table and body; `tests`.

mod dispatch;
mod errors;
mod routes;
#[cfg(test)]
mod tests;
mod webhook_override;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::server::{lock, Faults, HttpServer, RecordedRequest};

pub use errors::{graph_error_body, http_status};

/// Meta's limit of register (or deregister) calls per number in a moving window.
pub const REGISTER_LIMIT: usize = 10;

/// What a scripted call gets instead of its answer.
#[derive(Clone, Debug, PartialEq)]
pub enum GraphFault {
    /// Graph error `code` (and subcode), with the HTTP status of Meta's table.
    Error { code: i64, subcode: Option<i64> },
    /// A bare HTTP status with a body that is not Graph's (a proxy, a load balancer).
    Status(u16),
    /// The real answer, this much later.
    Delay(Duration),
    /// No answer (in a batch: the item is `null`).
    Hang,
    /// The connection is dropped (in a batch: the item is `null`).
    Close,
    /// `{"success": true}`, and nothing changes: a write Meta acknowledged that did not take.
    Ignore,
    /// The call is carried out (a register registers), then no answer comes: a client that
    /// crashed or timed out after Meta acted.
    LoseAnswer,
}

impl GraphFault {
    pub fn error(code: i64) -> Self {
        GraphFault::Error {
            code,
            subcode: None,
        }
    }
}

/// A token the fake knows.
#[derive(Clone, Debug)]
pub struct FakeToken {
    pub app_id: String,
    /// `Some(subcode)`: answers 190 with it (463 expired, 467 invalid).
    pub invalid: Option<i64>,
    /// Past this, 190/463; `None` never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// `false`: number and WABA calls answer 200 (permissions error).
    pub permitted: bool,
}

impl FakeToken {
    pub fn valid(app_id: &str) -> Self {
        FakeToken {
            app_id: app_id.into(),
            invalid: None,
            expires_at: None,
            permitted: true,
        }
    }
    pub fn expiring_at(self, t: OffsetDateTime) -> Self {
        FakeToken {
            expires_at: Some(t),
            ..self
        }
    }
    pub fn expired(self) -> Self {
        FakeToken {
            invalid: Some(463),
            ..self
        }
    }
    pub fn invalid(self) -> Self {
        FakeToken {
            invalid: Some(467),
            ..self
        }
    }
    pub fn without_permission(self) -> Self {
        FakeToken {
            permitted: false,
            ..self
        }
    }
}

/// One entry of a number's `health_status.entities`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub entity_type: String,
    pub id: String,
    /// `AVAILABLE`, `LIMITED`, `BLOCKED`.
    pub can_send_message: String,
    pub can_receive_call_sip: Option<String>,
    pub additional_info: Vec<String>,
    /// `(error_code, error_description, possible_solution)`.
    pub errors: Vec<(i64, String, String)>,
}

impl Entity {
    pub fn available(entity_type: &str, id: &str) -> Self {
        Entity {
            entity_type: entity_type.into(),
            id: id.into(),
            can_send_message: "AVAILABLE".into(),
            can_receive_call_sip: None,
            additional_info: vec![],
            errors: vec![],
        }
    }
    pub fn limited(entity_type: &str, id: &str, info: &[&str]) -> Self {
        Entity {
            can_send_message: "LIMITED".into(),
            additional_info: info.iter().map(|s| s.to_string()).collect(),
            ..Self::available(entity_type, id)
        }
    }
    pub fn blocked(entity_type: &str, id: &str, errors: &[(i64, &str, &str)]) -> Self {
        Entity {
            can_send_message: "BLOCKED".into(),
            errors: errors
                .iter()
                .map(|(c, d, s)| (*c, d.to_string(), s.to_string()))
                .collect(),
            ..Self::available(entity_type, id)
        }
    }
    /// Calling blocked (SIP not set up): Meta's overall value then reads `BLOCKED` too.
    pub fn sip_blocked(self) -> Self {
        Entity {
            can_receive_call_sip: Some("BLOCKED".into()),
            ..self
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"entity_type": self.entity_type, "id": self.id, "can_send_message": self.can_send_message});
        if let Some(s) = &self.can_receive_call_sip {
            v["can_receive_call_sip"] = json!(s);
        }
        if !self.additional_info.is_empty() {
            v["additional_info"] = json!(self.additional_info);
        }
        if !self.errors.is_empty() {
            v["errors"] = self.errors.iter().map(|(c, d, s)| json!({"error_code": c, "error_description": d, "possible_solution": s})).collect();
        }
        v
    }
}

/// A number's state; change it with [`FakeGraph::update_number`].
#[derive(Clone, Debug)]
pub struct FakeNumber {
    pub id: String,
    pub waba_id: String,
    pub display_phone_number: String,
    pub verified_name: String,
    pub status: String,
    pub name_status: String,
    pub code_verification_status: String,
    pub quality_rating: String,
    pub platform_type: String,
    pub throughput_level: String,
    /// `PHONE_NUMBER`, `WABA`, `BUSINESS`, `APP` entities, all `AVAILABLE` at first.
    pub entities: Vec<Entity>,
    /// The number-level webhook override.
    pub webhook_override: Option<String>,
    /// The two-step PIN; `None`: the first register sets it.
    pub pin: Option<String>,
    /// The code `verify_code` accepts.
    pub verification_code: String,
    /// `(data, password)` a backup register must carry; `None` accepts any non-empty pair.
    pub backup: Option<(String, String)>,
    /// When each register call was made (the 72-hour window). Every call counts, refused ones
    /// too (wrong PIN, not verified), except one refused by the limit itself (133016).
    pub register_calls: Vec<OffsetDateTime>,
    pub code_requests: usize,
}

/// One Graph call (an HTTP request, or an item of a batch).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphCall {
    pub method: String,
    /// Relative to the version, without query: `1111`, `9999/subscribed_apps`, `` (batch).
    pub path: String,
    pub batched: bool,
}

type DisconnectFn = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct GraphState {
    tokens: BTreeMap<String, FakeToken>,
    /// App id -> (name, app-level callback URL).
    apps: BTreeMap<String, (String, Option<String>)>,
    numbers: BTreeMap<String, FakeNumber>,
    /// WABA id -> subscribed app ids.
    subscriptions: BTreeMap<String, Vec<String>>,
    waba_overrides: BTreeMap<String, String>,
    faults: BTreeMap<String, Faults<GraphFault>>,
    calls: Vec<GraphCall>,
    latency: Duration,
    no_handshake: bool,
    on_disconnect: Option<DisconnectFn>,
}

type Shared = Arc<Mutex<GraphState>>;

/// The fake Graph API.
pub struct FakeGraph {
    state: Shared,
    server: HttpServer,
}

impl FakeGraph {
    crate::server::server_controls!();

    /// Starts an empty fake: add tokens, apps and numbers.
    pub async fn start() -> Self {
        let state: Shared = Default::default();
        let router = Router::new()
            .fallback(routes::handle)
            .with_state(state.clone());
        let server = HttpServer::start(router)
            .await
            .expect("bind fake Graph API");
        FakeGraph { state, server }
    }

    pub fn add_token(&self, token: &str, t: FakeToken) {
        lock(&self.state).tokens.insert(token.into(), t);
    }

    /// An app and its app-level callback URL (`webhook_configuration.application`).
    pub fn add_app(&self, app_id: &str, name: &str, callback_url: Option<&str>) {
        lock(&self.state).apps.insert(
            app_id.into(),
            (name.into(), callback_url.map(str::to_string)),
        );
    }

    /// A number of `waba_id`, healthy on the Cloud API: `CONNECTED`, `CLOUD_API`, `VERIFIED`,
    /// `GREEN`, every entity `AVAILABLE`, no override, no PIN.
    pub fn add_number(&self, id: &str, waba_id: &str, display_phone_number: &str) {
        let n = FakeNumber {
            id: id.into(),
            waba_id: waba_id.into(),
            display_phone_number: display_phone_number.into(),
            verified_name: "Fake Business".into(),
            status: "CONNECTED".into(),
            name_status: "APPROVED".into(),
            code_verification_status: "VERIFIED".into(),
            quality_rating: "GREEN".into(),
            platform_type: "CLOUD_API".into(),
            throughput_level: "STANDARD".into(),
            entities: vec![
                Entity::available("PHONE_NUMBER", id),
                Entity::available("WABA", waba_id),
                Entity::available("BUSINESS", "1000000000000001"),
                Entity::available("APP", "1000000000000002"),
            ],
            webhook_override: None,
            pin: None,
            verification_code: "123456".into(),
            backup: None,
            register_calls: vec![],
            code_requests: 0,
        };
        let mut st = lock(&self.state);
        st.subscriptions.entry(waba_id.into()).or_default();
        st.numbers.insert(id.into(), n);
    }

    /// Changes a number's state (panics on an unknown id: a test bug).
    pub fn update_number(&self, id: &str, f: impl FnOnce(&mut FakeNumber)) {
        f(lock(&self.state)
            .numbers
            .get_mut(id)
            .unwrap_or_else(|| panic!("no number {id}")));
    }

    pub fn number(&self, id: &str) -> Option<FakeNumber> {
        lock(&self.state).numbers.get(id).cloned()
    }

    /// Replaces the entity of the same type.
    pub fn set_entity(&self, number: &str, entity: Entity) {
        self.update_number(number, |n| {
            n.entities.retain(|e| e.entity_type != entity.entity_type);
            n.entities.push(entity);
        });
    }

    pub fn subscribe(&self, waba_id: &str, app_id: &str) {
        let mut st = lock(&self.state);
        let apps = st.subscriptions.entry(waba_id.into()).or_default();
        if !apps.iter().any(|a| a == app_id) {
            apps.push(app_id.into());
        }
    }

    pub fn unsubscribe(&self, waba_id: &str, app_id: &str) {
        if let Some(apps) = lock(&self.state).subscriptions.get_mut(waba_id) {
            apps.retain(|a| a != app_id);
        }
    }

    pub fn subscribed_apps(&self, waba_id: &str) -> Vec<String> {
        lock(&self.state)
            .subscriptions
            .get(waba_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_waba_override(&self, waba_id: &str, url: Option<&str>) {
        let mut st = lock(&self.state);
        match url {
            Some(u) => st.waba_overrides.insert(waba_id.into(), u.into()),
            None => st.waba_overrides.remove(waba_id),
        };
    }

    /// The next `n` calls to `target` (`METHOD path`, a relative path, or its first segment)
    /// get `fault`.
    pub fn fail_next(&self, target: &str, n: usize, fault: GraphFault) {
        lock(&self.state)
            .faults
            .entry(target.into())
            .or_default()
            .next(n, fault);
    }

    /// Every call to `target` gets `fault` until cleared.
    pub fn fail_always(&self, target: &str, fault: GraphFault) {
        lock(&self.state)
            .faults
            .entry(target.into())
            .or_default()
            .always(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Added to every HTTP request (a batch waits once).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }

    /// Whether an override waits for Meta's handshake against its URL (default on).
    pub fn set_handshake(&self, on: bool) {
        lock(&self.state).no_handshake = !on;
    }

    /// Called with the number id when Meta disconnects its On-Premises client: a register
    /// with a backup, which migrates it, or fails on a wrong PIN (the old client still goes
    /// down, as Meta documents).
    pub fn on_disconnect(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        lock(&self.state).on_disconnect = Some(Arc::new(f));
    }

    /// Every Graph call (batch items included), oldest first.
    pub fn calls(&self) -> Vec<GraphCall> {
        lock(&self.state).calls.clone()
    }

    /// Calls of `method` to `path` (batch items included).
    pub fn count(&self, method: &str, path: &str) -> usize {
        lock(&self.state)
            .calls
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .count()
    }

    /// HTTP requests received (a batch is one).
    pub fn request_count(&self) -> usize {
        self.server.requests().len()
    }

    /// Requests that carried `access_token` in the query or the body (should be none).
    pub fn access_token_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.query.as_deref().unwrap_or("").contains("access_token")
                    || r.body_text().contains("access_token")
            })
            .collect()
    }
}
