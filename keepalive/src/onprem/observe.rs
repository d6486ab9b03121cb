//! Step 1 of an On-Premises check: what the VM and the WhatsApp client say. Read the
//! instance and the password (inline, or from Secret Manager) at once; nothing goes to the
//! client unless the VM carries the keepalive's label and, for a password from Secret
//! Manager, the hostname is one of the VM's own addresses (`trust.rs`). Then up to
//! `KEEPALIVE_ATTEMPTS` rounds of login and every probe, `KEEPALIVE_RETRY_DELAY_MS` apart;
//! refused credentials, a refused certificate and a redirect end them at once. Reports what
//! it saw; `decide.rs` makes the verdict.

use futures::future::join_all;
use reqwest::Method;
use secrecy::SecretString;
use shared::google::compute::{Instance, InstanceRef};
use shared::google::GoogleError;
use shared::payload::{PasswordSource, Payload};
use shared::tls_pin::{pinned_tls_config, Pin, PinningVerifier};
use shared::whatsapp::{Health, HealthState, WaError, WhatsAppClient};
use std::net::{IpAddr, SocketAddr};
use tokio::time::Instant;
use url::Host;

use super::trust::{self, NotEnabled, NotTheVm};
use crate::service::{whatsapp_client_builder, Service};

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
    /// An answer a reset cannot fix ended the check at once.
    Refused(Refusal),
}

/// Answers that end a check at once: a person must fix the payload, the secret or the
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The login answered 401 or 403.
    Credentials(String),
    /// TLS verification failed, or the certificate is not the pinned one.
    Certificate(String),
    /// The login answered a 3xx.
    Redirect(String),
}

/// What step 1 saw.
#[derive(Debug, Clone)]
pub enum Observation {
    /// The instance could not be read; the client was not contacted.
    VmUnreadable(GoogleError),
    /// The VM does not carry the keepalive's label; the client was not contacted.
    NotEnabled(NotEnabled),
    /// The password secret could not be read; the client was not contacted.
    NoPassword(GoogleError),
    /// The hostname (`host`) is not the VM's: the password from Secret Manager was not sent.
    NotTheVm { host: String, mismatch: NotTheVm },
    /// The client's state after `attempts` attempts.
    Client { state: ClientState, attempts: u32 },
}

impl Observation {
    /// Health-check attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            Observation::Client { attempts, .. } => *attempts,
            _ => 0,
        }
    }
}

/// Reads the instance and the password, applies the rules that come before any request to
/// the client, then observes the client.
pub async fn observe(
    svc: &Service,
    payload: &Payload,
    vm: &InstanceRef,
    deadline: Instant,
) -> Observation {
    // Boxed: the check's state exists only while it runs (see `check.rs`,
    // `a_waiting_check_is_small`).
    let (instance, password) = Box::pin(read(svc, payload, vm, deadline)).await;
    let instance = match instance {
        Ok(i) => i,
        Err(e) => return Observation::VmUnreadable(e),
    };
    if let Err(not) = trust::enabled(&instance) {
        return Observation::NotEnabled(not);
    }
    let password = match password {
        Ok(p) => p,
        Err(e) => return Observation::NoPassword(e),
    };
    let url = &payload.whatsapp_url;
    // Where the name resolved, for a password from Secret Manager: the connection goes
    // exactly there, not wherever a second lookup would lead.
    let mut pinned_resolution = None;
    if matches!(payload.password, PasswordSource::Secret(_)) {
        let addresses = Box::pin(host_addresses(url, svc.config.request_timeout)).await;
        if let Err(mismatch) = trust::password_may_go_to(&addresses, &instance) {
            return Observation::NotTheVm {
                host: url.host_str().unwrap_or_default().to_string(),
                mismatch,
            };
        }
        if let Some(Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(0);
            let addrs: Vec<SocketAddr> = addresses.iter().map(|ip| (*ip, port).into()).collect();
            pinned_resolution = Some((name.to_string(), addrs));
        }
    }
    let http = match http_client(svc, payload, pinned_resolution) {
        Ok(c) => c,
        Err(e) => {
            return Observation::Client {
                state: ClientState::Refused(Refusal::Certificate(format!(
                    "cannot set up TLS for the client: {e}"
                ))),
                attempts: 0,
            }
        }
    };
    client(svc, payload, &password, http).await
}

/// The instance and the password, read at once.
async fn read(
    svc: &Service,
    payload: &Payload,
    vm: &InstanceRef,
    deadline: Instant,
) -> (
    Result<Instance, GoogleError>,
    Result<SecretString, GoogleError>,
) {
    tokio::join!(
        svc.compute.get_instance(vm, Some(deadline)),
        password(svc, payload, deadline)
    )
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

/// The hostname's addresses: the IP literal, or every address its name resolves to (none
/// when it does not resolve within `timeout`).
async fn host_addresses(url: &url::Url, timeout: std::time::Duration) -> Vec<IpAddr> {
    match url.host() {
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(Host::Domain(name)) => {
            let port = url.port_or_known_default().unwrap_or(0);
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(addrs)) => {
                    let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                    ips.sort();
                    ips.dedup();
                    ips
                }
                _ => Vec::new(),
            }
        }
        None => Vec::new(),
    }
}

/// The shared HTTP client, or one of this check's own when it pins a certificate
/// (`whatsAppTlsFingerprint`) or a name's resolution.
fn http_client(
    svc: &Service,
    payload: &Payload,
    resolution: Option<(String, Vec<SocketAddr>)>,
) -> Result<reqwest::Client, String> {
    if payload.tls_fingerprint.is_none() && resolution.is_none() {
        return Ok(svc.whatsapp_http.clone());
    }
    let mut builder = whatsapp_client_builder(&svc.config);
    if let Some(fingerprint) = payload.tls_fingerprint {
        let verifier = PinningVerifier::new(Pin::Fingerprint(fingerprint));
        builder = builder.use_preconfigured_tls(pinned_tls_config(verifier)?);
    }
    if let Some((name, addrs)) = resolution {
        builder = builder.resolve_to_addrs(&name, &addrs);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Up to `attempts` rounds of login + probes, `retry_delay` apart.
async fn client(
    svc: &Service,
    payload: &Payload,
    password: &SecretString,
    http: reqwest::Client,
) -> Observation {
    let config = &svc.config;
    let wa = WhatsAppClient::new(http, payload.whatsapp_url.clone(), config.request_timeout);
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
            Err(Failure::Refused(r)) => Some(ClientState::Refused(r)),
            Ok(HealthState::Down(r)) | Err(Failure::Retry(r)) => {
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

/// Why an attempt failed: worth another attempt, or not.
enum Failure {
    Retry(String),
    Refused(Refusal),
}

/// Login, then every probe at once. `Ok` carries what `/v1/health` says when every probe
/// answered; `Err` the first failure in words.
async fn one_attempt(
    wa: &WhatsAppClient,
    username: &str,
    password: &SecretString,
) -> Result<HealthState, Failure> {
    use base64::Engine;
    use secrecy::ExposeSecret;
    // Whatever the client answers is quoted in reasons, logs and mails: never let it quote
    // a credential back (a misbehaving proxy echoing the request, say).
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose_secret()));
    let mut secrets = vec![password.expose_secret().to_string(), basic];
    let session = match wa.login(username, password).await {
        Ok(s) => s,
        Err(e) => {
            let text = scrub(&format!("login failed: {e}"), &secrets);
            return Err(match e {
                WaError::Certificate { .. } => Failure::Refused(Refusal::Certificate(text)),
                WaError::Redirect { .. } => Failure::Refused(Refusal::Redirect(text)),
                e if matches!(e.status(), Some(401 | 403)) => {
                    Failure::Refused(Refusal::Credentials(text))
                }
                _ => Failure::Retry(text),
            });
        }
    };
    let token = &session.token;
    secrets.push(token.expose_secret().to_string());
    match probe_all(wa, token).await {
        Ok(HealthState::Up(r)) => Ok(HealthState::Up(scrub(&r, &secrets))),
        Ok(HealthState::Down(r)) => Ok(HealthState::Down(scrub(&r, &secrets))),
        Ok(HealthState::Unregistered(r)) => Ok(HealthState::Unregistered(scrub(&r, &secrets))),
        Err(ProbeFailure::Certificate(r)) => {
            Err(Failure::Refused(Refusal::Certificate(scrub(&r, &secrets))))
        }
        Err(ProbeFailure::Other(r)) => Err(Failure::Retry(scrub(&r, &secrets))),
    }
}

/// `text` with every secret of four characters or more replaced.
fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "[REDACTED]"))
}

/// Why the probes failed: a refused certificate (the client changed it since the login),
/// or anything else.
enum ProbeFailure {
    Certificate(String),
    Other(String),
}

/// Every probe at once, with the session's token.
async fn probe_all(wa: &WhatsAppClient, token: &SecretString) -> Result<HealthState, ProbeFailure> {
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
            .map_err(|d| ProbeFailure::Other(format!("GET /v1/health answered {d}")))
    });
    if let Some(e) = failures
        .iter()
        .find(|e| matches!(e, WaError::Certificate { .. }))
    {
        return Err(ProbeFailure::Certificate(format!("probe failed: {e}")));
    }
    match state {
        // The number needs a person whatever else fails.
        Some(Ok(s @ HealthState::Unregistered(_))) => Ok(s),
        _ if !failures.is_empty() => {
            let n = failures.len();
            let first = &failures[0];
            Err(ProbeFailure::Other(if n == 1 {
                format!("probe failed: {first}")
            } else {
                format!("{n} probes failed, first: {first}")
            }))
        }
        Some(s) => s,
        None => Err(ProbeFailure::Other("GET /v1/health gave no answer".into())),
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
