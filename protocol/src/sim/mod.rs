//! Deterministic simulator: many replicas of one domain in one process on a seeded virtual
//! clock and network (per-link delays and reordering, drops, partitions that heal, crashes with
//! restart from persisted state) with Byzantine replicas, and a checker for safety and
//! liveness. The same seed always gives the same run.

mod byzantine;
mod checker;

pub use byzantine::Strategy;
pub use checker::Checker;

use crate::core::Config;
use crate::crypto::{
    Counting, CryptoCounters, CryptoOp, Dealer, DealtKeys, SchemeId, SimScheme,
    ThresholdCryptoScheme, ThresholdKeys, load_keys,
};
use crate::io::{Event, Input, Output, SafetyState, Timer};
use crate::message::Message;
use crate::replica::{Replica, Stored};
use crate::types::{Block, Certificate, DomainId, Hash, Kind, ReplicaIndex, Tx};
use byzantine::Byzantine;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

/// Items the simulated admission rule refuses (the node's stands for encoding, signature
/// and history checks): a Byzantine leader proposes them; no honest replica may vote for them.
pub(crate) const REFUSED_PREFIX: &[u8] = b"refused/";

struct SimRule;

impl crate::core::PayloadRule for SimRule {
    fn admit(&mut self, _: DomainId, txs: &[Tx]) -> Vec<bool> {
        txs.iter()
            .map(|tx| !tx.bytes().starts_with(REFUSED_PREFIX))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Global,
    Local,
}

/// A deliberately broken rule, to show the checker catches what it should (tests only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Commit a block as soon as it is certified (a one-chain) instead of the chain rule.
    OneChainCommit,
    /// Restore only the committed chain after a crash, forgetting the persisted blocks above
    /// it (the rule before blocks were made durable before votes).
    VolatileBlocks,
    /// Vote without asking the admission rule about a proposal's items.
    NoPayloadRule,
}

/// A whole domain crashing at one instant and starting again from its disks: a site-wide
/// power cut, or an operator restarting every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartAll {
    /// While payload keeps arriving.
    UnderLoad,
    /// Payload stops first, so the domain has gone quiet when the power goes.
    Idle,
    /// The instant after one replica's vote left it.
    AfterVote,
}

impl RestartAll {
    pub const ALL: [RestartAll; 3] = [
        RestartAll::UnderLoad,
        RestartAll::Idle,
        RestartAll::AfterVote,
    ];
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub layer: Layer,
    pub n: usize,
    /// How many replicas are Byzantine (they rotate through [`Strategy::ALL`] by seed).
    pub byzantine: usize,
    pub seed: u64,
    /// Crashes, partitions and message loss in the middle third of the run.
    pub faults: bool,
    /// Virtual run length.
    pub duration_ms: u64,
    /// One transaction submitted every this many ms.
    pub tx_every_ms: u64,
    pub scheme: SchemeId,
    /// Local layer: send votes to the edge (replica 0).
    pub offload: bool,
    /// Force one strategy for every Byzantine replica instead of rotating.
    pub strategy: Option<Strategy>,
    /// Print every input and output to stderr (debugging one seed).
    pub trace: bool,
    /// Honest replicas that crash at the start and never come back (with the Byzantine ones,
    /// at most f for liveness to be owed).
    pub down: usize,
    /// In place of the chaotic middle: every replica (Byzantine ones too) crashes at once and
    /// restarts from its disk; the run then goes on healed.
    pub restart_all: Option<RestartAll>,
    /// The chance that the leader fails in a round (paper §6's p): the first proposal of each
    /// block of payload is lost with this probability, so the domain must time out and change
    /// its leader (local) or skip the view (global). Drawn once per block of payload (keyed by
    /// its first item), so a retry of the same items is not failed again: p view changes per
    /// block, as the paper counts them.
    pub leader_failure: f64,
    /// Pacing (`Config::propose_delay_ms`, `Config::min_block_interval_ms`). On by default,
    /// scaled like the simulator's timeouts (300 ms here for the node's 1 s).
    pub propose_delay_ms: u64,
    pub min_block_interval_ms: u64,
    /// `Config::busy_bytes`, if not the default.
    pub busy_bytes: Option<usize>,
    /// In place of the chaotic middle: an honest replica loses its disk the instant one of
    /// its votes leaves, and comes back with nothing, rejoining (`Stored::rejoin`).
    pub amnesia: bool,
    /// Start as the node does on an empty database: every replica rejoins (`Stored::rejoin`)
    /// and hears from the others before it signs.
    pub rejoin_at_start: bool,
    /// What the per-replica CPU figure is read from (nanoseconds; only differences are used).
    /// The default is a monotonic wall clock; a benchmark can pass the thread's CPU clock.
    pub cpu_clock: fn() -> u64,
}

/// Nanoseconds since the first call: the default [`SimConfig::cpu_clock`].
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl SimConfig {
    pub fn new(layer: Layer, n: usize, byzantine: usize, seed: u64) -> SimConfig {
        SimConfig {
            layer,
            n,
            byzantine,
            seed,
            faults: true,
            duration_ms: 40_000,
            tx_every_ms: 50,
            scheme: SchemeId::Sim,
            offload: seed.is_multiple_of(2),
            strategy: None,
            trace: false,
            down: 0,
            restart_all: None,
            leader_failure: 0.0,
            propose_delay_ms: 50,
            min_block_interval_ms: 100,
            busy_bytes: None,
            amnesia: false,
            rejoin_at_start: false,
            cpu_clock: monotonic_ns,
        }
    }
}

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub safety_violations: Vec<String>,
    pub liveness_failure: Option<String>,
    /// Blocks committed (the longest honest committed chain).
    pub commits: u64,
    pub view_changes: u64,
    /// Mean basic phases from a block's proposal to its first commit.
    pub phases_per_commit: f64,
    /// All certificates formed divided by committed blocks.
    pub phases_amortised: f64,
    pub phases: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Crypto operations summed over honest replicas: sign, verify share, combine, verify.
    pub crypto: [u64; 4],
    /// Proposals made (views/rounds that carried a block).
    pub proposals: u64,
    /// Replicas that finished rejoining after losing their disk (`SimConfig::amnesia`).
    pub rejoined: u64,
    /// Double votes by honest signers, as seen by any replica (each is also a safety
    /// violation).
    pub double_votes: u64,
    pub strategies: Vec<Strategy>,
    /// Committed blocks that carry payload (the rest are the empty blocks the idle rule
    /// proposes to finish a commit chain).
    pub payload_commits: u64,
    /// Proposals dropped by [`SimConfig::leader_failure`].
    pub leader_failures: u64,
    /// Per node: time inside the replica's `handle` (consensus rules and crypto; not the wire
    /// codec, which the simulator runs for it), by [`SimConfig::cpu_clock`]. Honest nodes only;
    /// 0 for the others.
    pub cpu_ns: Vec<u64>,
    /// Per node: crypto operations as in [`SimReport::crypto`]. Honest nodes only.
    pub crypto_by_node: Vec<[u64; 4]>,
    /// Per committed item, in submission order: virtual ms from its submission until the
    /// first honest replica committed it, and until the last one did.
    pub latency_ms: Vec<(u64, u64)>,
}

#[allow(clippy::large_enum_variant)]
enum Slot {
    Honest(Replica),
    Byzantine(Box<Byzantine>),
}

impl Slot {
    fn handle(&mut self, input: Input) -> Vec<Output> {
        match self {
            Slot::Honest(r) => r.handle(input),
            Slot::Byzantine(b) => b.handle(input),
        }
    }
}

#[derive(Default, Clone)]
struct Disk {
    safety: Option<SafetyState>,
    committed: Vec<Block>,
    /// Blocks above the committed chain, written with the safety state.
    blocks: BTreeMap<(u64, Hash), Block>,
}

impl Disk {
    fn stored(&self, broken: Option<Broken>) -> Stored {
        let blocks = if broken == Some(Broken::VolatileBlocks) {
            Vec::new()
        } else {
            self.blocks.values().cloned().collect()
        };
        Stored {
            committed: self.committed.clone(),
            blocks,
            safety: self.safety.clone(),
            rejoin: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    Deliver {
        to: usize,
        from: ReplicaIndex,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: Timer,
        generation: u64,
    },
    Persisted {
        node: usize,
        seq: u64,
        incarnation: u64,
    },
}

/// A running simulation. Nodes are replicas; a Twins replica has two nodes with one index.
pub struct Sim {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, What)>>,
    nodes: Vec<Option<Slot>>,
    /// Which replica index each node plays, and how (None: honest).
    index: Vec<ReplicaIndex>,
    strategy: Vec<Option<Strategy>>,
    disks: Vec<Disk>,
    /// Writes asked for and not yet durable, by node and sequence: a crash loses them.
    writing: Vec<BTreeMap<u64, (SafetyState, Vec<Block>)>>,
    incarnation: Vec<u64>,
    timer_generation: HashMap<(usize, std::mem::Discriminant<Timer>), u64>,
    dealt: DealtKeys,
    counters: Vec<Arc<CryptoCounters>>,
    byzantine: HashSet<ReplicaIndex>,
    /// Nodes crashed for good.
    down: HashSet<usize>,
    /// Partition: node -> side; messages cross only within a side.
    side: Option<Vec<u8>>,
    drop_rate: f64,
    pub checker: Checker,
    report: SimReport,
    phases_seen: HashSet<(crate::types::Kind, u64)>,
    phase_at_proposal: HashMap<u64, u64>,
    phase_latency: (u64, u64),
    tx_counter: u64,
    broken: Option<Broken>,
    /// No payload is submitted while set.
    paused: bool,
    /// Crash every node right after the next vote leaves one.
    crash_after_vote: bool,
    /// Wipe this node's disk right after its next vote leaves it.
    forget_after_vote: Option<usize>,
    /// Nodes restarted with `Stored::rejoin` (their disks were lost).
    rejoining: HashSet<usize>,
    /// Draws for [`SimConfig::leader_failure`], apart from `rng` so that runs without it keep
    /// their seeds' schedules.
    failure_rng: ChaCha8Rng,
    /// Blocks of payload (by first item) whose leader failure has been drawn, and the views
    /// whose proposals are being dropped.
    failure_drawn: HashSet<Hash>,
    failed_views: HashSet<u64>,
    cpu_ns: Vec<u64>,
}

fn domain_of(layer: Layer) -> DomainId {
    match layer {
        Layer::Global => DomainId::Global,
        Layer::Local => DomainId::Local(1),
    }
}

fn deal(scheme: SchemeId, n: usize, quorum: usize, seed: [u8; 32]) -> DealtKeys {
    match scheme {
        SchemeId::Sim => SimScheme::deal(n, quorum, seed),
        #[cfg(feature = "blsttc")]
        SchemeId::Blsttc => crate::crypto::BlsttcScheme::deal(n, quorum, seed),
        _ => ThresholdCryptoScheme::deal(n, quorum, seed),
    }
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        Sim::build_sim(cfg, None)
    }

    /// A simulation in which honest replicas run a deliberately broken rule.
    #[cfg(test)]
    pub(crate) fn with_broken(cfg: SimConfig, broken: Broken) -> Sim {
        Sim::build_sim(cfg, Some(broken))
    }

    fn build_sim(cfg: SimConfig, broken: Option<Broken>) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let n = cfg.n;
        let f = (n - 1) / 3;
        let dealt = deal(cfg.scheme, n, n - f, rng.r#gen());
        let mut order: Vec<ReplicaIndex> = (0..n)
            .filter_map(|i| ReplicaIndex::try_from(i).ok())
            .collect();
        order.shuffle(&mut rng);
        let byzantine: HashSet<ReplicaIndex> = order.iter().copied().take(cfg.byzantine).collect();
        let down: HashSet<ReplicaIndex> = order
            .iter()
            .copied()
            .skip(cfg.byzantine)
            .take(cfg.down)
            .collect();
        let mut strategies = Vec::new();
        let mut sim = Sim {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            index: Vec::new(),
            strategy: Vec::new(),
            disks: Vec::new(),
            writing: Vec::new(),
            incarnation: Vec::new(),
            timer_generation: HashMap::new(),
            dealt,
            counters: Vec::new(),
            byzantine: byzantine.clone(),
            down: HashSet::new(),
            side: None,
            drop_rate: 0.0,
            checker: Checker::new(domain_of(cfg.layer)),
            report: SimReport::default(),
            phases_seen: HashSet::new(),
            phase_at_proposal: HashMap::new(),
            phase_latency: (0, 0),
            tx_counter: 0,
            broken,
            paused: false,
            crash_after_vote: false,
            forget_after_vote: None,
            rejoining: HashSet::new(),
            failure_rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6c65_6164_6572_6661),
            failure_drawn: HashSet::new(),
            failed_views: HashSet::new(),
            cpu_ns: Vec::new(),
            cfg,
        };
        let mut k = 0usize;
        for i in 0..n {
            let idx = ReplicaIndex::try_from(i).unwrap_or(0);
            if byzantine.contains(&idx) {
                let s = sim
                    .cfg
                    .strategy
                    .unwrap_or(Strategy::ALL[(sim.cfg.seed as usize + k) % Strategy::ALL.len()]);
                k += 1;
                strategies.push(s);
                if s == Strategy::Twins {
                    // Two honest copies of one key: the second node is added below.
                    sim.add_node(idx, Some(Strategy::Twins));
                    sim.add_node(idx, Some(Strategy::Twins));
                    continue;
                }
                sim.add_node(idx, Some(s));
            } else {
                sim.add_node(idx, None);
            }
        }
        sim.report.strategies = strategies;
        for node in 0..sim.nodes.len() {
            if down.contains(&sim.index[node]) {
                sim.crash(node);
                sim.down.insert(node);
            }
        }
        if sim.cfg.rejoin_at_start {
            for node in 0..sim.nodes.len() {
                sim.deliver(node, Input::Start);
            }
        }
        sim
    }

    fn replica_config(&self, idx: ReplicaIndex) -> Config {
        let mut c = Config::new(domain_of(self.cfg.layer), idx, self.cfg.n);
        c.base_timeout_ms = 300;
        c.max_timeout_ms = 2_400;
        c.max_block_txs = 64;
        c.propose_delay_ms = self.cfg.propose_delay_ms;
        c.min_block_interval_ms = self.cfg.min_block_interval_ms;
        if let Some(b) = self.cfg.busy_bytes {
            c.busy_bytes = b;
        }
        if self.cfg.layer == Layer::Local {
            c.edge = Some(0);
            c.offload = self.cfg.offload;
        }
        c
    }

    fn keys(&self, idx: ReplicaIndex, counters: Arc<CryptoCounters>) -> Box<dyn ThresholdKeys> {
        let secret = self.dealt.secrets.get(usize::from(idx));
        match load_keys(self.dealt.scheme, self.cfg.n, &self.dealt.public, secret) {
            Ok(k) => Box::new(Counting::new(k, counters)),
            Err(e) => panic!("simulator dealt unusable keys: {e}"),
        }
    }

    fn build(
        &self,
        idx: ReplicaIndex,
        strategy: Option<Strategy>,
        disk: &Disk,
        rejoin: bool,
        counters: Arc<CryptoCounters>,
    ) -> Slot {
        let cfg = self.replica_config(idx);
        let mut stored = disk.stored(self.broken);
        stored.rejoin = rejoin;
        let mut replica = Replica::restore(cfg.clone(), self.keys(idx, counters.clone()), stored);
        if self.broken != Some(Broken::NoPayloadRule) {
            replica.set_payload_rule(Box::new(SimRule));
        }
        if self.broken == Some(Broken::OneChainCommit) {
            replica.commit_on_one_chain();
        }
        match strategy {
            None | Some(Strategy::Twins) => Slot::Honest(replica),
            Some(s) => Slot::Byzantine(Box::new(Byzantine::new(
                s,
                replica,
                cfg,
                self.keys(idx, Arc::new(CryptoCounters::default())),
            ))),
        }
    }

    fn add_node(&mut self, idx: ReplicaIndex, strategy: Option<Strategy>) {
        let counters = Arc::new(CryptoCounters::default());
        let rejoin = self.cfg.rejoin_at_start;
        let slot = self.build(idx, strategy, &Disk::default(), rejoin, counters.clone());
        self.nodes.push(Some(slot));
        self.index.push(idx);
        self.strategy.push(strategy);
        self.disks.push(Disk::default());
        self.writing.push(BTreeMap::new());
        self.incarnation.push(0);
        self.counters.push(counters);
        self.cpu_ns.push(0);
    }

    fn honest(&self, node: usize) -> bool {
        !self.byzantine.contains(&self.index[node])
    }

    fn push(&mut self, at: u64, what: What) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, what)));
    }

    /// Nodes playing replica `idx` (two for Twins).
    fn nodes_of(&self, idx: ReplicaIndex) -> Vec<usize> {
        (0..self.index.len())
            .filter(|&i| self.index[i] == idx)
            .collect()
    }

    fn can_reach(&self, from: usize, to: usize) -> bool {
        match &self.side {
            Some(side) => side[from] == side[to],
            None => true,
        }
    }

    fn send(&mut self, from_node: usize, to: ReplicaIndex, msg: &Message) {
        // Every message crosses the real wire codec, bound and all.
        let bytes = crate::codec::encode(msg);
        for to_node in self.nodes_of(to) {
            if to_node == from_node || !self.can_reach(from_node, to_node) {
                continue;
            }
            if self.drop_rate > 0.0 && self.rng.gen_bool(self.drop_rate) {
                continue;
            }
            let delay = self.rng.gen_range(2..40);
            self.report.messages += 1;
            self.report.bytes += bytes.len() as u64;
            let from = self.index[from_node];
            self.push(
                self.now + delay,
                What::Deliver {
                    to: to_node,
                    from,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn apply(&mut self, node: usize, outputs: Vec<Output>) {
        for out in outputs {
            // A leader's proposal carries the QC its own vote went into (a collector's vote
            // never travels alone).
            let forget = self.forget_after_vote == Some(node)
                && matches!(
                    &out,
                    Output::Send {
                        msg: Message::Vote(_) | Message::Propose(_),
                        ..
                    } | Output::Broadcast(Message::Vote(_) | Message::Propose(_))
                );
            if let Output::Send { msg, .. } | Output::Broadcast(msg) = &out {
                self.check_durable(node, msg);
            }
            if let Output::Send { msg, .. } | Output::Broadcast(msg) = &out
                && self.leader_fails(node, msg)
            {
                continue;
            }
            match out {
                Output::Send { to, msg } => {
                    self.send(node, to, &msg);
                    if self.crash_after_vote && matches!(msg, Message::Vote(_)) {
                        // The power goes the instant the vote is on the wire: nothing after it
                        // in this step happens.
                        self.crash_after_vote = false;
                        self.crash_all();
                        return;
                    }
                }
                Output::Broadcast(msg) => {
                    for to in 0..self.cfg.n {
                        let to = ReplicaIndex::try_from(to).unwrap_or(0);
                        if to != self.index[node] {
                            self.send(node, to, &msg);
                        }
                    }
                }
                Output::SetTimer { timer, after_ms } => {
                    let key = (node, std::mem::discriminant(&timer));
                    let g = self.timer_generation.entry(key).or_insert(0);
                    *g += 1;
                    let generation = *g;
                    self.push(
                        self.now + after_ms,
                        What::Timer {
                            node,
                            timer,
                            generation,
                        },
                    );
                }
                Output::Persist { seq, state, blocks } => {
                    self.writing[node].insert(seq, (state, blocks));
                    let incarnation = self.incarnation[node];
                    self.push(
                        self.now + 1,
                        What::Persisted {
                            node,
                            seq,
                            incarnation,
                        },
                    );
                }
                Output::Commit { block, .. } => {
                    if self.honest(node) {
                        let phases = self.phases_seen.len() as u64;
                        if self.checker.commit(node, &block, self.now) {
                            if !block.payload.is_empty() {
                                self.report.payload_commits += 1;
                            }
                            if let Some(start) = self.phase_at_proposal.get(&block.view) {
                                self.phase_latency.0 += phases - start;
                                self.phase_latency.1 += 1;
                            }
                        }
                    }
                    let disk = &mut self.disks[node];
                    let height = block.height;
                    disk.committed.push(block);
                    disk.blocks = disk.blocks.split_off(&(height + 1, Hash::ZERO));
                }
                Output::Event(e) => self.on_event(node, e),
            }
            if forget {
                // Its disk is gone the instant the share is on the wire.
                self.forget_after_vote = None;
                self.crash(node);
                self.disks[node] = Disk::default();
                self.rejoining.insert(node);
                return;
            }
        }
    }

    /// [`SimConfig::leader_failure`]: whether this message is an honest leader's proposal that
    /// is lost because its leader fails in that round.
    fn leader_fails(&mut self, node: usize, msg: &Message) -> bool {
        let Message::Propose(p) = msg else {
            return false;
        };
        if self.failed_views.contains(&p.block.view) {
            return true;
        }
        let Some(first) = p.block.payload.first() else {
            return false;
        };
        if self.cfg.leader_failure <= 0.0
            || !self.honest(node)
            || !self.failure_drawn.insert(first.id())
            || !self.failure_rng.gen_bool(self.cfg.leader_failure.min(1.0))
        {
            return false;
        }
        self.failed_views.insert(p.block.view);
        self.report.leader_failures += 1;
        true
    }

    /// DESIGN §7: no share of an honest replica leaves it, alone or inside a certificate, before
    /// the safety state covering it is on its disk. (Twins are two nodes with one key: a
    /// certificate one forwards may hold the other's share.)
    fn check_durable(&mut self, node: usize, msg: &Message) {
        if !self.honest(node) || self.strategy[node].is_some() {
            return;
        }
        let me = self.index[node];
        let local = self.cfg.layer == Layer::Local;
        // The view a share of this kind makes us give up (local terms: their first round).
        let covers = |m: &crate::types::SignedMsg| match m.kind {
            Kind::ViewChange | Kind::Confirm if local => crate::local::view_at(m.view, 0),
            _ => m.view,
        };
        let mut shares: Vec<u64> = Vec::new();
        let mut certs: Vec<&Certificate> = Vec::new();
        match msg {
            Message::Propose(p) => {
                certs.push(&p.block.justify);
                certs.extend(p.timeout.iter());
                certs.extend(p.term.iter().flat_map(|t| [&t.confirm, &t.chosen]));
            }
            Message::Vote(v) => shares.push(covers(&v.msg)),
            Message::NewView {
                timeout,
                high_qc,
                high_tc,
                vote,
            } => {
                shares.push(covers(&timeout.msg));
                shares.extend(vote.iter().map(|v| covers(&v.msg)));
                certs.push(high_qc);
                certs.extend(high_tc.iter());
            }
            Message::ViewChange {
                share,
                high_qc,
                current,
                ..
            } => {
                shares.push(covers(&share.msg));
                certs.push(high_qc);
                certs.extend(current.iter().flat_map(|t| [&t.confirm, &t.chosen]));
            }
            Message::NewTerm { vc, chosen, .. } => certs.extend([vc, chosen]),
            Message::Refuse { high_qc, .. } | Message::Certificate(high_qc) => certs.push(high_qc),
            Message::TermStart(t) => certs.extend([&t.confirm, &t.chosen]),
            // Relayed, not signed now: blocks (their certificates), and the certificate a
            // rejoining replica is shown, which may hold a share it has forgotten.
            Message::BlockRequest { .. }
            | Message::BlockResponse(_)
            | Message::SafetyQuery
            | Message::SafetyReport { .. } => {}
        }
        shares.extend(
            certs
                .into_iter()
                .filter(|c| !c.is_genesis() && c.signers.contains(me))
                .map(|c| covers(&c.msg)),
        );
        let durable = self.disks[node].safety.as_ref().map_or(0, |s| s.last_voted);
        if let Some(v) = shares.into_iter().find(|v| *v > durable) {
            self.checker.violation(format!(
                "node {node} sent its share for view {v:#x} before it was durable (on disk: {durable:#x}): {msg:?}"
            ));
        }
    }

    fn on_event(&mut self, node: usize, e: Event) {
        match e {
            Event::CertificateFormed { kind, view } => {
                self.phases_seen.insert((kind, view));
            }
            Event::Proposed { view, .. } => {
                if self.honest(node) {
                    self.report.proposals += 1;
                }
                let phases = self.phases_seen.len() as u64;
                self.phase_at_proposal.entry(view).or_insert(phases);
            }
            Event::ViewChange { to, .. } => {
                if self.honest(node) {
                    self.checker.view_change(to);
                }
            }
            Event::DoubleVote { signer, view, .. } => {
                // Seen by anyone, about an honest signer: that replica voted twice in one view,
                // which only a share sent before its safety state was durable can cause.
                if !self.byzantine.contains(&signer) {
                    self.report.double_votes += 1;
                    self.report.safety_violations.push(format!(
                        "honest replica {signer} voted twice in view {view} (seen by node {node})"
                    ));
                }
            }
            Event::NewLeader { .. }
            | Event::Rejected { .. }
            | Event::AnchorRejected { .. }
            | Event::Unavailable { .. }
            | Event::PoolRefused { .. }
            | Event::Transferred { .. } => {}
            Event::Rejoined { .. } => self.report.rejoined += 1,
        }
    }

    fn deliver(&mut self, node: usize, input: Input) {
        let Some(slot) = self.nodes[node].as_mut() else {
            return;
        };
        let trace = self.cfg.trace && !matches!(input, Input::Payload(_));
        if trace {
            eprintln!("{:>6} {node} <- {input:?}", self.now);
        }
        let started = (self.cfg.cpu_clock)();
        let out = slot.handle(input);
        let spent = (self.cfg.cpu_clock)().saturating_sub(started);
        self.cpu_ns[node] += spent;
        if trace {
            for o in &out {
                eprintln!("{:>6} {node} -> {o:?}", self.now);
            }
        }
        self.apply(node, out);
    }

    fn submit(&mut self) {
        if self.paused {
            return;
        }
        self.tx_counter += 1;
        let tx = Tx::new(format!("tx-{}-{}", self.cfg.seed, self.tx_counter).into_bytes());
        self.checker.submitted(tx.id(), self.now);
        // The node gossips payload to every member; model that as a direct hand-off.
        for node in 0..self.nodes.len() {
            self.deliver(node, Input::Payload(vec![tx.clone()]));
        }
    }

    fn crash(&mut self, node: usize) {
        self.nodes[node] = None;
        self.writing[node].clear();
        self.incarnation[node] += 1;
    }

    fn crash_all(&mut self) {
        for node in 0..self.nodes.len() {
            if self.nodes[node].is_some() {
                self.crash(node);
            }
        }
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].is_some() || self.down.contains(&node) {
            return;
        }
        let idx = self.index[node];
        let strategy = self.strategy[node];
        let disk = self.disks[node].clone();
        let rejoin = self.rejoining.remove(&node);
        let slot = self.build(idx, strategy, &disk, rejoin, self.counters[node].clone());
        self.nodes[node] = Some(slot);
        self.checker.restarted(node, disk.committed.len() as u64);
        self.deliver(node, Input::Start);
    }

    /// Run until `until`, submitting payload on schedule.
    fn run_until(&mut self, until: u64) {
        let mut next_tx = self.now.div_ceil(self.cfg.tx_every_ms) * self.cfg.tx_every_ms;
        loop {
            let next_event = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next = match next_event {
                Some(t) if t <= next_tx => t,
                _ => next_tx,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_event == Some(next) {
                let Some(Reverse((_, _, what))) = self.queue.pop() else {
                    break;
                };
                self.dispatch(what);
            } else {
                self.submit();
                next_tx += self.cfg.tx_every_ms;
            }
        }
        self.now = until;
    }

    fn dispatch(&mut self, what: What) {
        match what {
            What::Deliver { to, from, bytes } => {
                let msg = match crate::codec::decode::<Message>(
                    &bytes,
                    crate::codec::MAX_MESSAGE_BYTES,
                ) {
                    Ok(m) => m,
                    Err(e) => panic!("simulator sent an undecodable message: {e}"),
                };
                self.deliver(to, Input::Message { from, msg });
            }
            What::Timer {
                node,
                timer,
                generation,
            } => {
                let key = (node, std::mem::discriminant(&timer));
                if self.timer_generation.get(&key) == Some(&generation) {
                    self.deliver(node, Input::Timeout(timer));
                }
            }
            What::Persisted {
                node,
                seq,
                incarnation,
            } => {
                if self.incarnation[node] == incarnation {
                    if let Some((state, blocks)) = self.writing[node].remove(&seq) {
                        let disk = &mut self.disks[node];
                        disk.safety = Some(state);
                        for b in blocks {
                            disk.blocks.insert((b.height, b.hash()), b);
                        }
                    }
                    self.deliver(node, Input::Persisted(seq));
                }
            }
        }
    }

    /// The whole scenario: a calm start, a chaotic middle (crashes, partitions, loss), a healed
    /// end; then the checker's verdict.
    pub fn run(mut self) -> SimReport {
        let d = self.cfg.duration_ms;
        let (chaos_start, chaos_end) = (d / 4, d / 2);
        self.run_until(chaos_start);
        if let Some(how) = self.cfg.restart_all {
            self.power_cut(how, chaos_end);
        } else if self.cfg.amnesia {
            self.lose_a_disk(chaos_end);
        } else if self.cfg.faults {
            self.chaos(chaos_end);
        }
        self.heal();
        let healed_at = self.now;
        self.checker.healed(healed_at);
        self.run_until(d);
        self.finish()
    }

    /// Faults until `end`: a partition (separating Twins), up to f crashes with restarts,
    /// message loss, in random order and lengths.
    fn chaos(&mut self, end: u64) {
        let f = (self.cfg.n - 1) / 3;
        while self.now < end {
            let step = self.rng.gen_range(500..3000).min(end - self.now);
            match self.rng.gen_range(0..4) {
                0 => {
                    let mut side: Vec<u8> = (0..self.nodes.len())
                        .map(|_| self.rng.gen_range(0..2))
                        .collect();
                    // Twins sit on both sides so that both copies act.
                    let mut twins_seen = HashSet::new();
                    for (node, s) in side.iter_mut().enumerate() {
                        let idx = self.index[node];
                        if self.index.iter().filter(|&&i| i == idx).count() == 2 {
                            *s = u8::from(!twins_seen.insert(idx));
                        }
                    }
                    self.side = Some(side);
                }
                1 => {
                    let down = self.nodes.iter().filter(|n| n.is_none()).count();
                    if down < f {
                        let node = self.rng.gen_range(0..self.nodes.len());
                        self.crash(node);
                    }
                }
                2 => self.drop_rate = self.rng.gen_range(0.05..0.3),
                _ => {
                    self.side = None;
                    self.drop_rate = 0.0;
                    let down: Vec<usize> = (0..self.nodes.len())
                        .filter(|&i| self.nodes[i].is_none())
                        .collect();
                    for node in down {
                        self.restart(node);
                    }
                }
            }
            let until = self.now + step;
            self.run_until(until);
        }
    }

    /// An honest replica loses its disk the instant after a vote left it, and restarts with
    /// nothing after a while; the others go on.
    fn lose_a_disk(&mut self, end: u64) {
        let honest: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.honest(i)).collect();
        let node = honest[self.rng.gen_range(0..honest.len())];
        self.forget_after_vote = Some(node);
        while self.forget_after_vote.is_some() && self.now < end {
            let step = self.now + 1;
            self.run_until(step);
        }
        self.forget_after_vote = None;
        let back = self.now + self.rng.gen_range(200..2000);
        self.run_until(back.min(end));
        self.restart(node);
        self.run_until(end);
    }

    /// Every node goes down at one instant, stays down for a while (messages in flight are
    /// lost), and the run goes on from what the disks held.
    fn power_cut(&mut self, how: RestartAll, end: u64) {
        match how {
            RestartAll::UnderLoad => self.crash_all(),
            RestartAll::Idle => {
                self.paused = true;
                let quiet = self.now + (end - self.now) / 2;
                self.run_until(quiet);
                self.crash_all();
            }
            RestartAll::AfterVote => {
                self.crash_after_vote = true;
                let deadline = self.now + (end - self.now) / 2;
                while self.crash_after_vote && self.now < deadline {
                    let step = self.now + 1;
                    self.run_until(step);
                }
                self.crash_after_vote = false;
                self.crash_all();
            }
        }
        let back = self.now + self.rng.gen_range(200..2000);
        self.run_until(back.min(end));
        self.paused = false;
        for node in 0..self.nodes.len() {
            self.restart(node);
        }
        self.run_until(end);
    }

    fn heal(&mut self) {
        self.side = None;
        self.drop_rate = 0.0;
        for node in 0..self.nodes.len() {
            self.restart(node);
        }
    }

    fn finish(mut self) -> SimReport {
        let honest: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.honest(i) && !self.down.contains(&i))
            .collect();
        let verdict = self.checker.verdict(&honest);
        self.report.safety_violations = verdict.safety;
        self.report.liveness_failure = verdict.liveness.map(|l| {
            let states: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| match n {
                    Some(Slot::Honest(r)) => format!("{i}: {}", r.describe()),
                    Some(Slot::Byzantine(_)) => format!("{i}: byzantine"),
                    None => format!("{i}: down"),
                })
                .collect();
            format!("{l}; {}", states.join("; "))
        });
        self.report.commits = verdict.commits;
        self.report.latency_ms = self.checker.latencies();
        self.report.view_changes = self.checker.view_changes();
        self.report.phases = self.phases_seen.len() as u64;
        self.report.phases_per_commit = if self.phase_latency.1 == 0 {
            0.0
        } else {
            self.phase_latency.0 as f64 / self.phase_latency.1 as f64
        };
        self.report.phases_amortised = if verdict.commits == 0 {
            0.0
        } else {
            self.report.phases as f64 / verdict.commits as f64
        };
        self.report.cpu_ns = vec![0; self.nodes.len()];
        self.report.crypto_by_node = vec![[0; 4]; self.nodes.len()];
        for node in honest {
            self.report.cpu_ns[node] = self.cpu_ns[node];
            self.report.crypto_by_node[node] = self.counters[node].snapshot();
            let c = &self.counters[node];
            for (i, op) in [
                CryptoOp::SignShare,
                CryptoOp::VerifyShare,
                CryptoOp::Combine,
                CryptoOp::Verify,
            ]
            .into_iter()
            .enumerate()
            {
                self.report.crypto[i] += c.get(op);
            }
        }
        self.report
    }
}

#[cfg(test)]
mod pacing_tests;
#[cfg(test)]
mod tests;
