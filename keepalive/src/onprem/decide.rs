//! Every verdict of an On-Premises check, as a pure function of what was observed
//! (`observe.rs`) and of what became of the reset (`act.rs`). No I/O here: every case is in
//! the tables of tests below.

use shared::google::GoogleError;

use super::act::ResetResult;
use super::guard::{Braked, GraceCause, Withheld};
use super::observe::{ClientState, Observation, Refusal};
use super::trust::{NotEnabled, NotTheVm, LABEL, LABEL_VALUE};
use crate::error::CheckError;
use crate::verdict::{Judgement, Verdict};

/// What to do once the client has been observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The check ends here, with no VM action.
    Conclude(Judgement),
    /// The client is down (`down` says how): reset the VM unless the guard withholds it.
    ResetIfDue { down: String },
}

/// No verdict: a retry may fix this, so ask Pub/Sub to deliver the message again.
#[derive(Debug, Clone)]
pub struct Redeliver(pub GoogleError);

impl From<Redeliver> for CheckError {
    fn from(r: Redeliver) -> CheckError {
        CheckError::Google(r.0)
    }
}

/// From what the client said.
pub fn after_observe(observed: &Observation) -> Result<Plan, Redeliver> {
    let alert = |reason: String| Plan::Conclude(Judgement::new(Verdict::Alert, reason));
    let plan = match observed {
        Observation::VmUnreadable(e) => Plan::Conclude(alert_unless_redelivery(e, || {
            format!("cannot read the VM: {e}; nothing was sent to the client")
        })?),
        Observation::NotEnabled(not) => alert(not_enabled(not)),
        Observation::NoPassword(e) => Plan::Conclude(alert_unless_redelivery(e, || {
            format!("cannot read whatsAppPasswordSecret: {e}")
        })?),
        Observation::NotTheVm { host, mismatch } => alert(not_the_vm(host, mismatch)),
        Observation::Client { state, .. } => match state {
            ClientState::Up(r) => Plan::Conclude(Judgement::new(Verdict::Healthy, r)),
            ClientState::Unregistered(r) => alert(format!(
                "{r}: the number must be registered by a person; a reset does not help"
            )),
            ClientState::Refused(Refusal::Credentials(r)) => alert(format!(
                "{r}: the credentials were refused; fix whatsAppUsername and the password \
                 (or its secret); a reset does not help"
            )),
            ClientState::Refused(Refusal::Certificate(r)) => alert(format!(
                "{r}: the certificate was refused; fix whatsAppTlsFingerprint or the client's \
                 certificate; a reset does not help"
            )),
            ClientState::Refused(Refusal::Redirect(r)) => alert(format!(
                "{r}: the client redirects; point whatsAppHostname at the API itself; a reset \
                 does not help"
            )),
            ClientState::Down(r) => Plan::ResetIfDue { down: r.clone() },
        },
    };
    Ok(plan)
}

fn not_enabled(not: &NotEnabled) -> String {
    let found = match &not.found {
        Some(v) => format!("{LABEL}={v}"),
        None => format!("no {LABEL} label"),
    };
    format!(
        "the VM does not carry the label {LABEL}={LABEL_VALUE} ({found}): it is never reset \
         or sent a password (the provisioner's vm step sets the label)"
    )
}

fn not_the_vm(host: &str, m: &NotTheVm) -> String {
    let list = |ips: &[std::net::IpAddr]| {
        let all: Vec<String> = ips.iter().map(ToString::to_string).collect();
        all.join(", ")
    };
    let resolved = if m.host_addresses.is_empty() {
        "does not resolve".to_string()
    } else {
        list(&m.host_addresses)
    };
    format!(
        "whatsAppHostname {host} ({resolved}) is not one of the VM's addresses ({}): the \
         password from whatsAppPasswordSecret was not sent",
        list(&m.vm_addresses)
    )
}

/// From what became of the reset of a client that is `down`.
pub fn after_reset(down: &str, reset: &ResetResult) -> Result<Judgement, Redeliver> {
    use Verdict::{Grace, Reset, Skipped};
    let judgement = match reset {
        ResetResult::Withheld(Withheld::NotEnabled(not)) => Judgement::new(
            Verdict::Alert,
            format!("{down}; {}: no reset", not_enabled(not)),
        ),
        ResetResult::Withheld(Withheld::Braked(Braked { others, window })) => Judgement::new(
            Verdict::Alert,
            format!(
                "{down}; fleet brake: {others} other VMs of the project were reset in the last \
                 {} s, so the cause is most likely shared (the service's network or DNS, \
                 WhatsApp's servers, Cloud SQL): no reset",
                window.as_secs()
            ),
        ),
        ResetResult::Withheld(Withheld::NotRunning { status }) => Judgement::new(
            Skipped,
            format!("{down}; VM status is {status}, not RUNNING: no reset"),
        ),
        ResetResult::Withheld(Withheld::InGrace { cause, window }) => {
            let what = match cause {
                GraceCause::ResetAgo { seconds } => format!("VM was reset {seconds} s ago"),
                GraceCause::ResetInProgress { operation } => {
                    format!("reset {operation} is still in progress")
                }
                GraceCause::StartedAgo { seconds } => format!("VM started {seconds} s ago"),
            };
            let window = window.as_secs();
            Judgement::new(Grace, format!("{down}; {what} (grace {window} s)"))
        }
        ResetResult::DueButDryRun { .. } => {
            Judgement::new(Reset, format!("{down}; dry run: reset not issued"))
        }
        ResetResult::Issued {
            unconfirmed: None, ..
        } => Judgement::new(Reset, down),
        ResetResult::Issued {
            unconfirmed: Some(e),
            ..
        } => Judgement::new(
            Reset,
            format!("{down}; reset issued, completion not confirmed: {e}"),
        ),
        // The guard worked: one reset, whichever check sent it.
        ResetResult::AlreadyDoneByAnotherCheck { operation, .. } => Judgement::new(
            Grace,
            format!("{down}; already reset by operation {operation}"),
        ),
        // Another reset holds the instance right now: that is what grace is for.
        ResetResult::Refused409 { error, .. } => Judgement::new(
            Grace,
            format!("{down}; another operation on the VM is under way: {error}"),
        ),
        ResetResult::Failed { error, .. } => {
            alert_unless_redelivery(error, || format!("{down}; the VM cannot be reset: {error}"))?
        }
    };
    Ok(judgement)
}

/// A Google error ends the check with an alert (`reason`), unless a retry may fix it.
fn alert_unless_redelivery(
    e: &GoogleError,
    reason: impl FnOnce() -> String,
) -> Result<Judgement, Redeliver> {
    if worth_redelivery(e) {
        Err(Redeliver(e.clone()))
    } else {
        Ok(Judgement::new(Verdict::Alert, reason()))
    }
}

/// 429, 5xx and transport failures still failing after the client's retries, no access
/// token, a refused token (401: a new one may work) and the deadline. 403, 404 and the like
/// are alerts: a person must act, and redelivery will not change that.
fn worth_redelivery(e: &GoogleError) -> bool {
    e.is_retryable() || e.status() == Some(401) || matches!(e, GoogleError::Deadline { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uuid::Uuid;

    fn api(status: u16) -> GoogleError {
        GoogleError::Api {
            api: "Compute Engine",
            status,
            reason: None,
            message: format!("status {status}"),
        }
    }

    fn client(state: ClientState) -> Observation {
        Observation::Client { state, attempts: 3 }
    }

    /// `Ok(verdict)` or `Err("redeliver")`, and the reason must start with `starts`.
    fn outcome(r: Result<Judgement, Redeliver>, starts: &str) -> Result<Verdict, &'static str> {
        match r {
            Ok(j) => {
                assert!(j.reason.starts_with(starts), "{}", j.reason);
                Ok(j.verdict)
            }
            Err(_) => Err("redeliver"),
        }
    }

    /// What `after_observe` says, in a word.
    fn plan(observed: &Observation) -> &'static str {
        match after_observe(observed) {
            Ok(Plan::Conclude(j)) => j.verdict.as_str(),
            Ok(Plan::ResetIfDue { .. }) => "reset if due",
            Err(Redeliver(_)) => "redeliver",
        }
    }

    #[test]
    fn observation_table() {
        let cases = [
            ("up", client(ClientState::Up("ok".into())), "healthy"),
            (
                "unregistered",
                client(ClientState::Unregistered("unregistered".into())),
                "alert",
            ),
            (
                "down",
                client(ClientState::Down("d".into())),
                "reset if due",
            ),
            (
                "secret not found",
                Observation::NoPassword(api(404)),
                "alert",
            ),
            (
                "secret forbidden",
                Observation::NoPassword(api(403)),
                "alert",
            ),
            (
                "secret manager unavailable",
                Observation::NoPassword(api(503)),
                "redeliver",
            ),
            (
                "token refused",
                Observation::NoPassword(api(401)),
                "redeliver",
            ),
            (
                "no token",
                Observation::NoPassword(GoogleError::Auth("metadata server down".into())),
                "redeliver",
            ),
            ("VM not found", Observation::VmUnreadable(api(404)), "alert"),
            ("VM forbidden", Observation::VmUnreadable(api(403)), "alert"),
            (
                "Compute unavailable",
                Observation::VmUnreadable(api(503)),
                "redeliver",
            ),
            (
                "VM not labelled",
                Observation::NotEnabled(NotEnabled { found: None }),
                "alert",
            ),
            (
                "not the VM's address",
                Observation::NotTheVm {
                    host: "evil.example".into(),
                    mismatch: NotTheVm {
                        host_addresses: vec![],
                        vm_addresses: vec![],
                    },
                },
                "alert",
            ),
            (
                "credentials refused",
                client(ClientState::Refused(Refusal::Credentials("401".into()))),
                "alert",
            ),
            (
                "certificate refused",
                client(ClientState::Refused(Refusal::Certificate("tls".into()))),
                "alert",
            ),
            (
                "redirect",
                client(ClientState::Refused(Refusal::Redirect("302".into()))),
                "alert",
            ),
        ];
        for (name, observed, want) in cases {
            assert_eq!(plan(&observed), want, "{name}");
        }
        assert_eq!(
            after_observe(&client(ClientState::Down("login failed".into()))).unwrap(),
            Plan::ResetIfDue {
                down: "login failed".into()
            }
        );
    }

    #[test]
    fn reset_table() {
        let id = Uuid::nil();
        let grace = |cause| {
            ResetResult::Withheld(Withheld::InGrace {
                cause,
                window: Duration::from_secs(600),
            })
        };
        let failed = |error| ResetResult::Failed {
            error,
            request_id: None,
            operation: None,
        };
        let cases: Vec<(&str, ResetResult, Result<Verdict, &str>)> = vec![
            (
                "not running",
                ResetResult::Withheld(Withheld::NotRunning {
                    status: "TERMINATED".into(),
                }),
                Ok(Verdict::Skipped),
            ),
            (
                "started recently",
                grace(GraceCause::StartedAgo { seconds: 30 }),
                Ok(Verdict::Grace),
            ),
            (
                "reset recently",
                grace(GraceCause::ResetAgo { seconds: 60 }),
                Ok(Verdict::Grace),
            ),
            (
                "reset in progress",
                grace(GraceCause::ResetInProgress {
                    operation: "operation-1".into(),
                }),
                Ok(Verdict::Grace),
            ),
            (
                "dry run",
                ResetResult::DueButDryRun { request_id: id },
                Ok(Verdict::Reset),
            ),
            (
                "issued",
                ResetResult::Issued {
                    operation: Some("operation-2".into()),
                    request_id: id,
                    unconfirmed: None,
                },
                Ok(Verdict::Reset),
            ),
            (
                "issued, completion unconfirmed",
                ResetResult::Issued {
                    operation: Some("operation-2".into()),
                    request_id: id,
                    unconfirmed: Some(GoogleError::Deadline {
                        what: "waiting".into(),
                    }),
                },
                Ok(Verdict::Reset),
            ),
            (
                "already reset by another check",
                ResetResult::AlreadyDoneByAnotherCheck {
                    operation: "operation-1".into(),
                    request_id: id,
                },
                Ok(Verdict::Grace),
            ),
            (
                "409",
                ResetResult::Refused409 {
                    request_id: id,
                    error: api(409),
                },
                Ok(Verdict::Grace),
            ),
            (
                "label gone",
                ResetResult::Withheld(Withheld::NotEnabled(NotEnabled {
                    found: Some("disabled".into()),
                })),
                Ok(Verdict::Alert),
            ),
            (
                "braked",
                ResetResult::Withheld(Withheld::Braked(Braked {
                    others: 5,
                    window: Duration::from_secs(600),
                })),
                Ok(Verdict::Alert),
            ),
            ("403", failed(api(403)), Ok(Verdict::Alert)),
            ("404", failed(api(404)), Ok(Verdict::Alert)),
            (
                "operation failed",
                failed(GoogleError::Operation {
                    api: "Compute Engine",
                    name: "operation-3".into(),
                    message: "quota".into(),
                }),
                Ok(Verdict::Alert),
            ),
            ("429 after retries", failed(api(429)), Err("redeliver")),
            ("503 after retries", failed(api(503)), Err("redeliver")),
            ("token refused", failed(api(401)), Err("redeliver")),
            (
                "deadline",
                failed(GoogleError::Deadline {
                    what: "Compute".into(),
                }),
                Err("redeliver"),
            ),
        ];
        for (name, reset, want) in cases {
            let got = outcome(after_reset("login failed", &reset), "login failed");
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn refusals_and_rules_name_their_cause() {
        let reason = |o: Observation| match after_observe(&o) {
            Ok(Plan::Conclude(j)) => j.reason,
            other => panic!("{other:?}"),
        };
        let r = reason(Observation::NotEnabled(NotEnabled { found: None }));
        assert!(r.contains("whatsapp-keepalive=enabled"), "{r}");
        let r = reason(client(ClientState::Refused(Refusal::Credentials(
            "login failed: POST /v1/users/login answered 401".into(),
        ))));
        assert!(r.contains("credentials were refused"), "{r}");
        let r = reason(client(ClientState::Refused(Refusal::Certificate(
            "x".into(),
        ))));
        assert!(r.contains("certificate was refused"), "{r}");
        let r = reason(client(ClientState::Refused(Refusal::Redirect("x".into()))));
        assert!(r.contains("redirects"), "{r}");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let r = reason(Observation::NotTheVm {
            host: "wa.example.com".into(),
            mismatch: NotTheVm {
                host_addresses: vec![ip("203.0.113.66")],
                vm_addresses: vec![ip("34.89.1.2"), ip("10.0.0.2")],
            },
        });
        assert_eq!(
            r,
            "whatsAppHostname wa.example.com (203.0.113.66) is not one of the VM's addresses \
             (34.89.1.2, 10.0.0.2): the password from whatsAppPasswordSecret was not sent"
        );
        let braked = after_reset(
            "down",
            &ResetResult::Withheld(Withheld::Braked(Braked {
                others: 7,
                window: Duration::from_secs(600),
            })),
        )
        .unwrap();
        assert!(
            braked.reason.contains("fleet brake: 7 other VMs"),
            "{}",
            braked.reason
        );
    }

    #[test]
    fn reasons_say_why() {
        let reason = |r: ResetResult| after_reset("down", &r).unwrap().reason;
        assert_eq!(
            reason(ResetResult::Withheld(Withheld::InGrace {
                cause: GraceCause::StartedAgo { seconds: 30 },
                window: Duration::from_secs(600),
            })),
            "down; VM started 30 s ago (grace 600 s)"
        );
        assert_eq!(
            reason(ResetResult::DueButDryRun {
                request_id: Uuid::nil()
            }),
            "down; dry run: reset not issued"
        );
        assert_eq!(
            reason(ResetResult::Issued {
                operation: None,
                request_id: Uuid::nil(),
                unconfirmed: None
            }),
            "down"
        );
        assert_eq!(
            reason(ResetResult::Failed {
                error: api(403),
                request_id: None,
                operation: None
            }),
            "down; the VM cannot be reset: Compute Engine answered 403: status 403"
        );
    }
}
