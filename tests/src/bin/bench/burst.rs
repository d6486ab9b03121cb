//! Many checks posted at once to one fresh `keepalive serve`: the burst phase
//! (`BENCH_PHASES=burst`), and the flood phase's runs (`flood.rs`).

use futures::future::join_all;
use keepalive_tests::measure::{cpu_time, listen_drops, ms, status_kb};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::world::World;

/// What one burst cost, and what it answered.
pub struct BurstRun {
    pub wall: f64,
    pub hwm: u64,
    pub rss_before: u64,
    pub rss_after: u64,
    pub cpu: f64,
    pub drops: u64,
    pub pid: u32,
    /// CPU of this process (the fakes and the client) during the burst.
    pub harness_cpu: f64,
    /// How many answers had each verdict (`HTTP <status>` for an answer other than 200).
    pub verdicts: BTreeMap<String, usize>,
    /// One answer's body (cut to 500 characters) for each verdict.
    pub examples: BTreeMap<String, String>,
}

/// `tenants` healthy checks posted at once to a fresh process. Panics unless all are healthy.
pub async fn burst_run(w: &World, latency: Duration, tenants: usize) -> BurstRun {
    let bodies = (0..tenants).map(|i| w.message(i)).collect();
    let run = posted_at_once(w, &w.env, latency, bodies, || {}).await;
    assert_eq!(
        run.verdicts.get("healthy").copied(),
        Some(tenants),
        "burst verdicts: {:?}; {:?}",
        run.verdicts,
        run.examples
    );
    run
}

/// Starts a fresh process with `env`, makes one healthy check (the process is up and has made its
/// one-off allocations: TLS roots, the first connections, as a Cloud Run instance has after
/// its first request), calls `script` (which may change how the fakes answer), then posts
/// every body at once.
pub async fn posted_at_once(
    w: &World,
    env: &BTreeMap<String, String>,
    latency: Duration,
    bodies: Vec<Vec<u8>>,
    script: impl FnOnce(),
) -> BurstRun {
    w.set_latency(latency);
    let s = w.serve(env);
    let url = s.url();
    w.check(&url, w.message(0)).await;
    script();
    let pid = s.pid();
    let rss_before = status_kb(pid, "VmRSS");
    let drops0 = listen_drops();
    let cpu0 = cpu_time(pid);
    let own0 = cpu_time(std::process::id());
    let started = Instant::now();
    let answers = join_all(bodies.into_iter().map(|b| w.post(&url, b))).await;
    let wall = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    let own = cpu_time(std::process::id()).saturating_sub(own0);
    let drops = listen_drops() - drops0;
    let mut verdicts = BTreeMap::new();
    let mut examples = BTreeMap::new();
    for a in answers {
        *verdicts.entry(a.verdict.clone()).or_default() += 1;
        examples.entry(a.verdict).or_insert(a.text);
    }
    let run = BurstRun {
        wall: ms(wall),
        hwm: status_kb(pid, "VmHWM"),
        rss_before,
        rss_after: status_kb(pid, "VmRSS"),
        cpu: ms(cpu),
        drops,
        pid,
        harness_cpu: ms(own),
        verdicts,
        examples,
    };
    drop(s);
    w.clear();
    run
}
