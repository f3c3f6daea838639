//! Anchors and proofs end to end on in-memory clusters of real replicas: a local domain commits
//! blocks, its anchors go through a global domain, and the proofs built from both verify.

use super::*;
use crate::Config;
use crate::crypto::{
    Counting, CryptoCounters, CryptoOp, Dealer, DealtKeys, SimScheme, ThresholdCryptoScheme,
    load_keys,
};
use crate::io::{Event, Input, Output, Reject, Timer};
use crate::proof::{AnchorProof, Finality, Inclusion, TraceProof};
use crate::replica::Replica;
use crate::types::ReplicaIndex;
use std::collections::VecDeque;
use std::sync::Arc;

const N: usize = 4;
const LOCAL: DomainId = DomainId::Local(1);

fn deal(seed: u8) -> DealtKeys {
    SimScheme::deal(N, N - 1, [seed; 32])
}

fn public(dealt: &DealtKeys) -> Box<dyn ThresholdKeys> {
    load_keys(dealt.scheme, N, &dealt.public, None).unwrap()
}

/// Happy-path delivery between real replicas, recording commits and events. Pacing timers
/// fire once the cluster is quiet, as they would after their delay; no other timer fires.
struct Cluster {
    replicas: Vec<Replica>,
    queue: VecDeque<(usize, Input)>,
    pacing: Vec<(usize, Timer)>,
    commits: Vec<Vec<(Block, CommitProof)>>,
    events: Vec<Vec<Event>>,
    /// Cut off: nothing is delivered to or from it.
    down: Vec<bool>,
}

impl Cluster {
    fn new(domain: DomainId, dealt: &DealtKeys) -> Cluster {
        Cluster::with_config(domain, dealt, |c| c)
    }

    fn with_config(domain: DomainId, dealt: &DealtKeys, cfg: impl Fn(Config) -> Config) -> Cluster {
        let replicas = (0..N)
            .map(|i| {
                let me = i as ReplicaIndex;
                let keys = load_keys(dealt.scheme, N, &dealt.public, dealt.secrets.get(i));
                Replica::new(cfg(Config::new(domain, me, N)), keys.unwrap())
            })
            .collect();
        Cluster {
            replicas,
            queue: VecDeque::new(),
            pacing: Vec::new(),
            commits: vec![Vec::new(); N],
            events: vec![Vec::new(); N],
            down: vec![false; N],
        }
    }

    fn with_anchor_rules(mut self, local: &DealtKeys) -> Cluster {
        for r in &mut self.replicas {
            if let Replica::Global(g) = r {
                g.set_anchor_rules(
                    AnchorRules::new(KeyRing::from([(LOCAL, public(local))])),
                    Tips::new(),
                );
            }
        }
        self
    }

    fn submit_to(&mut self, to: &[usize], txs: Vec<Tx>) {
        for &i in to {
            self.queue.push_back((i, Input::Payload(txs.clone())));
        }
    }

    fn run(&mut self) {
        for _ in 0..200_000 {
            if self.queue.is_empty() {
                self.queue
                    .extend(self.pacing.drain(..).map(|(i, t)| (i, Input::Timeout(t))));
            }
            let Some((i, input)) = self.queue.pop_front() else {
                return;
            };
            let sender = match &input {
                Input::Message { from, .. } => usize::from(*from),
                _ => i,
            };
            if self.down[i] || self.down[sender] {
                continue;
            }
            let from = i as ReplicaIndex;
            for out in self.replicas[i].handle(input) {
                match out {
                    Output::Send { to, msg } => self
                        .queue
                        .push_back((usize::from(to), Input::Message { from, msg })),
                    Output::Broadcast(msg) => {
                        for j in (0..N).filter(|&j| j != i) {
                            let msg = msg.clone();
                            self.queue.push_back((j, Input::Message { from, msg }));
                        }
                    }
                    Output::Persist { seq, .. } => self.queue.push_back((i, Input::Persisted(seq))),
                    Output::Commit { block, proof } => self.commits[i].push((block, proof)),
                    Output::Event(e) => self.events[i].push(e),
                    Output::SetTimer {
                        timer: t @ (Timer::Delay(_) | Timer::Interval(_)),
                        ..
                    } => self.pacing.push((i, t)),
                    Output::SetTimer { .. } => {}
                }
            }
        }
        panic!("cluster did not settle");
    }

    fn committed_txs(&self, i: usize) -> Vec<Tx> {
        self.commits[i]
            .iter()
            .flat_map(|(b, _)| b.payload.clone())
            .collect()
    }
}

fn trace(i: u32) -> Tx {
    // Traces are CBOR maps on the wire; any first byte but the anchor tag will do here.
    let mut bytes = vec![0xa1];
    bytes.extend(i.to_be_bytes());
    Tx::new(bytes)
}

/// A local domain that committed `blocks` blocks, one trace each; its anchors in order.
fn local_chain(dealt: &DealtKeys, blocks: u32) -> (Vec<Anchor>, Vec<Tx>) {
    local_chain_from(dealt, 0, blocks)
}

fn local_chain_from(dealt: &DealtKeys, first: u32, blocks: u32) -> (Vec<Anchor>, Vec<Tx>) {
    let mut local = Cluster::new(LOCAL, dealt);
    let traces: Vec<Tx> = (first..first + blocks).map(trace).collect();
    for t in &traces {
        local.submit_to(&[0, 1, 2, 3], vec![t.clone()]);
        local.run();
    }
    let anchors: Vec<Anchor> = local.commits[0]
        .iter()
        .map(|(block, commit)| Anchor {
            block: block.clone(),
            commit: commit.clone(),
        })
        .collect();
    (anchors, traces)
}

fn rejections(c: &Cluster, i: usize) -> Vec<&'static str> {
    c.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::AnchorRejected { error } => Some(error.reason()),
            _ => None,
        })
        .collect()
}

#[test]
fn local_commit_proofs_verify_and_bind_the_block() {
    let dealt = deal(1);
    let (anchors, traces) = local_chain(&dealt, 4);
    assert!(anchors.len() >= 4, "committed {}", anchors.len());
    let keys = KeyRing::from([(LOCAL, public(&dealt))]);
    for (i, a) in anchors.iter().enumerate() {
        assert_eq!(
            a.block.height,
            i as u64 + 1,
            "commits arrive in height order"
        );
        a.verify(&keys).unwrap();
    }
    let committed: Vec<Tx> = anchors
        .iter()
        .flat_map(|a| a.block.payload.clone())
        .collect();
    assert_eq!(committed, traces);
    // Another block under the same proof, another key set, a shortened chain: all refused.
    let mut other = anchors[0].clone();
    other.block.payload.push(trace(99));
    assert!(other.verify(&keys).is_err());
    let wrong = KeyRing::from([(LOCAL, public(&deal(2)))]);
    assert_eq!(
        anchors[0].verify(&wrong),
        Err(ProofError::BadSignature(LOCAL))
    );
    let mut short = anchors[0].clone();
    short.commit.above.clear();
    assert!(matches!(
        short.verify(&keys),
        Err(ProofError::ChainTooShort { .. })
    ));
}

#[test]
fn global_chain_holds_every_anchor_in_order_once() {
    let local = deal(1);
    let (anchors, _) = local_chain(&local, 6);
    let mut global = Cluster::new(DomainId::Global, &deal(3)).with_anchor_rules(&local);
    // Out of order within one submission, and the same anchors again from a second edge.
    let mut txs: Vec<Tx> = anchors.iter().map(Anchor::to_tx).collect();
    txs.reverse();
    global.submit_to(&[0, 1, 2, 3], txs.clone());
    global.run();
    global.submit_to(&[0, 1, 2, 3], txs);
    global.run();
    for i in 0..N {
        let links: Vec<u64> = global
            .committed_txs(i)
            .iter()
            .filter_map(|tx| Some(Anchor::from_tx(tx)?.ok()?.block.height))
            .collect();
        assert_eq!(
            links,
            (1..=anchors.len() as u64).collect::<Vec<_>>(),
            "replica {i}"
        );
        let Replica::Global(g) = &global.replicas[i] else {
            unreachable!()
        };
        let last = anchors.last().unwrap();
        assert_eq!(
            g.anchored().get(&LOCAL),
            Some(&(last.block.height, last.block.hash()))
        );
        // The resubmission found every anchor already anchored.
        assert_eq!(
            rejections(&global, i)
                .iter()
                .filter(|r| **r == "stale")
                .count(),
            anchors.len()
        );
    }
}

#[test]
fn forged_anchors_are_refused_at_admission() {
    let local = deal(1);
    let (anchors, _) = local_chain(&local, 3);
    let (forged, _) = local_chain_from(&deal(9), 100, 3);
    let mut global = Cluster::new(DomainId::Global, &deal(3)).with_anchor_rules(&local);
    global.submit_to(&[0, 1, 2, 3], vec![anchors[0].to_tx()]);
    global.run();
    // A gap; the next block under a signature from another key set; a block of another
    // chain at the next height (a fork); one at an anchored height (stale: the node tells a
    // duplicate from a fork there by the hash it anchored).
    let mut wrong_signature = anchors[1].clone();
    wrong_signature.commit.qc.signature = forged[1].commit.qc.signature.clone();
    let bad = vec![
        anchors[2].to_tx(),
        forged[1].to_tx(),
        wrong_signature.to_tx(),
        forged[0].to_tx(),
    ];
    global.submit_to(&[0, 1, 2, 3], bad);
    global.run();
    for i in 0..N {
        let mut got = rejections(&global, i);
        got.sort();
        assert_eq!(
            got,
            ["bad_certificate", "fork", "gap", "stale"],
            "replica {i}"
        );
        assert_eq!(global.committed_txs(i), vec![anchors[0].to_tx()]);
    }
}

#[test]
fn a_leader_proposing_a_gap_gets_no_votes() {
    let local = deal(1);
    let (anchors, _) = local_chain(&local, 3);
    let mut global = Cluster::new(DomainId::Global, &deal(3)).with_anchor_rules(&local);
    // The view-1 leader runs without the rules, as a Byzantine leader would, and is the only
    // one given a gapped anchor.
    let leader = usize::from(crate::global::leader(1, N));
    global.replicas[leader] = Cluster::new(DomainId::Global, &deal(3))
        .replicas
        .remove(leader);
    global.submit_to(&[leader], vec![anchors[1].to_tx()]);
    global.run();
    for i in (0..N).filter(|&i| i != leader) {
        assert!(global.events[i].contains(&Event::Rejected {
            from: leader as ReplicaIndex,
            reason: Reject::BadAnchor
        }));
        assert!(global.commits[i].is_empty());
    }
}

/// Build the proof of `trace` from the local anchor and the global commits, as a node does.
fn prove(global: &[(Block, CommitProof)], anchors: &[Anchor], trace: &Tx) -> TraceProof {
    let anchor = anchors
        .iter()
        .find(|a| a.block.payload.contains(trace))
        .unwrap();
    let anchor_tx = anchor.to_tx();
    let (gblock, gcommit) = global
        .iter()
        .find(|(b, _)| b.payload.contains(&anchor_tx))
        .unwrap();
    TraceProof {
        trace: Inclusion::of(&anchor.block, &trace.id()).unwrap(),
        finality: Finality::Anchored(Box::new(AnchorProof {
            anchor: Inclusion::of(gblock, &anchor_tx.id()).unwrap(),
            commit: gcommit.clone(),
        })),
    }
}

fn anchored_network(
    local: &DealtKeys,
    global_keys: &DealtKeys,
    blocks: u32,
) -> (Vec<Anchor>, Vec<Tx>, Cluster) {
    let (anchors, traces) = local_chain(local, blocks);
    let mut global = Cluster::new(DomainId::Global, global_keys).with_anchor_rules(local);
    for a in &anchors {
        global.submit_to(&[0, 1, 2, 3], vec![a.to_tx()]);
        global.run();
    }
    (anchors, traces, global)
}

#[test]
fn every_single_byte_flip_of_a_trace_proof_fails() {
    let (local, gkeys) = (deal(1), deal(3));
    let (anchors, traces, global) = anchored_network(&local, &gkeys, 4);
    let keys = KeyRing::from([(LOCAL, public(&local)), (DomainId::Global, public(&gkeys))]);
    let proof = prove(&global.commits[2], &anchors, &traces[1]);
    let proven = proof.verify(&keys).unwrap();
    assert_eq!((proven.domain, proven.trace), (LOCAL, traces[1].id()));
    let bytes = proof.encode();
    assert_eq!(TraceProof::decode(&bytes).unwrap(), proof);
    for at in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut altered = bytes.clone();
            altered[at] ^= bit;
            let result = TraceProof::decode(&altered)
                .map_err(|e| e.to_string())
                .and_then(|p| p.verify(&keys).map_err(|e| e.to_string()));
            assert!(
                result.is_err(),
                "flipping {bit:#x} at byte {at} of {} still verifies",
                bytes.len()
            );
        }
    }
    // Against another genesis the untouched proof fails too.
    let other = KeyRing::from([
        (LOCAL, public(&local)),
        (DomainId::Global, public(&deal(4))),
    ]);
    assert!(proof.verify(&other).is_err());
}

#[test]
fn a_global_trace_proof_verifies_with_real_bls() {
    let dealt = ThresholdCryptoScheme::deal(N, N - 1, [5; 32]);
    let mut global = Cluster::new(DomainId::Global, &dealt);
    global.submit_to(&[0, 1, 2, 3], vec![trace(7)]);
    global.run();
    let (block, commit) = global.commits[0]
        .iter()
        .find(|(b, _)| b.payload.contains(&trace(7)))
        .unwrap();
    let proof = TraceProof {
        trace: Inclusion::of(block, &trace(7).id()).unwrap(),
        finality: Finality::Global(commit.clone()),
    };
    let keys = KeyRing::from([(DomainId::Global, public(&dealt))]);
    assert_eq!(proof.verify(&keys).unwrap().global_height, block.height);
    let mut bad = proof.clone();
    bad.trace.tx = trace(8);
    assert_eq!(bad.verify(&keys), Err(ProofError::NotIncluded));
}

/// `domain`'s replicas commit one and a half memory windows of blocks: each holds about one
/// window, and still commits after pruning.
fn holds_a_bounded_tree(domain: DomainId) {
    let dealt = deal(1);
    let mut cluster = Cluster::new(domain, &dealt);
    let keep = crate::memory_window(domain);
    let rounds = keep + keep / 2 + 64;
    for i in 0..rounds {
        cluster.submit_to(&[0, 1, 2, 3], vec![trace(i as u32)]);
        cluster.run();
    }
    for r in &cluster.replicas {
        assert!(r.committed_height() >= rounds, "{}", r.committed_height());
        let bound = (keep + keep / 4 + 8) as usize;
        assert!(
            r.blocks_in_memory() <= bound,
            "{} blocks held, bound {bound}",
            r.blocks_in_memory()
        );
    }
    cluster.submit_to(&[0, 1, 2, 3], vec![trace(999_999)]);
    cluster.run();
    assert!(cluster.committed_txs(0).contains(&trace(999_999)));
}

#[test]
fn a_long_running_local_replica_holds_a_bounded_tree() {
    holds_a_bounded_tree(LOCAL);
}

#[test]
fn a_long_running_global_replica_holds_a_bounded_tree() {
    holds_a_bounded_tree(DomainId::Global);
}

fn counted(dealt: &DealtKeys, counters: &Arc<CryptoCounters>) -> KeyRing {
    let keys: Box<dyn ThresholdKeys> = Box::new(Counting::new(public(dealt), Arc::clone(counters)));
    KeyRing::from([(LOCAL, keys)])
}

#[test]
fn an_anchor_certificate_is_checked_once_and_a_forged_one_never_passes() {
    let local = deal(1);
    let (anchors, _) = local_chain(&local, 3);
    let counters = Arc::new(CryptoCounters::default());
    let mut rules = AnchorRules::new(counted(&local, &counters));
    let pairings = || counters.get(CryptoOp::Verify);
    let tx = anchors[0].to_tx();
    // Admission from gossip or the API, the leader's selection, a vote, a branch replay.
    let link = rules.link(&tx).unwrap().unwrap();
    assert_eq!(pairings(), 1);
    assert_eq!(rules.link(&tx), Some(Ok(link)));
    for _ in 0..3 {
        let mut tips = Tips::new();
        assert_eq!(rules.apply(&mut tips, &tx), Ok(Some(link)));
    }
    assert_eq!(pairings(), 1, "the second and later checks do no pairing");

    // The next block under the first one's signature: refused, and refused again from memory
    // (continuity first, as on the first check), never cached as valid.
    let mut forged = anchors[1].clone();
    forged.commit.qc.signature = anchors[0].commit.qc.signature.clone();
    let forged = forged.to_tx();
    let mut tips = Tips::new();
    rules.apply(&mut tips, &tx).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            rules.apply(&mut tips.clone(), &forged),
            Err(AnchorError::BadCertificate(ProofError::BadSignature(LOCAL)))
        ));
        assert!(matches!(
            rules.link(&forged),
            Some(Err(AnchorError::BadCertificate(_)))
        ));
        assert!(matches!(
            rules.apply(&mut Tips::new(), &forged),
            Err(AnchorError::Gap { .. })
        ));
    }
    assert_eq!(pairings(), 2, "the forged anchor was checked once");
    // The genuine block at that height is a different payload item: checked on its own.
    assert!(
        rules
            .apply(&mut tips, &anchors[1].to_tx())
            .unwrap()
            .is_some()
    );
    assert_eq!(pairings(), 3);
}

#[test]
fn a_forgotten_verdict_is_checked_again() {
    let local = deal(1);
    let (anchors, _) = local_chain(&local, 3);
    let counters = Arc::new(CryptoCounters::default());
    let mut rules = AnchorRules::with_capacity(counted(&local, &counters), 2, 1);
    for a in &anchors[..3] {
        rules.link(&a.to_tx()).unwrap().unwrap();
    }
    assert_eq!(counters.get(CryptoOp::Verify), 3);
    // The oldest was pushed out: checked again, still valid; the newest is remembered.
    rules.link(&anchors[0].to_tx()).unwrap().unwrap();
    rules.link(&anchors[0].to_tx()).unwrap().unwrap();
    assert_eq!(counters.get(CryptoOp::Verify), 4);
    rules.link(&anchors[2].to_tx()).unwrap().unwrap();
    assert_eq!(counters.get(CryptoOp::Verify), 4);
}

/// Across a whole run (admission on every validator, proposals, votes, the branch replays of
/// later blocks) each validator pays one signature check per anchor.
#[test]
fn each_validator_checks_each_anchor_once_in_a_run() {
    let local = deal(1);
    let (anchors, _) = local_chain(&local, 5);
    let counters: Vec<Arc<CryptoCounters>> = (0..N).map(|_| Arc::default()).collect();
    let mut global = Cluster::new(DomainId::Global, &deal(3));
    for (r, c) in global.replicas.iter_mut().zip(&counters) {
        if let Replica::Global(g) = r {
            g.set_anchor_rules(AnchorRules::new(counted(&local, c)), Tips::new());
        }
    }
    for a in &anchors {
        global.submit_to(&[0, 1, 2, 3], vec![a.to_tx()]);
        global.run();
    }
    // Twice more from another edge: stale now, and known.
    let all: Vec<Tx> = anchors.iter().map(Anchor::to_tx).collect();
    global.submit_to(&[0, 1, 2, 3], all);
    global.run();
    for (i, c) in counters.iter().enumerate() {
        let anchored = global
            .committed_txs(i)
            .iter()
            .filter(|t| Anchor::is_anchor(t))
            .count();
        assert_eq!(anchored, anchors.len(), "replica {i}");
        assert_eq!(c.get(CryptoOp::Verify), anchors.len() as u64, "replica {i}");
    }
}

mod transfer;
