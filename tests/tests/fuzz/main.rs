//! Fuzz targets (proptest, stable toolchain) for the two parsers that take bytes from outside:
//! the scheduler payload (`shared::payload::Payload::parse`) and the Pub/Sub envelope /
//! CloudEvent decoder (`shared::envelope::decode`).
//!
//! Properties: neither ever panics, whatever the bytes and headers; a payload or envelope
//! generated valid parses back to exactly what was generated; a payload with one field broken
//! is refused naming that field; whatever parses satisfies the contract's rules (valid names,
//! an http(s) URL with a host and no credentials); no error or `Debug` output holds the
//! password. The real-shaped seeds in `tests/fuzz-corpus/` are checked as named and mutated.
//!
//! ```sh
//! cargo test -p keepalive-tests --test fuzz          # CI: 256 cases per target
//! PROPTEST_CASES=20000 cargo test -p keepalive-tests --test fuzz
//! # the long run: every target for 10 minutes at once (see docs/benchmarks.md)
//! FUZZ_SECONDS=600 cargo test --release -p keepalive-tests --test fuzz -- --test-threads 16 --nocapture
//! # a failure prints its seed; replay it:
//! PROPTEST_RNG_SEED=<seed> cargo test -p keepalive-tests --test fuzz <target>
//! ```
//!
//! `oracles`: the contract's rules; `payload_gen`, `envelope_gen`: generated inputs;
//! `mutation`, `corpus`: the seeds and their mutations; `*_targets`: the targets.

mod corpus;
mod envelope_gen;
mod envelope_targets;
mod mutation;
mod oracles;
mod payload_gen;
mod payload_targets;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::fmt::Debug;
use std::time::{Duration, Instant};

// The runner: PROPTEST_CASES cases per round (proptest's default 256), rounds repeated with
// fresh seeds until FUZZ_SECONDS have passed (one round when unset). Every round's seed is
// fixed and printed on failure, so PROPTEST_RNG_SEED replays it.

fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let base: u64 = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(s) => s.trim().parse().expect("PROPTEST_RNG_SEED must be a u64"),
        Err(_) => rand::random(),
    };
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .map(|s| Duration::from_secs(s.trim().parse().expect("FUZZ_SECONDS must be a number")));
    let started = Instant::now();
    let (mut rounds, mut cases) = (0u64, 0u64);
    loop {
        let seed = base.wrapping_add(rounds);
        let config = Config {
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..Config::default()
        };
        let per_round = u64::from(config.cases);
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!(
                "fuzz target {name} failed after {} cases: {e}\n\
                 replay: PROPTEST_RNG_SEED={seed} cargo test -p keepalive-tests --test fuzz {name}",
                cases
            );
        }
        rounds += 1;
        cases += per_round;
        match budget {
            Some(b) if started.elapsed() < b => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {rounds} round(s), {:.1} s, no failure (first seed {base})",
        started.elapsed().as_secs_f64()
    );
}
