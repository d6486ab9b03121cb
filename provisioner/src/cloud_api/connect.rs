//! `connect` on a Cloud API number: the app subscribed to the WABA, the number's webhook
//! override pointing at `cloud.webhook_url` with a verify token kept in Secret Manager, and
//! what to enter in LoyJoy.

use super::secrets::{self, CloudSecrets};
use super::{full_number, Meta};
use crate::report::Action;
use crate::{Provisioner, StepError};

pub async fn run(prov: &Provisioner) -> Result<(), StepError> {
    let meta = Meta::open(prov, "connect on the Cloud API").await?;
    run_with(prov, &meta).await
}

/// [`run`] with a client already open (`migrate`).
pub async fn run_with(prov: &Provisioner, meta: &Meta) -> Result<(), StepError> {
    let c = meta.cloud.clone();
    println!(
        "connect: {} (phone number id {}) to LoyJoy",
        full_number(prov),
        c.phone_number_id
    );
    let deadline = Some(prov.call_deadline());

    // The app: `cloud.app_id`, else the token's own. Meta subscribes the token's app only.
    let token_app = match meta.graph.debug_token(&meta.token, deadline).await {
        Ok(info) => info.app_id,
        Err(e) if c.app_id.is_empty() => {
            return Err(meta.failed(
                prov,
                "access token (debug_token: which app it belongs to)",
                e,
            ))
        }
        Err(_) => None,
    };
    let app = if c.app_id.is_empty() {
        token_app.clone().ok_or_else(|| {
            StepError::failed(
                "access token",
                "debug_token does not say which app it belongs to: set cloud.app_id",
            )
        })?
    } else {
        c.app_id.clone()
    };
    let subscribed = meta
        .graph
        .subscribed_apps(&meta.token, &c.waba_id, deadline)
        .await
        .map_err(|e| meta.failed(prov, &format!("subscribed apps of WABA {}", c.waba_id), e))?;
    let resource = format!("app {app} on WABA {}", c.waba_id);
    if subscribed.iter().any(|a| a.id == app) {
        prov.report
            .add("subscription", &resource, Action::Exists, None);
    } else if token_app.as_deref().is_some_and(|t| t != app) {
        prov.report.add(
            "subscription",
            &resource,
            Action::ByHand(format!(
                "the token belongs to app {}, and Meta subscribes only the token's own app: subscribe app {app} with one of its tokens, or set cloud.app_id to the token's app",
                token_app.as_deref().unwrap_or("?")
            )),
            None,
        );
    } else if prov.dry_run {
        prov.report
            .add("subscription", &resource, Action::WouldCreate, None);
    } else {
        meta.graph
            .subscribe_app(&meta.token, &c.waba_id, deadline)
            .await
            .map_err(|e| meta.failed(prov, &format!("POST {}/subscribed_apps", c.waba_id), e))?;
        let now = meta
            .graph
            .subscribed_apps(&meta.token, &c.waba_id, deadline)
            .await
            .map_err(|e| meta.failed(prov, &format!("subscribed apps of WABA {}", c.waba_id), e))?;
        if !now.iter().any(|a| a.id == app) {
            return Err(StepError::failed(
                resource,
                "Meta answered success but does not list the app as subscribed; run `provisioner connect` again",
            ));
        }
        prov.report
            .add("subscription", &resource, Action::Created, None);
    }

    // The verify token, stored before Meta's handshake sends it to LoyJoy.
    let names = CloudSecrets::of(prov);
    let token = secrets::stored_or_new(
        prov,
        "webhook verify token",
        &names.verify_token,
        "48 letters and digits",
        secrets::generate_verify_token,
    )
    .await?;
    print_for_loyjoy(prov, meta, &names);

    let number = meta.number(prov).await?;
    let current = number
        .webhook_configuration
        .phone_number
        .clone()
        .unwrap_or_default();
    let hook = format!("webhook override of {}", c.phone_number_id);
    if current == c.webhook_url {
        prov.report.add(
            "webhook",
            &hook,
            Action::Exists,
            Some(c.webhook_url.clone()),
        );
        return Ok(());
    }
    let change = if current.is_empty() {
        format!("set to {}", c.webhook_url)
    } else {
        format!("{current} → {}", c.webhook_url)
    };
    let Some(token) = token else {
        prov.report
            .add("webhook", &hook, Action::WouldUpdate(change), None);
        return Ok(());
    };
    if prov.dry_run {
        prov.report
            .add("webhook", &hook, Action::WouldUpdate(change), None);
        return Ok(());
    }
    meta.graph
        .set_webhook_override(&meta.token, &c.phone_number_id, &c.webhook_url, &token, deadline)
        .await
        .map_err(|e| {
            StepError::failed(
                format!("POST {} (webhook override)", c.phone_number_id),
                format!(
                    "{e}\n  Meta verifies the URL first by calling it with the verify token: enter the verify token in LoyJoy (above), check that {} answers, then run `provisioner {}` again",
                    c.webhook_url, prov.command
                ),
            )
        })?;
    let now = meta.number(prov).await?;
    if now.webhook_configuration.phone_number.as_deref() != Some(c.webhook_url.as_str()) {
        return Err(StepError::failed(
            hook,
            "Meta answered success but the override does not read back; run `provisioner connect` again",
        ));
    }
    prov.report
        .add("webhook", &hook, Action::Updated(change), None);
    Ok(())
}

/// What to enter in LoyJoy: ids, and where the secrets are (never the secrets).
fn print_for_loyjoy(prov: &Provisioner, meta: &Meta, names: &CloudSecrets) {
    let c = &meta.cloud;
    println!();
    println!("  In LoyJoy, under Bot / Publish / WhatsApp (Cloud API), enter:");
    println!("    phone number id:      {}", c.phone_number_id);
    println!("    WABA id:              {}", c.waba_id);
    println!(
        "    access token:         in Secret Manager, {}",
        c.access_token_secret
    );
    println!(
        "    webhook verify token: in Secret Manager, {} (`provisioner secrets show webhook-verify-token`)",
        CloudSecrets::version(prov, &names.verify_token)
    );
    println!("    webhook URL:          {}", c.webhook_url);
    println!();
}
