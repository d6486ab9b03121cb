//! What the fakes share: a real HTTP/1.1 server on `127.0.0.1` (plain, or HTTPS with a
//! self-signed certificate generated at start, see [`SelfSignedCert`]) that records every
//! request, sets `TCP_NODELAY` on every accepted connection, writes each answer in one piece
//! (buffered body, `content-length`, one flattened write; or, marked [`Streamed`], as it is
//! produced), can be stopped (listener closed,
//! connections in progress dropped) and restarted on the same port, and shuts down when
//! dropped. Plus small helpers (auth headers, JSON answers, timestamps, a temporary directory).
//!
//! Every fake runs on one shared background runtime (two worker threads of its own), not on
//! the test's runtime: a test may block its thread (`std::process::Command::output`, a
//! current-thread `#[tokio::test]`) and the fakes keep answering.

use std::{
    convert::Infallible,
    fmt, io,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
    Router,
};
use bytes::Bytes;
use http::{header, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{mpsc, oneshot},
    task::{JoinHandle, JoinSet},
};
use tower::ServiceExt as _;

mod faults;
mod helpers;

pub use faults::{Fault, Faults};
pub use helpers::*;

/// Largest request body the fakes read (anything bigger closes the connection).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade into every other
/// request the fake answers).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request as a fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// Path and query exactly as sent, e.g. `/v1/health` or `/x?requestId=...`.
    pub path_and_query: String,
    /// Path only.
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    /// All headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
    /// When the request head and body had been read.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// First value of a query parameter (percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref(), name)
    }

    /// The bearer token of the `Authorization` header, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization").and_then(strip_bearer)
    }
}

/// Marker put into a response's extensions by a handler whose answer must go out as it is
/// produced (chunked, no `content-length`) rather than buffered: an answer too big to hold.
#[derive(Clone, Copy, Debug)]
pub struct Streamed;

/// Marker put into a response's extensions by a handler that wants the connection dropped
/// without an answer (the client sees the connection closed / reset).
#[derive(Clone, Copy, Debug)]
pub struct CloseConnection;

impl fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection closed on purpose by the fake")
    }
}

impl std::error::Error for CloseConnection {}

/// A response that makes the server drop the connection without answering.
pub fn close_connection() -> Response {
    let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    resp.extensions_mut().insert(CloseConnection);
    resp
}

struct Running {
    stop_tx: oneshot::Sender<()>,
    /// Asks the accept loop to drop every connection in progress (and acknowledge).
    drop_tx: mpsc::UnboundedSender<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// The TLS configuration of an HTTPS server, read at every accepted connection (so that a
/// new certificate applies to the next connections).
type TlsConfig = Arc<Mutex<Arc<rustls::ServerConfig>>>;

/// A self-signed certificate (ECDSA P-256) for `127.0.0.1` (IP SAN) and `localhost` (DNS
/// SAN), and its key: what an HTTPS fake serves.
#[derive(Clone)]
pub struct SelfSignedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl fmt::Debug for SelfSignedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSignedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl SelfSignedCert {
    /// Generates a new key and certificate (common name `common_name`).
    pub fn generate(common_name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("generate a P-256 key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.self_signed(&key).expect("self-sign the certificate");
        SelfSignedCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }

    /// A rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`)
    /// presenting this certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions of the ring provider")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .expect("TLS server configuration");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A running HTTP server on `127.0.0.1` serving an axum [`Router`].
pub struct HttpServer {
    addr: SocketAddr,
    router: Router,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    running: Mutex<Option<Running>>,
    tls: Option<TlsConfig>,
}

impl HttpServer {
    /// Binds `127.0.0.1:0` and serves `router` on a tokio task.
    pub async fn start(router: Router) -> io::Result<Self> {
        Self::start_with(router, None).await
    }

    /// Like [`start`](Self::start), over TLS with `config` (see
    /// [`SelfSignedCert::server_config`]). A failed handshake just closes the connection.
    pub async fn start_tls(router: Router, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        Self::start_with(router, Some(Arc::new(Mutex::new(config)))).await
    }

    async fn start_with(router: Router, tls: Option<TlsConfig>) -> io::Result<Self> {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let server = HttpServer {
            addr,
            router,
            requests: Arc::new(Mutex::new(Vec::new())),
            running: Mutex::new(None),
            tls,
        };
        let running = server.spawn(listener);
        *lock(&server.running) = Some(running);
        Ok(server)
    }

    fn spawn(&self, listener: TcpListener) -> Running {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (drop_tx, drop_rx) = mpsc::unbounded_channel();
        let task = runtime().spawn(accept_loop(
            listener,
            self.router.clone(),
            self.requests.clone(),
            self.tls.clone(),
            stop_rx,
            drop_rx,
        ));
        Running {
            stop_tx,
            drop_tx,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `config` to the connections accepted from now on (connections in progress
    /// keep theirs: see [`drop_connections`](Self::drop_connections)). Does nothing on a
    /// plain HTTP server.
    pub fn set_tls_config(&self, config: Arc<rustls::ServerConfig>) {
        if let Some(tls) = &self.tls {
            *lock(tls) = config;
        }
    }

    /// Drops every connection in progress (kept-alive ones included), keeping the listener
    /// open; returns once they are gone.
    pub async fn drop_connections(&self) {
        if let Some(ack_rx) = self.request_drop_connections() {
            let _ = ack_rx.await;
        }
    }

    /// Like [`drop_connections`](Self::drop_connections) without waiting: the connections
    /// go shortly after (the answer tells when, if awaited). `None` when stopped.
    pub fn request_drop_connections(&self) -> Option<oneshot::Receiver<()>> {
        let drop_tx = lock(&self.running).as_ref().map(|r| r.drop_tx.clone())?;
        let (ack_tx, ack_rx) = oneshot::channel();
        drop_tx.send(ack_tx).ok()?;
        Some(ack_rx)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.requests).clear();
    }

    /// Whether the listener is open.
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// Closes the listener (further connections are refused) and drops every connection in
    /// progress (requests waiting for an answer see the connection closed). Returns once
    /// all of that has happened. Does nothing if already stopped.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(Running { stop_tx, task, .. }) = running {
            let _ = stop_tx.send(());
            let _ = task.await;
        }
    }

    /// Listens again on the same port (after [`stop`](Self::stop)). Does nothing if running.
    pub async fn restart(&self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        let running = self.spawn(listener);
        let mut guard = lock(&self.running);
        if guard.is_none() {
            *guard = Some(running);
        } else {
            running.task.abort();
        }
        Ok(())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.running).take() {
            // Aborting the accept task drops the listener and its JoinSet, which aborts every
            // connection task.
            running.task.abort();
        }
    }
}

/// The runtime every fake runs on: its own two worker threads, independent of the test's
/// runtime, so that fakes keep answering while a test blocks (e.g. on `std::process`
/// waiting for the keepalive binary) or runs on a current-thread runtime.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-servers")
            .enable_all()
            .build()
            .expect("build the fakes' runtime")
    })
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    // Register the listener with the fakes' runtime, not the caller's.
    let _enter = runtime().enter();
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    tls: Option<TlsConfig>,
    mut stop_rx: oneshot::Receiver<()>,
    mut drop_rx: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop_rx => break,
            Some(ack) = drop_rx.recv() => {
                conns.shutdown().await;
                let _ = ack.send(());
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let config = tls.as_ref().map(|t| lock(t).clone());
                    conns.spawn(serve_connection(stream, config, router.clone(), requests.clone()));
                }
                Err(err) => {
                    tracing::debug!(%err, "fake server: accept failed");
                    // E.g. out of file descriptors: do not spin.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "fake server: TCP_NODELAY failed");
    }
    debug_assert!(stream.nodelay().unwrap_or(true), "TCP_NODELAY not set");
    match tls {
        None => serve_io(stream, router, requests).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => serve_io(tls_stream, router, requests).await,
                Ok(Err(err)) => tracing::debug!(%err, "fake server: TLS handshake failed"),
                Err(_) => tracing::debug!("fake server: TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<S>(stream: S, router: Router, requests: Arc<Mutex<Vec<RecordedRequest>>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle(router.clone(), requests.clone(), req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Headers and body copied into one buffer, written with one write.
        .writev(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = conn.await;
}

async fn handle(
    router: Router,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, CloseConnection> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), MAX_BODY)
        .await
        .map_err(|_| CloseConnection)?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let recorded = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path_and_query,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        received_at: Instant::now(),
    };
    lock(&requests).push(recorded);

    let req = Request::from_parts(parts, Body::from(body));
    let resp = match router.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if resp.extensions().get::<CloseConnection>().is_some() {
        return Err(CloseConnection);
    }
    if resp.extensions().get::<Streamed>().is_some() {
        return Ok(resp);
    }
    // Buffer the whole answer so that it goes out with a content-length, in one write.
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| CloseConnection)?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// A future that never completes: what a handler awaits to "hang".
pub async fn hang() -> Infallible {
    std::future::pending::<Infallible>().await
}

/// A JSON answer with the given status.
pub fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A plain answer with the given status, content type and body.
pub fn raw_response(status: u16, content_type: &str, body: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.into()).into_response();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// `url`, `requests`, `clear_requests`, `stop` and `restart` of a fake that serves through a
/// field `server: HttpServer` (invoked inside its `impl`).
macro_rules! server_controls {
    () => {
        /// Base URL, e.g. `http://127.0.0.1:PORT`.
        pub fn url(&self) -> String {
            self.server.url()
        }

        /// Every request received, oldest first.
        pub fn requests(&self) -> Vec<$crate::server::RecordedRequest> {
            self.server.requests()
        }

        /// Forgets the recorded requests (the fake's state is kept).
        pub fn clear_requests(&self) {
            self.server.clear_requests();
        }

        /// Closes the listener (connections are refused) and drops connections in progress.
        pub async fn stop(&self) {
            self.server.stop().await;
        }

        /// Listens again on the same port.
        pub async fn restart(&self) -> ::std::io::Result<()> {
            self.server.restart().await
        }
    };
}
pub(crate) use server_controls;

#[cfg(test)]
mod tests;
