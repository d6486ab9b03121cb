//! The side-by-side harness (`src/bin/compare/`) end to end, with `tests/baseline/stand-in.js`
//! in place of the original Node.js function (which is not in this repository): the Functions
//! Framework really runs it, `redirect.cjs` really points its WhatsApp calls and its
//! `@google-cloud/compute` reset (JWT grant included) at the fakes, and the tables come out.
//! Needs node and `npm ci --prefix tests/baseline` (`.ci/install-test-deps`).

use keepalive_tests::binaries::{keepalive_bin, workspace_root};
use std::process::{Command, Output};

fn compare(envs: &[(&str, &str)]) -> Output {
    let logs = tempfile_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_compare"))
        .env("KEEPALIVE_BIN", keepalive_bin())
        .env("COMPARE_LOGS", &logs)
        .env_remove("BASELINE_FUNCTION")
        .env_remove("COMPARE_SCENARIOS")
        .envs(envs.iter().copied())
        .output()
        .expect("run compare");
    let _ = std::fs::remove_dir_all(&logs);
    out
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "compare-test-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stand_in() -> String {
    let baseline = workspace_root().join("tests/baseline");
    assert!(
        baseline
            .join("node_modules/@google-cloud/functions-framework")
            .is_dir(),
        "tests/baseline/node_modules is missing: run `bash .ci/install-test-deps` (or \
         `npm ci --prefix tests/baseline`)"
    );
    baseline.join("stand-in.js").display().to_string()
}

/// The row of a Markdown table whose first cell starts with `name`, split into cells.
fn row(stdout: &str, name: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {name}")))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{stdout}"));
    line.trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect()
}

/// The leading number of a cell (`104.2 ms [..]` → 104.2).
fn number(cell: &str) -> f64 {
    cell.split_whitespace()
        .next()
        .and_then(|x| x.trim_start_matches('×').parse().ok())
        .unwrap_or_else(|| panic!("no number in {cell:?}"))
}

#[test]
fn side_by_side_with_a_stand_in_function() {
    let function = stand_in();
    let out = compare(&[
        ("BASELINE_FUNCTION", &function),
        ("COMPARE_RUNS", "1"),
        ("COMPARE_SAMPLES", "3"),
        ("COMPARE_TENANTS", "20"),
        ("COMPARE_CPU_CHECKS", "200"),
        ("COMPARE_STARTS", "1"),
        ("COMPARE_LATENCY_MS", "20"),
        ("COMPARE_SCENARIOS", "healthy,blip-503,malformed"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "compare failed:\n{stdout}\n{stderr}");

    // Performance: every row has a figure for both sides. A check at 20 ms per request costs
    // at least the login and one probe round trip on each side; the stand-in's probes are
    // sequential, so it needs at least five round trips.
    let check = row(&stdout, "one healthy check, 20 ms per request");
    assert!(number(&check[1]) >= 40.0, "{check:?}");
    assert!(number(&check[2]) >= 100.0, "{check:?}");
    for name in [
        "one healthy check, 0 ms",
        "spawn → accepting",
        "spawn → first check",
        "20 tenants at once, 20 ms: wall",
        "20 tenants at once, 20 ms: peak RSS",
        "CPU per check",
        "idle process RSS",
    ] {
        let r = row(&stdout, name);
        assert!(number(&r[1]) > 0.0 && number(&r[2]) > 0.0, "{r:?}");
    }

    // Behaviour: the same fault, counted by the same Compute fake. The stand-in's reset went
    // through @google-cloud/compute, the JWT grant and the redirect; keepalive retried.
    let blip = row(&stdout, "healthy client, `/v1/stats/db` answers 503 once");
    assert!(blip[2].starts_with("**0 resets**; 200 healthy"), "{blip:?}");
    assert!(blip[3].starts_with("**1 reset**; 200"), "{blip:?}");
    let healthy = row(&stdout, "healthy client |");
    assert!(healthy[2].starts_with("**0 resets**"), "{healthy:?}");
    assert!(healthy[3].contains("stand-in: healthy"), "{healthy:?}");
    let malformed = row(&stdout, "malformed message");
    assert!(
        malformed[2].contains("400 “payload field `vm` is missing”"),
        "{malformed:?}"
    );
    assert!(
        malformed[3].starts_with("**0 resets**; 500"),
        "{malformed:?}"
    );
    assert!(
        !stdout.contains("database deadlocked"),
        "scenario filter ignored"
    );

    // Neither side logged the password (the harness searched every process's output).
    for side in ["keepalive", "original"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("The password in {side}'s logs")))
            .unwrap_or_else(|| panic!("no password line for {side}"));
        assert!(line.contains(": 0 time(s) in"), "{line}");
        assert!(!line.contains(" in 0 process"), "{line}");
    }
}

#[test]
fn refuses_to_run_without_the_function_or_with_unknown_names() {
    let out = compare(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BASELINE_FUNCTION is not set"), "{err}");

    let out = compare(&[(
        "BASELINE_FUNCTION",
        "/nonexistent/keepalive-gcp-function.js",
    )]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BASELINE_FUNCTION=/nonexistent/keepalive-gcp-function.js"),
        "{err}"
    );

    let function = stand_in();
    let out = compare(&[
        ("BASELINE_FUNCTION", &function),
        ("COMPARE_SCENARIOS", "healthy,reset-loop"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown scenario \"reset-loop\""), "{err}");
    assert!(err.contains("down-then-booting"), "{err}");
}
