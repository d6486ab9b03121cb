//! The WhatsApp onboarding runbook as commands. Every step is callable from Rust:
//! [`steps::database::run`], [`steps::vm::run`], [`plan::run`], [`status::run`]; for a number
//! on Meta's Cloud API, [`cloud_api`]; moving a number there, [`migrate`]; removing what is
//! left of its On-Premises installation, [`decommission`].
//!
//! Every step reads before it creates, adopts what already exists (`ALREADY_EXISTS` included)
//! and checks it against `number.toml`, and keeps nothing on the local disk: what a later run
//! needs is read back from Google Cloud, secrets from Secret Manager.

pub mod cloud;
pub mod cloud_api;
pub mod config;
pub mod decommission;
pub mod migrate;
pub mod plan;
pub mod progress;
pub mod report;
pub mod secrets;
pub mod status;
pub mod steps;
pub mod up;

/// Why a command stopped. Exit status 1 (2 is for configuration, see [`config`]).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{resource}: {source}\n  to resume: fix the cause and run `provisioner {command}` again (it picks up where it stopped)")]
    Google {
        resource: String,
        command: &'static str,
        #[source]
        source: shared::google::GoogleError,
    },
    #[error("{resource}: {message}")]
    Failed { resource: String, message: String },
    /// Bad configuration or arguments (exit status 2); names the key.
    #[error("{0}")]
    Config(String),
}

impl StepError {
    pub fn failed(resource: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::Failed {
            resource: resource.into(),
            message: message.into(),
        }
    }
}
