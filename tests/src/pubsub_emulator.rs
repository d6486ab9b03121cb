//! The real Pub/Sub emulator (`gcloud beta emulators pubsub`, Java) for the tests that need
//! Pub/Sub: it serves gRPC and REST on one port, which the `google-cloud-pubsub` crate reaches
//! through `PUBSUB_EMULATOR_HOST`. Preferred to a hand-written fake: what the emulator accepts
//! is what Pub/Sub accepts (names of at least 3 characters, subscription validation, update
//! masks). It does not serve IAM (`getIamPolicy` answers 501 `UNIMPLEMENTED`).
//!
//! [`PubSubEmulator`] starts one emulator on a free port of `127.0.0.1` the first time a test
//! asks for it (about 2 s; state is per emulator, so tests never see each other's topics) and
//! stops it when dropped. If the test process dies first, the emulator still stops: it runs
//! under a small shell that kills it when its stdin (a pipe from the test) closes.
//!
//! The emulator is found as `$KEEPALIVE_TEST_PUBSUB_EMULATOR` (the path of
//! `cloud-pubsub-emulator`) or in the Cloud SDK of the `gcloud` on `PATH`
//! (`platform/pubsub-emulator/bin/cloud-pubsub-emulator`); `.ci/install-test-deps` checks it.
//!
//! The helpers talk to the emulator's REST API: create topics and subscriptions, read them
//! back, and pull what was published (create a pull subscription before the publish).

use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{mpsc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::server::{runtime, TempDir};

/// How long the emulator may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one REST call to it may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A message read back from a pull subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct PulledMessage {
    /// The payload.
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: BTreeMap<String, String>,
    /// The id Pub/Sub assigned (what the publisher was answered).
    pub message_id: String,
}

impl PulledMessage {
    /// The payload parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.data).ok()
    }

    /// The payload as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

struct Running {
    port: u16,
    /// The shell's stdin: closing it stops the emulator.
    stdin: Option<ChildStdin>,
    shell: Child,
    _dir: TempDir,
}

/// One Pub/Sub emulator, started on first use, stopped on drop.
#[derive(Default)]
pub struct PubSubEmulator {
    running: OnceLock<Running>,
    /// Serializes the start (two threads asking at once start one emulator).
    starting: Mutex<()>,
}

impl PubSubEmulator {
    /// An emulator not started yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn running(&self) -> &Running {
        if let Some(r) = self.running.get() {
            return r;
        }
        let _one = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        if self.running.get().is_none() {
            let _ = self.running.set(start().unwrap_or_else(|e| panic!("{e}")));
        }
        self.running.get().expect("started")
    }

    /// `127.0.0.1:PORT`, the value of `PUBSUB_EMULATOR_HOST` (starts the emulator).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.running().port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/v1/{path}", self.host())
    }

    /// One REST call; `None` on 404, panics on any other failure (naming it).
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Option<Value> {
        let url = self.url(path);
        let what = format!("Pub/Sub emulator: {method} {url}");
        let (tx, rx) = mpsc::channel();
        runtime().spawn(async move {
            let client = reqwest::Client::new();
            let mut req = client.request(method, &url).timeout(CALL_TIMEOUT);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let answer = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    Ok((status, resp.text().await.unwrap_or_default()))
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(answer);
        });
        let (status, text) = rx
            .recv_timeout(CALL_TIMEOUT + Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{what}: no answer"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match status {
            200 => Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"))),
            404 => None,
            _ => panic!("{what}: {status} {text}"),
        }
    }

    /// Creates the topic `projects/P/topics/T`.
    pub fn add_topic(&self, name: &str) {
        self.call(reqwest::Method::PUT, name, Some(json!({})))
            .unwrap_or_else(|| panic!("create {name}: not found"));
    }

    /// The topic, if it exists.
    pub fn topic(&self, name: &str) -> Option<Value> {
        self.call(reqwest::Method::GET, name, None)
    }

    /// The names of the project's topics.
    pub fn topics(&self, project: &str) -> Vec<String> {
        self.names(&format!("projects/{project}/topics"), "topics")
    }

    /// The subscription, if it exists.
    pub fn subscription(&self, name: &str) -> Option<Value> {
        self.call(reqwest::Method::GET, name, None)
    }

    /// The names of the project's subscriptions.
    pub fn subscriptions(&self, project: &str) -> Vec<String> {
        self.names(
            &format!("projects/{project}/subscriptions"),
            "subscriptions",
        )
    }

    fn names(&self, path: &str, field: &str) -> Vec<String> {
        let list = self
            .call(reqwest::Method::GET, path, None)
            .unwrap_or_default();
        let mut names: Vec<String> = list[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| match t {
                // Topics are listed as objects, subscriptions as names.
                Value::String(s) => s.clone(),
                t => t["name"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        names.sort();
        names
    }

    /// Changes the fields of `mask` (comma-separated) of a subscription, as someone might by
    /// hand.
    pub fn patch_subscription(&self, name: &str, fields: Value, mask: &str) -> Value {
        self.call(
            reqwest::Method::PATCH,
            name,
            Some(json!({ "subscription": fields, "updateMask": mask })),
        )
        .unwrap_or_else(|| panic!("patch {name}: not found"))
    }

    /// Creates the pull subscription `name` on `topic`, to read back what is published from
    /// now on.
    pub fn add_pull_subscription(&self, name: &str, topic: &str) {
        self.call(reqwest::Method::PUT, name, Some(json!({ "topic": topic })))
            .unwrap_or_else(|| panic!("create {name}: topic {topic} not found"));
    }

    /// Everything waiting on the pull subscription, acknowledged (a second call returns only
    /// what was published since). The publisher has its answer only once the emulator stored
    /// the message, so nothing needs waiting for.
    pub fn pull(&self, subscription: &str) -> Vec<PulledMessage> {
        let mut out = Vec::new();
        // Bounded: a pull answers at most 1,000 messages, and tests publish a handful.
        for _ in 0..10 {
            let got = self
                .call(
                    reqwest::Method::POST,
                    &format!("{subscription}:pull"),
                    Some(json!({ "maxMessages": 1000, "returnImmediately": true })),
                )
                .unwrap_or_else(|| panic!("pull {subscription}: not found"));
            let received = got["receivedMessages"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if received.is_empty() {
                break;
            }
            let ack_ids: Vec<Value> = received.iter().map(|r| r["ackId"].clone()).collect();
            self.call(
                reqwest::Method::POST,
                &format!("{subscription}:acknowledge"),
                Some(json!({ "ackIds": ack_ids })),
            );
            out.extend(received.iter().map(|r| pulled(&r["message"])));
        }
        out
    }
}

fn pulled(m: &Value) -> PulledMessage {
    PulledMessage {
        data: base64::engine::general_purpose::STANDARD
            .decode(m["data"].as_str().unwrap_or_default())
            .expect("message data is base64"),
        attributes: m["attributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        message_id: m["messageId"].as_str().unwrap_or_default().to_string(),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // EOF on the shell's stdin: it stops the emulator, waits for it and exits.
        drop(self.stdin.take());
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.shell.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// The `cloud-pubsub-emulator` launcher, or what to do to get it.
fn launcher() -> Result<PathBuf, String> {
    launcher_from(
        std::env::var_os("KEEPALIVE_TEST_PUBSUB_EMULATOR"),
        std::env::var_os("PATH"),
    )
}

/// [`launcher`] from the values of `KEEPALIVE_TEST_PUBSUB_EMULATOR` and `PATH`.
fn launcher_from(
    explicit: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
) -> Result<PathBuf, String> {
    const HOW: &str = "the Pub/Sub emulator is needed for the tests that use Pub/Sub: install \
        the Google Cloud CLI with its emulator (`gcloud components install beta \
        pubsub-emulator`, or the apt package google-cloud-cli-pubsub-emulator; \
        `bash .ci/install-test-deps` checks it), or set KEEPALIVE_TEST_PUBSUB_EMULATOR to the \
        path of `cloud-pubsub-emulator`";
    if let Some(p) = explicit {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "KEEPALIVE_TEST_PUBSUB_EMULATOR={} is not a file; {HOW}",
                p.display()
            ))
        };
    }
    let gcloud = path
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("gcloud"))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("gcloud is not on PATH; {HOW}"))?;
    let sdk =
        std::fs::canonicalize(&gcloud).map_err(|e| format!("{}: {e}; {HOW}", gcloud.display()))?;
    // SDK/bin/gcloud → SDK/platform/pubsub-emulator/bin/cloud-pubsub-emulator
    let emulator = sdk
        .parent()
        .and_then(|bin| bin.parent())
        .map(|root| root.join("platform/pubsub-emulator/bin/cloud-pubsub-emulator"))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "the Cloud SDK of {} has no pubsub-emulator component; {HOW}",
                gcloud.display()
            )
        })?;
    Ok(emulator)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// Starts the emulator and waits (bounded) until it answers.
fn start() -> Result<Running, String> {
    let launcher = launcher()?;
    let mut last = String::new();
    // A port taken between the probe and the emulator's bind: try another, three times.
    for _ in 0..3 {
        let dir =
            TempDir::new("pubsub-emulator").map_err(|e| format!("temporary directory: {e}"))?;
        let log = dir.path().join("emulator.log");
        let port = free_port()?;
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut shell = Command::new("sh")
            .arg("-c")
            // The emulator in the background; when stdin closes (the test dropped us or died),
            // stop it and wait for it.
            .arg(r#""$0" "$@" </dev/null & pid=$!; cat >/dev/null; kill "$pid" 2>/dev/null; wait "$pid""#)
            .arg(&launcher)
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            // A small heap and the quick JIT: it serves a few calls per test.
            .env("JAVA_OPTS", "-Xmx256m -XX:TieredStopAtLevel=1")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {}: {e}", launcher.display()))?;
        let stdin = shell.stdin.take();
        let running = Running {
            port,
            stdin,
            shell,
            _dir: dir,
        };
        match wait_ready(port, &log) {
            Ok(()) => return Ok(running),
            Err(e) => {
                drop(running);
                if !e.contains("Address already in use") {
                    return Err(e);
                }
                last = e;
            }
        }
    }
    Err(last)
}

/// Polls the emulator's root (`200 Ok` once it serves) every 100 ms, at most
/// [`START_TIMEOUT`]; reads the log when it does not come up.
fn wait_ready(port: u16, log: &std::path::Path) -> Result<(), String> {
    let until = Instant::now() + START_TIMEOUT;
    while Instant::now() < until {
        if let Ok(mut s) = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            use std::io::Write;
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                .is_ok()
            {
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Exception") && !text.contains("Server started") {
            return Err(format!("the Pub/Sub emulator did not start:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "the Pub/Sub emulator did not answer on 127.0.0.1:{port} within {} s:\n{}",
        START_TIMEOUT.as_secs(),
        std::fs::read_to_string(log).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_emulator_is_named_with_what_to_install() {
        let dir = TempDir::new("no-gcloud").unwrap();
        let e = launcher_from(None, Some(dir.path().as_os_str().to_owned())).unwrap_err();
        assert!(e.starts_with("gcloud is not on PATH"), "{e}");
        assert!(
            e.contains("gcloud components install beta pubsub-emulator"),
            "{e}"
        );
        assert!(e.contains("KEEPALIVE_TEST_PUBSUB_EMULATOR"), "{e}");

        // A gcloud whose SDK lacks the component.
        let bin = dir.path().join("sdk/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("gcloud"), "").unwrap();
        let e = launcher_from(None, Some(bin.as_os_str().to_owned())).unwrap_err();
        assert!(e.contains("has no pubsub-emulator component"), "{e}");

        let e = launcher_from(Some(dir.path().join("nope").into()), None).unwrap_err();
        assert!(e.contains("KEEPALIVE_TEST_PUBSUB_EMULATOR="), "{e}");
        assert!(e.contains("is not a file"), "{e}");

        // Found in that SDK once it is there.
        let emulator = dir
            .path()
            .join("sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator");
        std::fs::create_dir_all(emulator.parent().unwrap()).unwrap();
        std::fs::write(&emulator, "").unwrap();
        let found = launcher_from(None, Some(bin.as_os_str().to_owned())).unwrap();
        assert_eq!(found, std::fs::canonicalize(&emulator).unwrap());
    }

    #[test]
    fn the_emulator_serves_topics_subscriptions_and_pulls() {
        let ps = PubSubEmulator::new();
        let topic = "projects/p-test/topics/events";
        let sub = "projects/p-test/subscriptions/read-back";
        assert!(ps.topic(topic).is_none());
        ps.add_topic(topic);
        ps.add_pull_subscription(sub, topic);
        assert_eq!(ps.topics("p-test"), [topic]);
        assert_eq!(ps.subscriptions("p-test"), [sub]);
        assert!(ps.pull(sub).is_empty());
    }
}
