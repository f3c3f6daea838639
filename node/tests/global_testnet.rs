//! Real `lcbft run` processes on loopback form the global domain, take traces through the
//! HTTP API, and commit the same blocks; while one is down after SIGKILL the other three keep
//! committing, and it restarts from disk and catches up; one that lost its database rejoins;
//! SIGTERM stops a node cleanly.

mod common;

use common::{Testnet, all_connected, assert_no_fork, get, submit, trace_committed, wait_until};
use std::time::Duration;

fn committed_everywhere(net: &Testnet, nodes: &[usize], ids: &[String]) -> bool {
    wait_until(Duration::from_secs(60), || {
        nodes
            .iter()
            .all(|&i| ids.iter().all(|id| trace_committed(net.nodes[i].api, id)))
    })
}

#[test]
fn four_global_validators_commit_the_same_blocks_and_survive_a_crash() {
    let mut net = Testnet::global(4);
    net.start_all();
    assert!(
        all_connected(&net, &[0, 1, 2, 3], 3),
        "not connected:\n{}",
        net.logs()
    );

    // Traces submitted to different nodes are committed on every node, identically.
    let ids: Vec<String> = (0..6)
        .map(|i| submit(&net, i % 4, &format!("reading-{i}")))
        .collect();
    assert!(
        committed_everywhere(&net, &[0, 1, 2, 3], &ids),
        "traces not committed everywhere:\n{}",
        net.logs()
    );
    assert!(assert_no_fork(&net, &[0, 1, 2, 3]) >= 1);
    let (status, v) = get(net.nodes[3].api, &format!("/v1/traces/{}", ids[0])).expect("trace");
    assert_eq!(status, 200);
    assert_eq!(v["trace"]["trace"]["body"], hex_of("reading-0"));

    // SIGKILL node 3: the other three hold a quorum (3 of 4) and keep committing; traces
    // submitted during the outage are committed on all three.
    net.nodes[3].kill();
    let before = common::committed_height(net.nodes[0].api).unwrap_or(0);
    let down: Vec<String> = (0..3)
        .map(|i| submit(&net, i, &format!("while-down-{i}")))
        .collect();
    assert!(
        committed_everywhere(&net, &[0, 1, 2], &down),
        "the three live validators stalled:\n{}",
        net.logs()
    );
    let during = assert_no_fork(&net, &[0, 1, 2]);
    assert!(during > before, "no new block while node 3 was down");

    // Node 3 restarts from its database, catches up by block sync to where the others were
    // during the outage, and then commits new traces with them.
    net.nodes[3].start();
    assert!(
        all_connected(&net, &[3], 3),
        "node 3 did not reconnect:\n{}",
        net.logs()
    );
    let after: Vec<String> = (0..4)
        .map(|i| submit(&net, i, &format!("after-restart-{i}")))
        .collect();
    let mut all = down;
    all.extend(after);
    assert!(
        committed_everywhere(&net, &[0, 1, 2, 3], &all),
        "node 3 did not catch up:\n{}",
        net.logs()
    );
    // Every node holds every height up to its own committed height, the same block each.
    assert!(assert_no_fork(&net, &[0, 1, 2, 3]) > during);
    let log = net.nodes[3].log();
    assert!(
        !log.contains("rejoining"),
        "restarted with its database, node 3 must not wait to rejoin:\n{log}"
    );

    // Node 3 loses its database: it rejoins, signing nothing until the others said how far
    // they got (RELIABILITY.md), catches up, and commits with them again.
    net.nodes[3].kill();
    std::fs::remove_dir_all(net.nodes[3].dir.join("data")).expect("remove node 3's database");
    let before_loss = assert_no_fork(&net, &[0, 1, 2]);
    net.nodes[3].start();
    assert!(
        all_connected(&net, &[3], 3),
        "node 3 did not reconnect after losing its database:\n{}",
        net.logs()
    );
    let again: Vec<String> = (0..4)
        .map(|i| submit(&net, i, &format!("after-loss-{i}")))
        .collect();
    assert!(
        committed_everywhere(&net, &[0, 1, 2, 3], &again),
        "node 3 did not come back after losing its database:\n{}",
        net.logs()
    );
    let log = net.nodes[3].log();
    assert!(
        log.contains("rejoined"),
        "no rejoin in node 3's log:\n{log}"
    );
    assert!(assert_no_fork(&net, &[0, 1, 2, 3]) > before_loss);

    // SIGTERM: a clean stop, exit status 0.
    let status = net.nodes[2].terminate().expect("node 2 exits on SIGTERM");
    assert!(status.success(), "exit {status:?}:\n{}", net.nodes[2].log());
    assert!(net.nodes[2].log().contains("node stopped"));
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A validator keeps only the last `memory_window` committed blocks in memory; one that was
/// down for longer than that catches up from the others' disks.
#[test]
fn a_validator_down_for_longer_than_the_memory_window_catches_up_from_disk() {
    let window = lcbft_protocol::memory_window(lcbft_protocol::types::DomainId::Global);
    // Unpaced, so the window's worth of blocks comes quickly.
    let mut net = common::unpaced_global(4);
    let first = submit(&net, 0, "before");
    assert!(committed_everywhere(&net, &[0, 1, 2, 3], &[first]));
    net.nodes[3].kill();
    let start = common::committed_height(net.nodes[0].api).unwrap_or(0);
    let target = start + window + window / 2;
    let mut i = 0;
    let grew = common::wait_until(Duration::from_secs(240), || {
        i += 1;
        submit(&net, i % 3, &format!("while-down-{i}"));
        common::committed_height(net.nodes[0].api).unwrap_or(0) >= target
    });
    assert!(
        grew,
        "the three live validators did not reach {target}:\n{}",
        net.logs()
    );
    let others = common::committed_height(net.nodes[0].api).unwrap_or(0);

    net.nodes[3].start();
    let caught_up = common::wait_until(Duration::from_secs(120), || {
        common::committed_height(net.nodes[3].api).unwrap_or(0) >= others
    });
    assert!(
        caught_up,
        "node 3 did not catch up to {others}:\n{}",
        net.logs()
    );
    let from_disk: f64 = (0..3)
        .map(|n| {
            common::metric(
                &net,
                n,
                "lcbft_sync_requests_total{layer=\"global\",domain=\"global\",direction=\"served_from_disk\"}",
            )
        })
        .sum();
    assert!(from_disk >= 1.0, "no block was served from disk");
    let last = submit(&net, 3, "after");
    assert!(committed_everywhere(&net, &[0, 1, 2, 3], &[last]));
    assert_no_fork(&net, &[0, 1, 2, 3]);
}
