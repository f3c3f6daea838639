//! One type over both layers, for drivers that run either (the node, the simulator).

use crate::core::Config;
use crate::crypto::ThresholdKeys;
use crate::global::GlobalReplica;
use crate::io::{Input, Output, SafetyState};
use crate::local::LocalReplica;
use crate::types::{Block, DomainId, Hash, ReplicaIndex};

/// What a replica finds on its disk after a crash.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// The committed chain from its lowest retained height up.
    pub committed: Vec<Block>,
    /// Blocks above the committed chain, as `Output::Persist` handed them out: every block a
    /// persisted certificate, lock or vote names is among them or committed.
    pub blocks: Vec<Block>,
    /// The last persisted safety state (`None`: never voted).
    pub safety: Option<SafetyState>,
    /// The safety state may be lost or old (a new database, or one restored from a backup):
    /// sign nothing until the members have said how far they got (`core::rejoin`).
    pub rejoin: bool,
}

// One per node and domain, never moved around in bulk.
#[allow(clippy::large_enum_variant)]
pub enum Replica {
    Global(GlobalReplica),
    Local(LocalReplica),
}

impl Replica {
    pub fn new(cfg: Config, keys: Box<dyn ThresholdKeys>) -> Replica {
        match cfg.domain {
            DomainId::Global => Replica::Global(GlobalReplica::new(cfg, keys)),
            DomainId::Local(_) => Replica::Local(LocalReplica::new(cfg, keys)),
        }
    }

    /// Resume from what was on disk.
    pub fn restore(cfg: Config, keys: Box<dyn ThresholdKeys>, stored: Stored) -> Replica {
        match cfg.domain {
            DomainId::Global => Replica::Global(GlobalReplica::restore(cfg, keys, stored)),
            DomainId::Local(_) => Replica::Local(LocalReplica::restore(cfg, keys, stored)),
        }
    }

    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match self {
            Replica::Global(r) => r.handle(input),
            Replica::Local(r) => r.handle(input),
        }
    }

    pub fn safety(&self) -> &SafetyState {
        match self {
            Replica::Global(r) => r.safety(),
            Replica::Local(r) => r.safety(),
        }
    }

    pub fn committed_height(&self) -> u64 {
        match self {
            Replica::Global(r) => r.committed_height(),
            Replica::Local(r) => r.committed_height(),
        }
    }

    /// Plug in the node's admission rule for proposed payload.
    pub fn set_payload_rule(&mut self, rule: Box<dyn crate::core::PayloadRule>) {
        self.core_mut().set_payload_rule(rule);
    }

    /// The simulator's checker tests only: commit on a one-chain, a deliberately unsafe rule.
    pub(crate) fn commit_on_one_chain(&mut self) {
        self.core_mut().tree.set_chain(1);
    }

    /// A payload item waiting in the pool.
    pub fn pending(&self, id: &Hash) -> Option<&crate::types::Tx> {
        self.core().pending(id)
    }

    /// Items and bytes waiting in the pool.
    pub fn pool_usage(&self) -> (usize, usize) {
        self.core().pool_usage()
    }

    /// Items and bytes one origin may hold in the pool: the bound of what the node's own
    /// submissions (origin: this replica) may have waiting.
    pub fn pool_share(&self) -> (usize, usize) {
        self.core().pool_share()
    }

    fn core(&self) -> &crate::core::Core {
        match self {
            Replica::Global(r) => &r.core,
            Replica::Local(r) => &r.core,
        }
    }

    fn core_mut(&mut self) -> &mut crate::core::Core {
        match self {
            Replica::Global(r) => &mut r.core,
            Replica::Local(r) => &mut r.core,
        }
    }

    /// Whether `hash` is in memory: older committed blocks are the node's to serve from disk.
    pub fn holds(&self, hash: &Hash) -> bool {
        self.core().tree.contains(hash)
    }

    /// Blocks held in memory (older committed ones live on disk only).
    pub fn blocks_in_memory(&self) -> usize {
        match self {
            Replica::Global(r) => r.blocks_in_memory(),
            Replica::Local(r) => r.blocks_in_memory(),
        }
    }
}

/// What an operator asks a replica: where it is and who leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Global view, or the local view (term and round packed, see [`crate::local`]).
    pub view: u64,
    /// Local term (0 in the global layer).
    pub term: u64,
    /// Leader of the current view or term.
    pub leader: ReplicaIndex,
    pub committed_height: u64,
    pub high_qc_view: u64,
    pub last_voted: u64,
    /// Local: who leads next if the running term fails, then after that, and so on.
    pub successors: Vec<ReplicaIndex>,
    /// A block the safety state names that this replica does not hold; while it is missing
    /// the replica can neither propose nor vote on that branch.
    pub missing_block: Option<Hash>,
}

impl Replica {
    pub fn status(&self) -> Status {
        match self {
            Replica::Global(r) => Status {
                view: r.view(),
                term: 0,
                leader: crate::global::leader(r.view(), r.members()),
                committed_height: r.committed_height(),
                high_qc_view: r.safety().high_qc.view(),
                last_voted: r.safety().last_voted,
                successors: Vec::new(),
                missing_block: r.missing_block(),
            },
            Replica::Local(r) => Status {
                view: r
                    .safety()
                    .high_qc
                    .view()
                    .max(crate::local::view_at(r.term(), 0)),
                term: r.term(),
                leader: r.leader(),
                committed_height: r.committed_height(),
                high_qc_view: r.safety().high_qc.view(),
                last_voted: r.safety().last_voted,
                successors: r.successors(),
                missing_block: r.missing_block(),
            },
        }
    }

    /// One line of state for logs and the simulator's failure reports.
    pub fn describe(&self) -> String {
        match self {
            Replica::Global(r) => format!(
                "view {} voted {} high_qc {} lock {} committed {}{}",
                r.view(),
                r.safety().last_voted,
                r.safety().high_qc.view(),
                r.safety().lock.view(),
                r.committed_height(),
                missing(r.missing_block())
            ),
            Replica::Local(r) => format!(
                "term {} leader {} voted {:#x} high_qc {:#x} target {} committed {}{}",
                r.term(),
                r.leader(),
                r.safety().last_voted,
                r.safety().high_qc.view(),
                r.safety().vc_target,
                r.committed_height(),
                missing(r.missing_block())
            ),
        }
    }
}

fn missing(block: Option<Hash>) -> String {
    block.map_or_else(String::new, |h| format!(" missing {h}"))
}
