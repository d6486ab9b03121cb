//! `secrets show [NAME]`: the one command that prints a stored password, on purpose.

use secrecy::ExposeSecret;

use crate::resources::secret::read_newest;
use crate::{Provisioner, StepError};

/// The short names a person types, and the secrets they stand for.
pub fn known(prov: &Provisioner) -> Vec<(&'static str, String, &'static str)> {
    let n = prov.names();
    vec![
        (
            "db-password",
            n.db_password_secret,
            "the database user's password",
        ),
        (
            "admin-password",
            n.admin_password_secret,
            "the WhatsApp client's admin password",
        ),
        (
            "api-password",
            n.api_password_secret,
            "the LoyJoy API user's password",
        ),
    ]
}

pub async fn show(prov: &Provisioner, name: Option<&str>) -> Result<(), StepError> {
    let all = known(prov);
    let Some(name) = name else {
        for (short, secret, what) in &all {
            let stored = read_newest(prov, secret).await?.is_some();
            println!(
                "  {short:<16} {what:<40} {}",
                if stored { "stored" } else { "not stored yet" }
            );
        }
        println!("  `provisioner secrets show NAME` prints one");
        return Ok(());
    };
    let Some((_, secret, _)) = all.iter().find(|(s, full, _)| *s == name || full == name) else {
        let names: Vec<&str> = all.iter().map(|(s, _, _)| *s).collect();
        return Err(StepError::Config(format!(
            "unknown secret {name:?}: one of {}",
            names.join(", ")
        )));
    };
    let (_, value) = read_newest(prov, secret)
        .await?
        .ok_or_else(|| StepError::failed(format!("secret {secret}"), "is not stored yet"))?;
    println!("{}", value.expose_secret());
    Ok(())
}
