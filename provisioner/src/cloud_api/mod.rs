//! A number on Meta's Cloud API (`platform = "cloud"`): the runbook's steps on the Graph API
//! (`whatsapp`, `verify`, `connect`, `status`, the keepalive's job), and what `migrate` and
//! `decommission` share with them. Facts: `meta-cloud-api.md`.
//!
//! - [`Meta`]: the Graph client with the number's ids and the access token read from Secret
//!   Manager (`cloud.access_token_secret`), built once per command.
//! - [`secrets`]: the PIN, the webhook's verify token, the backup and its password: read
//!   strictly, generated and stored before they are sent.
//! - [`register`]: the one place that calls `register` (once per run, never for a number on
//!   the Cloud API already; 133016 and 133005 explained), and [`register_record`]: a call
//!   Meta may have carried out, so that a later run does not send it again on its own.
//! - [`runbook`]: `whatsapp`, `verify`, `up`, `plan`; [`connect`]; [`status`]; [`job`]: the
//!   Cloud API payload of the number's keepalive job and the secret grants it needs (the
//!   job itself is the shared [`crate::resources::job`], made by `steps::keepalive`).

pub mod connect;
pub mod job;
pub mod register;
pub mod register_record;
pub mod runbook;
pub mod secrets;
pub mod status;

use secrecy::SecretString;
use shared::graph::{GraphClient, GraphError, PhoneNumber};
use shared::payload::SecretVersion;
use std::time::Duration;

use crate::config::CloudConfig;
use crate::{Provisioner, StepError};

/// Each Graph request's own bound (the command's deadline bounds the retries).
const GRAPH_TIMEOUT: Duration = Duration::from_secs(30);

/// The Graph API for this number.
pub struct Meta {
    pub graph: GraphClient,
    /// The system user's access token (from `cloud.access_token_secret`).
    pub token: SecretString,
    pub cloud: CloudConfig,
}

impl Meta {
    /// Checks `[cloud]` (exit 2 naming the key when it is incomplete: `who` needs it), reads
    /// the access token from Secret Manager and builds the client.
    pub async fn open(prov: &Provisioner, who: &str) -> Result<Meta, StepError> {
        let cloud = prov
            .cfg
            .require_cloud(who)
            .map_err(|e| StepError::Config(e.message))?
            .clone();
        let version = SecretVersion::parse(&cloud.access_token_secret)
            .map_err(|e| StepError::Config(format!("`cloud.access_token_secret`: {e}")))?;
        let token = prov
            .google
            .secrets
            .access(&version, Some(prov.call_deadline()))
            .await
            .map_err(|e| {
                StepError::failed(
                    format!("access token {}", cloud.access_token_secret),
                    format!(
                        "cannot be read from Secret Manager: {e}\n  store the system user's token there (printf %s TOKEN | gcloud secrets versions add SECRET --data-file=-) and run `provisioner {}` again",
                        prov.command
                    ),
                )
            })?;
        let graph = GraphClient::new(
            GraphClient::http_client(),
            prov.env.graph_endpoint.clone(),
            cloud.graph_version.clone(),
            GRAPH_TIMEOUT,
        );
        Ok(Meta {
            graph,
            token,
            cloud,
        })
    }

    /// `GET /{phone_number_id}`: status, platform, quality, health, webhooks.
    pub async fn number(&self, prov: &Provisioner) -> Result<PhoneNumber, StepError> {
        self.graph
            .phone_number(
                &self.token,
                &self.cloud.phone_number_id,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(|e| {
                self.failed(
                    prov,
                    &format!("phone number {}", self.cloud.phone_number_id),
                    e,
                )
            })
    }

    /// A Graph error as a step error: what it means for this number and how to go on.
    pub fn failed(&self, prov: &Provisioner, resource: &str, e: GraphError) -> StepError {
        let hint = if e.is_token_invalid() {
            format!(
                "the access token in {} is invalid or expired: put a new system-user token there and run `provisioner {}` again",
                self.cloud.access_token_secret, prov.command
            )
        } else if e.is_permission() {
            "the token lacks a permission (whatsapp_business_management, whatsapp_business_messaging) or the system user lacks access to the WABA: fix it in Business Manager and run the command again".to_string()
        } else if e.is_unknown_request() {
            "check cloud.phone_number_id and cloud.waba_id in number.toml".to_string()
        } else {
            format!(
                "to resume: run `provisioner {}` again (it reads before it acts)",
                prov.command
            )
        };
        StepError::failed(resource, format!("{e}\n  {hint}"))
    }
}

/// `+<digits>` of the number this configuration is for.
pub fn full_number(prov: &Provisioner) -> String {
    format!("+{}{}", prov.cfg.country_code, prov.cfg.phone_number)
}

/// The digits of a display number (`+1 631-555-5555` → `16315555555`).
pub fn digits_of(display: &str) -> String {
    display.chars().filter(char::is_ascii_digit).collect()
}

/// One line about the number: its display form, status, platform and quality.
pub fn describe(n: &PhoneNumber) -> String {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    format!(
        "{} ({}): status {}, platform {}, quality {}",
        or(&n.display_phone_number),
        or(&n.verified_name),
        or(&n.status),
        or(&n.platform_type),
        or(&n.quality_rating)
    )
}
