//! `keepalive serve`: the Cloud Run service. A thin adapter: decode the message, call the
//! check, map its result to a status code. 200 handled, 400 never valid, 503 retry later.

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

use crate::check::{CheckError, CheckOptions, Checker};

/// How long checks in flight may run on after SIGTERM or SIGINT (Cloud Run kills at 10 s).
pub const DRAIN: Duration = Duration::from_secs(9);

pub fn router(checker: Arc<Checker>) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(checker)
}

fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    let mut body = json!({ "error": message });
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    (status, Json(body)).into_response()
}

async fn handle(State(checker): State<Arc<Checker>>, headers: HeaderMap, body: Bytes) -> Response {
    let message = match envelope::decode(&headers, &body) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "rejected a request that is not a Pub/Sub message");
            return error(StatusCode::BAD_REQUEST, e.to_string(), None);
        }
    };
    let message_id = message.message_id.clone().unwrap_or_default();
    let payload = match Payload::parse(&message.data) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, message_id = %message_id, form = ?message.form, "rejected an invalid payload");
            return error(StatusCode::BAD_REQUEST, e.to_string(), e.field());
        }
    };
    let partial = Payload::partial_smtp_fields(&message.data);
    if !partial.is_empty() {
        tracing::warn!(vm = %payload.vm, present = ?partial, "some but not all five smtp fields are set: no mail will be sent");
    }
    match checker.check(&payload, CheckOptions::default()).await {
        Ok(outcome) => {
            crate::log_outcome(&outcome, Some(&message_id));
            (StatusCode::OK, Json(outcome)).into_response()
        }
        Err(e) => {
            tracing::error!(vm = %payload.vm, zone = %payload.zone, message_id = %message_id, error = %e, "check could not be completed; asking Pub/Sub to redeliver");
            let status = match e {
                CheckError::Google(_) | CheckError::NoProject(_) | CheckError::Deadline(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            error(status, e.to_string(), None)
        }
    }
}

/// Serves until SIGTERM or SIGINT, then drains for at most [`DRAIN`].
pub async fn serve(checker: Arc<Checker>) -> std::io::Result<()> {
    let port = checker.config.port;
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "keepalive listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut drain_rx = stop_rx.clone();
    let server = axum::serve(listener, router(checker)).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let drained = async move {
        let _ = drain_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        r = server => r?,
        _ = drained => tracing::warn!("checks still in flight after {} s; exiting", DRAIN.as_secs()),
    }
    tracing::info!("keepalive stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
}
