//! The one place that calls `POST /{phone_number_id}/register`.
//!
//! Meta allows 10 register calls per number in a moving 72 hours, then answers 133016 and
//! blocks the number for 72 hours. So: at most one call per process (a run is a process),
//! never for a number that already reads `CLOUD_API`, never retried (the client sends it
//! once; a lost answer is resolved by reading `platform_type`, not by calling again), and not
//! by a later run while the record of a call Meta may have carried out is under 72 hours old
//! ([`register_record`](super::register_record)), unless asked (`--register-again`).

use shared::graph::{GraphError, RegisterBackup};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::register_record::{self, Ended};
use super::Meta;
use crate::progress::wait_for;
use crate::{Provisioner, StepError};
use shared::google::operation::Poll;

/// Set by the first register call of this process, whatever its outcome.
static SENT: AtomicBool = AtomicBool::new(false);

/// What [`register_once`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The number read `CLOUD_API` already: nothing was sent.
    Already,
    /// Meta answered success.
    Now,
    /// The answer was lost (timeout, connection): Meta may have registered the number; the
    /// caller confirms by reading `platform_type`.
    AnswerLost,
    /// An earlier run sent register less than 72 hours ago (the record's text): nothing was
    /// sent; the caller confirms by reading `platform_type`.
    SentBefore(String),
}

/// What the caller is doing, for the recovery advice of 133005.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `verify`: a number registered afresh.
    Fresh,
    /// `migrate`: with the On-Premises backup.
    Migration,
}

/// Registers the number, unless it is on the Cloud API already (read right before), this
/// process called register once already, or an earlier run sent it less than 72 hours ago and
/// `--register-again` was not given. `backup`: the On-Premises backup of a migration.
pub async fn register_once(
    prov: &Provisioner,
    meta: &Meta,
    pin: &secrecy::SecretString,
    backup: Option<&RegisterBackup>,
    purpose: Purpose,
) -> Result<Registered, StepError> {
    let id = &meta.cloud.phone_number_id;
    let resource = format!("register of phone number {id}");
    if meta.number(prov).await?.is_cloud_api() {
        return Ok(Registered::Already);
    }
    if !prov.register_again {
        if let Some(record) = register_record::recent(prov).await? {
            return Ok(Registered::SentBefore(record));
        }
    }
    if SENT.swap(true, Ordering::SeqCst) {
        return Err(StepError::failed(
            resource,
            "register was called once in this run already; it is never called twice (Meta allows 10 calls in 72 hours). Run `provisioner status`, then the command again",
        ));
    }
    let deadline = Some(tokio::time::Instant::now() + Duration::from_secs(60));
    match meta
        .graph
        .register(&meta.token, id, pin, backup, deadline)
        .await
    {
        Ok(()) => {
            register_record::write(prov, Ended::Success).await;
            Ok(Registered::Now)
        }
        Err(GraphError::Timeout { .. } | GraphError::Transport { .. }) => {
            register_record::write(prov, Ended::AnswerLost).await;
            Ok(Registered::AnswerLost)
        }
        Err(e) if e.is_register_limit() => Err(StepError::failed(resource, limit_advice(&e))),
        Err(e) if e.is_wrong_pin() => Err(StepError::failed(
            resource,
            wrong_pin_advice(prov, &e, purpose),
        )),
        // Meta refused the backup (stale, expired, unknown): say so and name the other way.
        Err(e)
            if purpose == Purpose::Migration
                && e.api().is_some()
                && !e.is_token_invalid()
                && !e.is_permission() =>
        {
            Err(StepError::failed(
                resource,
                format!(
                    "{e}\n  Meta did not take the On-Premises backup; nothing else was changed. {}",
                    crate::migrate::OTHER_WAY
                ),
            ))
        }
        Err(e) => Err(meta.failed(prov, &resource, e)),
    }
}

/// After a register: polls `platform_type` until it reads `CLOUD_API` (bounded). When it
/// does not, says that a run again only waits, and how to send register once more.
pub async fn confirm_cloud_api(prov: &Provisioner, meta: &Meta) -> Result<(), StepError> {
    let what = format!(
        "phone number {} to read platform_type CLOUD_API",
        meta.cloud.phone_number_id
    );
    wait_for(prov, &what, Duration::from_secs(180), || async {
        let n = meta.number(prov).await?;
        Ok(if n.is_cloud_api() {
            Poll::Ready(())
        } else {
            Poll::Pending(format!(
                "platform_type {}",
                n.platform_type.as_deref().unwrap_or("not said")
            ))
        })
    })
    .await
    .map_err(|e| with_register_advice(prov, e))
}

/// A failed wait for `CLOUD_API`, with what a run again does and how to send register again.
fn with_register_advice(prov: &Provisioner, e: StepError) -> StepError {
    let StepError::Failed { resource, message } = e else {
        return e;
    };
    let record = super::secrets::CloudSecrets::of(prov).register_sent;
    let again = match prov.command {
        "verify" => "verify --code CODE --register-again".to_string(),
        command => format!("{command} --register-again"),
    };
    StepError::Failed {
        resource,
        message: format!(
            "{message}\n  A run again does not send register again while secret {record} records a call under 72 hours old: Meta may still carry out the one sent. If WhatsApp Manager (or `provisioner status`) shows the number is not registered, `provisioner {again}` sends register once more (Meta allows 10 calls in 72 hours)."
        ),
    }
}

/// 133016 in words: what it means and when to try again.
pub fn limit_advice(e: &GraphError) -> String {
    let again = time::OffsetDateTime::now_utc() + time::Duration::hours(72);
    let again = again
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "72 hours from now".into());
    format!(
        "{e}\n  Meta allows 10 register (and deregister) calls per number in any 72 hours; this number has used them and Meta now blocks registering it for 72 hours (code 133016). Nothing was changed and no call is retried. Try again after {again} (72 hours from now; Meta counts from the latest call), with the same command: it picks up where it stopped."
    )
}

/// 133005 in words: how to recover.
fn wrong_pin_advice(prov: &Provisioner, e: &GraphError, purpose: Purpose) -> String {
    let secret = super::secrets::CloudSecrets::of(prov).pin;
    let state = match purpose {
        Purpose::Migration => "Meta may have shut the On-Premises client down; the number is not on the Cloud API yet. The backup stays in Secret Manager.",
        Purpose::Fresh => "The number is not registered.",
    };
    let command = match purpose {
        Purpose::Migration => "migrate",
        Purpose::Fresh => "verify --code CODE",
    };
    format!(
        "{e}\n  The two-step verification PIN in secret {secret} is not this number's PIN (code 133005). {state}\n  To recover: either store the number's real PIN as a new version of {secret} (printf %s PIN | gcloud secrets versions add {secret} --data-file=-), or turn two-step verification off for the number in WhatsApp Manager (then any 6 digits become the PIN, the stored one included). Then run `provisioner {command}` again. Too many wrong PINs lock the number for a while (codes 133008/133009): do not guess."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_advice_says_what_and_when() {
        let e = GraphError::from_response(
            "POST 1/register",
            400,
            br#"{"error":{"message":"(#133016) Account register deregister rate limit exceeded","code":133016}}"#,
        );
        let advice = limit_advice(&e);
        assert!(advice.contains("10 register"), "{advice}");
        assert!(advice.contains("72 hours"), "{advice}");
        assert!(advice.contains("Try again after 20"), "{advice}");
    }
}
