//! What one misbehaving party can cost the service, through the real binary: an answer is
//! read to at most 256 KiB (a 50 MiB one fails its probe, and the process's peak memory is
//! reported), a quoted text is cut to 300 characters and a reason to 2,048, and clients that
//! never finish their headers are dropped after 10 s while the service keeps answering.

mod common;

use common::{post_push, World};
use keepalive_tests::binaries::Served;
use keepalive_tests::measure::status_kb;
use keepalive_tests::{Behaviour, Health};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

fn reason(o: &Value) -> &str {
    o["reason"].as_str().unwrap_or_default()
}

/// A world with one attempt and no grace: a failed probe resets at once.
async fn one_attempt_world() -> World {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    w.set_env("KEEPALIVE_REQUEST_TIMEOUT_MS", "5000");
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_answer_fails_its_probe_unread() {
    let w = one_attempt_world().await;
    let s = Served::start(&w.env);
    // Warm up (a healthy check), so the peak below is the huge answer's doing.
    let (status, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!(
        (status, o["verdict"].as_str()),
        (200, Some("healthy")),
        "{o}"
    );
    let before = status_kb(s.pid(), "VmHWM");

    w.wa.set_behaviour("/v1/stats/app", Behaviour::Huge(50 * MIB));
    let (status, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!((status, o["verdict"].as_str()), (200, Some("reset")), "{o}");
    assert!(reason(&o).contains("GET /v1/stats/app"), "{o}");
    assert!(reason(&o).contains("more than 256 KiB"), "{o}");
    // The login's answer is bounded the same way.
    w.wa.clear_behaviours();
    w.wa.set_behaviour("/v1/users/login", Behaviour::Huge(50 * MIB));
    let (status, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!(status, 200, "{o}");
    assert!(reason(&o).contains("more than 256 KiB"), "{o}");

    let peak = status_kb(s.pid(), "VmHWM");
    println!(
        "keepalive serve: peak RSS {:.1} MiB before the 50 MiB answers, {:.1} MiB after",
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    assert!(
        peak < before + 16 * MIB as u64,
        "peak RSS grew from {before} to {peak} bytes: the answer was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_error_details_are_cut() {
    let w = one_attempt_world().await;
    let errors = |details: String| json!({"errors": [{"code": 1014, "title": "Internal error", "details": details}]});
    // 1 MiB: more than an answer may be; not read at all.
    let huge = "d".repeat(MIB);
    w.wa.set_behaviour("/v1/users/login", Behaviour::Json(500, errors(huge)));
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(reason(&o).contains("more than 256 KiB"), "{o}");
    assert!(!reason(&o).contains("ddd"), "{o}");

    // 240 KiB of titles and details from a probe, and 100 KiB of health's node names: read
    // (under 256 KiB), each quote cut to 300 characters, the reason to 2,048.
    w.wa.clear_behaviours();
    let long = "d".repeat(60 * 1024);
    let probe_error = json!({"errors": [
        {"code": 1014, "title": long, "details": long},
        {"code": 1014, "title": long, "details": long},
    ]});
    w.wa.set_behaviour("/v1/stats/db", Behaviour::Json(500, probe_error));
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    let r = reason(&o);
    assert!(
        r.chars().count() <= 2048,
        "{} characters",
        r.chars().count()
    );
    let longest_quote = r.split(|c| c != 'd').map(str::len).max().unwrap_or(0);
    assert!(
        (250..=300).contains(&longest_quote),
        "a quote of {longest_quote} characters"
    );
    for line in run.stderr.lines() {
        assert!(line.len() < 16 * 1024, "a log line of {} bytes", line.len());
    }
    assert!(run.stdout.len() < 16 * 1024, "{} bytes", run.stdout.len());

    w.wa.clear_behaviours();
    let nodes: serde_json::Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("{i}:{}", "n".repeat(100 * 1024 / 40)),
                json!({"gateway_status": "disconnected", "role": "coreapp"}),
            )
        })
        .collect();
    w.wa.set_health(Health::Raw(json!({ "health": nodes })));
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(reason(&o).chars().count() <= 2048, "{o}");
    assert!(reason(&o).contains("no coreapp"), "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_the_service_keeps_answering() {
    let w = World::new().await;
    let s = Served::start(&w.env);
    let addr = format!("127.0.0.1:{}", s.port);
    // 300 connections that never finish their headers: half send part of a request, half
    // send nothing at all.
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut c = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        if i % 2 == 0 {
            c.write_all(b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: applic")
                .await
                .unwrap();
        }
        slow.push(c);
    }
    // While they hang on, messages are still handled.
    for _ in 0..3 {
        let (status, o) = post_push(&s.url(), &w.payload()).await;
        assert_eq!(
            (status, o["verdict"].as_str()),
            (200, Some("healthy")),
            "{o}"
        );
    }
    // Each is dropped by the service (after its 10 s); a bound far above that, per
    // connection, so that a slow machine does not fail the test.
    let closed = futures::future::join_all(slow.into_iter().map(|mut c| async move {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(60), c.read(&mut buf)).await {
                // A 408 (or nothing) and then the end of the stream, or a reset.
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }))
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} of 300 slow connections were still open");
    let (status, o) = post_push(&s.url(), &w.payload()).await;
    assert_eq!(
        (status, o["verdict"].as_str()),
        (200, Some("healthy")),
        "{o}"
    );
}
