//! Logging: Cloud Logging structured JSON (one object per line, `severity`, `message`,
//! fields) when the output is not a terminal, readable text when it is.
//!
//! The filter comes from `RUST_LOG` (default `info`). The HTTP stack's own targets are held
//! at `warn` whatever `RUST_LOG` says, so no debug line of theirs can carry a header.

use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

const QUIET_TARGETS: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tower",
    "tower_http",
    "gcp_auth",
    "lettre",
];

fn filter() -> EnvFilter {
    let mut f = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for t in QUIET_TARGETS {
        if let Ok(d) = format!("{t}=warn").parse() {
            f = f.add_directive(d);
        }
    }
    f
}

/// Installs the global subscriber. JSON unless the output is a terminal; `KEEPALIVE_LOG_FORMAT`
/// (`json` or `text`) overrides the choice.
pub fn init(output: Output) {
    let is_tty = match output {
        Output::Stdout => std::io::stdout().is_terminal(),
        Output::Stderr => std::io::stderr().is_terminal(),
    };
    let json = match std::env::var("KEEPALIVE_LOG_FORMAT").ok().as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => !is_tty,
    };
    let registry = tracing_subscriber::registry().with(filter());
    let result = match (json, output) {
        (true, Output::Stdout) => registry
            .with(tracing_stackdriver::layer().with_writer(std::io::stdout))
            .try_init(),
        (true, Output::Stderr) => registry
            .with(tracing_stackdriver::layer().with_writer(std::io::stderr))
            .try_init(),
        (false, Output::Stdout) => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stdout))
            .try_init(),
        (false, Output::Stderr) => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
