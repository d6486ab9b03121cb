//! `provisioner`: the WhatsApp onboarding runbook as commands.

use clap::{Parser, Subcommand};
use provisioner::config::NumberConfig;
use provisioner::environment::Environment;
use provisioner::steps::{database, keepalive, link, onboard, vm};
use provisioner::{plan, secrets, status, up, Provisioner};
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
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Print one stored password (or list them without NAME).
    Show { name: Option<String> },
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
            Command::Verify { code } => onboard::verify(&prov, code).await,
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
