//! What the Graph API answers, typed. Enum-like values stay strings: Meta adds values, and an
//! unknown one must reach a finding, not fail the decoding.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::OffsetDateTime;

/// `GET /{PHONE_NUMBER_ID}?fields=` [`PHONE_NUMBER_FIELDS`](super::PHONE_NUMBER_FIELDS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhoneNumber {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    /// `CONNECTED`, `FLAGGED`, `RESTRICTED`, `PENDING`, ...
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub name_status: Option<String>,
    /// `GREEN`, `YELLOW`, `RED`, `UNKNOWN`, `NA`.
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// `CLOUD_API`, `ON_PREMISE`, `NOT_APPLICABLE`.
    #[serde(default)]
    pub platform_type: Option<String>,
    /// `throughput.level`: `STANDARD`, `HIGH`, `NOT_APPLICABLE`.
    #[serde(default, rename = "throughput", deserialize_with = "throughput_level")]
    pub throughput_level: Option<String>,
    /// `VERIFIED`, `NOT_VERIFIED`, `EXPIRED`: only when asked for in `fields`.
    #[serde(default)]
    pub code_verification_status: Option<String>,
    #[serde(default)]
    pub health_status: Option<HealthStatus>,
    /// Unset levels are absent; a number without any override reads all `None`.
    #[serde(default)]
    pub webhook_configuration: WebhookConfiguration,
}

impl PhoneNumber {
    pub fn is_cloud_api(&self) -> bool {
        self.platform_type.as_deref() == Some("CLOUD_API")
    }

    pub fn is_connected(&self) -> bool {
        self.status.as_deref() == Some("CONNECTED")
    }
}

/// `health_status`: the overall value and one entry per entity (number, WABA, business, app).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct HealthStatus {
    /// `AVAILABLE`, `LIMITED`, `BLOCKED`. May read `BLOCKED` for a calling-only problem:
    /// judge the entities.
    #[serde(default)]
    pub can_send_message: Option<String>,
    #[serde(default)]
    pub entities: Vec<HealthEntity>,
}

impl HealthStatus {
    /// Entities whose `can_send_message` is `BLOCKED`.
    pub fn blocked(&self) -> impl Iterator<Item = &HealthEntity> {
        self.entities
            .iter()
            .filter(|e| e.can_send_message.as_deref() == Some("BLOCKED"))
    }

    /// Entities whose `can_send_message` is `LIMITED`.
    pub fn limited(&self) -> impl Iterator<Item = &HealthEntity> {
        self.entities
            .iter()
            .filter(|e| e.can_send_message.as_deref() == Some("LIMITED"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HealthEntity {
    /// `PHONE_NUMBER`, `WABA`, `BUSINESS`, `APP`, `MESSAGE_TEMPLATE`.
    #[serde(default)]
    pub entity_type: Option<String>,
    #[serde(default, deserialize_with = "opt_id_string")]
    pub id: Option<String>,
    #[serde(default)]
    pub can_send_message: Option<String>,
    /// Calling, reported apart from messaging.
    #[serde(default)]
    pub can_receive_call_sip: Option<String>,
    /// With `LIMITED`.
    #[serde(default)]
    pub additional_info: Vec<String>,
    /// With `BLOCKED`.
    #[serde(default)]
    pub errors: Vec<HealthError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HealthError {
    #[serde(default, deserialize_with = "opt_int")]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub possible_solution: Option<String>,
}

/// `webhook_configuration`: the callback URL set at each level.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct WebhookConfiguration {
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub whatsapp_business_account: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
}

impl WebhookConfiguration {
    /// Where the number's message webhooks go: its own override, else the WABA's, else the
    /// app's URL. Empty strings count as unset.
    pub fn effective(&self) -> Option<&str> {
        [
            &self.phone_number,
            &self.whatsapp_business_account,
            &self.application,
        ]
        .into_iter()
        .filter_map(|u| u.as_deref())
        .find(|u| !u.is_empty())
    }
}

/// One entry of `GET /{WABA_ID}/subscribed_apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedApp {
    /// The app id.
    pub id: String,
    pub name: Option<String>,
    pub link: Option<String>,
    /// The WABA-level override, when set.
    pub override_callback_uri: Option<String>,
}

impl SubscribedApp {
    /// Reads `{"data": [{"whatsapp_business_api_data": {"id", "link", "name"},
    /// "override_callback_uri"?}]}`.
    pub fn parse_list(body: &Value) -> Result<Vec<SubscribedApp>, String> {
        let data = body
            .get("data")
            .and_then(Value::as_array)
            .ok_or("no `data` array")?;
        data.iter()
            .enumerate()
            .map(|(i, entry)| {
                let app = entry
                    .get("whatsapp_business_api_data")
                    .ok_or_else(|| format!("data[{i}] has no `whatsapp_business_api_data`"))?;
                let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
                Ok(SubscribedApp {
                    id: app
                        .get("id")
                        .and_then(value_id)
                        .ok_or_else(|| format!("data[{i}] has no app id"))?,
                    name: text(app.get("name")),
                    link: text(app.get("link")),
                    override_callback_uri: text(entry.get("override_callback_uri")),
                })
            })
            .collect()
    }
}

/// `GET /debug_token`'s `data`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    #[serde(default, deserialize_with = "opt_id_string")]
    pub app_id: Option<String>,
    /// `SYSTEM_USER`, `USER`, `APP`, ...
    #[serde(default, rename = "type")]
    pub token_type: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub is_valid: bool,
    /// `None`: never expires (Meta writes 0), or not said.
    #[serde(default, deserialize_with = "opt_unix_time")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "opt_unix_time")]
    pub data_access_expires_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "opt_unix_time")]
    pub issued_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub granular_scopes: Vec<GranularScope>,
    #[serde(default, deserialize_with = "opt_id_string")]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GranularScope {
    pub scope: String,
    /// WABA ids; empty when the scope is not limited to listed assets.
    #[serde(default, deserialize_with = "id_strings")]
    pub target_ids: Vec<String>,
}

/// How the verification code is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMethod {
    Sms,
    Voice,
}

impl CodeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeMethod::Sms => "SMS",
            CodeMethod::Voice => "VOICE",
        }
    }
}

/// An On-Premises backup to register with (migration): the `data` blob from
/// `POST /v1/settings/backup` and the password it was made with.
#[derive(Debug)]
pub struct RegisterBackup {
    pub data: SecretString,
    pub password: SecretString,
}

fn value_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Graph ids are strings; accept numbers too (some answers and SDK copies use them).
fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    value_id(&v).ok_or_else(|| serde::de::Error::custom("an id must be a string or a number"))
}

fn opt_id_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(value_id))
}

fn id_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Option::<Vec<Value>>::deserialize(d)?.unwrap_or_default();
    Ok(v.iter().filter_map(value_id).collect())
}

fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    }))
}

/// Unix seconds; 0 (Meta's "never") and absent are `None`.
fn opt_unix_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    match opt_int(d)? {
        None | Some(0) => Ok(None),
        Some(s) => OffsetDateTime::from_unix_timestamp(s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn throughput_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(|t| t.get("level"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phone_number_as_meta_documents_it() {
        let n: PhoneNumber = serde_json::from_value(json!({
            "id": "106540352242922", "display_phone_number": "+1 631-555-5555",
            "verified_name": "Jasper's Market", "status": "CONNECTED", "name_status": "APPROVED",
            "code_verification_status": "VERIFIED", "quality_rating": "GREEN",
            "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"},
            "whatsapp_business_manager_messaging_limit": "TIER_250",
            "webhook_configuration": {"application": "https://example.com/webhook"},
            "health_status": {"can_send_message": "BLOCKED", "entities": [
                {"entity_type": "PHONE_NUMBER", "id": "5977", "can_send_message": "AVAILABLE",
                 "can_receive_call_sip": "BLOCKED",
                 "errors": [{"error_code": 138024, "error_description": "d", "possible_solution": "s"}]},
                {"entity_type": "WABA", "id": 1022, "can_send_message": "LIMITED",
                 "additional_info": ["Tier lowered"]},
                {"entity_type": "APP", "id": "6349", "can_send_message": "BLOCKED",
                 "errors": [{"error_code": "141000", "error_description": "app blocked"}]}
            ]}
        }))
        .unwrap();
        assert!(n.is_cloud_api() && n.is_connected());
        assert_eq!(n.throughput_level.as_deref(), Some("STANDARD"));
        assert_eq!(
            n.webhook_configuration.effective(),
            Some("https://example.com/webhook")
        );
        let h = n.health_status.unwrap();
        assert_eq!(h.entities[0].errors[0].error_code, Some(138024));
        assert_eq!(h.entities[1].id.as_deref(), Some("1022"));
        let limited: Vec<_> = h.limited().collect();
        assert_eq!(limited[0].additional_info, ["Tier lowered"]);
        let blocked: Vec<_> = h.blocked().map(|e| e.entity_type.clone()).collect();
        assert_eq!(blocked, [Some("APP".to_string())]);
    }

    #[test]
    fn minimal_phone_number_and_unknown_values() {
        let n: PhoneNumber =
            serde_json::from_value(json!({"id": "1", "status": "SOMETHING_NEW"})).unwrap();
        assert_eq!(n.status.as_deref(), Some("SOMETHING_NEW"));
        assert_eq!(n.webhook_configuration, WebhookConfiguration::default());
        assert!(n.health_status.is_none());
        assert!(serde_json::from_value::<PhoneNumber>(json!({"status": "CONNECTED"})).is_err());
    }

    #[test]
    fn webhook_precedence() {
        let w = WebhookConfiguration {
            phone_number: Some(String::new()),
            whatsapp_business_account: Some("https://waba".into()),
            application: Some("https://app".into()),
        };
        assert_eq!(w.effective(), Some("https://waba"));
        let w = WebhookConfiguration {
            phone_number: Some("https://number".into()),
            ..w
        };
        assert_eq!(w.effective(), Some("https://number"));
        assert_eq!(WebhookConfiguration::default().effective(), None);
    }

    #[test]
    fn subscribed_apps() {
        let apps = SubscribedApp::parse_list(&json!({"data": [
            {"whatsapp_business_api_data": {"id": "6349", "link": "https://l", "name": "Bot"}},
            {"whatsapp_business_api_data": {"id": 77, "name": "Other"}, "override_callback_uri": "https://o"}
        ]}))
        .unwrap();
        assert_eq!(apps[0].id, "6349");
        assert_eq!(apps[0].name.as_deref(), Some("Bot"));
        assert_eq!(apps[1].id, "77");
        assert_eq!(apps[1].override_callback_uri.as_deref(), Some("https://o"));
        assert!(SubscribedApp::parse_list(&json!({})).is_err());
        assert!(SubscribedApp::parse_list(&json!({"data": [{}]})).is_err());
        assert!(SubscribedApp::parse_list(&json!({"data": []}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn token_info() {
        let t: TokenInfo = serde_json::from_value(json!({
            "app_id": "6349", "type": "SYSTEM_USER", "application": "Lucky Shrub",
            "data_access_expires_at": 0, "expires_at": 0, "is_valid": true,
            "issued_at": 1712099387, "scopes": ["whatsapp_business_management"],
            "granular_scopes": [{"scope": "whatsapp_business_management", "target_ids": ["1", 2]}],
            "user_id": "1041"
        }))
        .unwrap();
        assert_eq!(t.app_id.as_deref(), Some("6349"));
        assert!(t.is_valid);
        assert_eq!(t.expires_at, None);
        assert_eq!(t.issued_at.unwrap().unix_timestamp(), 1712099387);
        assert_eq!(t.granular_scopes[0].target_ids, ["1", "2"]);
        let t: TokenInfo =
            serde_json::from_value(json!({"is_valid": false, "expires_at": 1800000000})).unwrap();
        assert_eq!(t.expires_at.unwrap().unix_timestamp(), 1_800_000_000);
        assert!(!t.is_valid);
    }
}
