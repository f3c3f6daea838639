//! Kademlia discovery: every node is configured with node 0's address only (node 0 with
//! none), yet all global members find and connect to each other and commit.

mod common;

use common::{Testnet, submit, trace_committed, wait_until};
use std::time::Duration;

#[test]
fn members_find_each_other_from_one_bootstrap_address() {
    let mut net = Testnet::global(4);
    let bootstrap = net.nodes[0].p2p.clone();
    for (i, node) in net.nodes.iter().enumerate() {
        let path = node.dir.join("node.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        let peers = if i == 0 {
            "peers = []".to_owned()
        } else {
            format!("peers = [\"{bootstrap}\"]")
        };
        let text: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("peers = ") {
                    peers.clone()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&path, text.join("\n")).expect("write config");
    }
    net.start_all();
    let meshed = common::all_connected(&net, &(0..net.nodes.len()).collect::<Vec<_>>(), 3);
    assert!(meshed, "members did not find each other:\n{}", net.logs());
    let id = submit(&net, 3, "found-you");
    let ok = wait_until(Duration::from_secs(60), || {
        net.nodes.iter().all(|n| trace_committed(n.api, &id))
    });
    assert!(ok, "not committed:\n{}", net.logs());
}
