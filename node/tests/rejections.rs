//! Peers that must not be listened to: a valid libp2p key outside the genesis (refused at
//! connection), and a member sending malformed, oversized, unrequested or wrongly signed
//! messages. All are dropped and counted; the network keeps committing meanwhile and
//! afterwards, and no node panics.

mod common;

use common::{Testnet, get, submit, trace_committed, wait_until};
use lcbft_node::metrics::Metrics;
use lcbft_node::net::wire::{Gossip, MAX_WIRE_BYTES};
use lcbft_node::net::{self, NetHandle};
use lcbft_protocol::codec::MAX_MESSAGE_BYTES;
use lcbft_protocol::crypto::Share;
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{Block, Certificate, DomainId, Hash, Kind, SignedMsg, Tx, Vote};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use std::time::{Duration, Instant};

/// An in-process peer on the global topic with `key`, dialing the testnet's nodes.
fn probe(net: &Testnet, key: Keypair, skip: usize) -> NetHandle {
    let genesis = common::load_genesis(net);
    let peers: Vec<Multiaddr> = net
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .map(|(_, n)| n.p2p.parse().expect("multiaddr"))
        .collect();
    let mut registry = Registry::default();
    let (handle, mut events, _task) = net::spawn(
        common::probe_config(
            key,
            genesis,
            vec![DomainId::Global],
            vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            peers,
        ),
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

    // 1. A valid key that is not in the genesis dials in to publish well-formed payload and
    //    send requests: it never gets a connection, and each refusal is counted.
    let outsider = probe(&net, Keypair::generate_ed25519(), usize::MAX);
    let node1: PeerId = net.nodes[1].peer.parse().expect("peer");
    let refused = wait_until(Duration::from_secs(60), || {
        outsider.broadcast(
            DomainId::Global,
            &Gossip::Payload(vec![Tx::new(b"spam".to_vec())]),
        );
        outsider.send(
            DomainId::Global,
            node1,
            Message::Certificate(Certificate::genesis(DomainId::Global)),
        );
        common::metric_sum(
            &common::metrics_text(&net, 1),
            "lcbft_net_refused_connections_total{reason=\"not_member\"}",
        ) >= 1.0
    });
    assert!(
        refused,
        "outsider connection not refused:\n{}",
        common::metrics_text(&net, 1)
    );
    outsider.shutdown();

    // 2. Node 0's own key (a member) sends garbage, an unrequested block, oversized messages
    //    (over the protocol's bound but within the wire's, and over the wire's) and a
    //    consensus message the replica refuses.
    let key = lcbft_node::identity::load(&net.nodes[0].dir.join("node.key")).expect("key");
    let member = probe(&net, key, 0);
    let over_protocol = vec![0u8; MAX_MESSAGE_BYTES + 1];
    let over_wire = vec![0u8; MAX_WIRE_BYTES + 1];
    // Every rejected gossip message lowers the member's gossipsub score, and a few graylist
    // it (its gossip is then ignored unread): so first wait until node 1 has its
    // subscription, then send one of each kind at once, the large one first.
    assert!(
        wait_until(Duration::from_secs(30), || common::rt()
            .block_on(member.status())
            .connected
            .contains(&node1.to_string())),
        "the member did not connect"
    );
    std::thread::sleep(Duration::from_secs(2));
    // Megabytes: once a second, not at every poll.
    let mut last_big: Option<Instant> = None;
    let counted = wait_until(Duration::from_secs(60), || {
        if last_big.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_big = Some(Instant::now());
            member.broadcast_raw(DomainId::Global, over_protocol.clone());
            member.broadcast_raw(DomainId::Global, b"\xff\xfe not cbor".to_vec());
            member.broadcast(
                DomainId::Global,
                &Gossip::Payload(vec![Tx::new(b"not a trace".to_vec())]),
            );
            // A timeout share must be of kind Timeout: the replica calls this malformed, and
            // the node reports its verdict to gossipsub.
            member.broadcast(
                DomainId::Global,
                &Gossip::Consensus(Box::new(new_view(Kind::Vote, 1, Share(vec![1; 96])))),
            );
            member.send_raw(DomainId::Global, node1, over_protocol.clone());
            member.send_raw(DomainId::Global, node1, over_wire.clone());
        }
        member.send(
            DomainId::Global,
            node1,
            Message::BlockResponse(vec![Block::genesis(DomainId::Global)]),
        );
        let text = common::metrics_text(&net, 1);
        let want = [
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"malformed\"}",
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"bad_trace\"}",
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"oversized\"}",
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"replica\"}",
            "lcbft_net_rejected_messages_total{transport=\"direct\",reason=\"oversized\"}",
            "lcbft_net_rejected_messages_total{transport=\"direct\",reason=\"unreadable\"}",
            "lcbft_consensus_rejected_messages_total{layer=\"global\",domain=\"global\",reason=\"unrequested\"}",
            "lcbft_consensus_rejected_messages_total{layer=\"global\",domain=\"global\",reason=\"malformed\"}",
        ];
        want.iter().all(|w| common::metric_sum(&text, w) >= 1.0)
    });
    assert!(
        counted,
        "malformed/oversized/unrequested not counted:\n{}",
        common::metrics_text(&net, 1)
    );

    // A timeout share of the member's real key share, signed over another message, for the
    // views ahead: nodes 1-3 meet it when they time out the views whose next leader (node 0)
    // does not answer, and must find it when the certificate does not combine. Meanwhile
    // they keep committing without node 0.
    let (_, keys) = common::member_keys(&net, 0, DomainId::Global);
    let peers: Vec<PeerId> = (1..4)
        .map(|i| net.nodes[i].peer.parse().expect("peer"))
        .collect();
    let mut ids = Vec::new();
    let mut last_round: Option<Instant> = None;
    let found = wait_until(Duration::from_secs(60), || {
        if last_round.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_round = Some(Instant::now());
            let view = get(net.nodes[1].api, "/v1/status")
                .and_then(|(_, v)| v["domains"][0]["view"].as_u64())
                .unwrap_or(0);
            for v in view..view + 16 {
                let other = SignedMsg {
                    domain: DomainId::Global,
                    kind: Kind::Timeout,
                    view: v + 1000,
                    digest: Hash::ZERO,
                };
                let wrong = keys.sign_share(&other.bytes()).expect("sign");
                for p in &peers {
                    member.send(
                        DomainId::Global,
                        *p,
                        new_view(Kind::Timeout, v, wrong.clone()),
                    );
                }
            }
            let i = ids.len();
            ids.push(submit(&net, 1 + i % 3, &format!("with-a-liar-{i}")));
        }
        (1..4).any(|i| {
            common::metric_sum(
                &common::metrics_text(&net, i),
                "lcbft_consensus_rejected_messages_total{layer=\"global\",domain=\"global\",reason=\"bad_share\"}",
            ) >= 1.0
        })
    });
    assert!(found, "the wrong share was not found:\n{}", net.logs());
    let ok = wait_until(Duration::from_secs(60), || {
        (1..4).all(|i| ids.iter().all(|id| trace_committed(net.nodes[i].api, id)))
    });
    assert!(ok, "stalled with a liar:\n{}", net.logs());
    member.shutdown();
    std::thread::sleep(Duration::from_millis(300));

    // 3. The real node 0 joins and the network commits.
    net.nodes[0].start();
    let id = submit(&net, 1, "after-the-noise");
    let ok = wait_until(Duration::from_secs(60), || {
        net.nodes.iter().all(|n| trace_committed(n.api, &id))
    });
    assert!(ok, "network stalled after rejections:\n{}", net.logs());
    // Nobody panicked: every node still answers.
    for (i, n) in net.nodes.iter().enumerate() {
        assert!(get(n.api, "/v1/status").is_some(), "node {i} not serving");
        assert!(
            !n.log().contains("panicked"),
            "node {i} panicked:\n{}",
            n.log()
        );
    }
}

/// A global NewView whose timeout share claims `kind` and `view` with `share`.
fn new_view(kind: Kind, view: u64, share: Share) -> Message {
    Message::NewView {
        timeout: Vote {
            msg: SignedMsg {
                domain: DomainId::Global,
                kind,
                view,
                digest: Hash::ZERO,
            },
            share,
        },
        high_qc: Certificate::genesis(DomainId::Global),
        high_tc: None,
        vote: None,
    }
}
