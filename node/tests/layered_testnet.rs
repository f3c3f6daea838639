//! The layered network: 4 global validators, node 0 also the edge of local domain 1 with 3
//! devices. Device traces commit in the local chain on every member of the domain while the
//! global chain keeps committing, also while a global validator is down after SIGKILL; it
//! restarts, catches up, and no height holds two blocks on any node.

mod common;

use common::{
    Testnet, assert_no_fork, domain_block_hash, domain_height, get, submit, submit_to,
    trace_committed, wait_until,
};
use std::time::Duration;

#[test]
fn device_traces_commit_locally_while_the_global_chain_commits() {
    let mut net = Testnet::layered(4, 3);
    net.start_all();
    // Global validators see the other 3 (the edge also its devices); devices see edge + 2.
    let connected = common::all_connected(&net, &(0..net.nodes.len()).collect::<Vec<_>>(), 3);
    assert!(connected, "not connected:\n{}", net.logs());
    let (_, edge) = get(net.nodes[0].api, "/v1/status").expect("status");
    assert_eq!(edge["role"], "edge", "{edge}");
    assert_eq!(edge["domains"].as_array().map(Vec::len), Some(2), "{edge}");
    assert_eq!(edge["domains"][0]["role"], "edge", "{edge}");
    let (_, device) = get(net.nodes[4].api, "/v1/status").expect("status");
    assert_eq!(device["role"], "device", "{device}");
    assert_eq!(device["domains"][0]["role"], "device", "{device}");
    let (_, cloud) = get(net.nodes[1].api, "/v1/status").expect("status");
    assert_eq!(cloud["role"], "cloud", "{cloud}");

    let local: Vec<String> = (0..4)
        .map(|i| submit_to(&net, 4 + i % 3, "local/1", &format!("sensor-{i}")))
        .collect();
    let global = submit(&net, 1, "cloud-report");
    let members = [0, 4, 5, 6];
    let ok = wait_until(Duration::from_secs(60), || {
        members
            .iter()
            .all(|&i| local.iter().all(|id| trace_committed(net.nodes[i].api, id)))
            && (0..4).all(|i| trace_committed(net.nodes[i].api, &global))
    });
    assert!(ok, "not committed:\n{}", net.logs());

    // One local chain: the same block at every height on every member.
    let top = members
        .iter()
        .filter_map(|&i| domain_height(net.nodes[i].api, "local/1"))
        .max()
        .unwrap_or(0);
    assert!(top >= 1);
    for h in 1..=top {
        let hashes: Vec<String> = members
            .iter()
            .filter_map(|&i| domain_block_hash(net.nodes[i].api, "local-1", h))
            .collect();
        assert!(
            hashes.iter().all(|x| *x == hashes[0]),
            "local fork at {h}: {hashes:?}"
        );
    }
    // Status names, per domain, the replica's view, term and leader, and the connected
    // members: the edge sees 3 validators and 3 devices, a device its edge and 2 devices.
    let local_peers: Vec<String> = members.iter().map(|&i| net.nodes[i].peer.clone()).collect();
    let global_peers: Vec<String> = (0..4).map(|i| net.nodes[i].peer.clone()).collect();
    for &i in &members {
        let (_, v) = get(net.nodes[i].api, "/v1/status").expect("status");
        for d in v["domains"].as_array().expect("domains") {
            let (n, peers) = if d["domain"] == "global" {
                (4, &global_peers)
            } else {
                assert_eq!(d["domain"], "local/1", "{v}");
                (4, &local_peers)
            };
            let leader = d["leader"].as_u64().expect("leader index");
            assert!(leader < n, "{v}");
            assert_eq!(d["leader_peer"], peers[leader as usize].as_str(), "{v}");
            assert!(d["view"].as_u64().is_some_and(|x| x >= 1), "{v}");
            assert!(d["term"].is_u64(), "{v}");
            assert!(
                d["committed_height"].as_u64().is_some_and(|h| h >= 1),
                "{v}"
            );
            let connected = d["peers"].as_array().expect("peers");
            assert_eq!(connected.len(), 3, "{v}");
            assert!(connected.iter().all(|p| {
                p.as_str()
                    .is_some_and(|p| peers.iter().any(|m| m == p) && p != net.nodes[i].peer)
            }));
        }
    }

    // SIGKILL a global validator that is not the edge: both chains keep committing without
    // it; restarted, it catches up from disk and block sync, with no fork at any height.
    let before = assert_no_fork(&net, &[0, 1, 2, 3]);
    net.nodes[2].kill();
    let down = [
        submit(&net, 1, "while-down"),
        submit(&net, 3, "while-down-2"),
    ];
    let device_trace = submit_to(&net, 5, "local/1", "sensor-during-outage");
    let ok = wait_until(Duration::from_secs(60), || {
        [0, 1, 3]
            .iter()
            .all(|&i| down.iter().all(|id| trace_committed(net.nodes[i].api, id)))
            && members
                .iter()
                .all(|&i| trace_committed(net.nodes[i].api, &device_trace))
    });
    assert!(
        ok,
        "stalled with a validator down:
{}",
        net.logs()
    );
    net.nodes[2].start();
    let after = submit(&net, 0, "after-restart");
    let ok = wait_until(Duration::from_secs(60), || {
        (0..4).all(|i| {
            trace_committed(net.nodes[i].api, &after)
                && down.iter().all(|id| trace_committed(net.nodes[i].api, id))
        })
    });
    assert!(
        ok,
        "the restarted validator did not catch up:\n{}",
        net.logs()
    );
    assert!(assert_no_fork(&net, &[0, 1, 2, 3]) > before);

    // A device is not a global member: it refuses global traces with a clear 4xx.
    let api = net.nodes[5].api.to_string();
    let key = net.root.path().join("producer.key");
    let (ok, _, err) = common::lcbft(&[
        "trace",
        "submit",
        "--api",
        &api,
        "--key",
        common::path_str(&key),
        "--data",
        "x",
    ]);
    assert!(!ok && err.contains("not a member"), "{err}");
}

/// A device down while its domain commits more than twice its window (`local_window`, the
/// blocks its peers keep) cannot fetch the blocks in between. Restarted, it takes the newest
/// anchored block from its edge's notice (proven by the global chain), fetches only the blocks
/// above, and votes again: with another device down, no certificate forms without its share.
#[test]
fn a_device_down_for_more_than_twice_its_window_catches_up_by_state_transfer() {
    const WINDOW: u64 = 8;
    // Unpaced, so the domain commits its blocks quickly.
    let consensus =
        format!("propose_delay = \"0ms\"\nmin_block_interval = \"0ms\"\nlocal_window = {WINDOW}");
    let mut net = Testnet::build(4, &[(0, 3)], &consensus);
    net.start_all();
    let connected = common::all_connected(&net, &(0..net.nodes.len()).collect::<Vec<_>>(), 3);
    assert!(connected, "not connected:\n{}", net.logs());
    let first = submit_to(&net, 4, "local/1", "before");
    let members = [0, 4, 5, 6];
    assert!(
        wait_until(Duration::from_secs(60), || members
            .iter()
            .all(|&i| trace_committed(net.nodes[i].api, &first))),
        "not committed:\n{}",
        net.logs()
    );
    let apis: Vec<_> = net.nodes.iter().map(|n| n.api).collect();
    let local = |i: usize| domain_height(apis[i], "local/1").unwrap_or(0);
    let anchored = || {
        get(apis[0], "/v1/status")
            .and_then(|(_, v)| {
                v["domains"]
                    .as_array()?
                    .iter()
                    .find(|d| d["domain"] == "local/1")?["anchored_height"]
                    .as_u64()
            })
            .unwrap_or(0)
    };

    net.nodes[6].kill();
    let down_at = local(0);
    let mut i = 0;
    let grew = wait_until(Duration::from_secs(120), || {
        i += 1;
        submit_to(&net, 4 + i % 2, "local/1", &format!("while-down-{i}"));
        anchored() > down_at + 2 * WINDOW + 2
    });
    assert!(
        grew,
        "the domain did not commit and anchor {} blocks past {down_at} (anchored {}):\n{}",
        2 * WINDOW + 2,
        anchored(),
        net.logs()
    );
    // No live member keeps the blocks right above device 6's any more.
    let retained_from = |i: usize| {
        get(apis[i], "/v1/status")
            .and_then(|(_, v)| {
                v["domains"]
                    .as_array()?
                    .iter()
                    .find(|d| d["domain"] == "local/1")?["retained_from"]
                    .as_u64()
            })
            .unwrap_or(0)
    };
    let pruned = wait_until(Duration::from_secs(60), || {
        [0, 4, 5].iter().all(|&i| retained_from(i) > down_at + 1)
    });
    assert!(
        pruned,
        "the live members did not prune past {down_at}: {:?}\n{}",
        [0, 4, 5].map(retained_from),
        net.logs()
    );
    let top = local(0);

    net.nodes[6].start();
    let caught_up = wait_until(Duration::from_secs(60), || local(6) >= top);
    assert!(
        caught_up,
        "device 6 at {} did not catch up to {top}:\n{}",
        local(6),
        net.logs()
    );
    let transfers = common::metric(
        &net,
        6,
        "lcbft_sync_requests_total{layer=\"local\",domain=\"local/1\",direction=\"state_transfer\"}",
    );
    assert!(transfers >= 1.0, "no state transfer:\n{}", net.logs());
    // It holds the chain from the transferred block up, not the blocks it missed.
    assert!(
        domain_block_hash(net.nodes[6].api, "local-1", down_at + 1).is_none(),
        "device 6 holds a block it was down for"
    );

    // Edge, device 4 and device 6 are a quorum only with device 6's share.
    net.nodes[5].kill();
    let after = submit_to(&net, 4, "local/1", "after");
    assert!(
        wait_until(Duration::from_secs(60), || [0, 4, 6]
            .iter()
            .all(|&i| trace_committed(net.nodes[i].api, &after))),
        "device 6 did not vote again:\n{}",
        net.logs()
    );
    // One chain: device 6 holds every height from its base up, and each live member that
    // still holds a height (members prune anchored blocks) holds the same block there.
    let base = (1..=local(6))
        .find(|&h| domain_block_hash(net.nodes[6].api, "local-1", h).is_some())
        .expect("device 6 holds blocks");
    for h in base..=local(6) {
        let own = domain_block_hash(net.nodes[6].api, "local-1", h);
        assert!(own.is_some(), "device 6 has no block at {h}");
        for i in [0, 4] {
            let theirs = domain_block_hash(net.nodes[i].api, "local-1", h);
            assert!(
                theirs.is_none() || theirs == own,
                "height {h}: node {i} {theirs:?}, device 6 {own:?}"
            );
        }
    }
}
