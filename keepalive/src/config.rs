//! The keepalive's settings, read once from the environment (the contract's variables).

use shared::google::client::parse_endpoint;
use shared::google::{compute, secretmanager};
use std::time::Duration;
use url::Url;

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
    /// `projects/P/topics/T`: one event per reset and per alert (see `events.rs`).
    pub events_topic: Option<String>,
    /// Timeout of each Google API request.
    pub google_timeout: Duration,
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
        let cfg = Config {
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
            events_topic: get("KEEPALIVE_EVENTS_TOPIC"),
            google_timeout: Duration::from_secs(30),
        };
        if let Some(t) = &cfg.events_topic {
            let p: Vec<&str> = t.split('/').collect();
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
        }
        Ok(cfg)
    }

    /// Longest time the health checks alone can take (every attempt timing out twice:
    /// login, then the probes).
    pub fn worst_case_health_time(&self) -> Duration {
        self.request_timeout * 2 * self.attempts + self.retry_delay * (self.attempts - 1)
    }
}

fn number<T>(env: Env<'_>, var: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match env(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
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
            ("KEEPALIVE_SECRETMANAGER_ENDPOINT", "ftp://x"),
            ("KEEPALIVE_EVENTS_TOPIC", "topic"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert!(e.0.starts_with(k), "{k}={v}: {e}");
        }
    }
}
