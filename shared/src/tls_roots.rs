//! Root certificates for `https://` endpoints verified the ordinary way (the Graph API, a
//! bot's webhook): the system's store, or the PEM bundle that `SSL_CERT_FILE` names
//! (`SSL_CERT_DIR` too), as OpenSSL reads them. reqwest's own build carries a copy of
//! Mozilla's roots and ignores both variables; this client configuration does not.

use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// A TLS client configuration trusting the system's roots (or `SSL_CERT_FILE`'s).
#[derive(Debug, Clone)]
pub struct SystemRoots {
    pub config: Arc<ClientConfig>,
    /// Root certificates loaded.
    pub count: usize,
}

impl SystemRoots {
    /// Loads the roots once (a ~200 KB file on Debian: call it at start, not per request).
    /// A bundle named by `SSL_CERT_FILE` that yields no certificate is an error naming it;
    /// an empty system store is not (the caller warns: every `https://` call will then fail).
    pub fn load() -> Result<SystemRoots, String> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
        let named = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
        if added == 0 {
            if let Some(file) = named {
                let why = loaded
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "SSL_CERT_FILE: {} holds no usable PEM certificate{why}",
                    file.to_string_lossy()
                ));
            }
        }
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
