//! Generated passwords kept in Secret Manager: generated and stored before they are used, so a
//! crash after that point cannot lose one; read back by every later run.

use secrecy::SecretString;
use shared::google::secretmanager::VersionState;

use crate::ensure::{Created, Resource};
use crate::{Provisioner, StepError};

/// The labels of every secret the provisioner stores.
pub const LABELS: [(&str, &str); 1] = [("managed-by", "whatsapp-provisioner")];

/// A secret holding a generated `len`-character password.
pub struct GeneratedPassword {
    pub project: String,
    pub secret: String,
    pub len: usize,
}

impl GeneratedPassword {
    async fn store_new(&self, prov: &Provisioner) -> Result<SecretString, StepError> {
        let password = generate_password(self.len);
        prov.google
            .secrets
            .store(
                &self.project,
                &self.secret,
                &password,
                &LABELS,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(prov.google_failed(self.resource()))?;
        Ok(password)
    }
}

impl Resource for GeneratedPassword {
    type State = SecretString;

    fn kind(&self) -> &'static str {
        "secret"
    }

    fn name(&self) -> &str {
        &self.secret
    }

    fn resource(&self) -> String {
        format!("secret {}", self.secret)
    }

    async fn read(&self, prov: &Provisioner) -> Result<Option<SecretString>, StepError> {
        Ok(read_newest(prov, &self.secret).await?.map(|(_, v)| v))
    }

    fn plan(&self) -> Option<String> {
        Some(format!("a generated {}-character password", self.len))
    }

    /// A secret someone else created meanwhile is adopted by the store: the new version wins.
    async fn create(&self, prov: &Provisioner) -> Result<Created<SecretString>, StepError> {
        Ok(Created::New(self.store_new(prov).await?))
    }

    fn detail(&self, _: &SecretString) -> Option<String> {
        Some("value kept in Secret Manager; `provisioner secrets show` reveals it".into())
    }
}

/// The latest value of secret `secret`, or a new `len`-character password, generated and
/// stored there first. `true`: it is new.
pub async fn stored_or_new(
    prov: &Provisioner,
    secret: &str,
    len: usize,
) -> Result<(SecretString, bool), StepError> {
    let wanted = GeneratedPassword {
        project: prov.cfg.project.clone(),
        secret: secret.to_string(),
        len,
    };
    if let Some(p) = wanted.read(prov).await? {
        return Ok((p, false));
    }
    Ok((wanted.store_new(prov).await?, true))
}

/// The value of the secret's newest version (what `versions/latest` names) and its number;
/// `None` only when the secret does not exist or has no version yet. A newest version that
/// is disabled or destroyed is an error naming the secret and what to do: it is never taken
/// for "no secret yet", so nothing is generated over a password still in use.
pub async fn read_newest(
    prov: &Provisioner,
    secret: &str,
) -> Result<Option<(u64, SecretString)>, StepError> {
    let Some(newest) = versions(prov, secret)
        .await?
        .and_then(|v| v.into_iter().next())
    else {
        return Ok(None);
    };
    if newest.state != "ENABLED" {
        return Err(unusable(secret, newest.number, &newest.state));
    }
    let value = access(prov, secret, newest.number).await?;
    Ok(Some((newest.number, value)))
}

/// The enabled versions' values, newest first (at most `limit`), for finding the one a
/// client accepts.
pub async fn enabled_versions(
    prov: &Provisioner,
    secret: &str,
    limit: usize,
) -> Result<Vec<(u64, SecretString)>, StepError> {
    let versions = versions(prov, secret).await?.unwrap_or_default();
    let mut out = Vec::new();
    for v in versions
        .into_iter()
        .filter(|v| v.state == "ENABLED")
        .take(limit)
    {
        out.push((v.number, access(prov, secret, v.number).await?));
    }
    Ok(out)
}

/// The secret's versions, newest first; `None` when the secret does not exist.
async fn versions(
    prov: &Provisioner,
    secret: &str,
) -> Result<Option<Vec<VersionState>>, StepError> {
    prov.google
        .secrets
        .versions(&prov.cfg.project, secret, Some(prov.call_deadline()))
        .await
        .map_err(prov.google_failed(&format!("secret {secret}")))
}

/// The value of version `number`.
async fn access(prov: &Provisioner, secret: &str, number: u64) -> Result<SecretString, StepError> {
    prov.google
        .secrets
        .access_number(
            &prov.cfg.project,
            secret,
            number,
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(&format!("secret {secret}")))
}

/// Stores `value` as the secret's newest version.
pub async fn store(
    prov: &Provisioner,
    secret: &str,
    value: &SecretString,
) -> Result<(), StepError> {
    prov.google
        .secrets
        .store(
            &prov.cfg.project,
            secret,
            value,
            &LABELS,
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(format!("secret {secret}")))
}

/// The error for a newest version that cannot be read.
fn unusable(secret: &str, number: u64, state: &str) -> StepError {
    let how = if state == "DESTROYED" {
        format!("add the value in use as a new version (`gcloud secrets versions add {secret} --data-file=-`)")
    } else {
        format!("enable it (`gcloud secrets versions enable {number} --secret={secret}`) or add the value in use as a new version")
    };
    StepError::failed(
        format!("secret {secret}"),
        format!(
            "its newest version {number} is {state}, so the value in use cannot be read; {how}, then run the command again (nothing new is generated over a secret that exists)"
        ),
    )
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
