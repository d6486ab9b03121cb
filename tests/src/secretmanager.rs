//! `FakeSecretManager`: Secret Manager v1 (create secret, add version, get secret, get,
//! list, access and destroy versions, a secret's IAM policy), with bearer tokens checked against a [`TokenRegistry`] and the newer
//! Google APIs' error shape.

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

fn secret_json(p: &str, s: &str, secret: &Secret) -> Value {
    json!({
        "name": format!("projects/{p}/secrets/{s}"),
        "replication": secret.replication,
        "createTime": rfc3339_utc(secret.created),
        "etag": format!("\"{}\"", secret.created.unix_timestamp_nanos() / 1000),
    })
}

fn version_json(p: &str, s: &str, n: usize, v: &Version) -> Value {
    let mut j = json!({
        "name": format!("projects/{p}/secrets/{s}/versions/{n}"),
        "createTime": rfc3339_utc(v.created),
        "state": v.state,
        "replicationStatus": {"automatic": {}},
        "etag": format!("\"{}\"", v.created.unix_timestamp_nanos() / 1000),
    });
    if v.state == "DESTROYED" {
        j["destroyTime"] = json!(rfc3339_utc(v.created));
    }
    j
}

async fn handle(
    State(ctx): State<FakeState<SmState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&ctx.state);
    let gate = rest::gate(&headers, &ctx.tokens, &mut st.faults, SECRET_MANAGER_ERRORS);
    if let Some(refused) = gate {
        return refused;
    }
    let on_path = st
        .path_faults
        .iter_mut()
        .filter(|(key, _)| uri.path().contains(key.as_str()))
        .find_map(|(_, f)| f.take());
    if let Some(code) = on_path {
        return rest::scripted_error(code, SECRET_MANAGER_ERRORS);
    }
    let path = uri.path().trim_matches('/');
    let segs: Vec<&str> = path.split('/').collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    match segs[..] {
        // POST /v1/projects/{p}/secrets?secretId=S
        ["v1", "projects", p, "secrets"] if post => {
            let Some(s) = query_param(uri.query(), "secretId").filter(|s| !s.is_empty()) else {
                return google_error(400, "INVALID_ARGUMENT", "secretId is required.");
            };
            let key = (p.to_owned(), s.clone());
            if st.secrets.contains_key(&key) {
                return google_error(
                    409,
                    "ALREADY_EXISTS",
                    &format!("Secret [projects/{p}/secrets/{s}] already exists."),
                );
            }
            let replication = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("replication").cloned())
                .unwrap_or_else(|| json!({"automatic": {}}));
            let secret = Secret {
                created: now(),
                replication,
                versions: Vec::new(),
                policy: json!({}),
            };
            let answer = secret_json(p, &s, &secret);
            st.secrets.insert(key, secret);
            json_response(200, &answer)
        }
        ["v1", "projects", p, "secrets", last] => {
            if let Some((s, verb)) = last
                .split_once(':')
                .filter(|(_, v)| matches!(*v, "getIamPolicy" | "setIamPolicy"))
            {
                let Some(secret) = st.secrets.get_mut(&(p.to_owned(), s.to_owned())) else {
                    return google_error(
                        404,
                        "NOT_FOUND",
                        &format!("Secret [projects/{p}/secrets/{s}] not found."),
                    );
                };
                if verb == "setIamPolicy" {
                    let Some(policy) = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .map(|v| v["policy"].clone())
                        .filter(Value::is_object)
                    else {
                        return google_error(400, "INVALID_ARGUMENT", "policy is required.");
                    };
                    let etag = secret.policy["etag"].clone();
                    if !etag.is_null() && policy["etag"] != etag {
                        return google_error(
                            409,
                            "ABORTED",
                            "There were concurrent policy changes.",
                        );
                    }
                    let version = etag
                        .as_str()
                        .and_then(|e| e.strip_prefix("BwY"))
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                        + 1;
                    secret.policy = policy;
                    secret.policy["etag"] = json!(format!("BwY{version}"));
                }
                json_response(200, &secret.policy)
            } else if let Some(s) = last.strip_suffix(":addVersion") {
                if !post {
                    return google_error(405, "INVALID_ARGUMENT", "Use POST.");
                }
                let data = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["payload"]["data"].as_str().map(str::to_owned))
                    .and_then(|d| b64().decode(d).ok());
                let Some(data) = data else {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        "payload.data must be base64-encoded bytes.",
                    );
                };
                let Some(secret) = st.secrets.get_mut(&(p.to_owned(), s.to_owned())) else {
                    return google_error(
                        404,
                        "NOT_FOUND",
                        &format!("Secret [projects/{p}/secrets/{s}] not found."),
                    );
                };
                secret.versions.push(Version {
                    data,
                    state: "ENABLED".into(),
                    created: now(),
                });
                let n = secret.versions.len();
                json_response(200, &version_json(p, s, n, &secret.versions[n - 1]))
            } else if get {
                match st.secrets.get(&(p.to_owned(), last.to_owned())) {
                    Some(secret) => json_response(200, &secret_json(p, last, secret)),
                    None => google_error(
                        404,
                        "NOT_FOUND",
                        &format!("Secret [projects/{p}/secrets/{last}] not found."),
                    ),
                }
            } else {
                google_error(404, "NOT_FOUND", "Unknown method.")
            }
        }
        // Newest first, as Secret Manager lists them.
        ["v1", "projects", p, "secrets", s, "versions"] if get => {
            let Some(secret) = st.secrets.get(&(p.to_owned(), s.to_owned())) else {
                return google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Secret [projects/{p}/secrets/{s}] not found."),
                );
            };
            let versions: Vec<Value> = secret
                .versions
                .iter()
                .enumerate()
                .rev()
                .map(|(i, v)| version_json(p, s, i + 1, v))
                .collect();
            let total = versions.len();
            json_response(200, &json!({"versions": versions, "totalSize": total}))
        }
        // POST /v1/projects/{p}/secrets/{s}/versions/{n}:destroy
        ["v1", "projects", p, "secrets", s, "versions", last] if post => {
            let Some(n) = last
                .strip_suffix(":destroy")
                .and_then(|n| n.parse::<usize>().ok())
            else {
                return google_error(404, "NOT_FOUND", "Unknown method.");
            };
            let Some(secret) = st.secrets.get_mut(&(p.to_owned(), s.to_owned())) else {
                return google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Secret [projects/{p}/secrets/{s}] not found."),
                );
            };
            let Some(version) = n.checked_sub(1).and_then(|i| secret.versions.get_mut(i)) else {
                return google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Secret Version [projects/{p}/secrets/{s}/versions/{n}] not found."),
                );
            };
            if version.state == "DESTROYED" {
                return google_error(
                    400,
                    "FAILED_PRECONDITION",
                    &format!("Secret Version [projects/{p}/secrets/{s}/versions/{n}] is in DESTROYED state."),
                );
            }
            version.state = "DESTROYED".into();
            version.data.clear();
            json_response(200, &version_json(p, s, n, version))
        }
        ["v1", "projects", p, "secrets", s, "versions", last] if get => {
            let (v, access) = match last.strip_suffix(":access") {
                Some(v) => (v, true),
                None => (last, false),
            };
            let not_found = || {
                if v == "latest" {
                    google_error(
                        404,
                        "NOT_FOUND",
                        &format!("Secret [projects/{p}/secrets/{s}] not found or has no versions."),
                    )
                } else {
                    google_error(
                        404,
                        "NOT_FOUND",
                        &format!(
                            "Secret Version [projects/{p}/secrets/{s}/versions/{v}] not found."
                        ),
                    )
                }
            };
            let Some(secret) = st.secrets.get(&(p.to_owned(), s.to_owned())) else {
                return not_found();
            };
            let found = if v == "latest" {
                secret
                    .versions
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, ver)| ver.state == "ENABLED")
            } else {
                v.parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|i| secret.versions.get(i).map(|ver| (i, ver)))
            };
            let Some((i, ver)) = found else {
                return not_found();
            };
            let n = i + 1;
            if !access {
                return json_response(200, &version_json(p, s, n, ver));
            }
            if ver.state != "ENABLED" {
                return google_error(
                    400,
                    "FAILED_PRECONDITION",
                    &format!(
                        "Secret Version [projects/{p}/secrets/{s}/versions/{n}] is in {} state.",
                        ver.state
                    ),
                );
            }
            let answer = json!({
                "name": format!("projects/{p}/secrets/{s}/versions/{n}"),
                "payload": {
                    "data": b64().encode(&ver.data),
                    "dataCrc32c": crc32c(&ver.data).to_string(),
                },
            });
            st.accesses += 1;
            json_response(200, &answer)
        }
        _ => google_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL /{path} was not found on this server."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fixture() -> (FakeSecretManager, String, reqwest::Client) {
        let tokens = TokenRegistry::new();
        let token = tokens.issue();
        (
            FakeSecretManager::start(tokens).await,
            token,
            reqwest::Client::new(),
        )
    }

    #[tokio::test]
    async fn a_version_is_destroyed_for_good_and_once() {
        let (sm, token, client) = fixture().await;
        sm.put("projects/p/secrets/pw", "one");
        sm.put("projects/p/secrets/pw", "two");
        let url = format!("{}/v1/projects/p/secrets/pw/versions/2:destroy", sm.url());
        let destroy = || {
            client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({}))
                .send()
        };
        assert_eq!(destroy().await.unwrap().status(), 200);
        assert_eq!(sm.version_states("p", "pw"), ["ENABLED", "DESTROYED"]);
        assert_eq!(sm.get_latest("p", "pw").as_deref(), Some("one"));
        assert_eq!(destroy().await.unwrap().status(), 400);
    }

    #[test]
    fn crc32c_known_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[tokio::test]
    async fn access_versions() {
        let (sm, token, client) = fixture().await;
        assert_eq!(
            sm.put("projects/p/secrets/wa", "first"),
            "projects/p/secrets/wa/versions/1"
        );
        assert_eq!(
            sm.put("projects/p/secrets/wa", "second"),
            "projects/p/secrets/wa/versions/2"
        );
        let access = |v: &str| {
            client
                .get(format!(
                    "{}/v1/projects/p/secrets/wa/versions/{v}:access",
                    sm.url()
                ))
                .bearer_auth(&token)
                .send()
        };
        let resp = access("latest").await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["name"], "projects/p/secrets/wa/versions/2");
        assert_eq!(
            b64()
                .decode(body["payload"]["data"].as_str().unwrap())
                .unwrap(),
            b"second"
        );
        assert_eq!(body["payload"]["dataCrc32c"], crc32c(b"second").to_string());
        let body: Value = access("1").await.unwrap().json().await.unwrap();
        assert_eq!(body["name"], "projects/p/secrets/wa/versions/1");

        let resp = access("7").await.unwrap();
        assert_eq!(resp.status(), 404);
        let resp = client
            .get(format!(
                "{}/v1/projects/p/secrets/nope/versions/latest:access",
                sm.url()
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["status"], "NOT_FOUND");
        assert_eq!(
            body["error"]["message"],
            "Secret [projects/p/secrets/nope] not found or has no versions."
        );

        let resp = client
            .get(format!(
                "{}/v1/projects/p/secrets/wa/versions/latest:access",
                sm.url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(sm.access_count(), 2);

        sm.set_version_state("projects/p/secrets/wa/versions/2", "DISABLED");
        let body: Value = access("latest").await.unwrap().json().await.unwrap();
        assert_eq!(body["name"], "projects/p/secrets/wa/versions/1");
        assert_eq!(access("2").await.unwrap().status(), 400);

        sm.fail_next(1, 503);
        assert_eq!(access("1").await.unwrap().status(), 503);
        assert_eq!(access("1").await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn create_add_and_get() {
        let (sm, token, client) = fixture().await;
        let create = || {
            client
                .post(format!("{}/v1/projects/p/secrets?secretId=pw", sm.url()))
                .bearer_auth(&token)
                .json(&json!({"replication": {"automatic": {}}}))
                .send()
        };
        let resp = create().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["name"], "projects/p/secrets/pw");
        let resp = create().await.unwrap();
        assert_eq!(resp.status(), 409);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["status"], "ALREADY_EXISTS");

        let resp = client
            .post(format!("{}/v1/projects/p/secrets/pw:addVersion", sm.url()))
            .bearer_auth(&token)
            .json(&json!({"payload": {"data": b64().encode("hunter2")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["name"], "projects/p/secrets/pw/versions/1");
        assert_eq!(body["state"], "ENABLED");
        assert_eq!(sm.get_latest("p", "pw").as_deref(), Some("hunter2"));

        let resp = client
            .post(format!(
                "{}/v1/projects/p/secrets/missing:addVersion",
                sm.url()
            ))
            .bearer_auth(&token)
            .json(&json!({"payload": {"data": b64().encode("x")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);

        let resp = client
            .get(format!("{}/v1/projects/p/secrets/pw", sm.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let resp = client
            .get(format!("{}/v1/projects/p/secrets/missing", sm.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(sm.version_count("p", "pw"), 1);
    }
}
