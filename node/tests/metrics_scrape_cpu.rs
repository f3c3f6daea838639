//! What a 1 Hz `/metrics` scrape costs a node: two idle devices of one layered network side by
//! side over the same windows, one scraped every second and one not, then the other way
//! round. Not a pass/fail test (timings depend on the machine): run it on purpose and read
//! the figures it prints.
//!
//! `cargo test --release -p lcbft-node --test metrics_scrape_cpu -- --ignored --nocapture`

#![allow(clippy::unwrap_used)]

mod common;

use common::{Testnet, submit_to, trace_committed, wait_until};
use std::time::{Duration, Instant};

/// USER_HZ: 100 on Linux.
const HZ: f64 = 100.0;

fn scrape(api: std::net::SocketAddr) -> usize {
    common::rt().block_on(async {
        lcbft_node::http_client::request(api, "GET", "/metrics", None)
            .await
            .map(|r| r.body.len())
            .unwrap_or(0)
    })
}

/// CPU seconds of (scraped, idle) over `secs`, scraping `scraped` once a second.
fn window(net: &Testnet, scraped: usize, idle: usize, secs: u64) -> (f64, f64, usize) {
    let (p1, p2) = (
        net.nodes[scraped].pid().unwrap(),
        net.nodes[idle].pid().unwrap(),
    );
    let (t1, t2) = (common::cpu_ticks(p1), common::cpu_ticks(p2));
    let start = Instant::now();
    let mut bytes = 0;
    for k in 1..=secs {
        bytes = scrape(net.nodes[scraped].api);
        let next = start + Duration::from_secs(k);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    (
        (common::cpu_ticks(p1) - t1) as f64 / HZ,
        (common::cpu_ticks(p2) - t2) as f64 / HZ,
        bytes,
    )
}

#[test]
#[ignore = "measurement: prints the scrape cost, run with --ignored --nocapture"]
fn scrape_cost_of_an_idle_device() {
    let mut net = Testnet::layered(4, 3);
    net.start_all();
    let all: Vec<usize> = (0..net.nodes.len()).collect();
    assert!(common::all_connected(&net, &all, 3), "{}", net.logs());
    let id = submit_to(&net, 4, "local/1", "warm-up");
    assert!(wait_until(Duration::from_secs(60), || [0, 4, 5, 6]
        .iter()
        .all(|&i| trace_committed(net.nodes[i].api, &id))));
    std::thread::sleep(Duration::from_secs(3));

    // One scrape's encoding time, from the outside.
    let t = Instant::now();
    let n = 50;
    for _ in 0..n {
        scrape(net.nodes[4].api);
    }
    println!(
        "one /metrics request: {:.2} ms wall (incl. HTTP), body {} bytes",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64,
        scrape(net.nodes[4].api)
    );
    std::thread::sleep(Duration::from_secs(2));

    let secs = 30;
    let (a_scraped, b_idle, bytes) = window(&net, 4, 5, secs);
    let (b_scraped, a_idle, _) = window(&net, 5, 4, secs);
    let pct = |cpu: f64| 100.0 * cpu / secs as f64;
    println!("{secs} s windows, 1 Hz scrape of a {bytes}-byte /metrics:");
    println!(
        "node4: scraped {:.2} CPU-s ({:.2}%), not scraped {:.2} CPU-s ({:.2}%)",
        a_scraped,
        pct(a_scraped),
        a_idle,
        pct(a_idle)
    );
    println!(
        "node5: scraped {:.2} CPU-s ({:.2}%), not scraped {:.2} CPU-s ({:.2}%)",
        b_scraped,
        pct(b_scraped),
        b_idle,
        pct(b_idle)
    );
    let cost = ((a_scraped - a_idle) + (b_scraped - b_idle)) / 2.0;
    println!(
        "scrape cost: {:.3} CPU-s per {secs} s = {:.3}% of one core",
        cost,
        pct(cost)
    );
}
