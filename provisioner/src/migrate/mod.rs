//! `migrate`: an On-Premises number to Meta's Cloud API, with its backup
//! (`provisioner-contract.md`, steps 1 to 8; facts: `meta-cloud-api.md` §7).
//!
//! Each step reads before it acts, so a run after a crash at any point picks up where the
//! last one stopped: the PIN, the backup password and the backup are read back from Secret
//! Manager, and `platform_type` says whether Meta has registered the number. `register` is
//! called only with a backup read from Secret Manager, at most once per run, and never for a
//! number that reads `CLOUD_API` (see [`crate::cloud_api::register`]).

pub mod backup;

use serde_json::Value;

use crate::cloud_api::job::{self, JobChange};
use crate::cloud_api::register::{self, Purpose, Registered};
use crate::cloud_api::secrets::{self, CloudSecrets};
use crate::cloud_api::{connect, describe, digits_of, full_number, Meta};
use crate::report::Action;
use crate::{Provisioner, StepError};

/// The way to the Cloud API without a backup.
pub const OTHER_WAY: &str = "The other way: set platform = \"cloud\" in number.toml, then `provisioner whatsapp` and `provisioner verify --code CODE` register the number afresh on the Cloud API (the WABA keeps its display name, quality rating and templates; the old client's local data is not carried over).";

fn step(n: u8, what: &str) {
    println!("migrate {n}/8: {what}");
}

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let meta = Meta::open(prov, "migrate").await?;
    println!(
        "migrate: {} (phone number id {}) from On-Premises to the Cloud API{}",
        full_number(prov),
        meta.cloud.phone_number_id,
        if prov.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    let names = CloudSecrets::of(prov);

    step(1, "preflight");
    let on_cloud = preflight(prov, &meta, &names).await?;
    if on_cloud {
        println!("  the number reads platform_type CLOUD_API: it is registered on the Cloud API already; steps 2 to 4 are skipped (register is not called)");
    } else {
        step(2, "the two-step PIN");
        let pin = secrets::pin(prov, &names).await?;
        step(3, "the On-Premises backup");
        backup::ensure(prov, &names, OTHER_WAY).await?;
        step(4, "register on the Cloud API with the backup");
        register_with_backup(prov, &meta, &names, pin).await?;
    }

    step(5, "confirm platform_type CLOUD_API");
    if prov.dry_run && !on_cloud {
        prov.report.add(
            "platform",
            &meta.cloud.phone_number_id,
            Action::WouldUpdate("ON_PREMISE → CLOUD_API (read until it does, bounded)".into()),
            None,
        );
    } else {
        register::confirm_cloud_api(prov, &meta).await?;
        println!("  platform_type CLOUD_API: Meta moved the number; the On-Premises client is disconnected");
    }

    step(6, "connect");
    connect::run_with(prov, &meta).await?;

    step(7, "the keepalive job");
    let job = job::rewrite(prov).await?;
    if job == JobChange::Missing {
        println!("  this number has no keepalive job: run `provisioner keepalive` once platform = \"cloud\" is set");
    }

    step(8, "next steps");
    next_steps(prov, job);
    Ok(())
}

/// Step 1: the Graph API knows `cloud.phone_number_id` as this number, in `cloud.waba_id`.
/// `true`: it reads `CLOUD_API` already.
async fn preflight(
    prov: &Provisioner,
    meta: &Meta,
    names: &CloudSecrets,
) -> Result<bool, StepError> {
    let c = &meta.cloud;
    let n = meta.number(prov).await?;
    println!("  {}", describe(&n));
    let want = format!("{}{}", prov.cfg.country_code, prov.cfg.phone_number);
    let got = digits_of(n.display_phone_number.as_deref().unwrap_or(""));
    if got != want {
        return Err(StepError::Config(format!(
            "`cloud.phone_number_id` {} is the number +{got}, not +{want} (country_code + phone_number): fix number.toml",
            c.phone_number_id
        )));
    }
    if !waba_lists(prov, meta).await? {
        return Err(StepError::Config(format!(
            "`cloud.waba_id` {} does not list phone number {} among its numbers: fix number.toml",
            c.waba_id, c.phone_number_id
        )));
    }
    match n.platform_type.as_deref() {
        Some("CLOUD_API") => Ok(true),
        Some("ON_PREMISE") => Ok(false),
        other => {
            // Neither platform: only a migration stopped after its backup may go on (Meta
            // may show this between a refused register and the next attempt).
            if backup::stored(prov, names).await?.is_some() {
                println!(
                    "  platform_type {}: a backup from an earlier run is stored; going on",
                    other.unwrap_or("not said")
                );
                return Ok(false);
            }
            Err(StepError::failed(
                format!("phone number {}", c.phone_number_id),
                format!(
                    "reads platform_type {}: it is registered on neither platform, so there is nothing to migrate. {OTHER_WAY}",
                    other.unwrap_or("(not said)")
                ),
            ))
        }
    }
}

/// Whether `GET /{waba_id}/phone_numbers` lists the number (pages followed, bounded).
async fn waba_lists(prov: &Provisioner, meta: &Meta) -> Result<bool, StepError> {
    let c = &meta.cloud;
    let mut after: Option<String> = None;
    for _ in 0..20 {
        let mut query = vec![("fields", "id"), ("limit", "100")];
        if let Some(a) = after.as_deref() {
            query.push(("after", a));
        }
        let page: Value = meta
            .graph
            .read(
                &meta.token,
                &[&c.waba_id, "phone_numbers"],
                &query,
                Some(prov.call_deadline()),
            )
            .await
            .map_err(|e| meta.failed(prov, &format!("phone numbers of WABA {}", c.waba_id), e))?;
        let ids = page["data"].as_array().cloned().unwrap_or_default();
        if ids.iter().any(|d| {
            d["id"].as_str() == Some(c.phone_number_id.as_str())
                || d["id"].as_u64().map(|i| i.to_string()).as_deref()
                    == Some(c.phone_number_id.as_str())
        }) {
            return Ok(true);
        }
        match (
            page["paging"]["next"].as_str(),
            page["paging"]["cursors"]["after"].as_str(),
        ) {
            (Some(_), Some(a)) => after = Some(a.to_string()),
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Step 4: register with the PIN and the backup, both as Secret Manager holds them.
async fn register_with_backup(
    prov: &Provisioner,
    meta: &Meta,
    names: &CloudSecrets,
    pin: Option<secrecy::SecretString>,
) -> Result<(), StepError> {
    let id = meta.cloud.phone_number_id.clone();
    let (Some(pin), false) = (pin, prov.dry_run) else {
        prov.report.add(
            "registration",
            &id,
            Action::WouldCreate,
            Some(format!(
                "register with the PIN in {} and the backup in {}",
                names.pin, names.backup
            )),
        );
        return Ok(());
    };
    // Never without a backup in Secret Manager: read back just now, and that is what is sent.
    let Some(stored) = backup::stored(prov, names).await? else {
        return Err(StepError::failed(
            format!("register of {id}"),
            format!("no backup in Secret Manager ({} and {}): register is never called without one. Run `provisioner migrate` again. {OTHER_WAY}", names.backup, names.backup_password),
        ));
    };
    let outcome =
        register::register_once(prov, meta, &pin, Some(&stored), Purpose::Migration).await?;
    match outcome {
        Registered::Already => println!("  the number reads CLOUD_API already: register was not called"),
        Registered::Now => prov.report.add(
            "registration",
            &id,
            Action::Created,
            Some("with the On-Premises backup; Meta now disconnects the On-Premises client".into()),
        ),
        Registered::AnswerLost => println!("  register's answer was lost: it is not sent again; reading platform_type to see whether Meta moved the number"),
        Registered::SentBefore(record) => println!("  register was sent by an earlier run ({record}): it is not sent again; reading platform_type to see whether Meta moved the number"),
    }
    Ok(())
}

fn next_steps(prov: &Provisioner, job: JobChange) {
    let vm = prov.names().vm;
    let c = &prov.cfg.cloud;
    if prov.dry_run {
        println!("  after a real run: set platform = \"cloud\", check LoyJoy, then `provisioner decommission`");
        return;
    }
    println!();
    println!("migrate: done. What changed:");
    println!("  - the number is on the Cloud API (phone number id {}); Meta disconnected the On-Premises client on VM {vm}: it no longer sends or receives", c.phone_number_id);
    println!(
        "  - the app is subscribed to WABA {} and the number's webhooks go to {}",
        c.waba_id, c.webhook_url
    );
    match job {
        JobChange::Missing => println!("  - there was no keepalive job to switch"),
        _ => println!("  - the keepalive job checks the Cloud API number now; it no longer checks or resets VM {vm}"),
    }
    println!("Next:");
    println!("  1. set platform = \"cloud\" in number.toml (then `provisioner status` shows the number on the Cloud API{})", if job == JobChange::Missing { ", and `provisioner keepalive` sets up its check" } else { "" });
    println!("  2. in LoyJoy, switch the channel to the Cloud API with the values above, and send a test message both ways");
    println!("  3. once all is well: `provisioner decommission` removes the VM, its firewall rule and address, and the Cloud SQL instance (after a backup that outlives it); the admin password, the PIN and the backup stay in Secret Manager");
}
