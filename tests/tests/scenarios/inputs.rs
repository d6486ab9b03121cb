//! Compute Engine's errors (retried or alerts), the password from Secret Manager, the project's
//! fallbacks, invalid and sparse payloads, no access token, the deadline over the whole check.

use crate::common::{World, PASSWORD, VM, ZONE};
use crate::verdict;
use keepalive_tests::{ComputeRoute, Health, FAKE_PROJECT};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_429_and_503_then_success() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute.fail_next(ComputeRoute::GetInstance, 1, 429);
    w.g.compute.fail_next(ComputeRoute::Reset, 2, 503);
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "reset", "{}\n{}", run.stdout, run.stderr);
    assert_eq!(w.resets(), 1);
    // Read before the client (429, then again) and before the reset.
    assert_eq!(w.g.compute.route_count(ComputeRoute::GetInstance), 3);
    // The retries of the reset carried the same requestId.
    let ids: Vec<String> =
        w.g.compute
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/reset"))
            .map(|r| r.query_param("requestId").unwrap())
            .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_503_forever_cannot_complete() {
    let mut w = World::new().await;
    // The retries stop before the deadline: 503 within it.
    w.set_env("KEEPALIVE_DEADLINE_S", "5");
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute.fail_always(ComputeRoute::GetInstance, 503);
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    // No outcome: an error object instead, and the same in the JSON log.
    let error = run.outcome();
    assert!(error["error"].as_str().unwrap().contains("503"), "{error}");
    assert!(error.get("verdict").is_none());
    assert!(run.stderr.contains("503"), "{}", run.stderr);
    for line in run.stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
    }
    assert_eq!(w.resets(), 0);
    assert!(
        w.g.compute.route_count(ComputeRoute::GetInstance) > 1,
        "retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_403_and_404_are_alerts_without_retry() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute.fail_always(ComputeRoute::Reset, 403);
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(1));
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("403"), "{o}");
    assert!(
        o["reason"]
            .as_str()
            .unwrap()
            .contains("compute.instances.reset"),
        "{o}"
    );
    assert_eq!(
        w.g.compute.route_count(ComputeRoute::Reset),
        1,
        "403 is not retried"
    );

    let mut p = w.payload();
    p["vm"] = json!("no-such-vm");
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("404"), "{o}");
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_from_secret_manager() {
    let w = World::new().await;
    // The password goes only to one of the VM's addresses: here the fake's.
    w.g.compute.set_nat_ip(FAKE_PROJECT, ZONE, VM, "127.0.0.1");
    let version = w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/wa-admin"),
        PASSWORD,
    );
    let mut p = w.payload();
    p.as_object_mut().unwrap().remove("whatsAppPassword");
    p["whatsAppPasswordSecret"] = json!(format!(
        "projects/{FAKE_PROJECT}/secrets/wa-admin/versions/latest"
    ));
    let run = w.check(&p, &[]).await;
    assert_eq!(verdict(&run), "healthy", "{} {}", run.stdout, run.stderr);
    assert!(version.contains("/versions/"));
    assert_eq!(w.wa.successful_login_count(), 1);

    // A secret that does not exist: the check cannot log in, a person must fix the payload.
    p["whatsAppPasswordSecret"] = json!(format!(
        "projects/{FAKE_PROJECT}/secrets/missing/versions/1"
    ));
    let run = w.check(&p, &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(o["reason"]
        .as_str()
        .unwrap()
        .contains("whatsAppPasswordSecret"));
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_falls_back_to_env_then_credentials() {
    let mut w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    let mut p = w.payload();
    p.as_object_mut().unwrap().remove("project");
    // From the service-account key's project_id.
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["project"], FAKE_PROJECT);
    assert_eq!(o["verdict"], "reset");
    // GOOGLE_CLOUD_PROJECT wins over the credentials.
    w.set_env("GOOGLE_CLOUD_PROJECT", "other-project");
    let o = w.check(&p, &[]).await.outcome();
    assert_eq!(o["project"], "other-project");
    assert_eq!(o["verdict"], "alert", "no such VM in other-project: {o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_payload_exits_2_naming_the_field() {
    let w = World::new().await;
    let mut p = w.payload();
    p.as_object_mut().unwrap().remove("zone");
    let run = w.check(&p, &[]).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("`zone`"), "{}", run.stderr);
    let error = run.outcome();
    assert_eq!(error["field"], "zone", "{error}");
    assert!(error.get("verdict").is_none());
    assert_eq!(w.wa.login_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_token_cannot_complete() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.token.fail_always(500);
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stderr.contains("token"), "{}", run.stderr);
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_the_whole_check() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_DEADLINE_S", "2");
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute.hang_always(ComputeRoute::GetInstance);
    let started = std::time::Instant::now();
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stderr.contains("deadline") || run.stderr.contains("in time"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_with_empty_optional_fields_are_accepted() {
    let w = World::new().await;
    let mut p = w.payload();
    for k in [
        "smtpHost",
        "smtpUsername",
        "smtpPassword",
        "smtpFrom",
        "smtpTo",
        "project",
    ] {
        p[k] = json!("");
    }
    let run = w.check(&p, &[]).await;
    assert_eq!(run.code, Some(0), "{} {}", run.stdout, run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "healthy");
    // The project then comes from the credentials.
    assert_eq!(o["project"], FAKE_PROJECT);
}
