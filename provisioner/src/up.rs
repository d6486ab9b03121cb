//! `up`: the runbook's steps in order. Stops where a person must act (the registration code)
//! and says how to go on; run again after `verify`, it continues with connect, link and the
//! keepalive.

use shared::whatsapp::HealthState;
use std::path::Path;

use crate::steps::onboard::{self, Registration};
use crate::steps::{database, keepalive, link, vm, Ctx};
use crate::StepError;

pub async fn run(ctx: &mut Ctx, config_dir: &Path) -> Result<(), StepError> {
    database::run(ctx).await?;
    vm::run(ctx).await?;
    if ctx.dry_run {
        onboard::whatsapp(ctx, config_dir).await?;
        keepalive::run(ctx).await?;
        return Ok(());
    }
    // Registered already (a second `up` after `verify`)? Then no new code is requested.
    let registered = !matches!(
        onboard::health(ctx).await?.state(),
        HealthState::Unregistered(_)
    );
    if !registered {
        match onboard::whatsapp(ctx, config_dir).await? {
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
    onboard::connect(ctx).await?;
    let number = format!("{}{}", ctx.cfg.country_code, ctx.cfg.phone_number);
    link::run(&number, None, None)?;
    keepalive::run(ctx).await?;
    println!("up: done");
    Ok(())
}
