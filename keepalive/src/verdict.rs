//! The verdicts a check ends in, whatever the kind of target, and what each asks of the
//! report and of `check`'s exit status. Each kind's `decide.rs` is the only place that picks
//! one.

use serde::Serialize;

/// The verdicts of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The target works.
    Healthy,
    /// Down, but started or reset too recently to be reset again.
    Grace,
    /// Down, but the VM is not RUNNING: someone stopped it, or it is booting.
    Skipped,
    /// Down: the VM was reset (under `--dry-run`: would have been).
    Reset,
    /// A person must act; nothing the keepalive may do would help.
    Alert,
    /// Cloud API: something a person should see soon (quality, a limit, the token's expiry).
    Warning,
    /// Cloud API: a subscription or webhook override was put back (and read back).
    Repaired,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Grace => "grace",
            Verdict::Skipped => "skipped",
            Verdict::Reset => "reset",
            Verdict::Alert => "alert",
            Verdict::Warning => "warning",
            Verdict::Repaired => "repaired",
        }
    }

    /// Something a person should see: `check` exits 1.
    pub fn wants_attention(self) -> bool {
        self.severity() != Severity::Info
    }

    /// The severity of the check's log line.
    pub fn severity(self) -> Severity {
        match self {
            Verdict::Healthy | Verdict::Grace | Verdict::Skipped => Severity::Info,
            Verdict::Reset | Verdict::Warning | Verdict::Repaired => Severity::Warning,
            Verdict::Alert => Severity::Error,
        }
    }

    /// A notification mail goes out, when the payload names a relay (never on a dry run).
    pub fn sends_mail(self) -> bool {
        matches!(self, Verdict::Reset | Verdict::Alert | Verdict::Repaired)
    }

    /// An event is published, when `KEEPALIVE_EVENTS_TOPIC` is set (never on a dry run).
    pub fn publishes_event(self) -> bool {
        matches!(
            self,
            Verdict::Reset | Verdict::Alert | Verdict::Warning | Verdict::Repaired
        )
    }
}

/// How loud a verdict is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Nothing to do.
    Info,
    /// The keepalive acted (or would have, under `--dry-run`), or a person should look soon.
    Warning,
    /// A person must act.
    Error,
}

/// A verdict and the reason for it, as a `decide.rs` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reason: String,
}

/// The longest reason, in characters (quotes inside it are cut to 300 where they are read).
pub const MAX_REASON_CHARS: usize = 2048;

impl Judgement {
    /// The reason is cut to [`MAX_REASON_CHARS`]: it goes to outcomes, log lines, mails and
    /// events.
    pub fn new(verdict: Verdict, reason: impl Into<String>) -> Judgement {
        Judgement {
            verdict,
            reason: shared::limits::cut(&reason.into(), MAX_REASON_CHARS),
        }
    }
}
