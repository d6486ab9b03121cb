//! Pub/Sub push envelopes and CloudEvents (binary and structured) built around a payload, the
//! check that a decode is exactly what was built, and arbitrary request header names and values.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map};
use shared::envelope::{self, Form, PUBSUB_EVENT_TYPE};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct EnvelopeSpec {
    pub form: Form,
    /// 0 standard, 1 standard unpadded, 2 URL-safe, 3 URL-safe unpadded.
    pub base64: u8,
    pub message_id: Option<String>,
    /// Write the snake_case twins (`message_id`, `publish_time`) too.
    pub twins: bool,
    pub publish_time: Option<String>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub subscription: Option<String>,
    pub ce_id: String,
    pub ce_time: Option<String>,
    /// Structured mode: 0 `data` as an object, 1 as a JSON string, 2 `data_base64`.
    pub structured_data: u8,
    pub content_type: &'static str,
}

pub fn envelope_spec() -> impl Strategy<Value = EnvelopeSpec> {
    let form = prop_oneof![
        Just(Form::PushEnvelope),
        Just(Form::CloudEventBinary),
        Just(Form::CloudEventStructured)
    ];
    (
        (form, 0..4u8, prop::option::of("[0-9]{1,20}"), any::<bool>()),
        (
            prop::option::of(Just("2026-11-24T10:00:00.123Z".to_string())),
            prop::option::of(prop::collection::btree_map(
                "[a-zA-Z0-9_-]{1,12}",
                any::<String>(),
                0..4,
            )),
            prop::option::of("projects/[a-z][a-z0-9-]{4,20}/subscriptions/[a-z][a-z0-9-]{0,30}"),
        ),
        (
            "[0-9]{1,20}",
            prop::option::of(Just("2026-11-24T10:00:00Z".to_string())),
            0..3u8,
            prop::sample::select(vec![
                "application/json",
                "application/json; charset=utf-8",
                "",
            ]),
        ),
    )
        .prop_map(
            |(
                (form, base64, message_id, twins),
                (publish_time, attributes, subscription),
                (ce_id, ce_time, structured_data, content_type),
            )| EnvelopeSpec {
                form,
                base64,
                message_id,
                twins,
                publish_time,
                attributes,
                subscription,
                ce_id,
                ce_time,
                structured_data,
                content_type,
            },
        )
}

impl EnvelopeSpec {
    /// Headers and body carrying `data` in this form.
    pub fn build(&self, data: &[u8]) -> (HeaderMap, Vec<u8>) {
        let encoded = match self.base64 {
            0 => STANDARD.encode(data),
            1 => STANDARD_NO_PAD.encode(data),
            2 => URL_SAFE.encode(data),
            _ => URL_SAFE_NO_PAD.encode(data),
        };
        let mut message = Map::new();
        message.insert("data".into(), json!(encoded));
        if let Some(id) = &self.message_id {
            message.insert("messageId".into(), json!(id));
            if self.twins {
                message.insert("message_id".into(), json!(id));
            }
        }
        if let Some(t) = &self.publish_time {
            message.insert("publishTime".into(), json!(t));
            if self.twins {
                message.insert("publish_time".into(), json!(t));
            }
        }
        if let Some(a) = &self.attributes {
            message.insert("attributes".into(), json!(a));
        }
        let mut envelope = json!({ "message": message });
        if let Some(s) = &self.subscription {
            envelope["subscription"] = json!(s);
        }
        let mut headers = HeaderMap::new();
        let mut header = |k: &'static str, v: &str| {
            headers.insert(k, HeaderValue::from_str(v).unwrap());
        };
        let source = "//pubsub.googleapis.com/projects/acme-prod/topics/whatsapp-keepalive";
        let body = match self.form {
            Form::PushEnvelope => {
                if !self.content_type.is_empty() {
                    header("content-type", self.content_type);
                }
                envelope.to_string().into_bytes()
            }
            Form::CloudEventBinary => {
                header("content-type", "application/json");
                header("ce-specversion", "1.0");
                header("ce-type", PUBSUB_EVENT_TYPE);
                header("ce-source", source);
                header("ce-id", &self.ce_id);
                if let Some(t) = &self.ce_time {
                    header("ce-time", t);
                }
                envelope.to_string().into_bytes()
            }
            Form::CloudEventStructured => {
                header(
                    "content-type",
                    "application/cloudevents+json; charset=utf-8",
                );
                let mut ce = json!({
                    "specversion": "1.0",
                    "type": PUBSUB_EVENT_TYPE,
                    "source": source,
                    "id": self.ce_id,
                });
                if let Some(t) = &self.ce_time {
                    ce["time"] = json!(t);
                }
                match self.structured_data {
                    0 => {
                        ce["datacontenttype"] = json!("application/json");
                        ce["data"] = envelope;
                    }
                    1 => ce["data"] = json!(envelope.to_string()),
                    _ => ce["data_base64"] = json!(STANDARD.encode(envelope.to_string())),
                }
                ce.to_string().into_bytes()
            }
        };
        (headers, body)
    }

    pub fn check(&self, m: &envelope::PubSubMessage, data: &[u8]) -> Result<(), TestCaseError> {
        prop_assert_eq!(m.form, self.form);
        prop_assert_eq!(&m.data[..], data);
        let want_id = match (&self.message_id, self.form) {
            (Some(id), _) => Some(id.clone()),
            (None, Form::PushEnvelope) => None,
            (None, _) => Some(self.ce_id.clone()),
        };
        prop_assert_eq!(&m.message_id, &want_id);
        prop_assert_eq!(&m.publish_time, &self.publish_time);
        prop_assert_eq!(&m.attributes, &self.attributes.clone().unwrap_or_default());
        prop_assert_eq!(&m.subscription, &self.subscription);
        Ok(())
    }
}

pub fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "content-type",
            "ce-specversion",
            "ce-type",
            "ce-source",
            "ce-id",
            "ce-time",
            "ce-subject",
            "ce-dataschema",
            "ce-datacontenttype",
            "ce-subscription",
            "ce-traceparent",
            "ce-",
            "ce-a",
        ])
        .prop_map(str::to_string),
        "ce-[a-z0-9]{0,10}",
        "[a-z-]{1,12}",
    ]
}

pub fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "1.0",
            "0.3",
            "2.0",
            "",
            PUBSUB_EVENT_TYPE,
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents+json; charset=utf-8",
            "application/cloudevents-batch+json",
            "application/cloudevents",
            "text/plain",
            "//pubsub.googleapis.com/projects/p/topics/t",
            "not a uri \u{7f}",
            "2026-11-24T10:00:00Z",
            "2026-13-45T99:99:99Z",
            "yesterday",
            "42",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
        ".{0,40}".prop_map(String::into_bytes),
    ]
}
