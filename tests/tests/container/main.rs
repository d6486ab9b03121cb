//! What ships the keepalive: `Dockerfile.keepalive` (stages, pinned images, the dependency
//! layer, a non-root user, an exec-form entrypoint, no secrets, only the binary in the image),
//! `scheduler.yaml` (a Cloud Scheduler job every 5 minutes whose payload the real binary
//! accepts, the password only as a Secret Manager reference), and the parts of the binary's
//! container contract that `serve.rs` does not already cover (SIGINT, shared libraries).
//!
//! There is no Docker engine here: the Dockerfile is checked as text, instruction by
//! instruction, and each check is itself tested on a Dockerfile broken on purpose.
//!
//! `dockerfile_parser`, `dockerfile_rules`: the parser and the checks; `dockerfile`: their
//! tests; `scheduler`: `scheduler.yaml`; `binary`: the binary's own container contract.

#[path = "../common/mod.rs"]
mod common;

mod binary;
mod dockerfile;
mod dockerfile_parser;
mod dockerfile_rules;
mod scheduler;

use keepalive_tests::binaries::workspace_root;

fn read_root_file(name: &str) -> String {
    let path = workspace_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
