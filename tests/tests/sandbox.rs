//! The README's first command, `cargo run -p keepalive-tests --bin sandbox`, end to end: the
//! real `keepalive serve` against the simulated WhatsApp client and Google APIs, every step
//! as the sandbox describes it (it exits 1 otherwise), and the password in none of its output.

use keepalive_tests::keepalive::keepalive_bin;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_sandbox_runs_every_step_as_described() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .env("KEEPALIVE_BIN", keepalive_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sandbox");
    // Read both pipes while it runs: a full pipe would stall it.
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the sandbox") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the sandbox did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert!(out.contains("Every step went as described."), "{out}");
    assert!(out.contains("carried out 1 reset(s)"), "{out}");
    assert!(out.contains("SIGTERM: draining"), "{out}");
    assert!(
        !out.contains("Sandbox-Passw0rd") && !err.contains("Sandbox-Passw0rd"),
        "the password reached the output:\n{out}\n{err}"
    );
}
