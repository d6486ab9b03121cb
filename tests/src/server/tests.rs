//! The server under every fake: recording, stop and restart, TLS, one-piece answers.

use super::*;
use axum::routing::get;
use http::HeaderMap;
use time::OffsetDateTime;

#[tokio::test]
async fn records_requests_and_stops_and_restarts() {
    let server = HttpServer::start(Router::new().route("/hello", get(|| async { "hi" })))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/hello?x=1%202", server.url()))
        .header("x-test", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "2");
    assert_eq!(resp.text().await.unwrap(), "hi");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/hello");
    assert_eq!(reqs[0].path_and_query, "/hello?x=1%202");
    assert_eq!(reqs[0].query_param("x").as_deref(), Some("1 2"));
    assert_eq!(reqs[0].header("X-Test"), Some("yes"));

    server.stop().await;
    assert!(!server.is_running());
    let err = TcpStream::connect(server.addr()).await;
    assert!(err.is_err(), "connection should be refused after stop()");

    server.restart().await.unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/hello", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "hi");
}

#[tokio::test]
async fn stop_drops_hanging_connections() {
    let server = HttpServer::start(Router::new().route(
        "/hang",
        get(|| async {
            hang().await;
        }),
    ))
    .await
    .unwrap();
    let url = format!("{}/hang", server.url());
    let pending = tokio::spawn(async move { reqwest::get(url).await });
    // Bounded wait for the request to arrive.
    for _ in 0..200 {
        if !server.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.requests().len(), 1);
    server.stop().await;
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("client must see the connection dropped")
        .unwrap();
    assert!(result.is_err());
}

/// The fakes answer while the thread that started them blocks and no runtime of the
/// test's is being polled.
#[test]
fn serves_while_the_test_thread_blocks() {
    use std::io::{Read, Write};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(HttpServer::start(
            Router::new().route("/hello", get(|| async { "hi" })),
        ))
        .unwrap();
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-length: 2"));
    assert!(answer.ends_with("hi"));
    // Dropping the server closes its port (the abort lands on the fakes' runtime
    // shortly after).
    let addr = server.addr();
    drop(server);
    let refused = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(5));
        std::net::TcpStream::connect(addr).is_err()
    });
    assert!(refused, "port still open after drop");
}

#[test]
fn timestamps() {
    let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_888_800_123_000_000).unwrap();
    let s = compute_timestamp(t);
    assert!(s.ends_with("-08:00"), "{s}");
    assert_eq!(s.len(), "2026-11-24T10:00:00.123-08:00".len());
    assert_eq!(parse_rfc3339(&s), Some(t));
    assert_eq!(parse_rfc3339(&rfc3339_utc(t)), Some(t));
}

#[test]
fn auth_headers() {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
    assert_eq!(bearer_token(&h), Some("abc"));
    h.insert(
        header::AUTHORIZATION,
        "Basic dXNlcjpwYTpzcw==".parse().unwrap(),
    );
    assert_eq!(bearer_token(&h), None);
    assert_eq!(basic_auth(&h), Some(("user".into(), "pa:ss".into())));
}
