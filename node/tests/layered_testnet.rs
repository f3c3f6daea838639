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
