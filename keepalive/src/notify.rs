//! E-mail notices on every reset and every alert, as the original Node.js function sent them
//! with nodemailer: SMTP submission (port 587 unless `smtpHost` names another), STARTTLS
//! required, then AUTH with the payload's credentials.
//!
//! A server that does not offer STARTTLS, or whose certificate does not verify, never sees the
//! credentials or the mail. Extra trusted roots (a private relay's CA, or a test's) come from
//! the PEM file named by `KEEPALIVE_SMTP_CA_FILE`, on top of the system's roots.
//!
//! Every error names the problem (bad address, refused connection, TLS, rejected credentials,
//! timeout) and never carries the SMTP password, in clear or in the base64 forms that AUTH
//! PLAIN and AUTH LOGIN put on the wire, even when a server echoes them back.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::{ContentType, To};
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use shared::payload::SmtpSettings;

/// The submission port, used when `smtpHost` carries none.
pub const DEFAULT_PORT: u16 = 587;
/// Names a PEM file of extra root certificates to trust for SMTP's STARTTLS.
pub const CA_FILE_ENV: &str = "KEEPALIVE_SMTP_CA_FILE";
/// Bound on one whole send, in milliseconds (connect, STARTTLS, AUTH, the mail, QUIT).
pub const TIMEOUT_ENV: &str = "KEEPALIVE_SMTP_TIMEOUT_MS";
/// Default bound on one whole send.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// How mail is sent; the same for every payload.
#[derive(Debug, Clone)]
pub struct MailOptions {
    /// Upper bound on one whole [`send`].
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the system's roots (from `KEEPALIVE_SMTP_CA_FILE`).
    pub extra_root_ca_pem: Option<Vec<u8>>,
}

impl Default for MailOptions {
    fn default() -> Self {
        MailOptions {
            timeout: DEFAULT_TIMEOUT,
            extra_root_ca_pem: None,
        }
    }
}

impl MailOptions {
    /// Reads `KEEPALIVE_SMTP_CA_FILE` (optional) and `KEEPALIVE_SMTP_TIMEOUT_MS` (default 20000).
    pub fn from_env() -> Result<Self, NotifyError> {
        let ca_file = std::env::var(CA_FILE_ENV).ok();
        let timeout_ms = std::env::var(TIMEOUT_ENV).ok();
        Self::from_values(ca_file.as_deref(), timeout_ms.as_deref())
    }

    /// [`MailOptions::from_env`] on given values (unset or empty: the default).
    pub fn from_values(
        ca_file: Option<&str>,
        timeout_ms: Option<&str>,
    ) -> Result<Self, NotifyError> {
        let mut opts = MailOptions::default();
        if let Some(raw) = timeout_ms.map(str::trim).filter(|s| !s.is_empty()) {
            match raw.parse::<u64>() {
                Ok(ms) if ms > 0 => opts.timeout = Duration::from_millis(ms),
                _ => {
                    return Err(NotifyError::Config {
                        var: TIMEOUT_ENV,
                        problem: format!("must be a positive number of milliseconds, got {raw:?}"),
                    })
                }
            }
        }
        if let Some(path) = ca_file.filter(|s| !s.trim().is_empty()) {
            let pem = std::fs::read(path).map_err(|e| NotifyError::Config {
                var: CA_FILE_ENV,
                problem: format!("cannot read {path}: {e}"),
            })?;
            check_pem(&pem).map_err(|problem| NotifyError::Config {
                var: CA_FILE_ENV,
                problem: format!("{path}: {problem}"),
            })?;
            opts.extra_root_ca_pem = Some(pem);
        }
        Ok(opts)
    }
}

/// One mail: a subject line and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub body: String,
}

/// Why a mail could not be sent. No variant ever holds the SMTP password.
#[derive(thiserror::Error, Debug)]
pub enum NotifyError {
    /// `smtpFrom` or `smtpTo` is not an address (`field` is the payload key).
    #[error("payload field `{field}` is not a usable e-mail address: {problem}")]
    BadAddress {
        field: &'static str,
        problem: String,
    },
    /// `smtpHost` is not `host` or `host:port`.
    #[error("payload field `smtpHost` is not host or host:port: {problem}")]
    BadHost { problem: String },
    /// A mail setting of the service itself (an environment variable) is unusable.
    #[error("{var} {problem}")]
    Config { var: &'static str, problem: String },
    /// The message could not be put together.
    #[error("could not build the mail: {0}")]
    Message(String),
    #[error("SMTP server {server} refused the connection")]
    ConnectionRefused { server: String },
    /// Name resolution, connect or a broken connection.
    #[error("could not talk to SMTP server {server}: {detail}")]
    Connection { server: String, detail: String },
    #[error(
        "SMTP server {server} does not offer STARTTLS; refusing to send credentials or mail \
         over an unencrypted connection"
    )]
    NoStartTls { server: String },
    /// The TLS handshake failed, most often because the certificate did not verify.
    #[error("TLS with SMTP server {server} failed: {detail}")]
    Tls { server: String, detail: String },
    #[error("SMTP server {server} rejected the credentials of user {username:?}: {detail}")]
    AuthRejected {
        server: String,
        username: String,
        detail: String,
    },
    /// The server answered the mail itself (sender, recipient or content) with an error.
    #[error("SMTP server {server} refused the mail: {detail}")]
    Rejected { server: String, detail: String },
    #[error("sending mail via {server} timed out after {after:?}")]
    Timeout { server: String, after: Duration },
    #[error("SMTP error with {server}: {detail}")]
    Smtp { server: String, detail: String },
}

/// Sends `notice` with `settings`, STARTTLS required, within `opts.timeout`.
pub async fn send(
    settings: &SmtpSettings,
    notice: &Notice,
    opts: &MailOptions,
) -> Result<(), NotifyError> {
    let redactor = Redactor::new(&settings.username, settings.password.expose_secret());
    send_inner(settings, notice, opts, &redactor)
        .await
        .map_err(|e| redactor.scrub(e))
}

async fn send_inner(
    settings: &SmtpSettings,
    notice: &Notice,
    opts: &MailOptions,
    redactor: &Redactor,
) -> Result<(), NotifyError> {
    let (host, port) = parse_host(&settings.host)?;
    let server = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let message = build_message(settings, notice)?;

    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
        .map_err(|e| NotifyError::Tls {
            server: server.clone(),
            detail: e.to_string(),
        })?
        .port(port)
        .timeout(Some(opts.timeout))
        .credentials(Credentials::new(
            settings.username.clone(),
            settings.password.expose_secret().to_owned(),
        ));
    if let Some(pem) = &opts.extra_root_ca_pem {
        let tls_error = |e: lettre::transport::smtp::Error| NotifyError::Config {
            var: CA_FILE_ENV,
            problem: format!("holds no usable certificate: {e}"),
        };
        let params = TlsParameters::builder(host.clone())
            .add_root_certificate(Certificate::from_pem(pem).map_err(tls_error)?)
            .build_rustls()
            .map_err(tls_error)?;
        builder = builder.tls(Tls::Required(params));
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();

    match tokio::time::timeout(opts.timeout, transport.send(message)).await {
        Err(_elapsed) => Err(NotifyError::Timeout {
            server,
            after: opts.timeout,
        }),
        Ok(Err(e)) => Err(classify(
            &e,
            server,
            &settings.username,
            opts.timeout,
            redactor,
        )),
        Ok(Ok(_response)) => Ok(()),
    }
}

/// The mail for one outcome of a check.
pub fn notice_for(
    verdict: &str,
    reason: &str,
    vm: &str,
    zone: &str,
    project: &str,
    time: &str,
) -> Notice {
    let short_reason = one_line(reason, 120);
    let (subject, opening) = match verdict {
        "reset" => (
            format!("[keepalive] VM {vm} reset: {short_reason}"),
            format!("The keepalive reset the VM {vm}: its WhatsApp Business API client was down."),
        ),
        "alert" => (
            format!("[keepalive] ALERT {vm}: {short_reason}"),
            format!(
                "The keepalive raised an alert for the VM {vm}. A reset would not help: \
                 this needs a person."
            ),
        ),
        other => (
            format!("[keepalive] VM {vm} {other}: {short_reason}"),
            format!("The keepalive checked the VM {vm}: {other}."),
        ),
    };
    let mut body = format!(
        "{opening}\n\n\
         Reason:  {reason}\n\
         VM:      {vm}\n\
         Zone:    {zone}\n\
         Project: {project}\n\
         Time:    {time}\n\
         Verdict: {verdict}\n"
    );
    if ![project, zone, vm]
        .iter()
        .any(|v| v.is_empty() || *v == "-")
    {
        body.push_str(&format!(
            "\nConsole: https://console.cloud.google.com/compute/instancesDetail/zones/{zone}/instances/{vm}?project={project}\n"
        ));
    }
    body.push_str("\n-- \nSent by the WhatsApp Business API keepalive.\n");
    Notice {
        subject: one_line(&subject, 200),
        body,
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address → (host, port).
fn parse_host(raw: &str) -> Result<(String, u16), NotifyError> {
    let bad = |problem: String| NotifyError::BadHost { problem };
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if raw.contains("://") || raw.contains('/') || raw.contains('@') {
        return Err(bad(format!("{raw:?} is a URL; give the host name only")));
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(format!("{raw:?} has an unclosed '['")))?;
        match after {
            "" => (h, None),
            p if p.starts_with(':') => (h, Some(&p[1..])),
            _ => return Err(bad(format!("{raw:?} has text after ']'"))),
        }
    } else if raw.matches(':').count() == 1 {
        let (h, p) = raw.split_once(':').expect("one colon");
        (h, Some(p))
    } else {
        // No colon, or a bare IPv6 address (several colons, no port).
        (raw, None)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad(format!("port {p:?} is not a number from 1 to 65535"))),
        },
    };
    let valid = !host.is_empty()
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
    if !valid {
        return Err(bad(format!("{host:?} is not a host name or IP address")));
    }
    Ok((host.to_string(), port))
}

fn build_message(settings: &SmtpSettings, notice: &Notice) -> Result<Message, NotifyError> {
    let from = Mailbox::from_str(settings.from.trim()).map_err(|e| NotifyError::BadAddress {
        field: "smtpFrom",
        problem: format!("{:?}: {e}", shorten(&settings.from)),
    })?;
    let to = Mailboxes::from_str(settings.to.trim()).map_err(|e| NotifyError::BadAddress {
        field: "smtpTo",
        problem: format!("{:?}: {e}", shorten(&settings.to)),
    })?;
    if to.iter().next().is_none() {
        return Err(NotifyError::BadAddress {
            field: "smtpTo",
            problem: "names no recipient".into(),
        });
    }
    Message::builder()
        .from(from)
        .mailbox(To::from(to))
        .message_id(None)
        .subject(one_line(&notice.subject, 200))
        .header(ContentType::TEXT_PLAIN)
        .body(notice.body.clone())
        .map_err(|e| NotifyError::Message(e.to_string()))
}

/// Maps lettre's error to ours by what went wrong, not where lettre raised it.
fn classify(
    err: &lettre::transport::smtp::Error,
    server: String,
    username: &str,
    timeout: Duration,
    redactor: &Redactor,
) -> NotifyError {
    let detail = redactor.redact(&err.to_string());
    if err.is_timeout() {
        return NotifyError::Timeout {
            server,
            after: timeout,
        };
    }
    if err.is_tls() {
        return NotifyError::Tls { server, detail };
    }
    if let Some(io) = io_source(err) {
        // The I/O error says what happened; lettre's wrappers only add "Connection error: ".
        let detail = redactor.redact(&io.to_string());
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => NotifyError::ConnectionRefused { server },
            std::io::ErrorKind::TimedOut => NotifyError::Timeout {
                server,
                after: timeout,
            },
            // tokio-rustls reports handshake and certificate failures as InvalidData.
            std::io::ErrorKind::InvalidData => NotifyError::Tls { server, detail },
            _ => NotifyError::Connection { server, detail },
        };
    }
    if err.is_client() {
        if detail.contains("STARTTLS") {
            return NotifyError::NoStartTls { server };
        }
        if detail.contains("authentication mechanism") {
            return NotifyError::AuthRejected {
                server,
                username: username.to_string(),
                detail: "the server offers no AUTH mechanism this client speaks (PLAIN, LOGIN)"
                    .into(),
            };
        }
    }
    match err.status().map(|c| c.to_string()) {
        // 535 credentials invalid, 534 mechanism too weak, 454 temporary auth failure.
        Some(code) if matches!(code.as_str(), "535" | "534" | "454") => NotifyError::AuthRejected {
            server,
            username: username.to_string(),
            detail,
        },
        Some(_) => NotifyError::Rejected { server, detail },
        None => NotifyError::Smtp { server, detail },
    }
}

fn io_source<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = e.source();
    }
    None
}

/// Removes the password, and the forms AUTH puts it on the wire in, from any text.
struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    fn new(username: &str, password: &str) -> Self {
        let mut needles = Vec::new();
        if !password.is_empty() {
            needles.push(password.to_string());
            needles.push(base64(password.as_bytes()));
            needles.push(base64(format!("\0{username}\0{password}").as_bytes()));
            needles.push(base64(
                format!("{username}\0{username}\0{password}").as_bytes(),
            ));
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Redactor { needles }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), "[redacted]");
            }
        }
        out
    }

    fn scrub(&self, err: NotifyError) -> NotifyError {
        let r = |s: String| self.redact(&s);
        match err {
            NotifyError::BadAddress { field, problem } => NotifyError::BadAddress {
                field,
                problem: r(problem),
            },
            NotifyError::BadHost { problem } => NotifyError::BadHost {
                problem: r(problem),
            },
            NotifyError::Config { var, problem } => NotifyError::Config {
                var,
                problem: r(problem),
            },
            NotifyError::Message(m) => NotifyError::Message(r(m)),
            NotifyError::ConnectionRefused { server } => {
                NotifyError::ConnectionRefused { server: r(server) }
            }
            NotifyError::Connection { server, detail } => NotifyError::Connection {
                server: r(server),
                detail: r(detail),
            },
            NotifyError::NoStartTls { server } => NotifyError::NoStartTls { server: r(server) },
            NotifyError::Tls { server, detail } => NotifyError::Tls {
                server: r(server),
                detail: r(detail),
            },
            NotifyError::AuthRejected {
                server,
                username,
                detail,
            } => NotifyError::AuthRejected {
                server: r(server),
                username: r(username),
                detail: r(detail),
            },
            NotifyError::Rejected { server, detail } => NotifyError::Rejected {
                server: r(server),
                detail: r(detail),
            },
            NotifyError::Timeout { server, after } => NotifyError::Timeout {
                server: r(server),
                after,
            },
            NotifyError::Smtp { server, detail } => NotifyError::Smtp {
                server: r(server),
                detail: r(detail),
            },
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn check_pem(pem: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Certificate::from_pem(pem)
        .map(|_| ())
        .map_err(|e| format!("holds an unreadable certificate: {e}"))
}

/// Control characters and runs of white space become one space; cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cleaned: String = joined
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.chars().count() > max {
        let mut cut: String = cleaned.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        cleaned
    }
}

fn shorten(text: &str) -> String {
    one_line(text, 100)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn host_forms() {
        let ok = [
            ("smtp.example.com", ("smtp.example.com", 587)),
            (" smtp.example.com:2525 ", ("smtp.example.com", 2525)),
            ("127.0.0.1:25", ("127.0.0.1", 25)),
            ("[::1]:2525", ("::1", 2525)),
            ("[::1]", ("::1", 587)),
            ("::1", ("::1", 587)),
        ];
        for (raw, (host, port)) in ok {
            assert_eq!(parse_host(raw).unwrap(), (host.to_string(), port), "{raw}");
        }
        for raw in [
            "", "smtp://x", "x:0", "x:70000", "x:abc", "a b", "[::1", "u@x",
        ] {
            let err = parse_host(raw).unwrap_err().to_string();
            assert!(err.contains("smtpHost"), "{raw}: {err}");
        }
    }

    #[test]
    fn redactor_removes_password_and_its_auth_encodings() {
        let r = Redactor::new("mailer", "pa55word");
        let plain = base64(b"\0mailer\0pa55word");
        let text = format!("535 nope pa55word {plain} {}", base64(b"pa55word"));
        let out = r.redact(&text);
        assert!(!out.contains("pa55word"), "{out}");
        assert!(!out.contains(&plain), "{out}");
        assert!(!out.contains(&base64(b"pa55word")), "{out}");
        assert!(out.starts_with("535 nope [redacted]"), "{out}");
    }

    #[test]
    fn subject_is_one_bounded_line() {
        let n = notice_for("reset", "a\r\nb\tc", "vm-1", "z", "p", "t");
        assert_eq!(n.subject, "[keepalive] VM vm-1 reset: a b c");
        let long = "x".repeat(500);
        let n = notice_for("alert", &long, "vm-1", "z", "p", "t");
        assert!(n.subject.chars().count() <= 200);
        assert!(n.body.contains(&long));
        assert!(n.body.contains("instances/vm-1?project=p"), "{}", n.body);
        let n = notice_for("reset", "r", "vm-1", "z", "-", "t");
        assert!(!n.body.contains("console.cloud.google.com"), "{}", n.body);
    }

    #[test]
    fn options_from_values() {
        let o = MailOptions::from_values(None, None).unwrap();
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        assert!(o.extra_root_ca_pem.is_none());
        let o = MailOptions::from_values(Some(""), Some("1500")).unwrap();
        assert_eq!(o.timeout, Duration::from_millis(1500));
        let e = MailOptions::from_values(None, Some("soon"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(TIMEOUT_ENV), "{e}");
        let e = MailOptions::from_values(Some("/nonexistent/ca.pem"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(CA_FILE_ENV) && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
