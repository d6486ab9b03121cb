//! The record of a register call that Meta may have carried out (it answered success, or its
//! answer was lost), so that a later run does not send register again on its own.
//!
//! Why: Meta may carry out a register after the run stopped waiting for `platform_type`
//! `CLOUD_API`. An engineer who then runs the command again "to keep waiting", a few times,
//! would otherwise spend Meta's 10 register calls in 72 hours and lock the number out for 72
//! hours. A later run reads this record first: under 72 hours old, it only waits for
//! `platform_type`; `--register-again` sends register once more, on purpose.
//!
//! Kept in Secret Manager as `<number>-register-sent`, beside the number's PIN and backup: what a
//! later run needs is read back from Google Cloud, never from the local disk (the contract). Its
//! newest version: the call's time (RFC 3339), then how it ended. Nothing secret is in it.

use secrecy::{ExposeSecret, SecretString};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::secrets::{self, CloudSecrets};
use crate::resources::secret::LABELS;
use crate::{Provisioner, StepError};

/// Meta's window for the register limit: an older record holds nothing back.
const WINDOW: Duration = Duration::hours(72);

/// How a register call that Meta may have carried out ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Success,
    AnswerLost,
}

/// The record, when it is under 72 hours old (or of a time that cannot be read): its text, to
/// show. Read strictly, like every secret of the number: an unreadable record is an error that
/// names it, and no register is sent.
pub async fn recent(prov: &Provisioner) -> Result<Option<String>, StepError> {
    let name = CloudSecrets::of(prov).register_sent;
    let Some(record) = secrets::read(prov, &name).await? else {
        return Ok(None);
    };
    let record = record.expose_secret().trim().to_string();
    Ok(holds_back(&record, OffsetDateTime::now_utc()).then_some(record))
}

/// Writes the record of a call made just now. A failure is a warning, not an error: the call
/// was made, and what matters next is reading whether Meta carried it out (so not
/// `resources::secret::store`, whose error tells to run the command again).
pub async fn write(prov: &Provisioner, ended: Ended) {
    let name = CloudSecrets::of(prov).register_sent;
    let record = SecretString::from(text(OffsetDateTime::now_utc(), ended));
    if let Err(e) = prov
        .google
        .secrets
        .store(
            &prov.cfg.project,
            &name,
            &record,
            &LABELS,
            Some(prov.call_deadline()),
        )
        .await
    {
        eprintln!("  warning: the record of this register call could not be stored in secret {name} ({e}); a later run cannot tell that it was sent");
    }
}

/// The record's text for a call made at `at`.
fn text(at: OffsetDateTime, ended: Ended) -> String {
    let at = at
        .replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string());
    let how = match ended {
        Ended::Success => "register sent, Meta answered success",
        Ended::AnswerLost => "register sent, its answer was lost",
    };
    format!("{at} {how}")
}

/// Whether `record` still holds a register back at `now`: written less than 72 hours before,
/// or of a time that cannot be read (never taken for old on a guess).
fn holds_back(record: &str, now: OffsetDateTime) -> bool {
    match record
        .split_whitespace()
        .next()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
    {
        Some(at) => now - at < WINDOW,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_record_holds_register_back_for_72_hours_and_no_longer() {
        let at = datetime!(2026-12-07 17:20:05.123 UTC);
        let record = text(at, Ended::AnswerLost);
        assert_eq!(
            record,
            "2026-12-07T17:20:05Z register sent, its answer was lost"
        );
        assert!(holds_back(&record, at));
        assert!(holds_back(&record, at + Duration::hours(71)));
        assert!(!holds_back(&record, at + Duration::hours(72)));
    }

    #[test]
    fn a_record_whose_time_cannot_be_read_holds_register_back() {
        let now = datetime!(2026-12-07 17:20 UTC);
        assert!(holds_back("yesterday register sent", now));
        assert!(holds_back("", now));
    }
}
