//! Step 1 of an On-Premises check: what the WhatsApp client says. Read the password (inline,
//! or from Secret Manager), then up to `KEEPALIVE_ATTEMPTS` rounds of login and every probe,
//! `KEEPALIVE_RETRY_DELAY_MS` apart. Reports what it saw; `decide.rs` makes the verdict.

use futures::future::join_all;
use reqwest::Method;
use secrecy::SecretString;
use shared::google::GoogleError;
use shared::payload::{PasswordSource, Payload};
use shared::whatsapp::{Health, HealthState, WaError, WhatsAppClient};
use tokio::time::Instant;

use crate::service::Service;

/// The probes of the original function, sent at once after the login.
pub const PROBES: [(Method, &str); 7] = [
    (Method::GET, "/v1/stats/app"),
    (Method::GET, "/v1/stats/db"),
    (Method::GET, "/v1/settings/application"),
    (Method::GET, "/v1/settings/profile/about"),
    (Method::GET, "/v1/settings/business/profile"),
    (Method::PUT, "/v1/services/message/gc"),
    (Method::GET, "/v1/health"),
];

/// What the health checks found, after all attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    Up(String),
    /// Down on every attempt; the reason of the last.
    Down(String),
    /// The number is not registered: a person must act.
    Unregistered(String),
}

/// What step 1 saw.
#[derive(Debug, Clone)]
pub enum Observation {
    /// The password secret could not be read; the client was not contacted.
    NoPassword(GoogleError),
    /// The client's state after `attempts` attempts.
    Client { state: ClientState, attempts: u32 },
}

impl Observation {
    /// Health-check attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            Observation::NoPassword(_) => 0,
            Observation::Client { attempts, .. } => *attempts,
        }
    }
}

/// Reads the password, then observes the client.
pub async fn observe(svc: &Service, payload: &Payload, deadline: Instant) -> Observation {
    // Boxed: the check's state exists only while it runs (see `check.rs`,
    // `a_waiting_check_is_small`).
    match Box::pin(password(svc, payload, deadline)).await {
        Ok(password) => client(svc, payload, &password).await,
        Err(e) => Observation::NoPassword(e),
    }
}

async fn password(
    svc: &Service,
    payload: &Payload,
    deadline: Instant,
) -> Result<SecretString, GoogleError> {
    match &payload.password {
        PasswordSource::Inline(p) => Ok(p.clone()),
        PasswordSource::Secret(version) => svc.secrets.access(version, Some(deadline)).await,
    }
}

/// Up to `attempts` rounds of login + probes, `retry_delay` apart.
async fn client(svc: &Service, payload: &Payload, password: &SecretString) -> Observation {
    let config = &svc.config;
    let wa = WhatsAppClient::new(
        svc.whatsapp_http.clone(),
        payload.whatsapp_url.clone(),
        config.request_timeout,
    );
    let mut last = String::new();
    for attempt in 1..=config.attempts {
        // Waiting for a turn is not part of any request's timeout: a busy process makes a
        // check late (bounded by the deadline: 503, redelivered), never a false "down".
        let turn = svc.probing.acquire().await;
        let result = Box::pin(one_attempt(&wa, &payload.username, password)).await;
        drop(turn);
        let state = match result {
            Ok(HealthState::Up(r)) => Some(ClientState::Up(r)),
            Ok(HealthState::Unregistered(r)) => Some(ClientState::Unregistered(r)),
            Ok(HealthState::Down(r)) | Err(r) => {
                last = r;
                None
            }
        };
        if let Some(state) = state {
            return Observation::Client {
                state,
                attempts: attempt,
            };
        }
        tracing::info!(vm = %payload.vm, attempt, failure = %last, "health check attempt failed");
        if attempt < config.attempts {
            tokio::time::sleep(config.retry_delay).await;
        }
    }
    let n = config.attempts;
    let reason = if n > 1 {
        format!("down on all {n} attempts; last: {last}")
    } else {
        format!("down: {last}")
    };
    Observation::Client {
        state: ClientState::Down(reason),
        attempts: n,
    }
}

/// Login, then every probe at once. `Ok` carries what `/v1/health` says when every probe
/// answered; `Err` the first failure in words.
async fn one_attempt(
    wa: &WhatsAppClient,
    username: &str,
    password: &SecretString,
) -> Result<HealthState, String> {
    use base64::Engine;
    use secrecy::ExposeSecret;
    // Whatever the client answers is quoted in reasons, logs and mails: never let it quote
    // a credential back (a misbehaving proxy echoing the request, say).
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose_secret()));
    let mut secrets = vec![password.expose_secret().to_string(), basic];
    let session = match wa.login(username, password).await {
        Ok(s) => s,
        Err(e) => return Err(scrub(&format!("login failed: {e}"), &secrets)),
    };
    let token = &session.token;
    secrets.push(token.expose_secret().to_string());
    match probe_all(wa, token).await {
        Ok(HealthState::Up(r)) => Ok(HealthState::Up(scrub(&r, &secrets))),
        Ok(HealthState::Down(r)) => Ok(HealthState::Down(scrub(&r, &secrets))),
        Ok(HealthState::Unregistered(r)) => Ok(HealthState::Unregistered(scrub(&r, &secrets))),
        Err(r) => Err(scrub(&r, &secrets)),
    }
}

/// `text` with every secret of four characters or more replaced.
fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "[REDACTED]"))
}

/// Every probe at once, with the session's token.
async fn probe_all(wa: &WhatsAppClient, token: &SecretString) -> Result<HealthState, String> {
    let results = join_all(
        PROBES
            .iter()
            .map(|(m, p)| wa.call(token, m.clone(), p, None)),
    )
    .await;
    let mut failures: Vec<WaError> = Vec::new();
    let mut health = None;
    for ((_, path), r) in PROBES.iter().zip(results) {
        match r {
            Ok(body) if *path == "/v1/health" => health = Some(body),
            Ok(_) => {}
            Err(e) => failures.push(e),
        }
    }
    let state = health.map(|body| {
        Health::parse(&body)
            .map(|h| h.state())
            .map_err(|d| format!("GET /v1/health answered {d}"))
    });
    match state {
        // The number needs a person whatever else fails.
        Some(Ok(s @ HealthState::Unregistered(_))) => Ok(s),
        _ if !failures.is_empty() => {
            let n = failures.len();
            let first = &failures[0];
            Err(if n == 1 {
                format!("probe failed: {first}")
            } else {
                format!("{n} probes failed, first: {first}")
            })
        }
        Some(s) => s,
        None => Err("GET /v1/health gave no answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_secret_but_not_short_ones() {
        let secrets = vec!["hunter22".to_string(), "abc".to_string()];
        assert_eq!(
            scrub("login failed: hunter22 abc", &secrets),
            "login failed: [REDACTED] abc"
        );
    }
}
