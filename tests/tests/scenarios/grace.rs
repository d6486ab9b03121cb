//! When no reset is made: boot grace after a start or a recent reset (no reset loop), a reset
//! in progress or a conflicting operation, a VM not running, `--dry-run`; a reset whose
//! completion cannot be confirmed stays a reset.

use crate::common::{World, VM, ZONE};
use crate::verdict;
use keepalive_tests::{ComputeRoute, Health, FAKE_PROJECT};
use time::OffsetDateTime;

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
