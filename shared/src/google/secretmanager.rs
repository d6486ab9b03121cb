//! Secret Manager v1: reading a secret version (the keepalive's `whatsAppPasswordSecret`);
//! the provisioner adds creating secrets and versions.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use std::sync::Arc;
use tokio::time::Instant;
use url::Url;

use super::client::{url_with_segments, Idempotent, Request};
use super::{GoogleClient, GoogleError};
use crate::payload::SecretVersion;

pub const API: &str = "Secret Manager";
pub const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com";

#[derive(Debug, Clone)]
pub struct SecretManager {
    client: Arc<GoogleClient>,
    /// `{endpoint}/v1`
    base: Url,
}

#[derive(Deserialize)]
struct AccessResponse {
    payload: Option<AccessPayload>,
}

#[derive(Deserialize)]
struct AccessPayload {
    data: Option<String>,
}

impl SecretManager {
    pub fn new(client: Arc<GoogleClient>, endpoint: &Url) -> Self {
        SecretManager {
            client,
            base: url_with_segments(endpoint, ["v1"]),
        }
    }

    /// Reads a secret version's value. The value never appears in an error.
    pub async fn access(
        &self,
        version: &SecretVersion,
        deadline: Option<Instant>,
    ) -> Result<SecretString, GoogleError> {
        let mut segments: Vec<&str> = version.as_str().split('/').collect();
        let last = segments.pop().unwrap_or("latest");
        let access = format!("{last}:access");
        segments.push(&access);
        let url = url_with_segments(&self.base, segments);
        let resp: AccessResponse = self.client.send(Request::get(API, &url), deadline).await?;
        let data = resp
            .payload
            .and_then(|p| p.data)
            .ok_or_else(|| GoogleError::Decode {
                api: API,
                detail: format!("{version} has no payload data"),
            })?;
        let bytes = STANDARD
            .decode(data.trim())
            .map_err(|_| GoogleError::Decode {
                api: API,
                detail: format!("{version}: payload data is not base64"),
            })?;
        let text = String::from_utf8(bytes).map_err(|_| GoogleError::Decode {
            api: API,
            detail: format!("{version}: payload is not UTF-8 text"),
        })?;
        Ok(SecretString::from(
            text.trim_end_matches(['\r', '\n']).to_string(),
        ))
    }
}

impl SecretManager {
    /// The latest version's value of `projects/P/secrets/S`, or `None` when the secret does
    /// not exist or has no enabled version.
    pub async fn latest(
        &self,
        project: &str,
        secret: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<SecretString>, GoogleError> {
        let name = format!("projects/{project}/secrets/{secret}/versions/latest");
        let version = SecretVersion::parse(&name).map_err(|detail| GoogleError::Decode {
            api: API,
            detail: format!("secret name {secret:?}: {detail}"),
        })?;
        match self.access(&version, deadline).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            // A secret whose versions are all disabled or destroyed answers 400 or 404.
            Err(e) if e.status() == Some(400) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the version `projects/P/secrets/S/versions/V` exists and is enabled (reads its
    /// metadata; where that is not served, its value, which is dropped at once).
    pub async fn version_exists(
        &self,
        version: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, GoogleError> {
        let url = url_with_segments(&self.base, version.split('/'));
        match self
            .client
            .send::<serde_json::Value>(Request::get(API, &url), deadline)
            .await
        {
            Ok(v) => Ok(v["state"].as_str().is_none_or(|s| s == "ENABLED")),
            // Not there, or an endpoint that serves only `:access`: ask that (the value is
            // dropped at once).
            Err(e) if e.is_not_found() || matches!(e.status(), Some(400 | 405 | 501)) => {
                let Ok(parsed) = SecretVersion::parse(version) else {
                    return Ok(false);
                };
                match self.access(&parsed, deadline).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.is_not_found() || e.status() == Some(400) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the secret (adopting an existing one) and adds `value` as its newest version.
    /// The new version is sent once: a repeat after a lost answer would add a second one (a
    /// failure is the caller's to report; the next run reads back what was stored).
    pub async fn store(
        &self,
        project: &str,
        secret: &str,
        value: &SecretString,
        labels: &[(&str, &str)],
        deadline: Option<Instant>,
    ) -> Result<(), GoogleError> {
        use secrecy::ExposeSecret;
        let mut url = url_with_segments(&self.base, ["projects", project, "secrets"]);
        url.query_pairs_mut().append_pair("secretId", secret);
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let body = serde_json::json!({"replication": {"automatic": {}}, "labels": labels});
        // A repeated create answers ALREADY_EXISTS, which is adopted: safe to retry.
        let create = Request::change(API, Method::POST, &url, Idempotent::Yes).body(&body);
        match self
            .client
            .send::<serde_json::Value>(create, deadline)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        let add = url_with_segments(
            &self.base,
            [
                "projects",
                project,
                "secrets",
                &format!("{secret}:addVersion"),
            ],
        );
        let body = serde_json::json!({"payload": {"data": STANDARD.encode(value.expose_secret())}});
        let add_version = Request::change(API, Method::POST, &add, Idempotent::No).body(&body);
        self.client
            .send::<serde_json::Value>(add_version, deadline)
            .await?;
        Ok(())
    }
}

/// One version of a secret, as listed: its number and `state` (`ENABLED`, `DISABLED`,
/// `DESTROYED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionState {
    pub number: u64,
    pub state: String,
}

impl SecretManager {
    /// The versions of `projects/P/secrets/S`, newest first; `None` when the secret does not
    /// exist. (Only the first page: the newest versions are what a reader wants.)
    pub async fn versions(
        &self,
        project: &str,
        secret: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<VersionState>>, GoogleError> {
        let url = url_with_segments(
            &self.base,
            ["projects", project, "secrets", secret, "versions"],
        );
        let answer = match self
            .client
            .send::<serde_json::Value>(Request::get(API, &url), deadline)
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out: Vec<VersionState> = answer["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let number = v["name"].as_str()?.rsplit('/').next()?.parse().ok()?;
                let state = v["state"].as_str().unwrap_or("ENABLED").to_string();
                Some(VersionState { number, state })
            })
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.number));
        Ok(Some(out))
    }

    /// The value of version `number` of `projects/P/secrets/S`.
    pub async fn access_number(
        &self,
        project: &str,
        secret: &str,
        number: u64,
        deadline: Option<Instant>,
    ) -> Result<SecretString, GoogleError> {
        let name = format!("projects/{project}/secrets/{secret}/versions/{number}");
        let version = SecretVersion::parse(&name).map_err(|detail| GoogleError::Decode {
            api: API,
            detail: format!("secret name {secret:?}: {detail}"),
        })?;
        self.access(&version, deadline).await
    }

    /// The secret's IAM policy (`{bindings, etag}`).
    pub async fn get_iam_policy(
        &self,
        project: &str,
        secret: &str,
        deadline: Option<Instant>,
    ) -> Result<serde_json::Value, GoogleError> {
        let url = url_with_segments(
            &self.base,
            [
                "projects",
                project,
                "secrets",
                &format!("{secret}:getIamPolicy"),
            ],
        );
        self.client.send(Request::get(API, &url), deadline).await
    }

    /// Sets the secret's whole IAM policy, with the etag it was read with (a concurrent change
    /// is refused rather than lost).
    pub async fn set_iam_policy(
        &self,
        project: &str,
        secret: &str,
        policy: &serde_json::Value,
        deadline: Option<Instant>,
    ) -> Result<serde_json::Value, GoogleError> {
        let url = url_with_segments(
            &self.base,
            [
                "projects",
                project,
                "secrets",
                &format!("{secret}:setIamPolicy"),
            ],
        );
        let body = serde_json::json!({ "policy": policy });
        let request = Request::change(API, Method::POST, &url, Idempotent::Yes).body(&body);
        self.client.send(request, deadline).await
    }
}
