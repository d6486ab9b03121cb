//! What a check decides, scenario by scenario, through `keepalive check` (the real binary)
//! against the fakes. Each asserts the verdict, the exit status and the resets Compute
//! Engine actually carried out.
//!
//! `health`: what the client reports; `failures`: what resets; `grace`: what holds a reset
//! back; `inputs`: Google's errors, the payload, the deadline; `secrets_and_logs`: the outputs.

#[path = "../common/mod.rs"]
mod common;

mod failures;
mod grace;
mod health;
mod inputs;
mod secrets_and_logs;

use common::{World, VM};

fn verdict(run: &keepalive_tests::binaries::CheckRun) -> String {
    run.outcome()["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The one Compute call of a check that resets nothing: reading the instance (its label
/// comes before any request to the client).
fn assert_only_the_instance_was_read(w: &World) {
    let requests = w.g.compute.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert!(requests[0].path.ends_with(&format!("/instances/{VM}")));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().filter(|c| *c == '-').count() == 4
        && s != "00000000-0000-0000-0000-000000000000"
}
