//! Fuzz targets (proptest, stable toolchain) for the two parsers that take bytes from outside:
//! the scheduler payload (`shared::payload::Payload::parse`) and the Pub/Sub envelope /
//! CloudEvent decoder (`shared::envelope::decode`).
//!
//! Properties: neither ever panics, whatever the bytes and headers; a payload or envelope
//! generated valid parses back to exactly what was generated; a payload with one field broken
//! is refused naming that field; whatever parses satisfies the contract's rules (valid names,
//! an http(s) URL with a host and no credentials); no error or `Debug` output holds the
//! password. The real-shaped seeds in `tests/fuzz-corpus/` are checked as named and mutated.
//!
//! ```sh
//! cargo test -p keepalive-tests --test fuzz          # CI: 256 cases per target
//! PROPTEST_CASES=20000 cargo test -p keepalive-tests --test fuzz
//! # the long run: every target for 10 minutes at once (see docs/benchmarks.md)
//! FUZZ_SECONDS=600 cargo test --release -p keepalive-tests --test fuzz -- --test-threads 16 --nocapture
//! # a failure prints its seed; replay it:
//! PROPTEST_RNG_SEED=<seed> cargo test -p keepalive-tests --test fuzz <target>
//! ```

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use shared::envelope::{self, Form, PUBSUB_EVENT_TYPE};
use shared::payload::{PasswordSource, Payload, PayloadParseError};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The runner: PROPTEST_CASES cases per round (proptest's default 256), rounds repeated with
// fresh seeds until FUZZ_SECONDS have passed (one round when unset). Every round's seed is
// fixed and printed on failure, so PROPTEST_RNG_SEED replays it.

fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let base: u64 = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(s) => s.trim().parse().expect("PROPTEST_RNG_SEED must be a u64"),
        Err(_) => rand::random(),
    };
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .map(|s| Duration::from_secs(s.trim().parse().expect("FUZZ_SECONDS must be a number")));
    let started = Instant::now();
    let (mut rounds, mut cases) = (0u64, 0u64);
    loop {
        let seed = base.wrapping_add(rounds);
        let config = Config {
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..Config::default()
        };
        let per_round = u64::from(config.cases);
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!(
                "fuzz target {name} failed after {} cases: {e}\n\
                 replay: PROPTEST_RNG_SEED={seed} cargo test -p keepalive-tests --test fuzz {name}",
                cases
            );
        }
        rounds += 1;
        cases += per_round;
        match budget {
            Some(b) if started.elapsed() < b => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {rounds} round(s), {:.1} s, no failure (first seed {base})",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// The contract's rules, written from the contract (not from the parser), as oracles.

/// RFC 1035 label, as Compute Engine names instances.
fn valid_vm(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

fn valid_zone(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn valid_project(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b':'
        })
}

fn valid_secret(s: &str) -> bool {
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

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

static PAYLOAD_KEYS: [&str; 12] = [
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
fn check_parsed(p: &Payload) -> Result<(), TestCaseError> {
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
fn check_result(r: &Result<Payload, PayloadParseError>) -> Result<(), TestCaseError> {
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

// ---------------------------------------------------------------------------------------------
// Generated payloads.

/// How the WhatsApp client is named, and what the parser must make of it.
#[derive(Debug, Clone)]
struct HostSpec {
    raw: String,
    scheme: &'static str,
    host: String,
    port: u16,
    path: String,
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}"))
}

/// A DNS name, in mixed case (the parser lower-cases it).
fn dns_name() -> impl Strategy<Value = (String, String)> {
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

fn host_spec() -> impl Strategy<Value = HostSpec> {
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
enum Absent {
    Missing,
    Null,
    Empty,
    Blank,
}

fn absent() -> impl Strategy<Value = Absent> {
    prop_oneof![
        Just(Absent::Missing),
        Just(Absent::Null),
        Just(Absent::Empty),
        Just(Absent::Blank)
    ]
}

fn put_absent(map: &mut Map<String, Value>, key: &str, a: Absent) {
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
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_filter("blank", |s| !blank(s)),
        "[A-Za-z0-9!#%&*+./:;<=>?@^_`{|}~\"\\\\-]{1,40}".prop_filter("blank", |s| !blank(s)),
    ]
}

/// A distinctive password, long enough that finding it in a text is a leak, not chance.
fn password() -> impl Strategy<Value = String> {
    "PW[A-Za-z0-9!#%&*+/=?@^_~-]{14,30}"
}

fn secret_name() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{4,20}",
        "[A-Za-z0-9_.-]{1,30}",
        prop_oneof![Just("latest".to_string()), "[0-9]{1,4}"],
    )
        .prop_map(|(p, s, v)| format!("projects/{p}/secrets/{s}/versions/{v}"))
}

#[derive(Debug, Clone)]
struct PayloadSpec {
    host: HostSpec,
    username: String,
    password: String,
    /// Inline password given (else only the secret).
    inline: bool,
    secret: Option<String>,
    vm: String,
    zone: String,
    project: Option<String>,
    /// All five SMTP values; `smtp_given[i]` says whether field i is present.
    smtp: [String; 5],
    smtp_given: [bool; 5],
    /// How each field that is not given is written.
    absent: [Absent; 4],
    extra: Vec<(String, Value)>,
}

impl PayloadSpec {
    fn to_map(&self) -> Map<String, Value> {
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

    fn to_bytes(&self, pretty: bool) -> Vec<u8> {
        let v = Value::Object(self.to_map());
        if pretty {
            serde_json::to_vec_pretty(&v).unwrap()
        } else {
            serde_json::to_vec(&v).unwrap()
        }
    }

    /// Whether `p` is exactly what this spec describes.
    fn check(&self, p: &Payload) -> Result<(), TestCaseError> {
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

fn payload_spec() -> impl Strategy<Value = PayloadSpec> {
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
fn json_value() -> impl Strategy<Value = Value> {
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
fn wrong_type() -> impl Strategy<Value = Value> {
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

// ---------------------------------------------------------------------------------------------
// Mutations of bytes (for the corpus seeds).

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize, usize),
    Token(usize, &'static str),
}

const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "null",
    "true",
    "0",
    "-0",
    "1e999",
    "-1e-999",
    "18446744073709551616",
    "\"\"",
    "\" \"",
    "\\u0000",
    "\\ud800",
    "\\udfff\\ud800",
    "\u{0}",
    "\u{feff}",
    "\u{2028}",
    "\u{10ffff}",
    "\u{ff}",
    "=",
    "==",
    "%",
    "+/",
    "-_",
    "\"vm\":",
    "\"zone\":",
    "\"message\":",
    "\"data\":",
    "{\"data\":\"\"}",
    "\"attributes\":{\"a\":1}",
    "http://",
    "https://",
    "ftp://",
    "@",
    ":0",
    ":65536",
    ":99999",
    "[::1]",
    "//",
    "/../",
    "?x#y",
    "ce-",
    "1.0",
    "0.3",
    "application/cloudevents+json",
    "\r\n",
    "\t",
    "    ",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1..16usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..32usize, any::<usize>())
            .prop_map(|(a, n, b)| Mutation::Duplicate(a, n, b)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(p, t)| Mutation::Token(p, t)),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = data.len();
        let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::Flip(p, bit) if len > 0 => data[p % len] ^= 1 << bit,
            Mutation::Set(p, b) if len > 0 => data[p % len] = *b,
            Mutation::Insert(p, bytes) => {
                let i = at(*p);
                data.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(p, n) if len > 0 => {
                let i = p % len;
                data.drain(i..(i + n).min(len));
            }
            Mutation::Truncate(p) => data.truncate(at(*p)),
            Mutation::Duplicate(a, n, b) if len > 0 => {
                let i = a % len;
                let chunk = data[i..(i + n).min(len)].to_vec();
                let j = at(*b);
                data.splice(j..j, chunk);
            }
            Mutation::Token(p, t) => {
                let i = at(*p);
                data.splice(i..i, t.bytes());
            }
            _ => {}
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// The corpus.

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus")
}

/// `(file name, contents)` of every file in `fuzz-corpus/<kind>/`, sorted.
fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

fn payload_seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| corpus("payload"))
}

/// A request as seeded: header lines, an empty line, the body.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    fn parse(file: &[u8]) -> Request {
        let split = if file.starts_with(b"\n") {
            (0, 1)
        } else {
            file.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
                .expect("a seed request needs an empty line after the headers")
        };
        let head = String::from_utf8(file[..split.0].to_vec()).expect("headers are UTF-8");
        let headers = head
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(':').expect("a header line is `Name: value`");
                (k.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec())
            })
            .collect();
        Request {
            headers,
            body: file[split.1..].to_vec(),
        }
    }

    /// The header map, leaving out headers `http` refuses (as a server would never see them).
    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                map.append(k, v);
            }
        }
        map
    }

    fn decode(&self) -> Result<envelope::PubSubMessage, envelope::EnvelopeError> {
        envelope::decode(&self.header_map(), &self.body)
    }
}

fn envelope_seeds() -> &'static [(String, Request)] {
    static SEEDS: OnceLock<Vec<(String, Request)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        corpus("envelope")
            .into_iter()
            .map(|(name, bytes)| (name, Request::parse(&bytes)))
            .collect()
    })
}

/// What holds for every decoded message: its form follows from the headers.
fn check_decoded(
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

// ---------------------------------------------------------------------------------------------
// Envelopes built around a payload.

#[derive(Debug, Clone)]
struct EnvelopeSpec {
    form: Form,
    /// 0 standard, 1 standard unpadded, 2 URL-safe, 3 URL-safe unpadded.
    base64: u8,
    message_id: Option<String>,
    /// Write the snake_case twins (`message_id`, `publish_time`) too.
    twins: bool,
    publish_time: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
    subscription: Option<String>,
    ce_id: String,
    ce_time: Option<String>,
    /// Structured mode: 0 `data` as an object, 1 as a JSON string, 2 `data_base64`.
    structured_data: u8,
    content_type: &'static str,
}

fn envelope_spec() -> impl Strategy<Value = EnvelopeSpec> {
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
    fn build(&self, data: &[u8]) -> (HeaderMap, Vec<u8>) {
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

    fn check(&self, m: &envelope::PubSubMessage, data: &[u8]) -> Result<(), TestCaseError> {
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

// ---------------------------------------------------------------------------------------------
// The targets.

#[test]
fn corpus_seeds_parse_as_named() {
    for (name, bytes) in payload_seeds() {
        let r = Payload::parse(bytes);
        match (name.starts_with("ok-"), &r) {
            (true, Ok(_)) | (false, Err(_)) => {}
            _ => panic!("payload seed {name}: {:?}", r.map(|_| "parsed")),
        }
        if let Err(e) = check_result(&r) {
            panic!("payload seed {name}: {e}");
        }
    }
    for (name, req) in envelope_seeds() {
        let r = req.decode();
        match (name.starts_with("ok-"), &r) {
            (true, Ok(m)) => {
                if let Err(e) = Payload::parse(&m.data) {
                    panic!("envelope seed {name} carries an invalid payload: {e}");
                }
            }
            (false, Err(_)) => {}
            _ => panic!("envelope seed {name}: {r:?}"),
        }
    }
}

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

#[test]
fn envelope_valid_round_trips() {
    fuzz(
        "envelope_valid_round_trips",
        (envelope_spec(), payload_spec()),
        |(env, spec)| {
            let data = spec.to_bytes(false);
            let (headers, body) = env.build(&data);
            let m = match envelope::decode(&headers, &body) {
                Ok(m) => m,
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "valid {:?} refused: {e}\n{headers:?}\n{}",
                        env.form,
                        String::from_utf8_lossy(&body)
                    )))
                }
            };
            env.check(&m, &data)?;
            match Payload::parse(&m.data) {
                Ok(p) => spec.check(&p),
                Err(e) => Err(TestCaseError::fail(format!("payload refused: {e}"))),
            }
        },
    );
}

#[test]
fn envelope_carries_any_data_unchanged() {
    // Whatever bytes the message holds reach the payload parser unchanged (and it copes).
    let seeds = payload_seeds();
    let data = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..128),
        (0..seeds.len(), prop::collection::vec(mutation(), 0..4))
            .prop_map(|(i, ms)| mutate(seeds[i].1.clone(), &ms)),
    ]
    .prop_filter("empty", |d| !d.is_empty());
    fuzz(
        "envelope_carries_any_data_unchanged",
        (envelope_spec(), data),
        |(env, data)| {
            let (headers, body) = env.build(&data);
            match envelope::decode(&headers, &body) {
                Ok(m) => env.check(&m, &data)?,
                Err(e) => return Err(TestCaseError::fail(format!("refused: {e}"))),
            }
            check_result(&Payload::parse(&data))
        },
    );
}

fn header_name() -> impl Strategy<Value = String> {
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

fn header_value() -> impl Strategy<Value = Vec<u8>> {
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

#[test]
fn envelope_arbitrary_requests_never_panic() {
    let seeds = envelope_seeds();
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (0..seeds.len(), prop::collection::vec(mutation(), 0..6))
            .prop_map(|(i, ms)| mutate(seeds[i].1.body.clone(), &ms)),
    ];
    let headers = prop::collection::vec((header_name(), header_value()), 0..8);
    fuzz(
        "envelope_arbitrary_requests_never_panic",
        (headers, body),
        |(headers, body)| {
            let req = Request { headers, body };
            let map = req.header_map();
            check_decoded(&map, &envelope::decode(&map, &req.body))
        },
    );
}

#[test]
fn envelope_mutated_seeds_never_panic() {
    // A seed request with its body mutated, and some headers dropped, changed or added.
    let seeds = envelope_seeds();
    let input = (
        0..seeds.len(),
        prop::collection::vec(mutation(), 0..6),
        prop::collection::vec(
            (
                any::<usize>(),
                prop::option::of((header_name(), header_value())),
            ),
            0..3,
        ),
    );
    fuzz(
        "envelope_mutated_seeds_never_panic",
        input,
        |(i, ms, header_edits)| {
            let mut req = seeds[i].1.clone();
            req.body = mutate(req.body, &ms);
            for (at, edit) in header_edits {
                match edit {
                    Some(h) => req.headers.push(h),
                    None if !req.headers.is_empty() => {
                        let n = req.headers.len();
                        req.headers.remove(at % n);
                    }
                    None => {}
                }
            }
            let map = req.header_map();
            check_decoded(&map, &envelope::decode(&map, &req.body))
        },
    );
}
