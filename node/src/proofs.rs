//! Building standalone proofs from the store (DESIGN §5): the node's half of
//! `lcbft_protocol::proof`, which verifies them.

use crate::store::{Store, StoreError};
use lcbft_protocol::proof::{AnchorProof, Finality, Inclusion, TraceProof};
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
                    domain: crate::genesis::domain_name(at.domain),
                    height: at.height,
                }
            })?,
        )),
    };
    Ok(TraceProof { trace, finality })
}
