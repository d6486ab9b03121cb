//! `provisioner database`, `vm`, `plan`, `status` through the real binary against stateful
//! fakes of Cloud SQL Admin, Compute Engine and Secret Manager, and the WhatsApp fake over TLS.

use keepalive_tests::binaries::{run_provisioner, ProvisionerRun};
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const NAME: &str = "whatsapp-4915112345678";
const REGION: &str = "europe-west3";
const ZONE: &str = "europe-west3-c";

struct Project {
    g: GoogleFakes,
    wa: FakeWhatsApp,
    env: BTreeMap<String, String>,
    config: PathBuf,
}

fn config_text(extra: &str) -> String {
    format!(
        "project = \"{FAKE_PROJECT}\"\nregion = \"{REGION}\"\nzone = \"{ZONE}\"\ncountry_code = \"49\"\nphone_number = \"15112345678\"\n{extra}"
    )
}

impl Project {
    async fn new() -> Project {
        let g = GoogleFakes::start().await;
        let wa = FakeWhatsApp::start_tls("admin", "secret").await;
        // WhatsApp creates its databases a little while after the VM is up.
        g.sql.auto_databases_after(2, &["wa", "wa_messages"]);
        let mut env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
        env.insert("PROVISIONER_WHATSAPP_URL".into(), wa.url());
        env.insert("PROVISIONER_WAIT_TIMEOUT_S".into(), "60".into());
        env.insert("HOME".into(), g.dir().display().to_string());
        let config = g.dir().join("number.toml");
        std::fs::write(&config, config_text("")).unwrap();
        Project { g, wa, env, config }
    }

    fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    async fn run(&self, args: &[&str]) -> ProvisionerRun {
        self.run_for(args, Duration::from_secs(120)).await
    }

    async fn run_for(&self, args: &[&str], timeout: Duration) -> ProvisionerRun {
        let env = self.env.clone();
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let run = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_provisioner(&env, &config, &args, timeout)
        })
        .await
        .unwrap();
        self.assert_no_secrets(&run.output());
        run
    }

    /// Every password the provisioner generated, and the Google tokens.
    fn assert_no_secrets(&self, text: &str) {
        let mut secrets: Vec<String> = self.g.tokens.tokens();
        if let Some(p) = self
            .g
            .secrets
            .get_latest(FAKE_PROJECT, &format!("{NAME}-db-password"))
        {
            secrets.push(p);
        }
        for s in secrets {
            assert!(!text.contains(&s), "a secret leaked into:\n{text}");
        }
    }

    fn instance(&self) -> Value {
        self.g
            .compute
            .inserted_body(FAKE_PROJECT, ZONE, NAME)
            .expect("the VM was created")
    }

    fn metadata(&self, key: &str) -> Option<String> {
        self.instance()["metadata"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .and_then(|i| i["value"].as_str().map(str::to_string))
    }
}

fn ok(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(0), "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_project_database_then_vm() {
    let p = Project::new().await;
    let run = p.run(&["database"]).await;
    ok(&run);

    // The static address came first, and the database admits exactly it.
    let address =
        p.g.compute
            .address(FAKE_PROJECT, REGION, NAME)
            .expect("address reserved");
    let ip = address["address"].as_str().unwrap().to_string();
    let sql =
        p.g.sql
            .instance(FAKE_PROJECT, NAME)
            .expect("instance created");
    assert_eq!(sql["state"], "RUNNABLE");
    let settings = &sql["settings"];
    let flags = settings["databaseFlags"].as_array().unwrap();
    assert!(flags
        .iter()
        .any(|f| f["name"] == "max_connections" && f["value"] == "1000"));
    let nets: Vec<&str> = settings["ipConfiguration"]["authorizedNetworks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["value"].as_str().unwrap())
        .collect();
    assert_eq!(nets, vec![format!("{ip}/32")]);
    assert_eq!(settings["ipConfiguration"]["sslMode"], "ENCRYPTED_ONLY");
    // The user's password was stored before use, and is the one the database user has.
    let stored =
        p.g.secrets
            .get_latest(FAKE_PROJECT, &format!("{NAME}-db-password"))
            .expect("password in Secret Manager");
    assert!(stored.len() >= 32);
    assert_eq!(
        p.g.sql.user_password(NAME, "whatsapp"),
        Some(stored.clone())
    );

    let run = p.run(&["vm"]).await;
    ok(&run);
    let body = p.instance();
    assert_eq!(
        body["disks"][0]["initializeParams"]["sourceImage"],
        "projects/cos-cloud/global/images/family/cos-stable"
    );
    assert_eq!(
        body["networkInterfaces"][0]["accessConfigs"][0]["natIP"],
        ip.as_str()
    );
    assert_eq!(p.metadata("VM_IP_ADDRESS").as_deref(), Some(ip.as_str()));
    let db_ip = sql["ipAddresses"][0]["ipAddress"]
        .as_str()
        .map(str::to_string);
    let db_ip = db_ip.or_else(|| {
        p.g.sql.instance(FAKE_PROJECT, NAME).unwrap()["ipAddresses"][0]["ipAddress"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(p.metadata("WA_DB_HOST_NAME"), db_ip);
    assert_eq!(p.metadata("WA_DB_USERNAME").as_deref(), Some("whatsapp"));
    assert_eq!(p.metadata("WA_DB_PASSWORD"), Some(stored));
    assert_eq!(p.metadata("WA_API_VERSION").as_deref(), Some("v2.53.2"));
    let script = p.metadata("startup-script").unwrap();
    assert!(script.contains("docker.whatsapp.biz/coreapp"));
    let fw =
        p.g.compute
            .firewall(FAKE_PROJECT, &format!("{NAME}-allow-web"))
            .expect("firewall rule");
    let ports: Vec<&str> = fw["allowed"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    // The API on 443 only: 80 stays closed unless `vm.open_http = true`.
    assert_eq!(ports, vec!["443"], "{fw}");
    // The keepalive resets only labelled VMs.
    assert_eq!(
        body["labels"]["whatsapp-keepalive"], "enabled",
        "{}",
        body["labels"]
    );
    assert_eq!(fw["targetTags"][0], NAME);
    assert_eq!(body["tags"]["items"][0], NAME);
    // The client's certificate was pinned on first contact.
    assert!(p
        .g
        .secrets
        .get_latest(FAKE_PROJECT, &format!("{NAME}-tls-certificate"))
        .is_some());
    assert!(run.output().contains("wa_messages"), "{}", run.output());

    let run = p.run(&["status"]).await;
    ok(&run);
    assert!(run.stdout.contains("RUNNABLE"), "{}", run.stdout);
    // Step 6 has not run: said so, with the command that does it.
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("keepalive job") && l.contains("missing (provisioner keepalive)")),
        "{}",
        run.stdout
    );
    // Cloud Run not enabled in the project yet (403): shown, and the status still stands.
    p.g.run.fail_always(403);
    let run = p.run(&["status"]).await;
    ok(&run);
    assert!(
        run.stdout.lines().any(|l| l.contains("keepalive service")
            && l.contains("unknown: ")
            && l.contains("403")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("keepalive job"), "{}", run.stdout);
    p.g.run.clear_failures();
    assert!(
        run.stdout.contains("answers its login endpoint"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_changes_nothing() {
    let p = Project::new().await;
    ok(&p.run(&["database"]).await);
    ok(&p.run(&["vm"]).await);
    let creations = (
        p.g.compute.insert_count("address"),
        p.g.compute.insert_count("firewall"),
        p.g.compute.insert_count("instance"),
        p.g.sql.created_count(),
        p.g.secrets
            .version_count(FAKE_PROJECT, &format!("{NAME}-db-password")),
    );
    assert_eq!(creations, (1, 1, 1, 1, 1));
    let run = p.run(&["database"]).await;
    ok(&run);
    let run2 = p.run(&["vm"]).await;
    ok(&run2);
    assert_eq!(
        (
            p.g.compute.insert_count("address"),
            p.g.compute.insert_count("firewall"),
            p.g.compute.insert_count("instance"),
            p.g.sql.created_count(),
            p.g.secrets
                .version_count(FAKE_PROJECT, &format!("{NAME}-db-password")),
        ),
        creations
    );
    assert!(!run.stdout.contains("created"), "{}", run.stdout);
    assert!(!run2.stdout.contains("created"), "{}", run2.stdout);
    // No POST at all on the second run, apart from the database user's password (set to
    // the stored one again) and the waits.
    let run = p.run(&["plan"]).await;
    ok(&run);
    // Steps 1 and 2 have nothing left to do (step 6, the keepalive, is not set up here).
    let steps_1_2 = run.stdout.split("\nkeepalive:").next().unwrap();
    assert!(run.stdout.contains("\nkeepalive:"), "{}", run.stdout);
    assert!(!steps_1_2.contains("would be created"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_half_way_then_resumed_converges_without_duplicates() {
    let p = Project::new().await;
    // Cloud SQL takes "minutes": the run is killed while it waits.
    p.g.sql.set_create_polls(1_000_000);
    let killed = p.run_for(&["database"], Duration::from_secs(3)).await;
    assert_eq!(
        killed.code,
        None,
        "the run was expected to still be waiting: {}",
        killed.output()
    );
    assert_eq!(p.g.sql.created_count(), 1);
    // Creation completes in the background; the next run adopts what exists.
    p.g.sql.set_create_polls(1);
    let run = p.run(&["database"]).await;
    ok(&run);
    assert_eq!(p.g.sql.created_count(), 1);
    assert_eq!(p.g.compute.insert_count("address"), 1);
    assert_eq!(
        p.g.secrets
            .version_count(FAKE_PROJECT, &format!("{NAME}-db-password")),
        1,
        "the password generated by the killed run is reused"
    );
    assert!(p.g.sql.user_password(NAME, "whatsapp").is_some());

    // The VM step, killed while it waits for the WhatsApp client, then resumed.
    p.wa.stop().await;
    let killed = p.run_for(&["vm"], Duration::from_secs(4)).await;
    assert_eq!(killed.code, None, "{}", killed.output());
    assert_eq!(p.g.compute.insert_count("instance"), 1);
    p.wa.restart().await.unwrap();
    ok(&p.run(&["vm"]).await);
    assert_eq!(p.g.compute.insert_count("instance"), 1);
    assert_eq!(p.g.compute.insert_count("firewall"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_instance_with_other_max_connections_is_reported() {
    let p = Project::new().await;
    ok(&p.run(&["database"]).await);
    p.g.sql.set_instance_setting(
        FAKE_PROJECT,
        NAME,
        "/settings/databaseFlags",
        serde_json::json!([{"name": "max_connections", "value": "500"}]),
    );
    let run = p.run(&["database"]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(
        run.stdout.contains("max_connections is 500"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1000"), "{}", run.stdout);
    // Reported, not silently changed.
    let flags = &p.g.sql.instance(FAKE_PROJECT, NAME).unwrap()["settings"]["databaseFlags"];
    assert_eq!(flags[0]["value"], "500");
    let run = p.run(&["plan"]).await;
    assert!(
        run.stdout.contains("max_connections is 500"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_plan_change_nothing() {
    let p = Project::new().await;
    for args in [
        &["database", "--dry-run"][..],
        &["vm", "--dry-run"],
        &["plan"],
    ] {
        let run = p.run(args).await;
        ok(&run);
        assert!(
            run.stdout.contains("would be created") || run.stdout.contains("cannot be planned yet"),
            "{args:?}: {}",
            run.stdout
        );
    }
    assert!(p.g.compute.address(FAKE_PROJECT, REGION, NAME).is_none());
    assert!(p.g.sql.instance(FAKE_PROJECT, NAME).is_none());
    assert!(!p
        .g
        .secrets
        .exists(FAKE_PROJECT, &format!("{NAME}-db-password")));
    let posts: Vec<String> =
        p.g.compute
            .requests()
            .into_iter()
            .chain(p.g.sql.requests())
            .chain(p.g.secrets.requests())
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
    assert!(posts.is_empty(), "{posts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_number_toml_exits_2_naming_the_key() {
    let p = Project::new().await;
    let cases = [
        (config_text("projekt = \"typo\""), "projekt"),
        (
            config_text("[database]\nmax_conections = 1000"),
            "max_conections",
        ),
        (
            config_text("").replace("phone_number = \"15112345678\"\n", ""),
            "phone_number",
        ),
        (
            config_text("").replace("15112345678", "151-1234 5678"),
            "phone_number",
        ),
        (
            config_text("").replace("15112345678", "abc"),
            "phone_number",
        ),
        (
            config_text("[whatsapp]\nmethod = \"pigeon\""),
            "whatsapp.method",
        ),
    ];
    for (text, key) in cases {
        p.write_config(&text);
        let run = p.run(&["database"]).await;
        assert_eq!(run.code, Some(2), "{key}: {}", run.output());
        assert!(run.stderr.contains(key), "{key}: {}", run.stderr);
    }
    assert!(p.g.compute.requests().is_empty() && p.g.sql.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_whatsapp_certificate_is_refused() {
    let p = Project::new().await;
    ok(&p.run(&["database"]).await);
    ok(&p.run(&["vm"]).await);
    let pin = format!("{NAME}-tls-certificate");
    let pinned = p.g.secrets.get_latest(FAKE_PROJECT, &pin);
    p.wa.rotate_certificate();
    let run = p.run(&["vm"]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stderr.contains("pinned"), "{}", run.stderr);
    // The error names the secret; the pin is never replaced silently.
    assert!(run.stderr.contains(&pin), "{}", run.stderr);
    assert_eq!(p.g.secrets.version_count(FAKE_PROJECT, &pin), 1);
    assert_eq!(p.g.secrets.get_latest(FAKE_PROJECT, &pin), pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_network_only_when_written() {
    let p = Project::new().await;
    p.write_config(&config_text(
        "[database]\nauthorized_networks = [\"0.0.0.0/0\"]",
    ));
    ok(&p.run(&["database"]).await);
    let sql = p.g.sql.instance(FAKE_PROJECT, NAME).unwrap();
    assert_eq!(
        sql["settings"]["ipConfiguration"]["authorizedNetworks"][0]["value"],
        "0.0.0.0/0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_80_only_with_open_http_and_an_adopted_vm_gets_the_label() {
    let p = Project::new().await;
    p.write_config(&config_text("[vm]\nopen_http = true"));
    ok(&p.run(&["database"]).await);
    // A VM made before the label existed: `vm` adopts it and adds the label, keeping the rest.
    let ip =
        p.g.compute
            .address(FAKE_PROJECT, "europe-west3", NAME)
            .unwrap()["address"]
            .as_str()
            .unwrap()
            .to_string();
    p.g.compute.seed_instance(
        FAKE_PROJECT,
        ZONE,
        json!({
            "name": NAME,
            "machineType": format!("zones/{ZONE}/machineTypes/e2-medium"),
            "labels": {"team": "chat"},
            "tags": {"items": [NAME]},
            "disks": [{"boot": true, "initializeParams": {"sourceImage": "projects/cos-cloud/global/images/family/cos-stable"}}],
            "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [{"natIP": ip}]}],
        }),
    );
    let run = p.run(&["vm"]).await;
    let vm = p.g.compute.instance(FAKE_PROJECT, ZONE, NAME).unwrap();
    assert_eq!(
        vm["labels"]["whatsapp-keepalive"],
        "enabled",
        "{}\n{}",
        run.output(),
        vm["labels"]
    );
    assert_eq!(vm["labels"]["team"], "chat");
    let fw =
        p.g.compute
            .firewall(FAKE_PROJECT, &format!("{NAME}-allow-web"))
            .expect("firewall rule");
    assert_eq!(fw["allowed"][0]["ports"], json!(["443", "80"]), "{fw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_or_destroyed_password_is_an_error_and_nothing_is_generated() {
    for state in ["DISABLED", "DESTROYED"] {
        let p = Project::new().await;
        ok(&p.run(&["database"]).await);
        let secret = format!("{NAME}-db-password");
        let user_password = p.g.sql.user_password(NAME, "whatsapp");
        p.g.secrets.set_version_state(
            &format!("projects/{FAKE_PROJECT}/secrets/{secret}/versions/1"),
            state,
        );
        let run = p.run(&["database"]).await;
        assert_eq!(run.code, Some(1), "{}", run.output());
        assert!(
            run.stderr.contains(&secret) && run.stderr.contains(state),
            "{}",
            run.stderr
        );
        assert_eq!(
            p.g.secrets.version_count(FAKE_PROJECT, &secret),
            1,
            "{state}: a password was generated"
        );
        assert!(
            p.g.sql.user_password(NAME, "whatsapp") == user_password,
            "{state}: the user's password changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_rotate_password_changes_the_database_password_and_the_metadata() {
    let p = Project::new().await;
    ok(&p.run(&["database"]).await);
    ok(&p.run(&["vm"]).await);
    let secret = format!("{NAME}-db-password");
    let first = p.g.secrets.get_latest(FAKE_PROJECT, &secret).unwrap();
    ok(&p.run(&["database"]).await);
    // Compared, never shown.
    assert!(p.g.sql.user_password(NAME, "whatsapp") == Some(first.clone()));
    assert_eq!(p.g.secrets.version_count(FAKE_PROJECT, &secret), 1);

    ok(&p.run(&["database", "--rotate-password"]).await);
    let second = p.g.secrets.get_latest(FAKE_PROJECT, &secret).unwrap();
    assert!(second != first, "the password was not rotated");
    assert!(
        p.g.sql.user_password(NAME, "whatsapp") == Some(second.clone()),
        "the database user does not have the new password"
    );
    assert!(
        p.g.compute
            .metadata_value(FAKE_PROJECT, ZONE, NAME, "WA_DB_PASSWORD")
            == Some(second),
        "the VM's WA_DB_PASSWORD is not the new password"
    );
}
