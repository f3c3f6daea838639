//! A Byzantine member of the global domain — node 0's key and key share, run in this process
//! by a real replica whose pool skips the admission rule — gossips traces the rule refuses
//! (oversized, non-canonical, wrong-domain, badly signed, already committed) and, whenever it
//! leads, proposes blocks holding one of each. None commits; the honest nodes count every
//! refusal by reason, keep committing, and their memory stays bounded.

mod common;

use common::{Testnet, get, submit, trace_committed, wait_until};
use lcbft_node::metrics::Metrics;
use lcbft_node::net::wire::Gossip;
use lcbft_node::net::{self, NetEvent, NetHandle};
use lcbft_node::trace::{Action, SignedTrace, Trace};
use lcbft_protocol::io::{Input, Output, Timer};
use lcbft_protocol::replica::Replica;
use lcbft_protocol::types::{DomainId, Tx};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const G: DomainId = DomainId::Global;

fn trace(key: &Keypair, domain: DomainId, n: u64, body: usize) -> Trace {
    let producer = key
        .clone()
        .try_into_ed25519()
        .expect("ed25519")
        .public()
        .to_bytes();
    Trace {
        producer,
        timestamp_ms: 1_700_000_000_000 + n,
        domain,
        action: Action::Generated,
        application: "hostile".into(),
        digest: *blake3::hash(&n.to_be_bytes()).as_bytes(),
        body: Some(vec![7; body]),
        parents: Vec::new(),
    }
}

/// One item of each kind the admission rule refuses; `committed` is a trace already in the
/// chain. Fresh ones for each `round`.
fn refused_items(key: &Keypair, round: u64, committed: &Tx) -> Vec<Tx> {
    let n = round * 10;
    let signed = |t: Trace| t.sign(key).expect("sign").to_tx();
    // Over the node's 64 KiB body limit, but within a block.
    let oversized = signed(trace(key, G, n, 100_000));
    // Map entries in another order: the same fields, but not the canonical bytes.
    let good = signed(trace(key, G, n + 1, 16));
    let value: cbor4ii::core::Value =
        lcbft_protocol::codec::decode(good.bytes(), 1 << 20).expect("value");
    let cbor4ii::core::Value::Map(mut entries) = value else {
        panic!("a signed trace is a map");
    };
    entries.reverse();
    let non_canonical = Tx::new(lcbft_protocol::codec::encode(&cbor4ii::core::Value::Map(
        entries,
    )));
    let wrong_domain = signed(trace(key, DomainId::Local(7), n + 2, 16));
    let mut forged = trace(key, G, n + 3, 16).sign(key).expect("sign");
    forged.trace.application = "forged".into();
    vec![
        oversized,
        non_canonical,
        wrong_domain,
        forged.to_tx(),
        committed.clone(),
    ]
}

/// A network peer with `key`, dialing the testnet's other nodes.
fn peer(net: &Testnet, key: Keypair) -> (NetHandle, mpsc::Receiver<NetEvent>) {
    let genesis = common::load_genesis(net);
    let peers: Vec<Multiaddr> = net.nodes[1..]
        .iter()
        .map(|n| n.p2p.parse().expect("multiaddr"))
        .collect();
    let (handle, events, _task) = net::spawn(
        common::probe_config(
            key,
            genesis,
            vec![G],
            vec![
                net.nodes[0]
                    .p2p
                    .rsplit_once("/p2p/")
                    .expect("addr")
                    .0
                    .parse()
                    .expect("addr"),
            ],
            peers,
        ),
        &mut Registry::default(),
        Metrics::default(),
    )
    .expect("peer network");
    (handle, events)
}

/// Node 0's replica, honest in its votes, fed refused items as its own payload: as leader it
/// proposes them. Persists are taken as durable at once (it has no disk to protect).
async fn byzantine_leader(
    net_handle: NetHandle,
    mut events: mpsc::Receiver<NetEvent>,
    mut replica: Replica,
    peers: Vec<PeerId>,
    mut feed: mpsc::UnboundedReceiver<Vec<Tx>>,
) {
    let mut timers: Vec<(Timer, tokio::time::Instant)> = Vec::new();
    let mut inputs = vec![Input::Start];
    loop {
        while let Some(input) = inputs.pop() {
            for out in replica.handle(input) {
                match out {
                    Output::Send { to, msg } => {
                        net_handle.send(G, peers[usize::from(to)], msg);
                    }
                    Output::Broadcast(msg) => {
                        net_handle.broadcast(G, &Gossip::Consensus(Box::new(msg)));
                    }
                    Output::SetTimer { timer, after_ms } => {
                        timers.retain(|(t, _)| {
                            std::mem::discriminant(t) != std::mem::discriminant(&timer)
                        });
                        let at = tokio::time::Instant::now() + Duration::from_millis(after_ms);
                        timers.push((timer, at));
                    }
                    Output::Persist { seq, .. } => inputs.push(Input::Persisted(seq)),
                    Output::Commit { .. } | Output::Event(_) => {}
                }
            }
        }
        let next = timers.iter().map(|(_, at)| *at).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.recv() => match ev {
                Some(NetEvent::Consensus { from, msg, gossip, .. }) => {
                    if let Some(g) = gossip {
                        net_handle.validate(g, true);
                    }
                    inputs.push(Input::Message { from, msg: *msg });
                }
                Some(_) => {}
                None => return,
            },
            txs = feed.recv() => match txs {
                Some(txs) => inputs.push(Input::Payload(txs)),
                None => return,
            },
            _ = sleep => {
                let now = tokio::time::Instant::now();
                let (due, rest): (Vec<_>, Vec<_>) = timers.drain(..).partition(|(_, at)| *at <= now);
                timers = rest;
                inputs.extend(due.into_iter().map(|(t, _)| Input::Timeout(t)));
            }
        }
    }
}

#[test]
fn a_byzantine_member_cannot_get_refused_traces_committed_nor_fill_memory() {
    let mut net = Testnet::global(4);
    for i in 1..4 {
        net.nodes[i].start();
    }
    assert!(common::all_connected(&net, &[1, 2, 3], 2), "{}", net.logs());
    // A trace committed by the honest three: the replay to come.
    let first = submit(&net, 1, "committed before the attack");
    assert!(
        wait_until(Duration::from_secs(90), || trace_committed(
            net.nodes[1].api,
            &first
        )),
        "the honest nodes do not commit:\n{}",
        net.logs()
    );
    let (_, v) = get(net.nodes[1].api, &format!("/v1/traces/{first}")).expect("trace");
    let committed_json: lcbft_node::trace::SignedTraceJson =
        serde_json::from_value(v["trace"].clone()).expect("trace json");
    let committed = SignedTrace::from_json(&committed_json, 1 << 20)
        .expect("verifies")
        .to_tx();
    assert_eq!(committed.id().to_hex(), first);

    let rss_before: Vec<f64> = (1..4).map(|i| common::rss_mib(&net, i)).collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let key = lcbft_node::identity::load(&net.nodes[0].dir.join("node.key")).expect("key");
    let genesis = common::load_genesis(&net);
    let (index, keys) = common::member_keys(&net, 0, G);
    let peers: Vec<PeerId> = genesis
        .domain(G)
        .expect("global")
        .members
        .iter()
        .map(|m| m.peer_id)
        .collect();
    // An attacker does not pace itself.
    let mut cfg = lcbft_protocol::Config::new(G, index, peers.len()).unpaced();
    cfg.base_timeout_ms = 500;
    cfg.max_timeout_ms = 4000;
    let replica = Replica::new(cfg, keys);
    let (handle, events) = peer(&net, key);
    let (feed, feed_rx) = mpsc::unbounded_channel();
    rt.spawn(byzantine_leader(
        handle.clone(),
        events,
        replica,
        peers,
        feed_rx,
    ));

    // The attack: a minute of refused items, gossiped in batches and proposed as leader,
    // with megabyte-sized traces the way the earlier memory attack sent them.
    let producer = Keypair::generate_ed25519();
    let mut bad_ids = Vec::new();
    let mut honest = Vec::new();
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(40) {
        round += 1;
        let items = refused_items(&producer, round, &committed);
        bad_ids.extend(items[..4].iter().map(|tx| tx.id().to_hex()));
        feed.send(items.clone()).expect("feed");
        handle.broadcast(G, &Gossip::Payload(items));
        // Traces of 1 MB: a few per round.
        let big: Vec<Tx> = (0..3)
            .map(|k| {
                trace(&producer, G, 1_000_000 + round * 10 + k, 1 << 20)
                    .sign(&producer)
                    .expect("sign")
                    .to_tx()
            })
            .collect();
        handle.broadcast(G, &Gossip::Payload(big));
        if round % 5 == 0 {
            honest.push((
                1 + round as usize % 3,
                submit(&net, 1 + round as usize % 3, &format!("honest {round}")),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // The domain kept committing honest traces meanwhile.
    assert!(
        common::all_committed(&net, &honest, Duration::from_secs(60)),
        "honest traces did not commit during the attack:\n{}",
        net.logs()
    );
    // None of the refused items is committed, at any honest node.
    for id in &bad_ids {
        for i in 1..4 {
            assert!(
                !trace_committed(net.nodes[i].api, id),
                "node {i} committed {id}"
            );
        }
    }
    // Every refusal is counted by reason; the leader's blocks were refused as bad payload.
    for reason in [
        "oversized",
        "non_canonical",
        "wrong_domain",
        "bad_signature",
        "committed",
    ] {
        let counted: f64 = (1..4)
            .map(|i| {
                common::metric(
                    &net,
                    i,
                    &format!("lcbft_traces_refused_total{{reason=\"{reason}\"}}"),
                )
            })
            .sum();
        assert!(counted >= 1.0, "no refusal counted as {reason}");
    }
    // Its proposals were refused for their payload, unless its gossip had already put it
    // below gossipsub's graylist bound, where nothing it publishes is read at all.
    let bad_blocks: f64 = (1..4)
        .map(|i| common::metric(&net, i, "lcbft_consensus_rejected_messages_total{layer=\"global\",domain=\"global\",reason=\"bad_payload\"}"))
        .sum();
    let graylisted: f64 = (1..4)
        .map(|i| common::metric(&net, i, "lcbft_net_graylisted_peers"))
        .sum();
    assert!(
        bad_blocks >= 1.0 || graylisted >= 1.0,
        "no proposal refused for its payload, and the member is not graylisted"
    );
    // Refusing the member's gossip and blocks must not cost the honest members that relayed
    // some of it their score with the others: only the member may be pruned for its score.
    for i in 1..4 {
        let pruned = common::pruned_for_score(&net, i, G);
        assert!(
            pruned <= 1.0,
            "node {i} pruned {pruned} peers for their score"
        );
    }
    let rss_after: Vec<f64> = (1..4).map(|i| common::rss_mib(&net, i)).collect();
    eprintln!("honest RSS before {rss_before:?} MiB, after {rss_after:?} MiB");
    for (i, rss) in rss_after.iter().enumerate() {
        assert!(*rss < 64.0, "node {} grew to {rss:.0} MiB", i + 1);
    }
    handle.shutdown();
}
