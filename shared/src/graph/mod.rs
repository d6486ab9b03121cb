//! The Graph API (Meta's Cloud API for WhatsApp numbers): one client, one error type, the
//! typed answers, batches. Facts: `meta-cloud-api.md`.
//!
//! - [`GraphClient`]: base URL, version and timeout injectable; reads retried within a
//!   deadline, registration calls sent once.
//! - [`GraphError`]: Meta's error body, and which codes are worth a retry.
//! - [`types`]: phone number, health, webhook configuration, subscribed apps, token info.
//! - [`batch`]: up to 50 requests in one call, one result per request.

pub mod batch;
pub mod client;
pub mod error;
pub mod types;

#[cfg(test)]
mod tests;

pub use batch::{BatchRequest, BatchResults, MAX_BATCH_REQUESTS};
pub use client::{GraphClient, SleepFn, MAX_ANSWER_BYTES};
pub use error::{GraphApiError, GraphError};
pub use types::{
    CodeMethod, GranularScope, HealthEntity, HealthError, HealthStatus, PhoneNumber,
    RegisterBackup, SubscribedApp, TokenInfo, WebhookConfiguration,
};

/// `https://graph.facebook.com`.
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.facebook.com";

/// The newest Graph version the team has tested.
pub const DEFAULT_GRAPH_VERSION: &str = "v26.0";

/// The fields a Cloud API check reads of a number (`cloud-api-contract.md`, step 2).
pub const PHONE_NUMBER_FIELDS: &str = "id,display_phone_number,verified_name,status,name_status,quality_rating,platform_type,throughput,health_status,webhook_configuration";

/// Parses a Graph version (`KEEPALIVE_GRAPH_VERSION`): `vN.M`.
pub fn parse_version(var: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    let ok = v
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
        });
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{var}: a Graph API version like {DEFAULT_GRAPH_VERSION}, got {value:?}"
        ))
    }
}
