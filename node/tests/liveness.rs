//! A member that goes silent with its connections still open (SIGSTOP: the kernel keeps the
//! TCP sessions, libp2p would not notice for 30 s or more) is disconnected within about the
//! liveness timeout, and redialled soon after it answers again (SIGCONT).

mod common;

use common::{Testnet, get, wait_until};
use std::time::{Duration, Instant};

fn connected(net: &Testnet, node: usize) -> Vec<String> {
    get(net.nodes[node].api, "/v1/status")
        .and_then(|(_, v)| {
            v["connected"].as_array().map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[test]
fn a_silent_member_is_dropped_and_redialled() {
    let mut net = Testnet::global(4);
    net.start_all();
    assert!(
        wait_until(Duration::from_secs(60), || (0..4).all(|i| connected(
            &net, i
        )
        .len()
            >= 3)),
        "not connected:\n{}",
        net.logs()
    );
    let frozen = net.nodes[3].peer.clone();
    net.nodes[3].signal("STOP");
    let start = Instant::now();
    // The test config's liveness timeout is 2 s, checked every 300 ms.
    let dropped = wait_until(Duration::from_secs(20), || {
        !connected(&net, 0).contains(&frozen)
    });
    let took = start.elapsed();
    net.nodes[3].signal("CONT");
    assert!(
        dropped,
        "the frozen member stayed connected:\n{}",
        net.logs()
    );
    assert!(
        took >= Duration::from_millis(1500),
        "dropped too early: {took:?}"
    );

    let back = wait_until(Duration::from_secs(60), || {
        connected(&net, 0).contains(&frozen)
    });
    assert!(back, "the member was not redialled:\n{}", net.logs());
    assert!(
        net.nodes[0].log().contains("silent"),
        "no liveness log line"
    );
}
