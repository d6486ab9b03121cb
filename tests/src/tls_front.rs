//! Google's APIs over HTTPS, as keepalive reaches them in production
//! (compute.googleapis.com, secretmanager.googleapis.com), instead of the fakes' plain HTTP:
//! a front terminates TLS with a self-signed certificate and relays the bytes to the plain
//! fake; keepalive trusts that certificate through `SSL_CERT_FILE`. The bench's
//! `BENCH_GOOGLE_TLS=1` uses it: the front's half of each handshake runs on the harness's
//! CPU, as Google's runs on Google's, and what keepalive pays is its own half.

use crate::server::SelfSignedCert;
use std::collections::BTreeMap;
use std::path::Path;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// One TLS front; stops when dropped.
pub struct TlsFront {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// A front on 127.0.0.1 presenting `cert`, relaying to the plain-HTTP server at `backend`
    /// (`http://127.0.0.1:PORT`).
    pub async fn start(cert: &SelfSignedCert, backend: &str) -> TlsFront {
        let backend = backend
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("not a plain-HTTP fake: {backend}"))
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS front");
        let url = format!("https://{}", listener.local_addr().expect("front address"));
        let acceptor = TlsAcceptor::from(cert.server_config());
        // A server's accept loop: it ends when the front is dropped.
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    // Out of file descriptors, say: pause rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(&backend).await else {
                        return;
                    };
                    let _ = plain.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { url, task }
    }
}

/// Puts HTTPS fronts before the Compute Engine and Secret Manager fakes in `env` (their
/// endpoint variables) and trusts their certificate (`SSL_CERT_FILE`, written to `dir`).
pub async fn front_google(env: &mut BTreeMap<String, String>, dir: &Path) -> Vec<TlsFront> {
    let cert = SelfSignedCert::generate("googleapis-front");
    let pem = dir.join("googleapis-front.pem");
    std::fs::write(&pem, &cert.cert_pem).expect("write the front's certificate");
    env.insert("SSL_CERT_FILE".into(), pem.display().to_string());
    let mut fronts = Vec::new();
    for var in [
        "KEEPALIVE_COMPUTE_ENDPOINT",
        "KEEPALIVE_SECRETMANAGER_ENDPOINT",
    ] {
        let backend = env[var].clone();
        let front = TlsFront::start(&cert, &backend).await;
        env.insert(var.into(), front.url.clone());
        fronts.push(front);
    }
    fronts
}
