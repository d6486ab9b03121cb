//! `provisioner whatsapp`, `verify`, `connect`, `link`, `secrets show` and `up` through the
//! real binary, against a fresh WhatsApp fake (admin/secret, first-login rule, registration)
//! and the Google fakes.

use keepalive_tests::binaries::{run_provisioner, ProvisionerRun};
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const NAME: &str = "whatsapp-4915112345678";
const CERT: &str =
    "CmQKIAjH0KbW3wQSBmVudDp3YRoMQWNtZSBHbWJIIFNjaGVtYRJAxJ6ZxwIn6sQ2Z0y2rLbLq0Xqd7fR4K9Zt2m5";

struct World {
    g: GoogleFakes,
    wa: FakeWhatsApp,
    env: BTreeMap<String, String>,
    config: PathBuf,
}

fn config_text(extra: &str) -> String {
    format!(
        "project = \"{FAKE_PROJECT}\"\nregion = \"europe-west3\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"15112345678\"\n\n[loyjoy]\nwebhook_url = \"https://example.loyjoy.com/whatsapp/webhook\"\napi_username = \"loyjoy\"\n{extra}"
    )
}

impl World {
    async fn new() -> World {
        let g = GoogleFakes::start().await;
        let wa = FakeWhatsApp::start_fresh(true).await;
        g.sql.auto_databases_after(1, &["wa", "wa_messages"]);
        let mut env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
        env.insert("PROVISIONER_WHATSAPP_URL".into(), wa.url());
        env.insert("PROVISIONER_WAIT_TIMEOUT_S".into(), "60".into());
        env.insert("HOME".into(), g.dir().display().to_string());
        let config = g.dir().join("number.toml");
        std::fs::write(&config, config_text("")).unwrap();
        std::fs::write(g.dir().join("cert.txt"), format!("{CERT}\n")).unwrap();
        World { g, wa, env, config }
    }

    async fn run(&self, args: &[&str]) -> ProvisionerRun {
        let env = self.env.clone();
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let run = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_provisioner(&env, &config, &args, Duration::from_secs(120))
        })
        .await
        .unwrap();
        run
    }

    fn secret(&self, suffix: &str) -> Option<String> {
        self.g
            .secrets
            .get_latest(FAKE_PROJECT, &format!("{NAME}-{suffix}"))
    }

    /// No generated password anywhere in `text`.
    fn assert_no_secrets(&self, text: &str) {
        for suffix in ["admin-password", "api-password", "db-password"] {
            if let Some(s) = self.secret(suffix) {
                assert!(!text.contains(&s), "{suffix} leaked into:\n{text}");
            }
        }
        for s in self.g.tokens.tokens() {
            assert!(!text.contains(&s), "a Google token leaked into:\n{text}");
        }
        assert!(
            !text.contains(CERT),
            "the registration certificate leaked into:\n{text}"
        );
    }
}

fn ok(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(0), "{}", run.output());
}

fn meets_rules(p: &str) -> bool {
    p.len() == 64
        && p.bytes().any(|b| b.is_ascii_uppercase())
        && p.bytes().any(|b| b.is_ascii_lowercase())
        && p.bytes().any(|b| b.is_ascii_digit())
        && p.bytes().any(|b| !b.is_ascii_alphanumeric())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_sets_a_stored_password_and_requests_the_code() {
    let w = World::new().await;
    let run = w.run(&["whatsapp"]).await;
    ok(&run);
    w.assert_no_secrets(&run.output());
    let stored = w
        .secret("admin-password")
        .expect("admin password in Secret Manager");
    assert!(meets_rules(&stored), "{}", stored.len());
    assert_eq!(w.wa.received_new_passwords(), vec![stored.clone()]);
    assert_eq!(w.wa.admin_password(), stored);
    let requests = w.wa.account_requests();
    assert_eq!(requests.len(), 1);
    let body = &requests[0];
    assert_eq!(body["cc"], "49");
    assert_eq!(body["phone_number"], "15112345678");
    assert_eq!(body["method"], "sms");
    assert_eq!(body["cert"], CERT);
    assert!(run.stdout.contains("code is on its way"), "{}", run.stdout);
    assert!(run.stdout.contains("verify"), "{}", run.stdout);

    // A later run logs in with the stored password; no new password is set.
    let run = w.run(&["whatsapp"]).await;
    ok(&run);
    assert_eq!(w.wa.received_new_passwords().len(), 1);
    assert_eq!(
        w.g.secrets
            .version_count(FAKE_PROJECT, &format!("{NAME}-admin-password")),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_storing_and_setting_the_password_loses_nothing() {
    let w = World::new().await;
    // An earlier run stored the password, then died before the first login.
    let earlier = "Aa1!".to_string() + &"x".repeat(60);
    w.g.secrets.put(
        &format!("projects/{FAKE_PROJECT}/secrets/{NAME}-admin-password"),
        &earlier,
    );
    let run = w.run(&["whatsapp"]).await;
    ok(&run);
    assert_eq!(w.wa.admin_password(), earlier);
    assert_eq!(w.wa.received_new_passwords(), vec![earlier]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_registered_needs_no_verify() {
    let w = World::new().await;
    w.wa.set_registered(true);
    let run = w.run(&["whatsapp"]).await;
    ok(&run);
    assert!(run.stdout.contains("registered already"), "{}", run.stdout);
    assert!(run.stdout.contains("not needed"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_file_is_refused_before_sending() {
    let w = World::new().await;
    std::fs::write(w.g.dir().join("cert.txt"), "not base64 at all!").unwrap();
    let run = w.run(&["whatsapp"]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("whatsapp.cert_file"), "{}", run.stderr);
    assert!(w.wa.account_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_wrong_code_then_right_code() {
    let w = World::new().await;
    w.wa.set_verification_code("654321");
    ok(&w.run(&["whatsapp"]).await);
    let run = w.run(&["verify", "--code", "111111"]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stderr.contains("/v1/account/verify"), "{}", run.stderr);
    assert!(run.stderr.contains("again"), "{}", run.stderr);
    assert!(!w.wa.registered());
    let run = w.run(&["verify", "--code", "654321"]).await;
    ok(&run);
    assert!(w.wa.registered());
    assert!(!run.output().contains("654321"), "the code is not echoed");
    // No terminal and no --code: a clear error, not a hang.
    let run = w.run(&["verify"]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("--code"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sets_the_webhook_and_the_api_user() {
    let w = World::new().await;
    w.wa.set_registered(true);
    ok(&w.run(&["whatsapp"]).await);
    let run = w.run(&["connect"]).await;
    ok(&run);
    w.assert_no_secrets(&run.output());
    assert_eq!(
        w.wa.webhook_url().as_deref(),
        Some("https://example.loyjoy.com/whatsapp/webhook")
    );
    let stored = w
        .secret("api-password")
        .expect("API password in Secret Manager");
    assert_eq!(w.wa.user_password("loyjoy"), Some(stored.clone()));
    assert!(run.stdout.contains("hostname: 127.0.0.1"), "{}", run.stdout);
    assert!(run.stdout.contains("username: loyjoy"), "{}", run.stdout);
    assert!(
        run.stdout.contains("provisioner secrets show api-password"),
        "{}",
        run.stdout
    );

    // Again: the user exists; its password is set to the stored one.
    let run = w.run(&["connect"]).await;
    ok(&run);
    assert_eq!(w.wa.user_password("loyjoy"), Some(stored.clone()));
    assert_eq!(
        w.g.secrets
            .version_count(FAKE_PROJECT, &format!("{NAME}-api-password")),
        1
    );

    // Revealed only on purpose.
    let run = w.run(&["secrets", "show", "api-password"]).await;
    ok(&run);
    assert_eq!(run.stdout.trim(), stored);
    let run = w.run(&["secrets", "show"]).await;
    ok(&run);
    assert!(!run.stdout.contains(&stored));
    assert!(run.stdout.contains("api-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_webhook_that_is_not_https() {
    let w = World::new().await;
    std::fs::write(
        &w.config,
        config_text("").replace("https://example.loyjoy.com", "http://example.loyjoy.com"),
    )
    .unwrap();
    let run = w.run(&["connect"]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("loyjoy.webhook_url"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_encodes_tricky_texts_and_writes_a_png() {
    let w = World::new().await;
    let cases = [
        ("Hallo Welt", "Hallo%20Welt"),
        (
            "Fish & Chips #1 + more",
            "Fish%20%26%20Chips%20%231%20%2B%20more",
        ),
        ("Grüße 👋", "Gr%C3%BC%C3%9Fe%20%F0%9F%91%8B"),
    ];
    for (text, enc) in cases {
        let run = w.run(&["link", "--text", text]).await;
        ok(&run);
        assert!(
            run.stdout.contains(&format!(
                "https://api.whatsapp.com/send?phone=4915112345678&text={enc}"
            )),
            "{text}: {}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains(&format!("https://wa.me/4915112345678?text={enc}")),
            "{text}: {}",
            run.stdout
        );
    }
    let png = w.g.dir().join("qr.png");
    let run = w.run(&["link", "--png", png.to_str().unwrap()]).await;
    ok(&run);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_stops_for_the_code_then_finishes() {
    let w = World::new().await;
    let run = w.run(&["up"]).await;
    ok(&run);
    assert!(
        run.stdout.contains("stopped for the registration code"),
        "{}",
        run.stdout
    );
    assert!(w.wa.webhook_url().is_none(), "connect waits for verify");
    ok(&w.run(&["verify", "--code", "123456"]).await);
    let run = w.run(&["up"]).await;
    ok(&run);
    w.assert_no_secrets(&run.output());
    assert!(w.wa.webhook_url().is_some());
    assert!(
        run.stdout.contains("https://wa.me/4915112345678"),
        "{}",
        run.stdout
    );
    assert_eq!(
        w.wa.account_requests().len(),
        1,
        "no second code was requested"
    );
    // Step 6 ran last: this number's job publishes its payload, the password by reference.
    let job =
        w.g.scheduler
            .job(&format!(
                "projects/{FAKE_PROJECT}/locations/europe-west3/jobs/keepalive-{NAME}"
            ))
            .expect("up ends with the keepalive job");
    let data = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        job["pubsubTarget"]["data"].as_str().unwrap(),
    )
    .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        payload["whatsAppPasswordSecret"],
        format!("projects/{FAKE_PROJECT}/secrets/{NAME}-admin-password/versions/latest")
    );
    assert_eq!(w.g.run.services().len(), 1);
    assert!(run.stdout.contains("up: done"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_twice_is_harmless() {
    let w = World::new().await;
    ok(&w.run(&["whatsapp"]).await);
    ok(&w.run(&["verify", "--code", "123456"]).await);
    let run = w.run(&["verify", "--code", "123456"]).await;
    ok(&run);
    assert!(run.stdout.contains("registered already"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_prints_the_hostname_with_its_port() {
    let w = World::new().await;
    ok(&w.run(&["whatsapp"]).await);
    let run = w.run(&["connect"]).await;
    ok(&run);
    let port = w.wa.host_port().rsplit(':').next().unwrap().to_string();
    assert!(
        run.stdout
            .contains(&format!("hostname: 127.0.0.1:{port}\n")),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_whatsapp_runs_at_once_leave_the_clients_password_as_the_latest() {
    // The interleaving differs from round to round; every one must end the same way.
    for round in 0..4 {
        let w = World::new().await;
        let (a, b) = tokio::join!(w.run(&["whatsapp"]), w.run(&["whatsapp"]));
        w.assert_no_secrets(&a.output());
        w.assert_no_secrets(&b.output());
        let latest = w.secret("admin-password").expect("a stored password");
        // Compared, never shown (the message names no password).
        assert!(
            w.wa.admin_password() == latest,
            "round {round}: latest is not the client's password\n{}\n{}",
            a.output(),
            b.output()
        );
        ok(&a);
        ok(&b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_another_run_set_meanwhile_is_found_although_this_run_tried_it_first() {
    use keepalive_tests::whatsapp::{Behaviour, LOGIN_PATH};
    let w = World::new().await;
    ok(&w.run(&["whatsapp"]).await);
    let stored = w.secret("admin-password").expect("a stored password");
    // The interleaving of two runs that both read this password from Secret Manager: this
    // run's login with it comes before the other run's first login sets it (401), and this
    // run's own first login comes after (401: the client is no longer fresh).
    w.wa.fail_next(LOGIN_PATH, 1, Behaviour::Status(401));
    let run = w.run(&["whatsapp"]).await;
    ok(&run);
    assert!(run.stdout.contains("set by another run"), "{}", run.stdout);
    assert!(
        w.wa.admin_password() == stored,
        "the client's password is kept"
    );
    assert_eq!(w.secret("admin-password").as_deref(), Some(stored.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_logs_in_and_reads_the_health() {
    use keepalive_tests::whatsapp::Health;
    let w = World::new().await;
    ok(&w.run(&["whatsapp"]).await);
    w.g.compute
        .seed_address(FAKE_PROJECT, "europe-west3", NAME, Some("203.0.113.7"));
    w.g.compute.add_instance(
        FAKE_PROJECT,
        "europe-west3-c",
        NAME,
        "RUNNING",
        time::OffsetDateTime::now_utc(),
    );
    let cases = [
        (
            Health::Single("connected"),
            "healthy: gateway_status is connected",
        ),
        (Health::Single("disconnected"), "NOT HEALTHY"),
        (
            Health::Nodes(vec![
                ("wa:web", "connected", "primary_master"),
                ("wa:core1", "disconnected", "coreapp"),
                ("wa:core2", "connected", "coreapp"),
            ]),
            "healthy: coreapp wa:core2 is connected (3 nodes)",
        ),
    ];
    for (health, want) in cases {
        w.wa.set_health(health);
        let run = w.run(&["status"]).await;
        ok(&run);
        w.assert_no_secrets(&run.output());
        assert!(run.stdout.contains(want), "{want}:\n{}", run.stdout);
    }
    let run = w.run(&["status"]).await;
    assert!(
        run.stdout.contains("wa:core1") && run.stdout.contains("disconnected"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_secret_is_an_error_and_nothing_is_generated_over_it() {
    let w = World::new().await;
    ok(&w.run(&["whatsapp"]).await);
    ok(&w.run(&["connect"]).await);
    let admin_before = w.wa.admin_password();
    // (suffix, the command that reads it, state)
    for (suffix, command, state) in [
        ("admin-password", "whatsapp", "DISABLED"),
        ("api-password", "connect", "DESTROYED"),
        ("tls-certificate", "connect", "DISABLED"),
    ] {
        let secret = format!("{NAME}-{suffix}");
        let versions = w.g.secrets.version_count(FAKE_PROJECT, &secret);
        let last = format!("projects/{FAKE_PROJECT}/secrets/{secret}/versions/{versions}");
        w.g.secrets.set_version_state(&last, state);
        let run = w.run(&[command]).await;
        assert_eq!(run.code, Some(1), "{suffix}: {}", run.output());
        assert!(
            run.stderr.contains(&secret) && run.stderr.contains(state),
            "{suffix}: {}",
            run.stderr
        );
        assert_eq!(
            w.g.secrets.version_count(FAKE_PROJECT, &secret),
            versions,
            "{suffix}: a new version was stored"
        );
        w.g.secrets.set_version_state(&last, "ENABLED");
    }
    assert!(
        w.wa.admin_password() == admin_before,
        "the admin password changed"
    );
    assert_eq!(w.wa.received_new_passwords().len(), 1);
}
