//! Where the WhatsApp client's API is reached (`PROVISIONER_WHATSAPP_URL`, else
//! `https://<static address>`), and an HTTP client for it whose TLS certificate is pinned on
//! first contact (kept in Secret Manager): a changed certificate is refused.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use shared::google::operation::Poll;
use shared::tls_pin::{pinned_client, Pin, PinningVerifier};
use std::time::Duration;
use url::Url;

use crate::progress::wait_for;
use crate::report::Action;
use crate::resources::secret::read_newest;
use crate::{Provisioner, StepError};

/// Where the WhatsApp client's API is: `PROVISIONER_WHATSAPP_URL`, else `https://<ip>`.
pub fn whatsapp_url(prov: &Provisioner, ip: &str) -> Result<Url, StepError> {
    match &prov.env.whatsapp_url {
        Some(u) => Ok(u.clone()),
        None => Url::parse(&format!("https://{ip}"))
            .map_err(|e| StepError::failed("WhatsApp URL", e.to_string())),
    }
}

/// An HTTP client for the WhatsApp client at `url`: over https, the certificate is pinned on
/// first contact and a changed one is refused.
pub async fn whatsapp_http(prov: &Provisioner, url: &Url) -> Result<reqwest::Client, StepError> {
    if url.scheme() != "https" {
        return Ok(shared::whatsapp::WhatsAppClient::http_client());
    }
    let n = prov.names();
    let project = &prov.cfg.project;
    let resource = format!("secret {}", n.tls_pin_secret);
    let stored = read_newest(prov, &n.tls_pin_secret).await?;
    let pin = match stored {
        Some((_, b64)) => Pin::Certificate(
            STANDARD
                .decode(b64.expose_secret().trim())
                .map_err(|_| StepError::failed(&resource, "does not hold a base64 certificate"))?,
        ),
        None => Pin::FirstUse,
    };
    let first_use = matches!(pin, Pin::FirstUse);
    let verifier = PinningVerifier::new(pin);
    let client = pinned_client(verifier.clone()).map_err(|e| StepError::failed("TLS client", e))?;
    if !first_use {
        return Ok(client);
    }
    // First contact: one request to learn the certificate, which is stored before any
    // credential is sent.
    let probe = url
        .join("/v1/health")
        .map_err(|e| StepError::failed("WhatsApp URL", e.to_string()))?;
    let what = format!("the WhatsApp client at {url} to answer TLS");
    let der = wait_for(prov, &what, Duration::from_secs(20 * 60), || async {
        let r = client
            .get(probe.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        Ok(match (r, verifier.seen()) {
            (_, Some(der)) => Poll::Ready(der),
            (Err(e), None) => Poll::Pending(shared::google::error::describe_reqwest(&e)),
            (Ok(_), None) => Poll::Pending("no certificate seen".into()),
        })
    })
    .await?;
    prov.google
        .secrets
        .store(
            project,
            &n.tls_pin_secret,
            &SecretString::from(STANDARD.encode(&der)),
            &crate::resources::secret::LABELS,
            Some(prov.call_deadline()),
        )
        .await
        .map_err(prov.google_failed(&resource))?;
    prov.report.add(
        "TLS certificate pin",
        &n.tls_pin_secret,
        Action::Created,
        Some("pinned on first contact".into()),
    );
    pinned_client(PinningVerifier::new(Pin::Certificate(der)))
        .map_err(|e| StepError::failed("TLS client", e))
}

/// The error for a client whose certificate is not the pinned one: never re-pinned silently.
pub fn pin_mismatch(prov: &Provisioner, url: &str) -> StepError {
    let secret = prov.names().tls_pin_secret;
    StepError::failed(
        "WhatsApp client",
        format!(
            "{url}: the TLS certificate differs from the one pinned on first contact in secret {secret}; refusing to talk to it. If the client's certificate was replaced on purpose, add the new certificate (base64 DER) as a new version of {secret}, or disable its versions to pin again on the next contact"
        ),
    )
}

/// Whether `e` is the pinning verifier refusing a changed certificate.
pub fn is_pin_mismatch(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().contains("pinned on first contact") {
            return true;
        }
        source = s.source();
    }
    false
}
