//! Every setting of the keepalive, read from the environment once, at start, into one typed
//! [`Config`] that is passed down. Nothing else in this crate reads the environment.
//!
//! Read elsewhere, by the libraries that use them: `RUST_LOG` and `KEEPALIVE_LOG_FORMAT`
//! (`shared::telemetry`, before this, so that a bad setting can be logged),
//! `GOOGLE_APPLICATION_CREDENTIALS` (the Google token source).

use lettre::transport::smtp::client::Certificate;
use shared::events_publisher::PubSubTarget;
use shared::google::client::parse_endpoint;
use shared::google::{compute, secretmanager};
use shared::graph;
use shared::tls_roots::SystemRoots;
use std::time::Duration;
use url::Url;

/// Names a PEM file of extra root certificates to trust for SMTP's STARTTLS.
pub const SMTP_CA_FILE_ENV: &str = "KEEPALIVE_SMTP_CA_FILE";
/// Bound on one whole mail send, in milliseconds.
pub const SMTP_TIMEOUT_ENV: &str = "KEEPALIVE_SMTP_TIMEOUT_MS";

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub compute_endpoint: Url,
    pub secretmanager_endpoint: Url,
    /// `GOOGLE_CLOUD_PROJECT`: the project when the payload has none.
    pub default_project: Option<String>,
    /// Each request to the WhatsApp client.
    pub request_timeout: Duration,
    /// Attempts before the client is declared down.
    pub attempts: u32,
    /// WhatsApp clients probed at once by this process (`KEEPALIVE_MAX_CONCURRENT_PROBES`);
    /// further checks wait their turn before their login, outside every request timeout.
    pub max_concurrent_probes: usize,
    pub retry_delay: Duration,
    /// No reset this soon after a start or a reset.
    pub boot_grace: Duration,
    /// Upper bound on one whole check.
    pub deadline: Duration,
    /// Timeout of each Google API request.
    pub google_timeout: Duration,
    /// How notification mails are sent.
    pub mail: MailConfig,
    /// Where events go (`KEEPALIVE_EVENTS_TOPIC`); `None`: no events.
    pub events: Option<EventsConfig>,
    /// `KEEPALIVE_PROJECTS`: the projects a payload may name; `None`: only the default one.
    pub projects: Option<Vec<String>>,
    /// The fleet brake: this many other VMs of the project reset within `brake_window` stop
    /// further resets (`KEEPALIVE_BRAKE_RESETS`; 0: no brake).
    pub brake_resets: u32,
    pub brake_window: Duration,
    /// The roots every `https://` client without a pinned fingerprint is verified against:
    /// `SSL_CERT_FILE`'s bundle, else the system's store. Loaded once, here.
    pub roots: SystemRoots,
    /// Meta's Graph API, for Cloud API numbers.
    pub graph: GraphConfig,
}

/// Where the Graph API is, and when a token's expiry is worth a warning.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// `KEEPALIVE_GRAPH_ENDPOINT`, default `https://graph.facebook.com`.
    pub endpoint: Url,
    /// `KEEPALIVE_GRAPH_VERSION`, default the newest version the team has tested.
    pub version: String,
    /// `KEEPALIVE_TOKEN_WARN_S`: warn this long before the access token expires (7 days).
    pub token_warn: Duration,
}

/// How notification mails are sent; the same for every payload (which names the relay).
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// Upper bound on one whole send (`KEEPALIVE_SMTP_TIMEOUT_MS`, default 20 s).
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the system's roots (`KEEPALIVE_SMTP_CA_FILE`).
    pub extra_root_ca_pem: Option<Vec<u8>>,
}

/// One event per reset and per alert goes to this topic.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// `projects/P/topics/T` (`KEEPALIVE_EVENTS_TOPIC`).
    pub topic: String,
    /// `PUBSUB_EMULATOR_HOST`, or the real service.
    pub pubsub: PubSubTarget,
}

/// A variable that is set but unusable. Names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// The configuration from `env` (a variable that is unset, empty or blank takes its default).
    pub fn from_lookup(env: Env<'_>) -> Result<Config, ConfigError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoint = |var: &str, default: &str| -> Result<Url, ConfigError> {
            parse_endpoint(var, &get(var).unwrap_or_else(|| default.to_string()))
                .map_err(ConfigError)
        };
        Ok(Config {
            port: number(env, "PORT", 8080u16, 0, u16::MAX)?,
            compute_endpoint: endpoint("KEEPALIVE_COMPUTE_ENDPOINT", compute::DEFAULT_ENDPOINT)?,
            secretmanager_endpoint: endpoint(
                "KEEPALIVE_SECRETMANAGER_ENDPOINT",
                secretmanager::DEFAULT_ENDPOINT,
            )?,
            default_project: get("GOOGLE_CLOUD_PROJECT"),
            request_timeout: Duration::from_millis(number(
                env,
                "KEEPALIVE_REQUEST_TIMEOUT_MS",
                8000u64,
                1,
                600_000,
            )?),
            attempts: number(env, "KEEPALIVE_ATTEMPTS", 3u32, 1, 100)?,
            max_concurrent_probes: number(
                env,
                "KEEPALIVE_MAX_CONCURRENT_PROBES",
                200usize,
                1,
                100_000,
            )?,
            retry_delay: Duration::from_millis(number(
                env,
                "KEEPALIVE_RETRY_DELAY_MS",
                5000u64,
                0,
                600_000,
            )?),
            boot_grace: Duration::from_secs(number(
                env,
                "KEEPALIVE_BOOT_GRACE_S",
                600u64,
                0,
                30 * 86_400,
            )?),
            deadline: Duration::from_secs(number(env, "KEEPALIVE_DEADLINE_S", 100u64, 1, 3_600)?),
            google_timeout: Duration::from_secs(30),
            mail: mail(env)?,
            events: events(env)?,
            graph: GraphConfig {
                endpoint: endpoint("KEEPALIVE_GRAPH_ENDPOINT", graph::DEFAULT_GRAPH_ENDPOINT)?,
                version: graph::parse_version(
                    "KEEPALIVE_GRAPH_VERSION",
                    &get("KEEPALIVE_GRAPH_VERSION")
                        .unwrap_or_else(|| graph::DEFAULT_GRAPH_VERSION.to_string()),
                )
                .map_err(ConfigError)?,
                token_warn: Duration::from_secs(number(
                    env,
                    "KEEPALIVE_TOKEN_WARN_S",
                    604_800u64,
                    0,
                    366 * 86_400,
                )?),
            },
            projects: projects(env)?,
            brake_resets: number(env, "KEEPALIVE_BRAKE_RESETS", 5u32, 0, 100_000)?,
            brake_window: Duration::from_secs(number(
                env,
                "KEEPALIVE_BRAKE_WINDOW_S",
                600u64,
                1,
                7 * 86_400,
            )?),
            roots: roots(env)?,
        })
    }

    /// Longest time the health checks alone can take (every attempt timing out twice:
    /// login, then the probes).
    pub fn worst_case_health_time(&self) -> Duration {
        self.request_timeout * 2 * self.attempts + self.retry_delay * (self.attempts - 1)
    }
}

fn mail(env: Env<'_>) -> Result<MailConfig, ConfigError> {
    let mut mail = MailConfig {
        timeout: Duration::from_millis(number(env, SMTP_TIMEOUT_ENV, 20_000u64, 1, u64::MAX)?),
        extra_root_ca_pem: None,
    };
    if let Some(path) = present(env, SMTP_CA_FILE_ENV) {
        let problem = |p: String| ConfigError(format!("{SMTP_CA_FILE_ENV}: {path}: {p}"));
        let pem = std::fs::read(&path).map_err(|e| problem(format!("cannot be read: {e}")))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(problem(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Certificate::from_pem(&pem)
            .map_err(|e| problem(format!("holds an unreadable certificate: {e}")))?;
        mail.extra_root_ca_pem = Some(pem);
    }
    Ok(mail)
}

/// The events topic, and where Pub/Sub is (read only when there is a topic).
fn events(env: Env<'_>) -> Result<Option<EventsConfig>, ConfigError> {
    let Some(topic) = present(env, "KEEPALIVE_EVENTS_TOPIC") else {
        return Ok(None);
    };
    let p: Vec<&str> = topic.split('/').collect();
    if !(p.len() == 4
        && p[0] == "projects"
        && p[2] == "topics"
        && !p[1].is_empty()
        && !p[3].is_empty())
    {
        return Err(ConfigError(
            "KEEPALIVE_EVENTS_TOPIC: must be projects/P/topics/T".into(),
        ));
    }
    let pubsub = match present(env, "PUBSUB_EMULATOR_HOST") {
        Some(host) => PubSubTarget::emulator(&host).map_err(ConfigError)?,
        None => PubSubTarget::google(),
    };
    Ok(Some(EventsConfig { topic, pubsub }))
}

/// `SSL_CERT_FILE`: a PEM bundle of root certificates, read once; unset, the system's store.
fn roots(env: Env<'_>) -> Result<SystemRoots, ConfigError> {
    let file = present(env, "SSL_CERT_FILE").map(std::path::PathBuf::from);
    SystemRoots::load(file.as_deref()).map_err(ConfigError)
}

/// `KEEPALIVE_PROJECTS`: comma-separated project ids (blanks around commas ignored).
fn projects(env: Env<'_>) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = present(env, "KEEPALIVE_PROJECTS") else {
        return Ok(None);
    };
    let projects: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let valid = |p: &String| {
        p.len() <= 100
            && p.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.' | b':')
            })
    };
    match projects.iter().find(|p| !valid(p)) {
        Some(bad) => Err(ConfigError(format!(
            "KEEPALIVE_PROJECTS: {bad:?} is not a project id"
        ))),
        None if projects.is_empty() => {
            Err(ConfigError("KEEPALIVE_PROJECTS: names no project".into()))
        }
        None => Ok(Some(projects)),
    }
}

/// The variable's value, trimmed, unless it is unset or blank.
fn present(env: Env<'_>, var: &str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn number<T>(env: Env<'_>, var: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match present(env, var) {
        None => Ok(default),
        Some(v) => match v.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(ConfigError(format!(
                "{var}: {v:?} is not a whole number from {min} to {max}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_contracts() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.request_timeout, Duration::from_millis(8000));
        assert_eq!(c.attempts, 3);
        assert_eq!(c.retry_delay, Duration::from_millis(5000));
        assert_eq!(c.boot_grace, Duration::from_secs(600));
        assert_eq!(c.deadline, Duration::from_secs(100));
        assert_eq!(c.max_concurrent_probes, 200);
        assert_eq!(
            c.compute_endpoint.as_str(),
            "https://compute.googleapis.com/"
        );
        assert!(c.worst_case_health_time() < c.deadline);
        assert_eq!(c.mail.timeout, Duration::from_secs(20));
        assert!(c.mail.extra_root_ca_pem.is_none());
        assert!(c.events.is_none());
        assert_eq!(c.graph.endpoint.as_str(), "https://graph.facebook.com/");
        assert_eq!(c.graph.version, "v26.0");
        assert_eq!(c.graph.token_warn, Duration::from_secs(604_800));
        let c = cfg(&[
            ("KEEPALIVE_GRAPH_VERSION", "v25.0"),
            ("KEEPALIVE_TOKEN_WARN_S", "0"),
        ])
        .unwrap();
        assert_eq!(c.graph.version, "v25.0");
        assert!(c.graph.token_warn.is_zero());
        assert!(c.projects.is_none());
        assert_eq!(c.brake_resets, 5);
        assert_eq!(c.brake_window, Duration::from_secs(600));
    }

    #[test]
    fn projects_and_brake() {
        let c = cfg(&[
            ("KEEPALIVE_PROJECTS", " acme-prod, acme-test ,"),
            ("KEEPALIVE_BRAKE_RESETS", "0"),
            ("KEEPALIVE_BRAKE_WINDOW_S", "60"),
        ])
        .unwrap();
        assert_eq!(c.projects.unwrap(), ["acme-prod", "acme-test"]);
        assert_eq!(c.brake_resets, 0);
        assert_eq!(c.brake_window, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("PORT", "http"),
            ("PORT", "70000"),
            ("KEEPALIVE_ATTEMPTS", "0"),
            ("KEEPALIVE_ATTEMPTS", "100000"),
            ("KEEPALIVE_MAX_CONCURRENT_PROBES", "0"),
            ("KEEPALIVE_DEADLINE_S", "99999999999999"),
            ("KEEPALIVE_ATTEMPTS", "-1"),
            ("KEEPALIVE_DEADLINE_S", "1.5"),
            ("KEEPALIVE_COMPUTE_ENDPOINT", "not a url"),
            ("KEEPALIVE_GRAPH_ENDPOINT", "graph.facebook.com"),
            ("KEEPALIVE_GRAPH_VERSION", "26"),
            ("KEEPALIVE_GRAPH_VERSION", "v26.0/../x"),
            ("KEEPALIVE_TOKEN_WARN_S", "a week"),
            ("KEEPALIVE_SECRETMANAGER_ENDPOINT", "ftp://x"),
            ("KEEPALIVE_EVENTS_TOPIC", "topic"),
            ("KEEPALIVE_EVENTS_TOPIC", "projects/p/topics/"),
            (SMTP_TIMEOUT_ENV, "soon"),
            (SMTP_TIMEOUT_ENV, "0"),
            (SMTP_CA_FILE_ENV, "/nonexistent/ca.pem"),
            ("KEEPALIVE_PROJECTS", "acme,Other/Project"),
            ("KEEPALIVE_PROJECTS", ",,"),
            ("KEEPALIVE_BRAKE_RESETS", "-1"),
            ("KEEPALIVE_BRAKE_WINDOW_S", "0"),
            ("SSL_CERT_FILE", "/nonexistent/roots.pem"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert!(e.0.starts_with(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn mail_and_events_settings() {
        let c = cfg(&[(SMTP_TIMEOUT_ENV, " 1500 "), (SMTP_CA_FILE_ENV, "")]).unwrap();
        assert_eq!(c.mail.timeout, Duration::from_millis(1500));
        assert!(c.mail.extra_root_ca_pem.is_none());

        let topic = "projects/acme/topics/keepalive-events";
        let c = cfg(&[("KEEPALIVE_EVENTS_TOPIC", topic)]).unwrap();
        let events = c.events.unwrap();
        assert_eq!(events.topic, topic);
        assert_eq!(events.pubsub, PubSubTarget::google());
        let c = cfg(&[
            ("KEEPALIVE_EVENTS_TOPIC", topic),
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
        ])
        .unwrap();
        assert_eq!(
            c.events.unwrap().pubsub.emulator_url(),
            Some("http://127.0.0.1:8085")
        );
        // Without a topic, the emulator's address is not read at all.
        assert!(cfg(&[("PUBSUB_EMULATOR_HOST", "not a host/x")])
            .unwrap()
            .events
            .is_none());
        let e = cfg(&[
            ("KEEPALIVE_EVENTS_TOPIC", topic),
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085/v1"),
        ])
        .unwrap_err();
        assert!(e.0.starts_with("PUBSUB_EMULATOR_HOST"), "{e}");
    }
}
