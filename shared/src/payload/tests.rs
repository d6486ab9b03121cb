//! The On-Premises payload: what parses, what is refused and the field each refusal names.

use super::*;
use secrecy::ExposeSecret;
use serde_json::json;

fn parse(v: Value) -> Result<Payload, PayloadParseError> {
    Payload::parse(v.to_string().as_bytes())
}

fn original() -> Value {
    json!({
        "whatsAppHostname": "34.89.1.2",
        "whatsAppUsername": "admin",
        "whatsAppPassword": "s3cret!",
        "vm": "whatsapp-4915112345678",
        "zone": "europe-west3-c"
    })
}

#[test]
fn original_five_key_payload_is_accepted() {
    let p = parse(original()).unwrap();
    assert_eq!(p.whatsapp_url.as_str(), "http://34.89.1.2/");
    assert_eq!(p.username, "admin");
    assert!(matches!(&p.password, PasswordSource::Inline(s) if s.expose_secret() == "s3cret!"));
    assert_eq!(p.vm, "whatsapp-4915112345678");
    assert_eq!(p.zone, "europe-west3-c");
    assert!(p.project.is_none());
    assert!(p.smtp.is_none());
}

#[test]
fn hostname_forms() {
    let cases = [
        ("34.89.1.2", "http://34.89.1.2/"),
        ("127.0.0.1:8081", "http://127.0.0.1:8081/"),
        ("wa.example.com", "http://wa.example.com/"),
        ("https://wa.example.com", "https://wa.example.com/"),
        (
            "https://wa.example.com:9090/",
            "https://wa.example.com:9090/",
        ),
        ("HTTP://wa.example.com/base/", "http://wa.example.com/base"),
    ];
    for (raw, want) in cases {
        let mut v = original();
        v["whatsAppHostname"] = json!(raw);
        assert_eq!(parse(v).unwrap().whatsapp_url.as_str(), want, "{raw}");
    }
}

#[test]
fn each_bad_field_is_named() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("vm", Value::Null, "is missing"),
        ("vm", json!(""), "is empty"),
        ("vm", json!(42), "must be a string, got a number"),
        ("vm", json!("../../x"), "not a valid"),
        ("zone", json!("europe west"), "not a valid"),
        ("zone", json!(["a"]), "an array"),
        ("whatsAppHostname", json!("ftp://x"), "must be host"),
        ("whatsAppHostname", json!("   "), "is empty"),
        ("whatsAppUsername", json!(true), "a boolean"),
        ("whatsAppPassword", Value::Null, "is missing"),
        ("project", json!("Bad/Project"), "not a valid"),
        (
            "whatsAppPasswordSecret",
            json!("projects/p/secrets/s"),
            "version name",
        ),
    ];
    for (field, value, problem) in cases {
        let mut v = original();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        let err = parse(v).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        assert!(err.to_string().contains(problem), "{err}");
    }
}

#[test]
fn a_fingerprint_pins_an_https_client_only() {
    let fp = format!("sha256:{}", "Ab".repeat(32));
    let mut v = original();
    v["whatsAppHostname"] = json!("https://34.89.1.2");
    v["whatsAppTlsFingerprint"] = json!(fp);
    let p = parse(v.clone()).unwrap();
    assert_eq!(p.tls_fingerprint.unwrap().to_string(), fp.to_lowercase());
    for (host, fingerprint, problem) in [
        ("https://34.89.1.2", "sha256:12", "64 hex digits"),
        ("https://34.89.1.2", "md5:00", "sha256:"),
        ("34.89.1.2", fp.as_str(), "http://"),
        ("http://34.89.1.2", fp.as_str(), "http://"),
    ] {
        v["whatsAppHostname"] = json!(host);
        v["whatsAppTlsFingerprint"] = json!(fingerprint);
        let err = parse(v.clone()).unwrap_err();
        assert_eq!(err.field(), Some("whatsAppTlsFingerprint"), "{err}");
        assert!(err.to_string().contains(problem), "{err}");
    }
    v["whatsAppTlsFingerprint"] = json!(7);
    assert_eq!(
        parse(v).unwrap_err().field(),
        Some("whatsAppTlsFingerprint")
    );
}

#[test]
fn empty_optional_fields_count_as_absent() {
    let mut v = original();
    for k in [
        "project",
        "smtpHost",
        "smtpPassword",
        "whatsAppPasswordSecret",
    ] {
        v[k] = json!("");
    }
    let p = parse(v).unwrap();
    assert!(p.project.is_none());
    assert!(p.smtp.is_none());
    assert!(matches!(p.password, PasswordSource::Inline(_)));
    let mut v = original();
    v["whatsAppPassword"] = json!("");
    assert_eq!(parse(v).unwrap_err().field(), Some("whatsAppPassword"));
}

#[test]
fn credentials_in_hostname_are_refused_without_echo() {
    let mut v = original();
    v["whatsAppHostname"] = json!("http://admin:hunter2@wa.example.com");
    let err = parse(v).unwrap_err().to_string();
    assert!(err.contains("whatsAppHostname"));
    assert!(!err.contains("hunter2"));
}

#[test]
fn secret_reference_wins_over_inline_password() {
    let mut v = original();
    v["whatsAppPasswordSecret"] = json!("projects/acme/secrets/wa-pw/versions/latest");
    let p = parse(v).unwrap();
    assert!(
        matches!(&p.password, PasswordSource::Secret(s) if s.as_str() == "projects/acme/secrets/wa-pw/versions/latest")
    );
}

#[test]
fn not_json_and_not_object() {
    assert!(matches!(
        Payload::parse(b"{nope"),
        Err(PayloadParseError::NotJson(_))
    ));
    assert!(matches!(
        Payload::parse(b"[1]"),
        Err(PayloadParseError::NotObject("an array"))
    ));
}

#[test]
fn smtp_only_with_all_five_fields() {
    let mut v = original();
    v["smtpHost"] = json!("smtp.example.com");
    v["smtpUsername"] = json!("u");
    v["smtpPassword"] = json!("p");
    v["smtpFrom"] = json!("a@example.com");
    assert!(parse(v.clone()).unwrap().smtp.is_none());
    assert_eq!(
        Payload::partial_smtp_fields(v.to_string().as_bytes()).len(),
        4
    );
    v["smtpTo"] = json!("b@example.com");
    let smtp = parse(v.clone()).unwrap().smtp.unwrap();
    assert_eq!(smtp.to, "b@example.com");
    assert!(Payload::partial_smtp_fields(v.to_string().as_bytes()).is_empty());
}

#[test]
fn unknown_fields_are_ignored_and_debug_hides_password() {
    let mut v = original();
    v["somethingElse"] = json!({"x": 1});
    let p = parse(v).unwrap();
    assert!(!format!("{p:?}").contains("s3cret!"));
}

#[test]
fn target_kinds() {
    assert!(matches!(
        AnyPayload::parse(original().to_string().as_bytes()),
        Ok(AnyPayload::OnPremises(_))
    ));
    let cloud = json!({"phoneNumberId": "1", "wabaId": "2",
        "accessTokenSecret": "projects/p/secrets/t/versions/1"});
    assert!(matches!(
        AnyPayload::parse(cloud.to_string().as_bytes()),
        Ok(AnyPayload::CloudApi(_))
    ));
    // Both: named phoneNumberId, whichever is otherwise valid.
    let mut both = original();
    both["phoneNumberId"] = json!("1");
    let err = AnyPayload::parse(both.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.field(), Some("phoneNumberId"), "{err}");
    let mut both = cloud.clone();
    both["vm"] = json!("whatsapp-1");
    assert_eq!(
        AnyPayload::parse(both.to_string().as_bytes())
            .unwrap_err()
            .field(),
        Some("phoneNumberId")
    );
    // A null phoneNumberId is absent: the On-Premises fields are then asked for.
    let err = AnyPayload::parse(br#"{"phoneNumberId": null}"#).unwrap_err();
    assert_eq!(err.field(), Some("whatsAppHostname"), "{err}");
    assert!(matches!(
        AnyPayload::parse(b"[]"),
        Err(PayloadParseError::NotObject(_))
    ));
}
