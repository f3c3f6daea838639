//! Building standalone proofs from the store (DESIGN §5): the node's half of
//! `lcbft_protocol::proof`, which verifies them.

use crate::store::{Store, StoreError};
use crate::trace::{SignedTrace, TraceError};
use lcbft_protocol::anchor::{Anchor, KeyRing, ProofError};
use lcbft_protocol::proof::{AnchorProof, Finality, Inclusion, Proven, TraceProof};
use lcbft_protocol::types::{DomainId, Hash};

/// Why no proof can be built (yet).
#[derive(Debug, thiserror::Error)]
pub enum ProofUnavailable {
    #[error("trace {0} is not committed (or not known to this node)")]
    NotCommitted(Hash),
    #[error(
        "trace {id} is committed in {domain} at height {height} but not yet anchored in a committed global block"
    )]
    NotAnchored {
        id: Hash,
        domain: String,
        height: u64,
    },
    #[error("the block holding trace {0} is no longer stored here; ask a global node")]
    Pruned(Hash),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Proof that `domain`'s block at `height` is anchored in the committed global chain.
pub fn anchor_proof(
    store: &Store,
    domain: DomainId,
    height: u64,
) -> Result<Option<AnchorProof>, StoreError> {
    let Some((global, tx, _)) = store.anchor_in_global(domain, height)? else {
        return Ok(None);
    };
    let Some(commit) = store.proof_at(DomainId::Global, global.height)? else {
        return Ok(None);
    };
    Ok(Inclusion::of(&global, &tx.id()).map(|anchor| AnchorProof { anchor, commit }))
}

/// The standalone proof of a committed trace.
pub fn trace_proof(store: &Store, id: &Hash) -> Result<TraceProof, ProofUnavailable> {
    let at = store
        .tx_location(id)?
        .ok_or(ProofUnavailable::NotCommitted(*id))?;
    let block = store
        .committed_block(at.domain, at.height)?
        .ok_or(ProofUnavailable::Pruned(*id))?;
    let trace = Inclusion::of(&block, id).ok_or(ProofUnavailable::Pruned(*id))?;
    let finality = match at.domain {
        DomainId::Global => Finality::Global(
            store
                .proof_at(DomainId::Global, at.height)?
                .ok_or(ProofUnavailable::Pruned(*id))?,
        ),
        DomainId::Local(_) => Finality::Anchored(Box::new(
            anchor_proof(store, at.domain, at.height)?.ok_or_else(|| {
                ProofUnavailable::NotAnchored {
                    id: *id,
                    domain: at.domain.to_string(),
                    height: at.height,
                }
            })?,
        )),
    };
    Ok(TraceProof { trace, finality })
}

/// Why `lcbft verify-proof` refuses a trace proof.
#[derive(Debug, thiserror::Error)]
pub enum TraceProofError {
    #[error("the proof does not verify: {0}")]
    Proof(#[from] ProofError),
    #[error("the proven payload item is not a readable trace: {0}")]
    NotATrace(TraceError),
    #[error("the trace's signature does not verify ({0})")]
    BadTraceSignature(TraceError),
    #[error("the trace belongs to domain {trace} but the proof is for {proof}")]
    WrongDomain { trace: String, proof: String },
    #[error("the proven payload item is an anchor, which only the global chain holds, in {0}")]
    AnchorOutsideGlobal(String),
    #[error("the proven anchor does not verify: {0}")]
    BadAnchor(ProofError),
}

/// What a verified proof shows committed: a trace, or in the global chain an anchor.
#[derive(Debug)]
pub enum ProvenItem {
    Trace(SignedTrace),
    Anchor(Box<Anchor>),
}

/// Check a trace proof end to end: that the block holding the item is committed (and anchored),
/// and that the item is a trace its producer signed, for the domain of that block. A block
/// proves only that a quorum ordered the item; members check traces before ordering them, but
/// a reader of a proof should not have to trust that they did. The global chain's items are
/// also anchors: such an item must carry a commit proof that verifies itself.
pub fn verify_trace_proof(
    proof: &TraceProof,
    keys: &KeyRing,
) -> Result<(Proven, ProvenItem), TraceProofError> {
    let proven = proof.verify(keys)?;
    let tx = &proof.trace.tx;
    if let Some(anchor) = Anchor::from_tx(tx) {
        if proven.domain != DomainId::Global {
            return Err(TraceProofError::AnchorOutsideGlobal(
                proven.domain.to_string(),
            ));
        }
        let anchor = anchor.map_err(|_| TraceProofError::BadAnchor(ProofError::NotAnAnchor))?;
        anchor.verify(keys).map_err(TraceProofError::BadAnchor)?;
        return Ok((proven, ProvenItem::Anchor(Box::new(anchor))));
    }
    let trace = SignedTrace::from_tx(tx).map_err(TraceProofError::NotATrace)?;
    trace.verify().map_err(TraceProofError::BadTraceSignature)?;
    if trace.trace.domain != proven.domain {
        return Err(TraceProofError::WrongDomain {
            trace: trace.trace.domain.to_string(),
            proof: proven.domain.to_string(),
        });
    }
    Ok((proven, ProvenItem::Trace(trace)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Action, Trace};
    use lcbft_protocol::Config;
    use lcbft_protocol::crypto::{Dealer, DealtKeys, SimScheme, load_keys};
    use lcbft_protocol::io::{Input, Output};
    use lcbft_protocol::replica::Replica;
    use lcbft_protocol::types::{Block, ReplicaIndex, Tx};
    use libp2p::identity::Keypair;
    use std::collections::VecDeque;

    const N: usize = 4;

    /// A global domain of simulator replicas commits `txs` (unchecked, as a Byzantine quorum
    /// would); the proof of `txs[0]` from the first commit that holds it.
    fn commit_and_prove(dealt: &DealtKeys, tx: &Tx) -> TraceProof {
        let mut replicas: Vec<Replica> = (0..N)
            .map(|i| {
                let keys = load_keys(dealt.scheme, N, &dealt.public, dealt.secrets.get(i));
                // This loop fires no timers: unpaced leaders propose without one.
                let cfg = Config::new(DomainId::Global, i as ReplicaIndex, N).unpaced();
                Replica::new(cfg, keys.expect("keys"))
            })
            .collect();
        let mut queue: VecDeque<(usize, Input)> = (0..N)
            .map(|i| (i, Input::Payload(vec![tx.clone()])))
            .collect();
        let mut commits: Vec<(Block, lcbft_protocol::anchor::CommitProof)> = Vec::new();
        for _ in 0..100_000 {
            let Some((i, input)) = queue.pop_front() else {
                break;
            };
            let from = i as ReplicaIndex;
            for out in replicas[i].handle(input) {
                match out {
                    Output::Send { to, msg } => {
                        queue.push_back((usize::from(to), Input::Message { from, msg }));
                    }
                    Output::Broadcast(msg) => {
                        for j in (0..N).filter(|&j| j != i) {
                            let msg = msg.clone();
                            queue.push_back((j, Input::Message { from, msg }));
                        }
                    }
                    Output::Persist { seq, .. } => queue.push_back((i, Input::Persisted(seq))),
                    Output::Commit { block, proof } if i == 0 => commits.push((block, proof)),
                    _ => {}
                }
            }
        }
        let (block, commit) = commits
            .into_iter()
            .find(|(b, _)| b.payload.contains(tx))
            .expect("the trace is committed");
        TraceProof {
            trace: Inclusion::of(&block, &tx.id()).expect("included"),
            finality: Finality::Global(commit),
        }
    }

    fn signed(key: &Keypair, domain: DomainId) -> SignedTrace {
        let producer = key
            .clone()
            .try_into_ed25519()
            .expect("ed25519")
            .public()
            .to_bytes();
        let trace = Trace {
            producer,
            timestamp_ms: 1_700_000_000_000,
            domain,
            action: Action::Generated,
            application: "thermo".into(),
            digest: *blake3::hash(b"21.5C").as_bytes(),
            body: None,
            parents: Vec::new(),
        };
        trace.sign(key).expect("sign")
    }

    fn ring(dealt: &DealtKeys) -> KeyRing {
        let keys = load_keys(dealt.scheme, N, &dealt.public, None).expect("public keys");
        KeyRing::from([(DomainId::Global, keys)])
    }

    #[test]
    fn a_committed_trace_verifies_with_its_producer() {
        let dealt = SimScheme::deal(N, N - 1, [1; 32]);
        let key = Keypair::generate_ed25519();
        let trace = signed(&key, DomainId::Global);
        let proof = commit_and_prove(&dealt, &trace.to_tx());
        let (proven, back) = verify_trace_proof(&proof, &ring(&dealt)).expect("verifies");
        assert!(matches!(back, ProvenItem::Trace(t) if t == trace));
        assert_eq!(proven.domain, DomainId::Global);
    }

    #[test]
    fn a_committed_trace_with_a_bad_signature_or_domain_is_refused() {
        let dealt = SimScheme::deal(N, N - 1, [1; 32]);
        let keys = ring(&dealt);
        let key = Keypair::generate_ed25519();

        // Altered after signing, then ordered by the quorum: the block proof holds, the trace
        // does not.
        let mut tampered = signed(&key, DomainId::Global);
        tampered.trace.application = "other".into();
        let proof = commit_and_prove(&dealt, &tampered.to_tx());
        proof.verify(&keys).expect("the block proof itself is fine");
        let err = verify_trace_proof(&proof, &keys).expect_err("tampered trace");
        assert!(
            matches!(err, TraceProofError::BadTraceSignature(_)),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("the trace's signature does not verify"),
            "{err}"
        );

        // Signed for local/1, committed in the global chain.
        let elsewhere = signed(&key, DomainId::Local(1));
        let proof = commit_and_prove(&dealt, &elsewhere.to_tx());
        let err = verify_trace_proof(&proof, &keys).expect_err("other domain");
        assert_eq!(
            err.to_string(),
            "the trace belongs to domain local/1 but the proof is for global"
        );

        // Not a trace at all; an anchor-tagged item that is no anchor.
        let proof = commit_and_prove(&dealt, &Tx::new(vec![0xa1, 1, 2, 3]));
        let err = verify_trace_proof(&proof, &keys).expect_err("junk");
        assert!(matches!(err, TraceProofError::NotATrace(_)), "{err}");
        let proof = commit_and_prove(&dealt, &Tx::new(vec![0, 1, 2, 3]));
        let err = verify_trace_proof(&proof, &keys).expect_err("junk anchor");
        assert!(matches!(err, TraceProofError::BadAnchor(_)), "{err}");

        // A broken block proof is reported as such, before the trace is looked at.
        let mut proof = commit_and_prove(&dealt, &signed(&key, DomainId::Global).to_tx());
        proof.trace.block.height += 1;
        let err = verify_trace_proof(&proof, &keys).expect_err("bad proof");
        assert!(matches!(err, TraceProofError::Proof(_)), "{err}");
    }
}
