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

/// An HTTP client whose TLS trusts exactly what `verifier` says (plain http is unaffected).
pub fn pinned_client(verifier: Arc<PinningVerifier>) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}
