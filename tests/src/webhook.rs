//! `FakeWebhook`: a bot's webhook endpoint as Meta sees it. `GET ?hub.mode=subscribe&
//! hub.challenge=C&hub.verify_token=T` answers 200 with the bare challenge when `T` is the
//! verify token, else 403; a `POST` (a delivery) answers 200. Faults for the handshake: a
//! wrong body, any status, latency, a hang. Plain HTTP or HTTPS with a self-signed
//! certificate (for clients that demand `https://`: trust [`FakeWebhook::certificate_pem`]).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{Method, Uri},
    response::Response,
    Router,
};

use crate::server::{hang, lock, query_param, raw_response, Faults, HttpServer, SelfSignedCert};

/// The path the endpoint is expected at (any path answers).
pub const WEBHOOK_PATH: &str = "/webhook";

/// What a handshake gets instead of the right answer.
#[derive(Clone, Debug, PartialEq)]
pub enum WebhookFault {
    /// 200 with a body that is not the challenge.
    WrongBody,
    /// This status, body `error`.
    Status(u16),
    /// The right answer, this much later.
    Delay(Duration),
    /// No answer at all.
    Hang,
}

struct HookState {
    verify_token: String,
    faults: Faults<WebhookFault>,
    handshakes: usize,
}

/// The fake bot endpoint.
pub struct FakeWebhook {
    state: Arc<Mutex<HookState>>,
    server: HttpServer,
    cert: Option<SelfSignedCert>,
}

impl FakeWebhook {
    crate::server::server_controls!();

    /// Plain HTTP on 127.0.0.1, expecting `verify_token`.
    pub async fn start(verify_token: &str) -> Self {
        Self::serve(verify_token, None).await
    }

    /// HTTPS with a new self-signed certificate for 127.0.0.1 and localhost.
    pub async fn start_tls(verify_token: &str) -> Self {
        Self::serve(verify_token, Some(SelfSignedCert::generate("fake-webhook"))).await
    }

    async fn serve(verify_token: &str, cert: Option<SelfSignedCert>) -> Self {
        let state = Arc::new(Mutex::new(HookState {
            verify_token: verify_token.to_owned(),
            faults: Faults::default(),
            handshakes: 0,
        }));
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = match &cert {
            Some(c) => HttpServer::start_tls(router, c.server_config()).await,
            None => HttpServer::start(router).await,
        }
        .expect("bind fake webhook server");
        FakeWebhook {
            state,
            server,
            cert,
        }
    }

    /// `{url}/webhook`: what to register as the callback URL.
    pub fn callback_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.url())
    }

    /// The certificate (PEM) of an HTTPS endpoint, for `SSL_CERT_FILE`.
    pub fn certificate_pem(&self) -> Option<String> {
        self.cert.as_ref().map(|c| c.cert_pem.clone())
    }

    pub fn set_verify_token(&self, token: &str) {
        lock(&self.state).verify_token = token.to_owned();
    }

    /// The next `n` handshakes get `fault`.
    pub fn fail_next(&self, n: usize, fault: WebhookFault) {
        lock(&self.state).faults.next(n, fault);
    }

    /// Every handshake gets `fault` until cleared.
    pub fn fail_always(&self, fault: WebhookFault) {
        lock(&self.state).faults.always(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Handshake requests received (`GET` with `hub.mode`).
    pub fn handshake_count(&self) -> usize {
        lock(&self.state).handshakes
    }
}

async fn handle(State(state): State<Arc<Mutex<HookState>>>, method: Method, uri: Uri) -> Response {
    if method == Method::POST {
        return raw_response(200, "text/plain", "");
    }
    let q = uri.query();
    let mode = query_param(q, "hub.mode");
    let challenge = query_param(q, "hub.challenge").unwrap_or_default();
    let given = query_param(q, "hub.verify_token");
    let (fault, expected) = {
        let mut st = lock(&state);
        if mode.is_some() {
            st.handshakes += 1;
        }
        (st.faults.take(), st.verify_token.clone())
    };
    match fault {
        Some(WebhookFault::WrongBody) => {
            return raw_response(200, "text/plain", "not-the-challenge")
        }
        Some(WebhookFault::Status(s)) => return raw_response(s, "text/plain", "error"),
        Some(WebhookFault::Delay(d)) => tokio::time::sleep(d).await,
        Some(WebhookFault::Hang) => match hang().await {},
        None => {}
    }
    if mode.as_deref() == Some("subscribe") && given.as_deref() == Some(expected.as_str()) {
        raw_response(200, "text/plain", challenge)
    } else {
        raw_response(403, "text/plain", "Forbidden")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn handshake(hook: &FakeWebhook, token: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(hook.callback_url())
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.challenge", "1158201444"),
                ("hub.verify_token", token),
            ])
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn answers_the_challenge_only_to_its_verify_token() {
        let hook = FakeWebhook::start("vt-1").await;
        assert_eq!(handshake(&hook, "vt-1").await, (200, "1158201444".into()));
        assert_eq!(handshake(&hook, "other").await.0, 403);
        hook.fail_next(1, WebhookFault::WrongBody);
        assert_eq!(
            handshake(&hook, "vt-1").await,
            (200, "not-the-challenge".into())
        );
        hook.fail_always(WebhookFault::Status(500));
        assert_eq!(handshake(&hook, "vt-1").await.0, 500);
        hook.clear_faults();
        hook.set_verify_token("vt-2");
        assert_eq!(handshake(&hook, "vt-2").await.0, 200);
        assert_eq!(hook.handshake_count(), 5);
    }
}
