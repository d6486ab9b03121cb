//! The scheduler payload: the JSON that Cloud Scheduler publishes for one WhatsApp number.
//!
//! Parsed once, here, into [`Payload`]; past this point a check cannot meet a missing `vm` or an
//! unusable host. Drop-in compatible with the five-key payload of the original Node.js function
//! (`whatsAppHostname`, `whatsAppUsername`, `whatsAppPassword`, `vm`, `zone`), plus `project`,
//! `whatsAppPasswordSecret` and the five optional SMTP fields. Unknown fields are ignored.
//!
//! A payload with `phoneNumberId` is a Cloud API number ([`cloud::CloudPayload`]); [`AnyPayload`]
//! tells the two kinds apart.

pub mod cloud;
pub mod fleet;

use secrecy::SecretString;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use url::Url;

use crate::tls_pin::Fingerprint;

/// One tenant's payload, valid by construction.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Base URL of the WhatsApp client's API (no trailing slash in its path).
    pub whatsapp_url: Url,
    /// `whatsAppTlsFingerprint`: the one certificate an `https://` client is trusted with.
    pub tls_fingerprint: Option<Fingerprint>,
    pub username: String,
    pub password: PasswordSource,
    pub vm: String,
    pub zone: String,
    /// `None`: fall back to `GOOGLE_CLOUD_PROJECT`, then the credentials' project.
    pub project: Option<String>,
    /// Present only when all five SMTP fields are.
    pub smtp: Option<SmtpSettings>,
}

/// Where the WhatsApp password comes from.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// `whatsAppPassword`, carried in the message (the original function's way).
    Inline(SecretString),
    /// `whatsAppPasswordSecret`: a Secret Manager version to read.
    Secret(SecretVersion),
}

/// A Secret Manager secret version name, `projects/P/secrets/S/versions/V`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion(String);

impl SecretVersion {
    pub fn parse(name: &str) -> Result<Self, String> {
        let parts: Vec<&str> = name.split('/').collect();
        let ok = parts.len() == 6
            && parts[0] == "projects"
            && parts[2] == "secrets"
            && parts[4] == "versions"
            && [parts[1], parts[3], parts[5]]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(is_resource_char));
        if ok {
            Ok(SecretVersion(name.to_string()))
        } else {
            Err("must be a Secret Manager version name, projects/P/secrets/S/versions/V".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `P` of `projects/P/secrets/S/versions/V`.
    pub fn project(&self) -> &str {
        self.0.split('/').nth(1).unwrap_or_default()
    }
}

impl fmt::Display for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Mail settings for reset and alert notifications (port 587, STARTTLS, as the original).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `host` or `host:port`; port 587 when absent.
    pub host: String,
    pub username: String,
    pub password: SecretString,
    pub from: String,
    pub to: String,
}

/// Why a payload was refused. `field` is the payload key at fault (in a fleet payload, the
/// entry's: `numbers[3].wabaId`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload field `{field}` {problem}")]
pub struct PayloadError {
    pub field: Cow<'static, str>,
    pub problem: String,
}

impl PayloadError {
    fn new(field: impl Into<Cow<'static, str>>, problem: impl Into<String>) -> Self {
        PayloadError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Why the bytes were not a payload at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadParseError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload must be a JSON object, got {0}")]
    NotObject(&'static str),
    #[error(transparent)]
    Field(#[from] PayloadError),
}

impl PayloadParseError {
    /// The payload key at fault, if the error is about one key.
    pub fn field(&self) -> Option<&str> {
        match self {
            PayloadParseError::Field(e) => Some(&e.field),
            _ => None,
        }
    }
}

/// What a message asks to check: an On-Premises VM, a Cloud API number, or a fleet of them.
#[derive(Debug, Clone)]
pub enum AnyPayload {
    /// A payload with `vm` (`keepalive-contract.md`).
    OnPremises(Payload),
    /// A payload with `phoneNumberId` (`cloud-api-contract.md`).
    CloudApi(cloud::CloudPayload),
    /// A payload with `numbers` (`cloud-api-contract.md`, "Fleet messages").
    Fleet(fleet::FleetPayload),
}

impl AnyPayload {
    /// Parses the JSON bytes of a payload of either kind. `phoneNumberId` makes it a Cloud
    /// API payload; with `vm` as well it is refused, naming `phoneNumberId`.
    pub fn parse(bytes: &[u8]) -> Result<AnyPayload, PayloadParseError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| PayloadParseError::NotJson(describe_json_error(&e)))?;
        let map = match value {
            Value::Object(map) => map,
            other => return Err(PayloadParseError::NotObject(json_type(&other))),
        };
        let present = |k: &str| map.get(k).is_some_and(|v| !v.is_null());
        if present("numbers") {
            if present("vm") {
                return Err(PayloadError::new(
                    "numbers",
                    "cannot be given with `vm`: a fleet holds Cloud API numbers only; an \
                     On-Premises VM keeps its own message",
                )
                .into());
            }
            return Ok(AnyPayload::Fleet(fleet::FleetPayload::from_map(&map)?));
        }
        if !present("phoneNumberId") {
            return Ok(AnyPayload::OnPremises(Payload::from_map(&map)?));
        }
        if present("vm") {
            return Err(PayloadError::new(
                "phoneNumberId",
                "cannot be given with `vm`: a payload names either a Cloud API number \
                 (phoneNumberId) or an On-Premises VM (vm), not both",
            )
            .into());
        }
        Ok(AnyPayload::CloudApi(cloud::CloudPayload::from_map(&map)?))
    }
}

impl Payload {
    /// Parses the JSON bytes of a payload (the decoded `message.data`).
    pub fn parse(bytes: &[u8]) -> Result<Payload, PayloadParseError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| PayloadParseError::NotJson(describe_json_error(&e)))?;
        match value {
            Value::Object(map) => Ok(Payload::from_map(&map)?),
            other => Err(PayloadParseError::NotObject(json_type(&other))),
        }
    }

    fn from_map(map: &Map<String, Value>) -> Result<Payload, PayloadError> {
        let hostname = required_str(map, "whatsAppHostname")?;
        let whatsapp_url = parse_hostname(hostname)?;
        let tls_fingerprint = parse_fingerprint(map, &whatsapp_url)?;
        let username = required_str(map, "whatsAppUsername")?.to_string();
        let password = match optional_str(map, "whatsAppPasswordSecret")? {
            Some(name) => PasswordSource::Secret(
                SecretVersion::parse(name)
                    .map_err(|p| PayloadError::new("whatsAppPasswordSecret", p))?,
            ),
            None => match optional_str(map, "whatsAppPassword")? {
                Some(pw) => PasswordSource::Inline(SecretString::from(pw.to_string())),
                None => {
                    return Err(PayloadError::new(
                        "whatsAppPassword",
                        "is missing (give it, or whatsAppPasswordSecret)",
                    ))
                }
            },
        };
        let vm = required_str(map, "vm")?;
        check_name("vm", vm, is_instance_name)?;
        let zone = required_str(map, "zone")?;
        check_name("zone", zone, is_zone_name)?;
        let project = optional_str(map, "project")?;
        if let Some(p) = project {
            check_name("project", p, is_project_id)?;
        }
        Ok(Payload {
            whatsapp_url,
            tls_fingerprint,
            username,
            password,
            vm: vm.to_string(),
            zone: zone.to_string(),
            project: project.map(str::to_string),
            smtp: parse_smtp(map)?,
        })
    }

    /// Names of the SMTP fields present when some but not all five are: mail is then off.
    pub fn partial_smtp_fields(bytes: &[u8]) -> Vec<&'static str> {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
            return Vec::new();
        };
        let present: Vec<&'static str> = SMTP_FIELDS
            .iter()
            .copied()
            .filter(|k| matches!(map.get(*k), Some(Value::String(s)) if !s.is_empty()))
            .collect();
        if present.len() == SMTP_FIELDS.len() {
            Vec::new()
        } else {
            present
        }
    }
}

const SMTP_FIELDS: [&str; 5] = [
    "smtpHost",
    "smtpUsername",
    "smtpPassword",
    "smtpFrom",
    "smtpTo",
];

fn parse_smtp(map: &Map<String, Value>) -> Result<Option<SmtpSettings>, PayloadError> {
    let mut values = Vec::with_capacity(5);
    for key in SMTP_FIELDS {
        values.push(optional_str(map, key)?);
    }
    match values.as_slice() {
        [Some(host), Some(user), Some(pw), Some(from), Some(to)] => Ok(Some(SmtpSettings {
            host: host.to_string(),
            username: user.to_string(),
            password: SecretString::from(pw.to_string()),
            from: from.to_string(),
            to: to.to_string(),
        })),
        _ => Ok(None),
    }
}

/// `host`, `host:port` → `http://host[:port]`; `http(s)://...` as given.
fn parse_hostname(raw: &str) -> Result<Url, PayloadError> {
    const FIELD: &str = "whatsAppHostname";
    let raw = raw.trim();
    let lower = raw.to_ascii_lowercase();
    let candidate = if lower.starts_with("http://") || lower.starts_with("https://") {
        raw.to_string()
    } else if raw.contains("://") {
        return Err(PayloadError::new(
            FIELD,
            "must be host, host:port or an http:// or https:// URL",
        ));
    } else {
        format!("http://{raw}")
    };
    let mut url = Url::parse(&candidate)
        .map_err(|e| PayloadError::new(FIELD, format!("is not a usable host or URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(PayloadError::new(FIELD, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the value: it carries credentials.
        return Err(PayloadError::new(
            FIELD,
            "must not carry credentials; use whatsAppUsername and whatsAppPassword",
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

/// `whatsAppTlsFingerprint`: well formed, and only with an `https://` hostname (over plain
/// HTTP there is no certificate to pin).
fn parse_fingerprint(
    map: &Map<String, Value>,
    url: &Url,
) -> Result<Option<Fingerprint>, PayloadError> {
    const FIELD: &str = "whatsAppTlsFingerprint";
    let Some(text) = optional_str(map, FIELD)? else {
        return Ok(None);
    };
    let fingerprint = Fingerprint::parse(text).map_err(|p| PayloadError::new(FIELD, p))?;
    if url.scheme() != "https" {
        return Err(PayloadError::new(
            FIELD,
            "is given with an http:// whatsAppHostname: a certificate is pinned only over https://",
        ));
    }
    Ok(Some(fingerprint))
}

fn required_str<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a str, PayloadError> {
    match map.get(key) {
        Some(Value::String(s)) if s.trim().is_empty() => Err(PayloadError::new(key, "is empty")),
        _ => optional_str(map, key)?.ok_or_else(|| PayloadError::new(key, "is missing")),
    }
}

/// A string field; absent, JSON null or empty is `None` (payloads in use carry empty optional
/// fields, e.g. `"smtpHost": ""`); another type is an error.
fn optional_str<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, PayloadError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(PayloadError::new(
            key,
            format!("must be a string, got {}", json_type(other)),
        )),
    }
}

fn check_name(field: &'static str, value: &str, ok: fn(&str) -> bool) -> Result<(), PayloadError> {
    if ok(value) {
        Ok(())
    } else {
        let shown: String = value.chars().take(80).collect();
        Err(PayloadError::new(
            field,
            format!("is not a valid Compute Engine {field} name: {shown:?}"),
        ))
    }
}

fn is_resource_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// RFC 1035 label, as Compute Engine requires: lower-case letter first, 1 to 63 characters.
fn is_instance_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

fn is_zone_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Project ids, including the legacy domain-scoped form `example.com:project`.
fn is_project_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b':'
        })
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message without echoing input (it never does; this keeps line/column).
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    format!("{e}")
}

#[cfg(test)]
mod tests;
