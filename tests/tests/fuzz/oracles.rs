//! The contract's rules, written from the contract (not from the parser), as oracles: valid
//! names, what holds for every parsed payload, every parse result and every decoded message.

use http::HeaderMap;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use secrecy::ExposeSecret;
use shared::envelope::{self, Form};
use shared::payload::{PasswordSource, Payload, PayloadParseError};

/// RFC 1035 label, as Compute Engine names instances.
pub fn valid_vm(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

pub fn valid_zone(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

pub fn valid_project(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b':'
        })
}

pub fn valid_secret(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 6
        && parts[0] == "projects"
        && parts[2] == "secrets"
        && parts[4] == "versions"
        && [parts[1], parts[3], parts[5]].iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

pub fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

pub static PAYLOAD_KEYS: [&str; 12] = [
    "whatsAppHostname",
    "whatsAppUsername",
    "whatsAppPassword",
    "whatsAppPasswordSecret",
    "vm",
    "zone",
    "project",
    "smtpHost",
    "smtpUsername",
    "smtpPassword",
    "smtpFrom",
    "smtpTo",
];

/// What holds for every payload that parses, whatever it was made from.
pub fn check_parsed(p: &Payload) -> Result<(), TestCaseError> {
    prop_assert!(valid_vm(&p.vm), "vm {:?} accepted", p.vm);
    prop_assert!(valid_zone(&p.zone), "zone {:?} accepted", p.zone);
    if let Some(project) = &p.project {
        prop_assert!(valid_project(project), "project {project:?} accepted");
    }
    let url = &p.whatsapp_url;
    prop_assert!(
        matches!(url.scheme(), "http" | "https"),
        "scheme of {url} accepted"
    );
    prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{url}");
    prop_assert!(
        url.username().is_empty() && url.password().is_none(),
        "{url}"
    );
    prop_assert!(url.query().is_none() && url.fragment().is_none(), "{url}");
    prop_assert!(url.path() == "/" || !url.path().ends_with('/'), "{url}");
    prop_assert!(!blank(&p.username));
    match &p.password {
        PasswordSource::Inline(pw) => prop_assert!(!blank(pw.expose_secret())),
        PasswordSource::Secret(v) => prop_assert!(valid_secret(v.as_str()), "{v}"),
    }
    if let Some(smtp) = &p.smtp {
        prop_assert!(!blank(&smtp.host) && !blank(&smtp.to) && !blank(&smtp.from));
        prop_assert!(!blank(&smtp.username) && !blank(smtp.password.expose_secret()));
    }
    Ok(())
}

/// What holds for every parse result.
pub fn check_result(r: &Result<Payload, PayloadParseError>) -> Result<(), TestCaseError> {
    match r {
        Ok(p) => check_parsed(p),
        Err(e) => {
            if let Some(field) = e.field() {
                prop_assert!(PAYLOAD_KEYS.contains(&field), "unknown field {field:?}");
                prop_assert!(e.to_string().contains(field), "{e}");
            }
            Ok(())
        }
    }
}

/// What holds for every decoded message: its form follows from the headers.
pub fn check_decoded(
    headers: &HeaderMap,
    r: &Result<envelope::PubSubMessage, envelope::EnvelopeError>,
) -> Result<(), TestCaseError> {
    if let Ok(m) = r {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let want = if headers.contains_key("ce-specversion") {
            Form::CloudEventBinary
        } else if ct.starts_with("application/cloudevents+json") {
            Form::CloudEventStructured
        } else {
            Form::PushEnvelope
        };
        prop_assert_eq!(m.form, want);
    }
    Ok(())
}
