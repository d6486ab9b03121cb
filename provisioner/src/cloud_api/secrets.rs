//! The secrets of a number on the Cloud API, and of its move there: the two-step PIN, the
//! webhook's verify token, the On-Premises backup and its password.
//!
//! Every one is read strictly: a secret whose newest version is disabled or destroyed is an
//! error naming it (a PIN or a backup password must never be replaced by a new one while the old
//! may be in use). A new value is generated and stored first, then read back: what is sent is
//! what Secret Manager holds, so a crash at any point loses nothing.

use secrecy::SecretString;

use crate::config::NumberConfig;
use crate::report::Action;
use crate::resources::secret::read_newest;
use crate::{Provisioner, StepError};

/// The names of this number's Cloud API secrets.
#[derive(Debug, Clone)]
pub struct CloudSecrets {
    /// The two-step verification PIN (6 digits).
    pub pin: String,
    /// The token Meta's webhook handshake sends to LoyJoy's endpoint.
    pub verify_token: String,
    /// The password the On-Premises backup is encrypted with.
    pub backup_password: String,
    /// The On-Premises backup (`data` of `POST /v1/settings/backup`).
    pub backup: String,
    /// Not a secret: the record of a register call Meta may have carried out
    /// ([`super::register_record`]).
    pub register_sent: String,
}

impl CloudSecrets {
    pub fn of(prov: &Provisioner) -> CloudSecrets {
        Self::of_config(&prov.cfg)
    }

    /// The names for the number `cfg` describes.
    pub fn of_config(cfg: &NumberConfig) -> CloudSecrets {
        let base = cfg.resource_name();
        CloudSecrets {
            pin: format!("{base}-two-step-pin"),
            verify_token: format!("{base}-webhook-verify-token"),
            backup_password: format!("{base}-backup-password"),
            backup: format!("{base}-backup"),
            register_sent: format!("{base}-register-sent"),
        }
    }

    /// `projects/P/secrets/S/versions/latest` of `secret`.
    pub fn version(prov: &Provisioner, secret: &str) -> String {
        Self::version_in(&prov.cfg.project, secret)
    }

    /// `projects/{project}/secrets/{secret}/versions/latest`.
    pub fn version_in(project: &str, secret: &str) -> String {
        format!("projects/{project}/secrets/{secret}/versions/latest")
    }
}

/// The value of `secret`'s newest version; `None` only when it does not exist or has no
/// version at all. A newest version that is disabled or destroyed is an error naming the
/// secret (see [`read_newest`]): nothing new is ever generated over it.
pub async fn read(prov: &Provisioner, secret: &str) -> Result<Option<SecretString>, StepError> {
    Ok(read_newest(prov, secret).await?.map(|(_, value)| value))
}

/// The stored value of `secret`, or a new one from `generate`, stored first and read back.
/// `Ok(None)` under `--dry-run` when none is stored (the report says what would be). `what`
/// describes the value for the report.
pub async fn stored_or_new(
    prov: &Provisioner,
    kind: &'static str,
    secret: &str,
    what: &str,
    generate: fn() -> SecretString,
) -> Result<Option<SecretString>, StepError> {
    if let Some(v) = read(prov, secret).await? {
        prov.report.add(
            kind,
            secret,
            Action::Exists,
            Some("kept in Secret Manager".into()),
        );
        return Ok(Some(v));
    }
    if prov.dry_run {
        prov.report.add(
            kind,
            secret,
            Action::WouldCreate,
            Some(format!(
                "{what}, stored in Secret Manager before it is used"
            )),
        );
        return Ok(None);
    }
    crate::resources::secret::store(prov, secret, &generate()).await?;
    // What is used is what Secret Manager holds (a concurrent run may have stored another).
    let stored = read(prov, secret).await?.ok_or_else(|| {
        StepError::failed(
            format!("secret {secret}"),
            "was stored but cannot be read back; run the command again",
        )
    })?;
    prov.report.add(
        kind,
        secret,
        Action::Created,
        Some(format!("{what}, kept in Secret Manager")),
    );
    Ok(Some(stored))
}

/// The number's two-step PIN: the stored one, or a new one stored first (see
/// [`stored_or_new`]).
pub async fn pin(
    prov: &Provisioner,
    names: &CloudSecrets,
) -> Result<Option<SecretString>, StepError> {
    stored_or_new(prov, "two-step PIN", &names.pin, "6 digits", generate_pin).await
}

/// A two-step verification PIN: 6 digits from the operating system's CSPRNG.
pub fn generate_pin() -> SecretString {
    use rand::rngs::OsRng;
    use rand::Rng;
    use rand::TryRngCore;
    let mut rng = OsRng.unwrap_err();
    let pin: String = (0..6)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    SecretString::from(pin)
}

/// A webhook verify token: 48 letters and digits (it travels in a URL's query).
pub fn generate_verify_token() -> SecretString {
    use rand::distr::{Alphanumeric, SampleString};
    use rand::rngs::OsRng;
    use rand::TryRngCore;
    let mut rng = OsRng.unwrap_err();
    SecretString::from(Alphanumeric.sample_string(&mut rng, 48))
}

/// The On-Premises backup's password: 64 characters by the client's password rules.
pub fn generate_backup_password() -> SecretString {
    crate::resources::secret::generate_password(64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn pins_are_six_digits_and_tokens_are_url_safe() {
        for _ in 0..200 {
            let pin = generate_pin();
            let pin = pin.expose_secret();
            assert_eq!(pin.len(), 6);
            assert!(pin.bytes().all(|b| b.is_ascii_digit()), "{pin}");
            let t = generate_verify_token();
            assert_eq!(t.expose_secret().len(), 48);
            assert!(t.expose_secret().bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_ne!(
            generate_verify_token().expose_secret(),
            generate_verify_token().expose_secret()
        );
    }
}
