//! The payload parser's targets: arbitrary bytes and objects never panic, valid payloads round
//! trip, one broken field is named (without the password), mutated seeds never panic.

use crate::corpus::*;
use crate::fuzz;
use crate::mutation::*;
use crate::oracles::*;
use crate::payload_gen::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};
use shared::payload::{Payload, PayloadParseError};

#[test]
fn payload_arbitrary_bytes_never_panic() {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        any::<String>().prop_map(String::into_bytes),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ];
    fuzz("payload_arbitrary_bytes_never_panic", bytes, |b| {
        check_result(&Payload::parse(&b))
    });
}

#[test]
fn payload_arbitrary_objects_never_panic() {
    // Objects whose keys are mostly the payload's own, with values of any type and shape.
    let key = prop_oneof![
        4 => prop::sample::select(&PAYLOAD_KEYS[..]).prop_map(str::to_string),
        1 => "[a-zA-Z]{0,10}",
    ];
    let value = prop_oneof![
        json_value(),
        host_spec().prop_map(|h| json!(h.raw)),
        "[a-z]([-a-z0-9]{0,61}[a-z0-9])?".prop_map(Value::String),
        secret_name().prop_map(Value::String),
        ".{0,70}".prop_map(Value::String),
    ];
    let object = prop::collection::btree_map(key, value, 0..14)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    fuzz("payload_arbitrary_objects_never_panic", object, |v| {
        let r = Payload::parse(v.to_string().as_bytes());
        prop_assert!(
            !matches!(
                r,
                Err(PayloadParseError::NotJson(_) | PayloadParseError::NotObject(_))
            ),
            "{r:?}"
        );
        check_result(&r)
    });
}

#[test]
fn payload_valid_round_trips() {
    fuzz(
        "payload_valid_round_trips",
        (payload_spec(), any::<bool>()),
        |(spec, pretty)| {
            let bytes = spec.to_bytes(pretty);
            match Payload::parse(&bytes) {
                Ok(p) => {
                    check_parsed(&p)?;
                    spec.check(&p)
                }
                Err(e) => Err(TestCaseError::fail(format!(
                    "valid payload refused: {e}\n{}",
                    String::from_utf8_lossy(&bytes)
                ))),
            }
        },
    );
}

/// How one field is broken, and the field the error must name.
#[derive(Debug, Clone)]
enum Break {
    Remove(&'static str),
    Set(&'static str, Value),
}

fn one_break() -> impl Strategy<Value = Break> {
    let required = prop::sample::select(vec!["whatsAppHostname", "whatsAppUsername", "vm", "zone"]);
    let bad_host = prop_oneof![
        Just("ftp://34.89.1.2".to_string()),
        Just("http://".to_string()),
        Just("mailto:ops@example.com".to_string()),
        Just("ws://host".to_string()),
        Just("http://bad host".to_string()),
        Just("http://[::1".to_string()),
        Just("34.89.1.2:99999".to_string()),
        // (userinfo characters only: `/?#` would end the authority before the `@`)
        "PW[A-Za-z0-9!*+=^_~-]{14,30}".prop_map(|pw| format!("http://admin:{pw}@34.89.1.2")),
        "PW[A-Za-z0-9!*+=^_~-]{14,30}".prop_map(|pw| format!("https://{pw}@wa.example.com/")),
    ];
    prop_oneof![
        required.clone().prop_map(Break::Remove),
        required.clone().prop_map(|k| Break::Set(k, Value::Null)),
        (
            required.clone(),
            prop_oneof![Just(""), Just("  "), Just("\t\n")]
        )
            .prop_map(|(k, v)| Break::Set(k, json!(v))),
        (required, wrong_type()).prop_map(|(k, v)| Break::Set(k, v)),
        bad_host.prop_map(|h| Break::Set("whatsAppHostname", json!(h))),
        any::<String>()
            .prop_filter("valid or blank vm", |s| !valid_vm(s) && !blank(s))
            .prop_map(|s| Break::Set("vm", json!(s))),
        "[a-zA-Z0-9 ._/-]{1,70}"
            .prop_filter("valid or blank vm", |s| !valid_vm(s) && !blank(s))
            .prop_map(|s| Break::Set("vm", json!(s))),
        any::<String>()
            .prop_filter("valid or blank zone", |s| !valid_zone(s) && !blank(s))
            .prop_map(|s| Break::Set("zone", json!(s))),
        any::<String>()
            .prop_filter("valid or blank project", |s| !valid_project(s) && !blank(s))
            .prop_map(|s| Break::Set("project", json!(s))),
        wrong_type().prop_map(|v| Break::Set("project", v)),
        any::<String>()
            .prop_filter("valid or blank secret", |s| !valid_secret(s) && !blank(s))
            .prop_map(|s| Break::Set("whatsAppPasswordSecret", json!(s))),
        wrong_type().prop_map(|v| Break::Set("whatsAppPasswordSecret", v)),
        (prop::sample::select(&PAYLOAD_KEYS[7..]), wrong_type())
            .prop_map(|(k, v)| Break::Set(k, v)),
        // The inline password, when it is the only one.
        Just(Break::Remove("whatsAppPassword")),
        prop_oneof![Just(json!("")), Just(json!(" ")), wrong_type()]
            .prop_map(|v| Break::Set("whatsAppPassword", v)),
    ]
}

#[test]
fn payload_with_one_broken_field_names_it() {
    fuzz(
        "payload_with_one_broken_field_names_it",
        (payload_spec(), one_break()),
        |(mut spec, brk)| {
            let field = match &brk {
                Break::Remove(k) | Break::Set(k, _) => *k,
            };
            if field == "whatsAppPassword" {
                // The inline password counts only without a secret.
                spec.secret = None;
                spec.inline = true;
            }
            let mut map = spec.to_map();
            match &brk {
                Break::Remove(k) => {
                    map.remove(*k);
                }
                Break::Set(k, v) => {
                    map.insert((*k).to_string(), v.clone());
                }
            }
            let bytes = Value::Object(map).to_string().into_bytes();
            match Payload::parse(&bytes) {
                Ok(p) => Err(TestCaseError::fail(format!("accepted with {brk:?}: {p:?}"))),
                Err(e) => {
                    prop_assert_eq!(e.field(), Some(field), "{}", e);
                    let text = e.to_string();
                    prop_assert!(!text.contains(&spec.password), "password in {text}");
                    prop_assert!(!text.contains(&spec.smtp[2]), "smtp password in {text}");
                    if let Break::Set("whatsAppHostname", Value::String(h)) = &brk {
                        if let Some(userinfo) = h.split('@').next().filter(|_| h.contains('@')) {
                            let secret = userinfo.rsplit(['/', ':']).next().unwrap_or("");
                            prop_assert!(!text.contains(secret), "credentials in {}", text);
                        }
                    }
                    Ok(())
                }
            }
        },
    );
}

#[test]
fn payload_mutated_seeds_never_panic() {
    let seeds = payload_seeds();
    let input = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    fuzz("payload_mutated_seeds_never_panic", input, |(i, ms)| {
        let bytes = mutate(seeds[i].1.clone(), &ms);
        check_result(&Payload::parse(&bytes))
    });
}

#[test]
fn payload_mutated_seed_values_never_panic() {
    // Structure-aware: one field of a seed replaced by any JSON value, or removed.
    let seeds: Vec<Map<String, Value>> = payload_seeds()
        .iter()
        .filter_map(|(_, b)| match serde_json::from_slice(b) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
        .collect();
    let n = seeds.len();
    let input = (
        0..n,
        prop::collection::vec(
            (
                prop::sample::select(&PAYLOAD_KEYS[..]),
                prop::option::of(json_value()),
            ),
            1..4,
        ),
    );
    fuzz(
        "payload_mutated_seed_values_never_panic",
        input,
        |(i, edits)| {
            let mut m = seeds[i].clone();
            for (k, v) in edits {
                match v {
                    Some(v) => m.insert(k.to_string(), v),
                    None => m.remove(k),
                };
            }
            check_result(&Payload::parse(Value::Object(m).to_string().as_bytes()))
        },
    );
}
