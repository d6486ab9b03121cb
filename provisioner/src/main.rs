//! `provisioner`: the WhatsApp onboarding runbook as commands.

use clap::{Parser, Subcommand};
use provisioner::cloud::Cloud;
use provisioner::config::NumberConfig;
use provisioner::report::Report;
use provisioner::steps::{database, vm, Ctx};
use provisioner::{plan, status};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "provisioner",
    version,
    about = "Sets up a self-hosted WhatsApp Business API number on Google Cloud, step by step"
)]
struct Cli {
    /// The number's configuration.
    #[arg(
        long,
        global = true,
        default_value = "./number.toml",
        value_name = "FILE"
    )]
    config: PathBuf,
    /// Print what would be created or changed; change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Step 1: the Cloud SQL for PostgreSQL instance, its user and password.
    Database,
    /// Step 2: static address, firewall rule, the VM that runs the WhatsApp containers.
    Vm,
    /// What `database` and `vm` would do now.
    Plan,
    /// What exists for this number and whether the WhatsApp client answers.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::telemetry::init(shared::telemetry::Output::Stderr);
    let cfg = match NumberConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("provisioner: {e}");
            return ExitCode::from(2);
        }
    };
    let cloud = match Cloud::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("provisioner: {e}");
            return ExitCode::from(2);
        }
    };
    let (name, dry_run) = match cli.command {
        Command::Database => ("database", cli.dry_run),
        Command::Vm => ("vm", cli.dry_run),
        Command::Plan => ("plan", true),
        Command::Status => ("status", cli.dry_run),
    };
    let mut ctx = Ctx {
        cfg,
        cloud,
        dry_run,
        report: Report::default(),
        command: name,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("provisioner: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Database => database::run(&mut ctx).await,
            Command::Vm => vm::run(&mut ctx).await,
            Command::Plan => plan::run(&mut ctx).await,
            Command::Status => status::run(&mut ctx).await,
        }
    });
    if let Err(e) = result {
        eprintln!("provisioner {name}: failed: {e}");
        return ExitCode::from(1);
    }
    if ctx.dry_run && name != "status" {
        println!("dry run: nothing was changed");
    }
    let diffs = ctx.report.differences();
    if !diffs.is_empty() && name != "plan" {
        eprintln!(
            "provisioner {name}: {} resource(s) exist with settings that differ from {}; the provisioner does not change them silently. Fix them (or number.toml) and run `provisioner {name}` again.",
            diffs.len(),
            cli.config.display()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
