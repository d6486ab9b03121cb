//! Meta's verification handshake against a bot's webhook endpoint (`meta-cloud-api.md` §5):
//! `GET <url>?hub.mode=subscribe&hub.challenge=<digits>&hub.verify_token=<token>` must answer
//! 200 with the bare challenge. Meta runs it before it accepts a callback URL; running it
//! ourselves shows whether Meta could still verify the endpoint.
//!
//! The verify token goes only into `hub.verify_token`: errors never carry the URL with its
//! query, and an answer that echoes the token is cleaned of it.

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;
use url::Url;

use crate::google::error::describe_reqwest;

/// The most of an answer read: a challenge is a dozen digits.
pub const MAX_HANDSHAKE_ANSWER_BYTES: usize = 16 * 1024;

/// How a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// An answer other than 200 (redirects are not followed).
    Status { status: u16, excerpt: String },
    /// 200, but the body (trimmed) is not the challenge.
    WrongBody { excerpt: String },
    /// No answer within the time allowed.
    Timeout { after: Duration },
    /// No answer: refused, reset, DNS, TLS (a certificate that does not verify).
    Unreachable { detail: String },
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::Status { status, excerpt } if excerpt.is_empty() => {
                write!(f, "answered {status}")
            }
            HandshakeFailure::Status { status, excerpt } => {
                write!(f, "answered {status}: {excerpt:?}")
            }
            HandshakeFailure::WrongBody { excerpt } => {
                write!(f, "answered 200 without the challenge: {excerpt:?}")
            }
            HandshakeFailure::Timeout { after } => {
                write!(f, "gave no answer within {} ms", after.as_millis())
            }
            HandshakeFailure::Unreachable { detail } => write!(f, "could not be reached: {detail}"),
        }
    }
}

/// A fresh challenge: ten random digits, the first not 0 (as Meta sends them).
pub fn new_challenge() -> String {
    rand::rng()
        .random_range(1_000_000_000u64..10_000_000_000)
        .to_string()
}

/// Runs the handshake against `url` (its own query kept) within `timeout`. `http` should not
/// follow redirects.
pub async fn handshake(
    http: &reqwest::Client,
    url: &Url,
    verify_token: &SecretString,
    timeout: Duration,
) -> Result<(), HandshakeFailure> {
    let challenge = new_challenge();
    let mut target = url.clone();
    target
        .query_pairs_mut()
        .append_pair("hub.mode", "subscribe")
        .append_pair("hub.challenge", &challenge)
        .append_pair("hub.verify_token", verify_token.expose_secret());
    let secret = verify_token.expose_secret();
    let clean = |text: &str| excerpt(text, secret);
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            HandshakeFailure::Timeout { after: timeout }
        } else {
            // Without the URL: its query holds the verify token.
            HandshakeFailure::Unreachable {
                detail: clean(&describe_reqwest(&e.without_url())),
            }
        }
    };
    let read = async {
        let mut resp = http.get(target).send().await.map_err(failed)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            let room = MAX_HANDSHAKE_ANSWER_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    let (status, body) = match tokio::time::timeout(timeout, read).await {
        Ok(r) => r?,
        Err(_) => return Err(HandshakeFailure::Timeout { after: timeout }),
    };
    if status != 200 {
        return Err(HandshakeFailure::Status {
            status,
            excerpt: clean(&body),
        });
    }
    if body.trim() == challenge {
        Ok(())
    } else {
        Err(HandshakeFailure::WrongBody {
            excerpt: clean(&body),
        })
    }
}

/// At most 100 characters of `text` on one line, without `secret`.
fn excerpt(text: &str, secret: &str) -> String {
    let mut text = text.trim().to_string();
    if !secret.is_empty() && text.contains(secret) {
        text = text.replace(secret, "[REDACTED]");
    }
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_ten_fresh_digits() {
        let a = new_challenge();
        assert_eq!(a.len(), 10);
        assert!(a.bytes().all(|b| b.is_ascii_digit()) && !a.starts_with('0'));
        assert!((0..5).any(|_| new_challenge() != a));
    }

    #[test]
    fn excerpts_are_short_single_lines_without_the_token() {
        assert_eq!(
            excerpt(" got vt-1\r\nback ", "vt-1"),
            "got [REDACTED]  back"
        );
        assert_eq!(excerpt(&"x".repeat(500), "vt").chars().count(), 101);
        let f = HandshakeFailure::Status {
            status: 403,
            excerpt: String::new(),
        };
        assert_eq!(f.to_string(), "answered 403");
    }
}
