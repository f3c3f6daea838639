//! Proposals by id (`Gossip::Proposal`), against real node processes: honest leaders' proposals
//! are completed from the members' pools, and a Byzantine member announcing blocks whose items
//! nobody holds costs the honest nodes one small request each, bounded memory, and no commits.
//!
//! The network: four global validators; node 0 never runs, its key is the Byzantine member.

mod common;

use common::{Testnet, domain_height, submit_to, wait_until};
use lcbft_node::net::wire::{Compact, Gossip};
use lcbft_protocol::message::Proposal;
use lcbft_protocol::types::{Block, Certificate, DomainId, Hash};
use std::time::{Duration, Instant};

const G: DomainId = DomainId::Global;
const HONEST: [usize; 3] = [1, 2, 3];

/// A proposal by `proposer` for a block of `items` ids that no pool holds.
fn phantom(proposer: u16, n: u64, items: usize) -> Gossip {
    let mut block = Block::genesis(G);
    block.height = n;
    block.view = n;
    block.proposer = proposer;
    block.justify = Certificate::genesis(G);
    let ids = (0..items)
        .map(|k| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&n.to_be_bytes());
            h[8..16].copy_from_slice(&(k as u64).to_be_bytes());
            Hash(h)
        })
        .collect();
    Gossip::Proposal(Box::new(Compact {
        proposal: Proposal {
            block,
            timeout: None,
            term: None,
        },
        ids,
    }))
}

#[test]
fn proposals_travel_by_id_and_phantom_items_cost_a_member_nothing_but_its_requests() {
    let mut net = Testnet::global(4);
    common::start_committing(&mut net, &HONEST);
    let whole = |net: &Testnet| {
        HONEST.map(|i| {
            common::metric(
                net,
                i,
                "lcbft_net_compact_proposals_total{outcome=\"whole\"}",
            )
        })
    };
    let whole_before = whole(&net);
    assert!(
        whole_before.iter().filter(|w| **w >= 1.0).count() >= 2,
        "members did not complete honest proposals from their pools: {whole_before:?}\n{}",
        HONEST
            .map(|i| common::metrics_text(&net, i)
                .lines()
                .filter(|l| l.contains("propos") && !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"))
            .join("\n---\n")
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let key = lcbft_node::identity::load(&net.nodes[0].dir.join("node.key")).expect("key");
    let (member, asked) = common::attacker(&net, &HONEST, key);
    assert!(
        wait_until(Duration::from_secs(20), || {
            rt.block_on(member.status()).connected.len() >= HONEST.len()
        }),
        "the member did not connect"
    );

    // 15 s of phantom proposals, 50 per second, each naming 2,000 items nobody holds.
    let before = domain_height(net.nodes[1].api, "global").unwrap_or(0);
    let start = Instant::now();
    let mut peak_rss = [0.0f64; 4];
    let mut honest = Vec::new();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(15) {
        n += 1;
        member.broadcast(G, &phantom(0, 1_000 + n, 2_000));
        if n.is_multiple_of(25) {
            for i in HONEST {
                peak_rss[i] = peak_rss[i].max(common::rss_mib(&net, i));
            }
            let k = honest.len();
            let node = 1 + k % 3;
            honest.push((
                node,
                submit_to(&net, node, "global", &format!("during {k}")),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let attack = start.elapsed();
    let after = domain_height(net.nodes[1].api, "global").unwrap_or(0);
    let fetches = HONEST.map(|i| {
        common::metric(
            &net,
            i,
            "lcbft_net_compact_proposals_total{outcome=\"fetch\"}",
        )
    });
    eprintln!(
        "{n} phantom proposals in {attack:?}; honest fetches {fetches:?}, requests the member \
         read {}; global {before} -> {after}; peak RSS MiB {:?}",
        asked.load(std::sync::atomic::Ordering::Relaxed),
        peak_rss.map(f64::round),
    );
    assert!(
        fetches.iter().all(|f| *f >= 1.0),
        "phantom proposals were not read: {fetches:?}"
    );
    assert!(after > before, "global stalled: {before} -> {after}");
    assert!(
        common::all_committed(&net, &honest, Duration::from_secs(60)),
        "honest traces did not commit during the attack:\n{}",
        net.logs()
    );
    let whole_after = whole(&net);
    assert!(
        (0..3).any(|k| whole_after[k] > whole_before[k]),
        "honest proposals stopped being completed from pools: {whole_before:?} -> {whole_after:?}"
    );
    for i in HONEST {
        assert!(peak_rss[i] < 64.0, "node {i} grew to {} MiB", peak_rss[i]);
    }

    // Announcing someone else's block is refused at the network layer.
    member.broadcast(G, &phantom(1, 9_999, 1));
    assert!(
        wait_until(Duration::from_secs(10), || HONEST.iter().all(|&i| {
            common::metric(
                &net,
                i,
                "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"bad_proposal\"}",
            ) >= 1.0
        })),
        "a proposal announced by another member than its proposer was not refused"
    );
    member.shutdown();
    common::assert_no_fork(&net, &HONEST);
}
