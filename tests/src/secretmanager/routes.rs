//! The Secret Manager v1 requests: secrets (create, get, IAM policy) and their versions (add,
//! get, list, access, destroy), in the API's JSON and error shapes.

use super::*;

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

pub(super) async fn handle(
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
