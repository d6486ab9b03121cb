//! Why a check could not be completed: no verdict. Mostly a retry may help (`serve` answers
//! 503 so that Pub/Sub redelivers; `check` exits 2); a refused payload never becomes valid
//! (400).

use shared::google::GoogleError;
use shared::payload::PayloadError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The payload asks for what this deployment may not do (a `project` outside
    /// `KEEPALIVE_PROJECTS`): never valid, like a malformed payload (400 naming the field,
    /// exit 2); nothing was done.
    #[error(transparent)]
    Refused(PayloadError),
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
