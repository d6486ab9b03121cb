//! The job's payload through the real `keepalive check` and its pinned certificate (the secret
//! alone granted); the events topic and the service's right to publish; grants left to a person.

use crate::world::*;
use keepalive_tests::binaries::run_check;
use keepalive_tests::{FakeWhatsApp, FAKE_PROJECT};
use serde_json::json;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_topic_is_created_and_the_service_may_publish_to_it() {
    let w = World::new().await;
    let config = w.g.dir().join("events.toml");
    std::fs::write(
        &config,
        config_text("15112345678", "events_topic = \"whatsapp-events\"\n"),
    )
    .unwrap();
    let first = w.run_with(config.clone(), &["keepalive"]).await;
    ok(&first);
    let events = p("topics/whatsapp-events");
    assert!(w.g.pubsub.topic(&events).is_some(), "events topic created");
    let svc = w.g.run.service(&service_name()).unwrap();
    assert!(
        svc["template"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "KEEPALIVE_EVENTS_TOPIC", "value": events})),
        "{svc}"
    );
    // Without this grant every event the service publishes would be refused (403): the
    // emulator serves no IAM, so the run says how to grant it.
    let runtime =
        format!("serviceAccount:whatsapp-keepalive@{FAKE_PROJECT}.iam.gserviceaccount.com");
    let line = format!("left to you: the Pub/Sub emulator does not serve IAM; grant it by hand: gcloud pubsub topics add-iam-policy-binding whatsapp-events --member={runtime} --role=roles/pubsub.publisher");
    assert!(first.stdout.contains(&line), "{line}\n{}", first.stdout);
    // A second run changes nothing.
    let before = w.pubsub_state();
    w.clear_requests();
    ok(&w.run_with(config, &["keepalive"]).await);
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());
    assert_eq!(w.pubsub_state(), before);

    // A topic in another project is neither created nor granted here: the run says what to
    // run there.
    let elsewhere = w.g.dir().join("elsewhere.toml");
    std::fs::write(
        &elsewhere,
        config_text(
            "15112345678",
            "events_topic = \"projects/ops-hub/topics/alerts\"\n",
        ),
    )
    .unwrap();
    let run = w.run_with(elsewhere, &["keepalive"]).await;
    ok(&run);
    assert!(w.g.pubsub.topic("projects/ops-hub/topics/alerts").is_none());
    assert!(
        run.stdout.contains(&format!(
            "left to you: the topic is in project ops-hub: gcloud pubsub topics add-iam-policy-binding alerts --project=ops-hub --member={runtime} --role=roles/pubsub.publisher"
        )),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_payload_runs_through_the_real_keepalive() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let payload = decode_data(&w.g.scheduler.job(&job_name(NAME)).unwrap());

    // The WhatsApp client at the job's address is our fake; the password comes from Secret
    // Manager through the reference in the payload.
    let wa = FakeWhatsApp::start("admin", ADMIN_PASSWORD).await;
    w.g.compute.add_instance(
        FAKE_PROJECT,
        "europe-west3-c",
        NAME,
        "RUNNING",
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
    );
    // The password from Secret Manager goes only to one of the VM's addresses.
    w.g.compute
        .set_nat_ip(FAKE_PROJECT, "europe-west3-c", NAME, "127.0.0.1");
    let mut payload = payload;
    payload["whatsAppHostname"] = json!(wa.host_port());
    // The fake answers plain HTTP: no certificate to pin.
    payload
        .as_object_mut()
        .unwrap()
        .remove("whatsAppTlsFingerprint");
    let mut env: BTreeMap<String, String> = w.g.env().into_iter().collect();
    env.insert("KEEPALIVE_REQUEST_TIMEOUT_MS".into(), "2000".into());
    let body = payload.to_string().into_bytes();
    let check = tokio::task::spawn_blocking(move || run_check(&env, &body, &["--dry-run"]))
        .await
        .unwrap();
    assert_eq!(check.code, Some(0), "{}\n{}", check.stdout, check.stderr);
    assert_eq!(check.outcome()["verdict"], "healthy");
    assert_eq!(wa.login_count(), 1);
    assert!(!check.stdout.contains(ADMIN_PASSWORD) && !check.stderr.contains(ADMIN_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_projects_get_the_grants_are_left_to_a_person_and_the_rest_is_done() {
    // A Compute Engine endpoint that does not serve projects.get (a minimal fake, say).
    let w = World::new().await;
    w.g.compute
        .fail_always(keepalive_tests::ComputeRoute::GetProject, 404);
    let run = w.run(&["keepalive"]).await;
    ok(&run);
    assert!(w.g.scheduler.job(&job_name(NAME)).is_some());
    assert!(
        run.stdout.contains("the project number could not be read"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("grant it by hand: gcloud pubsub topics add-iam-policy-binding whatsapp-keepalive-dead-letter --member=serviceAccount:service-PROJECT_NUMBER@"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_pins_the_certificate_and_the_secret_alone_is_granted() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let payload = decode_data(&w.g.scheduler.job(&job_name(NAME)).unwrap());
    assert_eq!(
        payload["whatsAppHostname"], "https://34.89.1.2",
        "{payload}"
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, PINNED_DER);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(payload["whatsAppTlsFingerprint"], format!("sha256:{hex}"));

    // The service's account reads this number's admin password, granted on that secret.
    let account =
        format!("serviceAccount:whatsapp-keepalive@{FAKE_PROJECT}.iam.gserviceaccount.com");
    let policy =
        w.g.secrets
            .policy(FAKE_PROJECT, &format!("{NAME}-admin-password"));
    let bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        bindings,
        vec![json!({"role": "roles/secretmanager.secretAccessor", "members": [account]})],
        "{policy}"
    );
    // ... and on nothing else: no other secret, no project-wide policy.
    let pin =
        w.g.secrets
            .policy(FAKE_PROJECT, &format!("{NAME}-tls-certificate"));
    assert!(pin.get("bindings").is_none(), "{pin}");
    let project_wide: Vec<String> = w
        .mutations()
        .into_iter()
        .filter(|m| {
            m.contains("setIamPolicy")
                && !m.contains("/secrets/")
                && !m.contains("/topics/")
                && !m.contains("/subscriptions/")
                && !m.contains("/services/")
        })
        .collect();
    assert!(project_wide.is_empty(), "{project_wide:?}");

    // A second run finds the grant and changes nothing.
    w.clear_requests();
    ok(&w.run(&["keepalive"]).await);
    assert!(
        !w.mutations().iter().any(|m| m.contains("secrets")),
        "{:?}",
        w.mutations()
    );
}
