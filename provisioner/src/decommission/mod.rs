//! `decommission`: removes the On-Premises installation of a number that has moved to the
//! Cloud API (`provisioner-contract.md`).
//!
//! Refused unless the Graph API reads `platform_type` `CLOUD_API` for the number (it lives
//! on), or `--abandon`. On a terminal the number must be typed, unless `--yes`; without a
//! terminal `--yes` is required (exit 2). Then, each step reading before it acts so that a
//! run after a crash picks up where the last stopped: the keepalive job while it still has
//! the On-Premises payload, the VM, its firewall rule, the static address, the Cloud SQL
//! instance after a backup that outlives it, and the versions of the database and API
//! passwords. The admin password, the PIN and the backup are kept.

mod compute;
mod database;
mod secrets;

use std::io::{BufRead, IsTerminal, Write};

use crate::cloud_api::{describe, full_number, Meta};
use crate::{Provisioner, StepError};

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Go on although the number does not read `CLOUD_API`.
    pub abandon: bool,
    /// Do not ask for the number to be typed.
    pub yes: bool,
}

pub async fn run(prov: &Provisioner, options: Options) -> Result<(), StepError> {
    println!(
        "decommission: the On-Premises installation of {} in project {}{}",
        full_number(prov),
        prov.cfg.project,
        if prov.dry_run {
            " (dry run: nothing is removed)"
        } else {
            ""
        }
    );
    lives_on(prov, options.abandon).await?;
    if !prov.dry_run && !options.yes {
        confirm(prov)?;
    }
    compute::keepalive_job(prov).await?;
    compute::vm(prov).await?;
    compute::firewall(prov).await?;
    compute::address(prov).await?;
    database::run(prov).await?;
    secrets::run(prov).await?;
    if !prov.dry_run {
        println!("decommission: done. Kept in Secret Manager: the admin password, the two-step PIN, the On-Premises backup and its password.");
    }
    Ok(())
}

/// The number must read `CLOUD_API` (it lives on there), unless `abandon`.
async fn lives_on(prov: &Provisioner, abandon: bool) -> Result<(), StepError> {
    if abandon {
        println!("  --abandon: the number's platform is not checked; whatever it reads, its On-Premises installation goes");
        return Ok(());
    }
    let meta = Meta::open(
        prov,
        "decommission (to check that the number lives on the Cloud API; --abandon skips the check)",
    )
    .await?;
    let n = meta.number(prov).await?;
    println!("  {}", describe(&n));
    if n.is_cloud_api() {
        return Ok(());
    }
    Err(StepError::failed(
        format!("phone number {}", meta.cloud.phone_number_id),
        format!(
            "reads platform_type {}, not CLOUD_API: its On-Premises installation is what keeps it, so nothing is removed. Move it first (`provisioner migrate`); to give the number up instead, run `provisioner decommission --abandon`",
            n.platform_type.as_deref().unwrap_or("(not said)")
        ),
    ))
}

/// On a terminal, the number typed back; elsewhere `--yes` is required.
fn confirm(prov: &Provisioner) -> Result<(), StepError> {
    let number = full_number(prov);
    if !std::io::stdin().is_terminal() {
        return Err(StepError::Config(format!(
            "`--yes` is required when standard input is not a terminal: decommission removes the VM and the Cloud SQL instance of {number}"
        )));
    }
    eprint!(
        "This removes the VM {}, its firewall rule and static address, and the Cloud SQL instance {} (after a backup).\nType the number ({number}) to go on: ",
        prov.names().vm,
        prov.names().sql_instance
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| StepError::Config(format!("cannot read the confirmation: {e}")))?;
    let typed: String = line.chars().filter(char::is_ascii_digit).collect();
    if typed != number[1..] {
        return Err(StepError::Config(
            "the number typed does not match: nothing was removed".into(),
        ));
    }
    Ok(())
}
