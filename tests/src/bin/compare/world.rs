//! The two sides on the same fakes: the original function under the Functions Framework
//! ([`Baseline`]) and `keepalive serve`, started, posted to and stopped alike.

use keepalive_tests::binaries::{free_port, keepalive_bin, push_envelope, workspace_root};
use keepalive_tests::measure::load_client;
use keepalive_tests::{FakeWhatsApp, GoogleFakes, FAKE_PROJECT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Keepalive,
    Original,
}

impl Side {
    pub(crate) const BOTH: [Side; 2] = [Side::Keepalive, Side::Original];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Keepalive => "keepalive",
            Side::Original => "original",
        }
    }
}

/// Where the original function and its runtime are; checked before anything starts.
pub(crate) struct Baseline {
    /// What `BASELINE_FUNCTION` names.
    pub(crate) source: PathBuf,
    /// A copy of it inside `tests/baseline/`, so that its `require`s resolve to the pinned
    /// packages there (next to its own checkout, Node would find that checkout's
    /// `node_modules` first). Removed on drop.
    pub(crate) function: PathBuf,
    pub(crate) framework: PathBuf,
    pub(crate) redirect: PathBuf,
    /// `node v20…, functions-framework 5.0.5, @google-cloud/compute 1.2.0`
    pub(crate) versions: String,
}

impl Baseline {
    pub(crate) fn find() -> Result<Baseline, String> {
        let dir = workspace_root().join("tests/baseline");
        let source = std::env::var_os("BASELINE_FUNCTION")
            .map(PathBuf::from)
            .ok_or_else(|| {
                "BASELINE_FUNCTION is not set: point it at the original function's file \
                 (keepalive/keepalive-gcp-function.js of the runbook's repository)"
                    .to_string()
            })?;
        let text = std::fs::read(&source)
            .map_err(|e| format!("BASELINE_FUNCTION={}: {e}", source.display()))?;
        let node_modules = dir.join("node_modules");
        let framework = node_modules.join("@google-cloud/functions-framework/build/src/main.js");
        if !framework.is_file() {
            return Err(format!(
                "{} is missing: run `npm ci --prefix tests/baseline` first",
                framework.display()
            ));
        }
        let node = Command::new("node")
            .arg("--version")
            .output()
            .map_err(|e| format!("node is not on PATH: {e}"))?;
        let package_version = |name: &str| -> String {
            std::fs::read(node_modules.join(name).join("package.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into())
        };
        let versions = format!(
            "node {}, functions-framework {}, @google-cloud/compute {}",
            String::from_utf8_lossy(&node.stdout).trim(),
            package_version("@google-cloud/functions-framework"),
            package_version("@google-cloud/compute"),
        );
        let run_dir = dir.join(format!(".function-{}", std::process::id()));
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let function = run_dir.join("index.js");
        std::fs::write(&function, text).map_err(|e| format!("{}: {e}", function.display()))?;
        Ok(Baseline {
            source,
            function,
            framework,
            redirect: dir.join("redirect.cjs"),
            versions,
        })
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(dir) = self.function.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A running side: its process, its port, its log file.
pub(crate) struct Running {
    pub(crate) side: Side,
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

impl Running {
    /// Where Pub/Sub pushes: keepalive takes `/`; the Functions Framework reads the topic of
    /// a raw push from the path (and warns on every message without it).
    pub(crate) fn url(&self) -> String {
        match self.side {
            Side::Keepalive => format!("http://127.0.0.1:{}/", self.port),
            Side::Original => format!(
                "http://127.0.0.1:{}/projects/{FAKE_PROJECT}/topics/whatsapp-keepalive",
                self.port
            ),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct World {
    pub(crate) g: GoogleFakes,
    pub(crate) wa: FakeWhatsApp,
    pub(crate) baseline: Baseline,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) client: reqwest::Client,
    pub(crate) logs: PathBuf,
    pub(crate) started: usize,
}

impl World {
    pub(crate) async fn new(baseline: Baseline) -> World {
        let wa = FakeWhatsApp::start(USER, PASSWORD).await;
        let g = GoogleFakes::start().await;
        // The original's Compute library fixes its token URL and asks for the compute scope.
        g.token.accept_google_clients();
        let mut env: BTreeMap<String, String> = g.env().into_iter().collect();
        env.insert("HOME".into(), g.dir().display().to_string());
        // Kept after the run, for reading what each side said.
        let logs = match std::env::var_os("COMPARE_LOGS") {
            Some(dir) => {
                // Only this run's logs count: earlier ones of the same names go.
                let dir = PathBuf::from(dir);
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if Side::BOTH
                        .iter()
                        .any(|s| name.starts_with(&format!("{}-", s.name())))
                        && name.ends_with(".log")
                    {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
                dir
            }
            None => {
                let dir = workspace_root().join("target/compare-logs");
                let _ = std::fs::remove_dir_all(&dir);
                dir
            }
        };
        std::fs::create_dir_all(&logs).expect("log directory");
        let client = load_client();
        World {
            g,
            wa,
            baseline,
            env,
            client,
            logs,
            started: 0,
        }
    }

    pub(crate) fn command(&self, side: Side, port: u16) -> Command {
        let mut c = match side {
            Side::Keepalive => Command::new(keepalive_bin()),
            Side::Original => Command::new("node"),
        };
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .env("PORT", port.to_string())
            .stdin(Stdio::null());
        match side {
            Side::Keepalive => {
                // Both sides reset VMs of the one project the Compute fake serves; the
                // original's resets of earlier scenarios' VMs must not hold keepalive's fleet
                // brake in a later one (each scenario is one VM, which the brake never stops).
                c.arg("serve")
                    .env("KEEPALIVE_LOG_FORMAT", "json")
                    .env("KEEPALIVE_BRAKE_RESETS", "0");
            }
            Side::Original => {
                c.arg("--require")
                    .arg(&self.baseline.redirect)
                    .arg(&self.baseline.framework)
                    .arg("--target=whatsAppKeepalive")
                    .arg("--signature-type=event")
                    .arg("--source")
                    .arg(&self.baseline.function)
                    .env("GOOGLE_CLOUD_PROJECT", FAKE_PROJECT)
                    .env("NODE_ENV", "production");
            }
        }
        c
    }

    /// Spawns a side; answers once it accepts connections (and the time that took).
    pub(crate) fn start(&mut self, side: Side) -> (Running, Duration) {
        self.started += 1;
        let log = self
            .logs
            .join(format!("{}-{:03}.log", side.name(), self.started));
        let out = std::fs::File::create(&log).expect("log file");
        let port = free_port();
        let started = Instant::now();
        let child = self
            .command(side, port)
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", side.name()));
        let mut r = Running {
            side,
            child,
            port,
            log,
        };
        let until = started + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!(
                    "{} exited with {status} before listening:\n{}",
                    side.name(),
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < until,
                "{} did not listen within 30 s",
                side.name()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let ready = started.elapsed();
        r.port = port;
        (r, ready)
    }

    /// The push envelope of tenant `i`, with `payload` fields changed or removed (null).
    pub(crate) fn message_with(&self, i: usize, changes: Value) -> Vec<u8> {
        let mut payload = json!({
            "whatsAppHostname": self.wa.host_port(),
            "whatsAppUsername": USER,
            "whatsAppPassword": PASSWORD,
            "vm": vm(i),
            "zone": ZONE,
            "project": FAKE_PROJECT,
        });
        if let (Some(p), Some(c)) = (payload.as_object_mut(), changes.as_object()) {
            for (k, v) in c {
                if v.is_null() {
                    p.remove(k);
                } else {
                    p.insert(k.clone(), v.clone());
                }
            }
        }
        push_envelope(&payload, &format!("{}", 2_000_000 + i))
            .to_string()
            .into_bytes()
    }

    pub(crate) fn message(&self, i: usize) -> Vec<u8> {
        self.message_with(i, json!({}))
    }

    pub(crate) async fn post(&self, url: &str, body: Vec<u8>) -> Answer {
        let started = Instant::now();
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match resp {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                Answer {
                    status,
                    body,
                    took: started.elapsed(),
                }
            }
            Err(e) => Answer {
                status: 0,
                body: format!("no answer: {e}"),
                took: started.elapsed(),
            },
        }
    }

    /// One healthy check; panics unless the side says so (keepalive: 200 `healthy`; the
    /// original: 2xx and no reset).
    pub(crate) async fn healthy(&self, r: &Running, body: Vec<u8>) -> Duration {
        let a = self.post(&r.url(), body).await;
        let ok = match r.side {
            Side::Keepalive => {
                a.status == 200
                    && serde_json::from_str::<Value>(&a.body).unwrap_or(Value::Null)["verdict"]
                        == "healthy"
            }
            Side::Original => (200..300).contains(&a.status),
        };
        assert!(
            ok,
            "{}: a healthy check answered {} {}",
            r.side.name(),
            a.status,
            a.body
        );
        a.took
    }

    /// Resets so far; a healthy check must never have caused one.
    pub(crate) fn assert_no_resets(&self, what: &str) {
        let n = self.g.compute.total_resets();
        assert_eq!(n, 0, "{what}: {n} reset(s) of a healthy VM");
    }
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) took: Duration,
}

pub(crate) fn vm(i: usize) -> String {
    format!("whatsapp-cmp-{i:05}")
}

// ---------------------------------------------------------------------------------------------
// Performance.
