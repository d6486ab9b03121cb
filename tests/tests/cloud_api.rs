//! A number on Meta's Cloud API (`platform = "cloud"`) through the real `provisioner`: from a
//! number registered nowhere to its keepalive job; the register limit (133016) and a wrong
//! PIN (133005); a register an earlier run sent, not sent again unless asked; `database` and
//! `vm` refused.

mod meta_world;

use keepalive_tests::FAKE_PROJECT;
use meta_world::{
    failed, ok, Platform, World, APP, KEEPALIVE_SA, NAME, PHONE_ID, TOKEN_SECRET, WABA,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_api_number_from_nothing_to_keepalive() {
    let w = World::new(Platform::Cloud, "NOT_APPLICABLE").await;
    // Not a run of the number's digits, so an echo would be seen.
    w.graph
        .update_number(PHONE_ID, |n| n.verification_code = "770077".into());

    for step in ["database", "vm"] {
        let run = w.run(&[step]).await;
        assert_eq!(run.code, Some(2), "{}", run.output());
        assert!(run.stderr.contains("`platform`"), "{}", run.stderr);
    }

    let run = w.run(&["whatsapp"]).await;
    ok(&run);
    assert_eq!(w.graph.number(PHONE_ID).unwrap().code_requests, 1);
    assert!(run.stdout.contains("verify --code"), "{}", run.stdout);

    // A wrong code: nothing registered.
    let run = w.run(&["verify", "--code", "111111"]).await;
    failed(&run);
    assert!(run.stderr.contains("verify_code"), "{}", run.stderr);
    assert_eq!(w.register_calls(), 0);

    let run = w.run(&["verify", "--code", "770077"]).await;
    ok(&run);
    assert!(
        !run.output().contains("770077"),
        "the code is not echoed:\n{}",
        run.output()
    );
    let pin = w.secret("two-step-pin").expect("PIN stored");
    assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        w.register_bodies(),
        vec![serde_json::json!({"messaging_product": "whatsapp", "pin": pin})]
    );
    assert_eq!(w.platform_type(), "CLOUD_API");

    // Registered: neither a second code nor a second register.
    ok(&w.run(&["verify", "--code", "770077"]).await);
    let run = w.run(&["whatsapp"]).await;
    ok(&run);
    assert!(run.stdout.contains("no code is needed"), "{}", run.stdout);
    assert_eq!(w.graph.number(PHONE_ID).unwrap().code_requests, 1);
    assert_eq!(w.register_calls(), 1);

    // connect: LoyJoy does not know the verify token yet, so Meta's handshake fails; the
    // subscription is made and the verify token stored; once LoyJoy has it, connect ends.
    let run = w.run(&["connect"]).await;
    failed(&run);
    assert!(run.stderr.contains("verify token"), "{}", run.stderr);
    assert_eq!(w.graph.subscribed_apps(WABA), vec![APP.to_string()]);
    let verify_token = w
        .secret("webhook-verify-token")
        .expect("verify token stored");
    w.hook.set_verify_token(&verify_token);
    let run = w.run(&["connect"]).await;
    ok(&run);
    assert_eq!(
        w.graph
            .number(PHONE_ID)
            .unwrap()
            .webhook_override
            .as_deref(),
        Some(w.hook.callback_url().as_str())
    );
    for shown in [
        PHONE_ID,
        WABA,
        "meta-system-user-token",
        &format!("{NAME}-webhook-verify-token"),
    ] {
        assert!(run.stdout.contains(shown), "{shown}: {}", run.stdout);
    }
    assert_eq!(
        w.g.secrets
            .version_count(FAKE_PROJECT, &format!("{NAME}-webhook-verify-token")),
        1,
        "the verify token is generated once"
    );

    let run = w.run(&["keepalive"]).await;
    ok(&run);
    let p = w.job_payload().expect("the job");
    assert_eq!(p["phoneNumberId"], PHONE_ID);
    assert_eq!(p["wabaId"], WABA);
    assert_eq!(
        p["accessTokenSecret"],
        format!("projects/{FAKE_PROJECT}/secrets/meta-system-user-token/versions/latest")
    );
    assert_eq!(
        p["webhookVerifyTokenSecret"],
        format!("projects/{FAKE_PROJECT}/secrets/{NAME}-webhook-verify-token/versions/latest")
    );
    assert_eq!(p["webhookUrl"], w.hook.callback_url());
    assert!(p.get("vm").is_none() && p.get("appId").is_none());
    // The shared keepalive is there, and its account reads the two secrets the job names,
    // and no other of the number's.
    assert!(w
        .g
        .run
        .service(&format!(
            "projects/{FAKE_PROJECT}/locations/europe-west3/services/whatsapp-keepalive"
        ))
        .is_some());
    assert!(w
        .g
        .pubsub
        .topics(FAKE_PROJECT)
        .iter()
        .any(|t| t.ends_with("/whatsapp-keepalive")));
    assert_eq!(w.readers(TOKEN_SECRET), vec![KEEPALIVE_SA.to_string()]);
    assert_eq!(
        w.readers(&format!("{NAME}-webhook-verify-token")),
        vec![KEEPALIVE_SA.to_string()]
    );
    assert!(w.readers(&format!("{NAME}-two-step-pin")).is_empty());
    // Alerting: a Cloud API number has the `alert` policy, and no `reset` policy (nothing to
    // reset).
    let policies = w.g.monitoring.policies(FAKE_PROJECT);
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["displayName"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["WhatsApp keepalive (whatsapp-keepalive): a number needs a person"]
    );
    assert_eq!(
        policies[0]["conditions"][0]["conditionMatchedLog"]["labelExtractors"]["phone_number_id"],
        "EXTRACT(jsonPayload.phoneNumberId)"
    );

    let run = w.run(&["status"]).await;
    ok(&run);
    for shown in [
        "CONNECTED",
        "CLOUD_API",
        "GREEN",
        "PHONE_NUMBER",
        "WABA",
        "messaging AVAILABLE",
        "subscribed",
        "as in number.toml",
        "keepalive job",
    ] {
        assert!(run.stdout.contains(shown), "{shown}: {}", run.stdout);
    }

    // up and plan, now: nothing new is requested or registered.
    ok(&w.run(&["up"]).await);
    let run = w.run(&["plan"]).await;
    ok(&run);
    assert!(!run.stdout.contains("would be"), "{}", run.stdout);
    assert_eq!(w.register_calls(), 1);
    assert_eq!(w.graph.number(PHONE_ID).unwrap().code_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_limit_stops_with_what_it_means_and_when() {
    let w = World::new(Platform::Cloud, "NOT_APPLICABLE").await;
    w.graph.update_number(PHONE_ID, |n| {
        n.code_verification_status = "VERIFIED".into();
        n.register_calls = vec![time::OffsetDateTime::now_utc() - time::Duration::hours(1); 10];
    });
    let run = w.run(&["verify", "--code", "123456"]).await;
    failed(&run);
    for said in ["133016", "10 register", "72 hours", "Try again after"] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    // One call, refused; the PIN was stored before it was sent.
    assert_eq!(w.register_calls(), 1);
    assert!(w.secret("two-step-pin").is_some());
    assert_eq!(w.platform_type(), "NOT_APPLICABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_stops_with_how_to_recover_and_the_right_one_registers() {
    let w = World::new(Platform::Cloud, "NOT_APPLICABLE").await;
    w.graph
        .update_number(PHONE_ID, |n| n.pin = Some("424242".into()));
    let run = w.run(&["verify", "--code", "123456"]).await;
    failed(&run);
    for said in [
        "133005",
        "two-step verification off",
        &format!("{NAME}-two-step-pin"),
    ] {
        assert!(run.stderr.contains(said), "{said}: {}", run.stderr);
    }
    assert_eq!(w.register_calls(), 1);
    // The recovery the message names: the number's real PIN stored as a new version.
    w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/{NAME}-two-step-pin"),
        "424242",
    );
    ok(&w.run(&["verify", "--code", "123456"]).await);
    assert_eq!(w.register_calls(), 2);
    assert_eq!(w.platform_type(), "CLOUD_API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_pin_is_never_replaced_by_a_new_one() {
    let w = World::new(Platform::Cloud, "NOT_APPLICABLE").await;
    let version = w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/{NAME}-two-step-pin"),
        "424242",
    );
    w.g.secrets.set_version_state(&version, "DISABLED");
    let run = w.run(&["verify", "--code", "123456"]).await;
    failed(&run);
    assert!(run.stderr.contains("is DISABLED"), "{}", run.stderr);
    assert_eq!(w.register_calls(), 0);
    assert_eq!(w.graph.count("POST", &format!("{PHONE_ID}/verify_code")), 0);
    assert_eq!(
        w.g.secrets
            .version_count(FAKE_PROJECT, &format!("{NAME}-two-step-pin")),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_registered_meanwhile_is_not_registered_again() {
    let w = World::new(Platform::Cloud, "NOT_APPLICABLE").await;
    // verify_code is slow; while it runs, the number gets registered elsewhere (another
    // engineer, a run whose answer was lost). Right before register, the platform is read.
    w.graph.fail_next(
        &format!("{PHONE_ID}/verify_code"),
        1,
        keepalive_tests::graph::GraphFault::Delay(std::time::Duration::from_secs(2)),
    );
    let run = w.run(&["verify", "--code", "123456"]);
    // Bounded at 30 s: the run may first have to build the binary.
    let flip = async {
        for _ in 0..3000 {
            if w.graph.count("POST", &format!("{PHONE_ID}/verify_code")) == 1 {
                w.graph
                    .update_number(PHONE_ID, |n| n.platform_type = "CLOUD_API".into());
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("verify_code was never called");
    };
    let (run, ()) = tokio::join!(run, flip);
    ok(&run);
    assert!(
        run.stdout.contains("register was not called"),
        "{}",
        run.stdout
    );
    assert_eq!(w.register_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_an_earlier_run_sent_is_sent_again_only_when_asked() {
    use time::format_description::well_known::Rfc3339;
    let mut w = World::new(Platform::Cloud, "NOT_APPLICABLE").await;
    w.env
        .insert("PROVISIONER_WAIT_TIMEOUT_S".into(), "2".into());
    // An earlier run sent register an hour ago and lost the answer; Meta has not (yet)
    // carried it out.
    let an_hour_ago = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&Rfc3339)
        .unwrap();
    w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/{NAME}-register-sent"),
        &format!("{an_hour_ago} register sent, its answer was lost"),
    );
    let run = w.run(&["verify", "--code", "123456"]).await;
    failed(&run);
    assert!(
        run.stdout.contains("sent by an earlier run"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("verify --code CODE --register-again"),
        "{}",
        run.stderr
    );
    assert_eq!(w.register_calls(), 0);

    let run = w
        .run(&["verify", "--code", "123456", "--register-again"])
        .await;
    ok(&run);
    assert_eq!(w.register_calls(), 1);
    assert_eq!(w.platform_type(), "CLOUD_API");
}
