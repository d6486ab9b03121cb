//! What a check decides, scenario by scenario, through `keepalive check` (the real binary)
//! against the fakes. Each asserts the verdict, the exit status and the resets Compute
//! Engine actually carried out.

mod common;

use common::{World, PASSWORD, USER, VM, ZONE};
use keepalive_tests::{Behaviour, ComputeRoute, Health, FAKE_PROJECT};
use serde_json::json;
use std::time::Duration;
use time::OffsetDateTime;

fn verdict(run: &keepalive_tests::binaries::CheckRun) -> String {
    run.outcome()["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_client_exits_0_after_only_reading_the_instance() {
    let w = World::new().await;
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "healthy");
    assert_eq!(o["vm"], VM);
    assert_eq!(o["zone"], ZONE);
    assert_eq!(o["project"], FAKE_PROJECT);
    assert_eq!(o["attempts"], 1);
    assert_eq!(w.wa.login_count(), 1);
    for (m, p) in [
        ("GET", "/v1/stats/app"),
        ("GET", "/v1/stats/db"),
        ("GET", "/v1/settings/application"),
        ("GET", "/v1/settings/profile/about"),
        ("GET", "/v1/settings/business/profile"),
        ("PUT", "/v1/services/message/gc"),
        ("GET", "/v1/health"),
    ] {
        assert_eq!(w.wa.count(m, p), 1, "{m} {p}");
    }
    assert_only_the_instance_was_read(&w);
    // Probes carry the bearer token the login gave, never Basic credentials.
    let probe =
        w.wa.requests()
            .into_iter()
            .find(|r| r.path == "/v1/stats/db")
            .unwrap();
    assert!(probe
        .header("authorization")
        .unwrap()
        .starts_with("Bearer "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_status() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "2");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    let cases = [
        ("connected", "healthy", 0, 0),
        ("connecting", "healthy", 0, 0),
        ("uninitialized", "reset", 1, 1),
        ("disconnected", "reset", 1, 1),
        ("unregistered", "alert", 1, 0),
    ];
    for (status, want, code, resets) in cases {
        let before = w.resets();
        w.wa.set_health(Health::Single(status));
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(verdict(&run), want, "{status}: {}", run.stdout);
        assert_eq!(run.code, Some(code), "{status}");
        assert_eq!(w.resets() - before, resets, "{status}");
        if status == "unregistered" {
            assert!(run.outcome()["reason"]
                .as_str()
                .unwrap()
                .contains("unregistered"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_availability_shape() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    // The masters report disconnected in HA mode; one coreapp connected means up.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-1:primary_master", "disconnected", "primary_master"),
        ("wa-2:secondary_master", "disconnected", "secondary_master"),
        ("wa-3:coreapp", "connected", "coreapp"),
        ("wa-4:coreapp", "disconnected", "coreapp"),
    ]));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "healthy", "{}", run.stdout);
    assert_eq!(w.resets(), 0);

    // Multiconnect: shards and the master connected.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-1:primary_master", "connected", "primary_master"),
        ("wa-3:coreapp", "connected", "coreapp"),
        ("wa-4:coreapp", "connected", "coreapp"),
    ]));
    assert_eq!(verdict(&w.check(&w.payload(), &[]).await), "healthy");

    // No coreapp up: down, even with a master connected.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-1:primary_master", "connected", "primary_master"),
        ("wa-3:coreapp", "disconnected", "coreapp"),
    ]));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "reset", "{}", run.stdout);
    assert!(run.outcome()["reason"]
        .as_str()
        .unwrap()
        .contains("no coreapp"));
    assert_eq!(w.resets(), 1);

    // Unregistered on any node: a person must act.
    w.wa.set_health(Health::Nodes(vec![
        ("wa-3:coreapp", "connected", "coreapp"),
        ("wa-4:coreapp", "unregistered", "coreapp"),
    ]));
    assert_eq!(verdict(&w.check(&w.payload(), &[]).await), "alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failing_resets_after_every_attempt_failed() {
    let w = World::new().await;
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(500));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset");
    assert_eq!(o["attempts"], 3);
    assert!(
        o["reason"].as_str().unwrap().contains("login failed"),
        "{o}"
    );
    assert!(
        o["operation"].as_str().unwrap().starts_with("operation"),
        "{o}"
    );
    assert_eq!(w.wa.login_count(), 3);
    assert_eq!(w.resets(), 1);
    // The reset was sent with a requestId, after reading the instance and its resets.
    let reset =
        w.g.compute
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/reset"))
            .unwrap();
    assert!(uuid_like(&reset.query_param("requestId").unwrap()));
}

/// The one Compute call of a check that resets nothing: reading the instance (its label
/// comes before any request to the client).
fn assert_only_the_instance_was_read(w: &World) {
    let requests = w.g.compute.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert!(requests[0].path.ends_with(&format!("/instances/{VM}")));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().filter(|c| *c == '-').count() == 4
        && s != "00000000-0000-0000-0000-000000000000"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_hanging_times_out_and_resets() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_REQUEST_TIMEOUT_MS", "200");
    w.wa.set_behaviour("/v1/users/login", Behaviour::Hang);
    let started = std::time::Instant::now();
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("timed out"), "{o}");
    assert_eq!(w.resets(), 1);
    // Three attempts of 200 ms, not the 8 s of the original per request.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refused_resets() {
    let w = World::new().await;
    w.wa.stop().await;
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(
        o["reason"].as_str().unwrap().contains("login failed"),
        "{o}"
    );
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlocked_database_shows_as_a_hanging_probe() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_REQUEST_TIMEOUT_MS", "250");
    w.wa.set_behaviour("/v1/stats/db", Behaviour::Hang);
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert!(
        o["reason"].as_str().unwrap().contains("/v1/stats/db"),
        "{o}"
    );
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_probe_failure_kind_is_a_failure() {
    let mut w = World::new().await;
    w.set_env("KEEPALIVE_ATTEMPTS", "1");
    w.set_env("KEEPALIVE_BOOT_GRACE_S", "0");
    for (path, b) in [
        ("/v1/settings/application", Behaviour::Status(500)),
        ("/v1/services/message/gc", Behaviour::BadJson),
        ("/v1/settings/business/profile", Behaviour::Close),
        (
            "/v1/health",
            Behaviour::Json(200, json!({"nothing": "here"})),
        ),
    ] {
        w.wa.clear_behaviours();
        w.wa.set_behaviour(path, b.clone());
        let before = w.resets();
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(verdict(&run), "reset", "{path} {b:?}: {}", run.stdout);
        assert_eq!(w.resets(), before + 1, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_transient_failure_does_not_reset() {
    let w = World::new().await;
    for (path, b) in [
        ("/v1/users/login", Behaviour::Status(503)),
        ("/v1/users/login", Behaviour::Close),
        ("/v1/stats/app", Behaviour::Hang),
        ("/v1/health", Behaviour::Status(500)),
    ] {
        w.wa.fail_next(path, 1, b.clone());
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(run.code, Some(0), "{path} {b:?}: {}", run.stdout);
        let o = run.outcome();
        assert_eq!(o["verdict"], "healthy", "{path} {b:?}");
        assert_eq!(o["attempts"], 2, "{path} {b:?}");
    }
    assert_eq!(w.resets(), 0);
    assert!(
        w.g.compute
            .requests()
            .iter()
            .all(|r| r.method == "GET" && r.path.ends_with(&format!("/instances/{VM}"))),
        "only the instance was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_grace_after_a_start() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("uninitialized"));
    w.g.compute.set_last_start(
        FAKE_PROJECT,
        ZONE,
        VM,
        OffsetDateTime::now_utc() - time::Duration::seconds(90),
    );
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(run.code, Some(0));
    let o = run.outcome();
    assert_eq!(o["verdict"], "grace", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("started"), "{o}");
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_grace_after_a_recent_reset_and_no_reset_loop() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    // An earlier reset, two minutes ago, by another instance of the service.
    w.g.compute.add_operation(
        FAKE_PROJECT,
        ZONE,
        VM,
        "reset",
        "DONE",
        OffsetDateTime::now_utc() - time::Duration::seconds(120),
    );
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "grace", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("reset"), "{o}");
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_then_next_check_is_in_grace() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    assert_eq!(verdict(&w.check(&w.payload(), &[]).await), "reset");
    // Still down five minutes later (the next scheduler run): no second reset.
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "grace", "{}", run.stdout);
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_in_progress_is_grace() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute.add_operation(
        FAKE_PROJECT,
        ZONE,
        VM,
        "reset",
        "RUNNING",
        OffsetDateTime::now_utc() - time::Duration::seconds(20),
    );
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "grace", "{o}");
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_reset_does_not_hold_back_a_new_one() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute.add_operation(
        FAKE_PROJECT,
        ZONE,
        VM,
        "reset",
        "DONE",
        OffsetDateTime::now_utc() - time::Duration::hours(3),
    );
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert_eq!(w.resets(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_not_running_is_skipped() {
    let w = World::new().await;
    w.wa.stop().await;
    for status in ["TERMINATED", "STOPPING", "STAGING", "SUSPENDED"] {
        w.g.compute.set_status(FAKE_PROJECT, ZONE, VM, status);
        let run = w.check(&w.payload(), &[]).await;
        assert_eq!(run.code, Some(0), "{status}");
        let o = run.outcome();
        assert_eq!(o["verdict"], "skipped", "{status}: {o}");
        assert!(o["reason"].as_str().unwrap().contains(status), "{o}");
    }
    assert_eq!(w.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_decides_but_never_mutates() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    let run = w.check(&w.payload(), &["--dry-run"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset");
    assert_eq!(o["dryRun"], true);
    assert!(o["reason"].as_str().unwrap().contains("dry run"));
    assert_eq!(w.resets(), 0);
    assert!(
        w.g.compute.requests().iter().all(|r| r.method == "GET"),
        "only reads under --dry-run"
    );
}

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
async fn secrets_stay_out_of_output_even_at_trace_level() {
    let mut w = World::new().await;
    w.set_env("RUST_LOG", "trace");
    w.wa.set_behaviour("/v1/users/login", Behaviour::Status(401));
    // `check` asserts no secret in stdout and stderr for every run.
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "alert");
    assert!(!run.stderr.is_empty(), "trace logging produced nothing");
    assert!(!run.stderr.contains(USER) || !run.stderr.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stays_a_reset_when_its_completion_cannot_be_confirmed() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    // A Compute Engine (or a fake of it) without the `wait` method: poll the operation.
    w.g.compute.fail_always(ComputeRoute::WaitOperation, 404);
    let run = w.check(&w.payload(), &[]).await;
    let o = run.outcome();
    assert_eq!(o["verdict"], "reset", "{o}");
    assert_eq!(w.resets(), 1);
    assert!(w.g.compute.route_count(ComputeRoute::GetOperation) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_operation_on_the_vm_is_grace() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("disconnected"));
    w.g.compute.fail_always(ComputeRoute::Reset, 409);
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "grace", "{o}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status_is_read_case_insensitively() {
    let w = World::new().await;
    w.wa.set_health(Health::Raw(
        json!({"health": {"gateway_status": "Connected"}}),
    ));
    assert_eq!(verdict(&w.check(&w.payload(), &[]).await), "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_echoes_the_password_cannot_leak_it() {
    let w = World::new().await;
    let echo = json!({"errors": [{"code": 1005, "title": "Access denied", "details": format!("bad password {PASSWORD}")}]});
    w.wa.set_behaviour("/v1/users/login", Behaviour::Json(401, echo));
    // `check` asserts that no secret reaches stdout or stderr.
    let o = w.check(&w.payload(), &[]).await.outcome();
    assert_eq!(o["verdict"], "alert", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("[REDACTED]"), "{o}");
}

/// The outcome's log line carries the fields the provisioner's alert policies match
/// (`jsonPayload.kind`, `.verdict`, `.vm`, `.zone`), in Cloud Logging's structured format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_log_line_carries_the_fields_alert_policies_match() {
    let w = World::new().await;
    w.wa.set_health(Health::Single("unregistered"));
    let run = w.check(&w.payload(), &[]).await;
    assert_eq!(verdict(&run), "alert");
    let lines = keepalive_tests::binaries::outcome_log_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    let line = &lines[0];
    assert_eq!(line["kind"], "onprem", "{line}");
    assert_eq!(line["verdict"], "alert", "{line}");
    assert_eq!(line["vm"], VM, "{line}");
    assert_eq!(line["zone"], ZONE, "{line}");
    assert_eq!(line["project"], FAKE_PROJECT, "{line}");
    assert_eq!(line["severity"], "ERROR", "{line}");
    assert!(line["message"].as_str().is_some(), "{line}");
}
