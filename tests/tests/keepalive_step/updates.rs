//! What a later run changes: a new image deployed (public access removed), a failed deployment
//! named with how to resume, a paused job resumed, a failed update written again, a drifted
//! subscription brought back.

use crate::world::*;
use keepalive_tests::FAKE_PROJECT;
use serde_json::json;

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
