//! What one message asks to check. The kind of target is a type: each kind is a variant here
//! and a module of its own (`onprem/`, `cloud/`), so a new kind adds a variant and a module
//! rather than branches inside another kind's code.

use shared::payload::cloud::CloudPayload;
use shared::payload::fleet::FleetPayload;
use shared::payload::{AnyPayload, Payload, PayloadParseError, SmtpSettings};
use std::borrow::Cow;

/// One target, parsed from the payload (the JSON inside `message.data`).
#[derive(Debug, Clone)]
pub enum Target {
    /// A WhatsApp Business API client on its own Compute Engine VM (a payload with `vm`):
    /// `onprem/`.
    OnPrem(Payload),
    /// A number on Meta's Cloud API (a payload with `phoneNumberId`): `cloud/`.
    Cloud(CloudPayload),
    /// Many Cloud API numbers in one message (a payload with `numbers`): `cloud/fleet.rs`.
    Fleet(FleetPayload),
}

impl Target {
    /// Parses the payload and tells its kind (`phoneNumberId` or `vm`; both is a 400 naming
    /// `phoneNumberId`); an error names the field at fault.
    pub fn parse(bytes: &[u8]) -> Result<Target, PayloadParseError> {
        Ok(match AnyPayload::parse(bytes)? {
            AnyPayload::OnPremises(p) => Target::OnPrem(p),
            AnyPayload::CloudApi(p) => Target::Cloud(p),
            AnyPayload::Fleet(f) => Target::Fleet(f),
        })
    }

    /// The relay for notification mails, when the payload names all of it (a fleet's entries
    /// each have their own).
    pub fn smtp(&self) -> Option<&SmtpSettings> {
        match self {
            Target::OnPrem(p) => p.smtp.as_ref(),
            Target::Cloud(p) => p.smtp.as_ref(),
            Target::Fleet(_) => None,
        }
    }

    /// Names the target in log lines and errors.
    pub fn label(&self) -> Cow<'_, str> {
        match self {
            Target::OnPrem(p) => Cow::Borrowed(&p.vm),
            Target::Cloud(p) => Cow::Borrowed(&p.phone_number_id),
            Target::Fleet(f) => Cow::Owned(format!("a fleet of {} numbers", f.numbers.len())),
        }
    }
}
