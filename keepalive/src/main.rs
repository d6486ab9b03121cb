//! `keepalive`: keeps self-hosted WhatsApp Business API clients alive.
//!
//! The path of one message: `serve.rs` (HTTP, decode) → `check.rs` (observe the client with
//! retries) → `decide.rs` (what to do) → `guard.rs` (one reset per VM per grace window) →
//! Compute Engine reset → `notify.rs` (mail). `check` runs the same path once, in the
//! foreground.

mod check;
#[allow(dead_code)]
mod cloud;
mod config;
mod decide;
mod events;
mod guard;
mod notify;
mod serve;

use clap::{Parser, Subcommand};
use shared::payload::Payload;
use shared::telemetry::{self, Output};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use check::{CheckOptions, Checker, Outcome};
use decide::Verdict;

#[derive(Parser)]
#[command(
    name = "keepalive",
    version,
    about = "Health-checks a WhatsApp Business API client and resets its VM when it is down"
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
    /// Exit status: 0 nothing to do, 1 found down (reset issued or, with --dry-run, due) or
    /// alert, 2 invalid input or the check could not be completed.
    Check {
        /// The scheduler payload (JSON) to check; `-` reads standard input.
        #[arg(long, value_name = "FILE|-")]
        payload: String,
        /// Decide, but never call a mutating Compute Engine method.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = !matches!(cli.command, Some(Command::Check { .. }));
    telemetry::init(if serving {
        Output::Stdout
    } else {
        Output::Stderr
    });
    let config = match config::Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&format!("invalid configuration: {e}"), None, !serving),
    };
    if config.worst_case_health_time() >= config.deadline {
        tracing::warn!(
            worst_case_ms = config.worst_case_health_time().as_millis() as u64,
            deadline_s = config.deadline.as_secs(),
            "KEEPALIVE_ATTEMPTS × 2 × KEEPALIVE_REQUEST_TIMEOUT_MS + the retry delays may exceed KEEPALIVE_DEADLINE_S: a slow client may be answered 503 instead of reset"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                &format!("cannot start the async runtime: {e}"),
                None,
                !serving,
            )
        }
    };
    let checker = match Checker::new(config) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(&e, None, !serving),
    };
    runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => match serve::serve(checker).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve");
                    ExitCode::from(2)
                }
            },
            Some(Command::Check { payload, dry_run }) => {
                run_check(&checker, &payload, dry_run).await
            }
        }
    })
}

async fn run_check(checker: &Checker, source: &str, dry_run: bool) -> ExitCode {
    let bytes = match read_payload(source) {
        Ok(b) => b,
        Err(e) => return fail(&e, None, true),
    };
    let payload = match Payload::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string(), Some(e.field().unwrap_or("payload")), true),
    };
    match checker.check(&payload, CheckOptions { dry_run }).await {
        Ok(outcome) => {
            log_outcome(&outcome, None);
            match serde_json::to_string(&outcome) {
                Ok(s) => println!("{s}"),
                Err(e) => return fail(&format!("cannot print the outcome: {e}"), None, true),
            }
            match outcome.verdict {
                Verdict::Healthy | Verdict::Grace | Verdict::Skipped => ExitCode::SUCCESS,
                Verdict::Reset | Verdict::Alert => ExitCode::from(1),
            }
        }
        Err(e) => fail(
            &format!("check of {} could not be completed: {e}", payload.vm),
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

/// One log line per handled message, at a severity that matches the verdict.
pub(crate) fn log_outcome(o: &Outcome, message_id: Option<&str>) {
    let project = o.project.as_deref().unwrap_or("");
    let message_id = message_id.unwrap_or("");
    let verdict = o.verdict.as_str();
    match o.verdict {
        Verdict::Healthy | Verdict::Grace | Verdict::Skipped => tracing::info!(
            vm = %o.vm, zone = %o.zone, project, verdict, reason = %o.reason, attempts = o.attempts,
            duration_ms = o.duration_ms, message_id, "check done"
        ),
        Verdict::Reset => tracing::warn!(
            vm = %o.vm, zone = %o.zone, project, verdict, reason = %o.reason, attempts = o.attempts,
            operation = o.operation.as_deref().unwrap_or(""), dry_run = o.dry_run,
            duration_ms = o.duration_ms, message_id, "check done: VM reset"
        ),
        Verdict::Alert => tracing::error!(
            vm = %o.vm, zone = %o.zone, project, verdict, reason = %o.reason, attempts = o.attempts,
            duration_ms = o.duration_ms, message_id, "check done: needs a person"
        ),
    }
}
