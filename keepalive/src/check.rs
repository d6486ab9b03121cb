//! One check of one tenant: a plain async function from a payload to an outcome, which both
//! `serve` and `check` call. Observe the client (with retries), decide, act on the VM.

use futures::future::join_all;
use reqwest::Method;
use secrecy::SecretString;
use serde::Serialize;
use shared::google::compute::{Compute, InstanceRef};
use shared::google::secretmanager::SecretManager;
use shared::google::{Auth, GoogleClient, GoogleError, RetryPolicy};
use shared::payload::{PasswordSource, Payload};
use shared::whatsapp::{HealthState, WaError, WhatsAppClient};
use std::sync::Arc;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::Config;
use crate::decide::{decide_client, decide_vm, ClientState, Decision, Verdict, VmState};
use crate::events::Events;
use crate::guard::{self, VmLocks};
use crate::notify;
use shared::pubsub::PubSubTarget;

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

/// The result of a check, as `serve` answers and `check` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub vm: String,
    pub zone: String,
    pub project: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
    /// Health-check attempts made.
    pub attempts: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The reset operation, when one was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `sent`, or why the mail failed; absent when the payload has no SMTP settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// `published <message id>`, or why not; absent without `KEEPALIVE_EVENTS_TOPIC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub checked_at: String,
    pub duration_ms: u64,
}

/// Why a check could not be completed. All are worth a retry (503, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Google(#[from] GoogleError),
    #[error("no project: give `project` in the payload or set GOOGLE_CLOUD_PROJECT ({0})")]
    NoProject(String),
    #[error("the check did not finish within the deadline of {} s", .0.as_secs())]
    Deadline(Duration),
}

/// Everything a check needs that outlives one check: clients, settings, the VM locks.
pub struct Checker {
    pub config: Config,
    http: reqwest::Client,
    auth: Arc<Auth>,
    compute: Compute,
    secrets: SecretManager,
    locks: VmLocks,
    mail: notify::MailOptions,
    events: Option<Events>,
    /// Bounds the WhatsApp clients probed at once: each probing check holds about seven
    /// connections (~0.2 MB); a burst of a thousand tenants would otherwise hold 7,000.
    probing: tokio::sync::Semaphore,
}

/// Per-check options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    pub dry_run: bool,
}

impl Checker {
    pub fn new(config: Config) -> Result<Checker, String> {
        let auth = Arc::new(Auth::new());
        let retry = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            multiplier: 2.0,
        };
        let google = Arc::new(
            GoogleClient::new(auth.clone(), retry, config.google_timeout)
                .map_err(|e| e.to_string())?,
        );
        let mail = notify::MailOptions::from_env().map_err(|e| e.to_string())?;
        let events = match &config.events_topic {
            Some(topic) => Some(Events::new(topic.clone(), PubSubTarget::from_env()?)),
            None => None,
        };
        Ok(Checker {
            probing: tokio::sync::Semaphore::new(config.max_concurrent_probes),
            events,
            compute: Compute::new(google.clone(), &config.compute_endpoint),
            secrets: SecretManager::new(google, &config.secretmanager_endpoint),
            http: WhatsAppClient::http_client(),
            auth,
            locks: VmLocks::default(),
            mail,
            config,
        })
    }

    /// Checks one tenant within the configured deadline.
    pub async fn check(
        &self,
        payload: &Payload,
        opts: CheckOptions,
    ) -> Result<Outcome, CheckError> {
        let started = Instant::now();
        let deadline = started + self.config.deadline;
        let checked_at = now_rfc3339();
        // Boxed: the check's state exists only while it runs (see `a_waiting_check_is_small`).
        let result = tokio::time::timeout(
            self.config.deadline,
            Box::pin(self.run(payload, opts, deadline)),
        )
        .await;
        let mut outcome = match result {
            Ok(r) => r?,
            Err(_) => return Err(CheckError::Deadline(self.config.deadline)),
        };
        outcome.checked_at = checked_at;
        outcome.duration_ms = started.elapsed().as_millis() as u64;
        // A dry run announces nothing: the mail says a VM was reset.
        if !opts.dry_run && matches!(outcome.verdict, Verdict::Reset | Verdict::Alert) {
            if let Some(smtp) = &payload.smtp {
                outcome.mail = Some(Box::pin(self.send_mail(smtp, &outcome, deadline)).await);
            }
            if let Some(events) = &self.events {
                let left = deadline.saturating_duration_since(Instant::now());
                let timeout = left.clamp(Duration::from_secs(1), Duration::from_secs(10));
                outcome.event = Some(Box::pin(events.publish(&outcome, timeout)).await);
            }
        }
        Ok(outcome)
    }

    async fn run(
        &self,
        payload: &Payload,
        opts: CheckOptions,
        deadline: Instant,
    ) -> Result<Outcome, CheckError> {
        let mut outcome = Outcome {
            vm: payload.vm.clone(),
            zone: payload.zone.clone(),
            project: payload
                .project
                .clone()
                .or_else(|| self.config.default_project.clone()),
            verdict: Verdict::Healthy,
            reason: String::new(),
            attempts: 0,
            dry_run: opts.dry_run,
            operation: None,
            request_id: None,
            mail: None,
            event: None,
            checked_at: String::new(),
            duration_ms: 0,
        };
        let password = match Box::pin(self.password(payload, deadline)).await {
            Ok(p) => p,
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => {
                outcome.verdict = Verdict::Alert;
                outcome.reason = format!("cannot read whatsAppPasswordSecret: {e}");
                return Ok(outcome);
            }
        };
        let (client, attempts) = self.observe(payload, &password).await;
        outcome.attempts = attempts;
        let down = match decide_client(&client) {
            Decision::Final(verdict, reason) => {
                outcome.verdict = verdict;
                outcome.reason = reason;
                if outcome.project.is_none() {
                    // Cheap with a key file; a best effort, so the outcome names the project.
                    let ask = self.auth.project_id();
                    if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_secs(2), ask).await {
                        outcome.project = Some(p);
                    }
                }
                return Ok(outcome);
            }
            Decision::InspectVm(reason) => reason,
        };
        let project = match &outcome.project {
            Some(p) => p.clone(),
            None => {
                let p = self
                    .auth
                    .project_id()
                    .await
                    .map_err(|e| CheckError::NoProject(e.to_string()))?;
                outcome.project = Some(p.clone());
                p
            }
        };
        let vm = InstanceRef {
            project,
            zone: payload.zone.clone(),
            name: payload.vm.clone(),
        };
        match Box::pin(self.act(&vm, &down, opts, deadline, &mut outcome)).await {
            Ok(()) => Ok(outcome),
            // 401: the token was refused; a new one may work, so ask for redelivery.
            Err(e)
                if e.is_retryable()
                    || e.status() == Some(401)
                    || matches!(e, GoogleError::Deadline { .. }) =>
            {
                Err(e.into())
            }
            Err(e) => {
                outcome.verdict = Verdict::Alert;
                outcome.reason = format!("{down}; the VM cannot be reset: {e}");
                Ok(outcome)
            }
        }
    }

    async fn password(
        &self,
        payload: &Payload,
        deadline: Instant,
    ) -> Result<SecretString, GoogleError> {
        match &payload.password {
            PasswordSource::Inline(p) => Ok(p.clone()),
            PasswordSource::Secret(version) => self.secrets.access(version, Some(deadline)).await,
        }
    }

    /// Up to `attempts` rounds of login + probes, `retry_delay` apart.
    async fn observe(&self, payload: &Payload, password: &SecretString) -> (ClientState, u32) {
        let wa = WhatsAppClient::new(
            self.http.clone(),
            payload.whatsapp_url.clone(),
            self.config.request_timeout,
        );
        let mut last = String::new();
        for attempt in 1..=self.config.attempts {
            // Waiting for a turn is not part of any request's timeout: a busy process makes a
            // check late (bounded by the deadline: 503, redelivered), never a false "down".
            let turn = self.probing.acquire().await;
            let result = Box::pin(one_attempt(&wa, &payload.username, password)).await;
            drop(turn);
            match result {
                Ok(HealthState::Up(r)) => return (ClientState::Up(r), attempt),
                Ok(HealthState::Unregistered(r)) => return (ClientState::Unregistered(r), attempt),
                Ok(HealthState::Down(r)) => last = r,
                Err(e) => last = e,
            }
            tracing::info!(vm = %payload.vm, attempt, failure = %last, "health check attempt failed");
            if attempt < self.config.attempts {
                tokio::time::sleep(self.config.retry_delay).await;
            }
        }
        let n = self.config.attempts;
        let reason = if n > 1 {
            format!("down on all {n} attempts; last: {last}")
        } else {
            format!("down: {last}")
        };
        (ClientState::Down(reason), n)
    }

    /// Reads the VM, decides, and resets it when the decision says so.
    async fn act(
        &self,
        vm: &InstanceRef,
        down: &str,
        opts: CheckOptions,
        deadline: Instant,
        outcome: &mut Outcome,
    ) -> Result<(), GoogleError> {
        let _turn = self.locks.lock(&vm.to_string()).await;
        let instance = self.compute.get_instance(vm, Some(deadline)).await?;
        let newest = if instance.status == "RUNNING" {
            let ops = self.reset_history(vm, &instance, deadline).await?;
            guard::newest_reset(&instance, &ops)
        } else {
            None
        };
        let state = VmState {
            status: instance.status.clone(),
            last_start: instance
                .last_start_timestamp
                .as_deref()
                .and_then(guard::parse_time),
            last_reset: newest.clone(),
        };
        let (verdict, reason) = decide_vm(
            down,
            &state,
            OffsetDateTime::now_utc(),
            self.config.boot_grace,
        );
        outcome.verdict = verdict;
        outcome.reason = reason;
        if verdict != Verdict::Reset {
            return Ok(());
        }
        let request_id = guard::request_id(&vm.project, &vm.zone, &instance, newest.as_ref());
        outcome.request_id = Some(request_id.to_string());
        if opts.dry_run {
            outcome.reason = format!("{}; dry run: reset not issued", outcome.reason);
            return Ok(());
        }
        tracing::warn!(vm = %vm.name, zone = %vm.zone, project = %vm.project, %request_id, reason = %outcome.reason, "resetting VM");
        let started = OffsetDateTime::now_utc();
        let op = match self.compute.reset(vm, request_id, Some(deadline)).await {
            Ok(op) => op,
            // Another reset holds the instance right now: that is what grace is for.
            Err(e) if e.status() == Some(409) => {
                outcome.verdict = Verdict::Grace;
                outcome.reason = format!("{down}; another operation on the VM is under way: {e}");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        outcome.operation = Some(op.name.clone()).filter(|n| !n.is_empty());
        // The same requestId answered an operation from before this check: another check
        // (another process, an earlier delivery) already reset the VM.
        let inserted = op.insert_time.as_deref().and_then(guard::parse_time);
        if inserted.is_some_and(|t| t < started - time::Duration::seconds(30)) {
            outcome.verdict = Verdict::Grace;
            outcome.reason = format!("{down}; already reset by operation {}", op.name);
            return Ok(());
        }
        if let Some(message) = op.failure() {
            return Err(GoogleError::Operation {
                api: "Compute Engine",
                name: op.name,
                message,
            });
        }
        if op.is_done() || op.name.is_empty() {
            return Ok(());
        }
        // Wait for it, but not to the last second: the answer must still reach Pub/Sub.
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_until = Instant::now()
            + left
                .saturating_sub(Duration::from_secs(3))
                .min(Duration::from_secs(60));
        match self.wait_reset(vm, &op.name, wait_until).await {
            Ok(()) => Ok(()),
            Err(e @ GoogleError::Operation { .. }) => Err(e),
            // The reset was issued; only its completion could not be confirmed.
            Err(e) => {
                outcome.reason = format!(
                    "{}; reset issued, completion not confirmed: {e}",
                    outcome.reason
                );
                Ok(())
            }
        }
    }

    /// Waits for the reset with the API's `wait` method, or by polling the operation where
    /// `wait` is not offered.
    async fn wait_reset(
        &self,
        vm: &InstanceRef,
        op: &str,
        until: Instant,
    ) -> Result<(), GoogleError> {
        match self
            .compute
            .wait_zone_operation(&vm.project, &vm.zone, op, until)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(404 | 405 | 501)) => self
                .compute
                .wait_operation(
                    &vm.project,
                    &shared::google::compute::Scope::Zone(vm.zone.clone()),
                    op,
                    until,
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }

    /// The VM's reset operations on record. A list that cannot be read for a reason other
    /// than load or permissions (a 400 for the filter, a 404 for the list itself when the
    /// instance was just read) leaves only the `requestId` guard, and says so.
    async fn reset_history(
        &self,
        vm: &InstanceRef,
        instance: &shared::google::compute::Instance,
        deadline: Instant,
    ) -> Result<Vec<shared::google::compute::Operation>, GoogleError> {
        let filter = guard::reset_filter(instance);
        let list = |filter: String| async move {
            self.compute
                .list_zone_operations(&vm.project, &vm.zone, &filter, 4, Some(deadline))
                .await
        };
        match list(filter).await {
            Err(e) if e.status() == Some(400) => {
                tracing::warn!(vm = %vm.name, error = %e, "operations filter refused; filtering the zone's operations here");
                list(String::new()).await
            }
            Err(e) if e.status() == Some(404) => {
                tracing::warn!(vm = %vm.name, error = %e, "operations list not found; relying on requestId alone");
                Ok(Vec::new())
            }
            other => other,
        }
    }

    async fn send_mail(
        &self,
        smtp: &shared::payload::SmtpSettings,
        outcome: &Outcome,
        deadline: Instant,
    ) -> String {
        let notice = notify::notice_for(
            outcome.verdict.as_str(),
            &outcome.reason,
            &outcome.vm,
            &outcome.zone,
            outcome.project.as_deref().unwrap_or("-"),
            &outcome.checked_at,
        );
        let left = deadline.saturating_duration_since(Instant::now());
        let mut opts = self.mail.clone();
        opts.timeout = opts.timeout.min(left.max(Duration::from_secs(1)));
        match notify::send(smtp, &notice, &opts).await {
            Ok(()) => "sent".to_string(),
            Err(e) => {
                tracing::warn!(vm = %outcome.vm, error = %e, "notification mail failed");
                format!("failed: {e}")
            }
        }
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

/// `text` with every non-empty secret replaced.
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
        shared::whatsapp::Health::parse(&body)
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

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check waiting for its turn is a task holding this future: a burst of a thousand
    /// tenants holds a thousand of them, so the phases that need much state (the probes, the
    /// Compute Engine calls, the mail) are boxed and exist only while they run.
    /// (Unboxed, a waiting check was 7.5 KB.)
    #[test]
    fn a_waiting_check_is_small() {
        let config = Config::from_lookup(&|_| None).unwrap();
        let checker = Checker::new(config).unwrap();
        let payload = Payload::parse(
            br#"{"whatsAppHostname":"127.0.0.1:9","whatsAppUsername":"admin","whatsAppPassword":"x","vm":"vm","zone":"z","project":"p"}"#,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        let outer = std::mem::size_of_val(&checker.check(&payload, CheckOptions::default()));
        assert!(outer <= 1024, "{outer} bytes");
        // What waits for a turn (inside `observe`).
        let future = checker.run(&payload, CheckOptions::default(), deadline);
        let size = std::mem::size_of_val(&future);
        println!("check future: {size} bytes");
        assert!(size <= 3072, "{size} bytes");
    }
}
