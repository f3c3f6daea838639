//! What a replica consumes and produces. The driver (node or simulator) feeds [`Input`]s and
//! carries out [`Output`]s **in order**: a `Persist` must be durable before the driver reports
//! `Persisted`, and the shares that depend on it are only released after that report.

use crate::anchor::{AnchorError, CommitProof};
use crate::core::PoolRefusal;
use crate::message::{Message, TermProof};
use crate::types::{Block, Certificate, DomainId, Hash, Kind, ReplicaIndex, Tx, View};
use serde::{Deserialize, Serialize};

// Inputs are built once and moved straight into the replica; boxing would only add a copy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A message from an authenticated domain member.
    Message { from: ReplicaIndex, msg: Message },
    /// A timer set by `Output::SetTimer` fired.
    Timeout(Timer),
    /// Payload (traces, anchors) submitted to this node; it gossips it to every member.
    Payload(Vec<Tx>),
    /// Payload a member gossiped, already admitted by the node: it counts against that
    /// member's share of the pool.
    Relayed { from: ReplicaIndex, txs: Vec<Tx> },
    /// The `Persist` with this sequence number is durable.
    Persisted(u64),
    /// The driver is up. A replica restored from disk asks its peers for their highest QC,
    /// so it catches up even when its domain has gone quiet meanwhile.
    Start,
    /// A committed block of this domain with its commit proof, from outside the domain (the
    /// newest anchored block, proven by the global chain). A member further behind than its
    /// peers keep blocks restarts from it and fetches only the blocks above. The driver has
    /// made `block` the base of its stored chain first.
    StateTransfer { block: Block, proof: CommitProof },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Global pacemaker: the view's deadline.
    View(View),
    /// Local: the leader of this term (or the view change into it) made no progress in time.
    Term(u64),
    /// Retry fetching missing blocks.
    Sync(u64),
    /// Pacing: the delay since payload became pending passed.
    Delay(u64),
    /// Pacing: the minimum interval since the last block passed.
    Interval(u64),
    /// Ask again for the safety reports a rejoining replica still lacks.
    Rejoin(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        to: ReplicaIndex,
        msg: Message,
    },
    /// To every other member (the domain's gossipsub topic).
    Broadcast(Message),
    /// Replaces any earlier timer of the same kind.
    SetTimer {
        timer: Timer,
        after_ms: u64,
    },
    /// Write `state` and `blocks` durably, then answer `Input::Persisted(seq)`. The blocks are
    /// those above the committed chain taken in since the last `Persist`; hand them back in
    /// [`crate::replica::Stored`] at restart. A driver may forget one once its height is
    /// committed.
    Persist {
        seq: u64,
        state: SafetyState,
        blocks: Vec<Block>,
    },
    /// `block` is final; `proof` shows it to anyone holding the domain's public key set.
    Commit {
        block: Block,
        proof: CommitProof,
    },
    /// Something an operator or the simulator counts.
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A certificate of this kind was formed here (one basic phase completed).
    CertificateFormed { kind: Kind, view: View },
    /// Proposed a block.
    Proposed { view: View, txs: usize },
    /// Gave up on the global view, or started a local view change to `to` (a term).
    ViewChange { from: View, to: View },
    /// A local term started with this leader.
    NewLeader { term: u64, leader: ReplicaIndex },
    /// A message was dropped; the sender should be penalised.
    Rejected { from: ReplicaIndex, reason: Reject },
    /// An anchor was refused, at admission or inside a proposal.
    AnchorRejected { error: AnchorError },
    /// Every peer was asked for this block and none sent it. If our safety state names it,
    /// the domain may be unable to go on until a member that holds it returns.
    Unavailable { hash: Hash },
    /// The payload pool would not take this item.
    PoolRefused { id: Hash, reason: PoolRefusal },
    /// `signer` voted for two blocks in `view` (both shares verified): a Byzantine member, or
    /// a replica that voted before its safety state was durable and then lost it.
    DoubleVote {
        signer: ReplicaIndex,
        view: View,
        first: Hash,
        second: Hash,
    },
    /// Restarted from a transferred block at this height.
    Transferred { height: u64 },
    /// A rejoining replica heard from enough members (`answers` of them: 2f+1, or after a
    /// long wait n-f-1) and signs again, only above `last_voted`.
    Rejoined { last_voted: View, answers: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    WrongDomain,
    NotLeader,
    BadCertificate,
    BadShare,
    Malformed,
    Unrequested,
    /// A proposal carrying an anchor that does not continue its domain's anchored chain.
    BadAnchor,
    /// A proposal whose payload breaks the block bounds, repeats an item or carries one the
    /// admission rule refuses.
    BadPayload,
}

/// Everything a replica must find again after a crash to stay safe. Written before any share
/// that depends on it leaves the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyState {
    /// Highest view (local: term and round) this replica signed a vote in, or gave up.
    pub last_voted: View,
    pub lock: Certificate,
    pub high_qc: Certificate,
    /// Local: the running term's proof; `None` in term 0 and in the global layer.
    pub term: Option<TermProof>,
    /// Local: the highest term this replica asked to move to.
    pub vc_target: u64,
}

impl SafetyState {
    /// The state of a replica that never voted.
    pub fn genesis(domain: DomainId) -> SafetyState {
        let genesis = Certificate::genesis(domain);
        SafetyState {
            last_voted: 0,
            lock: genesis.clone(),
            high_qc: genesis,
            term: None,
            vc_target: 0,
        }
    }
}
