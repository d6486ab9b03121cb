//! Soak: many checks with random faults injected by the fakes, through one `keepalive serve`
//! process. Every answer is compared with the outcome the contract gives for the fault that
//! was injected, the resets Compute Engine saw are counted, the process's memory (VmRSS) is
//! sampled, and at the end it must stop cleanly on SIGTERM with no panic in its logs.
//!
//! ```sh
//! cargo test -p keepalive-tests --test soak                 # CI: 500 checks (debug build)
//! # the full run (docs/benchmarks.md): 20,000 checks on a release build
//! cargo build --release -p keepalive
//! KEEPALIVE_BIN=target/release/keepalive cargo test --release -p keepalive-tests \
//!     --test soak soak_full -- --ignored --nocapture
//! ```
//!
//! Settings: `SOAK_CHECKS` (500 for `soak_short`, 20,000 for `soak_full`), `SOAK_WORKERS`
//! (16), `SOAK_SEED` (random; printed, and a failure replays with it). `MALLOC_ARENA_MAX`,
//! `MALLOC_TRIM_THRESHOLD_` and `TOKIO_WORKER_THREADS` are passed on to keepalive when set.
//!
//! Timings (what keepalive is given): 200 ms per WhatsApp request, 2 attempts, 10 ms apart,
//! boot grace 0. Grace 0 makes the expected outcome exact: a client down on both attempts is
//! always reset (or skipped when the VM is not RUNNING), so every down check goes the whole
//! way (read the VM, read its reset operations, reset, wait), the path that does the most.
//! The grace window has its own scenario tests.
//!
//! Each worker owns one WhatsApp fake and one VM and runs its checks one after another, so the
//! faults it scripts reach only its own check; the expected outcome is worked out by playing
//! the contract's check (login, then the seven probes at once, `KEEPALIVE_ATTEMPTS` times)
//! against the scripted answers. Faults of the shared Google fakes (one 503 on a Compute or
//! Secret Manager call, retried by keepalive) may be taken by any worker's check; they change
//! no outcome.
//!
//! `scenario`: the faults and the expected verdicts; `run`: the soak itself.

mod run;
mod scenario;

use run::soak;

const USER: &str = "admin";
const PASSWORD: &str = "Soak-Passw0rd!-never-logged";
const TIMEOUT_MS: u64 = 200;
const ATTEMPTS: usize = 2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The CI version: a few hundred checks, every fault kind several times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_short() {
    soak(env_usize("SOAK_CHECKS", 500), None).await;
}

/// The full run (about a minute on a release build): 20,000 checks, RSS flat after warm-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with --ignored (docs/benchmarks.md)"]
async fn soak_full() {
    soak(env_usize("SOAK_CHECKS", 20_000), Some(8_000_000)).await;
}
