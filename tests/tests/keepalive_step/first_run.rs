//! The first run creates the private service, its subscription and the job; a second run
//! changes nothing, a second number adds only its job; `--dry-run`, missing prerequisites, `plan`.

use crate::world::*;
use keepalive_tests::binaries::run_provisioner;
use keepalive_tests::{GoogleFakes, FAKE_PROJECT};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_a_private_service_its_subscription_and_the_job() {
    let w = World::new().await;
    w.g.run.set_operation_polls(2);
    let run = w.run(&["keepalive"]).await;
    ok(&run);

    // Topics.
    let topic = p("topics/whatsapp-keepalive");
    let dead = p("topics/whatsapp-keepalive-dead-letter");
    assert!(
        w.g.pubsub.topic(&topic).is_some(),
        "{:?}",
        w.g.pubsub.topics(FAKE_PROJECT)
    );
    assert!(w.g.pubsub.topic(&dead).is_some());

    // The service: 128 MiB, timeout above the keepalive's 100 s deadline, its own identity.
    let svc = w.g.run.service(&service_name()).expect("service created");
    let t = &svc["template"];
    let c = &t["containers"][0];
    assert_eq!(
        c["image"],
        format!("europe-west3-docker.pkg.dev/{FAKE_PROJECT}/keepalive/keepalive:1.0.0")
    );
    assert_eq!(c["resources"]["limits"]["memory"], "128Mi");
    let timeout: f64 = t["timeout"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(timeout > 100.0 && timeout < 120.0, "{timeout}");
    assert_eq!(
        t["serviceAccount"],
        format!("whatsapp-keepalive@{FAKE_PROJECT}.iam.gserviceaccount.com")
    );
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        env.contains(&("KEEPALIVE_DEADLINE_S".into(), "100".into())),
        "{env:?}"
    );
    assert!(env.contains(&("GOOGLE_CLOUD_PROJECT".into(), FAKE_PROJECT.into())));
    // The create went through a long-running operation that was polled to the end.
    let op_polls =
        w.g.run
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/operations/"))
            .count();
    assert!(op_polls >= 3, "{op_polls}");

    // Not public: one invoker, the push identity.
    let invoker =
        format!("serviceAccount:whatsapp-keepalive-invoker@{FAKE_PROJECT}.iam.gserviceaccount.com");
    let policy = w.g.run.iam_policy(&service_name()).expect("policy set");
    assert_eq!(
        policy["bindings"],
        json!([{"role": "roles/run.invoker", "members": [invoker]}])
    );
    assert!(!policy.to_string().contains("allUsers"));

    // The push subscription.
    let uri = svc["uri"].as_str().unwrap();
    let sub =
        w.g.pubsub
            .subscription(&p("subscriptions/whatsapp-keepalive-push"))
            .expect("push subscription");
    assert_eq!(sub["topic"], topic);
    assert_eq!(sub["pushConfig"]["pushEndpoint"], uri);
    assert_eq!(
        sub["pushConfig"]["oidcToken"]["serviceAccountEmail"],
        format!("whatsapp-keepalive-invoker@{FAKE_PROJECT}.iam.gserviceaccount.com")
    );
    assert_eq!(sub["pushConfig"]["oidcToken"]["audience"], uri);
    assert_eq!(sub["ackDeadlineSeconds"], 120);
    assert_eq!(sub["messageRetentionDuration"], "600s");
    assert_eq!(sub["deadLetterPolicy"]["deadLetterTopic"], dead);
    assert_eq!(sub["deadLetterPolicy"]["maxDeliveryAttempts"], 5);
    let dl =
        w.g.pubsub
            .subscription(&p("subscriptions/whatsapp-keepalive-dead-letter"))
            .expect("dead-letter subscription keeps what could not be delivered");
    assert_eq!(dl["topic"], dead);
    // Pub/Sub's service agent may move undeliverable messages to the dead-letter topic: the
    // emulator serves no IAM, so the run says how to grant it.
    let agent = format!(
        "serviceAccount:service-{}@gcp-sa-pubsub.iam.gserviceaccount.com",
        w.g.compute.project_number(FAKE_PROJECT)
    );
    for (collection, id, role) in [
        ("topics", "whatsapp-keepalive-dead-letter", "publisher"),
        ("subscriptions", "whatsapp-keepalive-push", "subscriber"),
    ] {
        let line = format!(
            "left to you: the Pub/Sub emulator does not serve IAM; grant it by hand: gcloud pubsub {collection} add-iam-policy-binding {id} --member={agent} --role=roles/pubsub.{role}"
        );
        assert!(run.stdout.contains(&line), "{line}\n{}", run.stdout);
    }

    // The job: every 5 minutes, this number's payload, the password by reference only.
    let job = w.g.scheduler.job(&job_name(NAME)).expect("job");
    assert_eq!(job["schedule"], "*/5 * * * *");
    assert_eq!(job["timeZone"], "Etc/UTC");
    assert_eq!(job["pubsubTarget"]["topicName"], topic);
    let payload = decode_data(&job);
    assert_eq!(payload["whatsAppHostname"], format!("https://{IP}"));
    assert_eq!(payload["vm"], NAME);
    assert_eq!(payload["zone"], "europe-west3-c");
    assert_eq!(payload["project"], FAKE_PROJECT);
    assert_eq!(
        payload["whatsAppPasswordSecret"],
        p(&format!("secrets/{NAME}-admin-password/versions/latest"))
    );
    assert!(payload.get("whatsAppPassword").is_none());
    let everything = format!(
        "{job}{}{}",
        serde_json::to_string(&w.pubsub_state()).unwrap(),
        w.g.run
            .requests()
            .iter()
            .map(|r| r.body_text())
            .collect::<String>()
    );
    assert!(!everything.contains(ADMIN_PASSWORD));

    // What the report says.
    for line in [
        "Cloud Run service",
        "created",
        "push subscription",
        "Cloud Scheduler job",
    ] {
        assert!(run.stdout.contains(line), "{line}:\n{}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_changes_nothing() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let before = (
        w.g.run.service(&service_name()).unwrap()["generation"].clone(),
        w.g.scheduler.job(&job_name(NAME)).unwrap(),
        w.pubsub_state(),
    );
    w.clear_requests();
    let run = w.run(&["keepalive"]).await;
    ok(&run);
    assert_eq!(w.mutations(), Vec::<String>::new(), "{}", run.stdout);
    let after = (
        w.g.run.service(&service_name()).unwrap()["generation"].clone(),
        w.g.scheduler.job(&job_name(NAME)).unwrap(),
        w.pubsub_state(),
    );
    assert_eq!(before, after);
    assert!(!run.stdout.contains("created"), "{}", run.stdout);
    assert!(
        run.stdout.contains("exists, as configured"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_number_adds_only_its_job() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let second = "whatsapp-4915199999999";
    w.number_ready(second, "34.89.2.2");
    let config = w.g.dir().join("second.toml");
    std::fs::write(&config, config_text("15199999999", "")).unwrap();
    w.clear_requests();
    let run = w.run_with(config, &["keepalive"]).await;
    ok(&run);
    let mutations = w.mutations();
    assert_eq!(
        mutations,
        vec![format!(
            "scheduler POST /v1/projects/{FAKE_PROJECT}/locations/{REGION}/jobs"
        ), format!(
            "secrets POST /v1/projects/{FAKE_PROJECT}/secrets/whatsapp-4915199999999-admin-password:setIamPolicy"
        )],
        "{}",
        run.stdout
    );
    assert_eq!(w.g.run.services(), vec![service_name()]);
    assert_eq!(w.g.scheduler.jobs().len(), 2);
    let job = w.g.scheduler.job(&job_name(second)).unwrap();
    let payload = decode_data(&job);
    assert_eq!(payload["vm"], second);
    assert_eq!(payload["whatsAppHostname"], "https://34.89.2.2");
    // Same topic as the first number's job.
    assert_eq!(
        job["pubsubTarget"]["topicName"],
        w.g.scheduler.job(&job_name(NAME)).unwrap()["pubsubTarget"]["topicName"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_missing_prerequisites() {
    let g = GoogleFakes::start().await;
    let env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
    let config = g.dir().join("number.toml");
    std::fs::write(&config, config_text("15112345678", "")).unwrap();
    let run = |args: &'static [&'static str]| {
        let (env, config) = (env.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            run_provisioner(&env, &config, args, Duration::from_secs(60))
        })
    };

    // Nothing exists: the dry run lists what it would create and says what is missing.
    let dry = run(&["--dry-run", "keepalive"]).await.unwrap();
    ok(&dry);
    assert!(dry.stdout.contains("would be created"), "{}", dry.stdout);
    assert!(dry.stdout.contains("provisioner vm"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("provisioner whatsapp"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("dry run: nothing was changed"));
    assert!(g.run.services().is_empty() && g.scheduler.jobs().is_empty());
    assert!(g.pubsub.topics(FAKE_PROJECT).is_empty());
    assert!(g.pubsub.subscriptions(FAKE_PROJECT).is_empty());
    for r in g.run.requests().iter().chain(g.scheduler.requests().iter()) {
        assert!(
            r.method == "GET" || r.path.ends_with(":getIamPolicy"),
            "{} {}",
            r.method,
            r.path
        );
    }

    // For real, it stops before creating anything and says which step comes first.
    let real = run(&["keepalive"]).await.unwrap();
    assert_eq!(real.code, Some(1), "{}", real.output());
    assert!(real.stderr.contains("provisioner vm"), "{}", real.stderr);
    assert!(g.run.services().is_empty() && g.pubsub.topics(FAKE_PROJECT).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_step_6_and_changes_nothing() {
    let w = World::new().await;
    let run = w.run(&["plan"]).await;
    ok(&run);
    assert!(
        run.stdout.contains("keepalive: service whatsapp-keepalive"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Cloud Scheduler job"), "{}", run.stdout);
    assert!(w.g.run.services().is_empty() && w.g.scheduler.jobs().is_empty());
    assert!(w.g.pubsub.topics(FAKE_PROJECT).is_empty());
}
