//! The tables of cases of `decide.rs`: every finding of the contract with its severity, the
//! repairs each allows, and the verdict after them.
//!
//! This module: the fixtures (a healthy number, its expectations, Graph errors, edits).
//! `findings`: the findings table; `verdicts`: incomplete checks and the verdict after the
//! repairs; `reasons`: the reason line and the details a person reads.

mod findings;
mod reasons;
mod verdicts;

use super::*;
use serde_json::{json, Value};
use shared::google::GoogleError;
use shared::graph::SubscribedApp;
use shared::webhook::HandshakeFailure;
use time::macros::datetime;
use url::Url;

const NOW: OffsetDateTime = datetime!(2026-11-24 12:00:00 UTC);
const APP: &str = "6349";
const BOT: &str = "https://bot.example.com/hook";

fn bot() -> &'static WebhookTarget {
    Box::leak(Box::new(WebhookTarget {
        given: BOT.into(),
        url: Url::parse(BOT).unwrap(),
    }))
}

fn exp() -> Expectations<'static> {
    Expectations {
        phone_number_id: "1111",
        waba_id: "9999",
        app_id: None,
        webhook: Some(bot()),
        has_verify_token: true,
        repair: true,
        now: NOW,
        token_warn: Duration::from_secs(7 * 86_400),
    }
}

fn number_json() -> Value {
    json!({
        "id": "1111", "display_phone_number": "+49 151 1234", "status": "CONNECTED",
        "quality_rating": "GREEN", "platform_type": "CLOUD_API",
        "webhook_configuration": {"application": BOT},
        "health_status": {"can_send_message": "AVAILABLE", "entities": [
            {"entity_type": "PHONE_NUMBER", "id": "1111", "can_send_message": "AVAILABLE"},
            {"entity_type": "WABA", "id": "9999", "can_send_message": "AVAILABLE"},
            {"entity_type": "APP", "id": APP, "can_send_message": "AVAILABLE"}
        ]}
    })
}

fn apps(ids: &[&str]) -> Vec<SubscribedApp> {
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"whatsapp_business_api_data": {"id": id, "name": "Bot"}}))
        .collect();
    SubscribedApp::parse_list(&json!({ "data": data })).unwrap()
}

fn healthy() -> GraphReads {
    GraphReads {
        number: Ok(serde_json::from_value(number_json()).unwrap()),
        apps: Ok(apps(&[APP])),
        token: Ok(serde_json::from_value(
            json!({"app_id": APP, "is_valid": true, "expires_at": 0, "type": "SYSTEM_USER"}),
        )
        .unwrap()),
        handshake: Handshake::Passed,
    }
}

fn graph_error(status: u16, code: i64) -> GraphError {
    GraphError::from_response(
        "GET 1111",
        status,
        json!({"error": {"message": format!("(#{code}) message from Meta"), "type": "OAuthException", "code": code, "fbtrace_id": "Ab1"}})
            .to_string()
            .as_bytes(),
    )
}

fn edit_number(r: &mut GraphReads, f: impl FnOnce(&mut Value)) {
    let mut v = number_json();
    f(&mut v);
    r.number = Ok(serde_json::from_value(v).unwrap());
}

fn set_entity(r: &mut GraphReads, i: usize, entity: Value) {
    edit_number(r, |v| v["health_status"]["entities"][i] = entity);
}

type Edit = Box<dyn Fn(&mut GraphReads, &mut Expectations<'static>)>;
/// (case, edit of a healthy number, findings as (kind, severity), repairs possible).
type Case = (&'static str, Edit, Vec<(Kind, Severity)>, Vec<Kind>);

fn judged(obs: &Observation, e: &Expectations<'_>) -> Judged {
    match assess(obs, e) {
        Assessment::Judged(j) => j,
        Assessment::Incomplete(why) => panic!("incomplete: {why}"),
    }
}

fn done(c: Conclusion) -> Concluded {
    match c {
        Conclusion::Done(c) => c,
        Conclusion::Incomplete(w) => panic!("incomplete: {w}"),
    }
}
