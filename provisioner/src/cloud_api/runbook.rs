//! The runbook of a Cloud API number: `whatsapp` (the code), `verify` (the code, then
//! register with the PIN), and `up` / `plan` (everything in order).

use secrecy::SecretString;
use shared::graph::CodeMethod;

use super::register::{self, Purpose, Registered};
use super::secrets::{self, CloudSecrets};
use super::{connect, describe, full_number, Meta};
use crate::report::Action;
use crate::steps::{keepalive, link};
use crate::Provisioner;
use crate::StepError;

/// What `whatsapp` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRequest {
    /// A code is on its way: `verify` is next.
    Sent,
    /// On the Cloud API already: no code needed.
    NotNeeded,
    /// `--dry-run`.
    Planned,
}

/// `whatsapp` on a Cloud API number: requests the registration code, unless the number is
/// registered on the Cloud API already.
pub async fn whatsapp(prov: &Provisioner) -> Result<CodeRequest, StepError> {
    println!("whatsapp: {} on the Cloud API", full_number(prov));
    let meta = Meta::open(prov, "platform = \"cloud\"").await?;
    let n = meta.number(prov).await?;
    println!("  {}", describe(&n));
    if n.is_cloud_api() {
        let state = if n.is_connected() {
            "registered on the Cloud API and CONNECTED"
        } else {
            "registered on the Cloud API (see `provisioner status` for its state)"
        };
        println!("  {state}: no code is needed; next: `provisioner connect`");
        return Ok(CodeRequest::NotNeeded);
    }
    if n.platform_type.as_deref() == Some("ON_PREMISE") {
        println!("  note: this number is registered on the On-Premises API; registering it here afresh moves it without its On-Premises data. `provisioner migrate` (with platform = \"onprem\") moves it with its backup.");
    }
    let method = match prov.cfg.whatsapp.method.as_str() {
        "voice" => CodeMethod::Voice,
        _ => CodeMethod::Sms,
    };
    let id = meta.cloud.phone_number_id.clone();
    if prov.dry_run {
        prov.report.add(
            "registration code",
            &id,
            Action::WouldCreate,
            Some(format!("requested by {}", method.as_str())),
        );
        return Ok(CodeRequest::Planned);
    }
    meta.graph
        .request_code(
            &meta.token,
            &id,
            method,
            "en_US",
            Some(prov.call_deadline()),
        )
        .await
        .map_err(|e| meta.failed(prov, &format!("POST {id}/request_code"), e))?;
    println!(
        "  a registration code is on its way by {} to {}",
        if method == CodeMethod::Voice {
            "voice call"
        } else {
            "SMS"
        },
        full_number(prov)
    );
    println!("  next: `provisioner verify --code <the 6 digits>`");
    Ok(CodeRequest::Sent)
}

/// `verify --code` on a Cloud API number: verifies the code, then registers with the
/// two-step PIN (stored, or generated and stored first). Nothing is sent for a number that
/// is on the Cloud API already.
pub async fn verify(prov: &Provisioner, code: SecretString) -> Result<(), StepError> {
    println!("verify: {} on the Cloud API", full_number(prov));
    let meta = Meta::open(prov, "platform = \"cloud\"").await?;
    let n = meta.number(prov).await?;
    println!("  {}", describe(&n));
    if n.is_cloud_api() {
        println!("  registered on the Cloud API already: nothing to verify or register; next: `provisioner connect`");
        return Ok(());
    }
    let id = meta.cloud.phone_number_id.clone();
    let names = CloudSecrets::of(prov);
    if prov.dry_run {
        prov.report
            .add("verification", &id, Action::WouldCreate, None);
        secrets::pin(prov, &names).await?;
        prov.report.add(
            "registration",
            &id,
            Action::WouldCreate,
            Some("register with the stored PIN".into()),
        );
        return Ok(());
    }
    // The PIN first: one that cannot be read stops the run before anything is sent.
    let pin = secrets::pin(prov, &names)
        .await?
        .ok_or_else(|| StepError::failed("two-step PIN", "not stored"))?;
    match meta
        .graph
        .verify_code(&meta.token, &id, &code, Some(prov.call_deadline()))
        .await
    {
        Ok(()) => prov.report.add("verification", &id, Action::Created, None),
        // "Already verified" (a second verify after a crash before register): go on.
        Err(e) if e.code() == Some(136024) => {
            prov.report.add("verification", &id, Action::Exists, None)
        }
        Err(e) => {
            return Err(StepError::failed(
                format!("POST {id}/verify_code"),
                format!("{e}\n  nothing was registered: check the code (or ask for a new one with `provisioner whatsapp`) and run `provisioner verify --code CODE` again"),
            ))
        }
    }
    match register::register_once(prov, &meta, &pin, None, Purpose::Fresh).await? {
        Registered::Already => println!("  on the Cloud API already: register was not called"),
        Registered::Now => prov.report.add(
            "registration",
            &id,
            Action::Created,
            Some(format!("two-step PIN from {}", names.pin)),
        ),
        Registered::AnswerLost => println!("  register's answer was lost: reading platform_type to see whether Meta registered the number"),
        Registered::SentBefore(record) => println!("  register was sent by an earlier run ({record}): it is not sent again; reading platform_type to see whether Meta registered the number"),
    }
    register::confirm_cloud_api(prov, &meta).await?;
    println!("  registered on the Cloud API; next: `provisioner connect`");
    Ok(())
}

/// `up` on a Cloud API number: whatsapp (or skip), connect, link, keepalive; stops where the
/// registration code is needed.
pub async fn up(prov: &Provisioner) -> Result<(), StepError> {
    match whatsapp(prov).await? {
        CodeRequest::Sent => {
            println!();
            println!("up: stopped for the registration code.");
            println!("  1. `provisioner verify --code <the 6 digits>`");
            println!("  2. `provisioner up` again: it continues with connect, link and keepalive");
            return Ok(());
        }
        CodeRequest::NotNeeded | CodeRequest::Planned => {}
    }
    connect::run(prov).await?;
    link::run(&full_number(prov)[1..], None, None)?;
    keepalive::run(prov).await?;
    println!("up: done");
    Ok(())
}

/// `plan` on a Cloud API number: what `up` would do now.
pub async fn plan(prov: &mut Provisioner) -> Result<(), StepError> {
    prov.dry_run = true;
    whatsapp(prov).await?;
    connect::run(prov).await?;
    keepalive::run(prov).await?;
    Ok(())
}
