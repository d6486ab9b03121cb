//! Generated payloads: a valid payload spec (host, credentials, names, SMTP, absent fields),
//! its JSON and the check that a parse is exactly it; any JSON value, a value of the wrong type.

use crate::oracles::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use shared::payload::{PasswordSource, Payload};

/// How the WhatsApp client is named, and what the parser must make of it.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub raw: String,
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}"))
}

/// A DNS name, in mixed case (the parser lower-cases it).
pub fn dns_name() -> impl Strategy<Value = (String, String)> {
    (
        // (no `xn--` labels: those must be valid punycode)
        prop::collection::vec(
            "[a-z]([a-z0-9-]{0,10}[a-z0-9])?".prop_filter("punycode", |l| !l.contains("--")),
            1..4,
        ),
        "[a-z]{2,6}",
        any::<u64>(),
    )
        .prop_map(|(labels, tld, case)| {
            let lower = format!("{}.{tld}", labels.join("."));
            let mixed: String = lower
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if (case >> (i % 64)) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            (mixed, lower)
        })
}

pub fn host_spec() -> impl Strategy<Value = HostSpec> {
    let host = prop_oneof![
        ipv4().prop_map(|h| (h.clone(), h)),
        dns_name(),
        Just(("[2001:db8::1]".to_string(), "[2001:db8::1]".to_string())),
    ];
    (
        host,
        prop::option::of(1u16..),
        0..3u8,
        prop::collection::vec("[a-zA-Z0-9_~-]{1,8}", 0..3),
        any::<bool>(),
        prop::option::of("[a-z0-9=&]{0,8}"),
        prop::option::of("[a-z0-9]{0,8}"),
        "[ \t]{0,2}",
        "[ \t]{0,2}",
    )
        .prop_map(
            |((raw_host, host), port, form, segs, slash, query, frag, lead, trail)| {
                let port_part = port.map(|p| format!(":{p}")).unwrap_or_default();
                // form 0: bare host[:port]; 1: http:// URL; 2: https:// URL (either case)
                let (scheme, prefix) = match form {
                    0 => ("http", String::new()),
                    1 => ("http", "hTTp://".to_string()),
                    _ => ("https", "HTTPS://".to_string()),
                };
                let mut rest = String::new();
                if form > 0 {
                    for s in &segs {
                        rest.push('/');
                        rest.push_str(s);
                    }
                    if slash {
                        rest.push('/');
                    }
                    if let Some(q) = &query {
                        rest.push('?');
                        rest.push_str(q);
                    }
                    if let Some(f) = &frag {
                        rest.push('#');
                        rest.push_str(f);
                    }
                }
                let path = if form > 0 && !segs.is_empty() {
                    format!("/{}", segs.join("/"))
                } else {
                    "/".to_string()
                };
                let default = if scheme == "https" { 443 } else { 80 };
                HostSpec {
                    raw: format!("{lead}{prefix}{raw_host}{port_part}{rest}{trail}"),
                    scheme,
                    host,
                    port: port.unwrap_or(default),
                    path,
                }
            },
        )
}

/// A value the parser must take for "not given": absent, null, "" or blank.
#[derive(Debug, Clone, Copy)]
pub enum Absent {
    Missing,
    Null,
    Empty,
    Blank,
}

pub fn absent() -> impl Strategy<Value = Absent> {
    prop_oneof![
        Just(Absent::Missing),
        Just(Absent::Null),
        Just(Absent::Empty),
        Just(Absent::Blank)
    ]
}

pub fn put_absent(map: &mut Map<String, Value>, key: &str, a: Absent) {
    match a {
        Absent::Missing => {
            map.remove(key);
        }
        Absent::Null => {
            map.insert(key.into(), Value::Null);
        }
        Absent::Empty => {
            map.insert(key.into(), json!(""));
        }
        Absent::Blank => {
            map.insert(key.into(), json!(" \t "));
        }
    }
}

/// A non-blank string: anything, or a distinctive secret-looking one.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_filter("blank", |s| !blank(s)),
        "[A-Za-z0-9!#%&*+./:;<=>?@^_`{|}~\"\\\\-]{1,40}".prop_filter("blank", |s| !blank(s)),
    ]
}

/// A distinctive password, long enough that finding it in a text is a leak, not chance.
pub fn password() -> impl Strategy<Value = String> {
    "PW[A-Za-z0-9!#%&*+/=?@^_~-]{14,30}"
}

pub fn secret_name() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{4,20}",
        "[A-Za-z0-9_.-]{1,30}",
        prop_oneof![Just("latest".to_string()), "[0-9]{1,4}"],
    )
        .prop_map(|(p, s, v)| format!("projects/{p}/secrets/{s}/versions/{v}"))
}

#[derive(Debug, Clone)]
pub struct PayloadSpec {
    pub host: HostSpec,
    pub username: String,
    pub password: String,
    /// Inline password given (else only the secret).
    pub inline: bool,
    pub secret: Option<String>,
    pub vm: String,
    pub zone: String,
    pub project: Option<String>,
    /// All five SMTP values; `smtp_given[i]` says whether field i is present.
    pub smtp: [String; 5],
    pub smtp_given: [bool; 5],
    /// How each field that is not given is written.
    pub absent: [Absent; 4],
    pub extra: Vec<(String, Value)>,
}

impl PayloadSpec {
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("whatsAppHostname".into(), json!(self.host.raw));
        m.insert("whatsAppUsername".into(), json!(self.username));
        if self.inline {
            m.insert("whatsAppPassword".into(), json!(self.password));
        } else {
            put_absent(&mut m, "whatsAppPassword", self.absent[0]);
        }
        match &self.secret {
            Some(s) => {
                m.insert("whatsAppPasswordSecret".into(), json!(s));
            }
            None => put_absent(&mut m, "whatsAppPasswordSecret", self.absent[1]),
        }
        m.insert("vm".into(), json!(self.vm));
        m.insert("zone".into(), json!(self.zone));
        match &self.project {
            Some(p) => {
                m.insert("project".into(), json!(p));
            }
            None => put_absent(&mut m, "project", self.absent[2]),
        }
        for (i, key) in PAYLOAD_KEYS[7..].iter().enumerate() {
            if self.smtp_given[i] {
                m.insert((*key).into(), json!(self.smtp[i]));
            } else {
                put_absent(&mut m, key, self.absent[3]);
            }
        }
        for (k, v) in &self.extra {
            if !PAYLOAD_KEYS.contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }

    pub fn to_bytes(&self, pretty: bool) -> Vec<u8> {
        let v = Value::Object(self.to_map());
        if pretty {
            serde_json::to_vec_pretty(&v).unwrap()
        } else {
            serde_json::to_vec(&v).unwrap()
        }
    }

    /// Whether `p` is exactly what this spec describes.
    pub fn check(&self, p: &Payload) -> Result<(), TestCaseError> {
        let url = &p.whatsapp_url;
        prop_assert_eq!(url.scheme(), self.host.scheme);
        prop_assert_eq!(url.host_str(), Some(self.host.host.as_str()));
        prop_assert_eq!(url.port_or_known_default(), Some(self.host.port));
        prop_assert_eq!(url.path(), self.host.path.as_str());
        prop_assert_eq!(&p.username, &self.username);
        match (&p.password, &self.secret) {
            (PasswordSource::Secret(v), Some(s)) => prop_assert_eq!(v.as_str(), s.as_str()),
            (PasswordSource::Inline(pw), None) => {
                prop_assert_eq!(pw.expose_secret(), self.password.as_str())
            }
            (other, want) => prop_assert!(false, "password {other:?}, wanted secret {want:?}"),
        }
        prop_assert_eq!(&p.vm, &self.vm);
        prop_assert_eq!(&p.zone, &self.zone);
        prop_assert_eq!(&p.project, &self.project);
        match &p.smtp {
            Some(s) => {
                prop_assert!(self.smtp_given.iter().all(|g| *g), "smtp without all five");
                let got = [
                    s.host.as_str(),
                    s.username.as_str(),
                    s.password.expose_secret(),
                    s.from.as_str(),
                    s.to.as_str(),
                ];
                for (g, w) in got.iter().zip(&self.smtp) {
                    prop_assert_eq!(*g, w.as_str());
                }
            }
            None => prop_assert!(!self.smtp_given.iter().all(|g| *g), "smtp dropped"),
        }
        let debug = format!("{p:?}");
        prop_assert!(!debug.contains(&self.password), "password in Debug");
        prop_assert!(!debug.contains(&self.smtp[2]), "smtp password in Debug");
        Ok(())
    }
}

pub fn payload_spec() -> impl Strategy<Value = PayloadSpec> {
    let names = (
        "[a-z]([-a-z0-9]{0,61}[a-z0-9])?",
        "[a-z0-9-]{1,63}",
        prop::option::of(prop_oneof![
            "[a-z][a-z0-9-]{4,28}[a-z0-9]",
            "[a-z0-9.-]{1,20}:[a-z][a-z0-9-]{4,28}",
        ]),
    );
    let credentials = (
        text(),
        password(),
        any::<bool>(),
        prop::option::of(secret_name()),
    );
    let smtp = (
        (text(), text(), password(), text(), text()).prop_map(|(a, b, c, d, e)| [a, b, c, d, e]),
        prop_oneof![Just([true; 5]), any::<[bool; 5]>()],
    );
    let rest = (
        [absent(), absent(), absent(), absent()],
        prop::collection::vec(("[a-zA-Z_]{1,12}", json_value()), 0..3),
    );
    (host_spec(), credentials, names, smtp, rest).prop_map(
        |(
            host,
            (username, password, inline, secret),
            (vm, zone, project),
            (smtp, smtp_given),
            (absent, extra),
        )| PayloadSpec {
            host,
            username,
            password,
            // Without a secret, the inline password is required.
            inline: inline || secret.is_none(),
            secret,
            vm,
            zone,
            project,
            smtp,
            smtp_given,
            absent,
            extra,
        },
    )
}

/// Any JSON value, nested a little.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z][-a-z0-9]{0,8}".prop_map(Value::String),
        Just(json!("")),
        Just(json!("   ")),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value of any JSON type but string and null.
pub fn wrong_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(json!(1.5)),
        Just(json!([])),
        Just(json!(["a"])),
        Just(json!({})),
        Just(json!({"value": "x"})),
    ]
}
