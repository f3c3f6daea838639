//! Peers that must not be listened to: a valid libp2p key outside the genesis, and a member
//! sending malformed or unrequested messages. Both are dropped and counted; the network keeps
//! committing afterwards.

mod common;

use common::{Testnet, get, submit, trace_committed, wait_until};
use lcbft_node::genesis;
use lcbft_node::metrics::Metrics;
use lcbft_node::net::wire::Gossip;
use lcbft_node::net::{self, NetConfig, NetHandle};
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{Block, Certificate, DomainId, Tx};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

fn metrics_text(net: &Testnet, node: usize) -> String {
    common::rt().block_on(async {
        lcbft_node::http_client::request(net.nodes[node].api, "GET", "/metrics", None)
            .await
            .map(|r| r.body)
            .unwrap_or_default()
    })
}

/// A counter's value from Prometheus text, by a substring of its labelled name.
fn counter(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An in-process peer on the global topic with `key`, dialing the testnet's nodes.
fn probe(net: &Testnet, key: Keypair, skip: usize) -> NetHandle {
    let genesis =
        genesis::load(&net.root.path().join("net").join("genesis.toml")).expect("genesis");
    let peers: Vec<Multiaddr> = net
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .map(|(_, n)| n.p2p.parse().expect("multiaddr"))
        .collect();
    let mut registry = Registry::default();
    let (handle, mut events, _task) = net::spawn(
        NetConfig {
            keypair: key,
            genesis: Arc::new(genesis),
            domains: vec![DomainId::Global],
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            peers,
            mdns: false,
            liveness_timeout: Duration::from_secs(2),
            redial_interval: Duration::from_millis(200),
            idle_connection_timeout: Duration::from_secs(30),
        },
        &mut registry,
        Metrics::default(),
    )
    .expect("probe network");
    // Drain what the nodes send us.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    handle
}

#[test]
fn outsiders_and_malformed_messages_are_dropped_and_counted() {
    let mut net = Testnet::global(4);
    for i in 1..4 {
        net.nodes[i].start();
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();

    // 1. A valid key that is not in the genesis publishes well-formed payload.
    let outsider = probe(&net, Keypair::generate_ed25519(), usize::MAX);
    let rejected = wait_until(Duration::from_secs(20), || {
        outsider.broadcast(
            DomainId::Global,
            &Gossip::Payload(vec![Tx(b"spam".to_vec())]),
        );
        counter(
            &metrics_text(&net, 1),
            "lcbft_gossip_rejected_total{reason=\"not_member\"}",
        ) >= 1.0
    });
    assert!(
        rejected,
        "outsider gossip not counted:\n{}",
        metrics_text(&net, 1)
    );
    // Its point-to-point messages are refused too.
    let node1: PeerId = net.nodes[1].peer.parse().expect("peer");
    let refused = wait_until(Duration::from_secs(10), || {
        outsider.send(
            DomainId::Global,
            node1,
            Message::Certificate(Certificate::genesis(DomainId::Global)),
        );
        counter(
            &metrics_text(&net, 1),
            "lcbft_direct_rejected_total{reason=\"not_member\"}",
        ) >= 1.0
    });
    assert!(refused, "outsider request not counted");
    outsider.shutdown();

    // 2. Node 0's own key (a member) sends garbage and an unrequested block.
    let key = lcbft_node::identity::load(&net.nodes[0].dir.join("node.key")).expect("key");
    let member = probe(&net, key, 0);
    let counted = wait_until(Duration::from_secs(20), || {
        member.broadcast_raw(DomainId::Global, b"\xff\xfe not cbor".to_vec());
        member.broadcast(
            DomainId::Global,
            &Gossip::Payload(vec![Tx(b"not a trace".to_vec())]),
        );
        member.send(
            DomainId::Global,
            node1,
            Message::BlockResponse(vec![Block::genesis(DomainId::Global)]),
        );
        let text = metrics_text(&net, 1);
        counter(&text, "lcbft_gossip_rejected_total{reason=\"malformed\"}") >= 1.0
            && counter(&text, "lcbft_gossip_rejected_total{reason=\"bad_trace\"}") >= 1.0
            && counter(
                &text,
                "lcbft_protocol_events_total{domain=\"global\",event=\"rejected_unrequested\"}",
            ) >= 1.0
    });
    assert!(
        counted,
        "malformed/unrequested not counted:\n{}",
        metrics_text(&net, 1)
    );
    member.shutdown();
    std::thread::sleep(Duration::from_millis(300));

    // 3. The real node 0 joins and the network commits.
    net.nodes[0].start();
    let id = submit(&net, 1, "after-the-noise");
    let ok = wait_until(Duration::from_secs(60), || {
        net.nodes.iter().all(|n| trace_committed(n.api, &id))
    });
    assert!(ok, "network stalled after rejections:\n{}", net.logs());
    assert!(
        get(net.nodes[1].api, "/v1/status").is_some(),
        "node 1 still serving"
    );
}
