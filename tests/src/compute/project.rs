//! `GET /compute/v1/projects/{p}`: every project exists, with a number and a creation time
//! derived from its name, so answers are the same in every fake, run and toolchain.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::names::project_link;
use super::FakeCompute;
use crate::server::compute_timestamp;

/// FNV-1a of the project name: fixed by its definition (unlike `DefaultHasher`).
fn project_hash(project: &str) -> u64 {
    project.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The project's number: 12 decimal digits, no leading zero, derived from its name.
fn project_number(project: &str) -> String {
    (100_000_000_000 + project_hash(project) % 900_000_000_000).to_string()
}

/// The project as `GET /compute/v1/projects/{p}` answers it (created some day of 2018-2021).
pub(super) fn project_json(project: &str) -> Value {
    let number = project_number(project);
    let h = project_hash(project);
    // 2018-01-01T00:00:00Z, plus up to four years and some seconds.
    let secs = 1_514_764_800 + (h >> 40) % 1461 * 86_400 + (h >> 8) % 86_400;
    let created = OffsetDateTime::UNIX_EPOCH
        + time::Duration::seconds(secs as i64)
        + time::Duration::milliseconds(((h >> 20) % 1000) as i64);
    json!({
        "kind": "compute#project",
        "id": number,
        "name": project,
        "creationTimestamp": compute_timestamp(created),
        "selfLink": project_link(project),
        "defaultServiceAccount": format!("{number}-compute@developer.gserviceaccount.com"),
        "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
    })
}

impl FakeCompute {
    /// The project's number, as `GET /compute/v1/projects/{p}` answers it (`id`, and the
    /// prefix of `defaultServiceAccount`): 12 decimal digits derived from the name (the same
    /// in every `FakeCompute`).
    pub fn project_number(&self, project: &str) -> String {
        project_number(project)
    }
}
