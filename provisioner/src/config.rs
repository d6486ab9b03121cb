//! `number.toml`, parsed strictly: an unknown key is an error that names it (a typo must not
//! pass silently); every key but the five that identify the number has a default.

use serde::Deserialize;
use std::path::Path;

mod alerts;
mod cloud;
pub use alerts::{AlertsConfig, MIN_RENOTIFY};
pub use cloud::{CloudConfig, DecommissionConfig, Platform, DEFAULT_GRAPH_VERSION};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberConfig {
    pub project: String,
    pub region: String,
    pub zone: String,
    pub country_code: String,
    pub phone_number: String,
    /// Where the number lives: the On-Premises client on a VM, or Meta's Cloud API.
    #[serde(default)]
    pub platform: Platform,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub vm: VmConfig,
    #[serde(default)]
    pub whatsapp: WhatsAppConfig,
    #[serde(default)]
    pub loyjoy: LoyJoyConfig,
    #[serde(default)]
    pub keepalive: KeepaliveConfig,
    /// The number on Meta's Cloud API: needed by `platform = "cloud"` and by `migrate`.
    #[serde(default)]
    pub cloud: CloudConfig,
    #[serde(default)]
    pub decommission: DecommissionConfig,
    /// Who hears of a number that stays broken: Cloud Monitoring's channels.
    #[serde(default)]
    pub alerts: AlertsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub version: String,
    pub tier: String,
    pub max_connections: u32,
    /// Empty: only the VM's static address (`/32`).
    pub authorized_networks: Vec<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            version: "POSTGRES_13".into(),
            tier: "db-custom-1-3840".into(),
            max_connections: 1000,
            authorized_networks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    pub machine_type: String,
    pub whatsapp_version: String,
    /// Opens port 80 too (the API is served on 443 only otherwise).
    pub open_http: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            machine_type: "e2-medium".into(),
            whatsapp_version: "v2.53.2".into(),
            open_http: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhatsAppConfig {
    pub method: String,
    pub cert_file: String,
}

impl Default for WhatsAppConfig {
    fn default() -> Self {
        WhatsAppConfig {
            method: "sms".into(),
            cert_file: "cert.txt".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoyJoyConfig {
    pub webhook_url: String,
    pub api_username: String,
}

impl Default for LoyJoyConfig {
    fn default() -> Self {
        LoyJoyConfig {
            webhook_url: String::new(),
            api_username: "loyjoy".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    /// The keepalive's container image; empty: `<region>-docker.pkg.dev/<project>/keepalive/keepalive:latest`.
    pub image: String,
    /// Region of the Cloud Run service and the Cloud Scheduler job; empty: the number's region.
    pub region: String,
    /// The Pub/Sub topic the scheduler jobs publish to (one per project, shared by numbers).
    pub topic: String,
    /// The Cloud Run service (one per project, shared by numbers).
    pub service: String,
    /// The service's own identity (reads Compute Engine and the password secrets); empty:
    /// `whatsapp-keepalive@<project>.iam.gserviceaccount.com`.
    pub service_account: String,
    /// The identity the push subscription calls the service with, the only one granted
    /// `roles/run.invoker`; empty: `whatsapp-keepalive-invoker@<project>.iam.gserviceaccount.com`.
    pub invoker_service_account: String,
    /// Topic id or `projects/P/topics/T` for the keepalive's reset and alert events; empty:
    /// no events.
    pub events_topic: String,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            image: String::new(),
            region: String::new(),
            topic: "whatsapp-keepalive".into(),
            service: "whatsapp-keepalive".into(),
            service_account: String::new(),
            invoker_service_account: String::new(),
            events_topic: String::new(),
        }
    }
}

/// A configuration problem; `key` names the key at fault (dotted, e.g. `database.tier`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: Option<String>,
    pub message: String,
}

impl NumberConfig {
    pub fn load(path: &Path) -> Result<NumberConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: None,
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text).map_err(|mut e| {
            e.file = file;
            e
        })
    }

    pub fn parse(text: &str) -> Result<NumberConfig, ConfigError> {
        let cfg: NumberConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let key = key_in_message(&message)
                .or_else(|| e.span().and_then(|span| key_at(text, span.start)));
            let message = match (&key, key_in_message(&message)) {
                (Some(k), None) => format!("`{k}`: {message}"),
                _ => message,
            };
            ConfigError {
                file: String::new(),
                key,
                message,
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError {
            file: String::new(),
            key: Some(key.to_string()),
            message: format!("`{key}` {message}"),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&self.country_code)
            || self.country_code.len() > 3
            || self.country_code.starts_with('0')
        {
            return Err(bad(
                "country_code",
                format!(
                    "must be 1 to 3 digits without a leading 0 or +, got {:?}",
                    self.country_code
                ),
            ));
        }
        if !digits(&self.phone_number) {
            return Err(bad(
                "phone_number",
                format!(
                    "must be digits only (no +, spaces or dashes), got {:?}",
                    self.phone_number
                ),
            ));
        }
        if self.phone_number.starts_with('0') {
            return Err(bad(
                "phone_number",
                "must not start with 0: give the number without its trunk prefix".into(),
            ));
        }
        if self.country_code.len() + self.phone_number.len() > 15 {
            return Err(bad(
                "phone_number",
                "makes the full number longer than 15 digits (E.164)".into(),
            ));
        }
        for (key, value) in [
            ("project", &self.project),
            ("region", &self.region),
            ("zone", &self.zone),
        ] {
            if value.is_empty()
                || !value.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'.'
                        || b == b':'
                })
            {
                return Err(bad(
                    key,
                    format!("is not a valid Google Cloud {key}: {value:?}"),
                ));
            }
        }
        if !self.zone.starts_with(&format!("{}-", self.region)) {
            return Err(bad(
                "zone",
                format!("{:?} is not in region {:?}", self.zone, self.region),
            ));
        }
        if !self.database.version.starts_with("POSTGRES_") {
            return Err(bad(
                "database.version",
                format!(
                    "must be a PostgreSQL version like POSTGRES_13, got {:?}",
                    self.database.version
                ),
            ));
        }
        if !(25..=262_143).contains(&self.database.max_connections) {
            return Err(bad(
                "database.max_connections",
                "must be between 25 and 262143".into(),
            ));
        }
        for net in &self.database.authorized_networks {
            if !is_cidr(net) {
                return Err(bad(
                    "database.authorized_networks",
                    format!("{net:?} is not an IPv4 CIDR range like 203.0.113.7/32"),
                ));
            }
        }
        if !matches!(self.whatsapp.method.as_str(), "sms" | "voice") {
            return Err(bad(
                "whatsapp.method",
                format!(
                    "must be \"sms\" or \"voice\", got {:?}",
                    self.whatsapp.method
                ),
            ));
        }
        self.validate_keepalive()?;
        self.validate_cloud()?;
        self.validate_alerts()?;
        if !self.vm.whatsapp_version.starts_with('v') {
            return Err(bad(
                "vm.whatsapp_version",
                format!("must look like v2.53.2, got {:?}", self.vm.whatsapp_version),
            ));
        }
        Ok(())
    }

    fn validate_keepalive(&self) -> Result<(), ConfigError> {
        let k = &self.keepalive;
        let bad = |key: &str, message: String| ConfigError {
            file: String::new(),
            key: Some(format!("keepalive.{key}")),
            message: format!("`keepalive.{key}` {message}"),
        };
        if !k.image.is_empty()
            && (k
                .image
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
                || !k.image.contains('/'))
        {
            return Err(bad(
                "image",
                format!("must be an image reference like europe-west3-docker.pkg.dev/P/keepalive/keepalive:latest, got {:?}", k.image),
            ));
        }
        if !k.region.is_empty()
            && !k
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad(
                "region",
                format!("is not a valid region: {:?}", k.region),
            ));
        }
        if !is_topic_id(&k.topic) {
            return Err(bad(
                "topic",
                format!("must be a Pub/Sub topic id (3 to 255 letters, digits, -_.~+%, starting with a letter, not goog...), got {:?}", k.topic),
            ));
        }
        let events_ok = k.events_topic.is_empty()
            || is_topic_id(&k.events_topic)
            || matches!(k.events_topic.split('/').collect::<Vec<_>>()[..], ["projects", p, "topics", t] if !p.is_empty() && is_topic_id(t));
        if !events_ok {
            return Err(bad(
                "events_topic",
                format!(
                    "must be a topic id or projects/P/topics/T, got {:?}",
                    k.events_topic
                ),
            ));
        }
        let service_ok = (1..=49).contains(&k.service.len())
            && k.service.starts_with(|c: char| c.is_ascii_lowercase())
            && !k.service.ends_with('-')
            && k.service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !service_ok {
            return Err(bad(
                "service",
                format!("must be a Cloud Run service name (lower-case letters, digits and -, starting with a letter, at most 49), got {:?}", k.service),
            ));
        }
        for (key, v) in [
            ("service_account", &k.service_account),
            ("invoker_service_account", &k.invoker_service_account),
        ] {
            let ok = v.is_empty()
                || v.split_once('@').is_some_and(|(a, d)| {
                    !a.is_empty()
                        && d.contains('.')
                        && !v.chars().any(|c| c.is_whitespace() || c == '"')
                });
            if !ok {
                return Err(bad(
                    key,
                    format!("must be a service account e-mail address, got {v:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `whatsapp-<cc><number>`: the name of every resource of this number.
    pub fn resource_name(&self) -> String {
        format!("whatsapp-{}{}", self.country_code, self.phone_number)
    }
}

/// A Pub/Sub topic id: 3 to 255 of `[A-Za-z0-9-_.~+%]`, starting with a letter, not `goog`.
fn is_topic_id(s: &str) -> bool {
    (3..=255).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !s.to_ascii_lowercase().starts_with("goog")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+%".contains(&b))
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
}

/// The dotted key whose value stands at byte `pos` (for type errors, which name no key).
fn key_at(text: &str, pos: usize) -> Option<String> {
    let mut table = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            table = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        }
        if pos < offset + line.len() {
            let (k, _) = trimmed.split_once('=')?;
            let k = k.trim();
            return Some(if table.is_empty() {
                k.to_string()
            } else {
                format!("{table}.{k}")
            });
        }
        offset += line.len();
    }
    None
}

/// toml/serde messages name the key in backticks: "unknown field `foo`", "missing field `bar`".
fn key_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
project = "acme-prod"
region = "europe-west3"
zone = "europe-west3-c"
country_code = "49"
phone_number = "15112345678"
"#;

    #[test]
    fn minimal_config_gets_the_defaults() {
        let c = NumberConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.resource_name(), "whatsapp-4915112345678");
        assert_eq!(c.database.max_connections, 1000);
        assert_eq!(c.database.version, "POSTGRES_13");
        assert!(c.database.authorized_networks.is_empty());
        assert_eq!(c.vm.machine_type, "e2-medium");
        assert_eq!(c.whatsapp.method, "sms");
        assert_eq!(c.keepalive.topic, "whatsapp-keepalive");
        assert_eq!(c.keepalive.service, "whatsapp-keepalive");
        assert!(c.keepalive.image.is_empty() && c.keepalive.events_topic.is_empty());
    }

    #[test]
    fn full_example_of_the_contract_parses() {
        let text = format!(
            "{MINIMAL}\n[database]\nversion = \"POSTGRES_13\"\ntier = \"db-custom-1-3840\"\nmax_connections = 1000\nauthorized_networks = []\n\n[vm]\nmachine_type = \"e2-medium\"\nwhatsapp_version = \"v2.53.2\"\n\n[whatsapp]\nmethod = \"sms\"\ncert_file = \"cert.txt\"\n\n[loyjoy]\nwebhook_url = \"https://example.loyjoy.com/whatsapp/webhook\"\napi_username = \"loyjoy\"\n\n[keepalive]\nimage = \"europe-west3-docker.pkg.dev/acme-prod/keepalive/keepalive:latest\"\nregion = \"europe-west3\"\ntopic = \"whatsapp-keepalive\"\n"
        );
        NumberConfig::parse(&text).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (format!("{MINIMAL}\nprojekt = \"x\""), "projekt"),
            (
                format!("{MINIMAL}\n[database]\nmax_conections = 5"),
                "max_conections",
            ),
            (
                MINIMAL.replace("phone_number = \"15112345678\"", ""),
                "phone_number",
            ),
            (
                MINIMAL.replace("15112345678", "+49 151 123"),
                "phone_number",
            ),
            (MINIMAL.replace("15112345678", "0151123"), "phone_number"),
            (MINIMAL.replace("\"49\"", "\"+49\""), "country_code"),
            (MINIMAL.replace("europe-west3-c", "us-east1-b"), "zone"),
            (
                format!("{MINIMAL}\n[whatsapp]\nmethod = \"fax\""),
                "whatsapp.method",
            ),
            (
                format!("{MINIMAL}\n[database]\nauthorized_networks = [\"0.0.0.0\"]"),
                "database.authorized_networks",
            ),
            (
                format!("{MINIMAL}\n[database]\nmax_connections = \"1000\""),
                "max_connections",
            ),
            (
                format!("{MINIMAL}\n[keepalive]\ntopic = \"goog-x\""),
                "keepalive.topic",
            ),
            (
                format!("{MINIMAL}\n[keepalive]\nimage = \"keepalive latest\""),
                "keepalive.image",
            ),
            (
                format!("{MINIMAL}\n[keepalive]\nservice = \"Keepalive\""),
                "keepalive.service",
            ),
            (
                format!("{MINIMAL}\n[keepalive]\ninvoker_service_account = \"invoker\""),
                "keepalive.invoker_service_account",
            ),
            (
                format!("{MINIMAL}\n[keepalive]\nevents_topic = \"projects//topics/x\""),
                "keepalive.events_topic",
            ),
            (
                format!("{MINIMAL}\n[keepalive]\nschedule = \"*/5 * * * *\""),
                "schedule",
            ),
        ];
        for (text, key) in cases {
            let e = NumberConfig::parse(&text).unwrap_err();
            assert!(e.message.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn runbook_open_network_only_when_written() {
        let c = NumberConfig::parse(&format!(
            "{MINIMAL}\n[database]\nauthorized_networks = [\"0.0.0.0/0\"]"
        ))
        .unwrap();
        assert_eq!(c.database.authorized_networks, vec!["0.0.0.0/0"]);
    }
}
