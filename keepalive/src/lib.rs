//! `keepalive`: keeps WhatsApp Business numbers alive. When a Pub/Sub message asks, checks
//! one target: an On-Premises client on its own VM (reset when, and only when, it is really
//! down), or a number on Meta's Cloud API (findings, and with `"repair": true` a lost
//! subscription or webhook override put back).
//!
//! The path of one message, file by file:
//!
//! | step | file | what |
//! |---|---|---|
//! | start | `main.rs` | the CLI: read the [`config`], build the [`service`], run `serve` or `check` |
//! | | `config.rs` | every environment variable, read once into one typed [`Config`] |
//! | | `service.rs` | [`Service`]: the configuration and the clients, built once |
//! | decode | `serve.rs` | HTTP: `shared::envelope` decodes the message; answers 200, 400 or 503 |
//! | | `target.rs` | the payload parsed into a [`Target`]: its kind is a type |
//! | check | `check.rs` | picks the kind's check, bounds it by the deadline, reports, builds the [`Outcome`] |
//! | observe | `onprem/observe.rs` | the instance and the password at once; whom to trust (`onprem/trust.rs`: the label, the VM's own addresses); then login and probes, with retries |
//! | decide | `onprem/decide.rs` | every verdict, pure, in a table of cases |
//! | act | `onprem/act.rs` | under the VM's lock: read the VM, the guard (`onprem/guard.rs`: grace, fleet brake), reset, announce, wait |
//! | decide | `onprem/decide.rs` | the verdict from what became of the reset |
//! | observe | `cloud/observe.rs` | the token, then the Graph reads and the bot's handshake, concurrently |
//! | decide | `cloud/decide.rs` | findings (`cloud/findings.rs`, the table row by row) and the repairs that are safe; pure, in tables of cases |
//! | act | `cloud/act.rs` | the repairs (subscription, then the override), each read back |
//! | decide | `cloud/decide.rs` | the verdict from what became of the repairs |
//! | fleet | `cloud/fleet_observe.rs`, `cloud/fleet.rs` | a fleet message: every number read through Graph batches, then each judged as above; `report/fleet.rs` the answer |
//! | report | `report/` | the outcome, its log line, the mail and the event (`onprem.rs`, `cloud.rs`); never changes the verdict |
//!
//! `verdict.rs` holds the verdicts every kind ends in, `error.rs` the [`CheckError`] of a check
//! that could not be completed (503, redelivered).
//!
//! A kind of target is a variant of [`Target`] and of [`report::Details`], its own module
//! (observe, decide, act), an arm in `check.rs`, and a [`report::TargetReport`] for its mail,
//! event and log line.

pub mod check;
pub mod cloud;
pub mod config;
pub mod error;
pub mod onprem;
pub mod report;
pub mod serve;
pub mod service;
pub mod target;
pub mod verdict;

pub use check::{check, CheckOptions};
pub use config::Config;
pub use error::CheckError;
pub use report::Outcome;
pub use service::Service;
pub use target::Target;
pub use verdict::Verdict;
