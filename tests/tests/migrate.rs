//! `provisioner migrate` through the real binary: an On-Premises number set up by this tool
//! moved to the Cloud API with its backup; killed after each step and run again (register
//! called once in all); a register whose answer was lost, not sent again by the next runs
//! unless asked; a number on the Cloud API already; no backup, no register; Meta refusing the
//! backup; 133016; a wrong PIN; the dry run.

mod meta_world;

use keepalive_tests::graph::GraphFault;
use keepalive_tests::whatsapp::{backup_matches, Behaviour, BACKUP_PATH};
use keepalive_tests::FAKE_PROJECT;
use meta_world::{
    failed, ok, Platform, World, APP, KEEPALIVE_SA, NAME, PHONE_ID, TOKEN_SECRET, WABA,
};
use std::time::Duration;

/// A number set up by this tool on On-Premises, reading `ON_PREMISE` on the Graph API.
async fn onprem() -> World {
    let w = World::new(Platform::OnPrem, "ON_PREMISE").await;
    w.install_onprem();
    // The bot's endpoint is LoyJoy's to set up; here Meta's handshake is not the subject.
    w.graph.set_handshake(false);
    w
}

/// Long enough for a run to reach a hung call; the process is then killed there.
const KILL_AFTER: Duration = Duration::from_secs(8);

/// The end state of a migration: on the Cloud API with the stored backup, registered once,
/// the old client disconnected, the job switched, LoyJoy's webhook set.
fn assert_migrated(w: &World) {
    assert_eq!(w.platform_type(), "CLOUD_API");
    assert_eq!(w.register_calls(), 1, "register is called once in all");
    let body = &w.register_bodies()[0];
    let (data, password) = (
        w.secret("backup").expect("backup stored"),
        w.secret("backup-password").expect("backup password stored"),
    );
    assert_eq!(body["backup"]["data"], data.as_str());
    assert_eq!(body["backup"]["password"], password.as_str());
    assert!(
        backup_matches(&data, &password),
        "the stored backup is the client's, with its password"
    );
    assert_eq!(body["pin"], w.secret("two-step-pin").unwrap().as_str());
    assert!(
        w.wa.is_migrated(),
        "Meta disconnected the On-Premises client"
    );
    let p = w.job_payload().expect("the job");
    assert_eq!(p["phoneNumberId"], PHONE_ID);
    assert!(
        p.get("vm").is_none(),
        "the job no longer checks (or resets) the VM: {p}"
    );
    // The keepalive reads the token and the verify token, and nothing else of the number's.
    assert_eq!(w.readers(TOKEN_SECRET), vec![KEEPALIVE_SA.to_string()]);
    assert_eq!(
        w.readers(&format!("{NAME}-webhook-verify-token")),
        vec![KEEPALIVE_SA.to_string()]
    );
    assert!(w.readers(&format!("{NAME}-backup")).is_empty());
    assert_eq!(w.graph.subscribed_apps(WABA), vec![APP.to_string()]);
    assert_eq!(
        w.graph
            .number(PHONE_ID)
            .unwrap()
            .webhook_override
            .as_deref(),
        Some(w.hook.callback_url().as_str())
    );
    assert_eq!(w.g.compute.total_resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_moves_the_number_with_its_backup_stored_first() {
    let w = onprem().await;
    let run = w.run(&["migrate"]).await;
    ok(&run);
    assert_migrated(&w);
    for said in [
        "platform = \"cloud\"",
        "LoyJoy",
        "decommission",
        "no longer checks or resets",
    ] {
        assert!(run.stdout.contains(said), "{said}: {}", run.stdout);
    }
    // Stored before used: the backup password before the backup was asked for, the backup
    // before register.
    let added = |secret: &str| {
        w.g.secrets
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with(&format!("{NAME}-{secret}:addVersion")))
            .unwrap_or_else(|| panic!("{secret} stored"))
            .received_at
    };
    let backup_asked =
        w.wa.requests()
            .into_iter()
            .find(|r| r.path == BACKUP_PATH)
            .expect("backup asked for")
            .received_at;
    let registered = w
        .graph
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/register"))
        .unwrap()
        .received_at;
    assert!(added("backup-password") < backup_asked);
    assert!(added("two-step-pin") < registered);
    assert!(added("backup") < registered);

    // Again: nothing left to do, nothing sent twice.
    let run = w.run(&["migrate"]).await;
    ok(&run);
    assert!(
        run.stdout.contains("register is not called"),
        "{}",
        run.stdout
    );
    assert_eq!(w.register_calls(), 1);
    assert_eq!(w.wa.backups().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_after_each_step_converges_with_one_register() {
    let w = onprem().await;

    // Killed in step 3, waiting for the backup: the PIN and the backup password are stored.
    w.wa.fail_next(BACKUP_PATH, 1, Behaviour::Hang);
    let run = w.run_for(&["migrate"], KILL_AFTER).await;
    assert_eq!(run.code, None, "{}", run.output());
    let pin = w.secret("two-step-pin").expect("PIN stored in step 2");
    let password = w
        .secret("backup-password")
        .expect("backup password stored first");
    assert!(w.secret("backup").is_none());
    assert_eq!(w.register_calls(), 0);

    // Step 3 again: the backup is made but cannot be stored; register is not called.
    w.g.secrets
        .fail_next_on(&format!("{NAME}-backup:addVersion"), 1, 403);
    w.wa.clear_behaviours();
    let run = w.run(&["migrate"]).await;
    failed(&run);
    assert!(
        run.stderr.contains("nothing was registered"),
        "{}",
        run.stderr
    );
    assert_eq!(w.register_calls(), 0);

    // Killed in step 4 after Meta registered the number, before its answer came back.
    w.graph
        .fail_next(&format!("{PHONE_ID}/register"), 1, GraphFault::LoseAnswer);
    let run = w.run_for(&["migrate"], KILL_AFTER).await;
    assert_eq!(run.code, None, "{}", run.output());
    assert_eq!(w.register_calls(), 1);
    assert_eq!(w.platform_type(), "CLOUD_API");

    // Killed in step 6 (connect), waiting for Meta.
    w.graph.fail_next("debug_token", 1, GraphFault::Hang);
    let run = w.run_for(&["migrate"], KILL_AFTER).await;
    assert_eq!(run.code, None, "{}", run.output());
    assert!(
        run.stdout.contains("steps 2 to 4 are skipped"),
        "{}",
        run.stdout
    );

    // Stopped in step 7 (Cloud Scheduler refuses), after connect.
    w.g.scheduler.fail_next(403);
    let run = w.run(&["migrate"]).await;
    failed(&run);
    assert!(w.job_payload().unwrap().get("vm").is_some());

    // And once more: it converges, on the secrets of the first run, with one register.
    let run = w.run(&["migrate"]).await;
    ok(&run);
    assert_migrated(&w);
    assert_eq!(w.secret("two-step-pin").unwrap(), pin);
    assert_eq!(w.secret("backup-password").unwrap(), password);
    assert_eq!(
        w.g.secrets
            .version_count(FAKE_PROJECT, &format!("{NAME}-two-step-pin")),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_whose_answer_was_lost_is_not_sent_again_until_asked() {
    let mut w = onprem().await;
    w.env
        .insert("PROVISIONER_WAIT_TIMEOUT_S".into(), "2".into());
    // The connection drops: the answer is lost, and Meta did not (or not yet) register.
    w.graph
        .fail_next(&format!("{PHONE_ID}/register"), 1, GraphFault::Close);
    let run = w.run(&["migrate"]).await;
    failed(&run);
    assert!(
        run.stderr.contains("migrate --register-again"),
        "{}",
        run.stderr
    );
    assert_eq!(w.register_calls(), 1);
    let record = w.secret("register-sent").expect("the call is recorded");
    assert!(record.contains("answer was lost"), "{record}");

    // Run again "to keep waiting", twice: each run only waits.
    for _ in 0..2 {
        let run = w.run(&["migrate"]).await;
        failed(&run);
        assert!(
            run.stdout.contains("sent by an earlier run"),
            "{}",
            run.stdout
        );
        assert_eq!(w.register_calls(), 1);
    }

    // On purpose: sent once more, with the stored backup, and the migration completes.
    let run = w.run(&["migrate", "--register-again"]).await;
    ok(&run);
    assert_eq!(w.register_calls(), 2);
    assert_eq!(w.platform_type(), "CLOUD_API");
    assert_eq!(w.wa.backups().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_on_the_cloud_api_already_is_not_registered_again() {
    let w = World::new(Platform::OnPrem, "CLOUD_API").await;
    w.install_onprem();
    w.graph.set_handshake(false);
    let run = w.run(&["migrate"]).await;
    ok(&run);
    assert!(
        run.stdout.contains("register is not called"),
        "{}",
        run.stdout
    );
    assert_eq!(w.register_calls(), 0);
    assert!(w.wa.backups().is_empty());
    assert!(w.secret("two-step-pin").is_none());
    assert!(w.job_payload().unwrap().get("phoneNumberId").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_backup_nothing_is_registered_and_the_other_way_is_named() {
    let w = onprem().await;
    w.wa.set_behaviour(BACKUP_PATH, Behaviour::Status(500));
    let run = w.run(&["migrate"]).await;
    failed(&run);
    for said in [
        "could not produce a backup",
        "Nothing was registered",
        "platform = \"cloud\"",
        "verify --code",
    ] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert_eq!(w.register_calls(), 0);
    assert_eq!(w.platform_type(), "ON_PREMISE");
    assert!(
        w.job_payload().unwrap().get("vm").is_some(),
        "the job is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_refusing_the_backup_stops_with_the_other_way() {
    let w = onprem().await;
    w.graph.update_number(PHONE_ID, |n| {
        n.backup = Some(("a backup Meta knows".into(), "another password".into()))
    });
    let run = w.run(&["migrate"]).await;
    failed(&run);
    for said in [
        "did not take the On-Premises backup",
        "platform = \"cloud\"",
    ] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert_eq!(w.register_calls(), 1);
    assert_eq!(w.platform_type(), "ON_PREMISE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_limit_stops_a_migration_before_anything_changes() {
    let w = onprem().await;
    w.graph.update_number(PHONE_ID, |n| {
        n.register_calls = vec![time::OffsetDateTime::now_utc() - time::Duration::hours(2); 10]
    });
    let run = w.run(&["migrate"]).await;
    failed(&run);
    for said in ["133016", "72 hours", "Try again after"] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert!(!w.wa.is_migrated());
    assert!(w.job_payload().unwrap().get("vm").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_stops_with_how_to_recover_and_the_stored_backup_finishes_the_move() {
    let w = onprem().await;
    w.graph
        .update_number(PHONE_ID, |n| n.pin = Some("424242".into()));
    let run = w.run(&["migrate"]).await;
    failed(&run);
    for said in [
        "133005",
        "two-step verification off",
        "backup stays in Secret Manager",
        "provisioner migrate",
    ] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    // As Meta documents: the old client is down, the number not on the Cloud API.
    assert!(w.wa.is_migrated());
    assert_eq!(w.platform_type(), "ON_PREMISE");
    // Recovery as told: the real PIN stored; the client cannot back up any more, the stored
    // backup is used.
    w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/{NAME}-two-step-pin"),
        "424242",
    );
    ok(&w.run(&["migrate"]).await);
    assert_eq!(w.platform_type(), "CLOUD_API");
    assert_eq!(w.register_calls(), 2);
    assert_eq!(w.wa.backups().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_shows_every_step_and_changes_nothing() {
    let w = onprem().await;
    let secrets_before =
        w.g.secrets
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
    let run = w.run(&["--dry-run", "migrate"]).await;
    ok(&run);
    for n in 1..=8 {
        assert!(
            run.stdout.contains(&format!("migrate {n}/8")),
            "step {n}: {}",
            run.stdout
        );
    }
    for said in [
        "two-step PIN",
        "backup password",
        "POST /v1/settings/backup",
        "registration",
        "CLOUD_API",
        "subscription",
        "webhook",
        "Cloud API number",
    ] {
        assert!(run.stdout.contains(said), "{said}: {}", run.stdout);
    }
    assert_eq!(w.register_calls(), 0);
    assert!(w.wa.backups().is_empty());
    assert_eq!(
        w.g.secrets
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        secrets_before
    );
    assert!(w.graph.subscribed_apps(WABA).is_empty());
    assert!(w.job_payload().unwrap().get("vm").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_number_behind_the_id_is_refused_naming_the_key() {
    let w = onprem().await;
    w.graph.update_number(PHONE_ID, |n| {
        n.display_phone_number = "+49 151 99999999".into()
    });
    let run = w.run(&["migrate"]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(
        run.stderr.contains("cloud.phone_number_id"),
        "{}",
        run.stderr
    );
    assert_eq!(w.register_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_needs_the_cloud_section() {
    let w = onprem().await;
    let text = w.config_text(Platform::OnPrem, "");
    let without: String = text[..text.find("[cloud]").unwrap()].to_string();
    std::fs::write(&w.config, without).unwrap();
    let run = w.run(&["migrate"]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(
        run.stderr.contains("cloud.phone_number_id"),
        "{}",
        run.stderr
    );
    assert!(w.graph.calls().is_empty() && w.wa.backups().is_empty());
}
