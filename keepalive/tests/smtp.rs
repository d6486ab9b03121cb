//! `notify` against a real SMTP server (aiosmtpd, `tests/smtp/server.py`) on loopback:
//! STARTTLS with a certificate made at test time by `openssl`, AUTH, the mail itself; and the
//! failures: wrong password, refused connection, silent server, no STARTTLS, untrusted
//! certificate. The server is required: if it cannot start, the tests fail and say how to
//! install it (`.ci/install-test-deps`). Every wait is bounded.

#[path = "../src/notify.rs"]
#[allow(dead_code)]
mod notify;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use notify::{notice_for, send, MailOptions, Notice, NotifyError};
use secrecy::SecretString;
use serde_json::Value;
use shared::payload::SmtpSettings;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, OnceCell};

const USER: &str = "keepalive-mailer";
const PASSWORD: &str = "Pw-7f3c!q9#zz";
const FROM: &str = "keepalive@example.org";
const TO: &str = "ops@example.net";
const VM: &str = "whatsapp-49151";
const REASON: &str = "health probe timed out 3 times; gateway_status disconnected";

/// Bounds on every wait in these tests.
const SERVER_START: Duration = Duration::from_secs(20);
const EVENT_WAIT: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Fixtures: certificates and the server.

struct Pki {
    dir: PathBuf,
    ca_pem: Vec<u8>,
    cert: PathBuf,
    key: PathBuf,
}

static PKI: OnceCell<Pki> = OnceCell::const_new();

/// A private CA and a server certificate for 127.0.0.1 and localhost that it signed, made
/// once per test run with the `openssl` command, under Cargo's target tmp directory.
async fn pki() -> &'static Pki {
    PKI.get_or_init(|| async {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("smtp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir for certificates");
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        std::fs::write(
            p("leaf.ext"),
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        let ca_key = p("ca.key");
        let ca_pem = p("ca.pem");
        let leaf_key = p("leaf.key");
        let leaf_csr = p("leaf.csr");
        let leaf_pem = p("leaf.pem");
        let leaf_ext = p("leaf.ext");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let steps: Vec<Vec<&str>> = vec![
            [&["req", "-x509"][..], &ec[..], &["-keyout", &ca_key, "-out", &ca_pem,
              "-days", "2", "-subj", "/CN=keepalive test CA"]].concat(),
            [&["req"][..], &ec[..], &["-keyout", &leaf_key, "-out", &leaf_csr,
              "-subj", "/CN=127.0.0.1"]].concat(),
            vec!["x509", "-req", "-in", &leaf_csr, "-CA", &ca_pem, "-CAkey", &ca_key,
                 "-CAcreateserial", "-out", &leaf_pem, "-days", "2", "-extfile", &leaf_ext],
        ];
        for args in steps {
            let run = Command::new("openssl")
                .args(&args)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(Duration::from_secs(30), run)
                .await
                .unwrap_or_else(|_| panic!("openssl {args:?} took over 30 s"))
                .unwrap_or_else(|e| {
                    panic!("cannot run `openssl` (needed to make the test certificate): {e}; run .ci/install-test-deps")
                });
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Pki {
            ca_pem: std::fs::read(&ca_pem).unwrap(),
            cert: PathBuf::from(leaf_pem),
            key: PathBuf::from(leaf_key),
            dir,
        }
    })
    .await
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    StartTls,
    Plain,
}

/// One running `tests/smtp/server.py`; killed when dropped.
struct SmtpServer {
    port: u16,
    events: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
    _child: Child,
}

static SERVER_SEQ: AtomicUsize = AtomicUsize::new(0);

fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/server.py")
}

impl SmtpServer {
    async fn start(mode: Mode) -> SmtpServer {
        let pki = pki().await;
        let python = std::env::var("KEEPALIVE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let n = SERVER_SEQ.fetch_add(1, Ordering::SeqCst);
        let stderr_path = pki.dir.join(format!("server-{n}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(&python);
        cmd.arg(server_script())
            .args([
                "--username",
                USER,
                "--password",
                PASSWORD,
                "--lifetime",
                "120",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        match mode {
            Mode::StartTls => {
                cmd.arg("--mode")
                    .arg("starttls")
                    .arg("--cert")
                    .arg(&pki.cert);
                cmd.arg("--key").arg(&pki.key);
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
        let stdout = child.stdout.take().unwrap();
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
            Ok(Some(v)) if v["event"] == "ready" => v["port"].as_u64().unwrap() as u16,
            Ok(Some(v)) => fail(format!("unexpected first line {v}")),
        };
        SmtpServer {
            port,
            events,
            seen: Vec::new(),
            _child: child,
        }
    }

    fn settings(&self, password: &str) -> SmtpSettings {
        SmtpSettings {
            host: format!("127.0.0.1:{}", self.port),
            username: USER.into(),
            password: SecretString::from(password.to_string()),
            from: FROM.into(),
            to: TO.into(),
        }
    }

    /// Waits (bounded) for the next event named `name`; the events before it are kept.
    async fn wait_for(&mut self, name: &str) -> Value {
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

    fn saw(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|v| v["event"] == name).collect()
    }
}

fn trusting_opts() -> MailOptions {
    let pki_pem = PKI
        .get()
        .expect("pki made by SmtpServer::start")
        .ca_pem
        .clone();
    MailOptions {
        timeout: SEND_TIMEOUT,
        extra_root_ca_pem: Some(pki_pem),
    }
}

fn reset_notice() -> Notice {
    notice_for(
        "reset",
        REASON,
        VM,
        "europe-west3-c",
        "acme-wa",
        "2025-01-02T03:04:05Z",
    )
}

fn assert_no_password(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked into: {text}");
}

fn assert_err_clean(err: &NotifyError) {
    eprintln!("error as reported: {err}");
    assert_no_password(&err.to_string());
    assert_no_password(&format!("{err:?}"));
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn delivers_over_starttls_with_auth() {
    let mut server = SmtpServer::start(Mode::StartTls).await;
    let started = Instant::now();
    send(
        &server.settings(PASSWORD),
        &reset_notice(),
        &trusting_opts(),
    )
    .await
    .unwrap_or_else(|e| panic!("send failed: {e}"));
    assert!(started.elapsed() < SEND_TIMEOUT);

    let msg = server.wait_for("message").await;
    assert!(
        !server.saw("starttls").is_empty(),
        "no STARTTLS before the mail: {:?}",
        server.seen
    );
    let auth = server.saw("auth");
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0]["username"], USER);
    assert_eq!(auth[0]["success"], true);
    assert_eq!(auth[0]["tls"], true, "AUTH happened before TLS");

    assert_eq!(msg["tls"], true);
    assert_eq!(msg["username"], USER);
    assert_eq!(msg["mail_from"], FROM);
    assert_eq!(msg["rcpt_tos"], serde_json::json!([TO]));
    let subject = msg["subject"].as_str().unwrap();
    assert_eq!(subject, format!("[keepalive] VM {VM} reset: {REASON}"));
    let body = msg["body"].as_str().unwrap();
    for want in [
        VM,
        REASON,
        "europe-west3-c",
        "acme-wa",
        "2025-01-02T03:04:05Z",
    ] {
        assert!(body.contains(want), "body lacks {want:?}:\n{body}");
    }
    assert!(msg["from_header"].as_str().unwrap().contains(FROM));
    assert!(msg["to_header"].as_str().unwrap().contains(TO));
    assert_no_password(&msg.to_string());
}

#[tokio::test]
async fn alert_mail_to_several_recipients() {
    let mut server = SmtpServer::start(Mode::StartTls).await;
    let mut settings = server.settings(PASSWORD);
    settings.to = format!("{TO}, Second Person <second@example.net>");
    let notice = notice_for(
        "alert",
        "number unregistered",
        VM,
        "us-east1-b",
        "acme",
        "now",
    );
    assert_eq!(
        notice.subject,
        format!("[keepalive] ALERT {VM}: number unregistered")
    );
    send(&settings, &notice, &trusting_opts())
        .await
        .unwrap_or_else(|e| panic!("send failed: {e}"));
    let msg = server.wait_for("message").await;
    assert_eq!(
        msg["rcpt_tos"],
        serde_json::json!([TO, "second@example.net"])
    );
    assert_eq!(msg["subject"], notice.subject.as_str());
    assert!(msg["body"]
        .as_str()
        .unwrap()
        .contains("number unregistered"));
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_without_the_password() {
    let mut server = SmtpServer::start(Mode::StartTls).await;
    let wrong = format!("{PASSWORD}-wrong");
    let err = send(&server.settings(&wrong), &reset_notice(), &trusting_opts())
        .await
        .expect_err("a wrong password must fail");
    assert!(matches!(err, NotifyError::AuthRejected { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("rejected the credentials") && text.contains(USER),
        "{text}"
    );
    assert!(!text.contains(&wrong), "{text}");
    assert_err_clean(&err);
    let auth = server.wait_for("auth").await;
    assert_eq!(auth["username"], USER);
    assert_eq!(auth["success"], false);
    server.wait_for("closed").await;
    assert!(server.saw("message").is_empty());
}

#[tokio::test]
async fn refused_connection_fails_fast() {
    // Bound but not listening: connecting gets a reset, and no one else can take the port.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let settings = SmtpSettings {
        host: format!("127.0.0.1:{port}"),
        username: USER.into(),
        password: SecretString::from(PASSWORD.to_string()),
        from: FROM.into(),
        to: TO.into(),
    };
    let opts = MailOptions {
        timeout: Duration::from_secs(5),
        extra_root_ca_pem: None,
    };
    let started = Instant::now();
    let err = send(&settings, &reset_notice(), &opts).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, NotifyError::ConnectionRefused { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("refused the connection"), "{err}");
    assert_err_clean(&err);
    drop(reserved);
}

#[tokio::test]
async fn silent_server_times_out_within_the_bound() {
    // Accepts the connection and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let settings = SmtpSettings {
        host: format!("127.0.0.1:{port}"),
        username: USER.into(),
        password: SecretString::from(PASSWORD.to_string()),
        from: FROM.into(),
        to: TO.into(),
    };
    let opts = MailOptions {
        timeout: Duration::from_millis(800),
        extra_root_ca_pem: None,
    };
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        send(&settings, &reset_notice(), &opts),
    )
    .await
    .expect("send must honour its own timeout")
    .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(matches!(err, NotifyError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_err_clean(&err);
    hold.abort();
}

#[tokio::test]
async fn server_without_starttls_gets_no_credentials() {
    // This server would take AUTH in plaintext: the client must not offer it.
    let mut server = SmtpServer::start(Mode::Plain).await;
    let err = send(
        &server.settings(PASSWORD),
        &reset_notice(),
        &trusting_opts(),
    )
    .await
    .expect_err("no STARTTLS must fail");
    assert!(matches!(err, NotifyError::NoStartTls { .. }), "{err:?}");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert_err_clean(&err);
    server.wait_for("closed").await;
    assert!(
        server.saw("auth").is_empty(),
        "credentials were sent: {:?}",
        server.seen
    );
    assert!(
        server.saw("message").is_empty(),
        "mail was sent: {:?}",
        server.seen
    );
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_error_and_gets_no_credentials() {
    let mut server = SmtpServer::start(Mode::StartTls).await;
    let opts = MailOptions {
        timeout: SEND_TIMEOUT,
        extra_root_ca_pem: None, // the test CA is not among the system's roots
    };
    let err = send(&server.settings(PASSWORD), &reset_notice(), &opts)
        .await
        .expect_err("an unknown issuer must fail");
    assert!(matches!(err, NotifyError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
    assert_err_clean(&err);
    server.wait_for("closed").await;
    assert!(
        server.saw("auth").is_empty(),
        "credentials were sent: {:?}",
        server.seen
    );
    assert!(server.saw("message").is_empty());
}

#[tokio::test]
async fn bad_addresses_name_the_field() {
    let base = SmtpSettings {
        host: "127.0.0.1:9".into(), // never reached: addresses are checked first
        username: USER.into(),
        password: SecretString::from(PASSWORD.to_string()),
        from: FROM.into(),
        to: TO.into(),
    };
    let opts = MailOptions {
        timeout: Duration::from_secs(2),
        extra_root_ca_pem: None,
    };
    let mut bad_from = base.clone();
    bad_from.from = "not an address".into();
    let err = send(&bad_from, &reset_notice(), &opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            NotifyError::BadAddress {
                field: "smtpFrom",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("smtpFrom"), "{err}");

    let mut bad_to = base.clone();
    bad_to.to = "ops@@example".into();
    let err = send(&bad_to, &reset_notice(), &opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            NotifyError::BadAddress {
                field: "smtpTo",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("smtpTo"), "{err}");

    // Even a password pasted into the wrong field does not come back out.
    let mut pasted = base.clone();
    pasted.from = PASSWORD.into();
    let err = send(&pasted, &reset_notice(), &opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            NotifyError::BadAddress {
                field: "smtpFrom",
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_clean(&err);

    let mut bad_host = base;
    bad_host.host = "smtp://mail.example.com".into();
    let err = send(&bad_host, &reset_notice(), &opts).await.unwrap_err();
    assert!(matches!(err, NotifyError::BadHost { .. }), "{err:?}");
    assert!(err.to_string().contains("smtpHost"), "{err}");
}

#[tokio::test]
async fn ca_file_option_is_read_and_checked() {
    let pki = pki().await;
    let ca_path = pki.dir.join("ca.pem");
    let opts = MailOptions::from_values(Some(ca_path.to_str().unwrap()), Some("2500")).unwrap();
    assert_eq!(opts.extra_root_ca_pem.as_deref(), Some(&pki.ca_pem[..]));
    assert_eq!(opts.timeout, Duration::from_millis(2500));

    let err = MailOptions::from_values(Some(pki.key.to_str().unwrap()), None).unwrap_err();
    assert!(err.to_string().contains("KEEPALIVE_SMTP_CA_FILE"), "{err}");

    // from_env reads the same variables (not set here, so the defaults unless the caller set them).
    if std::env::var_os("KEEPALIVE_SMTP_CA_FILE").is_none()
        && std::env::var_os("KEEPALIVE_SMTP_TIMEOUT_MS").is_none()
    {
        let opts = MailOptions::from_env().unwrap();
        assert_eq!(opts.timeout, notify::DEFAULT_TIMEOUT);
        assert!(opts.extra_root_ca_pem.is_none());
    }
}
