//! The energy rule's figure: CPU time a device node uses in an idle layered network (4 global
//! validators, node 0 also the edge of a local domain with 3 devices). Not a pass/fail test
//! (timings depend on the machine): run it on purpose and read the figures it prints.
//!
//! `cargo test -p lcbft-node --test idle_cpu -- --ignored --nocapture`

mod common;

use common::{Testnet, get, submit_to, trace_committed, wait_until};
use std::time::{Duration, Instant};

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[test]
#[ignore = "measurement: prints the idle CPU figure, run with --ignored --nocapture"]
fn idle_device_cpu() {
    let mut net = Testnet::layered(4, 3);
    net.start_all();
    let connected = common::all_connected(&net, &(0..net.nodes.len()).collect::<Vec<_>>(), 3);
    assert!(connected, "not connected:\n{}", net.logs());
    // One trace through the local domain, so the measurement starts after real work, then
    // nothing more is submitted.
    let id = submit_to(&net, 4, "local/1", "warm-up");
    assert!(
        wait_until(Duration::from_secs(60), || [0, 4, 5, 6]
            .iter()
            .all(|&i| trace_committed(net.nodes[i].api, &id))),
        "warm-up trace not committed:\n{}",
        net.logs()
    );
    std::thread::sleep(Duration::from_secs(3));

    let watch = [(4, "device"), (5, "device"), (0, "edge"), (1, "cloud")];
    let pids: Vec<u32> = watch
        .iter()
        .map(|(i, _)| net.nodes[*i].pid().expect("running"))
        .collect();
    let views = || {
        get(net.nodes[4].api, "/v1/status")
            .map(|(_, v)| v["domains"][0]["view"].clone())
            .unwrap_or_default()
    };
    let view_before = views();
    let start_ticks: Vec<u64> = pids.iter().map(|p| common::cpu_ticks(*p)).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let wall = start.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second();
    // The idle rule: no view changes while nothing is pending.
    println!("device local view: {view_before} before, {} after", views());
    for (((i, role), pid), t0) in watch.iter().zip(&pids).zip(&start_ticks) {
        let cpu = (common::cpu_ticks(*pid) - t0) as f64 / hz;
        println!(
            "node{i} ({role}): {cpu:.2} CPU-s over {wall:.1} s idle = {:.2}% of one core",
            100.0 * cpu / wall
        );
    }
}
