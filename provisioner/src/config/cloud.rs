//! The keys of a number that lives, or is moving, on Meta's Cloud API: `platform`, `[cloud]`,
//! `[decommission]`, and their checks.

use serde::Deserialize;

use super::{ConfigError, NumberConfig};

/// `platform`: where the number lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Platform {
    /// The On-Premises client on a Compute Engine VM with a Cloud SQL database.
    #[default]
    OnPrem,
    /// Meta's Cloud API (Graph API): no VM, no database.
    Cloud,
}

impl TryFrom<String> for Platform {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "onprem" => Ok(Platform::OnPrem),
            "cloud" => Ok(Platform::Cloud),
            _ => Err(format!(
                "`platform` must be \"onprem\" or \"cloud\", got {s:?}"
            )),
        }
    }
}

/// `[cloud]`: the number on Meta's Cloud API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    /// The Graph id of the business phone number (digits).
    pub phone_number_id: String,
    /// Its WhatsApp Business Account (digits).
    pub waba_id: String,
    /// Secret Manager version holding the system-user access token,
    /// `projects/P/secrets/S/versions/V`; never the token itself.
    pub access_token_secret: String,
    /// The Meta app to subscribe to the WABA; empty: the token's own app.
    pub app_id: String,
    /// Where the number's webhooks go (LoyJoy's Cloud API webhook), `https://`.
    pub webhook_url: String,
    /// Graph API version, e.g. `v23.0`.
    pub graph_version: String,
}

/// The Graph API version used when `cloud.graph_version` is not set: the newest the team
/// has tested (the keepalive's default too).
pub use shared::graph::DEFAULT_GRAPH_VERSION;

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            phone_number_id: String::new(),
            waba_id: String::new(),
            access_token_secret: String::new(),
            app_id: String::new(),
            webhook_url: String::new(),
            graph_version: DEFAULT_GRAPH_VERSION.into(),
        }
    }
}

/// `[decommission]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecommissionConfig {
    /// Cloud Storage bucket the database is exported to before it is deleted; empty: Cloud
    /// SQL's final backup instead.
    pub export_bucket: String,
}

impl DecommissionConfig {
    /// The bucket's bare name (`gs://` and a trailing `/` taken off), if one is set.
    pub fn bucket(&self) -> Option<&str> {
        let b = self.export_bucket.trim();
        let b = b.strip_prefix("gs://").unwrap_or(b).trim_end_matches('/');
        (!b.is_empty()).then_some(b)
    }
}

fn bad(key: &str, message: String) -> ConfigError {
    ConfigError {
        file: String::new(),
        key: Some(key.to_string()),
        message: format!("`{key}` {message}"),
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl NumberConfig {
    /// The form of every `[cloud]` and `[decommission]` key that is set; with
    /// `platform = "cloud"`, also that `[cloud]` is complete.
    pub(super) fn validate_cloud(&self) -> Result<(), ConfigError> {
        let c = &self.cloud;
        for (key, value) in [
            ("phone_number_id", &c.phone_number_id),
            ("waba_id", &c.waba_id),
            ("app_id", &c.app_id),
        ] {
            if !value.is_empty() && !digits(value) {
                return Err(bad(
                    &format!("cloud.{key}"),
                    format!("must be the digits of a Graph id, got {value:?}"),
                ));
            }
        }
        if !c.access_token_secret.is_empty()
            && shared::payload::SecretVersion::parse(&c.access_token_secret).is_err()
        {
            return Err(bad(
                "cloud.access_token_secret",
                format!(
                    "must name a Secret Manager version, projects/P/secrets/S/versions/V (never the token itself), got a value of {} characters",
                    c.access_token_secret.len()
                ),
            ));
        }
        if !c.webhook_url.is_empty() {
            let ok = url::Url::parse(&c.webhook_url).is_ok_and(|u| {
                u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !ok || c.webhook_url.len() > 200 {
                return Err(bad(
                    "cloud.webhook_url",
                    format!(
                        "must be an https:// URL of at most 200 characters (Meta's limit), got {:?}",
                        c.webhook_url
                    ),
                ));
            }
        }
        if shared::graph::parse_version("cloud.graph_version", &c.graph_version).is_err() {
            return Err(bad(
                "cloud.graph_version",
                format!("must look like v23.0, got {:?}", c.graph_version),
            ));
        }
        if let Some(bucket) = self.decommission.bucket() {
            if !is_bucket_name(bucket) {
                return Err(bad(
                    "decommission.export_bucket",
                    format!("must be a Cloud Storage bucket name (3 to 63 lower-case letters, digits, -, _ and ., starting and ending with a letter or digit), got {bucket:?}"),
                ));
            }
        }
        if self.platform == Platform::Cloud {
            self.require_cloud("platform = \"cloud\"")?;
        }
        Ok(())
    }

    /// `[cloud]`, complete: what `platform = "cloud"` and `migrate` need. `who` says who
    /// needs it, for the message.
    pub fn require_cloud(&self, who: &str) -> Result<&CloudConfig, ConfigError> {
        let c = &self.cloud;
        for (key, value) in [
            ("phone_number_id", &c.phone_number_id),
            ("waba_id", &c.waba_id),
            ("access_token_secret", &c.access_token_secret),
            ("webhook_url", &c.webhook_url),
        ] {
            if value.is_empty() {
                return Err(bad(
                    &format!("cloud.{key}"),
                    format!("is required by {who}: set it in [cloud]"),
                ));
            }
        }
        Ok(c)
    }
}

/// A Cloud Storage bucket name (the common form: no dotted 222-character names).
fn is_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c))
        && !b.starts_with("goog")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "project = \"acme-prod\"\nregion = \"europe-west3\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"15112345678\"\n";
    const CLOUD: &str = "[cloud]\nphone_number_id = \"106540352242922\"\nwaba_id = \"102290129340398\"\naccess_token_secret = \"projects/acme-prod/secrets/meta-system-user-token/versions/latest\"\napp_id = \"\"\nwebhook_url = \"https://example.loyjoy.com/whatsapp/cloud/webhook\"\ngraph_version = \"v23.0\"\n";

    fn parse(text: &str) -> Result<NumberConfig, ConfigError> {
        NumberConfig::parse(text)
    }

    #[test]
    fn onprem_is_the_default_and_needs_no_cloud_section() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.platform, Platform::OnPrem);
        assert_eq!(c.cloud.graph_version, DEFAULT_GRAPH_VERSION);
        assert!(c.decommission.bucket().is_none());
        let e = c.require_cloud("migrate").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cloud.phone_number_id"));
        assert!(e.message.contains("migrate"), "{e}");
    }

    #[test]
    fn the_contract_example_parses_on_both_platforms() {
        let text = format!(
            "{MINIMAL}platform = \"cloud\"\n{CLOUD}\n[decommission]\nexport_bucket = \"\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.platform, Platform::Cloud);
        assert_eq!(c.require_cloud("x").unwrap().waba_id, "102290129340398");
        let c = parse(&format!("{MINIMAL}platform = \"onprem\"\n{CLOUD}")).unwrap();
        assert_eq!(c.platform, Platform::OnPrem);
    }

    #[test]
    fn errors_name_the_key() {
        let cloud = |extra: &str| format!("{MINIMAL}platform = \"cloud\"\n{CLOUD}{extra}");
        let cases = [
            (format!("{MINIMAL}platform = \"Cloud\"\n"), "platform"),
            (
                format!("{MINIMAL}platform = \"cloud\"\n"),
                "cloud.phone_number_id",
            ),
            (
                format!(
                    "{MINIMAL}platform = \"cloud\"\n{}",
                    CLOUD.replace("waba_id = \"102290129340398\"\n", "")
                ),
                "cloud.waba_id",
            ),
            (cloud("phone_number_idd = \"1\"\n"), "phone_number_idd"),
            (
                CLOUD.replace("106540352242922", "+1 631"),
                "cloud.phone_number_id",
            ),
            (
                cloud("").replace(
                    "projects/acme-prod/secrets/meta-system-user-token/versions/latest",
                    "EAAGm0PX4ZCps",
                ),
                "cloud.access_token_secret",
            ),
            (
                cloud("").replace("https://example.loyjoy.com", "http://example.loyjoy.com"),
                "cloud.webhook_url",
            ),
            (cloud("").replace("v23.0", "23"), "cloud.graph_version"),
            (
                cloud("").replace("app_id = \"\"", "app_id = \"my-app\""),
                "cloud.app_id",
            ),
            (
                cloud("[decommission]\nexport_bucket = \"My Bucket\"\n"),
                "decommission.export_bucket",
            ),
            (cloud("[decommission]\nbucket = \"b\"\n"), "bucket"),
        ];
        for (text, key) in cases {
            let text = if text.starts_with("project") {
                text
            } else {
                format!("{MINIMAL}{text}")
            };
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn the_token_is_never_echoed_in_the_error() {
        let text = format!(
            "{MINIMAL}{}",
            CLOUD.replace(
                "projects/acme-prod/secrets/meta-system-user-token/versions/latest",
                "EAAGm0PX4ZCpsBAsecret"
            )
        );
        let e = parse(&text).unwrap_err();
        assert!(!e.to_string().contains("EAAGm0PX4ZCpsBAsecret"), "{e}");
    }

    #[test]
    fn the_bucket_may_be_written_as_a_gs_url() {
        let c = parse(&format!(
            "{MINIMAL}[decommission]\nexport_bucket = \"gs://acme-whatsapp-exports/\"\n"
        ))
        .unwrap();
        assert_eq!(c.decommission.bucket(), Some("acme-whatsapp-exports"));
    }
}
