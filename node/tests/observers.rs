//! Observers: a peer outside the genesis reads the domain's gossip only where `node.toml` lists
//! it in `network.observers`; every other node refuses it at connection, and what it
//! publishes is never accepted as a member's.

mod common;

use common::{Testnet, submit, trace_committed, wait_until};
use lcbft_node::metrics::Metrics;
use lcbft_node::net::wire::Gossip;
use lcbft_node::net::{self, NetEvent};
use lcbft_protocol::types::{DomainId, Tx};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn only_configured_observers_connect_and_read() {
    let mut net = Testnet::global(4);
    let key = Keypair::generate_ed25519();
    let observer = key.public().to_peer_id();
    // Nodes 0 and 1 admit the observer; nodes 2 and 3 do not.
    for node in &net.nodes[..2] {
        let path = node.dir.join("node.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        let text = text.replace(
            "mdns = false\n",
            &format!("mdns = false\nobservers = [\"{observer}\"]\n"),
        );
        std::fs::write(&path, text).expect("write config");
    }
    net.start_all();
    assert!(
        common::all_connected(&net, &[0, 1, 2, 3], 3),
        "{}",
        net.logs()
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let genesis = common::load_genesis(&net);
    let peers: Vec<Multiaddr> = net
        .nodes
        .iter()
        .map(|n| n.p2p.parse().expect("multiaddr"))
        .collect();
    let (handle, mut events, _task) = net::spawn(
        common::probe_config(
            key,
            genesis,
            vec![DomainId::Global],
            vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            peers,
        ),
        &mut Registry::default(),
        Metrics::default(),
    )
    .expect("observer network");
    let read = Arc::new(AtomicUsize::new(0));
    let counter = read.clone();
    rt.spawn(async move {
        while let Some(ev) = events.recv().await {
            if matches!(ev, NetEvent::Consensus { .. } | NetEvent::Payload { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let node = |i: usize| net.nodes[i].peer.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let c = rt.block_on(handle.status()).connected;
            c.contains(&node(0)) && c.contains(&node(1))
        }),
        "the admitting nodes did not keep the observer"
    );
    // It reads what the domain does.
    let mut ids = Vec::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            ids.push(submit(&net, 2, &format!("observed {}", ids.len())));
            std::thread::sleep(Duration::from_millis(500));
            read.load(Ordering::Relaxed) > 0
        }),
        "the observer read nothing:\n{}",
        net.logs()
    );
    // What it publishes is not a member's.
    let refused = wait_until(Duration::from_secs(30), || {
        handle.broadcast(
            DomainId::Global,
            &Gossip::Payload(vec![Tx::new(b"from an observer".to_vec())]),
        );
        common::metric(
            &net,
            0,
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"not_member\"}",
        ) + common::metric(
            &net,
            1,
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"not_member\"}",
        ) >= 1.0
    });
    assert!(refused, "the observer's gossip was not refused");
    // The nodes that do not list it refuse it, and count it.
    let c = rt.block_on(handle.status()).connected;
    assert!(
        !c.contains(&node(2)) && !c.contains(&node(3)),
        "connected to a node that does not admit it: {c:?}"
    );
    for i in [2, 3] {
        assert!(
            common::metric(
                &net,
                i,
                "lcbft_net_refused_connections_total{reason=\"not_member\"}"
            ) >= 1.0,
            "node {i} counted no refusal"
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), || ids
            .iter()
            .all(|id| trace_committed(net.nodes[3].api, id))),
        "the domain stalled"
    );
    handle.shutdown();
}
