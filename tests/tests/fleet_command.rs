//! `provisioner fleet --dir DIR` through the real binary against the stateful fakes (Cloud
//! Run, Cloud Scheduler, Secret Manager) and the real Pub/Sub emulator: a directory of Cloud
//! API numbers under two tokens and one On-Premises number becomes two fleet jobs; the
//! numbers' own jobs go only once the fleet job that checks them is in place, and only when
//! they are that number's Cloud API job.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::{run_provisioner, ProvisionerRun};
use keepalive_tests::{GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const REGION: &str = "europe-west3";
const KEEPALIVE_SA: &str = "serviceAccount:whatsapp-keepalive@fake-project.iam.gserviceaccount.com";
/// Distinctive, so a leak is found by a plain substring search.
const TOKEN_A: &str = "EAAGfleetTokenA-do-not-log-0123456789";
const TOKEN_B: &str = "EAAGfleetTokenB-do-not-log-9876543210";

/// The Cloud API numbers: directory, digits after +49, phone number id, token secret.
const CLOUD: [(&str, &str, &str, &str); 3] = [
    ("acme/de", "1510000001", "2001", "token-a"),
    ("acme/at", "1510000002", "2002", "token-a"),
    ("beta", "1510000003", "2003", "token-b"),
];
const ONPREM_DIGITS: &str = "1510000009";

fn p(rest: &str) -> String {
    format!("projects/{FAKE_PROJECT}/{rest}")
}

fn job_name(id: &str) -> String {
    p(&format!("locations/{REGION}/jobs/{id}"))
}

fn own_job(digits: &str) -> String {
    job_name(&format!("keepalive-whatsapp-49{digits}"))
}

fn decode(job: &Value) -> Value {
    let data = STANDARD
        .decode(job["pubsubTarget"]["data"].as_str().expect("data"))
        .expect("base64");
    serde_json::from_slice(&data).expect("JSON payload")
}

/// A job as `provisioner keepalive` left it, publishing `payload`.
fn job_with(name: &str, payload: Value) -> Value {
    json!({
        "name": name,
        "schedule": "*/5 * * * *",
        "timeZone": "Etc/UTC",
        "pubsubTarget": {
            "topicName": p("topics/whatsapp-keepalive"),
            "data": STANDARD.encode(payload.to_string()),
        },
        "retryConfig": {"retryCount": 0},
    })
}

fn cloud_payload(id: &str, token: &str) -> Value {
    json!({"phoneNumberId": id, "wabaId": "900", "accessTokenSecret": p(&format!("secrets/{token}/versions/latest"))})
}

struct World {
    g: GoogleFakes,
    env: BTreeMap<String, String>,
    dir: PathBuf,
}

impl World {
    /// Three Cloud API numbers (connected: their verify tokens stored) and one On-Premises
    /// number, each with the job `provisioner keepalive` gave it.
    async fn new() -> World {
        let g = GoogleFakes::start().await;
        let env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
        let dir = g.dir().join("numbers");
        let w = World { g, env, dir };
        for (sub, digits, id, token) in CLOUD {
            w.write(sub, &Self::cloud_config(digits, id, token));
            w.g.secrets.put(
                &p(&format!("secrets/whatsapp-49{digits}-webhook-verify-token")),
                &format!("verify-{digits}"),
            );
            w.g.scheduler
                .add_job(job_with(&own_job(digits), cloud_payload(id, token)));
        }
        w.g.secrets.put(&p("secrets/token-a"), TOKEN_A);
        w.g.secrets.put(&p("secrets/token-b"), TOKEN_B);
        w.write("onprem", &Self::config(ONPREM_DIGITS, "onprem", ""));
        w.g.scheduler
            .add_job(job_with(&own_job(ONPREM_DIGITS), w.onprem_payload()));
        w
    }

    fn config(digits: &str, platform: &str, extra: &str) -> String {
        format!(
            "project = \"{FAKE_PROJECT}\"\nregion = \"{REGION}\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"{digits}\"\nplatform = \"{platform}\"\n\n[keepalive]\nimage = \"europe-west3-docker.pkg.dev/{FAKE_PROJECT}/keepalive/keepalive:1.0.0\"\n{extra}"
        )
    }

    fn cloud_config(digits: &str, id: &str, token: &str) -> String {
        Self::config(
            digits,
            "cloud",
            &format!(
                "\n[cloud]\nphone_number_id = \"{id}\"\nwaba_id = \"900\"\naccess_token_secret = \"{}\"\nwebhook_url = \"https://bot.example.com/hook/{id}\"\n",
                p(&format!("secrets/{token}/versions/latest"))
            ),
        )
    }

    fn onprem_payload(&self) -> Value {
        let vm = format!("whatsapp-49{ONPREM_DIGITS}");
        json!({"whatsAppHostname": "https://203.0.113.9", "whatsAppUsername": "admin",
               "whatsAppPasswordSecret": p(&format!("secrets/{vm}-admin-password/versions/latest")),
               "vm": vm, "zone": "europe-west3-c"})
    }

    fn write(&self, sub: &str, text: &str) {
        let d = self.dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("number.toml"), text).unwrap();
    }

    async fn fleet(&self, extra: &[&str]) -> ProvisionerRun {
        let env = self.env.clone();
        let mut args = vec!["fleet".to_string(), "--dir".into(), self.dir.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        // `--config` names a file that does not exist: `fleet` does not read it.
        let config = self.g.dir().join("no-such-number.toml");
        let run = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_provisioner(&env, &config, &args, Duration::from_secs(120))
        })
        .await
        .unwrap();
        let out = run.output();
        for secret in [TOKEN_A, TOKEN_B, "verify-15"] {
            assert!(!out.contains(secret), "a secret leaked:\n{out}");
        }
        run
    }

    /// The fleet jobs: id -> payload.
    fn fleet_jobs(&self) -> BTreeMap<String, Value> {
        let prefix = job_name("keepalive-fleet-");
        self.g
            .scheduler
            .jobs()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .map(|n| {
                let payload = decode(&self.g.scheduler.job(&n).unwrap());
                (n, payload)
            })
            .collect()
    }

    /// Requests to the fakes that changed something (anything but GET and getIamPolicy).
    fn mutations(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (api, reqs) in [
            ("run", self.g.run.requests()),
            ("scheduler", self.g.scheduler.requests()),
            ("secrets", self.g.secrets.requests()),
        ] {
            for r in reqs {
                if r.method != "GET" && !r.path.ends_with(":getIamPolicy") {
                    all.push(format!("{api} {} {}", r.method, r.path));
                }
            }
        }
        all
    }

    fn readers(&self, secret: &str) -> Vec<String> {
        let policy = self.g.secrets.policy(FAKE_PROJECT, secret);
        policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["role"] == "roles/secretmanager.secretAccessor")
            .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect()
    }
}

fn ok(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(0), "{}", run.output());
}

/// The phone number ids a fleet payload lists.
fn ids(payload: &Value) -> Vec<String> {
    payload["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phoneNumberId"].as_str().unwrap().to_string())
        .collect()
}

/// The fleet job of `token` (a secret id) and its payload.
fn of_token(jobs: &BTreeMap<String, Value>, token: &str) -> (String, Value) {
    jobs.iter()
        .find(|(_, p)| p["accessTokenSecret"] == p_version(token))
        .map(|(n, p)| (n.clone(), p.clone()))
        .unwrap_or_else(|| panic!("no fleet job for {token}: {jobs:?}"))
}

fn p_version(token: &str) -> String {
    p(&format!("secrets/{token}/versions/latest"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fleet_job_per_token_replaces_the_numbers_own_jobs() {
    let w = World::new().await;
    let onprem_before = w.g.scheduler.job(&own_job(ONPREM_DIGITS)).unwrap();
    let run = w.fleet(&[]).await;
    ok(&run);

    let jobs = w.fleet_jobs();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let (a_name, a) = of_token(&jobs, "token-a");
    let (_, b) = of_token(&jobs, "token-b");
    assert!(a_name.contains("/jobs/keepalive-fleet-token-a-"), "{a_name}");
    assert_eq!(ids(&a), ["2002", "2001"], "sorted by file: acme/at, acme/de");
    assert_eq!(ids(&b), ["2003"]);
    assert_eq!(
        a["numbers"][1],
        json!({
            "phoneNumberId": "2001",
            "wabaId": "900",
            "name": "+491510000001",
            "webhookUrl": "https://bot.example.com/hook/2001",
            "webhookVerifyTokenSecret": p("secrets/whatsapp-491510000001-webhook-verify-token/versions/latest"),
        })
    );
    let job = w.g.scheduler.job(&a_name).unwrap();
    assert_eq!(job["schedule"], "*/5 * * * *");
    assert_eq!(job["pubsubTarget"]["topicName"], p("topics/whatsapp-keepalive"));

    // The numbers' own jobs are gone; the On-Premises one is as it was.
    for (_, digits, _, _) in CLOUD {
        assert!(w.g.scheduler.job(&own_job(digits)).is_none(), "{digits}");
    }
    assert_eq!(w.g.scheduler.job(&own_job(ONPREM_DIGITS)).unwrap(), onprem_before);
    assert!(
        run.stdout.contains(&format!(
            "keeps its own job keepalive-whatsapp-49{ONPREM_DIGITS}; `provisioner keepalive --config"
        )),
        "{}",
        run.stdout
    );

    // The keepalive is there; its account reads the two tokens and the three verify tokens.
    assert!(w
        .g
        .run
        .service(&p(&format!("locations/{REGION}/services/whatsapp-keepalive")))
        .is_some());
    assert!(w.g.pubsub.topic(&p("topics/whatsapp-keepalive")).is_some());
    for secret in ["token-a", "token-b"]
        .into_iter()
        .map(String::from)
        .chain(CLOUD.map(|(_, d, _, _)| format!("whatsapp-49{d}-webhook-verify-token")))
    {
        assert_eq!(w.readers(&secret), [KEEPALIVE_SA], "{secret}");
    }

    // A second run writes nothing.
    w.g.run.clear_requests();
    w.g.scheduler.clear_requests();
    w.g.secrets.clear_requests();
    ok(&w.fleet(&[]).await);
    assert_eq!(w.mutations(), Vec::<String>::new());
    assert_eq!(w.fleet_jobs(), jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing() {
    let w = World::new().await;
    let jobs_before = w.g.scheduler.jobs();
    let run = w.fleet(&["--dry-run"]).await;
    ok(&run);
    assert_eq!(w.mutations(), Vec::<String>::new());
    assert_eq!(w.g.scheduler.jobs(), jobs_before);
    assert!(w.g.pubsub.topics(FAKE_PROJECT).is_empty());
    for words in ["would be created", "would be deleted", "nothing was changed"] {
        assert!(run.stdout.contains(words), "{words}: {}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_removed_from_the_directory_drops_out_of_its_fleet_job() {
    let w = World::new().await;
    ok(&w.fleet(&[]).await);
    std::fs::remove_dir_all(w.dir.join("acme/at")).unwrap();
    let run = w.fleet(&[]).await;
    ok(&run);
    let (_, a) = of_token(&w.fleet_jobs(), "token-a");
    assert_eq!(ids(&a), ["2001"]);
    assert!(
        run.stdout.contains("dropped Cloud API number 2002")
            && run.stdout.contains("provisioner keepalive --config"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_under_a_numbers_name_that_are_not_its_cloud_api_job_are_left_alone() {
    let w = World::new().await;
    // Under 2001's name: an On-Premises payload; under 2002's: another number's.
    let onprem = job_with(&own_job("1510000001"), w.onprem_payload());
    let foreign = job_with(&own_job("1510000002"), cloud_payload("7777", "token-a"));
    w.g.scheduler.add_job(onprem);
    w.g.scheduler.add_job(foreign);
    let kept = |digits: &str| decode(&w.g.scheduler.job(&own_job(digits)).unwrap());
    let (onprem_payload, foreign_payload) = (kept("1510000001"), kept("1510000002"));

    let run = w.fleet(&[]).await;
    ok(&run);
    assert_eq!(kept("1510000001"), onprem_payload);
    assert_eq!(kept("1510000002"), foreign_payload);
    assert!(w.g.scheduler.job(&own_job("1510000003")).is_none());
    assert!(run.stdout.contains("On-Premises payload"), "{}", run.stdout);
    assert!(
        run.stdout.contains("it checks Cloud API number 7777, not 2002"),
        "{}",
        run.stdout
    );
    let (_, a) = of_token(&w.fleet_jobs(), "token-a");
    assert_eq!(ids(&a), ["2002", "2001"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_number_toml_or_disagreeing_numbers_stop_before_any_change() {
    let w = World::new().await;
    let jobs_before = w.g.scheduler.jobs();
    w.write("broken", "project = \"fake-project\"\nregoin = \"x\"\n");
    let run = w.fleet(&[]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("broken/number.toml"), "{}", run.stderr);
    std::fs::remove_dir_all(w.dir.join("broken")).unwrap();

    // Two numbers of one project that want different keepalive services.
    w.write(
        "acme/de",
        &World::cloud_config("1510000001", "2001", "token-a")
            .replace("[keepalive]\n", "[keepalive]\nservice = \"other-keepalive\"\n"),
    );
    let run = w.fleet(&[]).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    for named in ["acme/de/number.toml", "acme/at/number.toml", "keepalive.service"] {
        assert!(run.stderr.contains(named), "{named}: {}", run.stderr);
    }

    assert_eq!(w.mutations(), Vec::<String>::new());
    assert_eq!(w.g.scheduler.jobs(), jobs_before);
    assert!(w.g.pubsub.topics(FAKE_PROJECT).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_own_job_is_deleted_when_the_fleet_job_cannot_be_created() {
    let w = World::new().await;
    w.g.scheduler.fail_creates(403);
    let run = w.fleet(&[]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stderr.contains("keepalive-fleet-"), "{}", run.stderr);
    for (_, digits, _, _) in CLOUD {
        assert!(w.g.scheduler.job(&own_job(digits)).is_some(), "{digits}");
    }
    assert!(w.fleet_jobs().is_empty());

    // Resumed: the run converges.
    w.g.scheduler.accept_creates();
    ok(&w.fleet(&[]).await);
    assert_eq!(w.fleet_jobs().len(), 2);
    for (_, digits, _, _) in CLOUD {
        assert!(w.g.scheduler.job(&own_job(digits)).is_none(), "{digits}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_moving_to_another_token_is_never_in_no_fleet_job() {
    let w = World::new().await;
    ok(&w.fleet(&[]).await);
    // 2001 gets a token of its own; its new job cannot be created yet.
    w.g.secrets.put(&p("secrets/token-c"), "EAAGfleetTokenC-do-not-log");
    w.write("acme/de", &World::cloud_config("1510000001", "2001", "token-c"));
    w.g.scheduler.fail_creates(403);
    let run = w.fleet(&[]).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    let (_, a) = of_token(&w.fleet_jobs(), "token-a");
    assert_eq!(ids(&a), ["2002", "2001"], "token-a's job still checks 2001");

    w.g.scheduler.accept_creates();
    ok(&w.fleet(&[]).await);
    let jobs = w.fleet_jobs();
    assert_eq!(ids(&of_token(&jobs, "token-a").1), ["2002"]);
    assert_eq!(ids(&of_token(&jobs, "token-c").1), ["2001"]);
}
