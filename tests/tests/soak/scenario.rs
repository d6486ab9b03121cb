//! What one check is up against (random faults of the client, the VM and the Google fakes)
//! and the verdict the contract gives for it, played against the scripted answers.

use crate::{ATTEMPTS, TIMEOUT_MS};
use keepalive_tests::whatsapp::{HEALTH_PATH, LOGIN_PATH, PROBES};
use keepalive_tests::{Behaviour, ComputeRoute, Health};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The eight paths of one attempt: the login, then the probes.
pub fn paths() -> Vec<&'static str> {
    let mut v = vec![LOGIN_PATH];
    v.extend(PROBES.iter().map(|(_, p)| *p));
    v
}

/// What one check is up against.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// A name for the report.
    pub kind: &'static str,
    /// Answers for the next requests to a path (`fail_next`), in order.
    pub queued: Vec<(&'static str, Behaviour)>,
    /// How every request to a path is answered for the whole check (`set_behaviour`).
    pub persistent: Option<(&'static str, Behaviour)>,
    pub health: Health,
    /// The fake is stopped: connections are refused.
    pub refused: bool,
    pub vm_status: &'static str,
    /// One 503 from a Compute Engine route (retried by keepalive).
    pub compute_blip: Option<ComputeRoute>,
    /// One 503 from Secret Manager (retried by keepalive).
    pub secret_blip: bool,
}

pub fn failure(rng: &mut StdRng) -> Behaviour {
    match rng.random_range(0..8) {
        0 => Behaviour::Hang,
        1 => Behaviour::BadJson,
        2 => Behaviour::Close,
        3 => Behaviour::Status(500),
        4 => Behaviour::Status(502),
        5 => Behaviour::Status(503),
        6 => Behaviour::Status(429),
        _ => Behaviour::Status([401, 403, 404][rng.random_range(0..3)]),
    }
}

pub fn scenario(rng: &mut StdRng) -> Scenario {
    let paths = paths();
    let mut s = Scenario {
        kind: "clean",
        queued: Vec::new(),
        persistent: None,
        health: Health::Single("connected"),
        refused: false,
        vm_status: "RUNNING",
        compute_blip: None,
        secret_blip: false,
    };
    let pick = |rng: &mut StdRng| paths[rng.random_range(0..paths.len())];
    match rng.random_range(0..100) {
        0..25 => {}
        25..40 => {
            s.kind = "blip";
            let p = pick(rng);
            s.queued.push((p, failure(rng)));
        }
        40..50 => {
            // Two one-off failures: down when the second lands on the second attempt.
            s.kind = "two blips";
            for _ in 0..2 {
                let p = pick(rng);
                s.queued.push((p, failure(rng)));
            }
        }
        50..65 => {
            s.kind = "down";
            let p = pick(rng);
            s.persistent = Some((p, failure(rng)));
        }
        65..70 => {
            s.kind = "slow";
            let p = pick(rng);
            let ms = rng.random_range(1..=TIMEOUT_MS / 2);
            s.persistent = Some((p, Behaviour::Delay(Duration::from_millis(ms))));
        }
        70..85 => {
            s.kind = "health";
            s.health = match rng.random_range(0..7) {
                0 => Health::Single("disconnected"),
                1 => Health::Single("uninitialized"),
                2 => Health::Single("unregistered"),
                3 => Health::Single("connecting"),
                4 => Health::Nodes(vec![
                    ("master1:web", "disconnected", "primary_master"),
                    ("coreapp1:core", "connected", "coreapp"),
                ]),
                5 => Health::Nodes(vec![
                    ("master1:web", "disconnected", "primary_master"),
                    ("coreapp1:core", "disconnected", "coreapp"),
                ]),
                _ => Health::Nodes(vec![
                    ("master1:web", "connected", "primary_master"),
                    ("coreapp1:core", "unregistered", "coreapp"),
                ]),
            };
        }
        85..92 => {
            s.kind = "refused";
            s.refused = true;
        }
        _ => {
            s.kind = "not running";
            s.vm_status = ["TERMINATED", "STOPPING", "SUSPENDED"][rng.random_range(0..3)];
            if rng.random_bool(0.5) {
                s.refused = true;
            } else {
                let p = pick(rng);
                s.persistent = Some((p, failure(rng)));
            }
        }
    }
    if rng.random_range(0..100) < 2 {
        s.compute_blip = Some(
            [
                ComputeRoute::GetInstance,
                ComputeRoute::ListOperations,
                ComputeRoute::Reset,
                ComputeRoute::WaitOperation,
            ][rng.random_range(0..4)],
        );
    }
    s.secret_blip = rng.random_range(0..100) < 2;
    s
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientHealth {
    Up,
    Down,
    Unregistered,
}

pub fn client_health(h: &Health) -> ClientHealth {
    let good = |s: &str| matches!(s, "connected" | "connecting");
    match h {
        Health::Single("unregistered") => ClientHealth::Unregistered,
        Health::Single(s) if good(s) => ClientHealth::Up,
        Health::Single(_) => ClientHealth::Down,
        Health::Nodes(nodes) => {
            if nodes.iter().any(|(_, s, _)| *s == "unregistered") {
                ClientHealth::Unregistered
            } else if nodes.iter().any(|(_, s, r)| *r == "coreapp" && good(s)) {
                ClientHealth::Up
            } else {
                ClientHealth::Down
            }
        }
        Health::Raw(_) => ClientHealth::Down,
    }
}

pub fn fails(b: &Behaviour) -> bool {
    match b {
        Behaviour::Normal => false,
        Behaviour::Delay(d) => *d >= Duration::from_millis(TIMEOUT_MS),
        Behaviour::Status(s) | Behaviour::Json(s, _) => !(200..300).contains(s),
        Behaviour::Hang
        | Behaviour::BadJson
        | Behaviour::Close
        | Behaviour::Redirect(_)
        | Behaviour::Huge(_) => true,
    }
}

/// The verdict the contract gives: the check played against the scripted answers.
pub fn expected(s: &Scenario) -> &'static str {
    let mut client = ClientHealth::Down;
    if !s.refused {
        let mut queues: BTreeMap<&str, VecDeque<Behaviour>> = BTreeMap::new();
        for (p, b) in &s.queued {
            queues.entry(p).or_default().push_back(b.clone());
        }
        let mut answer = |path: &str| -> Behaviour {
            if let Some(b) = queues.get_mut(path).and_then(VecDeque::pop_front) {
                return b;
            }
            match &s.persistent {
                Some((p, b)) if *p == path => b.clone(),
                _ => Behaviour::Normal,
            }
        };
        let health = client_health(&s.health);
        for _ in 0..ATTEMPTS {
            let login = answer(LOGIN_PATH);
            // Refused credentials end the check at once: a person must fix them.
            if matches!(login, Behaviour::Status(401 | 403) | Behaviour::Redirect(_)) {
                return "alert";
            }
            if fails(&login) {
                continue;
            }
            // All seven probes are sent; each takes its own scripted answer.
            let mut any_failed = false;
            let mut health_answered = false;
            for (_, p) in PROBES {
                let failed = fails(&answer(p));
                any_failed |= failed;
                if p == HEALTH_PATH && !failed {
                    health_answered = true;
                }
            }
            if health_answered && health == ClientHealth::Unregistered {
                // A person must act, whatever else failed.
                client = ClientHealth::Unregistered;
                break;
            }
            if !any_failed && health == ClientHealth::Up {
                client = ClientHealth::Up;
                break;
            }
        }
    }
    match client {
        ClientHealth::Up => "healthy",
        ClientHealth::Unregistered => "alert",
        ClientHealth::Down if s.vm_status != "RUNNING" => "skipped",
        ClientHealth::Down => "reset",
    }
}
