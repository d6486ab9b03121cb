//! `plan`: what `database` and `vm` would do now, from what already exists. Changes nothing.

use crate::steps::{database, vm, Ctx};
use crate::StepError;

pub async fn run(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.dry_run = true;
    database::run(ctx).await?;
    vm::run(ctx).await?;
    Ok(())
}
