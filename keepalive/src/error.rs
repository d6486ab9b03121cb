//! Why a check could not be completed: no verdict, and a retry may help (`serve` answers 503
//! so that Pub/Sub redelivers; `check` exits 2).

use shared::google::GoogleError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A Google API still failing after its retries, or refusing the token (a new one may
    /// work). Which errors these are is decided in the kind's `decide.rs`.
    #[error("{0}")]
    Google(#[from] GoogleError),
    #[error("no project: give `project` in the payload or set GOOGLE_CLOUD_PROJECT ({0})")]
    NoProject(String),
    #[error("the check did not finish within the deadline of {} s", .0.as_secs())]
    Deadline(Duration),
    /// A Cloud API check: a Graph read or repair (or a secret) still failing after its
    /// retries with an error a retry may fix (`cloud/decide.rs` says which).
    #[error("{0}")]
    Unfinished(String),
}
