//! The fleet payload (`cloud-api-contract.md`, "Fleet messages"): many Cloud API numbers in one
//! message, so that one scheduler job checks a team's fleet. Each entry of `numbers` takes the
//! fields of a Cloud API payload; the top-level fields are defaults for every entry. Parsed
//! once into [`FleetPayload`]: every entry is a valid [`CloudPayload`], or the whole message
//! is refused naming `numbers[i].field`.

use serde_json::{Map, Value};
use std::collections::HashMap;

use super::cloud::CloudPayload;
use super::{json_type, PayloadError};

/// The most entries one fleet message may hold.
pub const MAX_FLEET_NUMBERS: usize = 5_000;

/// A fleet of Cloud API numbers, each entry valid by construction, in the order given.
#[derive(Debug, Clone)]
pub struct FleetPayload {
    pub numbers: Vec<CloudPayload>,
}

impl FleetPayload {
    /// Reads a payload that has `numbers` (the caller has checked that it has no `vm`).
    pub(crate) fn from_map(map: &Map<String, Value>) -> Result<FleetPayload, PayloadError> {
        let entries = match map.get("numbers") {
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(PayloadError::new(
                    "numbers",
                    format!("must be a list of numbers, got {}", json_type(other)),
                ))
            }
            None => return Err(PayloadError::new("numbers", "is missing")),
        };
        if entries.is_empty() {
            return Err(PayloadError::new(
                "numbers",
                "is empty: a fleet lists at least one number",
            ));
        }
        if entries.len() > MAX_FLEET_NUMBERS {
            return Err(PayloadError::new(
                "numbers",
                format!(
                    "holds {} entries; at most {MAX_FLEET_NUMBERS} fit one message: split the fleet",
                    entries.len()
                ),
            ));
        }
        if map.get("phoneNumberId").is_some_and(|v| !v.is_null()) {
            return Err(PayloadError::new(
                "phoneNumberId",
                "names one number: in a fleet payload each entry of `numbers` gives its own",
            ));
        }
        let mut defaults = map.clone();
        defaults.remove("numbers");
        let mut numbers = Vec::with_capacity(entries.len());
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let Value::Object(own) = entry else {
                return Err(PayloadError::new(
                    format!("numbers[{i}]"),
                    format!("must be an object, got {}", json_type(entry)),
                ));
            };
            if own.get("vm").is_some_and(|v| !v.is_null()) {
                return Err(PayloadError::new(
                    format!("numbers[{i}].vm"),
                    "has no place in a fleet: an On-Premises VM keeps its own message",
                ));
            }
            let mut merged = defaults.clone();
            merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            let number = CloudPayload::from_map(&merged).map_err(|e| {
                let inherited =
                    !own.contains_key(e.field.as_ref()) && defaults.contains_key(e.field.as_ref());
                PayloadError::new(
                    format!("numbers[{i}].{}", e.field),
                    if inherited {
                        format!("{} (the top-level default)", e.problem)
                    } else {
                        e.problem
                    },
                )
            })?;
            if let Some(first) = seen.insert(number.phone_number_id.clone(), i) {
                return Err(PayloadError::new(
                    format!("numbers[{i}].phoneNumberId"),
                    format!("repeats numbers[{first}]: list each number once"),
                ));
            }
            numbers.push(number);
        }
        Ok(FleetPayload { numbers })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AnyPayload, PayloadParseError};
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "projects/acme-prod/secrets/meta-token/versions/latest";

    fn parse(v: Value) -> Result<FleetPayload, PayloadParseError> {
        match AnyPayload::parse(v.to_string().as_bytes())? {
            AnyPayload::Fleet(f) => Ok(f),
            _ => panic!("not parsed as a fleet: {v}"),
        }
    }

    #[test]
    fn top_level_fields_are_defaults_an_entry_may_override() {
        let f = parse(json!({
            "accessTokenSecret": TOKEN,
            "wabaId": "9999",
            "repair": true,
            "numbers": [
                {"phoneNumberId": "1111", "name": "acme-de"},
                {"phoneNumberId": "2222", "wabaId": "8888", "repair": false},
            ]
        }))
        .unwrap();
        assert_eq!(f.numbers.len(), 2);
        let (a, b) = (&f.numbers[0], &f.numbers[1]);
        assert_eq!(
            (a.phone_number_id.as_str(), a.waba_id.as_str()),
            ("1111", "9999")
        );
        assert!(a.repair && a.name.as_deref() == Some("acme-de"));
        assert_eq!(
            (b.phone_number_id.as_str(), b.waba_id.as_str()),
            ("2222", "8888")
        );
        assert!(!b.repair && b.name.is_none());
        assert_eq!(b.access_token_secret.as_str(), TOKEN);
    }

    #[test]
    fn a_bad_entry_is_named_with_its_index() {
        let base = || json!({"accessTokenSecret": TOKEN, "wabaId": "9999"});
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!([{"phoneNumberId": "1"}, {"phoneNumberId": "2x"}]),
                "numbers[1].phoneNumberId",
                "digits",
            ),
            (
                json!([{"phoneNumberId": "1"}, {}]),
                "numbers[1].phoneNumberId",
                "missing",
            ),
            (
                json!([{"phoneNumberId": "1", "webhookUrl": "http://x"}]),
                "numbers[0].webhookUrl",
                "https://",
            ),
            (
                json!([{"phoneNumberId": "1", "accessToken": "EAAsecret"}]),
                "numbers[0].accessToken",
                "Secret Manager",
            ),
            (
                json!([{"phoneNumberId": "1", "repair": "yes"}]),
                "numbers[0].repair",
                "true or false",
            ),
            (
                json!([{"phoneNumberId": "1"}, 7]),
                "numbers[1]",
                "an object",
            ),
            (
                json!([{"phoneNumberId": "1"}, {"phoneNumberId": "1"}]),
                "numbers[1].phoneNumberId",
                "repeats numbers[0]",
            ),
            (
                json!([{"phoneNumberId": "1", "vm": "wa-1"}]),
                "numbers[0].vm",
                "On-Premises",
            ),
            (json!([]), "numbers", "empty"),
            (json!({"phoneNumberId": "1"}), "numbers", "a list"),
        ];
        for (numbers, field, problem) in cases {
            let mut v = base();
            v["numbers"] = numbers.clone();
            let err = parse(v).unwrap_err();
            assert_eq!(err.field(), Some(field), "{numbers}: {err}");
            assert!(err.to_string().contains(problem), "{numbers}: {err}");
            assert!(!err.to_string().contains("EAAsecret"), "{err}");
        }
    }

    #[test]
    fn a_bad_default_is_named_in_the_first_entry_and_said_to_be_the_default() {
        let err = parse(json!({"accessTokenSecret": "meta-token", "wabaId": "9999", "numbers": [{"phoneNumberId": "1"}]})).unwrap_err();
        assert_eq!(err.field(), Some("numbers[0].accessTokenSecret"), "{err}");
        assert!(err.to_string().contains("top-level default"), "{err}");
        let err = parse(json!({"accessTokenSecret": TOKEN, "numbers": [{"phoneNumberId": "1"}]}))
            .unwrap_err();
        assert_eq!(err.field(), Some("numbers[0].wabaId"), "{err}");
    }

    #[test]
    fn limits_and_mixed_kinds() {
        let entries: Vec<Value> = (0..=MAX_FLEET_NUMBERS)
            .map(|i| json!({"phoneNumberId": format!("{}", 1000 + i)}))
            .collect();
        let mut v = json!({"accessTokenSecret": TOKEN, "wabaId": "9", "numbers": entries});
        let err = parse(v.clone()).unwrap_err();
        assert_eq!(err.field(), Some("numbers"), "{err}");
        assert!(err.to_string().contains("5001"), "{err}");
        v["numbers"].as_array_mut().unwrap().pop();
        assert_eq!(parse(v).unwrap().numbers.len(), MAX_FLEET_NUMBERS);

        let err = parse(json!({"accessTokenSecret": TOKEN, "wabaId": "9", "phoneNumberId": "1", "numbers": [{"phoneNumberId": "2"}]})).unwrap_err();
        assert_eq!(err.field(), Some("phoneNumberId"), "{err}");
        let err = AnyPayload::parse(
            json!({"vm": "wa-1", "numbers": [{"phoneNumberId": "2"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("numbers"), "{err}");
    }
}
