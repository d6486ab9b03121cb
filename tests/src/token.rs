//! `FakeTokenServer`: the OAuth2 token endpoint that a service-account key's `token_uri`
//! points at, and the [`TokenRegistry`] of access tokens it issued, which the other Google
//! fakes consult to accept or refuse `Authorization: Bearer` headers.

use crate::server::{FakeState, Faults};
use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{body::Bytes, extract::State, http::Method, response::Response, Router};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::server::{json_response, lock, random_string, HttpServer};

/// The throwaway test-only RSA key (PKCS#8 PEM) of the fake service account.
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/test-service-account-key.pem");
/// Its public half, PKCS#1 `RSAPublicKey` DER, used to verify JWT signatures.
const TEST_PUBLIC_KEY_DER: &[u8] = include_bytes!("../fixtures/test-service-account-key.pub.der");

/// Project of the fake service account.
pub const FAKE_PROJECT: &str = "fake-project";
/// E-mail of the fake service account.
pub const FAKE_CLIENT_EMAIL: &str = "keepalive@fake-project.iam.gserviceaccount.com";
/// The scope every token request must ask for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Compute Engine's own scope, which `@google-cloud/compute` 1.x asks for.
const COMPUTE_SCOPE: &str = "https://www.googleapis.com/auth/compute";
/// The token URLs Google's endpoint answers at (and accepts as a JWT's `aud`).
const GOOGLE_TOKEN_URLS: [&str; 2] = [
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
];
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Access tokens that the fake Google APIs accept. Shared (`Arc`) between the token server
/// and the API fakes; tests may also issue tokens directly.
#[derive(Debug, Default)]
pub struct TokenRegistry {
    tokens: Mutex<HashSet<String>>,
}

impl TokenRegistry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes up a new valid token (`ya29.fake-<random>`) and returns it.
    pub fn issue(&self) -> String {
        let token = format!("ya29.fake-{}", random_string(40));
        lock(&self.tokens).insert(token.clone());
        token
    }

    /// Accepts `token` from now on.
    pub fn register(&self, token: &str) {
        lock(&self.tokens).insert(token.to_owned());
    }

    /// Whether `token` is accepted.
    pub fn is_valid(&self, token: &str) -> bool {
        lock(&self.tokens).contains(token)
    }

    /// Invalidates every token (the APIs answer 401 until new ones are fetched).
    pub fn revoke_all(&self) {
        lock(&self.tokens).clear();
    }

    /// All valid tokens (to check that none of them leaks into logs or answers).
    pub fn tokens(&self) -> Vec<String> {
        lock(&self.tokens).iter().cloned().collect()
    }
}

#[derive(Default)]
struct TokenState {
    token_uri: String,
    /// Also Google's own token URLs as the JWT `aud`, and a Compute Engine scope
    /// ([`FakeTokenServer::accept_google_clients`]).
    google_clients: bool,
    issued: usize,
    faults: Faults,
    claims: Vec<Value>,
}

/// The fake OAuth2 token endpoint, `POST /token`.
pub struct FakeTokenServer {
    state: Arc<Mutex<TokenState>>,
    tokens: Arc<TokenRegistry>,
    server: HttpServer,
}

impl FakeTokenServer {
    crate::server::server_controls!();

    /// Starts the endpoint; tokens it grants are registered in `tokens`.
    pub async fn start(tokens: Arc<TokenRegistry>) -> Self {
        let state = Arc::new(Mutex::new(TokenState::default()));
        let ctx = FakeState {
            state: state.clone(),
            tokens: tokens.clone(),
        };
        let router = Router::new().fallback(handle).with_state(ctx);
        let server = HttpServer::start(router)
            .await
            .expect("bind fake token server");
        lock(&state).token_uri = format!("{}/token", server.url());
        FakeTokenServer {
            state,
            tokens,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/token`, the `token_uri` (and the JWT `aud`).
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.server.url())
    }

    /// The shared registry.
    pub fn registry(&self) -> Arc<TokenRegistry> {
        self.tokens.clone()
    }

    /// Number of access tokens granted.
    pub fn token_count(&self) -> usize {
        lock(&self.state).issued
    }

    /// Decoded JWT claims of every grant request that got as far as being parsed.
    pub fn claims(&self) -> Vec<Value> {
        lock(&self.state).claims.clone()
    }

    /// Answers every request with `status` (and an OAuth error body) until cleared.
    pub fn fail_always(&self, status: u16) {
        lock(&self.state).faults.always(status);
    }

    /// Answers the next `n` requests with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        lock(&self.state).faults.next(n, status);
    }

    /// From now on also accepts what Google's endpoint accepts from older client libraries: a
    /// JWT whose `aud` is `https://oauth2.googleapis.com/token` or
    /// `https://www.googleapis.com/oauth2/v4/token` rather than the key's `token_uri`, asking
    /// for a Compute Engine scope rather than `cloud-platform`. For the Node.js baseline of
    /// `compare` (`@google-cloud/compute` 1.x, whose token URL is fixed); the tests of our own
    /// clients keep the strict default.
    pub fn accept_google_clients(&self) {
        lock(&self.state).google_clients = true;
    }

    /// Removes scripted failures.
    pub fn clear_failures(&self) {
        lock(&self.state).faults.clear();
    }

    /// The service-account key JSON pointing at this server.
    pub fn service_account_key(&self) -> Value {
        json!({
            "type": "service_account",
            "project_id": FAKE_PROJECT,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": TEST_PRIVATE_KEY_PEM,
            "client_email": FAKE_CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/keepalive%40fake-project.iam.gserviceaccount.com",
            "universe_domain": "googleapis.com"
        })
    }

    /// Writes the key to `dir/service-account.json` and returns its path (what
    /// `GOOGLE_APPLICATION_CREDENTIALS` should name).
    pub fn write_service_account_key(&self, dir: &Path) -> PathBuf {
        self.try_write_service_account_key(dir)
            .expect("write service-account key")
    }

    /// Like [`write_service_account_key`](Self::write_service_account_key), without panicking.
    pub fn try_write_service_account_key(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join("service-account.json");
        let text =
            serde_json::to_string_pretty(&self.service_account_key()).map_err(io::Error::other)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

async fn handle(
    State(ctx): State<FakeState<TokenState>>,
    method: Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() != "/token" {
        return oauth_error(404, "not_found", "Unknown path");
    }
    if method != Method::POST {
        return oauth_error(405, "invalid_request", "Use POST");
    }
    let token_uri = {
        let mut st = lock(&ctx.state);
        if let Some(status) = st.faults.take() {
            drop(st);
            let error = if status >= 500 {
                "internal_failure"
            } else {
                "invalid_request"
            };
            return oauth_error(status, error, "Scripted failure of the fake token endpoint");
        }
        (st.token_uri.clone(), st.google_clients)
    };
    let (token_uri, google_clients) = token_uri;
    // A form, as the OAuth spec says; Google also takes the same fields as a JSON object, which
    // older Node.js client libraries send.
    let json_body = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let form: Vec<(String, String)> = if json_body {
        match serde_json::from_slice::<serde_json::Map<String, Value>>(&body) {
            Ok(obj) => obj
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect(),
            Err(_) => return oauth_error(400, "invalid_request", "Invalid JSON payload received."),
        }
    } else {
        form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some(JWT_BEARER_GRANT) {
        return oauth_error(400, "invalid_grant", "Invalid grant_type");
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error(400, "invalid_grant", "Missing assertion");
    };
    let claims = match check_jwt(assertion, &token_uri, google_clients) {
        Ok(claims) => claims,
        Err((claims, why)) => {
            if let Some(claims) = claims {
                lock(&ctx.state).claims.push(claims);
            }
            return oauth_error(400, "invalid_grant", &why);
        }
    };
    let token = ctx.tokens.issue();
    {
        let mut st = lock(&ctx.state);
        st.claims.push(claims);
        st.issued += 1;
    }
    json_response(
        200,
        &json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}),
    )
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

type JwtError = (Option<Value>, String);

/// Checks the shape, header, claims and RS256 signature (against the test key) of a JWT.
fn check_jwt(jwt: &str, token_uri: &str, google_clients: bool) -> Result<Value, JwtError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, sig_b64] = parts[..] else {
        return Err((None, "Invalid JWT: expected three parts".into()));
    };
    let header: Value = b64url(header_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or((None, "Invalid JWT header".to_owned()))?;
    let claims: Value = b64url(claims_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or((None, "Invalid JWT claims".to_owned()))?;
    let fail = |why: &str| Err((Some(claims.clone()), why.to_owned()));
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return fail("Invalid JWT: alg must be RS256");
    }
    if claims
        .get("iss")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return fail("Invalid JWT: missing iss");
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    let scope_ok = |s: &str| s == CLOUD_PLATFORM_SCOPE || (google_clients && s == COMPUTE_SCOPE);
    if !scope.split(' ').any(scope_ok) {
        return fail("Invalid JWT: scope must include cloud-platform");
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if aud != token_uri && !(google_clients && GOOGLE_TOKEN_URLS.contains(&aud)) {
        return fail("Invalid JWT Signature: aud is not the token URI");
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return fail("Invalid JWT: iat and exp must be numbers");
    };
    if exp <= iat || exp - iat > 3600 {
        return fail("Invalid JWT: exp must be after iat, by at most an hour");
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if exp < now || iat > now + 300 {
        return fail(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
        );
    }
    let Some(sig) = b64url(sig_b64) else {
        return fail("Invalid JWT Signature: not base64url");
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        TEST_PUBLIC_KEY_DER,
    );
    let signed = &jwt[..header_b64.len() + 1 + claims_b64.len()];
    if key.verify(signed.as_bytes(), &sig).is_err() {
        return fail("Invalid JWT Signature.");
    }
    Ok(claims)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::{rand::SystemRandom, signature::RsaKeyPair};

    /// Signs claims with the test key, as `gcp_auth` does.
    pub(crate) fn sign_jwt(claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let pem = TEST_PRIVATE_KEY_PEM;
        let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(der_b64)
            .unwrap();
        let key = RsaKeyPair::from_pkcs8(&der).unwrap();
        let signing_input = format!(
            "{}.{}",
            b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{signing_input}.{}", b64.encode(sig))
    }

    pub(crate) fn claims_for(token_uri: &str) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({
            "iss": FAKE_CLIENT_EMAIL,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": token_uri,
            "iat": now,
            "exp": now + 3595,
        })
    }

    async fn post_form(url: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn grants_a_token_for_a_signed_jwt() {
        let registry = TokenRegistry::new();
        let server = FakeTokenServer::start(registry.clone()).await;
        let jwt = sign_jwt(&claims_for(&server.token_uri()));
        let resp = post_form(
            &server.token_uri(),
            &[("grant_type", JWT_BEARER_GRANT), ("assertion", &jwt)],
        )
        .await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("ya29.fake-"));
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["token_type"], "Bearer");
        assert!(registry.is_valid(token));
        assert_eq!(server.token_count(), 1);
        assert_eq!(server.claims()[0]["iss"], FAKE_CLIENT_EMAIL);
    }

    #[tokio::test]
    async fn refuses_bad_grants() {
        let registry = TokenRegistry::new();
        let server = FakeTokenServer::start(registry.clone()).await;
        let uri = server.token_uri();

        let resp = post_form(&uri, &[("grant_type", "password"), ("assertion", "x")]).await;
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant");

        let resp = post_form(
            &uri,
            &[("grant_type", JWT_BEARER_GRANT), ("assertion", "a.b")],
        )
        .await;
        assert_eq!(resp.status(), 400);

        // Wrong audience.
        let jwt = sign_jwt(&claims_for("https://oauth2.googleapis.com/token"));
        let resp = post_form(
            &uri,
            &[("grant_type", JWT_BEARER_GRANT), ("assertion", &jwt)],
        )
        .await;
        assert_eq!(resp.status(), 400);

        // Tampered signature.
        let jwt = sign_jwt(&claims_for(&uri));
        let mut tampered = jwt.clone();
        tampered.truncate(jwt.len() - 4);
        tampered.push_str("AAAA");
        let resp = post_form(
            &uri,
            &[("grant_type", JWT_BEARER_GRANT), ("assertion", &tampered)],
        )
        .await;
        assert_eq!(resp.status(), 400);

        // Missing scope.
        let mut claims = claims_for(&uri);
        claims["scope"] = json!("https://www.googleapis.com/auth/userinfo.email");
        let jwt = sign_jwt(&claims);
        let resp = post_form(
            &uri,
            &[("grant_type", JWT_BEARER_GRANT), ("assertion", &jwt)],
        )
        .await;
        assert_eq!(resp.status(), 400);

        assert_eq!(server.token_count(), 0);
        assert!(registry.tokens().is_empty());
    }

    #[tokio::test]
    async fn scripted_failures() {
        let server = FakeTokenServer::start(TokenRegistry::new()).await;
        let uri = server.token_uri();
        let jwt = sign_jwt(&claims_for(&uri));
        let form = [
            ("grant_type", JWT_BEARER_GRANT),
            ("assertion", jwt.as_str()),
        ];
        server.fail_next(1, 503);
        assert_eq!(post_form(&uri, &form).await.status(), 503);
        assert_eq!(post_form(&uri, &form).await.status(), 200);
        server.fail_always(500);
        assert_eq!(post_form(&uri, &form).await.status(), 500);
        assert_eq!(post_form(&uri, &form).await.status(), 500);
        server.clear_failures();
        assert_eq!(post_form(&uri, &form).await.status(), 200);
        assert_eq!(server.token_count(), 2);
        assert_eq!(server.requests().len(), 5);
    }

    /// The real `gcp_auth` crate reads the key file, signs a JWT and gets a token over
    /// plain HTTP from the fake.
    #[tokio::test]
    async fn gcp_auth_gets_a_token() {
        use gcp_auth::TokenProvider as _;
        let registry = TokenRegistry::new();
        let server = FakeTokenServer::start(registry.clone()).await;
        let dir = crate::server::TempDir::new("gcp-auth").unwrap();
        let path = server.write_service_account_key(dir.path());
        let provider = gcp_auth::CustomServiceAccount::from_file(&path).unwrap();
        let token = provider.token(&[CLOUD_PLATFORM_SCOPE]).await.unwrap();
        assert!(registry.is_valid(token.as_str()));
        assert_eq!(server.token_count(), 1);
        assert_eq!(server.claims()[0]["iss"], FAKE_CLIENT_EMAIL);
        assert_eq!(server.claims()[0]["aud"], server.token_uri());
    }

    #[test]
    fn key_file_is_written() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = FakeTokenServer::start(TokenRegistry::new()).await;
            let dir = crate::server::TempDir::new("token").unwrap();
            let path = server.write_service_account_key(dir.path());
            let key: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(key["type"], "service_account");
            assert_eq!(key["token_uri"], server.token_uri());
            assert!(key["private_key"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----"));
        });
    }

    #[tokio::test]
    async fn takes_json_bodies_and_google_audiences_only_when_asked() {
        let server = FakeTokenServer::start(TokenRegistry::new()).await;
        let uri = server.token_uri();
        let post_json = |claims: Value| {
            let uri = uri.clone();
            async move {
                reqwest::Client::new()
                    .post(&uri)
                    .json(&json!({"grant_type": JWT_BEARER_GRANT, "assertion": sign_jwt(&claims)}))
                    .send()
                    .await
                    .unwrap()
            }
        };
        // A JSON body with the key's own token URI: always.
        assert_eq!(post_json(claims_for(&uri)).await.status(), 200);
        // Google's token URL as audience, the compute scope: only after accept_google_clients.
        let mut legacy = claims_for("https://www.googleapis.com/oauth2/v4/token");
        legacy["scope"] = json!(COMPUTE_SCOPE);
        let refused = post_json(legacy.clone()).await;
        assert_eq!(refused.status(), 400);
        assert!(refused.text().await.unwrap().contains("scope"));
        server.accept_google_clients();
        assert_eq!(post_json(legacy).await.status(), 200);
        // Still no arbitrary audience, nor a scope that Compute does not take.
        assert_eq!(
            post_json(claims_for("https://example.com/token"))
                .await
                .status(),
            400
        );
        let mut wrong_scope = claims_for("https://oauth2.googleapis.com/token");
        wrong_scope["scope"] = json!("https://www.googleapis.com/auth/userinfo.email");
        assert_eq!(post_json(wrong_scope).await.status(), 400);
        assert_eq!(server.token_count(), 2);
    }
}
