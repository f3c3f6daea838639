//! What the fuzz targets and the seed writer share: a network built deterministically (keys
//! dealt from fixed seeds), a producer key, and a short run of real replicas whose messages
//! and commits seed the corpora and let the proof target tell a real commit from a forgery.

use lcbft_node::genesis::{DomainGenesis, Genesis, Member, PayloadKind, Role};
use lcbft_node::trace::{Action, SignedTrace, Trace};
use lcbft_protocol::Config;
use lcbft_protocol::anchor::{CommitProof, KeyRing};
use lcbft_protocol::crypto::{Dealer, DealtKeys, SchemeId, ThresholdCryptoScheme, load_keys};
use lcbft_protocol::io::{Input, Output};
use lcbft_protocol::message::Message;
use lcbft_protocol::proof::{Finality, Inclusion, TraceProof};
use lcbft_protocol::replica::Replica;
use lcbft_protocol::types::{Block, DomainId, Hash, ReplicaIndex, Tx};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use std::collections::{BTreeSet, VecDeque};

/// Global validators; the last one is also the edge of `local/1`.
pub const GLOBAL_N: usize = 4;
/// `local/1`: the edge and two devices.
pub const LOCAL_N: usize = 3;
pub const LOCAL: DomainId = DomainId::Local(1);
/// The body limit the trace targets use (`api.max_trace_bytes`'s smallest sensible value).
pub const MAX_BODY: usize = 1024;

fn quorum(n: usize) -> usize {
    n - (n - 1) / 3
}

fn keypair(i: u8) -> Keypair {
    match Keypair::ed25519_from_bytes([i; 32]) {
        Ok(k) => k,
        Err(e) => unreachable!("32 bytes are an ed25519 secret: {e}"),
    }
}

fn peer(i: u8) -> PeerId {
    keypair(i).public().to_peer_id()
}

/// Dealt keys of a domain, the same on every run.
pub fn dealt(domain: DomainId) -> DealtKeys {
    let (n, seed) = match domain {
        DomainId::Global => (GLOBAL_N, [1; 32]),
        DomainId::Local(_) => (LOCAL_N, [2; 32]),
    };
    ThresholdCryptoScheme::deal(n, quorum(n), seed)
}

/// The fixture network's genesis: a global domain of four (three clouds and an edge) and
/// `local/1` (that edge and two devices), threshold_crypto keys.
pub fn genesis() -> Genesis {
    let global = (0..GLOBAL_N as u8)
        .map(|i| Member {
            index: ReplicaIndex::from(i),
            peer_id: peer(10 + i),
            role: if usize::from(i) == GLOBAL_N - 1 {
                Role::Edge
            } else {
                Role::Cloud
            },
        })
        .collect();
    let local = (0..LOCAL_N as u8)
        .map(|i| Member {
            index: ReplicaIndex::from(i),
            peer_id: if i == 0 {
                peer(10 + GLOBAL_N as u8 - 1)
            } else {
                peer(20 + i)
            },
            role: if i == 0 { Role::Edge } else { Role::Device },
        })
        .collect();
    Genesis {
        scheme: SchemeId::ThresholdCrypto,
        payload: PayloadKind::Traces,
        domains: vec![
            DomainGenesis {
                id: DomainId::Global,
                members: global,
                public_key_set: dealt(DomainId::Global).public,
            },
            DomainGenesis {
                id: LOCAL,
                members: local,
                public_key_set: dealt(LOCAL).public,
            },
        ],
    }
}

/// Every domain's public keys, as `lcbft verify-proof` loads them from the genesis.
pub fn key_ring() -> KeyRing {
    match genesis().key_ring() {
        Ok(ring) => ring,
        Err(e) => unreachable!("the fixture genesis has valid key sets: {e}"),
    }
}

/// The producer of the fixture's traces.
pub fn producer() -> Keypair {
    keypair(99)
}

/// A trace signed by [`producer`].
pub fn signed_trace(domain: DomainId, n: u64) -> SignedTrace {
    let key = producer();
    let producer = match key.clone().try_into_ed25519() {
        Ok(k) => k.public().to_bytes(),
        Err(e) => unreachable!("the producer key is ed25519: {e}"),
    };
    let body = format!("{}.{}C", 20 + n, n % 10).into_bytes();
    let trace = Trace {
        producer,
        timestamp_ms: 1_700_000_000_000 + n,
        domain,
        action: Action::Generated,
        application: "thermo".into(),
        digest: *blake3::hash(&body).as_bytes(),
        body: Some(body),
        parents: if n == 0 { Vec::new() } else { vec![[7; 32]] },
    };
    match trace.sign(&key) {
        Ok(s) => s,
        Err(e) => unreachable!("the producer signs its own trace: {e}"),
    }
}

/// What a domain's replicas said and committed while ordering some payload.
pub struct Run {
    pub messages: Vec<Message>,
    /// Replica 0's commits, in order.
    pub commits: Vec<(Block, CommitProof)>,
    /// Hashes of the blocks any replica committed.
    pub committed: BTreeSet<Hash>,
}

/// Real replicas of `domain` (fixture keys) order `txs`: every message in FIFO order, each
/// persist answered at once, and every timer fired once when the network goes quiet, so view
/// changes happen too.
pub fn run(domain: DomainId, txs: &[Tx]) -> Run {
    let dealt = dealt(domain);
    let n = match domain {
        DomainId::Global => GLOBAL_N,
        DomainId::Local(_) => LOCAL_N,
    };
    let mut replicas: Vec<Replica> = (0..n)
        .map(|i| {
            let keys = match load_keys(dealt.scheme, n, &dealt.public, dealt.secrets.get(i)) {
                Ok(k) => k,
                Err(e) => unreachable!("dealt keys load: {e}"),
            };
            // Unpaced: the seed corpus holds proofs of exactly the blocks this run commits.
            let cfg = Config::new(domain, i as ReplicaIndex, n).unpaced();
            Replica::new(cfg, keys)
        })
        .collect();
    let mut queue: VecDeque<(usize, Input)> = (0..n).map(|i| (i, Input::Start)).collect();
    queue.extend((0..n).map(|i| (i, Input::Payload(txs.to_vec()))));
    let mut timers: Vec<(usize, Input)> = Vec::new();
    let mut out = Run {
        messages: Vec::new(),
        commits: Vec::new(),
        committed: BTreeSet::new(),
    };
    let mut quiet_rounds = 0;
    while quiet_rounds < 2 {
        let Some((i, input)) = queue.pop_front() else {
            quiet_rounds += 1;
            queue.extend(timers.drain(..));
            continue;
        };
        let from = i as ReplicaIndex;
        for o in replicas[i].handle(input) {
            match o {
                Output::Send { to, msg } => {
                    out.messages.push(msg.clone());
                    queue.push_back((usize::from(to), Input::Message { from, msg }));
                }
                Output::Broadcast(msg) => {
                    out.messages.push(msg.clone());
                    for j in (0..n).filter(|&j| j != i) {
                        let msg = msg.clone();
                        queue.push_back((j, Input::Message { from, msg }));
                    }
                }
                Output::Persist { seq, .. } => queue.push_back((i, Input::Persisted(seq))),
                Output::SetTimer { timer, .. } => {
                    timers.retain(|(k, t)| !(*k == i && matches!(t, Input::Timeout(old) if std::mem::discriminant(old) == std::mem::discriminant(&timer))));
                    timers.push((i, Input::Timeout(timer)));
                }
                Output::Commit { block, proof } => {
                    out.committed.insert(block.hash());
                    if i == 0 {
                        out.commits.push((block, proof));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The proof that `tx` is committed in the global chain of `run`.
pub fn global_proof(run: &Run, tx: &Tx) -> Option<TraceProof> {
    let (block, commit) = run.commits.iter().find(|(b, _)| b.payload.contains(tx))?;
    Some(TraceProof {
        trace: Inclusion::of(block, &tx.id())?,
        finality: Finality::Global(commit.clone()),
    })
}
