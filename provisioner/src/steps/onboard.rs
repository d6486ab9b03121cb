//! Runbook steps 3 and 4: the WhatsApp client's first login and registration (`whatsapp`,
//! `verify`) and the LoyJoy connection (`connect`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use shared::whatsapp::{Health, HealthState, Session, WaError, WhatsAppClient};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;
use url::Url;

use super::whatsapp_endpoint::{pin_mismatch, whatsapp_http, whatsapp_url};
use crate::report::Action;
use crate::resources::address;
use crate::resources::secret::{
    self, enabled_versions, generate_password, read_newest, stored_or_new,
};
use crate::{Provisioner, StepError};

/// The built-in admin's first-start credentials.
const FIRST_USER: &str = "admin";
const FIRST_PASSWORD: &str = "secret";

/// What `whatsapp` found or did about the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A code is on its way: `verify` is next.
    CodeSent { vname: Option<String> },
    /// Registered already: no verification needed.
    Registered,
    /// `--dry-run`: nothing was requested.
    Planned,
}

fn wa_error(what: &str, e: WaError) -> StepError {
    StepError::failed(what, e.to_string())
}

/// The WhatsApp client's base URL and a client for it (TLS pinned on first contact).
pub async fn client(prov: &Provisioner) -> Result<WhatsAppClient, StepError> {
    let url = match prov.env.whatsapp_url.clone() {
        Some(u) => u,
        None => {
            let ip = address::read_ip(prov).await?.ok_or_else(|| {
                StepError::failed(
                    format!("address {}", prov.names().address),
                    "does not exist: run `provisioner vm` first",
                )
            })?;
            whatsapp_url(prov, &ip)?
        }
    };
    let http = whatsapp_http(prov, &url).await?;
    Ok(WhatsAppClient::new(http, url, Duration::from_secs(30)))
}

/// Logs in as admin with the password kept in Secret Manager; on a fresh client, first sets
/// that password (generated, 64 characters, stored as a new version before it is sent).
///
/// Two runs at once: each stores its own password first, then only one first login can
/// succeed. Whoever logs in (first login or with any stored version) ends by making the
/// password it logged in with the newest version again if another run stored one after it,
/// so every interleaving ends with `versions/latest` = the client's password.
pub async fn admin_session(prov: &Provisioner, wa: &WhatsAppClient) -> Result<Session, StepError> {
    let secret = prov.names().admin_password_secret;
    let stored = read_newest(prov, &secret).await?;
    if let Some((_, password)) = &stored {
        match wa.login(FIRST_USER, password).await {
            Ok(s) => {
                prov.report.add(
                    "admin password",
                    &secret,
                    Action::Exists,
                    Some("logged in with the stored password".into()),
                );
                return Ok(s);
            }
            // Stored by a run that stopped (or lost a race) before setting it: see below.
            Err(e) if e.status() == Some(401) => {}
            Err(e) if e.to_string().contains("pinned on first contact") => {
                return Err(pin_mismatch(prov, wa.base().as_str()))
            }
            Err(e) => return Err(wa_error("WhatsApp login as admin", e)),
        }
    }
    let password = match stored {
        Some((_, p)) => p,
        None => {
            let p = generate_password(64);
            secret::store(prov, &secret, &p).await?;
            p
        }
    };
    let first = SecretString::from(FIRST_PASSWORD.to_string());
    match wa
        .login_with_new_password(FIRST_USER, &first, &password)
        .await
    {
        Ok(session) => {
            settle(prov, &secret, &password).await?;
            prov.report.add(
                "admin password",
                &secret,
                Action::Created,
                Some("64 characters, set on the client and kept in Secret Manager".into()),
            );
            Ok(session)
        }
        // Not a fresh client any more: another run set its password. Find it among the
        // stored versions, newest first. The one this run just tried is tried again: the other
        // run may have set that very password (both read it from Secret Manager) after this
        // run's login with it failed.
        Err(e) if e.status() == Some(401) => {
            for (number, candidate) in enabled_versions(prov, &secret, 20).await? {
                match wa.login(FIRST_USER, &candidate).await {
                    Ok(session) => {
                        settle(prov, &secret, &candidate).await?;
                        prov.report.add(
                            "admin password",
                            &secret,
                            Action::Exists,
                            Some(format!("logged in with version {number}, set by another run; it is the newest version now")),
                        );
                        return Ok(session);
                    }
                    Err(e) if e.status() == Some(401) => {}
                    Err(e) => return Err(wa_error("WhatsApp login as admin", e)),
                }
            }
            Err(StepError::failed(
                format!("secret {secret}"),
                "the WhatsApp client accepts none of its versions, nor its first-start password: add the admin password in use as a new version (`gcloud secrets versions add`), then run the command again",
            ))
        }
        Err(e) => Err(wa_error(
            "WhatsApp first login as admin (setting the generated password)",
            e,
        )),
    }
}

/// Makes `accepted` (the password the client took) the newest version, unless it is.
async fn settle(
    prov: &Provisioner,
    secret: &str,
    accepted: &SecretString,
) -> Result<(), StepError> {
    match read_newest(prov, secret).await? {
        Some((_, newest)) if newest.expose_secret() == accepted.expose_secret() => Ok(()),
        _ => secret::store(prov, secret, accepted).await,
    }
}

/// Is the number registered already? (`unregistered` in `/v1/health` means no.)
async fn registered(wa: &WhatsAppClient, session: &Session) -> Result<bool, StepError> {
    let health = wa
        .health(&session.token)
        .await
        .map_err(|e| wa_error("GET /v1/health", e))?;
    Ok(!matches!(health.state(), HealthState::Unregistered(_)))
}

/// The base64 certificate from WhatsApp Manager, read from `whatsapp.cert_file` (relative to
/// the configuration file) and checked before it is sent.
fn read_cert(config_dir: &Path, cert_file: &str) -> Result<String, StepError> {
    let path = config_dir.join(cert_file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StepError::Config(format!(
            "`whatsapp.cert_file`: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let cert: String = text.split_whitespace().collect();
    if cert.is_empty() || STANDARD.decode(&cert).is_err() {
        return Err(StepError::Config(format!(
            "`whatsapp.cert_file`: {} does not hold the base64 certificate from WhatsApp Manager",
            path.display()
        )));
    }
    Ok(cert)
}

pub async fn whatsapp(prov: &Provisioner, config_dir: &Path) -> Result<Registration, StepError> {
    println!(
        "whatsapp: +{}{}",
        prov.cfg.country_code, prov.cfg.phone_number
    );
    let cert = read_cert(config_dir, &prov.cfg.whatsapp.cert_file)?;
    if prov.dry_run {
        prov.report.add(
            "admin password",
            &prov.names().admin_password_secret,
            Action::WouldCreate,
            Some("unless stored already".into()),
        );
        prov.report.add(
            "registration",
            &format!("+{}{}", prov.cfg.country_code, prov.cfg.phone_number),
            Action::WouldCreate,
            Some(format!("code by {}", prov.cfg.whatsapp.method)),
        );
        return Ok(Registration::Planned);
    }
    let wa = client(prov).await?;
    let session = admin_session(prov, &wa).await?;
    if registered(&wa, &session).await? {
        println!("  the number is registered already: `provisioner verify` is not needed; next: `provisioner connect`");
        return Ok(Registration::Registered);
    }
    let body = json!({
        "cc": prov.cfg.country_code,
        "phone_number": prov.cfg.phone_number,
        "method": prov.cfg.whatsapp.method,
        "cert": cert,
    });
    let answer = wa
        .call_with_status(&session.token, Method::POST, "/v1/account", Some(&body))
        .await;
    match answer {
        Ok((201, _)) => {
            println!("  the number is registered already (201): `provisioner verify` is not needed; next: `provisioner connect`");
            Ok(Registration::Registered)
        }
        Ok((_, v)) => {
            let vname = v["account"][0]["vname"].as_str().map(str::to_string);
            println!(
                "  a registration code is on its way by {} to +{}{}{}",
                if prov.cfg.whatsapp.method == "voice" {
                    "voice call"
                } else {
                    "SMS"
                },
                prov.cfg.country_code,
                prov.cfg.phone_number,
                vname
                    .as_deref()
                    .map(|v| format!(" (verified name: {v})"))
                    .unwrap_or_default()
            );
            println!("  next: `provisioner verify --code <the 6 digits>`");
            Ok(Registration::CodeSent { vname })
        }
        Err(e) => Err(wa_error(
            "POST /v1/account (requesting the registration code)",
            e,
        )),
    }
}

/// Asks for the code on a terminal; never logged or echoed back.
fn ask_code() -> Result<String, StepError> {
    if !std::io::stdin().is_terminal() {
        return Err(StepError::Config(
            "`--code` is required when standard input is not a terminal".into(),
        ));
    }
    eprint!("registration code: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| StepError::Config(format!("cannot read the code: {e}")))?;
    Ok(line.trim().to_string())
}

/// The registration code from `--code`, else asked for on a terminal; digits only (spaces
/// and dashes dropped). Used by both platforms' `verify`.
pub fn registration_code(code: Option<String>) -> Result<String, StepError> {
    let code = match code {
        Some(c) => c,
        None => ask_code()?,
    };
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if code.is_empty() || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(StepError::Config(
            "`--code`: the registration code is digits only (e.g. 123456)".into(),
        ));
    }
    Ok(code)
}

pub async fn verify(prov: &Provisioner, code: Option<String>) -> Result<(), StepError> {
    let code = registration_code(code)?;
    println!(
        "verify: +{}{}",
        prov.cfg.country_code, prov.cfg.phone_number
    );
    if prov.dry_run {
        prov.report.add(
            "verification",
            "POST /v1/account/verify",
            Action::WouldCreate,
            None,
        );
        return Ok(());
    }
    let wa = client(prov).await?;
    let session = admin_session(prov, &wa).await?;
    // Verified already (verify is not idempotent on the client): nothing to do.
    if registered(&wa, &session).await? {
        println!(
            "  the number is registered already: nothing to verify; next: `provisioner connect`"
        );
        return Ok(());
    }
    wa.call(
        &session.token,
        Method::POST,
        "/v1/account/verify",
        Some(&json!({ "code": code })),
    )
    .await
    .map_err(|e| {
        StepError::failed(
            "POST /v1/account/verify",
            format!(
                "{e}\n  nothing was changed: check the code and run `provisioner verify` again"
            ),
        )
    })?;
    println!("  verified: the number is registered; next: `provisioner connect`");
    Ok(())
}

/// `loyjoy.webhook_url`, checked: an https URL with a host.
fn webhook(prov: &Provisioner) -> Result<Url, StepError> {
    let raw = prov.cfg.loyjoy.webhook_url.trim();
    let bad = |why: &str| StepError::Config(format!("`loyjoy.webhook_url` {why}, got {raw:?}"));
    if raw.is_empty() {
        return Err(bad("is required for connect"));
    }
    let url = Url::parse(raw).map_err(|_| bad("is not a URL"))?;
    if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must be an https:// URL"));
    }
    Ok(url)
}

pub async fn connect(prov: &Provisioner) -> Result<(), StepError> {
    let hook = webhook(prov)?;
    let username = prov.cfg.loyjoy.api_username.clone();
    if username.is_empty() || username.contains(char::is_whitespace) {
        return Err(StepError::Config(
            "`loyjoy.api_username` must be a name without spaces".into(),
        ));
    }
    let n = prov.names();
    println!(
        "connect: +{}{} to LoyJoy",
        prov.cfg.country_code, prov.cfg.phone_number
    );
    if prov.dry_run {
        prov.report.add(
            "webhook",
            hook.as_str(),
            Action::WouldUpdate("application settings".into()),
            None,
        );
        prov.report.add(
            "API user",
            &username,
            Action::WouldCreate,
            Some(format!("password kept in {}", n.api_password_secret)),
        );
        return Ok(());
    }
    let wa = client(prov).await?;
    let session = admin_session(prov, &wa).await?;
    wa.call(
        &session.token,
        Method::PATCH,
        "/v1/settings/application",
        Some(&json!({"webhooks": {"url": hook.as_str()}})),
    )
    .await
    .map_err(|e| wa_error("PATCH /v1/settings/application (webhook)", e))?;
    prov.report.add(
        "webhook",
        hook.as_str(),
        Action::Updated("application settings".into()),
        None,
    );

    let secret = n.api_password_secret.clone();
    let (password, _) = stored_or_new(prov, &secret, 64).await?;
    let body = json!({"username": username, "password": password.expose_secret()});
    match wa
        .call_with_status(&session.token, Method::POST, "/v1/users", Some(&body))
        .await
    {
        Ok(_) => prov.report.add(
            "API user",
            &username,
            Action::Created,
            Some(format!("password kept in {secret}")),
        ),
        Err(e) if e.status() == Some(409) => {
            // It exists: make its password the stored one.
            wa.call(
                &session.token,
                Method::PUT,
                &format!("/v1/users/{username}"),
                Some(&json!({"password": password.expose_secret()})),
            )
            .await
            .map_err(|e| wa_error(&format!("PUT /v1/users/{username}"), e))?;
            prov.report.add(
                "API user",
                &username,
                Action::Updated(format!("password reset to the one in {secret}")),
                None,
            );
        }
        Err(e) => return Err(wa_error("POST /v1/users", e)),
    }
    let host = loyjoy_hostname(wa.base());
    println!();
    println!("  In LoyJoy, under Bot / Publish / WhatsApp, enter:");
    println!("    hostname: {host}");
    println!("    username: {username}");
    println!("    password: run `provisioner secrets show api-password`");
    Ok(())
}

/// The hostname LoyJoy must use: the host, with the port when it is not the scheme's default
/// (`Url::port` is `None` for the default one).
fn loyjoy_hostname(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The client's health now, for `up` (registered or not) and `status`.
pub async fn health(prov: &Provisioner) -> Result<Health, StepError> {
    let wa = client(prov).await?;
    let session = admin_session(prov, &wa).await?;
    wa.health(&session.token)
        .await
        .map_err(|e| wa_error("GET /v1/health", e))
}
