//! The Cloud API payload (`cloud-api-contract.md`): one business phone number on Meta's Cloud
//! API, its WABA, and where the system-user token lives. Parsed once into [`CloudPayload`]:
//! past this point ids are digits, the webhook URL is `https://`, and no token was inline.

use serde_json::{Map, Value};
use url::Url;

use super::SmtpSettings;
use super::{json_type, optional_str, parse_smtp, required_str, PayloadError, SecretVersion};

/// The longest `webhookUrl` taken: Meta's limit on an override (`override_callback_uri`).
pub const MAX_WEBHOOK_URL_CHARS: usize = 200;

/// One Cloud API number's payload, valid by construction.
#[derive(Debug, Clone)]
pub struct CloudPayload {
    /// `phoneNumberId`: the Graph id of the number (digits).
    pub phone_number_id: String,
    /// `wabaId`: its WhatsApp Business Account (digits).
    pub waba_id: String,
    /// `accessTokenSecret`: the Secret Manager version holding the system-user token.
    pub access_token_secret: SecretVersion,
    /// `appId`: the app that must be subscribed to the WABA; `None`: the token's own app.
    pub app_id: Option<String>,
    /// `webhookUrl`: where the number's webhooks must arrive (the bot's endpoint).
    pub webhook: Option<WebhookTarget>,
    /// `webhookVerifyTokenSecret`: the Secret Manager version holding the verify token.
    pub verify_token_secret: Option<SecretVersion>,
    /// `repair`: put back a missing subscription or a wrong webhook override.
    pub repair: bool,
    /// `name`: a label for outcomes, events and mails; `None`: the display number.
    pub name: Option<String>,
    /// Present only when all five SMTP fields are.
    pub smtp: Option<SmtpSettings>,
}

/// The bot's webhook endpoint: the URL as given (what the override is set to) and parsed
/// (what the check compares and calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub given: String,
    pub url: Url,
}

impl WebhookTarget {
    /// Whether `callback` (as Meta reports it) names this endpoint: the same URL once both are
    /// parsed (so `HTTPS://Bot.example.com` and `https://bot.example.com/` agree).
    pub fn is(&self, callback: &str) -> bool {
        let callback = callback.trim();
        callback == self.given || Url::parse(callback).is_ok_and(|u| u == self.url)
    }
}

impl CloudPayload {
    /// Reads a payload that has `phoneNumberId` (the caller has checked that it has no `vm`).
    pub(crate) fn from_map(map: &Map<String, Value>) -> Result<CloudPayload, PayloadError> {
        // First: a token in the message is the mistake to name, whatever else is missing.
        if map.contains_key("accessToken") {
            return Err(PayloadError::new(
                "accessToken",
                "is not accepted: a token never travels in the message; put it in Secret \
                 Manager and give its version as accessTokenSecret",
            ));
        }
        let phone_number_id = digits(map, "phoneNumberId", true)?.unwrap_or_default();
        let waba_id = digits(map, "wabaId", true)?.unwrap_or_default();
        let access_token_secret = secret(map, "accessTokenSecret")?
            .ok_or_else(|| PayloadError::new("accessTokenSecret", "is missing"))?;
        let app_id = digits(map, "appId", false)?;
        let webhook = optional_str(map, "webhookUrl")?
            .map(parse_webhook_url)
            .transpose()?;
        let verify_token_secret = secret(map, "webhookVerifyTokenSecret")?;
        let repair = match map.get("repair") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(PayloadError::new(
                    "repair",
                    format!("must be true or false, got {}", json_type(other)),
                ))
            }
        };
        let name = optional_str(map, "name")?.map(|n| n.trim().chars().take(200).collect());
        Ok(CloudPayload {
            phone_number_id,
            waba_id,
            access_token_secret,
            app_id,
            webhook,
            verify_token_secret,
            repair,
            name,
            smtp: parse_smtp(map)?,
        })
    }

    /// The projects of the secrets this payload names (each must be one this deployment may
    /// act in).
    pub fn secret_projects(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("accessTokenSecret", self.access_token_secret.project())];
        if let Some(v) = &self.verify_token_secret {
            out.push(("webhookVerifyTokenSecret", v.project()));
        }
        out
    }
}

/// A Graph id: a string of digits. `required`: absent is an error.
fn digits(
    map: &Map<String, Value>,
    key: &'static str,
    required: bool,
) -> Result<Option<String>, PayloadError> {
    let value = if required {
        Some(required_str(map, key)?)
    } else {
        optional_str(map, key)?
    };
    match value.map(str::trim) {
        None => Ok(None),
        Some(v) if v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(v.to_string()))
        }
        Some(v) => {
            let shown: String = v.chars().take(40).collect();
            Err(PayloadError::new(
                key,
                format!("must be a Graph id (digits only), got {shown:?}"),
            ))
        }
    }
}

fn secret(
    map: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<SecretVersion>, PayloadError> {
    optional_str(map, key)?
        .map(|name| SecretVersion::parse(name.trim()).map_err(|p| PayloadError::new(key, p)))
        .transpose()
}

/// `https://` only, with a host, without credentials, at most 200 characters.
fn parse_webhook_url(raw: &str) -> Result<WebhookTarget, PayloadError> {
    const FIELD: &str = "webhookUrl";
    let given = raw.trim();
    if !given
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        return Err(PayloadError::new(
            FIELD,
            "must be an https:// URL (Meta calls only https:// webhooks)",
        ));
    }
    if given.chars().count() > MAX_WEBHOOK_URL_CHARS {
        return Err(PayloadError::new(
            FIELD,
            format!("is longer than {MAX_WEBHOOK_URL_CHARS} characters (Meta's limit)"),
        ));
    }
    let url = Url::parse(given)
        .map_err(|e| PayloadError::new(FIELD, format!("is not a usable URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(PayloadError::new(FIELD, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the value: it carries credentials.
        return Err(PayloadError::new(FIELD, "must not carry credentials"));
    }
    if url.fragment().is_some() {
        return Err(PayloadError::new(FIELD, "must not have a #fragment"));
    }
    Ok(WebhookTarget {
        given: given.to_string(),
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{AnyPayload, PayloadParseError};
    use super::*;
    use serde_json::json;

    fn cloud() -> Value {
        json!({
            "phoneNumberId": "106540352242922",
            "wabaId": "102290129340398",
            "accessTokenSecret": "projects/acme-prod/secrets/meta-token/versions/latest",
        })
    }

    fn parse(v: Value) -> Result<CloudPayload, PayloadParseError> {
        match AnyPayload::parse(v.to_string().as_bytes())? {
            AnyPayload::CloudApi(p) => Ok(p),
            other => panic!("parsed as another kind: {v} {other:?}"),
        }
    }

    #[test]
    fn minimal_payload() {
        let p = parse(cloud()).unwrap();
        assert_eq!(p.phone_number_id, "106540352242922");
        assert_eq!(p.waba_id, "102290129340398");
        assert_eq!(p.access_token_secret.project(), "acme-prod");
        assert!(p.app_id.is_none() && p.webhook.is_none() && p.verify_token_secret.is_none());
        assert!(!p.repair);
        assert!(p.name.is_none() && p.smtp.is_none());
    }

    #[test]
    fn full_payload() {
        let mut v = cloud();
        for (k, val) in [
            ("appId", json!("634974688087057")),
            (
                "webhookUrl",
                json!(" https://bot.example.com/whatsapp?tenant=acme "),
            ),
            (
                "webhookVerifyTokenSecret",
                json!("projects/acme-prod/secrets/verify/versions/3"),
            ),
            ("repair", json!(true)),
            ("name", json!("acme-de")),
            ("project", json!("ignored")),
            ("somethingNew", json!({"x": 1})),
        ] {
            v[k] = val;
        }
        let p = parse(v).unwrap();
        assert_eq!(p.app_id.as_deref(), Some("634974688087057"));
        let hook = p.webhook.unwrap();
        assert_eq!(hook.given, "https://bot.example.com/whatsapp?tenant=acme");
        assert!(hook.is("https://BOT.example.com/whatsapp?tenant=acme"));
        assert!(!hook.is("https://bot.example.com/whatsapp"));
        assert!(p.repair);
        assert_eq!(p.name.as_deref(), Some("acme-de"));
        assert_eq!(
            p.verify_token_secret.unwrap().as_str(),
            "projects/acme-prod/secrets/verify/versions/3"
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("phoneNumberId", json!(""), "is empty"),
            ("phoneNumberId", json!("12a4"), "digits only"),
            ("phoneNumberId", json!("../me"), "digits only"),
            ("phoneNumberId", json!(1234), "must be a string"),
            ("wabaId", Value::Null, "is missing"),
            ("wabaId", json!("-1"), "digits only"),
            ("wabaId", json!(["1"]), "an array"),
            ("accessTokenSecret", Value::Null, "is missing"),
            ("accessTokenSecret", json!("meta-token"), "version name"),
            ("accessTokenSecret", json!(7), "must be a string"),
            ("appId", json!("app"), "digits only"),
            (
                "webhookUrl",
                json!("http://bot.example.com/hook"),
                "https://",
            ),
            ("webhookUrl", json!("bot.example.com/hook"), "https://"),
            ("webhookUrl", json!("https://"), "usable URL"),
            (
                "webhookUrl",
                json!("https://u:p@bot.example.com/"),
                "credentials",
            ),
            (
                "webhookUrl",
                json!(format!("https://bot.example.com/{}", "a".repeat(200))),
                "200 characters",
            ),
            ("webhookUrl", json!(true), "must be a string"),
            ("webhookVerifyTokenSecret", json!("verify"), "version name"),
            ("repair", json!("true"), "true or false"),
            ("repair", json!(1), "true or false"),
            ("name", json!(3), "must be a string"),
            ("smtpHost", json!(25), "must be a string"),
        ];
        for (field, value, problem) in cases {
            let mut v = cloud();
            if value.is_null() {
                v.as_object_mut().unwrap().remove(field);
            } else {
                v[field] = value.clone();
            }
            let err = parse(v).unwrap_err();
            assert_eq!(err.field(), Some(field), "{field}={value}: {err}");
            assert!(err.to_string().contains(problem), "{field}={value}: {err}");
        }
    }

    #[test]
    fn an_inline_token_is_refused_and_not_echoed() {
        for token in [json!("EAAGm0PX4ZCpsBAInlineSecret"), json!(""), json!(null)] {
            let mut v = cloud();
            v["accessToken"] = token;
            v.as_object_mut().unwrap().remove("accessTokenSecret");
            let err = parse(v).unwrap_err();
            assert_eq!(err.field(), Some("accessToken"), "{err}");
            assert!(!err.to_string().contains("InlineSecret"), "{err}");
        }
    }

    #[test]
    fn credentials_in_the_webhook_url_are_not_echoed() {
        let mut v = cloud();
        v["webhookUrl"] = json!("https://bot:hunter2@bot.example.com/");
        let err = parse(v).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn empty_optional_fields_count_as_absent() {
        let mut v = cloud();
        for k in [
            "appId",
            "webhookUrl",
            "webhookVerifyTokenSecret",
            "name",
            "smtpHost",
        ] {
            v[k] = json!("");
        }
        v["repair"] = Value::Null;
        let p = parse(v).unwrap();
        assert!(p.app_id.is_none() && p.webhook.is_none() && p.name.is_none());
        assert!(!p.repair);
    }

    #[test]
    fn secret_projects_are_listed() {
        let mut v = cloud();
        v["webhookVerifyTokenSecret"] = json!("projects/other/secrets/verify/versions/1");
        let p = parse(v).unwrap();
        assert_eq!(
            p.secret_projects(),
            [
                ("accessTokenSecret", "acme-prod"),
                ("webhookVerifyTokenSecret", "other")
            ]
        );
    }
}
