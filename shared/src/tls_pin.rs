//! Certificate pinning for the WhatsApp client's self-signed certificate.
//!
//! The web container serves a self-signed certificate, so ordinary verification cannot work
//! and turning verification off is not acceptable. Instead: on first contact the certificate
//! the server presents is captured (trust on first use) and stored by the caller; every later
//! contact accepts exactly that certificate and nothing else. The TLS handshake's signature is
//! still verified against the pinned certificate. This verifier is only ever installed in the
//! one HTTP client that talks to that one WhatsApp host.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};

/// What the verifier expects.
#[derive(Debug, Clone)]
pub enum Pin {
    /// First contact: accept the certificate presented and remember it.
    FirstUse,
    /// Accept only this certificate (DER).
    Certificate(Vec<u8>),
    /// Accept only the certificate with this SHA-256 fingerprint (`whatsAppTlsFingerprint`).
    Fingerprint(Fingerprint),
}

/// The SHA-256 of a DER certificate, written `sha256:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Fingerprint(out)
    }

    /// `sha256:` and 64 hex digits, either case, optionally in colon-separated pairs (as
    /// `openssl x509 -fingerprint -sha256` prints them). The error says what is wrong.
    pub fn parse(text: &str) -> Result<Fingerprint, &'static str> {
        let text = text.trim();
        let hex = match text.split_once(':') {
            Some((algo, rest)) if algo.eq_ignore_ascii_case("sha256") => rest,
            _ => return Err("must start with sha256:"),
        };
        let pairs: Vec<&str> = if hex.contains(':') {
            hex.split(':').collect()
        } else {
            (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..(i + 2).min(hex.len())).unwrap_or(""))
                .collect()
        };
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return Err("must be sha256: and 64 hex digits (the SHA-256 of the DER certificate)");
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(pairs) {
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| "holds a character that is not a hex digit")?;
        }
        Ok(Fingerprint(out))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

#[derive(Debug)]
pub struct PinningVerifier {
    pin: Pin,
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl PinningVerifier {
    pub fn new(pin: Pin) -> Arc<Self> {
        Arc::new(PinningVerifier {
            pin,
            seen: Mutex::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// The certificate the server presented in the last handshake (DER).
    pub fn seen(&self) -> Option<Vec<u8>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        match &self.pin {
            Pin::FirstUse => Ok(ServerCertVerified::assertion()),
            Pin::Certificate(der) if der.as_slice() == end_entity.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            Pin::Certificate(_) => Err(rustls::Error::General(
                "the WhatsApp client's certificate differs from the one pinned on first contact"
                    .into(),
            )),
            Pin::Fingerprint(want) if Fingerprint::of(end_entity) == *want => {
                Ok(ServerCertVerified::assertion())
            }
            Pin::Fingerprint(want) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    want: *want,
                    got: Fingerprint::of(end_entity),
                }))),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate whose fingerprint is not the pinned one.
#[derive(Debug)]
struct PinMismatch {
    want: Fingerprint,
    got: Fingerprint,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the certificate presented is {}, not the pinned {}",
            self.got, self.want
        )
    }
}

impl std::error::Error for PinMismatch {}

/// TLS that trusts exactly what `verifier` says, for a client builder's
/// `use_preconfigured_tls`.
pub fn pinned_tls_config(verifier: Arc<PinningVerifier>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// An HTTP client whose TLS trusts exactly what `verifier` says (plain http is unaffected).
pub fn pinned_client(verifier: Arc<PinningVerifier>) -> Result<reqwest::Client, String> {
    let config = pinned_tls_config(verifier)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms() {
        let fp = Fingerprint::of(b"certificate");
        let hex = fp.to_string();
        assert!(hex.starts_with("sha256:") && hex.len() == 7 + 64, "{hex}");
        let upper_pairs = format!(
            "SHA256:{}",
            fp.0.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        );
        for text in [
            hex.clone(),
            hex.to_uppercase(),
            upper_pairs,
            format!(" {hex} "),
        ] {
            assert_eq!(Fingerprint::parse(&text), Ok(fp), "{text}");
        }
        for bad in [
            "",
            "sha1:00",
            &hex[7..],
            &hex[..70],
            &format!("{hex}00"),
            &format!("sha256:{}", "zz".repeat(32)),
            &format!("sha256:{}", "ab:".repeat(32)),
            &format!("sha256:{}é", "a".repeat(63)),
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad}");
        }
    }
}
