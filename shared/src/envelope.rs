//! Decoding one Pub/Sub message from the three forms it reaches the keepalive in:
//!
//! 1. a Pub/Sub push envelope (`{"message": {...}, "subscription": "..."}`),
//! 2. a CloudEvent in binary mode (Eventarc: `ce-*` headers, the envelope as body),
//! 3. a CloudEvent in structured mode (`application/cloudevents+json`, the envelope as `data`).
//!
//! CloudEvents go through `cloudevents-sdk`. Every error names what is wrong, so that a
//! message that can never be valid is answered 400 with the reason (Pub/Sub push still
//! redelivers it, and the subscription's dead-letter policy parks it after 5 attempts, where
//! a person reads why).

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use cloudevents::event::Data;
use cloudevents::AttributesReader;
use http::HeaderMap;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::payload::json_type;

/// The CloudEvent type Pub/Sub messages carry through Eventarc.
pub const PUBSUB_EVENT_TYPE: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// Which of the three forms a message arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    PushEnvelope,
    CloudEventBinary,
    CloudEventStructured,
}

/// One Pub/Sub message, decoded.
#[derive(Debug, Clone)]
pub struct PubSubMessage {
    pub form: Form,
    /// The decoded `message.data`: the scheduler payload's JSON bytes.
    pub data: Vec<u8>,
    pub message_id: Option<String>,
    pub publish_time: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub subscription: Option<String>,
}

/// Why a request is not a Pub/Sub message. The text names the field or header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

fn err(s: impl Into<String>) -> EnvelopeError {
    EnvelopeError(s.into())
}

/// Decodes an HTTP request (headers and body) into one Pub/Sub message.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<PubSubMessage, EnvelopeError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if headers.contains_key("ce-specversion") {
        decode_cloudevent(headers, body, Form::CloudEventBinary)
    } else if content_type.starts_with("application/cloudevents+json") {
        decode_cloudevent(headers, body, Form::CloudEventStructured)
    } else if content_type.starts_with("application/cloudevents") {
        Err(err(format!(
            "unsupported CloudEvent content type {content_type:?}: use binary mode or application/cloudevents+json"
        )))
    } else {
        let value = parse_json(body, "request body")?;
        from_envelope(&value, Form::PushEnvelope, "")
    }
}

fn decode_cloudevent(
    headers: &HeaderMap,
    body: &[u8],
    form: Form,
) -> Result<PubSubMessage, EnvelopeError> {
    if body.is_empty() {
        return Err(err("request body is empty"));
    }
    let event = cloudevents::binding::http::to_event(headers, body.to_vec())
        .map_err(|e| err(format!("not a valid CloudEvent: {e}")))?;
    let ty = event.ty();
    if ty != PUBSUB_EVENT_TYPE {
        return Err(err(format!(
            "CloudEvent type {ty:?} is not {PUBSUB_EVENT_TYPE:?}"
        )));
    }
    let data = match event.data() {
        None => return Err(err("CloudEvent has no data")),
        // Without a datacontenttype the SDK reads `data` as JSON even when it is a string
        // holding the envelope's JSON.
        Some(Data::Json(Value::String(s))) => parse_json(s.as_bytes(), "CloudEvent data")?,
        Some(Data::Json(v)) => v.clone(),
        Some(Data::String(s)) => parse_json(s.as_bytes(), "CloudEvent data")?,
        Some(Data::Binary(b)) => parse_json(b, "CloudEvent data")?,
    };
    let mut msg = from_envelope(&data, form, "data.")?;
    if msg.message_id.is_none() {
        msg.message_id = Some(event.id().to_string());
    }
    Ok(msg)
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, EnvelopeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(err(format!("{what} is empty")));
    }
    serde_json::from_slice(bytes).map_err(|e| err(format!("{what} is not JSON: {e}")))
}

/// `{"message": {"data": ..., ...}, "subscription": ...}` → message. `prefix` names where the
/// envelope sits (`data.` inside a structured CloudEvent) so errors point at the right field.
fn from_envelope(value: &Value, form: Form, prefix: &str) -> Result<PubSubMessage, EnvelopeError> {
    let obj = value.as_object().ok_or_else(|| {
        err(format!(
            "{} must be a JSON object with a `message` field, got {}",
            if prefix.is_empty() {
                "body"
            } else {
                "CloudEvent data"
            },
            json_type(value)
        ))
    })?;
    let message = match obj.get("message") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => {
            return Err(err(format!(
                "field `{prefix}message` is missing: not a Pub/Sub push message"
            )))
        }
        Some(other) => {
            return Err(err(format!(
                "field `{prefix}message` must be an object, got {}",
                json_type(other)
            )))
        }
    };
    let data_b64 = match message.get("data") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => {
            return Err(err(format!("field `{prefix}message.data` is empty")))
        }
        None | Some(Value::Null) => {
            return Err(err(format!("field `{prefix}message.data` is missing")))
        }
        Some(other) => {
            return Err(err(format!(
                "field `{prefix}message.data` must be a base64 string, got {}",
                json_type(other)
            )))
        }
    };
    let data = decode_base64(data_b64)
        .ok_or_else(|| err(format!("field `{prefix}message.data` is not valid base64")))?;
    let attributes = match message.get("attributes") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => string_map(m, prefix)?,
        Some(other) => {
            return Err(err(format!(
                "field `{prefix}message.attributes` must be an object, got {}",
                json_type(other)
            )))
        }
    };
    Ok(PubSubMessage {
        form,
        data,
        message_id: first_str(message, &["messageId", "message_id"]),
        publish_time: first_str(message, &["publishTime", "publish_time"]),
        attributes,
        subscription: obj
            .get("subscription")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn string_map(
    m: &Map<String, Value>,
    prefix: &str,
) -> Result<BTreeMap<String, String>, EnvelopeError> {
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(err(format!(
                "field `{prefix}message.attributes.{k}` must be a string, got {}",
                json_type(other)
            ))),
        })
        .collect()
}

fn first_str(m: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| m.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

/// Pub/Sub sends standard base64 with padding; accept it without padding and the URL-safe
/// alphabet too, since hand-written test messages and some tools produce those.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let s = s.trim();
    [
        GeneralPurpose::new(&base64::alphabet::STANDARD, cfg),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg),
    ]
    .iter()
    .find_map(|engine| engine.decode(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use http::HeaderValue;
    use serde_json::json;

    const PAYLOAD: &str = r#"{"vm":"wa"}"#;

    fn envelope() -> Value {
        json!({
            "message": {
                "data": STANDARD.encode(PAYLOAD),
                "messageId": "136969346945",
                "message_id": "136969346945",
                "publishTime": "2026-11-24T10:00:00.000Z",
                "attributes": {"tenant": "acme"}
            },
            "subscription": "projects/p/subscriptions/keepalive"
        })
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn push_envelope() {
        let m = decode(
            &headers(&[("content-type", "application/json")]),
            envelope().to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(m.form, Form::PushEnvelope);
        assert_eq!(m.data, PAYLOAD.as_bytes());
        assert_eq!(m.message_id.as_deref(), Some("136969346945"));
        assert_eq!(m.attributes["tenant"], "acme");
        assert_eq!(
            m.subscription.as_deref(),
            Some("projects/p/subscriptions/keepalive")
        );
    }

    #[test]
    fn binary_cloudevent() {
        let h = headers(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-type", PUBSUB_EVENT_TYPE),
            ("ce-source", "//pubsub.googleapis.com/projects/p/topics/t"),
            ("ce-id", "42"),
        ]);
        let m = decode(&h, envelope().to_string().as_bytes()).unwrap();
        assert_eq!(m.form, Form::CloudEventBinary);
        assert_eq!(m.data, PAYLOAD.as_bytes());
    }

    #[test]
    fn structured_cloudevent() {
        let body = json!({
            "specversion": "1.0",
            "type": PUBSUB_EVENT_TYPE,
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
            "id": "43",
            "datacontenttype": "application/json",
            "data": envelope()
        });
        let h = headers(&[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )]);
        let m = decode(&h, body.to_string().as_bytes()).unwrap();
        assert_eq!(m.form, Form::CloudEventStructured);
        assert_eq!(m.data, PAYLOAD.as_bytes());
    }

    #[test]
    fn errors_name_the_field() {
        let json_ct = headers(&[("content-type", "application/json")]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "request body is empty"),
            (b"{oops".to_vec(), "request body is not JSON"),
            (b"[]".to_vec(), "must be a JSON object"),
            (
                json!({"subscription": "s"}).to_string().into_bytes(),
                "`message` is missing",
            ),
            (
                json!({"message": "x"}).to_string().into_bytes(),
                "`message` must be an object",
            ),
            (
                json!({"message": {}}).to_string().into_bytes(),
                "`message.data` is missing",
            ),
            (
                json!({"message": {"data": ""}}).to_string().into_bytes(),
                "`message.data` is empty",
            ),
            (
                json!({"message": {"data": 5}}).to_string().into_bytes(),
                "`message.data` must be a base64 string",
            ),
            (
                json!({"message": {"data": "%%%not base64"}})
                    .to_string()
                    .into_bytes(),
                "`message.data` is not valid base64",
            ),
            (
                json!({"message": {"data": "eyJ9", "attributes": {"a": 1}}})
                    .to_string()
                    .into_bytes(),
                "`message.attributes.a`",
            ),
        ];
        for (body, want) in cases {
            let e = decode(&json_ct, &body).unwrap_err();
            assert!(
                e.0.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn wrong_cloudevent_type_or_missing_attributes() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-type", "com.example.other"),
            ("ce-source", "s"),
            ("ce-id", "1"),
            ("content-type", "application/json"),
        ]);
        let e = decode(&h, envelope().to_string().as_bytes()).unwrap_err();
        assert!(e.0.contains("com.example.other"), "{e}");
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("content-type", "application/json"),
        ]);
        let e = decode(&h, envelope().to_string().as_bytes()).unwrap_err();
        assert!(e.0.contains("not a valid CloudEvent"), "{e}");
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let e = decode(&h, br#"{"specversion":"1.0","type":"google.cloud.pubsub.topic.v1.messagePublished","source":"s","id":"1","data":{"message":{}}}"#).unwrap_err();
        assert!(e.0.contains("`data.message.data` is missing"), "{e}");
    }

    #[test]
    fn base64_variants() {
        assert_eq!(
            decode_base64("eyJ2bSI6IndhIn0=").unwrap(),
            PAYLOAD.as_bytes()
        );
        assert_eq!(
            decode_base64("eyJ2bSI6IndhIn0").unwrap(),
            PAYLOAD.as_bytes()
        );
        assert!(decode_base64("***").is_none());
    }
}
