//! Running the real binaries: `keepalive serve` on a free port ([`Served`]), a one-shot
//! `keepalive check` ([`run_check`]), a `provisioner` command ([`run_provisioner`]), or any
//! child bounded in time ([`run_bounded`]).
//!
//! Each binary is built once per test process with the same cargo and profile that runs the
//! tests (`KEEPALIVE_BIN`, `PROVISIONER_BIN` override: point them at a release build to test
//! that). Every child gets a clean environment: only what the test passes, plus PATH.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Path of the keepalive binary, built if needed (once per process).
pub fn keepalive_bin() -> PathBuf {
    built_bin("keepalive", "KEEPALIVE_BIN")
}

/// Path of the provisioner binary, built if needed (once per process).
pub fn provisioner_bin() -> PathBuf {
    built_bin("provisioner", "PROVISIONER_BIN")
}

/// Builds binary `name` of package `name` with the cargo and profile that run the tests, once
/// per process; `override_var` names an environment variable that points at a ready binary
/// (a release build, say) instead.
pub fn built_bin(name: &str, override_var: &str) -> PathBuf {
    static BINS: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    if let Ok(p) = std::env::var(override_var) {
        return PathBuf::from(p);
    }
    let mut bins = BINS.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = bins.get(name) {
        return p.clone();
    }
    let root = workspace_root();
    let release = cfg!(not(debug_assertions));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--quiet", "-p", name, "--bin", name]);
    // `cargo test` sets CARGO_MANIFEST_DIR, CARGO_PKG_* ... for the test; passed on, they
    // would make build scripts that watch them (ring's) rebuild every time. CARGO_INCREMENTAL
    // stays: without it the binaries are built again, beside the ones `cargo test` built.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_")
            && !matches!(
                k.as_str(),
                "CARGO_HOME" | "CARGO_TARGET_DIR" | "CARGO_INCREMENTAL"
            )
        {
            cmd.env_remove(k);
        }
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cannot run cargo");
    assert!(status.success(), "building {name} failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let path = target
        .join(if release { "release" } else { "debug" })
        .join(name);
    bins.insert(name.to_string(), path.clone());
    path
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Lines a child wrote, collected as they come.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn text(&self) -> String {
        self.all().join("\n")
    }
    fn collect(&self, r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    }
}

/// `keepalive serve` running on 127.0.0.1.
pub struct Served {
    child: Child,
    pub port: u16,
    pub stdout: Lines,
    pub stderr: Lines,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts `keepalive serve` with `env` (and PORT) and waits until it accepts connections.
    pub fn start(env: &BTreeMap<String, String>) -> Served {
        Self::start_with_args(env, &["serve"])
    }

    pub fn start_with_args(env: &BTreeMap<String, String>, args: &[&str]) -> Served {
        Self::start_on(env, args, None)
    }

    /// As [`Served::start_with_args`], on keepalive's CPUs of `cpus` when given (`bench`).
    pub fn start_on(
        env: &BTreeMap<String, String>,
        args: &[&str],
        cpus: Option<&crate::cpus::CpuSplit>,
    ) -> Served {
        let port = free_port();
        let mut cmd = Command::new(keepalive_bin());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cpus) = cpus {
            cpus.pin_child(&mut cmd);
        }
        let mut child = cmd.spawn().expect("cannot start keepalive serve");
        let stdout = Lines::default();
        let stderr = Lines::default();
        let readers = vec![
            stdout.collect(child.stdout.take().unwrap()),
            stderr.collect(child.stderr.take().unwrap()),
        ];
        let mut served = Served {
            child,
            port,
            stdout,
            stderr,
            readers,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!(
                    "keepalive serve exited early with {status}: {}",
                    served.logs()
                );
            }
            assert!(
                Instant::now() < until,
                "keepalive serve did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        served
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        format!("{}\n{}", self.stdout.text(), self.stderr.text())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self, within: Duration) -> (Option<i32>, Duration, String) {
        let started = Instant::now();
        signal(self.child.id(), "TERM");
        let until = Instant::now() + within;
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = started.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (code, took, self.logs())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// What a `keepalive check` run left behind.
#[derive(Debug)]
pub struct CheckRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CheckRun {
    pub fn outcome(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `keepalive check --payload - [extra args]` with `payload` on standard input.
pub fn run_check(env: &BTreeMap<String, String>, payload: &[u8], extra: &[&str]) -> CheckRun {
    let mut child = Command::new(keepalive_bin())
        .args(["check", "--payload", "-"])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start keepalive check");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload)
        .expect("cannot write the payload");
    let out = child
        .wait_with_output()
        .expect("keepalive check did not finish");
    CheckRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What a child process (a `provisioner` run, the sandbox) left behind.
#[derive(Debug)]
pub struct ProcessRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub type ProvisionerRun = ProcessRun;

impl ProcessRun {
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `provisioner --config CONFIG ARGS...` with a clean environment plus `env`, bounded by
/// `timeout` (killed after it: `code` is then `None`).
pub fn run_provisioner(
    env: &BTreeMap<String, String>,
    config: &Path,
    args: &[&str],
    timeout: Duration,
) -> ProvisionerRun {
    let mut cmd = Command::new(provisioner_bin());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    run_bounded(&mut cmd, timeout)
}

/// Runs the provisioner as at a terminal: under util-linux `script`, which gives it a
/// pseudo-terminal as standard input and types `typed` into it. What the process writes to
/// the terminal (stdout and stderr, and the echo of `typed`) comes back as `stdout`.
pub fn run_provisioner_at_terminal(
    env: &BTreeMap<String, String>,
    config: &Path,
    args: &[&str],
    typed: &str,
    timeout: Duration,
) -> ProvisionerRun {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = vec![
        quote(&provisioner_bin().to_string_lossy()),
        "--config".into(),
        quote(&config.to_string_lossy()),
    ];
    line.extend(args.iter().map(|a| quote(a)));
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command"])
        .arg(line.join(" "))
        .arg("/dev/null")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SHELL", "/bin/sh")
        .envs(env);
    run_fed(&mut cmd, Some(typed.as_bytes()), timeout)
}

/// Runs `cmd` (stdin closed), reading its output as it comes, bounded by `timeout` (killed
/// after it: `code` is then `None`).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> ProcessRun {
    run_fed(cmd, None, timeout)
}

/// [`run_bounded`], with `input` written to the process's standard input first.
fn run_fed(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> ProcessRun {
    let stdin = match input {
        Some(_) => Stdio::piped(),
        None => Stdio::null(),
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        use std::io::Write;
        // Closed when dropped: the process then reads end of input after `input`.
        let _ = pipe.write_all(input);
    }
    let stdout = Lines::default();
    let stderr = Lines::default();
    let readers = [
        stdout.collect(child.stdout.take().unwrap()),
        stderr.collect(child.stderr.take().unwrap()),
    ];
    let until = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for r in readers {
        let _ = r.join();
    }
    ProcessRun {
        code,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// The Pub/Sub push envelope that carries `payload` as message `message_id`, as a push
/// subscription delivers it to `keepalive serve`.
pub fn push_envelope(payload: &serde_json::Value, message_id: &str) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(payload.to_string()),
            "messageId": message_id,
            "publishTime": "2026-12-07T10:00:00.000Z",
        },
        "subscription": "projects/fake-project/subscriptions/whatsapp-keepalive-push"
    })
}

/// The outcome log lines in a keepalive's standard error: the JSON lines (Cloud Logging's
/// structured format) that carry `kind`, one per checked target, in order.
pub fn outcome_log_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("kind").is_some())
        .collect()
}
