//! The runbook's steps. Each reads before it creates and adopts what exists.

pub mod address;
pub mod database;
pub mod keepalive;
pub mod link;
pub mod onboard;
pub mod vm;

use secrecy::SecretString;
use shared::google::GoogleError;
use std::time::Duration;

use crate::cloud::Cloud;
use crate::config::NumberConfig;
use crate::report::Report;
use crate::StepError;

/// Everything one command works with.
pub struct Ctx {
    pub cfg: NumberConfig,
    pub cloud: Cloud,
    pub dry_run: bool,
    pub report: Report,
    /// The command being run, for "how to resume" hints.
    pub command: &'static str,
}

/// The names of this number's resources, all derived from `whatsapp-<cc><number>`.
#[derive(Debug, Clone)]
pub struct Names {
    pub base: String,
    pub sql_instance: String,
    pub address: String,
    pub firewall: String,
    pub vm: String,
    pub network_tag: String,
    pub db_user: String,
    pub db_password_secret: String,
    pub tls_pin_secret: String,
    pub admin_password_secret: String,
    pub api_password_secret: String,
}

impl Names {
    pub fn of(cfg: &NumberConfig) -> Names {
        let base = cfg.resource_name();
        Names {
            sql_instance: base.clone(),
            address: base.clone(),
            firewall: format!("{base}-allow-web"),
            vm: base.clone(),
            network_tag: base.clone(),
            db_user: "whatsapp".into(),
            db_password_secret: format!("{base}-db-password"),
            tls_pin_secret: format!("{base}-tls-certificate"),
            admin_password_secret: format!("{base}-admin-password"),
            api_password_secret: format!("{base}-api-password"),
            base,
        }
    }
}

impl Ctx {
    pub fn names(&self) -> Names {
        Names::of(&self.cfg)
    }

    /// Maps a Google error on `resource` to a step error with the resume hint.
    pub fn google(&self, resource: impl Into<String>) -> impl FnOnce(GoogleError) -> StepError {
        let command = self.command;
        let resource = resource.into();
        move |source| StepError::Google {
            resource,
            command,
            source,
        }
    }

    /// A deadline for one Google call sequence (not the long waits).
    pub fn call_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(300)
    }

    /// Labels every resource carries.
    pub fn labels(&self) -> serde_json::Value {
        serde_json::json!({
            "whatsapp-number": format!("{}{}", self.cfg.country_code, self.cfg.phone_number),
            "managed-by": "whatsapp-provisioner",
        })
    }

    /// The database user's password: read back from Secret Manager, or generated and stored
    /// there first (so a crash after this point cannot lose it).
    pub async fn db_password(&mut self) -> Result<SecretString, StepError> {
        let n = self.names();
        let project = self.cfg.project.clone();
        let existing = self
            .cloud
            .secrets
            .latest(&project, &n.db_password_secret, Some(self.call_deadline()))
            .await
            .map_err(self.google(format!("secret {}", n.db_password_secret)))?;
        if let Some(p) = existing {
            self.report.add(
                "secret",
                &n.db_password_secret,
                crate::report::Action::Exists,
                Some("value kept in Secret Manager".into()),
            );
            return Ok(p);
        }
        if self.dry_run {
            self.report.add(
                "secret",
                &n.db_password_secret,
                crate::report::Action::WouldCreate,
                Some("a generated 32-character password".into()),
            );
            return Ok(SecretString::from(String::new()));
        }
        let password = generate_password(32);
        self.cloud
            .secrets
            .store(
                &project,
                &n.db_password_secret,
                &password,
                &[("managed-by", "whatsapp-provisioner")],
                Some(self.call_deadline()),
            )
            .await
            .map_err(self.google(format!("secret {}", n.db_password_secret)))?;
        self.report.add(
            "secret",
            &n.db_password_secret,
            crate::report::Action::Created,
            Some("value kept in Secret Manager; `provisioner secrets show` reveals it".into()),
        );
        Ok(password)
    }
}

impl Ctx {
    /// The latest value of secret `secret`, or a new `len`-character password, generated and
    /// stored there first (so a crash after this point cannot lose it). `true`: it is new.
    pub async fn stored_or_new_password(
        &mut self,
        secret: &str,
        len: usize,
    ) -> Result<(SecretString, bool), StepError> {
        let project = self.cfg.project.clone();
        let stored = self
            .cloud
            .secrets
            .latest(&project, secret, Some(self.call_deadline()))
            .await
            .map_err(self.google(format!("secret {secret}")))?;
        if let Some(p) = stored {
            return Ok((p, false));
        }
        let p = generate_password(len);
        self.cloud
            .secrets
            .store(
                &project,
                secret,
                &p,
                &[("managed-by", "whatsapp-provisioner")],
                Some(self.call_deadline()),
            )
            .await
            .map_err(self.google(format!("secret {secret}")))?;
        Ok((p, true))
    }
}

/// A password from the operating system's CSPRNG with upper, lower, digit and special
/// characters (each at least once), `len` characters long.
pub fn generate_password(len: usize) -> SecretString {
    use rand::rngs::OsRng;
    use rand::seq::{IndexedRandom, SliceRandom};
    use rand::TryRngCore;
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    // No quote, backslash, `$`, `#` or `%`: the value passes through env files and shells.
    const SPECIAL: &[u8] = b"!*+-.:=?@^_~";
    let mut rng = OsRng.unwrap_err();
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SPECIAL].concat();
    let mut out: Vec<u8> = [UPPER, LOWER, DIGIT, SPECIAL]
        .iter()
        .map(|set| *set.choose(&mut rng).expect("non-empty set"))
        .collect();
    while out.len() < len {
        out.push(*all.choose(&mut rng).expect("non-empty set"));
    }
    out.shuffle(&mut rng);
    SecretString::from(String::from_utf8(out).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_passwords_meet_the_rules() {
        for len in [8, 32, 64] {
            for _ in 0..200 {
                let p = generate_password(len);
                let p = p.expose_secret();
                assert_eq!(p.len(), len);
                assert!(p.bytes().any(|b| b.is_ascii_uppercase()));
                assert!(p.bytes().any(|b| b.is_ascii_lowercase()));
                assert!(p.bytes().any(|b| b.is_ascii_digit()));
                assert!(p.bytes().any(|b| !b.is_ascii_alphanumeric()));
            }
        }
        assert_ne!(
            generate_password(64).expose_secret(),
            generate_password(64).expose_secret()
        );
    }
}
