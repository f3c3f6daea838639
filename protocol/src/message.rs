//! Consensus messages of both layers. Who sent a message is what the transport authenticated
//! (a libp2p PeerId mapped to a member index); no message names its own sender.

use crate::codec;
use crate::types::{Block, Certificate, Hash, ReplicaIndex, View, Vote};
use cbor4ii::core::types::Array;
use cbor4ii::core::utils::BufWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Message {
    Propose(Proposal),
    /// A share for a block, sent to the view's collector.
    Vote(Vote),
    /// Global pacemaker: a Timeout share for the view given up, with the sender's highest QC
    /// and highest timeout certificate, so a replica that fell behind can catch up.
    /// `vote` repeats the sender's vote in the view it gives up on: when that view's next
    /// leader is down, every replica can still form the QC from the timeouts, so one crashed
    /// member cannot break every three-chain (round-robin puts it after every third leader).
    NewView {
        timeout: Vote,
        high_qc: Certificate,
        high_tc: Option<Certificate>,
        vote: Option<Vote>,
    },
    /// Local view change, phase 1: a ViewChange share for the new term, naming its leader.
    ViewChange {
        share: Vote,
        leader: ReplicaIndex,
        high_qc: Certificate,
        current: Option<TermProof>,
    },
    /// Local view change, phase 2: the new leader's view-change certificate and chosen QC.
    NewTerm {
        vc: Certificate,
        leader: ReplicaIndex,
        chosen: Certificate,
    },
    /// Answer to a `NewTerm` whose chosen QC is below the replica's lock.
    Refuse {
        term: u64,
        high_qc: Certificate,
    },
    /// The new leader announces that its term started.
    TermStart(TermProof),
    /// A certificate handed on: a QC from an offloading collector to the leader.
    Certificate(Certificate),
    /// Ask for a block and its ancestors above height `above` (the asker's committed height).
    BlockRequest {
        hash: Hash,
        above: u64,
    },
    /// A requested block followed by its ancestors, newest first.
    BlockResponse(Vec<Block>),
    /// From a replica that may have lost its safety state (see `core::rejoin`): what view did
    /// you last sign in?
    SafetyQuery,
    /// The answer: the highest view we signed in (`SafetyState::last_voted`), and our highest
    /// certificate, which bounds how far above it an honest answer can be.
    SafetyReport {
        last_voted: View,
        cert: Certificate,
    },
}

impl Message {
    /// `codec::encode(&Message::BlockResponse(blocks))`, byte for byte, from the blocks' own
    /// encodings (`codec::encode(&block)` each): a node answering sync from its store sends
    /// the stored bytes as they are, instead of decoding every block (hashing every item on
    /// the way) only to encode it again.
    pub fn encode_block_response<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<u8> {
        // The variant's tag: an empty response without its empty array (one byte).
        let mut tag = codec::encode(&Message::BlockResponse(Vec::new()));
        tag.pop();
        let len = blocks.iter().map(|b| b.as_ref().len()).sum::<usize>();
        tag.reserve(len + 9);
        let mut out = BufWriter::new(tag);
        // The array header the serializer writes for a sequence of known length.
        if let Err(e) = Array::<()>::bounded(blocks.len(), &mut out) {
            unreachable!("encoding into memory failed: {e}");
        }
        let mut out = out.into_inner();
        for b in blocks {
            out.extend_from_slice(b.as_ref());
        }
        out
    }
}

/// A proposal. `proof` justifies the view: in the global layer a timeout certificate for the
/// previous view when `justify` is older; in a local domain the term's start.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Proposal {
    pub block: Block,
    pub timeout: Option<Certificate>,
    pub term: Option<TermProof>,
}

/// Proof that a local term started: the confirmation certificate over `(leader, chosen)`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TermProof {
    pub confirm: Certificate,
    pub leader: ReplicaIndex,
    pub chosen: Certificate,
}

impl TermProof {
    /// What Confirm shares sign: the leader and the chosen QC's block, bound together.
    pub fn digest(leader: ReplicaIndex, chosen: &Hash) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"lcbft1/confirm");
        h.update(&leader.to_be_bytes());
        h.update(&chosen.0);
        Hash(*h.finalize().as_bytes())
    }
}

/// What ViewChange shares sign: the proposed leader of the new term.
pub fn view_change_digest(leader: ReplicaIndex) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"lcbft1/view-change");
    h.update(&leader.to_be_bytes());
    Hash(*h.finalize().as_bytes())
}
