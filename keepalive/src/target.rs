//! What one message asks to check. The kind of target is a type: each kind is a variant here
//! and a module of its own (`onprem/`), so a new kind adds a variant and a module rather than
//! branches inside another kind's code.

use shared::payload::{Payload, PayloadParseError, SmtpSettings};

/// One target, parsed from the payload (the JSON inside `message.data`).
#[derive(Debug, Clone)]
pub enum Target {
    /// A WhatsApp Business API client on its own Compute Engine VM (a payload with `vm`):
    /// `onprem/`.
    OnPrem(Payload),
}

impl Target {
    /// Parses the payload and tells its kind; an error names the field at fault.
    pub fn parse(bytes: &[u8]) -> Result<Target, PayloadParseError> {
        Payload::parse(bytes).map(Target::OnPrem)
    }

    /// The relay for notification mails, when the payload names all of it.
    pub fn smtp(&self) -> Option<&SmtpSettings> {
        match self {
            Target::OnPrem(p) => p.smtp.as_ref(),
        }
    }

    /// Names the target in log lines and errors.
    pub fn label(&self) -> &str {
        match self {
            Target::OnPrem(p) => &p.vm,
        }
    }
}
