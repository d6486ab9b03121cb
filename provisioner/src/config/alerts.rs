//! `[alerts]`: who hears of a number that stays broken, and how often. The keepalive's
//! outcome lines become Cloud Monitoring incidents through log-based alert policies
//! (`steps::alerts`); these keys name the channels and the re-notification period.

use serde::Deserialize;
use std::time::Duration;

use super::{ConfigError, NumberConfig};

/// Cloud Monitoring sends at most one notification every 5 minutes per log-based policy.
pub const MIN_RENOTIFY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// E-mail addresses: an e-mail notification channel is made for each.
    pub emails: Vec<String>,
    /// Existing channels, `projects/P/notificationChannels/N` (Slack, PagerDuty, ...), used
    /// as they are.
    pub channels: Vec<String>,
    /// How often an open incident is notified again while the number stays broken
    /// (`90s`, `30m`, `6h`, `1d`).
    pub renotify: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            emails: Vec::new(),
            channels: Vec::new(),
            renotify: "6h".into(),
        }
    }
}

impl AlertsConfig {
    /// `renotify` as a duration (checked when the configuration was read).
    pub fn renotify_period(&self) -> Duration {
        parse_duration(&self.renotify).unwrap_or(Duration::from_secs(6 * 3600))
    }

    /// Adds `other`'s channels and addresses, and keeps the shorter re-notification period:
    /// the numbers of one project share its policies, so every team named hears, as often as
    /// the most demanding one asked.
    pub fn merge(&mut self, other: &AlertsConfig) {
        for email in &other.emails {
            if !self.emails.contains(email) {
                self.emails.push(email.clone());
            }
        }
        for channel in &other.channels {
            if !self.channels.contains(channel) {
                self.channels.push(channel.clone());
            }
        }
        if other.renotify_period() < self.renotify_period() {
            self.renotify = other.renotify.clone();
        }
    }
}

/// `90s`, `30m`, `6h`, `1d`: a whole number and one unit.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// `projects/P/notificationChannels/N`.
pub fn is_channel_name(s: &str) -> bool {
    let id_ok = |v: &str| {
        !v.is_empty()
            && v.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b':'
            })
    };
    matches!(s.split('/').collect::<Vec<_>>()[..], ["projects", p, "notificationChannels", n] if id_ok(p) && id_ok(n))
}

fn is_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "\"<>,;".contains(c))
    })
}

impl NumberConfig {
    pub(super) fn validate_alerts(&self) -> Result<(), ConfigError> {
        let a = &self.alerts;
        let bad = |key: &str, message: String| ConfigError {
            file: String::new(),
            key: Some(format!("alerts.{key}")),
            message: format!("`alerts.{key}` {message}"),
        };
        for e in &a.emails {
            if !is_email(e) {
                return Err(bad(
                    "emails",
                    format!("must list e-mail addresses like ops@example.com, got {e:?}"),
                ));
            }
        }
        for c in &a.channels {
            if !is_channel_name(c) {
                return Err(bad(
                    "channels",
                    format!("must list channel names like projects/{}/notificationChannels/123 (gcloud beta monitoring channels list), got {c:?}", self.project),
                ));
            }
        }
        match parse_duration(&a.renotify) {
            Some(d) if d >= MIN_RENOTIFY => Ok(()),
            Some(_) => Err(bad(
                "renotify",
                format!("must be at least 5m (Cloud Monitoring notifies at most once every 5 minutes per log-based policy), got {:?}", a.renotify),
            )),
            None => Err(bad(
                "renotify",
                format!("must be a whole number with a unit, like \"30m\", \"6h\" or \"1d\", got {:?}", a.renotify),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(alerts: &str) -> Result<NumberConfig, ConfigError> {
        NumberConfig::parse(&format!(
            "project = \"p\"\nregion = \"europe-west3\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"15112345678\"\n{alerts}"
        ))
    }

    #[test]
    fn defaults_and_a_full_table() {
        let c = parse("").unwrap();
        assert!(c.alerts.emails.is_empty() && c.alerts.channels.is_empty());
        assert_eq!(c.alerts.renotify_period(), Duration::from_secs(6 * 3600));
        let c = parse("[alerts]\nemails = [\"ops@example.com\"]\nchannels = [\"projects/p/notificationChannels/42\"]\nrenotify = \"30m\"\n").unwrap();
        assert_eq!(c.alerts.emails, ["ops@example.com"]);
        assert_eq!(c.alerts.renotify_period(), Duration::from_secs(1800));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[alerts]\nemails = [\"not-an-address\"]\n", "alerts.emails"),
            ("[alerts]\nemails = [\"a@b.c, d@e.f\"]\n", "alerts.emails"),
            (
                "[alerts]\nchannels = [\"notificationChannels/42\"]\n",
                "alerts.channels",
            ),
            (
                "[alerts]\nchannels = [\"projects/p/alertPolicies/42\"]\n",
                "alerts.channels",
            ),
            ("[alerts]\nrenotify = \"6 hours\"\n", "alerts.renotify"),
            ("[alerts]\nrenotify = \"60s\"\n", "alerts.renotify"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.message.contains(key), "{e}");
        }
        let typo = parse("[alerts]\nrenotfy = \"6h\"\n").unwrap_err();
        assert!(typo.message.contains("renotfy"), "{typo}");
    }

    #[test]
    fn merged_tables_name_every_channel_once_and_keep_the_shorter_period() {
        let mut a = parse("[alerts]\nemails = [\"ops@example.com\"]\nrenotify = \"6h\"\n")
            .unwrap()
            .alerts;
        let b = parse("[alerts]\nemails = [\"ops@example.com\", \"de@example.com\"]\nchannels = [\"projects/p/notificationChannels/42\"]\nrenotify = \"30m\"\n").unwrap().alerts;
        a.merge(&b);
        assert_eq!(a.emails, ["ops@example.com", "de@example.com"]);
        assert_eq!(a.channels, ["projects/p/notificationChannels/42"]);
        assert_eq!(a.renotify_period(), Duration::from_secs(1800));
        a.merge(&parse("").unwrap().alerts);
        assert_eq!(
            a.renotify_period(),
            Duration::from_secs(1800),
            "6h is longer"
        );
    }
}
