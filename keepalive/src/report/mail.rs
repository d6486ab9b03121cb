//! Sending a notification mail, as the original Node.js function sent them with nodemailer:
//! SMTP submission (port 587 unless `smtpHost` names another), STARTTLS required, then AUTH
//! with the payload's credentials. What a mail says is the kind's (`report/onprem.rs`).
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

use crate::config::{MailConfig, SMTP_CA_FILE_ENV};

/// The submission port, used when `smtpHost` carries none.
pub const DEFAULT_PORT: u16 = 587;

/// One mail: a subject line and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub body: String,
}

/// Why a mail could not be sent. No variant ever holds the SMTP password.
#[derive(thiserror::Error, Debug)]
pub enum MailError {
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
    opts: &MailConfig,
) -> Result<(), MailError> {
    let redactor = Redactor::new(&settings.username, settings.password.expose_secret());
    send_inner(settings, notice, opts, &redactor)
        .await
        .map_err(|e| redactor.scrub(e))
}

async fn send_inner(
    settings: &SmtpSettings,
    notice: &Notice,
    opts: &MailConfig,
    redactor: &Redactor,
) -> Result<(), MailError> {
    let (host, port) = parse_host(&settings.host)?;
    let server = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let message = build_message(settings, notice)?;

    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
        .map_err(|e| MailError::Tls {
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
        let tls_error = |e: lettre::transport::smtp::Error| MailError::Config {
            var: SMTP_CA_FILE_ENV,
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
        Err(_elapsed) => Err(MailError::Timeout {
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

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address → (host, port).
fn parse_host(raw: &str) -> Result<(String, u16), MailError> {
    let bad = |problem: String| MailError::BadHost { problem };
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

fn build_message(settings: &SmtpSettings, notice: &Notice) -> Result<Message, MailError> {
    let from = Mailbox::from_str(settings.from.trim()).map_err(|e| MailError::BadAddress {
        field: "smtpFrom",
        problem: format!("{:?}: {e}", shorten(&settings.from)),
    })?;
    let to = Mailboxes::from_str(settings.to.trim()).map_err(|e| MailError::BadAddress {
        field: "smtpTo",
        problem: format!("{:?}: {e}", shorten(&settings.to)),
    })?;
    if to.iter().next().is_none() {
        return Err(MailError::BadAddress {
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
        .map_err(|e| MailError::Message(e.to_string()))
}

/// Maps lettre's error to ours by what went wrong, not where lettre raised it.
fn classify(
    err: &lettre::transport::smtp::Error,
    server: String,
    username: &str,
    timeout: Duration,
    redactor: &Redactor,
) -> MailError {
    let detail = redactor.redact(&err.to_string());
    if err.is_timeout() {
        return MailError::Timeout {
            server,
            after: timeout,
        };
    }
    if err.is_tls() {
        return MailError::Tls { server, detail };
    }
    if let Some(io) = io_source(err) {
        // The I/O error says what happened; lettre's wrappers only add "Connection error: ".
        let detail = redactor.redact(&io.to_string());
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => MailError::ConnectionRefused { server },
            std::io::ErrorKind::TimedOut => MailError::Timeout {
                server,
                after: timeout,
            },
            // tokio-rustls reports handshake and certificate failures as InvalidData.
            std::io::ErrorKind::InvalidData => MailError::Tls { server, detail },
            _ => MailError::Connection { server, detail },
        };
    }
    if err.is_client() {
        if detail.contains("STARTTLS") {
            return MailError::NoStartTls { server };
        }
        if detail.contains("authentication mechanism") {
            return MailError::AuthRejected {
                server,
                username: username.to_string(),
                detail: "the server offers no AUTH mechanism this client speaks (PLAIN, LOGIN)"
                    .into(),
            };
        }
    }
    match err.status().map(|c| c.to_string()) {
        // 535 credentials invalid, 534 mechanism too weak, 454 temporary auth failure.
        Some(code) if matches!(code.as_str(), "535" | "534" | "454") => MailError::AuthRejected {
            server,
            username: username.to_string(),
            detail,
        },
        Some(_) => MailError::Rejected { server, detail },
        None => MailError::Smtp { server, detail },
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

    fn scrub(&self, err: MailError) -> MailError {
        let r = |s: String| self.redact(&s);
        match err {
            MailError::BadAddress { field, problem } => MailError::BadAddress {
                field,
                problem: r(problem),
            },
            MailError::BadHost { problem } => MailError::BadHost {
                problem: r(problem),
            },
            MailError::Config { var, problem } => MailError::Config {
                var,
                problem: r(problem),
            },
            MailError::Message(m) => MailError::Message(r(m)),
            MailError::ConnectionRefused { server } => {
                MailError::ConnectionRefused { server: r(server) }
            }
            MailError::Connection { server, detail } => MailError::Connection {
                server: r(server),
                detail: r(detail),
            },
            MailError::NoStartTls { server } => MailError::NoStartTls { server: r(server) },
            MailError::Tls { server, detail } => MailError::Tls {
                server: r(server),
                detail: r(detail),
            },
            MailError::AuthRejected {
                server,
                username,
                detail,
            } => MailError::AuthRejected {
                server: r(server),
                username: r(username),
                detail: r(detail),
            },
            MailError::Rejected { server, detail } => MailError::Rejected {
                server: r(server),
                detail: r(detail),
            },
            MailError::Timeout { server, after } => MailError::Timeout {
                server: r(server),
                after,
            },
            MailError::Smtp { server, detail } => MailError::Smtp {
                server: r(server),
                detail: r(detail),
            },
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Control characters and runs of white space become one space; cut at `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
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
mod tests {
    use super::*;

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
}
