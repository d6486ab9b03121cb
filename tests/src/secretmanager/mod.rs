//! `FakeSecretManager`: Secret Manager v1 (create secret, add version, get secret, get,
//! list, access and destroy versions, a secret's IAM policy), with bearer tokens checked against a [`TokenRegistry`] and the newer
//! Google APIs' error shape.
//!
//! This module: the state and the test controls; `routes`: the API's requests; `tests`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use base64::Engine as _;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    rest::{self, google_error},
    server::{json_response, lock, now, query_param, rfc3339_utc, FakeState, Faults, HttpServer},
    token::TokenRegistry,
};

mod routes;
#[cfg(test)]
mod tests;

use routes::handle;

/// Secret Manager's own words for scripted faults (see [`rest::scripted_error`]).
const SECRET_MANAGER_ERRORS: &[(u16, &str, &str)] = &[
    (
        403,
        "PERMISSION_DENIED",
        "Permission 'secretmanager.versions.access' denied for resource (or it may not exist).",
    ),
    (429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
];

struct Version {
    data: Vec<u8>,
    state: String,
    created: OffsetDateTime,
}

struct Secret {
    created: OffsetDateTime,
    replication: Value,
    versions: Vec<Version>,
    /// The secret's IAM policy (`getIamPolicy` / `setIamPolicy`).
    policy: Value,
}

#[derive(Default)]
struct SmState {
    /// (project, secret) -> secret
    secrets: BTreeMap<(String, String), Secret>,
    faults: Faults,
    /// Faults for requests whose path contains the key (e.g. one secret's `:addVersion`).
    path_faults: Vec<(String, Faults)>,
    accesses: usize,
}

/// The fake Secret Manager API.
pub struct FakeSecretManager {
    state: Arc<Mutex<SmState>>,
    server: HttpServer,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// CRC32C (Castagnoli), as Secret Manager's `dataCrc32c`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Splits `projects/P/secrets/S[/versions/V]` into `(P, S)`.
fn split_secret_name(name: &str) -> Option<(String, String)> {
    match *name.trim_matches('/').split('/').collect::<Vec<_>>() {
        ["projects", p, "secrets", s] | ["projects", p, "secrets", s, "versions", _] => {
            Some((p.to_owned(), s.to_owned()))
        }
        _ => None,
    }
}

impl FakeSecretManager {
    crate::server::server_controls!();

    /// Starts the fake; requests need a bearer token registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let (state, server) =
            rest::start(SmState::default(), tokens, handle, "Secret Manager").await;
        FakeSecretManager { state, server }
    }

    /// Stores `value` as a new version of the secret `name` (`projects/P/secrets/S`; a
    /// trailing `/versions/...` is ignored), creating the secret if needed. Returns the new
    /// version's name, `projects/P/secrets/S/versions/N`. Panics on a malformed name.
    pub fn put(&self, name: &str, value: &str) -> String {
        let (p, s) = split_secret_name(name)
            .unwrap_or_else(|| panic!("FakeSecretManager::put: bad secret name {name:?}"));
        let mut st = lock(&self.state);
        let secret = st
            .secrets
            .entry((p.clone(), s.clone()))
            .or_insert_with(|| Secret {
                created: now(),
                replication: json!({"automatic": {}}),
                versions: Vec::new(),
                policy: json!({}),
            });
        secret.versions.push(Version {
            data: value.as_bytes().to_vec(),
            state: "ENABLED".into(),
            created: now(),
        });
        format!(
            "projects/{p}/secrets/{s}/versions/{}",
            secret.versions.len()
        )
    }

    /// The newest enabled version's value, if any.
    pub fn get_latest(&self, project: &str, secret: &str) -> Option<String> {
        lock(&self.state)
            .secrets
            .get(&(project.into(), secret.into()))
            .and_then(|s| s.versions.iter().rev().find(|v| v.state == "ENABLED"))
            .map(|v| String::from_utf8_lossy(&v.data).into_owned())
    }

    /// Number of versions of the secret (0 if it does not exist).
    pub fn version_count(&self, project: &str, secret: &str) -> usize {
        lock(&self.state)
            .secrets
            .get(&(project.into(), secret.into()))
            .map_or(0, |s| s.versions.len())
    }

    /// Whether the secret exists.
    pub fn exists(&self, project: &str, secret: &str) -> bool {
        lock(&self.state)
            .secrets
            .contains_key(&(project.into(), secret.into()))
    }

    /// Sets a version's state (`ENABLED`, `DISABLED`, `DESTROYED`); `name` is
    /// `projects/P/secrets/S/versions/N`. Disabled and destroyed versions cannot be accessed
    /// and are skipped by `latest`.
    pub fn set_version_state(&self, name: &str, state: &str) {
        let Some((p, s)) = split_secret_name(name) else {
            return;
        };
        let n: Option<usize> = name.rsplit('/').next().and_then(|v| v.parse().ok());
        let mut st = lock(&self.state);
        if let (Some(secret), Some(n)) = (st.secrets.get_mut(&(p, s)), n) {
            if let Some(v) = n.checked_sub(1).and_then(|i| secret.versions.get_mut(i)) {
                v.state = state.into();
            }
        }
    }

    /// The secret's IAM policy (`{}` when never set; `Null` when there is no such secret).
    pub fn policy(&self, project: &str, secret: &str) -> Value {
        lock(&self.state)
            .secrets
            .get(&(project.into(), secret.into()))
            .map_or(Value::Null, |s| s.policy.clone())
    }

    /// The state of every version of the secret, oldest first (empty if it does not exist).
    pub fn version_states(&self, project: &str, secret: &str) -> Vec<String> {
        lock(&self.state)
            .secrets
            .get(&(project.into(), secret.into()))
            .map(|s| s.versions.iter().map(|v| v.state.clone()).collect())
            .unwrap_or_default()
    }

    /// The next `n` requests whose path contains `path_part` (e.g. `my-secret:addVersion`)
    /// answer `status`.
    pub fn fail_next_on(&self, path_part: &str, n: usize, status: u16) {
        let mut f = Faults::default();
        f.next(n, status);
        lock(&self.state)
            .path_faults
            .push((path_part.to_owned(), f));
    }

    /// Successful `:access` calls.
    pub fn access_count(&self) -> usize {
        lock(&self.state).accesses
    }

    /// The next `n` requests (after authentication) answer `status` in the error shape.
    pub fn fail_next(&self, n: usize, status: u16) {
        lock(&self.state).faults.next(n, status);
    }
}
