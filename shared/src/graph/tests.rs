//! The client against a tiny HTTP server on 127.0.0.1 that answers scripted bodies in order
//! and records what it was sent (the full Graph fake lives in `tests/src/graph.rs`).

use super::*;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use url::Url;

const TOKEN: &str = "EAAGtokenSECRET123";

#[derive(Clone)]
enum Answer {
    /// Status and JSON text, with a content-length.
    Json(u16, String),
    /// A 200 of `n` bytes, with or without a content-length.
    Big { len: usize, content_length: bool },
    /// Never answers.
    Hang,
}

fn graph_error(status: u16, code: i64, subcode: Option<i64>, message: &str) -> Answer {
    let mut e =
        json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Trace1"});
    if let Some(s) = subcode {
        e["error_subcode"] = s.into();
    }
    Answer::Json(status, json!({ "error": e }).to_string())
}

fn ok(v: Value) -> Answer {
    Answer::Json(200, v.to_string())
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    head: String,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

struct TestServer {
    url: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// Answers each connection with the next answer (the last one repeats).
    async fn start(answers: Vec<Answer>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let answer = answers[n.min(answers.len() - 1)].clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let seen = Seen {
                        method: head.split(' ').next().unwrap_or_default().into(),
                        target: head.split(' ').nth(1).unwrap_or_default().into(),
                        head: head.clone(),
                        body: String::new(),
                    };
                    let len: usize = seen
                        .header("content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
                    log.lock().unwrap().push(Seen { body, ..seen });
                    let out = match answer {
                        Answer::Json(status, body) => format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes(),
                        Answer::Big { len, content_length } => {
                            let mut out = b"HTTP/1.1 200 OK\r\nconnection: close\r\n".to_vec();
                            if content_length {
                                out.extend(format!("content-length: {len}\r\n").bytes());
                            }
                            out.extend(b"\r\n");
                            out.extend(std::iter::repeat_n(b' ', len));
                            out
                        }
                        Answer::Hang => {
                            std::future::pending::<()>().await;
                            return;
                        }
                    };
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TestServer { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

/// A client with fast retries whose pauses are recorded instead of slept.
fn client(server: &TestServer) -> (GraphClient, Arc<Mutex<Vec<Duration>>>) {
    let pauses = Arc::new(Mutex::new(Vec::new()));
    let log = pauses.clone();
    let c = GraphClient::new(
        GraphClient::http_client(),
        server.url.clone(),
        DEFAULT_GRAPH_VERSION,
        Duration::from_secs(5),
    )
    .with_retry(crate::google::RetryPolicy {
        max_attempts: 4,
        ..Default::default()
    })
    .with_sleep(Arc::new(move |d| {
        log.lock().unwrap().push(d);
        Box::pin(async {})
    }));
    (c, pauses)
}

/// The token is only ever in the Authorization header (and `debug_token`'s `input_token`).
fn assert_token_only_in_header(seen: &[Seen]) {
    for s in seen {
        assert_eq!(s.header("authorization"), Some(format!("Bearer {TOKEN}")));
        assert!(!s.head.contains("access_token") && !s.body.contains("access_token"));
        let without_auth: String = s
            .head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("authorization:"))
            .collect();
        let input_token = s.target.starts_with("/v26.0/debug_token?");
        assert!(
            input_token || !without_auth.contains(TOKEN),
            "token outside the header: {}",
            s.head
        );
        assert!(!s.body.contains(TOKEN), "token in the body");
    }
}

#[tokio::test]
async fn phone_number_reads_the_contract_fields_with_a_bearer_token() {
    let server = TestServer::start(vec![ok(json!({
        "id": "1111", "status": "CONNECTED", "platform_type": "CLOUD_API",
        "quality_rating": "GREEN", "throughput": {"level": "STANDARD"},
        "health_status": {"can_send_message": "AVAILABLE", "entities": [
            {"entity_type": "PHONE_NUMBER", "id": "1111", "can_send_message": "AVAILABLE"}]},
        "webhook_configuration": {"application": "https://bot.example/hook"}
    }))])
    .await;
    let (c, _) = client(&server);
    let n = c.phone_number(&token(), "1111", None).await.unwrap();
    assert!(n.is_connected() && n.is_cloud_api());
    assert_eq!(n.health_status.unwrap().entities.len(), 1);
    let seen = server.seen();
    assert_eq!(seen[0].method, "GET");
    let fields = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("fields", PHONE_NUMBER_FIELDS)
        .finish();
    assert_eq!(seen[0].target, format!("/v26.0/1111?{fields}"));
    assert_token_only_in_header(&seen);
}

#[tokio::test]
async fn debug_token_sends_the_token_as_input_token_and_bearer() {
    let server = TestServer::start(vec![ok(json!({"data": {
        "app_id": "6349", "is_valid": true, "expires_at": 1_800_000_000, "scopes": ["whatsapp_business_management"]
    }}))])
    .await;
    let (c, _) = client(&server);
    let t = c.debug_token(&token(), None).await.unwrap();
    assert_eq!(t.app_id.as_deref(), Some("6349"));
    assert_eq!(t.expires_at.unwrap().unix_timestamp(), 1_800_000_000);
    let seen = server.seen();
    assert_eq!(
        seen[0].target,
        format!("/v26.0/debug_token?input_token={TOKEN}")
    );
    assert_token_only_in_header(&seen);
}

#[tokio::test]
async fn permanent_errors_are_typed_and_not_retried() {
    for (answer, check) in [
        (
            graph_error(
                401,
                190,
                Some(463),
                "Error validating access token: Session has expired",
            ),
            GraphError::is_token_invalid as fn(&GraphError) -> bool,
        ),
        (
            graph_error(403, 200, None, "(#200) Permissions error"),
            GraphError::is_permission,
        ),
        (
            graph_error(500, 3, None, "(#3) Capability"),
            GraphError::is_permission,
        ),
        (
            graph_error(400, 100, None, "(#100) Unknown path"),
            GraphError::is_unknown_request,
        ),
    ] {
        let server = TestServer::start(vec![answer]).await;
        let (c, pauses) = client(&server);
        let e = c.phone_number(&token(), "1111", None).await.unwrap_err();
        assert!(check(&e), "{e}");
        assert!(!e.is_retryable(), "{e}");
        assert_eq!(server.seen().len(), 1, "{e}");
        assert!(pauses.lock().unwrap().is_empty());
        assert_eq!(e.api().unwrap().fbtrace_id.as_deref(), Some("Trace1"));
    }
}

#[tokio::test]
async fn retryable_errors_are_retried_then_succeed() {
    let server = TestServer::start(vec![
        graph_error(400, 4, None, "(#4) Application request limit reached"),
        Answer::Json(502, "<html>Bad gateway</html>".into()),
        ok(json!({"data": [{"whatsapp_business_api_data": {"id": "6349", "name": "Bot"}}]})),
    ])
    .await;
    let (c, pauses) = client(&server);
    let apps = c.subscribed_apps(&token(), "9999", None).await.unwrap();
    assert_eq!(apps[0].id, "6349");
    assert_eq!(server.seen().len(), 3);
    assert_eq!(pauses.lock().unwrap().len(), 2);
    assert_eq!(server.seen()[0].target, "/v26.0/9999/subscribed_apps");
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit_and_before_the_deadline() {
    let server = TestServer::start(vec![graph_error(
        503,
        2,
        None,
        "Service temporarily unavailable",
    )])
    .await;
    let (c, _) = client(&server);
    let e = c.phone_number(&token(), "1", None).await.unwrap_err();
    assert_eq!(e.code(), Some(2));
    assert_eq!(server.seen().len(), 4);

    let server = TestServer::start(vec![graph_error(503, 2, None, "down")]).await;
    let (c, _) = client(&server);
    // The first pause (0.25-0.5 s) would end past a deadline 100 ms away: one attempt.
    let deadline = Instant::now() + Duration::from_millis(100);
    assert!(c.phone_number(&token(), "1", Some(deadline)).await.is_err());
    assert_eq!(server.seen().len(), 1);

    let e = c
        .phone_number(
            &token(),
            "1",
            Some(Instant::now() - Duration::from_millis(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Deadline { .. }), "{e}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn registration_calls_are_sent_once_and_keep_secrets_out_of_errors() {
    let pin = SecretString::from("654321");
    let backup = RegisterBackup {
        data: SecretString::from("BACKUPBLOB"),
        password: SecretString::from("backup-pw"),
    };
    // A 503 that (as a proxy might) echoes what it was sent.
    let echo = format!("down {TOKEN} 654321 BACKUPBLOB backup-pw");
    let server = TestServer::start(vec![graph_error(503, 1, None, &echo)]).await;
    let (c, pauses) = client(&server);
    let e = c
        .register(&token(), "1111", &pin, Some(&backup), None)
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(server.seen().len(), 1, "register is never retried");
    assert!(pauses.lock().unwrap().is_empty());
    let text = format!("{e} {e:?}");
    for secret in [TOKEN, "654321", "BACKUPBLOB", "backup-pw"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let sent: Value = serde_json::from_str(&server.seen()[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"messaging_product": "whatsapp", "pin": "654321",
               "backup": {"data": "BACKUPBLOB", "password": "backup-pw"}})
    );

    for call in 0..3 {
        let server = TestServer::start(vec![Answer::Json(500, "{}".into())]).await;
        let (c, _) = client(&server);
        let r = match call {
            0 => {
                c.request_code(&token(), "1", CodeMethod::Voice, "en_US", None)
                    .await
            }
            1 => {
                c.verify_code(&token(), "1", &SecretString::from("123456"), None)
                    .await
            }
            _ => c.set_pin(&token(), "1", &pin, None).await,
        };
        assert!(r.unwrap_err().is_retryable());
        assert_eq!(server.seen().len(), 1, "call {call} is never retried");
    }
}

#[tokio::test]
async fn writes_send_meta_bodies_and_need_success() {
    let server = TestServer::start(vec![ok(json!({"success": true}))]).await;
    let (c, _) = client(&server);
    let vt = SecretString::from("verify-me");
    c.subscribe_app(&token(), "9999", None).await.unwrap();
    c.set_webhook_override(&token(), "1111", "https://bot.example/hook", &vt, None)
        .await
        .unwrap();
    c.request_code(&token(), "1111", CodeMethod::Sms, "en_US", None)
        .await
        .unwrap();
    c.register(&token(), "1111", &SecretString::from("111111"), None, None)
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].target, "/v26.0/9999/subscribed_apps");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].body.as_str()),
        ("POST", "")
    );
    assert_eq!(seen[0].header("content-length").as_deref(), Some("0"));
    let body = |i: usize| serde_json::from_str::<Value>(&seen[i].body).unwrap();
    assert_eq!(seen[1].target, "/v26.0/1111");
    assert_eq!(
        body(1),
        json!({"webhook_configuration": {"override_callback_uri": "https://bot.example/hook", "verify_token": "verify-me"}})
    );
    assert_eq!(body(2), json!({"code_method": "SMS", "language": "en_US"}));
    assert_eq!(
        body(3),
        json!({"messaging_product": "whatsapp", "pin": "111111"})
    );
    assert_token_only_in_header(&seen);

    let server = TestServer::start(vec![ok(json!({"success": false}))]).await;
    let (c, _) = client(&server);
    let e = c.subscribe_app(&token(), "9999", None).await.unwrap_err();
    assert!(matches!(e, GraphError::Decode { .. }), "{e}");
}

#[tokio::test]
async fn answers_are_bounded() {
    for content_length in [true, false] {
        let server = TestServer::start(vec![Answer::Big {
            len: MAX_ANSWER_BYTES + 1,
            content_length,
        }])
        .await;
        let (c, _) = client(&server);
        let e = c.phone_number(&token(), "1", None).await.unwrap_err();
        assert!(matches!(e, GraphError::Decode { .. }), "{e}");
        assert!(e.to_string().contains("256 KiB"), "{e}");
    }
    // Exactly the bound is read (whitespace: an empty answer).
    let server = TestServer::start(vec![Answer::Big {
        len: MAX_ANSWER_BYTES,
        content_length: false,
    }])
    .await;
    let (c, _) = client(&server);
    let v: Value = c.read(&token(), &["1"], &[], None).await.unwrap();
    assert_eq!(v, json!({}));
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = TestServer::start(vec![Answer::Hang]).await;
    let (c, _) = client(&server);
    let c = c
        .with_timeout(Duration::from_millis(200))
        .with_retry(crate::google::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        });
    let e = c.phone_number(&token(), "1", None).await.unwrap_err();
    assert!(
        matches!(e, GraphError::Timeout { .. }) && e.is_retryable(),
        "{e}"
    );

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let c = GraphClient::new(
        GraphClient::http_client(),
        url,
        "v26.0",
        Duration::from_secs(2),
    )
    .with_retry(crate::google::RetryPolicy {
        max_attempts: 1,
        ..Default::default()
    });
    let e = c.debug_token(&token(), None).await.unwrap_err();
    assert!(
        matches!(e, GraphError::Transport { .. }) && e.is_retryable(),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(TOKEN), "{e:?}");
}

#[tokio::test]
async fn ids_must_be_digits() {
    let server = TestServer::start(vec![ok(json!({}))]).await;
    let (c, _) = client(&server);
    for id in ["", "12a", "../me", "1/2"] {
        let e = c.phone_number(&token(), id, None).await.unwrap_err();
        assert!(matches!(e, GraphError::Invalid { .. }), "{e}");
    }
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn batch_posts_a_form_and_maps_items_in_order() {
    let server = TestServer::start(vec![ok(json!([
        {"code": 200, "body": "{\"id\":\"1\",\"status\":\"CONNECTED\"}"},
        {"code": 403, "body": "{\"error\":{\"message\":\"(#200) no\",\"code\":200}}"}
    ]))])
    .await;
    let (c, _) = client(&server);
    let reqs = [
        BatchRequest::phone_number("1").unwrap(),
        BatchRequest::subscribed_apps("9").unwrap(),
    ];
    let r = c.batch(&token(), &reqs, None).await.unwrap();
    let n: PhoneNumber = serde_json::from_value(r[0].as_ref().unwrap().clone()).unwrap();
    assert!(n.is_connected());
    assert!(r[1].as_ref().unwrap_err().is_permission());
    let seen = server.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("POST", "/v26.0/")
    );
    assert_eq!(
        seen[0].header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(seen[0].body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form[1], ("include_headers".into(), "false".into()));
    let batch: Value = serde_json::from_str(&form[0].1).unwrap();
    assert_eq!(
        batch,
        json!([
            {"method": "GET", "relative_url": format!("1?fields={PHONE_NUMBER_FIELDS}")},
            {"method": "GET", "relative_url": "9/subscribed_apps"}
        ])
    );
    assert_token_only_in_header(&seen);

    let too_many = vec![BatchRequest::get("1"); MAX_BATCH_REQUESTS + 1];
    assert!(matches!(
        c.batch(&token(), &too_many, None).await,
        Err(GraphError::Invalid { .. })
    ));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn batch_read_retries_only_the_items_that_may_succeed() {
    let server = TestServer::start(vec![
        ok(json!([
            {"code": 200, "body": "{\"id\":\"1\"}"},
            null,
            {"code": 400, "body": "{\"error\":{\"message\":\"(#100) bad\",\"code\":100}}"},
            {"code": 500, "body": "{\"error\":{\"message\":\"x\",\"code\":1}}"}
        ])),
        Answer::Json(503, "".into()),
        ok(json!([
            {"code": 200, "body": "{\"id\":\"2\"}"},
            {"code": 200, "body": "{\"id\":\"4\"}"}
        ])),
    ])
    .await;
    let (c, pauses) = client(&server);
    let reqs: Vec<_> = ["1", "2", "3", "4"].map(BatchRequest::get).to_vec();
    let r = c.batch_read(&token(), &reqs, None).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap()["id"], "1");
    assert_eq!(r[1].as_ref().unwrap()["id"], "2");
    assert!(r[2].as_ref().unwrap_err().is_unknown_request());
    assert_eq!(r[3].as_ref().unwrap()["id"], "4");
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(pauses.lock().unwrap().len(), 2);
    for s in &seen[1..] {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(s.body.as_bytes())
            .into_owned()
            .collect();
        let batch: Value = serde_json::from_str(&form[0].1).unwrap();
        assert_eq!(
            batch.as_array().unwrap().len(),
            2,
            "only items 2 and 4 again"
        );
    }

    // A whole-call token error is the batch's error, not retried.
    let server = TestServer::start(vec![graph_error(
        401,
        190,
        Some(467),
        "Invalid OAuth access token",
    )])
    .await;
    let (c, _) = client(&server);
    let e = c.batch_read(&token(), &reqs, None).await.unwrap_err();
    assert!(e.is_token_invalid());
    assert_eq!(server.seen().len(), 1);

    let post = [BatchRequest {
        method: Method::POST,
        relative_url: "1/register".into(),
        body: None,
    }];
    assert!(matches!(
        c.batch_read(&token(), &post, None).await,
        Err(GraphError::Invalid { .. })
    ));
}

#[test]
fn versions() {
    assert_eq!(parse_version("V", " v26.0 ").unwrap(), "v26.0");
    for bad in ["26.0", "v26", "v26.0/x", "v.0", "latest", ""] {
        assert!(parse_version("V", bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn an_attempt_cut_short_by_the_deadline_reports_graphs_last_answer() {
    // 80007 first, then an answer that never comes: the deadline ends the second attempt.
    let server = TestServer::start(vec![
        graph_error(400, 80007, None, "WABA rate limit"),
        Answer::Hang,
    ])
    .await;
    let (c, _) = client(&server);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let e = c
        .phone_number(&token(), "1", Some(deadline))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(80007), "{e}");
    assert_eq!(server.seen().len(), 2);
}
