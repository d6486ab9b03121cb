//! `POST /v1/settings/backup` of the fake On-Premises client, and what a migration to the
//! Cloud API does to it.
//!
//! The backup (admin only, body `{"password": "..."}`, a non-empty string) answers 200
//! `{"settings": {"data": "<base64>"}}`. The data is opaque to a client; the fake makes it
//! verifiable: [`backup_matches`] tells whether a `(data, password)` pair is one this fake
//! produced, which is what Meta checks when `register` receives it. A number that is not
//! registered has nothing to back up (400 / 1009); one that has moved to the Cloud API
//! ([`FakeWhatsApp::migrated_away`](super::FakeWhatsApp::migrated_away)) is shut down: every
//! request after login but health answers 503 / 1011, and health reads `disconnected`.

use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{
    answers::{error_response, invalid, json_object, required_str},
    meta, WaState,
};
use crate::server::json_response;

/// Backups: `{"password"}` in, `{"settings": {"data"}}` out.
pub const BACKUP_PATH: &str = "/v1/settings/backup";

/// What the fake puts inside a backup's data in place of the encryption.
fn digest(password: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, password.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `data` is a backup this fake produced, encrypted with `password`.
pub fn backup_matches(data: &str, password: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v["fake_backup_of"] == json!(digest(password)))
}

/// `POST /v1/settings/backup`.
pub(super) fn take(st: &mut WaState, body: &[u8]) -> Response {
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let password = match required_str(&obj, "password") {
        Ok(p) if !p.is_empty() => p.to_owned(),
        Ok(_) => return invalid("password", "must not be empty"),
        Err(resp) => return *resp,
    };
    if !st.registered {
        return invalid(
            "password",
            "the number is not registered: nothing to back up",
        );
    }
    let blob = json!({
        "fake_backup_of": digest(&password),
        "nonce": crate::server::random_string(24),
    });
    let data = base64::engine::general_purpose::STANDARD.encode(blob.to_string());
    st.backups.push((password, data.clone()));
    json_response(200, &json!({"settings": {"data": data}, "meta": meta()}))
}

/// The answer of a client that Meta shut down after a migration.
pub(super) fn shut_down() -> Response {
    error_response(
        503,
        "This client was disconnected: the number moved to the Cloud API",
    )
}

#[cfg(test)]
mod tests {
    use super::super::FakeWhatsApp;
    use super::*;

    async fn post(wa: &FakeWhatsApp, token: &str, body: Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{BACKUP_PATH}", wa.url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn admin_token(wa: &FakeWhatsApp) -> String {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/v1/users/login", wa.url()))
            .basic_auth("admin", Some("S3cret!pass"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["users"][0]["token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_backup_is_tied_to_its_password_and_a_migration_shuts_the_client_down() {
        let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
        let token = admin_token(&wa).await;
        let (status, body) = post(&wa, &token, json!({"password": "Backup-pw-1"})).await;
        assert_eq!(status, 200, "{body}");
        let data = body["settings"]["data"].as_str().unwrap();
        assert!(backup_matches(data, "Backup-pw-1"));
        assert!(!backup_matches(data, "Backup-pw-2"));
        assert!(!backup_matches("bm90IGEgYmFja3Vw", "Backup-pw-1"));
        assert!(!data.contains("Backup-pw-1"));
        assert_eq!(wa.backups(), vec![("Backup-pw-1".into(), data.to_owned())]);

        let (status, body) = post(&wa, &token, json!({})).await;
        assert_eq!((status, &body["errors"][0]["code"]), (400, &json!(1008)));

        wa.migrated_away();
        let (status, body) = post(&wa, &token, json!({"password": "Backup-pw-1"})).await;
        assert_eq!((status, &body["errors"][0]["code"]), (503, &json!(1011)));
        let health: Value = reqwest::Client::new()
            .get(format!("{}/v1/health", wa.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["health"]["gateway_status"], "disconnected");
    }

    #[tokio::test]
    async fn an_unregistered_number_has_nothing_to_back_up() {
        let wa = FakeWhatsApp::start("admin", "S3cret!pass").await;
        wa.set_registered(false);
        let token = admin_token(&wa).await;
        let (status, _) = post(&wa, &token, json!({"password": "Backup-pw-1"})).await;
        assert_eq!(status, 400);
        assert!(wa.backups().is_empty());
    }
}
