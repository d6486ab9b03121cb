//! `provisioner decommission` through the real binary: refused for a number still on
//! On-Premises and without a terminal or `--yes`; at a terminal, unless the number is typed
//! back; after a migration, everything of the
//! installation removed, the database after a backup that outlives it (Cloud SQL's final
//! backup, or an export), the passwords' versions destroyed, the rest kept; killed half-way
//! and resumed; the dry run changing nothing; `--abandon`.

mod meta_world;

use keepalive_tests::sqladmin::SqlRoute;
use keepalive_tests::FAKE_PROJECT;
use meta_world::{failed, ok, Platform, World, NAME, REGION, ZONE};
use std::time::Duration;

/// What a migrated number keeps: the admin password, the PIN, the backup and its password.
const MIGRATED_KEPT: [&str; 4] = [
    "admin-password",
    "two-step-pin",
    "backup",
    "backup-password",
];

/// An On-Premises installation whose number has moved to the Cloud API.
async fn migrated() -> World {
    let w = World::new(Platform::OnPrem, "ON_PREMISE").await;
    w.install_onprem();
    w.graph.set_handshake(false);
    ok(&w.run(&["migrate"]).await);
    w.write_config(Platform::Cloud, "");
    w
}

fn vm_exists(w: &World) -> bool {
    w.g.compute.instance(FAKE_PROJECT, ZONE, NAME).is_some()
}

/// Everything of the installation is still there.
fn assert_untouched(w: &World) {
    assert!(vm_exists(w));
    assert!(w.g.compute.address(FAKE_PROJECT, REGION, NAME).is_some());
    assert!(w
        .g
        .compute
        .firewall(FAKE_PROJECT, &format!("{NAME}-allow-web"))
        .is_some());
    assert!(w.g.sql.instance(FAKE_PROJECT, NAME).is_some());
    assert!(w.job_payload().is_some());
    assert!(w.secret("db-password").is_some() && w.secret("api-password").is_some());
}

/// Removed, and the passwords' versions destroyed; `kept` secrets still readable.
fn assert_removed(w: &World, kept: &[&str]) {
    assert!(!vm_exists(w));
    assert!(w.g.compute.address(FAKE_PROJECT, REGION, NAME).is_none());
    assert!(w
        .g
        .compute
        .firewall(FAKE_PROJECT, &format!("{NAME}-allow-web"))
        .is_none());
    assert!(w.g.sql.instance(FAKE_PROJECT, NAME).is_none());
    for gone in ["db-password", "api-password"] {
        let states =
            w.g.secrets
                .version_states(FAKE_PROJECT, &format!("{NAME}-{gone}"));
        assert!(
            !states.is_empty() && states.iter().all(|s| s == "DESTROYED"),
            "{gone}: {states:?}"
        );
    }
    for kept in kept {
        assert!(w.secret(kept).is_some(), "{kept} is kept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_for_a_number_still_on_premises() {
    let w = World::new(Platform::OnPrem, "ON_PREMISE").await;
    w.install_onprem();
    let run = w.run(&["decommission", "--yes"]).await;
    failed(&run);
    for said in ["ON_PREMISE", "provisioner migrate", "--abandon"] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert_untouched(&w);
    let run = w.run(&["--dry-run", "decommission"]).await;
    failed(&run);
    assert_untouched(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_it_needs_yes() {
    let w = migrated().await;
    let run = w.run(&["decommission"]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_untouched(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_only_the_number_typed_back_goes_on() {
    let w = migrated().await;
    let run = w
        .run_at_terminal(&["decommission"], "+49 151 1234567\n")
        .await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(
        run.stdout
            .contains("Type the number (+4915112345678) to go on")
            && run.stdout.contains("does not match: nothing was removed"),
        "{}",
        run.output()
    );
    assert_untouched(&w);

    let run = w
        .run_at_terminal(&["decommission"], "+49 151 12345678\n")
        .await;
    ok(&run);
    assert_removed(&w, &MIGRATED_KEPT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_migration_it_removes_the_installation_after_a_final_backup() {
    let w = migrated().await;
    let cloud_job = w.job_payload().unwrap();
    let run = w.run(&["decommission", "--yes"]).await;
    ok(&run);
    assert_removed(&w, &MIGRATED_KEPT);
    let backups = w.g.sql.backups();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0]["type"], "FINAL");
    assert_eq!(backups[0]["instance"], NAME);
    assert_eq!(backups[0]["ttlDays"], "365");
    assert!(run.stdout.contains("final backup"), "{}", run.stdout);
    // The job checks the Cloud API number now: it stays.
    assert_eq!(w.job_payload().unwrap(), cloud_job);

    // Again: nothing left to remove.
    let run = w.run(&["decommission", "--yes"]).await;
    ok(&run);
    assert!(run.stdout.contains("not there"), "{}", run.stdout);
    assert_eq!(w.g.sql.route_count(SqlRoute::DeleteInstance), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_export_bucket_the_databases_are_exported_first() {
    let w = migrated().await;
    w.write_config(
        Platform::Cloud,
        "\n[decommission]\nexport_bucket = \"acme-whatsapp-exports\"\n",
    );
    ok(&w.run(&["decommission", "--yes"]).await);
    assert_removed(&w, &MIGRATED_KEPT);
    let exports = w.g.sql.exports();
    let dbs: Vec<&str> = exports.iter().map(|(_, db)| db.as_str()).collect();
    assert_eq!(dbs, ["wa", "wa_messages"]);
    assert!(exports
        .iter()
        .all(|(uri, _)| uri.starts_with(&format!("gs://acme-whatsapp-exports/{NAME}/"))));
    assert!(w.g.sql.backups().is_empty(), "the export is the backup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_database_goes_and_resumed() {
    let w = migrated().await;
    // Deleting the Cloud SQL instance takes "forever": the run is killed waiting for it.
    w.g.sql.set_op_polls(1_000_000);
    let run = w
        .run_for(&["decommission", "--yes"], Duration::from_secs(8))
        .await;
    assert_eq!(run.code, None, "{}", run.output());
    assert!(!vm_exists(&w));
    assert_eq!(
        w.g.sql.state(FAKE_PROJECT, NAME).as_deref(),
        Some("PENDING_DELETE")
    );
    assert!(w.secret("db-password").is_some(), "the passwords go last");
    // The deletion ends in the background; the next run waits for it and finishes.
    w.g.sql.set_op_polls(1);
    let run = w.run(&["decommission", "--yes"]).await;
    ok(&run);
    assert_removed(&w, &MIGRATED_KEPT);
    assert_eq!(
        w.g.sql.route_count(SqlRoute::DeleteInstance),
        1,
        "deleted once"
    );
    assert_eq!(w.g.sql.backups().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_lists_it_all_and_changes_nothing() {
    let w = migrated().await;
    let run = w.run(&["--dry-run", "decommission"]).await;
    ok(&run);
    assert_untouched(&w);
    for said in [
        "VM",
        "firewall rule",
        "static address",
        "Cloud SQL instance",
        "final backup",
        &format!("{NAME}-db-password"),
        &format!("{NAME}-api-password"),
    ] {
        assert!(run.stdout.contains(said), "{said}: {}", run.stdout);
    }
    assert!(
        run.stdout.matches("would be deleted").count() >= 6,
        "{}",
        run.stdout
    );
    assert_eq!(w.g.sql.route_count(SqlRoute::DeleteInstance), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_removes_an_onprem_installation_and_its_onprem_job() {
    let w = World::new(Platform::OnPrem, "ON_PREMISE").await;
    w.install_onprem();
    ok(&w.run(&["decommission", "--abandon", "--yes"]).await);
    assert_removed(&w, &["admin-password"]);
    assert!(
        w.job_payload().is_none(),
        "the On-Premises job would reset a VM that is gone"
    );
    assert_eq!(w.register_calls(), 0);
}
