//! The README's first command, `cargo run -p keepalive-tests --bin sandbox`, end to end: the
//! real `keepalive serve` against the simulated WhatsApp client and Google APIs, every step
//! as the sandbox describes it (it exits 1 otherwise), and neither the password nor a token in
//! any of its output.

use keepalive_tests::binaries::{keepalive_bin, run_bounded};
use std::process::Command;
use std::time::Duration;

#[test]
fn the_sandbox_runs_every_step_as_described() {
    let run = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_sandbox")).env("KEEPALIVE_BIN", keepalive_bin()),
        Duration::from_secs(120),
    );
    let out = &run.stdout;
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(out.contains("Every step went as described."), "{out}");
    assert!(out.contains("carried out 1 reset(s)"), "{out}");
    assert!(out.contains("SIGTERM: draining"), "{out}");
    assert!(out.contains("verdict=repaired"), "{out}");
    for secret in [
        "Sandbox-Passw0rd",
        "Sandbox-AccessT0ken",
        "Sandbox-VerifyT0ken",
    ] {
        assert!(
            !run.output().contains(secret),
            "{secret} reached the output:\n{}",
            run.output()
        );
    }
}
