//! `up`: the runbook's steps in order. Stops where a person must act (the registration code)
//! and says how to go on; run again after `verify`, it continues with connect, link and the
//! keepalive.

use shared::whatsapp::HealthState;
use std::path::Path;

use crate::steps::onboard::{self, Registration};
use crate::steps::{database, keepalive, link, vm};
use crate::{Provisioner, StepError};

pub async fn run(prov: &Provisioner, config_dir: &Path) -> Result<(), StepError> {
    database::run(prov).await?;
    vm::run(prov).await?;
    if prov.dry_run {
        onboard::whatsapp(prov, config_dir).await?;
        keepalive::run(prov).await?;
        return Ok(());
    }
    // Registered already (a second `up` after `verify`)? Then no new code is requested.
    let registered = !matches!(
        onboard::health(prov).await?.state(),
        HealthState::Unregistered(_)
    );
    if !registered {
        match onboard::whatsapp(prov, config_dir).await? {
            Registration::CodeSent { .. } => {
                println!();
                println!("up: stopped for the registration code.");
                println!("  1. `provisioner verify --code <the 6 digits>`");
                println!(
                    "  2. `provisioner up` again: it continues with connect, link and keepalive"
                );
                return Ok(());
            }
            Registration::Registered | Registration::Planned => {}
        }
    }
    onboard::connect(prov).await?;
    let number = format!("{}{}", prov.cfg.country_code, prov.cfg.phone_number);
    link::run(&number, None, None)?;
    keepalive::run(prov).await?;
    println!("up: done");
    Ok(())
}
