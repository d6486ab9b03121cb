//! `plan`: what `database`, `vm` and `keepalive` would do now, from what already exists.
//! Changes nothing.

use crate::steps::{database, keepalive, vm, Ctx};
use crate::StepError;

pub async fn run(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.dry_run = true;
    database::run(ctx).await?;
    vm::run(ctx).await?;
    keepalive::run(ctx).await?;
    Ok(())
}
