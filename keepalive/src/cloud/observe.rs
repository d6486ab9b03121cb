//! What a Cloud API check reads, all at once: the token (and the verify token) from Secret
//! Manager, then concurrently the number, the WABA's subscribed apps, the token's own
//! description, and the bot endpoint's verification handshake. Errors are kept as data:
//! `decide.rs` says what each means.

use secrecy::SecretString;
use shared::google::secretmanager::SecretManager;
use shared::google::GoogleError;
use shared::graph::{GraphClient, GraphError, PhoneNumber, SubscribedApp, TokenInfo};
use shared::payload::cloud::{CloudPayload, WebhookTarget};
use shared::webhook::{handshake, HandshakeFailure};
use std::time::Duration;
use tokio::time::Instant;

/// One Graph read: its answer or its error (after the client's retries).
pub type Read<T> = Result<T, GraphError>;

/// What was seen of one number.
#[derive(Debug)]
pub enum Observation {
    /// `accessTokenSecret` could not be read: nothing was asked of Meta.
    NoAccessToken(GoogleError),
    Read(Box<GraphReads>),
}

/// The concurrent reads of step 2.
#[derive(Debug)]
pub struct GraphReads {
    /// `GET {phoneNumberId}?fields=...`
    pub number: Read<PhoneNumber>,
    /// `GET {wabaId}/subscribed_apps`
    pub apps: Read<Vec<SubscribedApp>>,
    /// `GET debug_token`: only the expiry and the token's app come from it.
    pub token: Read<TokenInfo>,
    pub handshake: Handshake,
}

/// The verification handshake against `webhookUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// No `webhookUrl`, or no `webhookVerifyTokenSecret`: not performed.
    NotAsked,
    /// `webhookVerifyTokenSecret` could not be read (a retry may help when `retryable`).
    NoVerifyToken {
        error: String,
        retryable: bool,
    },
    Passed,
    Failed(HandshakeFailure),
}

/// The secrets read, for the repairs (never part of an observation that is shown).
#[derive(Clone)]
pub struct Secrets {
    pub access_token: SecretString,
    pub verify_token: Option<SecretString>,
}

/// What observing needs.
pub struct Readers<'a> {
    pub graph: &'a GraphClient,
    pub secrets: &'a SecretManager,
    /// Client for the bot's endpoint (system roots, no redirects).
    pub hooks: &'a reqwest::Client,
    /// Bound on the handshake (`KEEPALIVE_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
}

impl<'a> Readers<'a> {
    pub fn of(svc: &'a crate::service::Service) -> Readers<'a> {
        Readers {
            graph: &svc.graph,
            secrets: &svc.secrets,
            hooks: &svc.hooks,
            request_timeout: svc.config.request_timeout,
        }
    }
}

/// Reads everything a decision needs. The secrets come back only when the token was read.
pub async fn observe(
    r: &Readers<'_>,
    p: &CloudPayload,
    deadline: Instant,
) -> (Observation, Option<Secrets>) {
    let verify_secret = p.webhook.as_ref().and(p.verify_token_secret.as_ref());
    let (access, verify) = tokio::join!(
        r.secrets.access(&p.access_token_secret, Some(deadline)),
        async {
            match verify_secret {
                Some(v) => Some(r.secrets.access(v, Some(deadline)).await),
                None => None,
            }
        }
    );
    let access_token = match access {
        Ok(t) => t,
        Err(e) => return (Observation::NoAccessToken(e), None),
    };
    let (verify_token, no_verify_token) = match verify {
        None => (None, None),
        Some(Ok(t)) => (Some(t), None),
        Some(Err(e)) => (
            None,
            Some(Handshake::NoVerifyToken {
                retryable: e.is_retryable(),
                error: e.to_string(),
            }),
        ),
    };
    let dl = Some(deadline);
    let (number, apps, token, shake) = tokio::join!(
        r.graph.phone_number(&access_token, &p.phone_number_id, dl),
        r.graph.subscribed_apps(&access_token, &p.waba_id, dl),
        r.graph.debug_token(&access_token, dl),
        async {
            match (&p.webhook, &verify_token, no_verify_token) {
                (_, _, Some(failed)) => failed,
                (Some(hook), Some(vt), None) => shake(r, hook, vt, deadline).await,
                _ => Handshake::NotAsked,
            }
        }
    );
    let reads = GraphReads {
        number,
        apps,
        token,
        handshake: shake,
    };
    (
        Observation::Read(Box::new(reads)),
        Some(Secrets {
            access_token,
            verify_token,
        }),
    )
}

/// Meta's verification handshake against the bot's endpoint, bounded by the request timeout
/// and the deadline.
pub async fn shake(
    r: &Readers<'_>,
    hook: &WebhookTarget,
    verify_token: &SecretString,
    deadline: Instant,
) -> Handshake {
    let left = deadline.saturating_duration_since(Instant::now());
    let timeout = r.request_timeout.min(left);
    match handshake(r.hooks, &hook.url, verify_token, timeout).await {
        Ok(()) => Handshake::Passed,
        Err(f) => Handshake::Failed(f),
    }
}
