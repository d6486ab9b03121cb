//! TEMPORARY STUB (lead): replaced by the SMTP notifier.
use shared::payload::SmtpSettings;
use std::time::Duration;
#[derive(Debug, Clone)]
pub struct MailOptions { pub timeout: Duration, pub extra_root_ca_pem: Option<Vec<u8>> }
impl MailOptions { pub fn from_env() -> Result<Self, NotifyError> { Ok(MailOptions { timeout: Duration::from_secs(10), extra_root_ca_pem: None }) } }
pub struct Notice { pub subject: String, pub body: String }
#[derive(Debug, thiserror::Error)] #[error("stub")] pub struct NotifyError;
pub async fn send(_s: &SmtpSettings, _n: &Notice, _o: &MailOptions) -> Result<(), NotifyError> { Err(NotifyError) }
pub fn notice_for(verdict: &str, reason: &str, vm: &str, _zone: &str, _project: &str, _time: &str) -> Notice { Notice { subject: format!("{verdict} {vm}"), body: reason.into() } }
