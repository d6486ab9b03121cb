//! `provisioner keepalive` (runbook step 6) through the real binary against the stateful
//! fakes: Cloud Run Admin v2 (long-running operations, IAM), Cloud Scheduler, Secret Manager,
//! Compute Engine (the static address), and the real Pub/Sub emulator through
//! `PUBSUB_EMULATOR_HOST` (the `google-cloud-pubsub` crate's REST admin calls). The emulator
//! serves no IAM, so there the Pub/Sub grants are left to a person, with the command; the
//! policy arithmetic is tested in the provisioner's unit tests. The job's payload then runs
//! through the real `keepalive check`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::{run_check, run_provisioner, ProvisionerRun};
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const NAME: &str = "whatsapp-4915112345678";
const REGION: &str = "europe-west3";
const IP: &str = "34.89.1.2";
const ADMIN_PASSWORD: &str = "Stored!AdminPassw0rd-kept-in-Secret-Manager-only-000000000000000";

fn p(rest: &str) -> String {
    format!("projects/{FAKE_PROJECT}/{rest}")
}

fn service_name() -> String {
    p(&format!("locations/{REGION}/services/whatsapp-keepalive"))
}

fn job_name(vm: &str) -> String {
    p(&format!("locations/{REGION}/jobs/keepalive-{vm}"))
}

fn config_text(phone: &str, extra: &str) -> String {
    format!(
        "project = \"{FAKE_PROJECT}\"\nregion = \"{REGION}\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"{phone}\"\n\n[keepalive]\nimage = \"europe-west3-docker.pkg.dev/{FAKE_PROJECT}/keepalive/keepalive:1.0.0\"\n{extra}"
    )
}

struct World {
    g: GoogleFakes,
    env: BTreeMap<String, String>,
    config: PathBuf,
}

impl World {
    /// Steps 1 to 3 done for +49 15112345678: its address and its admin password exist.
    async fn new() -> World {
        let g = GoogleFakes::start().await;
        let env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
        let config = g.dir().join("number.toml");
        std::fs::write(&config, config_text("15112345678", "")).unwrap();
        let w = World { g, env, config };
        w.number_ready(NAME, IP);
        w
    }

    fn number_ready(&self, name: &str, ip: &str) {
        self.g
            .compute
            .seed_address(FAKE_PROJECT, REGION, name, Some(ip));
        self.g.secrets.put(
            &p(&format!("secrets/{name}-admin-password")),
            ADMIN_PASSWORD,
        );
        // The client's certificate as `vm` pinned it (base64 DER; any bytes do here).
        self.g.secrets.put(
            &p(&format!("secrets/{name}-tls-certificate")),
            &base64::engine::general_purpose::STANDARD.encode(PINNED_DER),
        );
    }

    async fn run_with(&self, config: PathBuf, args: &[&str]) -> ProvisionerRun {
        let env = self.env.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let run = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_provisioner(&env, &config, &args, Duration::from_secs(120))
        })
        .await
        .unwrap();
        self.assert_no_secrets(&run.output());
        run
    }

    async fn run(&self, args: &[&str]) -> ProvisionerRun {
        self.run_with(self.config.clone(), args).await
    }

    fn assert_no_secrets(&self, text: &str) {
        assert!(!text.contains(ADMIN_PASSWORD), "password leaked:\n{text}");
        for t in self.g.tokens.tokens() {
            assert!(!text.contains(&t), "a token leaked:\n{text}");
        }
    }

    /// Requests to the fakes that changed something (anything but GET and getIamPolicy).
    /// (Pub/Sub is the emulator, which keeps no log: compare [`World::pubsub_state`].)
    fn mutations(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (api, reqs) in [
            ("run", self.g.run.requests()),
            ("scheduler", self.g.scheduler.requests()),
            ("compute", self.g.compute.requests()),
            ("secrets", self.g.secrets.requests()),
        ] {
            for r in reqs {
                let read = r.method == "GET" || r.path.ends_with(":getIamPolicy");
                if !read {
                    all.push(format!("{api} {} {}", r.method, r.path));
                }
            }
        }
        all
    }

    /// The project's topics and subscriptions as Pub/Sub has them.
    fn pubsub_state(&self) -> Vec<Value> {
        let ps = &self.g.pubsub;
        let topics = ps.topics(FAKE_PROJECT).into_iter().map(|t| ps.topic(&t));
        let subs = ps
            .subscriptions(FAKE_PROJECT)
            .into_iter()
            .map(|s| ps.subscription(&s));
        topics.chain(subs).map(Option::unwrap_or_default).collect()
    }

    fn clear_requests(&self) {
        self.g.run.clear_requests();
        self.g.scheduler.clear_requests();
        self.g.compute.clear_requests();
        self.g.secrets.clear_requests();
    }
}

fn ok(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(0), "{}", run.output());
}

fn decode_data(job: &Value) -> Value {
    let data = STANDARD
        .decode(job["pubsubTarget"]["data"].as_str().expect("data"))
        .expect("base64");
    serde_json::from_slice(&data).expect("JSON payload")
}

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
async fn a_new_image_is_deployed_and_public_access_removed() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    // Someone made the service public by hand, and a new image was built.
    let mut policy = w.g.run.iam_policy(&service_name()).unwrap();
    policy["bindings"][0]["members"]
        .as_array_mut()
        .unwrap()
        .push(json!("allUsers"));
    let token = w.g.tokens.issue();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v2/{}:setIamPolicy",
            w.g.run.url(),
            service_name()
        ))
        .bearer_auth(token)
        .json(&json!({"policy": policy}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    std::fs::write(
        &w.config,
        config_text("15112345678", "").replace("keepalive:1.0.0", "keepalive:1.1.0"),
    )
    .unwrap();

    let run = w.run(&["keepalive"]).await;
    ok(&run);
    let svc = w.g.run.service(&service_name()).unwrap();
    assert_eq!(
        svc["template"]["containers"][0]["image"],
        format!("europe-west3-docker.pkg.dev/{FAKE_PROJECT}/keepalive/keepalive:1.1.0")
    );
    assert_eq!(svc["generation"], "2");
    assert!(run.stdout.contains("updated: image is"), "{}", run.stdout);
    let policy = w.g.run.iam_policy(&service_name()).unwrap();
    assert!(!policy.to_string().contains("allUsers"), "{policy}");
    assert!(
        run.stdout.contains("public access removed"),
        "{}",
        run.stdout
    );
    // The job's payload references the new service through the same topic: unchanged.
    assert!(!w
        .mutations()
        .iter()
        .any(|m| m.starts_with("scheduler PATCH")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deployment_names_the_service_and_how_to_resume() {
    let w = World::new().await;
    w.g.run
        .fail_operation_next("Revision 'whatsapp-keepalive-00001' is not ready: image not found");
    let run = w.run(&["keepalive"]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stderr.contains("Cloud Run service"), "{}", run.stderr);
    assert!(run.stderr.contains("image not found"), "{}", run.stderr);
    assert!(
        run.stderr.contains("provisioner keepalive"),
        "{}",
        run.stderr
    );
    // No job publishes to a service that is not there.
    assert!(w.g.scheduler.jobs().is_empty());
    let failed = w.g.run.service(&service_name()).unwrap();
    assert_eq!(failed["terminalCondition"]["state"], "CONDITION_FAILED");
    let status = w.run(&["status"]).await;
    ok(&status);
    assert!(
        status.stdout.contains("latest revision FAILED: Revision 'whatsapp-keepalive-00001' is not ready: image not found"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("keepalive job"), "{}", status.stdout);

    // Met as someone else's create (a 404 read, then ALREADY_EXISTS): adopted, and its
    // failed revision named, not taken for a deployment still under way.
    w.g.run.fail_next(404);
    w.g.run.fail_next(409);
    let adopted = w.run(&["keepalive"]).await;
    assert_eq!(adopted.code, Some(1), "{}", adopted.output());
    assert!(
        adopted
            .output()
            .contains("it has never been ready: its latest revision failed (Revision 'whatsapp-keepalive-00001' is not ready: image not found)"),
        "{}",
        adopted.output()
    );
    assert!(
        !adopted.output().contains("still deploying"),
        "{}",
        adopted.output()
    );

    // The image is pushed now. The spec is as wanted, so only a named revision deploys it
    // again (the same template makes none); --dry-run says so and changes nothing.
    w.clear_requests();
    let plan = w.run(&["--dry-run", "keepalive"]).await;
    assert!(
        plan.stdout.contains("its latest revision failed (Revision 'whatsapp-keepalive-00001' is not ready: image not found): would deploy again"),
        "{}",
        plan.output()
    );
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());
    let run = w.run(&["keepalive"]).await;
    ok(&run);
    assert!(run.stdout.contains("deployed again"), "{}", run.stdout);
    let svc = w.g.run.service(&service_name()).unwrap();
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    let revision = svc["latestReadyRevision"].as_str().unwrap();
    assert!(
        revision.starts_with(&format!(
            "{}/revisions/whatsapp-keepalive-r",
            service_name()
        )),
        "{revision}"
    );
    assert_ne!(
        svc["latestCreatedRevision"],
        failed["latestCreatedRevision"]
    );
    assert_eq!(w.g.scheduler.jobs().len(), 1);
    // And a third run finds it as wanted.
    w.clear_requests();
    ok(&w.run(&["keepalive"]).await);
    assert!(
        !w.mutations().iter().any(|m| m.starts_with("run ")),
        "{:?}",
        w.mutations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_is_resumed_and_a_failed_update_written_again() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let job = job_name(NAME);
    let status = w.run(&["status"]).await;
    ok(&status);
    assert!(
        status.stdout.contains("ready at https://"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("ENABLED */5 * * * *, not run yet"),
        "{}",
        status.stdout
    );
    w.g.scheduler.fail_attempt(&job, 5, "Topic not found");
    w.g.scheduler.set_state(&job, "PAUSED");
    let status = w.run(&["status"]).await;
    assert!(
        status.stdout.contains("PAUSED */5 * * * *"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("FAILED (code 5: Topic not found)"),
        "{}",
        status.stdout
    );

    w.clear_requests();
    let plan = w.run(&["--dry-run", "keepalive"]).await;
    ok(&plan);
    assert!(
        plan.stdout.contains("paused (last changed "),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("would resume"), "{}", plan.stdout);
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());
    assert_eq!(w.g.scheduler.job(&job).unwrap()["state"], "PAUSED");

    // The resume's answer is lost (503 after the job was resumed): the retry is refused
    // (FAILED_PRECONDITION: no longer paused), the job is read again and found enabled.
    w.g.scheduler.lose_answers(1, 503);
    let run = w.run(&["keepalive"]).await;
    ok(&run);
    assert!(run.stdout.contains(": resumed"), "{}", run.stdout);
    assert_eq!(w.g.scheduler.job(&job).unwrap()["state"], "ENABLED");
    assert_eq!(
        w.mutations()
            .iter()
            .filter(|m| m.starts_with("scheduler "))
            .collect::<Vec<_>>(),
        [&format!("scheduler POST /v1/{job}:resume"); 2],
        "only the resume, retried: the job was as wanted"
    );
    w.clear_requests();
    ok(&w.run(&["keepalive"]).await);
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());

    // UPDATE_FAILED lasts until an update succeeds: every field is written again.
    w.g.scheduler.set_state(&job, "UPDATE_FAILED");
    let run = w.run(&["keepalive"]).await;
    ok(&run);
    assert!(
        run.stdout.contains("written again after a failed update"),
        "{}",
        run.stdout
    );
    let patch =
        w.g.scheduler
            .requests()
            .into_iter()
            .find(|r| r.method == "PATCH")
            .expect("a PATCH");
    assert!(
        patch.query.as_deref().unwrap_or("").contains(
            "updateMask=schedule%2CtimeZone%2Cdescription%2CattemptDeadline%2CpubsubTarget%2CretryConfig"
        ),
        "{:?}",
        patch.query
    );
    assert_eq!(w.g.scheduler.job(&job).unwrap()["state"], "ENABLED");

    // Paused and drifted: the schedule is put back, then the job resumed.
    let mut drifted = w.g.scheduler.job(&job).unwrap();
    drifted["schedule"] = json!("0 * * * *");
    w.g.scheduler.add_job(drifted);
    w.g.scheduler.set_state(&job, "PAUSED");
    w.clear_requests();
    let run = w.run(&["keepalive"]).await;
    ok(&run);
    let sched: Vec<String> = w
        .mutations()
        .into_iter()
        .filter(|m| m.starts_with("scheduler "))
        .collect();
    assert_eq!(
        sched,
        [
            format!("scheduler PATCH /v1/{job}"),
            format!("scheduler POST /v1/{job}:resume")
        ],
        "{}",
        run.stdout
    );
    let now = w.g.scheduler.job(&job).unwrap();
    assert_eq!(
        (now["state"].as_str(), now["schedule"].as_str()),
        (Some("ENABLED"), Some("*/5 * * * *"))
    );

    // DISABLED is Cloud Scheduler's own verdict: say so and how to recover; change nothing.
    w.g.scheduler.set_state(&job, "DISABLED");
    w.clear_requests();
    let plan = w.run(&["--dry-run", "keepalive"]).await;
    ok(&plan);
    assert!(
        plan.stdout
            .contains("left to you: Cloud Scheduler disabled the job"),
        "{}",
        plan.stdout
    );
    let run = w.run(&["keepalive"]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stderr.contains("state DISABLED"), "{}", run.stderr);
    assert!(
        run.stderr.contains("provisioner keepalive"),
        "{}",
        run.stderr
    );
    assert!(
        !w.mutations().iter().any(|m| m.starts_with("scheduler ")),
        "{:?}",
        w.mutations()
    );
}

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
async fn a_subscription_that_drifted_is_brought_back() {
    let w = World::new().await;
    ok(&w.run(&["keepalive"]).await);
    let name = p("subscriptions/whatsapp-keepalive-push");
    w.g.pubsub.patch_subscription(
        &name,
        json!({
            "ackDeadlineSeconds": 10,
            "pushConfig": {"pushEndpoint": "https://old-keepalive.a.run.app"},
            "messageRetentionDuration": "604800s",
        }),
        "ackDeadlineSeconds,pushConfig,messageRetentionDuration",
    );
    w.clear_requests();

    let run = w.run(&["keepalive"]).await;
    ok(&run);
    let sub = w.g.pubsub.subscription(&name).unwrap();
    let uri = w.g.run.service(&service_name()).unwrap()["uri"].clone();
    assert_eq!(sub["pushConfig"]["pushEndpoint"], uri);
    assert_eq!(sub["ackDeadlineSeconds"], 120);
    assert_eq!(sub["messageRetentionDuration"], "600s");
    assert!(
        run.stdout
            .contains("updated: push endpoint https://old-keepalive.a.run.app"),
        "{}",
        run.stdout
    );
    // The push identity came back with the endpoint; nothing else was touched.
    assert_eq!(sub["pushConfig"]["oidcToken"]["audience"], uri, "{sub}");
    assert_eq!(w.mutations(), Vec::<String>::new(), "{}", run.stdout);
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

/// What `vm` pinned in the fake's secret: any bytes stand for the certificate's DER here.
const PINNED_DER: &[u8] = b"the client's self-signed certificate (DER)";

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
