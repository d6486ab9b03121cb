//! Mail on reset and alert, end to end: the real `keepalive` binary (`check` and `serve`)
//! against the fakes and a real SMTP server on 127.0.0.1 (aiosmtpd, STARTTLS with a CA made
//! at test time and trusted through `KEEPALIVE_SMTP_CA_FILE`, AUTH required).
//!
//! One mail per reset and per alert, none when healthy or when the payload carries only some
//! of the five smtp fields; a relay that is down or silent costs the mail, never the reset;
//! neither the SMTP nor the WhatsApp password shows in any output or mail. The SMTP server is
//! required: if it cannot start the tests fail, naming `.ci/install-test-deps`. Every wait is
//! bounded.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{post_push, World, PASSWORD, VM, ZONE};
use keepalive_tests::binaries::{keepalive_bin, CheckRun, Served};
use keepalive_tests::smtp::{pki, Mode, SmtpServer};
use keepalive_tests::{Health, FAKE_PROJECT};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SMTP_USER: &str = "keepalive-relay-user";
/// Distinctive, so a leak anywhere is found by a plain substring search.
const SMTP_PASSWORD: &str = "Sm7p!R3layPassw0rd-must-never-show";
const FROM: &str = "keepalive@example.org";
const TO: &str = "ops@example.net";
const SMTP_FIELDS: [&str; 5] = [
    "smtpHost",
    "smtpUsername",
    "smtpPassword",
    "smtpFrom",
    "smtpTo",
];

/// Bound on one `keepalive check` run (its own deadline is 30 s).
const CHECK_BOUND: Duration = Duration::from_secs(60);
/// How long the SMTP server must stay quiet before we take it that nothing more comes.
const QUIET: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A world (healthy client, VM up for a day) whose keepalive trusts the test CA, and a
/// STARTTLS SMTP server that accepts [`SMTP_USER`]/[`SMTP_PASSWORD`].
async fn setup() -> (World, SmtpServer) {
    let mut w = World::new().await;
    let smtp = SmtpServer::start(Mode::StartTls, SMTP_USER, SMTP_PASSWORD).await;
    let ca_file = pki().await.ca_file.display().to_string();
    w.set_env("KEEPALIVE_SMTP_CA_FILE", &ca_file);
    w.set_env("KEEPALIVE_SMTP_TIMEOUT_MS", "10000");
    (w, smtp)
}

/// The world's payload with all five smtp fields, the relay at `host`.
fn with_smtp(w: &World, host: &str) -> Value {
    with_smtp_password(w, host, SMTP_PASSWORD)
}

fn with_smtp_password(w: &World, host: &str, password: &str) -> Value {
    let mut p = w.payload();
    p["smtpHost"] = json!(host);
    p["smtpUsername"] = json!(SMTP_USER);
    p["smtpPassword"] = json!(password);
    p["smtpFrom"] = json!(FROM);
    p["smtpTo"] = json!(TO);
    p
}

/// The SMTP password (and `also`) in clear and in the base64 forms AUTH PLAIN and AUTH LOGIN
/// put on the wire.
fn smtp_secrets(also: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for pw in std::iter::once(SMTP_PASSWORD).chain(also.iter().copied()) {
        out.push(pw.to_string());
        out.push(STANDARD.encode(pw));
        out.push(STANDARD.encode(format!("\0{SMTP_USER}\0{pw}")));
        out.push(STANDARD.encode(format!("{SMTP_USER}\0{SMTP_USER}\0{pw}")));
    }
    out
}

/// Neither password (nor any token the world knows) is in `text`.
fn assert_clean(w: &World, what: &str, text: &str, also: &[&str]) {
    w.assert_no_secrets(text);
    assert!(
        !text.contains(PASSWORD),
        "the WhatsApp password leaked into {what}"
    );
    for secret in smtp_secrets(also) {
        assert!(
            !text.contains(&secret),
            "the SMTP password (or its AUTH encoding, starts {:?}) leaked into {what}:\n{text}",
            &secret[..4]
        );
    }
}

/// `keepalive check` with `payload`, bounded by [`CHECK_BOUND`] (building the binary, if
/// needed, comes before the bound); stdout and stderr are checked for both passwords.
async fn check(w: &World, payload: &Value) -> CheckRun {
    tokio::task::spawn_blocking(keepalive_bin).await.unwrap();
    let run = tokio::time::timeout(CHECK_BOUND, w.check(payload, &[]))
        .await
        .unwrap_or_else(|_| panic!("keepalive check took over {CHECK_BOUND:?}"));
    assert_clean(w, "check's stdout", &run.stdout, &[]);
    assert_clean(w, "check's stderr", &run.stderr, &[]);
    run
}

/// `keepalive serve` with the world's environment, started off the runtime.
async fn serve(w: &World) -> Served {
    let env = w.env.clone();
    tokio::task::spawn_blocking(move || Served::start(&env))
        .await
        .unwrap()
}

/// Waits for a mail, then for quiet, and asserts that exactly one mail came, over exactly
/// one connection; answers it.
async fn the_one_mail(smtp: &mut SmtpServer) -> Value {
    let msg = smtp.wait_for("message").await;
    smtp.settle(QUIET).await;
    assert_eq!(smtp.messages().len(), 1, "not one mail: {:?}", smtp.seen);
    assert_eq!(
        smtp.saw("connect").len(),
        1,
        "not one connection: {:?}",
        smtp.seen
    );
    msg
}

/// After quiet, the SMTP server has not even been connected to.
async fn assert_no_mail(smtp: &mut SmtpServer) {
    smtp.settle(QUIET).await;
    assert!(
        smtp.seen.is_empty(),
        "the SMTP server was contacted: {:?}",
        smtp.seen
    );
}

/// Whitespace runs as one space, as a subject line holds the reason.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The mail for `outcome` (a reset or an alert): envelope, headers, AUTH over TLS, subject
/// and body naming the VM and the reason; no secret anywhere in it.
fn assert_mail_for(w: &World, smtp: &SmtpServer, msg: &Value, outcome: &Value) {
    let verdict = outcome["verdict"].as_str().unwrap();
    let reason = outcome["reason"].as_str().unwrap();
    assert!(!reason.is_empty(), "{outcome}");

    // STARTTLS, then AUTH as smtpUsername, over TLS, accepted; then the mail.
    assert_eq!(smtp.saw("starttls").len(), 1, "{:?}", smtp.seen);
    let auth = smtp.saw("auth");
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert_eq!(auth[0]["username"], SMTP_USER);
    assert_eq!(auth[0]["success"], true);
    assert_eq!(auth[0]["tls"], true, "AUTH before STARTTLS");
    assert_eq!(msg["tls"], true);
    assert_eq!(msg["username"], SMTP_USER);

    // Envelope and headers as the payload says.
    assert_eq!(msg["mail_from"], FROM);
    assert_eq!(msg["rcpt_tos"], json!([TO]));
    assert!(msg["from_header"].as_str().unwrap().contains(FROM), "{msg}");
    assert!(msg["to_header"].as_str().unwrap().contains(TO), "{msg}");

    // The subject names the VM and (the start of) the reason.
    let subject = msg["subject"].as_str().unwrap();
    let prefix = match verdict {
        "reset" => format!("[keepalive] VM {VM} reset: "),
        "alert" => format!("[keepalive] ALERT {VM}: "),
        other => panic!("no mail expected for {other}"),
    };
    assert!(subject.starts_with(&prefix), "subject {subject:?}");
    let reason_start: String = one_line(reason).chars().take(100).collect();
    assert!(
        subject.contains(&reason_start),
        "subject {subject:?} lacks the reason {reason:?}"
    );

    // The body names the VM, the whole reason, and where the VM is.
    let body = msg["body"].as_str().unwrap();
    for want in [
        VM,
        reason,
        ZONE,
        FAKE_PROJECT,
        &format!("Verdict: {verdict}"),
        outcome["checkedAt"].as_str().unwrap(),
    ] {
        assert!(body.contains(want), "body lacks {want:?}:\n{body}");
    }

    assert_clean(w, "the mail", msg["data"].as_str().unwrap(), &[]);
    assert_clean(
        w,
        "the SMTP server's reports",
        &format!("{:?}", smtp.seen),
        &[],
    );
}

/// A 127.0.0.1 port bound but not listening: connecting is refused, and no one else can
/// take the port while `_socket` lives.
fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_sends_one_mail_naming_the_vm_and_the_reason() {
    let (w, mut smtp) = setup().await;
    w.wa.set_health(Health::Single("disconnected"));
    let run = check(&w, &with_smtp(&w, &smtp.host())).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert_eq!(o["mail"], "sent", "{o}\n{}", run.stderr);
    assert_eq!(w.resets(), 1);
    let msg = the_one_mail(&mut smtp).await;
    assert_mail_for(&w, &smtp, &msg, &o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_sends_one_mail() {
    let (w, mut smtp) = setup().await;
    w.wa.set_health(Health::Single("unregistered"));
    let run = check(&w, &with_smtp(&w, &smtp.host())).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert_eq!(o["mail"], "sent", "{o}\n{}", run.stderr);
    assert_eq!(w.resets(), 0, "an alert resets nothing");
    let msg = the_one_mail(&mut smtp).await;
    assert_mail_for(&w, &smtp, &msg, &o);
    assert!(
        msg["subject"].as_str().unwrap().contains("unregistered"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_sends_no_mail() {
    let (w, mut smtp) = setup().await;
    let run = check(&w, &with_smtp(&w, &smtp.host())).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "healthy", "{o}");
    assert!(o.get("mail").is_none(), "{o}");
    assert_no_mail(&mut smtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_of_five_smtp_fields_send_no_mail_and_the_check_still_resets() {
    let (mut w, mut smtp) = setup().await;
    // Every run below resets: no boot grace after the previous one.
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.wa.set_health(Health::Single("disconnected"));
    for (i, missing) in SMTP_FIELDS.iter().enumerate() {
        let mut p = with_smtp(&w, &smtp.host());
        p.as_object_mut().unwrap().remove(*missing);
        let run = check(&w, &p).await;
        assert_eq!(run.code, Some(1), "without {missing}: {}", run.stderr);
        let o = run.outcome();
        assert_eq!(o["verdict"], "reset", "without {missing}: {o}");
        assert!(o.get("mail").is_none(), "without {missing}: {o}");
        assert_eq!(w.resets(), i + 1, "without {missing}");
    }
    assert_no_mail(&mut smtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mails_on_reset_and_not_with_four_fields() {
    let (mut w, mut smtp) = setup().await;
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.wa.set_health(Health::Single("disconnected"));
    let s = serve(&w).await;

    // All five fields: reset, one mail, the answer says so.
    let (status, o) = post_push(&s.url(), &with_smtp(&w, &smtp.host())).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["verdict"], "reset", "{o}");
    assert_eq!(o["mail"], "sent", "{o}\n{}", s.logs());
    assert_eq!(w.resets(), 1);
    let msg = the_one_mail(&mut smtp).await;
    assert_mail_for(&w, &smtp, &msg, &o);
    let mut answers = o.to_string();

    // Four: reset, no mail, a warning naming the fields that are there.
    let mut partial = with_smtp(&w, &smtp.host());
    partial.as_object_mut().unwrap().remove("smtpPassword");
    let (status, o) = post_push(&s.url(), &partial).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(o.get("mail").is_none(), "{o}");
    assert_eq!(w.resets(), 2);
    answers.push_str(&o.to_string());
    smtp.settle(QUIET).await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "a mail without all five fields: {:?}",
        smtp.seen
    );
    assert_eq!(smtp.saw("connect").len(), 1, "{:?}", smtp.seen);
    let until = Instant::now() + Duration::from_secs(5);
    while !s.logs().contains("some but not all five smtp fields") {
        assert!(
            Instant::now() < until,
            "no warning about the partial smtp settings:\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (code, _, logs) = tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert_clean(&w, "serve's logs", &logs, &[]);
    assert_clean(&w, "serve's answers", &answers, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_server_down_costs_the_mail_not_the_reset() {
    let (mut w, _smtp) = setup().await;
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.wa.set_health(Health::Single("disconnected"));

    // Nothing listens on the relay's port: refused at once.
    let (reserved, port) = refusing_port();
    let started = Instant::now();
    let run = check(&w, &with_smtp(&w, &format!("127.0.0.1:{port}"))).await;
    let took = started.elapsed();
    drop(reserved);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(o["operation"].is_string(), "{o}");
    assert_eq!(w.resets(), 1, "the reset happens without the mail");
    let mail = o["mail"].as_str().unwrap_or_else(|| panic!("no mail: {o}"));
    assert!(mail.starts_with("failed"), "{mail}");
    assert!(
        mail.contains(&format!("127.0.0.1:{port}")) && mail.contains("refused"),
        "{mail}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        run.stderr.contains("notification mail failed"),
        "{}",
        run.stderr
    );

    // A relay that accepts the connection and never speaks: the mail times out within
    // KEEPALIVE_SMTP_TIMEOUT_MS, the reset stands.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    w.set_env("KEEPALIVE_SMTP_TIMEOUT_MS", "1000");
    let started = Instant::now();
    let run = check(&w, &with_smtp(&w, &format!("127.0.0.1:{port}"))).await;
    let took = started.elapsed();
    hold.abort();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert_eq!(w.resets(), 2);
    let mail = o["mail"].as_str().unwrap_or_else(|| panic!("no mail: {o}"));
    assert!(
        mail.starts_with("failed") && mail.contains("timed out"),
        "{mail}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_show_nowhere_at_trace_level_even_when_the_relay_rejects_them() {
    let (mut w, mut smtp) = setup().await;
    w.set_env("RUST_LOG", "trace");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.wa.set_health(Health::Single("disconnected"));
    let wrong = format!("{SMTP_PASSWORD}-wrong");

    // `check`: sent, then rejected.
    let run = check(&w, &with_smtp(&w, &smtp.host())).await;
    assert_eq!(run.outcome()["mail"], "sent", "{}", run.stderr);
    let msg = smtp.wait_for("message").await;
    assert_clean(&w, "the mail", &msg.to_string(), &[]);
    let run = check(&w, &with_smtp_password(&w, &smtp.host(), &wrong)).await;
    assert_clean(&w, "check's output", &run.stdout, &[&wrong]);
    assert_clean(&w, "check's logs", &run.stderr, &[&wrong]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    let mail = o["mail"].as_str().unwrap();
    assert!(
        mail.starts_with("failed") && mail.contains("rejected the credentials"),
        "{mail}"
    );
    let auth = smtp.wait_for("auth").await;
    assert_eq!(
        (&auth["username"], &auth["success"]),
        (&json!(SMTP_USER), &json!(false))
    );

    // `serve`: the same two, in its answers and logs.
    let s = serve(&w).await;
    let mut answers = String::new();
    for password in [SMTP_PASSWORD, wrong.as_str()] {
        let (status, o) =
            post_push(&s.url(), &with_smtp_password(&w, &smtp.host(), password)).await;
        assert_eq!(status, 200, "{o}");
        assert_eq!(o["verdict"], "reset", "{o}");
        answers.push_str(&o.to_string());
    }
    assert!(answers.contains("\"mail\":\"sent\""), "{answers}");
    assert!(answers.contains("rejected the credentials"), "{answers}");
    smtp.settle(QUIET).await;
    assert_eq!(smtp.messages().len(), 2, "{:?}", smtp.seen);
    let (code, _, logs) = tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains("notification mail failed"),
        "the failed mail was not logged:\n{logs}"
    );
    assert_clean(&w, "serve's logs", &logs, &[&wrong]);
    assert_clean(&w, "serve's answers", &answers, &[&wrong]);
    for m in smtp.messages() {
        assert_clean(&w, "a mail", &m.to_string(), &[&wrong]);
    }
    assert_clean(
        &w,
        "the SMTP server's reports",
        &format!("{:?}", smtp.seen),
        &[&wrong],
    );
}
