//! The world of these tests: the Google fakes and the Pub/Sub emulator with steps 1 to 3 done
//! for +49 15112345678, the provisioner run against them, and the names it creates.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keepalive_tests::binaries::{run_provisioner, ProvisionerRun};
use keepalive_tests::{GoogleFakes, FAKE_PROJECT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub const NAME: &str = "whatsapp-4915112345678";
pub const REGION: &str = "europe-west3";
pub const IP: &str = "34.89.1.2";
pub const ADMIN_PASSWORD: &str = "Stored!AdminPassw0rd-kept-in-Secret-Manager-only-000000000000000";

/// What `vm` pinned in the fake's secret: any bytes stand for the certificate's DER here.
pub const PINNED_DER: &[u8] = b"the client's self-signed certificate (DER)";

pub fn p(rest: &str) -> String {
    format!("projects/{FAKE_PROJECT}/{rest}")
}

pub fn service_name() -> String {
    p(&format!("locations/{REGION}/services/whatsapp-keepalive"))
}

pub fn job_name(vm: &str) -> String {
    p(&format!("locations/{REGION}/jobs/keepalive-{vm}"))
}

pub fn config_text(phone: &str, extra: &str) -> String {
    format!(
        "project = \"{FAKE_PROJECT}\"\nregion = \"{REGION}\"\nzone = \"europe-west3-c\"\ncountry_code = \"49\"\nphone_number = \"{phone}\"\n\n[keepalive]\nimage = \"europe-west3-docker.pkg.dev/{FAKE_PROJECT}/keepalive/keepalive:1.0.0\"\n{extra}"
    )
}

pub struct World {
    pub g: GoogleFakes,
    pub env: BTreeMap<String, String>,
    pub config: PathBuf,
}

impl World {
    /// Steps 1 to 3 done for +49 15112345678: its address and its admin password exist.
    pub async fn new() -> World {
        let g = GoogleFakes::start().await;
        let env: BTreeMap<String, String> = g.provisioner_env().into_iter().collect();
        let config = g.dir().join("number.toml");
        std::fs::write(&config, config_text("15112345678", "")).unwrap();
        let w = World { g, env, config };
        w.number_ready(NAME, IP);
        w
    }

    pub fn number_ready(&self, name: &str, ip: &str) {
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

    pub async fn run_with(&self, config: PathBuf, args: &[&str]) -> ProvisionerRun {
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

    pub async fn run(&self, args: &[&str]) -> ProvisionerRun {
        self.run_with(self.config.clone(), args).await
    }

    pub fn assert_no_secrets(&self, text: &str) {
        assert!(!text.contains(ADMIN_PASSWORD), "password leaked:\n{text}");
        for t in self.g.tokens.tokens() {
            assert!(!text.contains(&t), "a token leaked:\n{text}");
        }
    }

    /// Requests to the fakes that changed something (anything but GET and getIamPolicy).
    /// (Pub/Sub is the emulator, which keeps no log: compare [`World::pubsub_state`].)
    pub fn mutations(&self) -> Vec<String> {
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
    pub fn pubsub_state(&self) -> Vec<Value> {
        let ps = &self.g.pubsub;
        let topics = ps.topics(FAKE_PROJECT).into_iter().map(|t| ps.topic(&t));
        let subs = ps
            .subscriptions(FAKE_PROJECT)
            .into_iter()
            .map(|s| ps.subscription(&s));
        topics.chain(subs).map(Option::unwrap_or_default).collect()
    }

    pub fn clear_requests(&self) {
        self.g.run.clear_requests();
        self.g.scheduler.clear_requests();
        self.g.compute.clear_requests();
        self.g.secrets.clear_requests();
    }
}

pub fn ok(run: &ProvisionerRun) {
    assert_eq!(run.code, Some(0), "{}", run.output());
}

pub fn decode_data(job: &Value) -> Value {
    let data = STANDARD
        .decode(job["pubsubTarget"]["data"].as_str().expect("data"))
        .expect("base64");
    serde_json::from_slice(&data).expect("JSON payload")
}
