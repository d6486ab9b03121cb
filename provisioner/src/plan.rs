//! `plan`: what `database`, `vm` and `keepalive` would do now, from what already exists.
//! Changes nothing.

use crate::steps::{database, keepalive, vm};
use crate::{Provisioner, StepError};

pub async fn run(prov: &mut Provisioner) -> Result<(), StepError> {
    prov.dry_run = true;
    database::run(prov).await?;
    vm::run(prov).await?;
    keepalive::run(prov).await?;
    Ok(())
}
