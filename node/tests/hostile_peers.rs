//! Hostile peers (DESIGN §7, "trust no peer"), against real node processes.
//!
//! The network: four global validators, node 0 also the edge of local domain 1 whose devices
//! are nodes 4-6. Node 0 never runs; its key is the Byzantine member.
//! (a) A stranger (a key outside the genesis) dials every honest node, subscribes to both
//!     topics and floods gossip and direct requests: every connection is refused and counted,
//!     and it reads nothing while the domain commits.
//! (b) Node 0's key floods block sync requests (point-to-point and by gossip), direct
//!     requests, and `Anchored` notices with bad proofs to its local domain: each kind is
//!     refused and counted by reason, the member ends up penalised and graylisted, honest
//!     memory stays bounded (RSS sampled throughout), and both domains keep committing.

mod common;

use common::{Testnet, domain_height, submit_to, trace_committed, wait_until};
use lcbft_node::net::wire::Gossip;
use lcbft_protocol::anchor::CommitProof;
use lcbft_protocol::message::Message;
use lcbft_protocol::proof::{AnchorProof, Inclusion};
use lcbft_protocol::types::{Block, Certificate, DomainId, Hash, Tx};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const G: DomainId = DomainId::Global;
const L1: DomainId = DomainId::Local(1);
const HONEST: [usize; 6] = [1, 2, 3, 4, 5, 6];
const GLOBAL: [usize; 3] = [1, 2, 3];
const DEVICES: [usize; 3] = [4, 5, 6];

fn total(net: &Testnet, nodes: &[usize], prefix: &str) -> f64 {
    nodes.iter().map(|&i| common::metric(net, i, prefix)).sum()
}

/// A notice whose proof fails: the anchor item is not in the block it names.
fn bad_notice(n: u64) -> Gossip {
    let mut block = Block::genesis(G);
    block.height = n;
    Gossip::Anchored(Box::new(AnchorProof {
        anchor: Inclusion {
            tx: Tx::new(n.to_be_bytes().to_vec()),
            path: Vec::new(),
            block: block.header(),
        },
        commit: CommitProof {
            above: Vec::new(),
            qc: Certificate::genesis(G),
        },
    }))
}

fn sync_request() -> Message {
    Message::BlockRequest {
        hash: Hash::ZERO,
        above: 0,
    }
}

#[test]
fn strangers_are_refused_and_a_flooding_member_is_limited_while_both_domains_commit() {
    let started = Instant::now();
    // Without offloading, the devices commit without their (absent) edge.
    let mut net = Testnet::build(4, &[(0, 3)], "offload = false");
    for i in HONEST {
        net.nodes[i].start();
    }
    assert!(common::all_connected(&net, &GLOBAL, 2), "{}", net.logs());
    assert!(common::all_connected(&net, &DEVICES, 2), "{}", net.logs());
    let first = [
        (
            1,
            "global",
            submit_to(&net, 1, "global", "before the attack"),
        ),
        (
            4,
            "local/1",
            submit_to(&net, 4, "local/1", "before the attack"),
        ),
    ];
    assert!(
        wait_until(Duration::from_secs(60), || first
            .iter()
            .all(|(i, _, id)| trace_committed(net.nodes[*i].api, id))),
        "the honest nodes do not commit:\n{}",
        net.logs()
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let honest_peers: Vec<PeerId> = HONEST
        .iter()
        .map(|&i| net.nodes[i].peer.parse().expect("peer"))
        .collect();

    // (a) The stranger: gossip and direct requests for 8 s while the domains commit.
    let stranger_key = Keypair::generate_ed25519();
    let (stranger, stranger_read) = common::attacker(&net, &HONEST, stranger_key.clone());
    let mut committed_meanwhile = Vec::new();
    let until = Instant::now() + Duration::from_secs(8);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        for d in [G, L1] {
            stranger.broadcast(d, &Gossip::Payload(vec![Tx::new(n.to_be_bytes().to_vec())]));
            stranger.broadcast(
                d,
                &Gossip::Consensus(Box::new(Message::Certificate(Certificate::genesis(d)))),
            );
        }
        for p in &honest_peers {
            stranger.send(G, *p, Message::Certificate(Certificate::genesis(G)));
            stranger.send(G, *p, sync_request());
        }
        if n % 40 == 1 {
            committed_meanwhile.push((1, submit_to(&net, 1, "global", &format!("read? {n}"))));
            committed_meanwhile.push((4, submit_to(&net, 4, "local/1", &format!("read? {n}"))));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        common::all_committed(&net, &committed_meanwhile, Duration::from_secs(30)),
        "the domains did not commit while the stranger knocked:\n{}",
        net.logs()
    );
    assert_eq!(
        stranger_read.load(Ordering::Relaxed),
        0,
        "the stranger read gossip or requests"
    );
    // The stranger's own view may briefly list a peer while a redial's handshake completes
    // and before the peer closes it; what counts is that no honest node keeps it.
    let stranger_id = PeerId::from(stranger_key.public()).to_string();
    for _ in 0..10 {
        for i in HONEST {
            let connected = common::get(net.nodes[i].api, "/v1/status")
                .map(|(_, v)| v["connected"].clone())
                .unwrap_or_default();
            assert!(
                !connected
                    .as_array()
                    .is_some_and(|c| c.iter().any(|p| p.as_str() == Some(&stranger_id))),
                "node {i} keeps the stranger connected: {connected}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in HONEST {
        let refused = common::metric(
            &net,
            i,
            "lcbft_net_refused_connections_total{reason=\"not_member\"}",
        );
        assert!(refused >= 1.0, "node {i} counted no refused stranger");
    }
    stranger.shutdown();

    // (b) The member (node 0's key): 30 s of floods.
    let key = lcbft_node::identity::load(&net.nodes[0].dir.join("node.key")).expect("key");
    let (member, _) = common::attacker(&net, &HONEST, key);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = rt.block_on(member.status());
            s.connected.len() >= HONEST.len()
        }),
        "the member did not connect"
    );
    let heights = |net: &Testnet| {
        (
            domain_height(net.nodes[1].api, "global").unwrap_or(0),
            domain_height(net.nodes[4].api, "local/1").unwrap_or(0),
        )
    };
    let before = heights(&net);
    let attack_start = Instant::now();
    let mut peak_rss = vec![0.0f64; net.nodes.len()];
    let mut graylisted = 0.0f64;
    let mut honest = Vec::new();
    let mut last_sample = Instant::now();
    let mut last_submit = Instant::now();
    let mut n = 0u64;
    let mut sent = [0u64; 4];
    while attack_start.elapsed() < Duration::from_secs(30) {
        n += 1;
        for p in &honest_peers {
            let domain = if *p == honest_peers[3] || *p == honest_peers[4] || *p == honest_peers[5]
            {
                L1
            } else {
                G
            };
            for _ in 0..4 {
                member.send(domain, *p, sync_request());
                member.send(
                    domain,
                    *p,
                    Message::Certificate(Certificate::genesis(domain)),
                );
            }
            sent[0] += 4;
            sent[1] += 4;
        }
        // Sync requests by gossip, and notices whose proofs fail.
        member.broadcast_raw(G, Gossip::Consensus(Box::new(sync_request())).encode());
        // A burst of notices at the start, before the first refusals graylist the member
        // (after which none is read at all): those past the edge's budget are not verified.
        let notices = if matches!(n, 1 | 20 | 100) { 20 } else { 1 };
        for k in 0..notices {
            member.broadcast(L1, &bad_notice(n * 100 + k));
        }
        sent[2] += 1;
        sent[3] += notices;
        if last_sample.elapsed() >= Duration::from_millis(500) {
            last_sample = Instant::now();
            for i in HONEST {
                peak_rss[i] = peak_rss[i].max(common::rss_mib(&net, i));
            }
            graylisted = graylisted.max(total(&net, &HONEST, "lcbft_net_graylisted_peers"));
        }
        if last_submit.elapsed() >= Duration::from_secs(2) {
            last_submit = Instant::now();
            let k = honest.len();
            honest.push((
                1 + k % 3,
                submit_to(&net, 1 + k % 3, "global", &format!("g {k}")),
            ));
            honest.push((
                4 + k % 3,
                submit_to(&net, 4 + k % 3, "local/1", &format!("l {k}")),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let attack = attack_start.elapsed();
    let after = heights(&net);
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / attack.as_secs_f64();
    eprintln!(
        "attack of {attack:?}: sent per honest node {} sync + {} other direct requests, {} \
         gossiped sync requests and {} bad notices in all; commits during the attack: global \
         {} blocks ({:.2}/s), local/1 {} blocks ({:.2}/s); peak RSS MiB {:?}",
        sent[0] / honest_peers.len() as u64,
        sent[1] / honest_peers.len() as u64,
        sent[2],
        sent[3],
        after.0 - before.0,
        rate(before.0, after.0),
        after.1 - before.1,
        rate(before.1, after.1),
        HONEST.map(|i| (i, peak_rss[i].round())),
    );

    // Both domains kept committing during the attack.
    assert!(
        after.0 > before.0,
        "global stalled: {before:?} -> {after:?}"
    );
    assert!(
        after.1 > before.1,
        "local/1 stalled: {before:?} -> {after:?}"
    );
    assert!(
        common::all_committed(&net, &honest, Duration::from_secs(60)),
        "honest traces did not commit:\n{}",
        net.logs()
    );
    // Each attack was refused and counted by reason.
    let counted = |nodes: &[usize], transport: &str, reason: &str| {
        total(
            &net,
            nodes,
            &format!(
                "lcbft_net_rejected_messages_total{{transport=\"{transport}\",reason=\"{reason}\"}}"
            ),
        )
    };
    for (nodes, transport, reason) in [
        (&HONEST[..], "direct", "sync_rate_limited"),
        (&HONEST[..], "direct", "rate_limited"),
        (&GLOBAL[..], "gossip", "sync_by_gossip"),
        (&DEVICES[..], "gossip", "bad_anchor_notice"),
        (&DEVICES[..], "gossip", "notice_rate_limited"),
    ] {
        let c = counted(nodes, transport, reason);
        eprintln!("refused {transport}/{reason}: {c}");
        assert!(c >= 1.0, "nothing counted as {transport}/{reason}");
    }
    assert!(
        total(&net, &HONEST, "lcbft_net_penalised_peers") >= 1.0
            || total(&net, &HONEST, "lcbft_net_graylisted_peers") >= 1.0
            || graylisted >= 1.0,
        "the member was not penalised"
    );
    assert!(graylisted >= 1.0, "the member was never graylisted");
    // Bounded memory: a debug build of an honest node runs at 15-30 MiB.
    for i in HONEST {
        assert!(
            peak_rss[i] < 64.0,
            "node {i} peaked at {:.0} MiB",
            peak_rss[i]
        );
    }
    for i in HONEST {
        assert!(
            !net.nodes[i].log().contains("panicked"),
            "node {i} panicked"
        );
    }
    member.shutdown();
    eprintln!("test took {:?}", started.elapsed());
}
