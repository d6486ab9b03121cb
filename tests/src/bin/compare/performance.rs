//! The performance phase: latency, start-up, the burst, CPU per check, idle memory; its table.

use futures::future::join_all;
use keepalive_tests::measure::{
    cpu_time, listen_drops, median, ms, post_once, range_digits, status_kb,
};
use keepalive_tests::FAKE_PROJECT;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

use super::*;

#[derive(Default)]
pub(crate) struct Perf {
    pub(crate) check0: Vec<f64>,
    pub(crate) check: Vec<f64>,
    pub(crate) ready: Vec<f64>,
    pub(crate) first: Vec<f64>,
    pub(crate) burst_wall: Vec<f64>,
    pub(crate) burst_hwm: Vec<f64>,
    pub(crate) burst_cpu: Vec<f64>,
    pub(crate) burst_drops: Vec<f64>,
    pub(crate) cpu_per_check: Vec<f64>,
    pub(crate) idle_rss: Vec<f64>,
}

pub(crate) async fn sequential(w: &World, r: &Running, n: usize) -> Vec<f64> {
    for _ in 0..3 {
        w.healthy(r, w.message(0)).await;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(ms(w.healthy(r, w.message(0)).await));
    }
    v
}

/// Spawn → accepting, spawn → first check answered (a bare HTTP/1.1 exchange).
pub(crate) fn start_and_first(w: &mut World, side: Side) -> (Duration, Duration) {
    let body = w.message(0);
    let started = Instant::now();
    let (r, ready) = w.start(side);
    let path = r
        .url()
        .split_off(format!("http://127.0.0.1:{}", r.port).len());
    let stream = TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
    let text = post_once(stream, r.port, &path, &body);
    let first = started.elapsed();
    assert!(
        text.starts_with("HTTP/1.1 2"),
        "{}: first check answered {text}",
        side.name()
    );
    (ready, first)
}

pub(crate) async fn perf_run(w: &mut World, side: Side, o: &Opts, p: &mut Perf) {
    // The tenants' VMs (keepalive reads a tenant's instance on every check).
    let earlier = OffsetDateTime::now_utc() - time::Duration::days(1);
    for i in 0..o.tenants.max(50) {
        w.g.compute
            .add_instance(FAKE_PROJECT, ZONE, &vm(i), "RUNNING", earlier);
    }
    // Latency and CPU per check, on one process.
    let (r, _) = w.start(side);
    p.idle_rss.push(status_kb(r.pid(), "VmRSS") as f64 / 1e6);
    w.wa.set_latency(Duration::ZERO);
    p.check0.push(median(&sequential(w, &r, o.samples).await));
    w.wa.set_latency(o.latency);
    p.check.push(median(&sequential(w, &r, o.samples).await));
    w.wa.set_latency(Duration::ZERO);
    let before = cpu_time(r.pid());
    for i in 0..o.cpu_checks {
        w.healthy(&r, w.message(i % 50)).await;
        if i % 500 == 499 {
            w.wa.clear_requests();
        }
    }
    p.cpu_per_check
        .push(cpu_time(r.pid()).saturating_sub(before).as_secs_f64() * 1e6 / o.cpu_checks as f64);
    drop(r);
    w.wa.clear_requests();

    // Start-up.
    let mut ready = Vec::new();
    let mut first = Vec::new();
    for _ in 0..o.starts {
        let (a, b) = start_and_first(w, side);
        ready.push(ms(a));
        first.push(ms(b));
    }
    p.ready.push(median(&ready));
    p.first.push(median(&first));

    // The burst, on a fresh process after one check.
    w.wa.set_latency(o.latency);
    let (r, _) = w.start(side);
    w.healthy(&r, w.message(0)).await;
    let bodies: Vec<Vec<u8>> = (0..o.tenants).map(|i| w.message(i)).collect();
    let cpu0 = cpu_time(r.pid());
    let drops0 = listen_drops();
    let started = Instant::now();
    join_all(bodies.into_iter().map(|b| w.healthy(&r, b))).await;
    p.burst_drops.push((listen_drops() - drops0) as f64);
    p.burst_wall.push(ms(started.elapsed()));
    p.burst_cpu.push(ms(cpu_time(r.pid()).saturating_sub(cpu0)));
    p.burst_hwm.push(status_kb(r.pid(), "VmHWM") as f64 / 1e6);
    drop(r);
    w.wa.set_latency(Duration::ZERO);
    w.wa.clear_requests();
    w.assert_no_resets(side.name());
    eprintln!(
        "{}: check {:.1} ms (0 ms: {:.2}), ready {:.1} ms, first {:.1} ms, burst {:.0} ms / {:.1} MB, CPU/check {:.0} µs",
        side.name(),
        p.check.last().unwrap(),
        p.check0.last().unwrap(),
        p.ready.last().unwrap(),
        p.first.last().unwrap(),
        p.burst_wall.last().unwrap(),
        p.burst_hwm.last().unwrap(),
        p.cpu_per_check.last().unwrap()
    );
}

pub(crate) fn perf_table(o: &Opts, k: &Perf, n: &Perf) {
    let l = o.latency.as_millis();
    println!("| measure | keepalive | original | original ÷ keepalive |");
    println!("|---|---|---|---|");
    let row = |name: String, a: &[f64], b: &[f64], unit: &str, digits: usize| {
        println!(
            "| {name} | {:.digits$} {unit} [{}] | {:.digits$} {unit} [{}] | {} |",
            median(a),
            range_digits(a, digits),
            median(b),
            range_digits(b, digits),
            if median(a) > 0.0 {
                format!("×{:.1}", median(b) / median(a))
            } else {
                "—".into()
            }
        );
    };
    row(
        format!("one healthy check, {l} ms per request"),
        &k.check,
        &n.check,
        "ms",
        1,
    );
    row(
        "one healthy check, 0 ms per request".into(),
        &k.check0,
        &n.check0,
        "ms",
        2,
    );
    row(
        "spawn → accepting connections".into(),
        &k.ready,
        &n.ready,
        "ms",
        1,
    );
    row(
        "spawn → first check answered".into(),
        &k.first,
        &n.first,
        "ms",
        1,
    );
    row(
        format!("{} tenants at once, {l} ms: wall", o.tenants),
        &k.burst_wall,
        &n.burst_wall,
        "ms",
        0,
    );
    row(
        format!("{} tenants at once, {l} ms: peak RSS", o.tenants),
        &k.burst_hwm,
        &n.burst_hwm,
        "MB",
        1,
    );
    row(
        format!("{} tenants at once, {l} ms: CPU", o.tenants),
        &k.burst_cpu,
        &n.burst_cpu,
        "ms",
        0,
    );
    row(
        format!(
            "{} tenants at once: connections the listener dropped (each costs 1 s)",
            o.tenants
        ),
        &k.burst_drops,
        &n.burst_drops,
        "",
        0,
    );
    row(
        format!("CPU per check ({} sequential, 0 ms)", o.cpu_checks),
        &k.cpu_per_check,
        &n.cpu_per_check,
        "µs",
        0,
    );
    row(
        "idle process RSS after start".into(),
        &k.idle_rss,
        &n.idle_rss,
        "MB",
        1,
    );
}

// ---------------------------------------------------------------------------------------------
// Behaviour.
