//! A real SMTP server on loopback for the mail tests: `tests/smtp/server.py` (Python,
//! aiosmtpd) run as a child process, with a private CA and a certificate for `127.0.0.1` made
//! with the `openssl` command at test time.
//!
//! The server is required: if it cannot start, [`SmtpServer::start`] panics and says how to
//! install what it needs (`bash .ci/install-test-deps`). Every wait is bounded. Used by the
//! end-to-end mail tests (`tests/tests/mail.rs`) and by `keepalive/tests/smtp.rs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, OnceCell};

/// Bound on the server's start (until its `ready` line).
pub const SERVER_START: Duration = Duration::from_secs(20);
/// Bound on [`SmtpServer::wait_for`].
pub const EVENT_WAIT: Duration = Duration::from_secs(10);
/// Bound on each `openssl` run.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);
/// The server exits by itself after this long, should every other way of stopping it fail.
const SERVER_LIFETIME_S: u32 = 300;

/// The server script, beside this package's sources.
pub fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/server.py")
}

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A private CA and a server certificate for `127.0.0.1` and `localhost` that it signed.
pub struct Pki {
    /// The directory holding the files below (and the servers' stderr logs).
    pub dir: PathBuf,
    /// The CA certificate (PEM), as read from [`Pki::ca_file`].
    pub ca_pem: Vec<u8>,
    /// The CA certificate's file: what `KEEPALIVE_SMTP_CA_FILE` names.
    pub ca_file: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

static PKI: OnceCell<Pki> = OnceCell::const_new();

/// The certificates, made once per test process with `openssl`: under Cargo's target tmp
/// directory for an integration test, else under the system's temporary directory.
pub async fn pki() -> &'static Pki {
    PKI.get_or_init(make_pki).await
}

/// The certificates if [`pki`] (or [`SmtpServer::start`]) made them already.
pub fn existing_pki() -> Option<&'static Pki> {
    PKI.get()
}

async fn make_pki() -> Pki {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("smtp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create {} for certificates: {e}", dir.display()));
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::write(
        p("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write leaf.ext");
    let ca_key = p("ca.key");
    let ca_pem = p("ca.pem");
    let leaf_key = p("leaf.key");
    let leaf_csr = p("leaf.csr");
    let leaf_pem = p("leaf.pem");
    let leaf_ext = p("leaf.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_args = [
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "2",
        "-subj",
        "/CN=keepalive test CA",
    ];
    let leaf_args = [
        "-keyout",
        &leaf_key,
        "-out",
        &leaf_csr,
        "-subj",
        "/CN=127.0.0.1",
    ];
    let steps: Vec<Vec<&str>> = vec![
        [&["req", "-x509"][..], &ec[..], &ca_args[..]].concat(),
        [&["req"][..], &ec[..], &leaf_args[..]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            &leaf_csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &leaf_pem,
            "-days",
            "2",
            "-extfile",
            &leaf_ext,
        ],
    ];
    for args in steps {
        let run = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(OPENSSL_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("openssl {args:?} took over {OPENSSL_TIMEOUT:?}"))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `openssl` (needed to make the test certificate): {e}; \
                     run `bash .ci/install-test-deps`"
                )
            });
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Pki {
        ca_pem: std::fs::read(&ca_pem).expect("read ca.pem"),
        ca_file: PathBuf::from(ca_pem),
        cert: PathBuf::from(leaf_pem),
        key: PathBuf::from(leaf_key),
        dir,
    }
}

// ---------------------------------------------------------------------------------------------
// The server.

/// How the server treats encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Offers STARTTLS and requires it before AUTH, and AUTH before MAIL (a relay on 587).
    StartTls,
    /// No STARTTLS at all, but AUTH offered in plaintext.
    Plain,
}

/// One running `tests/smtp/server.py` on `127.0.0.1`; killed when dropped.
///
/// Its reports (one JSON object per line: `connect`, `starttls`, `auth`, `message`,
/// `closed`) arrive in order; [`SmtpServer::wait_for`] and [`SmtpServer::settle`] move them
/// into [`SmtpServer::seen`].
pub struct SmtpServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The events received so far, in order.
    pub seen: Vec<Value>,
    events: mpsc::UnboundedReceiver<Value>,
    _child: Child,
}

static SERVER_SEQ: AtomicUsize = AtomicUsize::new(0);

impl SmtpServer {
    /// Starts a server that accepts the one account `username`/`password`. Panics, naming
    /// `.ci/install-test-deps`, if it cannot start.
    pub async fn start(mode: Mode, username: &str, password: &str) -> SmtpServer {
        let pki = pki().await;
        let python = std::env::var("KEEPALIVE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let n = SERVER_SEQ.fetch_add(1, Ordering::SeqCst);
        let stderr_path = pki.dir.join(format!("server-{n}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("create the server's stderr log");
        let mut cmd = Command::new(&python);
        cmd.arg(server_script())
            .args(["--username", username, "--password", password])
            .args(["--lifetime", &SERVER_LIFETIME_S.to_string()])
            // Its stdin stays open while we live; EOF tells it to exit.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        match mode {
            Mode::StartTls => {
                cmd.args(["--mode", "starttls"])
                    .arg("--cert")
                    .arg(&pki.cert)
                    .arg("--key")
                    .arg(&pki.key);
            }
            Mode::Plain => {
                cmd.args(["--mode", "plain"]);
            }
        }
        let fail = |why: String| -> ! {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!(
                "the test SMTP server (aiosmtpd, {}) could not be started: {why}\n\
                 --- its stderr ---\n{log}\n---\n\
                 Install what it needs with `bash .ci/install-test-deps` \
                 (python3 and aiosmtpd; KEEPALIVE_TEST_PYTHON names another interpreter).",
                server_script().display()
            )
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| fail(format!("cannot run {python:?}: {e}")));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("smtp server: {line}"),
                }
            }
        });
        let ready = tokio::time::timeout(SERVER_START, events.recv()).await;
        let port = match ready {
            Err(_) => fail(format!("no \"ready\" line within {SERVER_START:?}")),
            Ok(None) => fail("it exited before it was ready".into()),
            Ok(Some(v)) if v["event"] == "ready" => {
                match v["port"].as_u64().and_then(|p| u16::try_from(p).ok()) {
                    Some(p) if p > 0 => p,
                    _ => fail(format!("bad \"ready\" line {v}")),
                }
            }
            Ok(Some(v)) => fail(format!("unexpected first line {v}")),
        };
        SmtpServer {
            port,
            seen: Vec::new(),
            events,
            _child: child,
        }
    }

    /// `127.0.0.1:PORT`, as `smtpHost` takes it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits (at most [`EVENT_WAIT`]) for the next event named `name`; the events before it
    /// are kept in [`SmtpServer::seen`].
    pub async fn wait_for(&mut self, name: &str) -> Value {
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if v["event"] == name {
                        return v;
                    }
                }
                Ok(None) => panic!("SMTP server exited before {name:?}; saw {:?}", self.seen),
                Err(_) => panic!(
                    "no {name:?} from the SMTP server within {EVENT_WAIT:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Collects what arrives until nothing has for `quiet` (and at most [`EVENT_WAIT`] in
    /// all): then whatever the client did is in [`SmtpServer::seen`].
    pub async fn settle(&mut self, quiet: Duration) {
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(quiet.min(left), self.events.recv()).await {
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// The events named `name` seen so far.
    pub fn saw(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|v| v["event"] == name).collect()
    }

    /// The mails received so far (`message` events: `mail_from`, `rcpt_tos`, `username`,
    /// `tls`, `data` (the raw message), `subject`, `from_header`, `to_header`, `body`).
    pub fn messages(&self) -> Vec<&Value> {
        self.saw("message")
    }
}
