//! `provisioner`: the WhatsApp onboarding runbook as commands.

use clap::{Parser, Subcommand};
use provisioner::config::{NumberConfig, Platform};
use provisioner::environment::Environment;
use provisioner::steps::{database, keepalive, link, onboard, vm};
use provisioner::{cloud_api, decommission, migrate, plan, secrets, status, up, Provisioner};
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
    Database {
        /// Give the existing database user a new generated password (kept in Secret Manager)
        /// and write it into the VM's metadata (`WA_DB_PASSWORD`).
        #[arg(long)]
        rotate_password: bool,
    },
    /// Step 2: static address, firewall rule, the VM that runs the WhatsApp containers.
    Vm,
    /// What `database`, `vm` and `keepalive` would do now.
    Plan,
    /// What exists for this number and whether the WhatsApp client answers.
    Status,
    /// Step 3: first login (sets a generated admin password) and the registration request.
    Whatsapp,
    /// Step 3: verify the number with the code received by SMS or voice.
    Verify {
        /// The registration code; asked for on a terminal when absent.
        #[arg(long)]
        code: Option<String>,
        /// Cloud API: send register even though an earlier run sent it less than 72 hours
        /// ago (Meta may still carry that call out; it allows 10 in 72 hours).
        #[arg(long)]
        register_again: bool,
    },
    /// Step 4: the LoyJoy webhook and the API user.
    Connect,
    /// Step 5: the click-to-chat links and their QR code.
    Link {
        /// Text the chat starts with.
        #[arg(long)]
        text: Option<String>,
        /// Also write the QR code as a PNG file.
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
    },
    /// Step 6: Pub/Sub topics, the Cloud Run keepalive service, its push subscription, and
    /// this number's Cloud Scheduler job.
    Keepalive,
    /// Show a stored password on purpose (db-password, admin-password, api-password); without
    /// NAME, list which are stored.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Steps 1 to 6 in order; stops when a registration code must be entered.
    Up,
    /// Moves this On-Premises number to Meta's Cloud API, with its backup (needs [cloud]).
    Migrate {
        /// Send register even though an earlier run sent it less than 72 hours ago (Meta may
        /// still carry that call out; it allows 10 in 72 hours).
        #[arg(long)]
        register_again: bool,
    },
    /// Removes the On-Premises installation of a number that moved to the Cloud API: its
    /// keepalive job, VM, firewall rule, static address and Cloud SQL instance (after a
    /// backup that outlives it).
    Decommission {
        /// Remove it even though the number does not read CLOUD_API (the number is given up).
        #[arg(long)]
        abandon: bool,
        /// Do not ask for the number to be typed.
        #[arg(long)]
        yes: bool,
    },
    /// One Cloud Scheduler job per project, region and access token for all the Cloud API
    /// numbers whose number.toml is under DIR (instead of one job each); their own jobs are
    /// deleted once it is in place. On-Premises numbers keep their own jobs. Ignores --config.
    Fleet {
        /// The directory holding the numbers' number.toml files (subdirectories included).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Print one stored password (or list them without NAME).
    Show { name: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::telemetry::init(shared::telemetry::Output::Stderr);
    if let Command::Fleet { dir } = &cli.command {
        return fleet(dir, cli.dry_run);
    }
    let cfg = match NumberConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("provisioner: {e}");
            return ExitCode::from(2);
        }
    };
    let env = match Environment::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("provisioner: {e}");
            return ExitCode::from(2);
        }
    };
    let (name, dry_run) = match &cli.command {
        Command::Database { .. } => ("database", cli.dry_run),
        Command::Vm => ("vm", cli.dry_run),
        Command::Plan => ("plan", true),
        Command::Status => ("status", cli.dry_run),
        Command::Whatsapp => ("whatsapp", cli.dry_run),
        Command::Verify { .. } => ("verify", cli.dry_run),
        Command::Connect => ("connect", cli.dry_run),
        Command::Link { .. } => ("link", cli.dry_run),
        Command::Keepalive => ("keepalive", cli.dry_run),
        Command::Secrets { .. } => ("secrets show", false),
        Command::Up => ("up", cli.dry_run),
        Command::Migrate { .. } => ("migrate", cli.dry_run),
        Command::Decommission { .. } => ("decommission", cli.dry_run),
        Command::Fleet { .. } => unreachable!("handled before the configuration is read"),
    };
    let config_dir = cli
        .config
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let mut prov = match Provisioner::new(cfg, env, name, dry_run) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("provisioner: {e}");
            return ExitCode::from(2);
        }
    };
    prov.register_again = matches!(
        cli.command,
        Command::Verify {
            register_again: true,
            ..
        } | Command::Migrate {
            register_again: true
        }
    );
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let cloud_api = prov.cfg.platform == Platform::Cloud;
    if cloud_api && matches!(cli.command, Command::Database { .. } | Command::Vm) {
        eprintln!(
            "provisioner {name}: `platform` is \"cloud\" in {}: a Cloud API number has no {} (Meta hosts it); its steps are whatsapp, verify, connect, link, keepalive",
            cli.config.display(),
            if name == "vm" { "VM" } else { "database" }
        );
        return ExitCode::from(2);
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Whatsapp if cloud_api => cloud_api::runbook::whatsapp(&prov).await.map(|_| ()),
            Command::Verify { code, .. } if cloud_api => match onboard::registration_code(code) {
                Ok(code) => cloud_api::runbook::verify(&prov, code.into()).await,
                Err(e) => Err(e),
            },
            Command::Connect if cloud_api => cloud_api::connect::run(&prov).await,
            Command::Status if cloud_api => cloud_api::status::run(&prov).await,
            Command::Up if cloud_api => cloud_api::runbook::up(&prov).await,
            Command::Plan if cloud_api => cloud_api::runbook::plan(&mut prov).await,
            Command::Migrate { .. } => migrate::run(&prov).await,
            Command::Decommission { abandon, yes } => {
                decommission::run(&prov, decommission::Options { abandon, yes }).await
            }
            Command::Database { rotate_password } => {
                database::run(&prov).await?;
                if rotate_password {
                    database::rotate_password(&prov).await?;
                }
                Ok(())
            }
            Command::Vm => vm::run(&prov).await,
            Command::Plan => plan::run(&mut prov).await,
            Command::Status => status::run(&prov).await,
            Command::Whatsapp => onboard::whatsapp(&prov, &config_dir).await.map(|_| ()),
            Command::Verify { code, .. } => onboard::verify(&prov, code).await,
            Command::Connect => onboard::connect(&prov).await,
            Command::Link { text, png } => {
                let number = format!("{}{}", prov.cfg.country_code, prov.cfg.phone_number);
                link::run(&number, text.as_deref(), png.as_deref())
            }
            Command::Keepalive => keepalive::run(&prov).await,
            Command::Secrets {
                action: SecretsAction::Show { name },
            } => secrets::show(&prov, name.as_deref()).await,
            Command::Up => up::run(&prov, &config_dir).await,
            Command::Fleet { .. } => unreachable!("handled before the configuration is read"),
        }
    });
    if let Err(e) = result {
        if let provisioner::StepError::Config(message) = &e {
            eprintln!("provisioner {name}: {message}");
            return ExitCode::from(2);
        }
        eprintln!("provisioner {name}: failed: {e}");
        return ExitCode::from(1);
    }
    if prov.dry_run && name != "status" {
        println!("dry run: nothing was changed");
    }
    let diffs = prov.report.differences();
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

/// The multi-threaded runtime the commands run on; exit status 1 when it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("provisioner: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// `provisioner fleet --dir DIR`: many numbers, so no `--config`.
fn fleet(dir: &std::path::Path, dry_run: bool) -> ExitCode {
    let env = match Environment::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("provisioner: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(provisioner::fleet::run(dir, &env, dry_run)) {
        Err(provisioner::StepError::Config(message)) => {
            eprintln!("provisioner fleet: {message}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("provisioner fleet: failed: {e}");
            ExitCode::from(1)
        }
        Ok(outcome) => {
            if dry_run {
                println!("dry run: nothing was changed");
            }
            if outcome.differences > 0 {
                eprintln!(
                    "provisioner fleet: {} resource(s) exist with settings that differ from the numbers' files; the provisioner does not change them silently. Fix them and run `provisioner fleet` again.",
                    outcome.differences
                );
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
    }
}
