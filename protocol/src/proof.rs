//! Standalone proofs (DESIGN §5): that a local block is anchored in the committed global
//! chain, and that a trace is committed. Both verify with nothing but the genesis key sets.

use crate::anchor::{Anchor, CommitProof, KeyRing, ProofError};
use crate::codec::{self, CodecError};
use crate::merkle::{self, Step};
use crate::types::{Block, DomainId, Hash, Header, Tx};
use serde::{Deserialize, Serialize};

/// A payload item and its Merkle path into a block header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inclusion {
    pub tx: Tx,
    pub path: Vec<Step>,
    pub block: Header,
}

impl Inclusion {
    /// The inclusion of payload item `id` in `block`, if it is there.
    pub fn of(block: &Block, id: &Hash) -> Option<Inclusion> {
        let ids: Vec<Hash> = block.payload.iter().map(Tx::id).collect();
        let index = ids.iter().position(|i| i == id)?;
        Some(Inclusion {
            tx: block.payload.get(index)?.clone(),
            path: merkle::path(&ids, index)?,
            block: block.header(),
        })
    }

    fn verify(&self) -> Result<(), ProofError> {
        if merkle::fold(&self.tx.id(), &self.path) != self.block.payload_root {
            return Err(ProofError::NotIncluded);
        }
        Ok(())
    }
}

/// A local block's anchor, inside a committed global block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorProof {
    /// The anchor payload item in its global block.
    pub anchor: Inclusion,
    /// The global block's commit.
    pub commit: CommitProof,
}

impl AnchorProof {
    /// The anchored local block's header, once everything verifies.
    pub fn verify(&self, keys: &KeyRing) -> Result<Anchor, ProofError> {
        if self.anchor.block.domain != DomainId::Global {
            return Err(ProofError::WrongDomain {
                expected: "global".into(),
                got: self.anchor.block.domain,
            });
        }
        self.anchor.verify()?;
        self.commit.verify(&self.anchor.block, keys)?;
        let anchor = match Anchor::from_tx(&self.anchor.tx) {
            Some(Ok(a)) => a,
            _ => return Err(ProofError::NotAnAnchor),
        };
        anchor.verify(keys)?;
        Ok(anchor)
    }
}

/// How the block holding a trace is final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finality {
    /// A global block: its own commit.
    Global(CommitProof),
    /// A local block: its anchor in the committed global chain.
    Anchored(Box<AnchorProof>),
}

/// Everything needed to check offline that a trace is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceProof {
    pub trace: Inclusion,
    pub finality: Finality,
}

/// What a verified trace proof establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    pub trace: Hash,
    pub domain: DomainId,
    pub height: u64,
    /// Height of the global block that commits it (directly or through its anchor).
    pub global_height: u64,
}

/// Proof files are bounded like messages.
pub const MAX_PROOF_BYTES: usize = codec::MAX_MESSAGE_BYTES;

impl TraceProof {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<TraceProof, CodecError> {
        codec::decode(bytes, MAX_PROOF_BYTES)
    }

    pub fn verify(&self, keys: &KeyRing) -> Result<Proven, ProofError> {
        self.trace.verify()?;
        let block = &self.trace.block;
        let global_height = match &self.finality {
            Finality::Global(commit) => {
                if block.domain != DomainId::Global {
                    return Err(ProofError::WrongDomain {
                        expected: "global".into(),
                        got: block.domain,
                    });
                }
                commit.verify(block, keys)?;
                block.height
            }
            Finality::Anchored(proof) => {
                let anchor = proof.verify(keys)?;
                if anchor.block.hash() != block.hash() {
                    return Err(ProofError::WrongAnchor);
                }
                proof.anchor.block.height
            }
        };
        Ok(Proven {
            trace: self.trace.tx.id(),
            domain: block.domain,
            height: block.height,
            global_height,
        })
    }
}
