//! Root certificates for `https://` endpoints verified the ordinary way (the Graph API, a
//! bot's webhook): the system's store, or the PEM bundle that `SSL_CERT_FILE` names
//! (`SSL_CERT_DIR` too), as OpenSSL reads them. The On-Premises clients without a pinned
//! fingerprint are verified against the same roots. reqwest's own build carries a copy of
//! Mozilla's roots and ignores both variables; this client configuration does not.

use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// A TLS client configuration trusting the system's roots (or `SSL_CERT_FILE`'s).
#[derive(Debug, Clone)]
pub struct SystemRoots {
    pub config: Arc<ClientConfig>,
    /// Root certificates loaded.
    pub count: usize,
}

impl SystemRoots {
    /// Loads the roots once (a ~200 KB file on Debian: call it at start, not per request):
    /// the PEM bundle `cert_file` (what `SSL_CERT_FILE` names) when given, else the
    /// system's store. A bundle that cannot be read or yields no certificate is an error
    /// naming it; an empty system store is not (the caller warns: every `https://` call
    /// will then fail).
    pub fn load(cert_file: Option<&Path>) -> Result<SystemRoots, String> {
        let mut store = RootCertStore::empty();
        let added = match cert_file {
            Some(file) => {
                let problem = |p: String| format!("SSL_CERT_FILE: {}: {p}", file.display());
                let certs = CertificateDer::pem_file_iter(file)
                    .map_err(|e| problem(format!("cannot be read: {e}")))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| problem(format!("holds an unreadable certificate: {e}")))?;
                let (added, _ignored) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(problem(
                        "holds no usable PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                    ));
                }
                added
            }
            None => {
                let loaded = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(loaded.certs).0
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(SystemRoots {
            config: Arc::new(config),
            count: added,
        })
    }

    /// A reqwest builder whose TLS trusts these roots, never follows a redirect (it would
    /// carry a token elsewhere), ignores proxy variables and sets `TCP_NODELAY`.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_preconfigured_tls((*self.config).clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .user_agent(concat!("whatsapp-keepalive/", env!("CARGO_PKG_VERSION")))
    }
}

#[cfg(test)]
mod tests {
    use super::SystemRoots;
    use std::path::Path;

    #[test]
    fn a_named_bundle_that_gives_no_root_is_an_error_naming_it() {
        let missing = Path::new("/nonexistent/roots.pem");
        let e = SystemRoots::load(Some(missing)).unwrap_err();
        assert!(
            e.starts_with("SSL_CERT_FILE: /nonexistent/roots.pem: cannot be read"),
            "{e}"
        );

        let empty = std::env::temp_dir().join(format!("roots-{}.pem", std::process::id()));
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = SystemRoots::load(Some(&empty)).unwrap_err();
        std::fs::remove_file(&empty).unwrap();
        assert!(
            e.ends_with("holds no usable PEM certificate (-----BEGIN CERTIFICATE-----)"),
            "{e}"
        );
    }
}
