//! The `keepalive` command: parse the command line, read the configuration, build the
//! service, then `serve` or `check`. Everything else is the library (`lib.rs` has the map).

use clap::{Parser, Subcommand};
use keepalive::check::run;
use keepalive::{serve, CheckError, CheckOptions, Config, Service, Target};
use shared::telemetry::{self, Output};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "keepalive",
    version,
    about = "Checks a WhatsApp Business number: an On-Premises client (reset when down) or a Cloud API number (findings, repairs)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Pub/Sub push requests and CloudEvents on 0.0.0.0:$PORT (the default).
    Serve,
    /// Check one tenant now and print the outcome as JSON.
    /// Exit status: 0 nothing to do (healthy, in grace, skipped), 1 something a person should
    /// see (a reset issued or, with --dry-run, due; an alert; a warning; a repair), 2 invalid
    /// input or the check could not be completed.
    Check {
        /// The scheduler payload (JSON) to check; `-` reads standard input.
        #[arg(long, value_name = "FILE|-")]
        payload: String,
        /// Decide, but change nothing: no reset, no repair, no mail, no event.
        #[arg(long)]
        dry_run: bool,
    },
}

/// One thread when the process may use one CPU (a Cloud Run instance deployed with `cpu: 1`):
/// a multi-threaded runtime there still wakes a worker thread for every task the accept loop
/// hands over, CPU spent on nothing else in a burst. Otherwise a worker per CPU.
fn runtime_builder() -> tokio::runtime::Builder {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = !matches!(cli.command, Some(Command::Check { .. }));
    telemetry::init(if serving {
        Output::Stdout
    } else {
        Output::Stderr
    });
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}"), None, !serving),
    };
    let runtime = match runtime_builder().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            return fail(
                &format!("cannot start the async runtime: {e}"),
                None,
                !serving,
            )
        }
    };
    let service = match Service::new(config) {
        Ok(s) => s,
        Err(e) => return fail(&e, None, !serving),
    };
    runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => match serve::serve(Arc::new(service)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve");
                    ExitCode::from(2)
                }
            },
            Some(Command::Check { payload, dry_run }) => {
                run_check(&service, &payload, dry_run).await
            }
        }
    })
}

async fn run_check(service: &Service, source: &str, dry_run: bool) -> ExitCode {
    let bytes = match read_payload(source) {
        Ok(b) => b,
        Err(e) => return fail(&e, None, true),
    };
    let target = match Target::parse(&bytes) {
        Ok(t) => t,
        Err(e) => return fail(&e.to_string(), Some(e.field().unwrap_or("payload")), true),
    };
    match run(service, &target, CheckOptions { dry_run }).await {
        Ok(answer) => {
            answer.log(None);
            match serde_json::to_string(&answer) {
                Ok(s) => println!("{s}"),
                Err(e) => return fail(&format!("cannot print the outcome: {e}"), None, true),
            }
            if answer.wants_attention() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(CheckError::Refused(e)) => fail(&e.to_string(), Some(&e.field), true),
        Err(e) => fail(
            &format!("check of {} could not be completed: {e}", target.label()),
            None,
            true,
        ),
    }
}

/// Exit status 2: the error goes to the log (JSON lines when not on a terminal) and, for
/// `check`, as `{"error": ..., "field": ...}` on standard output where the outcome would be.
fn fail(message: &str, field: Option<&str>, json_on_stdout: bool) -> ExitCode {
    tracing::error!(field = field.unwrap_or(""), "{message}");
    if json_on_stdout {
        let mut v = serde_json::json!({ "error": message });
        if let Some(f) = field {
            v["field"] = serde_json::json!(f);
        }
        println!("{v}");
    }
    ExitCode::from(2)
}

fn read_payload(source: &str) -> Result<Vec<u8>, String> {
    if source == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the payload from standard input: {e}"))?;
        Ok(buf)
    } else {
        let path = PathBuf::from(source);
        std::fs::read(&path)
            .map_err(|e| format!("cannot read the payload file {}: {e}", path.display()))
    }
}
