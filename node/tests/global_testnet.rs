//! Real `lcbft run` processes on loopback form the global domain, take traces through the
//! HTTP API, and commit the same blocks; a node killed with SIGKILL restarts from disk and
//! catches up; SIGTERM stops a node cleanly.

mod common;

use common::{Testnet, assert_no_fork, get, submit, trace_committed, wait_until};
use std::time::Duration;

fn all_connected(net: &Testnet, nodes: &[usize], peers: usize) -> bool {
    wait_until(Duration::from_secs(30), || {
        nodes.iter().all(|&i| {
            get(net.nodes[i].api, "/v1/status")
                .is_some_and(|(_, v)| v["connected"].as_array().is_some_and(|c| c.len() >= peers))
        })
    })
}

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

    // SIGKILL node 3 and submit while it is down. (With n = 4 and round-robin leaders, every
    // three-chain needs the dead node's turn to aggregate, so the rest cannot commit until it
    // is back: see the report on the protocol; this test checks durability and catch-up.)
    net.nodes[3].kill();
    let more: Vec<String> = (0..3)
        .map(|i| submit(&net, i, &format!("while-down-{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // Node 3 restarts from its database and catches up by block sync.
    net.nodes[3].start();
    assert!(
        all_connected(&net, &[3], 3),
        "node 3 did not reconnect:\n{}",
        net.logs()
    );
    let after: Vec<String> = (0..2)
        .map(|i| submit(&net, i, &format!("after-restart-{i}")))
        .collect();
    let mut all = more.clone();
    all.extend(after);
    assert!(
        committed_everywhere(&net, &[0, 1, 2, 3], &all),
        "node 3 did not catch up:\n{}",
        net.logs()
    );
    assert_no_fork(&net, &[0, 1, 2, 3]);

    // SIGTERM: a clean stop, exit status 0.
    let status = net.nodes[2].terminate().expect("node 2 exits on SIGTERM");
    assert!(status.success(), "exit {status:?}:\n{}", net.nodes[2].log());
    assert!(net.nodes[2].log().contains("node stopped"));
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// With n = 5 (f = 1) the four live validators hold a quorum and every window of three
/// consecutive round-robin leaders plus the aggregating next one can be live: the chain keeps
/// committing while one validator is down, and the validator catches up after its restart.
#[test]
fn five_validators_keep_committing_with_one_down() {
    let mut net = Testnet::global(5);
    net.start_all();
    assert!(
        all_connected(&net, &[0, 1, 2, 3, 4], 4),
        "not connected:\n{}",
        net.logs()
    );
    let first = submit(&net, 0, "first");
    assert!(
        committed_everywhere(&net, &[0, 1, 2, 3, 4], &[first]),
        "{}",
        net.logs()
    );

    net.nodes[4].kill();
    let down: Vec<String> = (0..3)
        .map(|i| submit(&net, i, &format!("while-down-{i}")))
        .collect();
    assert!(
        committed_everywhere(&net, &[0, 1, 2, 3], &down),
        "the four live validators stalled:\n{}",
        net.logs()
    );

    net.nodes[4].start();
    let after = submit(&net, 1, "after-restart");
    let mut all = down;
    all.push(after);
    assert!(
        committed_everywhere(&net, &[0, 1, 2, 3, 4], &all),
        "node 4 did not catch up:\n{}",
        net.logs()
    );
    assert_no_fork(&net, &[0, 1, 2, 3, 4]);
}
