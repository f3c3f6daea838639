//! A member that makes the others check bad threshold shares (DESIGN §7: every expensive
//! check a peer can trigger has a price for that peer), against real node processes.
//!
//! Four global validators; node 0 never runs and its key is the liar. It sends the other
//! three, point to point and by gossip, as fast as it can, `NewView`s whose timeout share is
//! its real key share signed over another message: each decodes, and each costs a pairing check once the
//! liar is a suspect, again and again for the same share. A check that fails costs the liar
//! many requests' worth of its budget, so the honest nodes check only a few of its shares per
//! second; the requests refused then cost it penalty points, and deep in them it is cut off
//! (its connections closed and refused) until they decay; its redials are refused after the
//! handshake, and once its address has spent its handshake budget, before it. Measured while
//! it lasts: the checks each honest node made, the handshakes it paid for, its CPU and peak
//! RSS, and the blocks the three commit without the liar.

mod common;

use common::{Testnet, submit, wait_until};
use lcbft_node::net::HANDSHAKES;
use lcbft_node::net::wire::Gossip;
use lcbft_protocol::crypto::Share;
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{Certificate, DomainId, Hash, Kind, SignedMsg, Vote};
use libp2p::PeerId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const HONEST: [usize; 3] = [1, 2, 3];
const G: DomainId = DomainId::Global;
const VERIFY_SHARE: &str =
    "lcbft_crypto_operations_total{layer=\"global\",domain=\"global\",op=\"verify_share\"}";
const BAD_SHARE: &str = "lcbft_consensus_rejected_messages_total{layer=\"global\",domain=\"global\",reason=\"bad_share\"}";
const FLOOD: Duration = Duration::from_secs(20);

/// A `NewView` for `view` carrying `share` as the sender's timeout share.
fn new_view(view: u64, share: Share) -> Message {
    Message::NewView {
        timeout: Vote {
            msg: SignedMsg {
                domain: G,
                kind: Kind::Timeout,
                view,
                digest: Hash::ZERO,
            },
            share,
        },
        high_qc: Certificate::genesis(G),
        high_tc: None,
        vote: None,
    }
}

/// User plus system CPU seconds of a running node (100 clock ticks a second on Linux).
fn cpu_seconds(net: &Testnet, node: usize) -> f64 {
    net.nodes[node]
        .pid()
        .map_or(0.0, |pid| common::cpu_ticks(pid) as f64 / 100.0)
}

fn view(net: &Testnet, node: usize) -> u64 {
    common::get(net.nodes[node].api, "/v1/status")
        .and_then(|(_, v)| v["domains"][0]["view"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_member_sending_bad_shares_pays_for_each_check_while_the_others_commit() {
    let started = Instant::now();
    let mut net = Testnet::global(4);
    common::start_committing(&mut net, &HONEST);

    // For scale: the honest nodes' CPU over 5 s with a trace a second and no liar.
    let quiet_before: Vec<f64> = HONEST.iter().map(|&i| cpu_seconds(&net, i)).collect();
    let quiet_start = Instant::now();
    for k in 0..5 {
        submit(&net, 1 + k % 3, &format!("quiet {k}"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let quiet: Vec<f64> = HONEST
        .iter()
        .zip(&quiet_before)
        .map(|(&i, b)| (cpu_seconds(&net, i) - b) / quiet_start.elapsed().as_secs_f64())
        .collect();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let (_, keys) = common::member_keys(&net, 0, G);
    let honest_peers: Vec<PeerId> = HONEST
        .iter()
        .map(|&i| net.nodes[i].peer.parse().expect("peer"))
        .collect();
    let key = lcbft_node::identity::load(&net.nodes[0].dir.join("node.key")).expect("key");
    let (liar, _) = common::attacker(&net, &HONEST, key);
    assert!(
        wait_until(Duration::from_secs(20), || rt
            .block_on(liar.status())
            .connected
            .len()
            >= HONEST.len()),
        "the liar did not connect"
    );

    // The liar's share for `view`, signed over a message nobody asked for.
    let mut wrong: HashMap<u64, Share> = HashMap::new();
    let mut wrong_share = |v: u64| {
        wrong
            .entry(v)
            .or_insert_with(|| {
                let other = SignedMsg {
                    domain: G,
                    kind: Kind::Timeout,
                    view: v + 1000,
                    digest: Hash::ZERO,
                };
                keys.sign_share(&other.bytes()).expect("sign")
            })
            .clone()
    };
    let mut current = view(&net, 1);
    let mut last_view = Instant::now();
    let mut flood = |current: u64| {
        for v in current..current + 16 {
            let share = wrong_share(v);
            for p in &honest_peers {
                liar.send(G, *p, new_view(v, share.clone()));
            }
            liar.broadcast(G, &Gossip::Consensus(Box::new(new_view(v, share))));
        }
    };

    // Until an honest node has caught the liar once (in a view the absent node 0 leads, which
    // times out only while there are traces to commit): from then on it checks the liar's
    // shares as they arrive, which is what the flood makes it pay for.
    let mut k = 0;
    let caught = wait_until(Duration::from_secs(60), || {
        if last_view.elapsed() >= Duration::from_millis(500) {
            last_view = Instant::now();
            current = view(&net, 1);
            k += 1;
            submit(&net, 1 + k % 3, &format!("to catch the liar {k}"));
        }
        flood(current);
        std::thread::sleep(Duration::from_millis(5));
        HONEST
            .iter()
            .any(|&i| common::metric(&net, i, BAD_SHARE) >= 1.0)
    });
    assert!(
        caught,
        "no bad share was found:\n{}",
        common::metrics_text(&net, 1)
            .lines()
            .filter(|l| l.contains("rejected") || l.contains("view") || l.contains("crypto"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let checks_before: Vec<f64> = HONEST
        .iter()
        .map(|&i| common::metric(&net, i, VERIFY_SHARE))
        .collect();
    let cpu_before: Vec<f64> = HONEST.iter().map(|&i| cpu_seconds(&net, i)).collect();
    let height_before = common::committed_height(net.nodes[1].api).unwrap_or(0);
    let flood_start = Instant::now();
    let mut peak_rss = [0.0f64; 4];
    let mut cut_off = 0.0f64;
    let mut honest = Vec::new();
    let mut last_sample = Instant::now();
    let mut last_submit = Instant::now();
    let mut sent = 0u64;
    while flood_start.elapsed() < FLOOD {
        if last_view.elapsed() >= Duration::from_millis(500) {
            last_view = Instant::now();
            current = view(&net, 1);
        }
        flood(current);
        sent += 16;
        if last_sample.elapsed() >= Duration::from_millis(500) {
            last_sample = Instant::now();
            for i in HONEST {
                peak_rss[i] = peak_rss[i].max(common::rss_mib(&net, i));
                cut_off = cut_off.max(common::metric(&net, i, "lcbft_net_cut_off_peers"));
            }
        }
        if last_submit.elapsed() >= Duration::from_secs(1) {
            last_submit = Instant::now();
            let k = honest.len();
            honest.push((
                1 + k % 3,
                submit(&net, 1 + k % 3, &format!("meanwhile {k}")),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = flood_start.elapsed().as_secs_f64();
    let height_after = common::committed_height(net.nodes[1].api).unwrap_or(0);
    let checks: Vec<f64> = HONEST
        .iter()
        .zip(&checks_before)
        .map(|(&i, b)| common::metric(&net, i, VERIFY_SHARE) - b)
        .collect();
    let cpu: Vec<f64> = HONEST
        .iter()
        .zip(&cpu_before)
        .map(|(&i, b)| (cpu_seconds(&net, i) - b) / elapsed)
        .collect();
    eprintln!(
        "flood of {elapsed:.1} s: {sent} bad shares sent to each honest node point to point and as many \
         gossiped; shares checked \
         per node {checks:?}; CPU per node (cores) {cpu:.3?}, {quiet:.3?} without the liar; \
         refused reconnections {:?} after a handshake and {:?} before; peak RSS MiB {:?}; committed \
         {} blocks ({:.2}/s)",
        HONEST.map(|i| common::metric(
            &net,
            i,
            "lcbft_net_refused_connections_total{reason=\"cut_off\"}"
        )),
        HONEST.map(|i| common::metric(
            &net,
            i,
            "lcbft_net_refused_connections_total{reason=\"handshake_budget\"}"
        )),
        HONEST.map(|i| peak_rss[i].round()),
        height_after.saturating_sub(height_before),
        height_after.saturating_sub(height_before) as f64 / elapsed,
    );

    // The price: a failed check costs the liar 50 requests of its 200 a second (400 at
    // once), so each honest node checks at most about (400 + 200 s⁻¹ · 20 s) / 51 ≈ 86 of
    // its shares here, plus the honest shares of slots where the liar's share spoiled a
    // combine. Without it, it would check up to 200 a second: about 4,000.
    for (i, c) in HONEST.iter().zip(&checks) {
        assert!(
            *c < 400.0,
            "node {i} checked {c} shares in {elapsed:.0} s: the liar does not pay for its checks"
        );
    }
    for i in HONEST {
        let limited = common::metric(
            &net,
            i,
            "lcbft_net_rejected_messages_total{transport=\"direct\",reason=\"rate_limited\"}",
        );
        assert!(limited >= 1.0, "node {i} never refused the liar's requests");
        let refused = common::metric(
            &net,
            i,
            "lcbft_net_refused_connections_total{reason=\"cut_off\"}",
        );
        assert!(refused >= 1.0, "node {i} never cut the liar off");
        // Each refused reconnection cost a noise handshake, and the liar redials as fast as it
        // can (about 170 times a second per node): past a budget its address is refused before
        // the handshake. The budget bounds the handshakes; slack for the few honest failures.
        let budget = HANDSHAKES.burst + HANDSHAKES.per_second * started.elapsed().as_secs_f64();
        assert!(
            refused <= budget + 16.0,
            "node {i} made {refused} handshakes for the cut-off liar, over the budget {budget:.0}"
        );
        let gated = common::metric(
            &net,
            i,
            "lcbft_net_refused_connections_total{reason=\"handshake_budget\"}",
        );
        assert!(
            gated >= 1.0,
            "node {i} never refused the liar before a handshake"
        );
        let gossip = common::metric(
            &net,
            i,
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"replica\"}",
        );
        assert!(gossip >= 1.0, "node {i} never refused the liar's gossip");
    }
    assert!(cut_off >= 1.0, "no node reported the liar cut off");
    // The liar's gossip is relayed by honest members that had no reason to check its share
    // yet; refusing it must not cost them their score with the others, or the three stop
    // hearing one another and stall. Only the liar may be pruned from a mesh for its score,
    // and only the liar holds penalty points.
    for i in HONEST {
        let pruned = common::pruned_for_score(&net, i, G);
        assert!(
            pruned <= 1.0,
            "node {i} pruned {pruned} peers for their score"
        );
        let penalised = common::metric(&net, i, "lcbft_net_penalised_peers");
        assert!(
            penalised <= 1.0,
            "node {i} holds points against {penalised} peers"
        );
    }
    assert!(
        height_after > height_before,
        "the honest nodes stalled: {height_before} -> {height_after}"
    );
    assert!(
        common::all_committed(&net, &honest, Duration::from_secs(60)),
        "traces submitted during the flood did not commit:\n{}",
        net.logs()
    );
    // A debug build of an honest validator runs at 15-30 MiB.
    for i in HONEST {
        assert!(
            peak_rss[i] < 64.0,
            "node {i} peaked at {:.0} MiB",
            peak_rss[i]
        );
        assert!(
            !net.nodes[i].log().contains("panicked"),
            "node {i} panicked"
        );
    }
    liar.shutdown();
    eprintln!("test took {:?}", started.elapsed());
}
