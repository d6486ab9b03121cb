//! Sending a mail (`keepalive::report::mail`) to a real SMTP server (aiosmtpd,
//! `tests/smtp/server.py`, run by `keepalive_tests::smtp`) on loopback: STARTTLS with a
//! certificate made at test time by `openssl`, AUTH, the mail itself; and the failures: wrong
//! password, refused connection, silent server, no STARTTLS, untrusted certificate. The server
//! is required: if it cannot start, the tests fail and say how to install it
//! (`.ci/install-test-deps`). Every wait is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keepalive::config::{Config, MailConfig};
use keepalive::onprem::Details;
use keepalive::report::mail::{send, MailError, Notice};
use keepalive::report::TargetReport;
use keepalive::Verdict;
use keepalive_tests::smtp::{self as smtp_server, pki, Mode, SmtpServer};
use secrecy::SecretString;
use shared::payload::SmtpSettings;

const USER: &str = "keepalive-mailer";
const PASSWORD: &str = "Pw-7f3c!q9#zz";
const FROM: &str = "keepalive@example.org";
const TO: &str = "ops@example.net";
const VM: &str = "whatsapp-49151";
const REASON: &str = "health probe timed out 3 times; gateway_status disconnected";

/// Bound on every send in these tests (the server's own waits are bounded in `smtp_server`).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Fixtures: the server (`tests/src/smtp.rs`) with this file's account.

/// A server that accepts this file's account.
async fn start_server(mode: Mode) -> SmtpServer {
    SmtpServer::start(mode, USER, PASSWORD).await
}

trait Settings {
    /// The payload's five smtp fields for this server, with `password`.
    fn settings(&self, password: &str) -> SmtpSettings;
}

impl Settings for SmtpServer {
    fn settings(&self, password: &str) -> SmtpSettings {
        SmtpSettings {
            host: self.host(),
            username: USER.into(),
            password: SecretString::from(password.to_string()),
            from: FROM.into(),
            to: TO.into(),
        }
    }
}

fn trusting_opts() -> MailConfig {
    let pki_pem = smtp_server::existing_pki()
        .expect("pki made by SmtpServer::start")
        .ca_pem
        .clone();
    MailConfig {
        timeout: SEND_TIMEOUT,
        extra_root_ca_pem: Some(pki_pem),
    }
}

/// The On-Premises kind's details for `VM`.
fn details(zone: &str, project: &str) -> Details {
    Details {
        vm: VM.into(),
        zone: zone.into(),
        project: Some(project.into()),
        attempts: 3,
        dry_run: false,
        operation: None,
        request_id: None,
    }
}

fn reset_notice() -> Notice {
    details("europe-west3-c", "acme-wa").notice(Verdict::Reset, REASON, "2025-01-02T03:04:05Z")
}

fn assert_no_password(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked into: {text}");
}

fn assert_err_clean(err: &MailError) {
    eprintln!("error as reported: {err}");
    assert_no_password(&err.to_string());
    assert_no_password(&format!("{err:?}"));
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn delivers_over_starttls_with_auth() {
    let mut server = start_server(Mode::StartTls).await;
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
    let mut server = start_server(Mode::StartTls).await;
    let mut settings = server.settings(PASSWORD);
    settings.to = format!("{TO}, Second Person <second@example.net>");
    let notice = details("us-east1-b", "acme").notice(Verdict::Alert, "number unregistered", "now");
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
    let mut server = start_server(Mode::StartTls).await;
    let wrong = format!("{PASSWORD}-wrong");
    let err = send(&server.settings(&wrong), &reset_notice(), &trusting_opts())
        .await
        .expect_err("a wrong password must fail");
    assert!(matches!(err, MailError::AuthRejected { .. }), "{err:?}");
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
    let opts = MailConfig {
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
        matches!(err, MailError::ConnectionRefused { .. }),
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
    let opts = MailConfig {
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
    assert!(matches!(err, MailError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_err_clean(&err);
    hold.abort();
}

#[tokio::test]
async fn server_without_starttls_gets_no_credentials() {
    // This server would take AUTH in plaintext: the client must not offer it.
    let mut server = start_server(Mode::Plain).await;
    let err = send(
        &server.settings(PASSWORD),
        &reset_notice(),
        &trusting_opts(),
    )
    .await
    .expect_err("no STARTTLS must fail");
    assert!(matches!(err, MailError::NoStartTls { .. }), "{err:?}");
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
    let mut server = start_server(Mode::StartTls).await;
    let opts = MailConfig {
        timeout: SEND_TIMEOUT,
        extra_root_ca_pem: None, // the test CA is not among the system's roots
    };
    let err = send(&server.settings(PASSWORD), &reset_notice(), &opts)
        .await
        .expect_err("an unknown issuer must fail");
    assert!(matches!(err, MailError::Tls { .. }), "{err:?}");
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
    let opts = MailConfig {
        timeout: Duration::from_secs(2),
        extra_root_ca_pem: None,
    };
    let mut bad_from = base.clone();
    bad_from.from = "not an address".into();
    let err = send(&bad_from, &reset_notice(), &opts).await.unwrap_err();
    assert!(
        matches!(
            err,
            MailError::BadAddress {
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
            MailError::BadAddress {
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
            MailError::BadAddress {
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
    assert!(matches!(err, MailError::BadHost { .. }), "{err:?}");
    assert!(err.to_string().contains("smtpHost"), "{err}");
}

#[tokio::test]
async fn ca_file_setting_is_read_and_checked() {
    let pki = pki().await;
    let config = |vars: &[(&str, &std::path::Path)]| {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.display().to_string()))
            .collect();
        Config::from_lookup(&move |k| env.get(k).cloned())
    };
    let c = config(&[("KEEPALIVE_SMTP_CA_FILE", &pki.dir.join("ca.pem"))]).unwrap();
    assert_eq!(c.mail.extra_root_ca_pem.as_deref(), Some(&pki.ca_pem[..]));
    // A key is not a certificate: refused at start, naming the variable.
    let err = config(&[("KEEPALIVE_SMTP_CA_FILE", &pki.key)]).unwrap_err();
    assert!(
        err.to_string().starts_with("KEEPALIVE_SMTP_CA_FILE"),
        "{err}"
    );
}
