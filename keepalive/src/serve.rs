//! `keepalive serve`: the Cloud Run service. A thin adapter: decode the message
//! (`shared::envelope`), parse its payload ([`Target`]), call the check, map its result to a
//! status code. 200 handled, 400 never valid, 503 retry later.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use shared::envelope;
use shared::payload::Payload;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::check::{run, CheckOptions};
use crate::error::CheckError;
use crate::service::Service;
use crate::target::Target;

/// How long checks in flight may run on after SIGTERM or SIGINT (Cloud Run kills at 10 s).
pub const DRAIN: Duration = Duration::from_secs(9);

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(service)
}

fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    let mut body = json!({ "error": message });
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    (status, Json(body)).into_response()
}

async fn handle(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    let message = match envelope::decode(&headers, &body) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "rejected a request that is not a Pub/Sub message");
            let field =
                e.0.split('`')
                    .nth(1)
                    .filter(|f| f.contains("message") || f.contains("data"));
            return error(StatusCode::BAD_REQUEST, e.to_string(), field);
        }
    };
    let message_id = message.message_id.clone().unwrap_or_default();
    let target = match Target::parse(&message.data) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, message_id = %message_id, form = ?message.form, "rejected an invalid payload");
            // A payload that is not a JSON object is the fault of `message.data`.
            let field = e.field().unwrap_or(match message.form {
                envelope::Form::CloudEventStructured => "data.message.data",
                _ => "message.data",
            });
            return error(StatusCode::BAD_REQUEST, e.to_string(), Some(field));
        }
    };
    let partial = Payload::partial_smtp_fields(&message.data);
    if !partial.is_empty() {
        tracing::warn!(target_name = %target.label(), present = ?partial, "some but not all five smtp fields are set: no mail will be sent");
    }
    match run(&service, &target, CheckOptions::default()).await {
        Ok(answer) => {
            answer.log(Some(&message_id));
            (StatusCode::OK, Json(answer)).into_response()
        }
        Err(CheckError::Refused(e)) => {
            tracing::warn!(target_name = %target.label(), message_id = %message_id, error = %e, "rejected a payload this deployment may not act on");
            error(StatusCode::BAD_REQUEST, e.to_string(), Some(&e.field))
        }
        Err(e) => {
            tracing::error!(target_name = %target.label(), message_id = %message_id, error = %e, "check could not be completed; asking Pub/Sub to redeliver");
            let status = match e {
                CheckError::Google(_)
                | CheckError::NoProject(_)
                | CheckError::Deadline(_)
                | CheckError::Unfinished(_) => StatusCode::SERVICE_UNAVAILABLE,
                CheckError::Refused(_) => StatusCode::BAD_REQUEST,
            };
            error(status, e.to_string(), None)
        }
    }
}

/// A request whose headers have not all arrived this long after the connection was ready
/// for them (a new connection, or an idle kept-alive one) is dropped: slow or silent clients
/// cannot hold connections open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 until SIGTERM or SIGINT, then drains for at most [`DRAIN`].
pub async fn serve(service: Arc<Service>) -> std::io::Result<()> {
    // Listen for the signals before the port is open, so none is missed once we are ready.
    let signal = shutdown_signal()?;
    let port = service.config.port;
    let listener = listen(port)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "keepalive listening");
    let app = router(service);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(signal);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("checks still in flight after {} s; exiting", DRAIN.as_secs()),
    }
    tracing::info!("keepalive stopped");
    Ok(())
}

/// Listens on `0.0.0.0:port` with room for 1024 connections not yet accepted (Cloud Run's
/// highest concurrency is 1000). `TcpListener::bind` asks for 128: a burst of pushes beyond
/// that overflows the queue, and each dropped connection costs its sender a 1 s SYN retry.
fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([0, 0, 0, 0], port)))?;
    socket.listen(1024)
}

/// A future that ends at the first SIGTERM or SIGINT; the handlers are installed at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("interrupted: draining");
        }
    })
}
