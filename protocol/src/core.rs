//! Machinery both layers share: certificate checking with a cache, the block tree and block
//! sync, the mempool, the commit and lock updates, and holding shares until their safety
//! state is durable. The layers (`global`, `local`) hold the rules; this holds the state.

mod mempool;
mod pacing;
mod payload;
mod rejoin;

pub use mempool::{PoolLimits, PoolRefusal};

use crate::anchor::{Anchor, AnchorRules, CommitProof, Tips};
use crate::collector::{Added, Collector};
use crate::crypto::Share;
use crate::crypto::ThresholdKeys;
use crate::io::{Event, Output, Reject, SafetyState, Timer};
use crate::message::Message;
use crate::tree::BlockTree;
use crate::types::{Block, Certificate, DomainId, Hash, Kind, ReplicaIndex, SignedMsg, Tx, View};
use mempool::Mempool;
use pacing::{Pacer, Work};
use rejoin::Rejoin;
pub(crate) use rejoin::Rejoined;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

/// Static parameters of one replica in one domain.
#[derive(Clone, Debug)]
pub struct Config {
    pub domain: DomainId,
    pub me: ReplicaIndex,
    pub n: usize,
    /// First view timeout; doubles per view (or term) without a commit.
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub max_block_txs: usize,
    /// Bound on a block's payload bytes, under the message size limit with room for the
    /// header and certificates. Global blocks carry whole local blocks in anchors.
    pub max_block_bytes: usize,
    /// Local domains: the edge member (ranks first at genesis, collects votes).
    pub edge: Option<ReplicaIndex>,
    /// Local domains: send votes to the edge rather than the leader (paper §5).
    pub offload: bool,
    /// Bounds of the payload pool.
    pub pool: PoolLimits,
    /// Pacing (see `core::pacing`): a leader holds new payload back this long, unless it is
    /// `busy_bytes` or more, so light traffic makes few, fuller blocks. 0 proposes at once.
    pub propose_delay_ms: u64,
    /// Pacing: a leader proposes at most once per this interval (global: measured from the
    /// certificate that lets it propose, as leaders rotate). 0 leaves the chain's own pace.
    pub min_block_interval_ms: u64,
    /// Pacing: new payload of at least this many bytes is proposed at once, without the delay
    /// or the interval. Pacing saves energy on small blocks; a big one gains nothing by
    /// waiting, and under load the waits only add latency.
    pub busy_bytes: usize,
    /// Committed blocks kept in memory (see [`memory_window`]); a member further behind than
    /// its peers' windows catches up by state transfer (`Input::StateTransfer`).
    pub memory_window: u64,
}

impl Config {
    /// Pacing defaults, chosen from `lcbft-bench energy` (README, Performance).
    pub const DEFAULT_PROPOSE_DELAY_MS: u64 = 200;
    pub const DEFAULT_MIN_BLOCK_INTERVAL_MS: u64 = 500;

    pub fn new(domain: DomainId, me: ReplicaIndex, n: usize) -> Config {
        let max_block_bytes = match domain {
            DomainId::Global => 3 << 20,
            DomainId::Local(_) => 1 << 20,
        };
        Config {
            domain,
            me,
            n,
            base_timeout_ms: 1000,
            max_timeout_ms: 30_000,
            max_block_txs: 8192,
            max_block_bytes,
            pool: PoolLimits::new(max_block_bytes),
            edge: None,
            offload: false,
            propose_delay_ms: Config::DEFAULT_PROPOSE_DELAY_MS,
            min_block_interval_ms: Config::DEFAULT_MIN_BLOCK_INTERVAL_MS,
            busy_bytes: Config::busy_bytes(domain, max_block_bytes),
            memory_window: memory_window(domain),
        }
    }

    /// Local: 16 KiB (~50 traces), seconds of a light domain's traffic, so light loads stay
    /// paced, but a tenth of a second at 2,000/s, where a sixteenth held each block back
    /// ~220 ms and a commit, two blocks, ~half a second. Global: a sixteenth (192 KiB) still.
    /// At a sixty-fourth the global chain fell to under one block a second in two of six
    /// runs at 2,000/s (global commits took 10 s), against none of twelve at a sixteenth; why
    /// is not known yet.
    fn busy_bytes(domain: DomainId, max_block_bytes: usize) -> usize {
        match domain {
            DomainId::Global => max_block_bytes / 16,
            DomainId::Local(_) => max_block_bytes / 64,
        }
    }

    /// Propose as soon as anything is pending, as before pacing.
    pub fn unpaced(mut self) -> Config {
        self.propose_delay_ms = 0;
        self.min_block_interval_ms = 0;
        self
    }

    /// Tolerated faults: the largest f with n >= 3f + 1.
    pub fn f(&self) -> usize {
        (self.n - 1) / 3
    }

    /// Pacing is added on top of the doubling timeout, so that it alone never changes a
    /// leader.
    pub fn timeout_ms(&self, failures: u64) -> u64 {
        let factor = 1u64 << failures.min(16);
        self.base_timeout_ms
            .saturating_mul(factor)
            .min(self.max_timeout_ms)
            .saturating_add(self.pacing_ms())
    }

    /// What pacing may add to the wait for progress: a global replica stays in a view from
    /// the certificate that opened it until the next leader proposes, across two leaders'
    /// holds (each the longer of delay and interval), and the first round of a term or a view
    /// may wait out both. Twice delay plus interval covers every case.
    pub fn pacing_ms(&self) -> u64 {
        self.propose_delay_ms
            .saturating_add(self.min_block_interval_ms)
            .saturating_mul(2)
    }
}

/// A sync answer's bounds, from memory or (the node's) from disk.
pub const SYNC_BATCH_BLOCKS: usize = 128;
pub const SYNC_BATCH_BYTES: usize = 1 << 20;
const MAX_VERIFIED_CACHE: usize = 4096;
/// Committed payload ids remembered for the duplicate check, past what the store has written.
const MAX_RECENT: usize = 65_536;
/// Committed blocks a replica keeps in memory, and how often it prunes. Older ones live on
/// disk only: the node restores this tail and serves older blocks to peers from its store.
/// Global blocks carry whole local blocks in their anchors, so the global window is short.
pub fn memory_window(domain: DomainId) -> u64 {
    match domain {
        DomainId::Global => 128,
        DomainId::Local(_) => 1024,
    }
}

pub(crate) struct Core {
    pub cfg: Config,
    pub keys: Box<dyn ThresholdKeys>,
    pub tree: BlockTree,
    pub collector: Collector,
    pub safety: SafetyState,
    pub out: Vec<Output>,
    verified: HashSet<Hash>,
    verified_order: VecDeque<Hash>,
    mempool: Mempool,
    pacer: Pacer,
    /// Judges what the protocol cannot about a proposed block's items (the node's admission
    /// rule: encoding, signature, history).
    rule: Box<dyn PayloadRule>,
    /// Ids committed recently: the store may not have them yet when the next proposal comes.
    recent: HashSet<Hash>,
    recent_order: VecDeque<Hash>,
    persist_seq: u64,
    held: Vec<(u64, Output)>,
    /// Our own shares, handed back to the layer only once the state covering them is durable:
    /// nothing built on them (a certificate we complete, a proposal carrying it) may leave
    /// before that.
    own: Vec<(u64, Message)>,
    /// The highest persist known durable.
    durable: u64,
    /// The block of our latest vote: with the highest QC's and the lock's, the branches a
    /// `Persist` carries to disk.
    voted: Option<Hash>,
    /// Uncommitted blocks already handed out in a `Persist`, by height.
    saved: BTreeSet<(u64, Hash)>,
    /// Blocks requested and not yet received: the peer last asked, and how many were asked.
    missing: BTreeMap<Hash, (ReplicaIndex, usize)>,
    sync_round: u64,
    /// Global validators: anchor rules, and each domain's anchored tip in the committed chain.
    anchors: Option<AnchorRules>,
    anchored: Tips,
    /// A block the layer still reads when pruning the tree (the local term's start).
    pub pinned: Hash,
    pruned_at: u64,
    /// While the safety state may be lost or old: nothing is signed (see `core::rejoin`).
    rejoin: Option<Rejoin>,
}

impl Core {
    pub fn new(cfg: Config, keys: Box<dyn ThresholdKeys>, chain: usize) -> Core {
        let mempool = Mempool::new(cfg.pool, cfg.n);
        let pacer = Pacer::new(cfg.propose_delay_ms, cfg.min_block_interval_ms);
        Core {
            pacer,
            tree: BlockTree::new(cfg.domain, chain, cfg.n),
            safety: SafetyState::genesis(cfg.domain),
            cfg,
            keys,
            collector: Collector::default(),
            out: Vec::new(),
            verified: HashSet::new(),
            verified_order: VecDeque::new(),
            mempool,
            rule: Box::new(AcceptAll),
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
            persist_seq: 0,
            held: Vec::new(),
            own: Vec::new(),
            durable: 0,
            voted: None,
            saved: BTreeSet::new(),
            missing: BTreeMap::new(),
            sync_round: 0,
            anchors: None,
            anchored: Tips::new(),
            pinned: Hash::ZERO,
            pruned_at: 0,
            rejoin: None,
        }
    }

    pub fn me(&self) -> ReplicaIndex {
        self.cfg.me
    }

    pub fn send(&mut self, to: ReplicaIndex, msg: Message) {
        self.out.push(Output::Send { to, msg });
    }

    pub fn broadcast(&mut self, msg: Message) {
        self.out.push(Output::Broadcast(msg));
    }

    pub fn event(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }

    pub fn reject(&mut self, from: ReplicaIndex, reason: Reject) {
        self.event(Event::Rejected { from, reason });
    }

    pub fn set_timer(&mut self, timer: Timer, after_ms: u64) {
        self.out.push(Output::SetTimer { timer, after_ms });
    }

    /// Persist the safety state with the uncommitted blocks it depends on, and release `then`
    /// only once that is durable. The blocks are the branches (down to the committed block)
    /// of our latest vote, our highest QC and our lock, less those persisted already: a
    /// domain restarted as a whole finds them again (no peer has them if none of us kept
    /// them). Blocks a peer sends that we never vote for or see certified are not written.
    pub fn persist_then(&mut self, then: Vec<Output>) -> u64 {
        self.persist_seq += 1;
        let seq = self.persist_seq;
        let committed = self.tree.committed().1;
        self.saved = self.saved.split_off(&(committed + 1, Hash::ZERO));
        let roots = [
            self.voted,
            Some(self.safety.high_qc.block()),
            Some(self.safety.lock.block()),
        ];
        let mut blocks = Vec::new();
        for mut hash in roots.into_iter().flatten() {
            // A connected block has its whole branch in the tree, and a saved one had its
            // branch saved with it: stop there.
            while let Some(node) = self.tree.get(&hash) {
                let height = node.block.height;
                if height <= committed || !self.saved.insert((height, hash)) {
                    break;
                }
                blocks.push((*node.block).clone());
                hash = node.block.parent;
            }
        }
        self.out.push(Output::Persist {
            seq,
            state: self.safety.clone(),
            blocks,
        });
        self.held.extend(then.into_iter().map(|o| (seq, o)));
        seq
    }

    /// `persist_then`, and hand `own` (a message carrying our share) back to the layer once
    /// durable, as if we had sent it to ourselves.
    pub fn persist_with_own(&mut self, then: Vec<Output>, own: Message) -> u64 {
        let seq = self.persist_then(then);
        self.own.push((seq, own));
        seq
    }

    /// Release `outputs` once persist `seq` is durable, at once if it is already: re-sending
    /// a share costs no write of its own, whoever asks for it.
    pub fn after(&mut self, seq: u64, outputs: Vec<Output>) {
        if seq <= self.durable {
            self.out.extend(outputs);
        } else {
            self.held.extend(outputs.into_iter().map(|o| (seq, o)));
        }
    }

    /// Send `outputs` only if persist `seq` is durable; otherwise drop them. For answers a
    /// peer asks for: it asks again, and nothing it sends makes us write or hold more.
    pub fn if_durable(&mut self, seq: u64, outputs: Vec<Output>) {
        if seq <= self.durable {
            self.out.extend(outputs);
        }
    }

    /// The block we are voting for: the next `Persist` writes its branch.
    pub fn voted_for(&mut self, hash: Hash) {
        self.voted = Some(hash);
    }

    /// The persist `seq` is durable: release what waited for it. Returns our own messages
    /// for the layer to take in.
    pub fn persisted(&mut self, seq: u64) -> Vec<Message> {
        self.durable = self.durable.max(seq);
        let (ready, keep): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|(s, _)| *s <= seq);
        self.held = keep;
        self.out.extend(ready.into_iter().map(|(_, o)| o));
        let (ready, keep): (Vec<_>, Vec<_>) = self.own.drain(..).partition(|(s, _)| *s <= seq);
        self.own = keep;
        ready.into_iter().map(|(_, m)| m).collect()
    }

    /// Every phase's share goes through here: the one `Collector`, the penalty for bad
    /// shares, the cache entry for the certificate formed, and the phase count.
    pub fn collect(
        &mut self,
        from: ReplicaIndex,
        msg: SignedMsg,
        share: Share,
    ) -> Option<Certificate> {
        let (cert, bad) = match self.collector.add(self.keys.as_ref(), msg, from, share) {
            Added::Formed { cert, invalid } => (Some(cert), invalid),
            Added::Invalid(bad) => (None, bad),
            Added::Pending | Added::Ignored => (None, Vec::new()),
            Added::DoubleVote {
                signer,
                view,
                first,
                second,
            } => {
                self.event(Event::DoubleVote {
                    signer,
                    view,
                    first,
                    second,
                });
                (None, Vec::new())
            }
        };
        for b in bad {
            self.reject(b, Reject::BadShare);
        }
        let cert = cert?;
        self.remember(cert.id());
        self.event(Event::CertificateFormed {
            kind: msg.kind,
            view: msg.view,
        });
        Some(cert)
    }

    /// Check a certificate once: domain, canonical signer bitmap, signature; verified ones are
    /// cached by id so no certificate costs two verifications here.
    pub fn check_cert(&mut self, cert: &Certificate) -> bool {
        if cert.msg.domain != self.cfg.domain {
            return false;
        }
        if cert.is_genesis() {
            return cert == &Certificate::genesis(self.cfg.domain);
        }
        let id = cert.id();
        if self.verified.contains(&id) {
            return true;
        }
        // A padded bitmap would pass the signature yet misreport who signed: it would steer
        // the availability ranking and make the stored commit proof fail as an anchor.
        if !cert.signers.is_canonical(self.cfg.n, self.keys.quorum())
            || !self.keys.verify(&cert.msg.bytes(), &cert.signature)
        {
            return false;
        }
        self.remember(id);
        true
    }

    fn remember(&mut self, id: Hash) {
        if self.verified.insert(id) {
            self.verified_order.push_back(id);
            if self.verified_order.len() > MAX_VERIFIED_CACHE
                && let Some(old) = self.verified_order.pop_front()
            {
                self.verified.remove(&old);
            }
        }
    }

    pub fn is_qc(&self, cert: &Certificate) -> bool {
        cert.msg.kind == Kind::Vote && cert.msg.domain == self.cfg.domain
    }

    /// Insert a block; on a gap, fetch the missing parent from `from`. Returns whether the
    /// block is now connected to the tree.
    pub fn insert_block(&mut self, block: Block, from: ReplicaIndex) -> bool {
        let hash = block.hash();
        let height = block.height;
        self.missing.remove(&hash);
        match self.tree.insert(block) {
            Ok(_) => true,
            Err(parent) => {
                // A parent at or below our committed height is committed or off our chain
                // (after a state transfer, pruned everywhere): never worth asking for.
                if height > self.tree.committed().1.saturating_add(1) {
                    self.fetch(parent, from);
                }
                false
            }
        }
    }

    /// Ask `from` for a block we know only by its certified hash.
    pub fn fetch(&mut self, hash: Hash, from: ReplicaIndex) {
        if self.tree.knows(&hash) || self.missing.contains_key(&hash) {
            return;
        }
        let from = if from == self.me() {
            self.next_peer(from)
        } else {
            from
        };
        self.missing.insert(hash, (from, 1));
        let above = self.tree.committed().1;
        self.send(from, Message::BlockRequest { hash, above });
        if self.missing.len() == 1 {
            self.sync_round += 1;
            self.set_timer(Timer::Sync(self.sync_round), self.cfg.base_timeout_ms / 2);
        }
    }

    fn next_peer(&self, after: ReplicaIndex) -> ReplicaIndex {
        let n = self.cfg.n as u32;
        let mut next = (u32::from(after) + 1) % n;
        if next == u32::from(self.me()) {
            next = (next + 1) % n;
        }
        ReplicaIndex::try_from(next).unwrap_or(0)
    }

    /// After a restart: ask every peer for its highest QC (a request for the zero hash), so a
    /// replica whose domain went quiet while it was down still catches up; and fetch any
    /// block our safety state names that the disk did not give back.
    pub fn ask_for_news(&mut self) {
        let above = self.tree.committed().1;
        self.broadcast(Message::BlockRequest {
            hash: Hash::ZERO,
            above,
        });
        if let Some(hash) = self.missing_named() {
            let me = self.me();
            self.fetch(hash, me);
        }
    }

    /// Sign nothing until enough members have said how far they got (see `core::rejoin`). A
    /// domain of one has nobody to ask, and nobody its signatures could be at odds with.
    pub fn begin_rejoin(&mut self) {
        if self.cfg.n > 1 {
            self.rejoin = Some(Rejoin::default());
        }
    }

    /// While rejoining, no share may be signed.
    pub fn rejoining(&self) -> bool {
        self.rejoin.is_some()
    }

    /// While rejoining: the block we would have voted for, reconsidered at the end.
    pub fn defer_vote(&mut self, hash: Hash, view: View) {
        if let Some(r) = self.rejoin.as_mut() {
            r.deferred = Some((hash, view));
        }
    }

    /// Ask every member (again, at each `Timer::Rejoin`) what view it last signed in. After
    /// `PATIENCE` rounds fewer answers may be enough: returns the highest view reported when
    /// they are (see [`Core::on_safety_report`]).
    pub fn ask_safety(&mut self, round: u64) -> Option<View> {
        let r = self.rejoin.as_mut()?;
        if r.round() != round || r.ending.is_some() {
            return None;
        }
        let next = r.next_round();
        if let Some(highest) = self.enough_answers() {
            return Some(highest);
        }
        self.broadcast(Message::SafetyQuery);
        self.set_timer(Timer::Rejoin(next), self.cfg.base_timeout_ms);
        None
    }

    /// 2f+1 answers from others; after `PATIENCE` rounds, n-f-1. When there are enough, raise
    /// our last voted view past every view we may have signed in and return the highest
    /// answer (the genesis state everywhere, a new domain, raises nothing).
    fn enough_answers(&mut self) -> Option<View> {
        let r = self.rejoin.as_ref()?;
        let (n, f) = (self.cfg.n, self.cfg.f());
        let needed = if r.round() > rejoin::PATIENCE {
            n - f - 1
        } else {
            2 * f + 1
        };
        let highest = r.highest(needed.min(n - 1))?;
        if highest > 0 {
            self.safety.last_voted = self.safety.last_voted.max(highest.saturating_add(1));
        }
        Some(highest)
    }

    /// A member asks what we last signed in. `cert` is our highest certificate: it bounds what
    /// an honest answer can say, so a rejoining replica can refuse an inflated one. Answered
    /// while rejoining too: a new network's replicas all start that way.
    pub fn on_safety_query(&mut self, from: ReplicaIndex, cert: Certificate) {
        let last_voted = self.safety.last_voted;
        self.send(from, Message::SafetyReport { last_voted, cert });
    }

    /// An answer to our query; `plausible(last_voted, cert)` says whether an honest member
    /// holding `cert` can have signed in `last_voted`. Once enough members answered, returns
    /// the highest view they signed in; the layer then raises its state past it and calls
    /// [`Core::end_rejoin`].
    pub fn on_safety_report(
        &mut self,
        from: ReplicaIndex,
        last_voted: View,
        cert: Certificate,
        plausible: impl Fn(View, &Certificate) -> bool,
    ) -> Option<View> {
        if self
            .rejoin
            .as_ref()
            .is_none_or(|r| r.heard(from) || r.ending.is_some())
        {
            return None;
        }
        let refused = if !self.check_cert(&cert) {
            Some(Reject::BadCertificate)
        } else if !plausible(last_voted, &cert) {
            Some(Reject::Malformed)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.reject(from, reason);
            self.rejoin.as_mut()?.refuse(from);
            return None;
        }
        self.rejoin.as_mut()?.report(from, last_voted);
        self.enough_answers()
    }

    /// Write the raised safety state; signing resumes once it is durable.
    pub fn end_rejoin(&mut self) {
        let seq = self.persist_then(Vec::new());
        if let Some(r) = self.rejoin.as_mut() {
            r.ending = Some(seq);
        }
    }

    /// After `persisted`: whether the rejoin just ended, with the vote held back meanwhile.
    pub fn rejoined(&mut self) -> Option<Rejoined> {
        let seq = self.rejoin.as_ref()?.ending?;
        if seq > self.durable {
            return None;
        }
        let r = self.rejoin.take()?;
        let last_voted = self.safety.last_voted;
        let answers = r.answers();
        self.event(Event::Rejoined {
            last_voted,
            answers,
        });
        Some(Rejoined {
            deferred: r.deferred,
        })
    }

    /// Restart from a committed block proven outside the domain, when this replica is so far
    /// behind that its peers no longer hold the blocks in between. Only a block above our
    /// committed one with a proof that verifies against our own key set is taken; the safety
    /// state is kept (a transfer never lowers what we voted for). Then we fetch the blocks
    /// above it as after a restart. Returns whether the block was taken.
    pub fn transfer(&mut self, block: Block, proof: CommitProof) -> bool {
        if block.domain != self.cfg.domain
            || block.height <= self.tree.committed().1
            || proof
                .verify_with(&block.header(), self.keys.as_ref())
                .is_err()
        {
            return false;
        }
        let (hash, height) = (block.hash(), block.height);
        self.tree.reroot(block);
        self.missing.clear();
        // What was pending may be in the blocks skipped, which nobody here can check: the
        // node hands its own items to members that can.
        self.mempool = Mempool::new(self.cfg.pool, self.cfg.n);
        self.pinned = hash;
        self.pruned_at = height;
        // The proof's QC certifies a block above the new root: it names what to fetch.
        if proof.qc.view() > self.safety.high_qc.view() {
            self.safety.high_qc = proof.qc;
        }
        self.event(Event::Transferred { height });
        self.ask_for_news();
        true
    }

    /// A block that our highest QC or lock names and the tree does not hold: until it is
    /// found, this replica cannot propose or vote on that branch.
    pub fn missing_named(&self) -> Option<Hash> {
        let committed_view = self
            .tree
            .get(&self.tree.committed().0)
            .map_or(0, |n| n.block.view);
        [&self.safety.high_qc, &self.safety.lock]
            .into_iter()
            .filter(|c| c.view() > committed_view)
            .map(|c| c.block())
            .find(|h| !self.tree.contains(h))
    }

    /// Sync timer: ask the next peer for whatever is still missing. A block every peer was
    /// asked for in vain is reported (and still asked for: peers may come back).
    pub fn sync_retry(&mut self, round: u64) {
        if round != self.sync_round || self.missing.is_empty() {
            return;
        }
        let missing: Vec<(Hash, ReplicaIndex, usize)> = self
            .missing
            .iter()
            .map(|(h, (p, k))| (*h, *p, *k))
            .collect();
        let peers = self.cfg.n.saturating_sub(1).max(1);
        for (hash, peer, asked) in missing {
            if asked.is_multiple_of(peers) {
                self.event(Event::Unavailable { hash });
            }
            let next = self.next_peer(peer);
            self.missing.insert(hash, (next, asked + 1));
            let above = self.tree.committed().1;
            self.send(next, Message::BlockRequest { hash, above });
        }
        self.sync_round += 1;
        self.set_timer(Timer::Sync(self.sync_round), self.cfg.base_timeout_ms / 2);
    }

    /// Answer with the block and as many of its ancestors as fit one response, newest first:
    /// a replica that fell far behind catches up in few round trips.
    pub fn on_block_request(&mut self, from: ReplicaIndex, hash: Hash, above: u64) {
        if hash == Hash::ZERO {
            // `ask_for_news`: our highest QC names what to fetch, and proves it.
            if self.safety.high_qc.view() > 0 && self.tree.committed().1 > above {
                let qc = self.safety.high_qc.clone();
                self.send(from, Message::Certificate(qc));
            }
            return;
        }
        let mut blocks = Vec::new();
        let mut bytes = 0;
        let mut next = hash;
        while let Some(node) = self.tree.get(&next) {
            let enough = node.block.height <= above || blocks.len() >= SYNC_BATCH_BLOCKS;
            if !blocks.is_empty() && enough {
                break;
            }
            bytes += 512
                + node
                    .block
                    .payload
                    .iter()
                    .map(|t| t.len() + 8)
                    .sum::<usize>();
            if !blocks.is_empty() && bytes > SYNC_BATCH_BYTES {
                break;
            }
            blocks.push((*node.block).clone());
            next = node.block.parent;
        }
        if !blocks.is_empty() {
            self.send(from, Message::BlockResponse(blocks));
        }
    }

    /// Fetched blocks are authentic iff the first is one we asked for (a certificate named
    /// its hash) and each next one is the previous one's parent.
    pub fn on_block_response(&mut self, from: ReplicaIndex, blocks: Vec<Block>) -> bool {
        let Some(first) = blocks.first() else {
            return false;
        };
        let wanted = first.hash();
        if !self.missing.contains_key(&wanted) {
            self.reject(from, Reject::Unrequested);
            return false;
        }
        let mut chain = Vec::with_capacity(blocks.len());
        let mut expect = wanted;
        for block in blocks {
            if block.hash() != expect {
                break;
            }
            expect = block.parent;
            chain.push(block);
        }
        for block in chain.into_iter().rev() {
            self.insert_block(block, from);
        }
        // The highest QC may have arrived before its blocks (a catch-up): apply it now.
        let high = self.safety.high_qc.clone();
        if self.tree.contains(&high.block()) {
            self.process_qc(&high);
        }
        self.tree.contains(&wanted)
    }

    /// Adopt `qc` as highest QC if newer, and apply the commit rule to it: the certificate's
    /// chain (3 blocks global, 2 local; direct parents, consecutive views) commits its first
    /// block and all ancestors. Safe because a quorum locked on that chain (see `lock_of`).
    pub fn process_qc(&mut self, qc: &Certificate) {
        if qc.view() > self.safety.high_qc.view() {
            self.safety.high_qc = qc.clone();
        }
        if let Some(lock) = self.tree.lock_of(qc)
            && lock.view() > self.safety.lock.view()
        {
            // Lock rule: the certificate `chain - 2` links behind the newest QC. Any later QC
            // (hence any commit) must extend it or come from a quorum that saw a newer one.
            self.safety.lock = lock.clone();
        }
        let Some(target) = self.tree.commit_target(qc) else {
            return;
        };
        let Some(blocks) = self.tree.commit(target) else {
            // The tree refused a commit conflicting with an earlier one; the simulator's checker
            // reports the same from the outputs, so surface it loudly instead of hiding it.
            self.event(Event::Rejected {
                from: self.me(),
                reason: Reject::BadCertificate,
            });
            return;
        };
        // Headers above the newest committed block up to the certified one (commit_target
        // walked them): each committed block's proof is the committed blocks after it plus
        // these.
        let mut above = Vec::new();
        let mut hash = qc.block();
        while hash != target
            && let Some(node) = self.tree.get(&hash)
        {
            above.push(node.block.header());
            hash = node.block.parent;
        }
        above.reverse();
        let mut proofs = Vec::with_capacity(blocks.len());
        for b in blocks.iter().rev() {
            proofs.push(CommitProof {
                above: above.clone(),
                qc: qc.clone(),
            });
            above.insert(0, b.header());
        }
        self.prune_tree();
        for (b, proof) in blocks.iter().zip(proofs.into_iter().rev()) {
            for tx in &b.payload {
                let id = tx.id();
                self.mempool.remove(&id);
                self.note_recent(id);
            }
            self.note_committed_payload(&b.payload);
            self.out.push(Output::Commit {
                block: (**b).clone(),
                proof,
            });
        }
    }

    fn prune_tree(&mut self) {
        let height = self.tree.committed().1;
        let keep = self.cfg.memory_window.max(4);
        // A quarter of the window at a time: the prune's walk over the tree is paid rarely.
        if height >= self.pruned_at + keep / 4 && height > keep {
            self.tree.prune_below(height - keep, &self.pinned);
            self.pruned_at = height;
        }
    }

    /// The idle and pacing rules, for a leader: propose only while there is payload not yet
    /// in a block, or payload on the chain whose commit the chain has not yet announced to
    /// every replica (the next block's QC does that); and then only as the pacer allows.
    /// `tip` is the block the next proposal will follow, or our block still being certified:
    /// its payload is not new.
    pub fn pace(&mut self, tip: &Hash) -> bool {
        let chain = self
            .tree
            .get(&self.safety.high_qc.block())
            .is_some_and(|node| node.last_payload > node.announced);
        let (items, bytes) = self.new_payload(tip);
        let work = Work {
            new: items > 0,
            busy: items >= self.cfg.max_block_txs
                || bytes >= self.cfg.busy_bytes.min(self.cfg.max_block_bytes),
            chain,
        };
        self.pacer.ready(work, &mut self.out)
    }

    /// A block went out: new payload waits its delay afresh, and with `hold` the minimum
    /// interval starts.
    pub fn paced(&mut self, hold: bool) {
        self.pacer.proposed();
        if hold {
            self.pacer.hold(&mut self.out);
        }
    }

    /// Start the minimum interval without a block (a global leader given its view).
    pub fn hold_pace(&mut self) {
        self.pacer.hold(&mut self.out);
    }

    /// A pacing timer fired; true if the leader should look again.
    pub fn pace_fired(&mut self, timer: Timer) -> bool {
        self.pacer.fired(timer)
    }

    /// Items and bytes in the pool that the branch ending at `tip` does not carry.
    fn new_payload(&self, tip: &Hash) -> (usize, usize) {
        if self.mempool.is_empty() {
            return (0, 0);
        }
        let (mut items, mut bytes) = (0, 0);
        for id in self.tree.uncommitted_ids(tip) {
            if let Some(tx) = self.mempool.get(&id) {
                items += 1;
                bytes += tx.len();
            }
        }
        (
            self.mempool.len().saturating_sub(items),
            self.mempool.bytes().saturating_sub(bytes),
        )
    }

    /// The idle rule, for the timers: expect progress only while payload waits for a block or
    /// for its commit here.
    pub fn expects_progress(&self) -> bool {
        let uncommitted = self
            .tree
            .get(&self.safety.high_qc.block())
            .is_some_and(|node| node.last_payload > self.tree.committed().1);
        uncommitted || self.has_new_payload()
    }

    fn has_new_payload(&self) -> bool {
        if self.mempool.is_empty() {
            return false;
        }
        // Called on every input: count instead of building the branch's id set. An item is
        // at most once on a branch, so the pool holds new payload iff it holds more items
        // than the branch has pooled.
        let pooled_on_branch = self
            .tree
            .uncommitted_ids(&self.safety.high_qc.block())
            .filter(|id| self.mempool.get(id).is_some())
            .count();
        self.mempool.len() > pooled_on_branch
    }

    /// Payload from `origin` (ourselves for the node's own submissions): refusals are reported
    /// as events, one per item.
    pub fn add_payload(&mut self, txs: Vec<Tx>, origin: ReplicaIndex) {
        for tx in txs {
            let id = tx.id();
            if self.recent.contains(&id) {
                continue;
            }
            if let Err(reason) = self.mempool.insert(tx, origin) {
                self.event(Event::PoolRefused { id, reason });
            }
        }
    }

    /// A payload item the node asks about (`GET /v1/traces/{id}`), while it waits for a block.
    pub fn pending(&self, id: &Hash) -> Option<&Tx> {
        self.mempool.get(id)
    }

    /// Items and bytes in the pool.
    pub fn pool_usage(&self) -> (usize, usize) {
        (self.mempool.len(), self.mempool.bytes())
    }

    /// Items and bytes one origin may hold in the pool.
    pub fn pool_share(&self) -> (usize, usize) {
        self.mempool.origin_share()
    }

    pub fn set_payload_rule(&mut self, rule: Box<dyn PayloadRule>) {
        self.rule = rule;
    }

    fn note_recent(&mut self, id: Hash) {
        if self.recent.insert(id) {
            self.recent_order.push_back(id);
            if self.recent_order.len() > MAX_RECENT
                && let Some(old) = self.recent_order.pop_front()
            {
                self.recent.remove(&old);
            }
        }
    }

    /// Payload for a block extending `parent`: oldest first, skipping what the uncommitted
    /// chain already carries.
    pub fn take_payload(&mut self, parent: &Hash) -> Vec<Tx> {
        let in_chain = self.tree.uncommitted_payload(parent);
        let mut txs = Vec::new();
        let mut anchors = Vec::new();
        let mut bytes = 0;
        let checks_anchors = self.anchors.is_some();
        for (id, tx) in self.mempool.oldest() {
            if txs.len() + anchors.len() >= self.cfg.max_block_txs
                || bytes + tx.len() > self.cfg.max_block_bytes
            {
                break;
            }
            if in_chain.contains(id) {
                continue;
            }
            bytes += tx.len();
            if checks_anchors && Anchor::is_anchor(tx) {
                anchors.push(tx.clone());
            } else {
                txs.push(tx.clone());
            }
        }
        let mut payload = self.select_anchors(parent, anchors);
        payload.extend(txs);
        payload
    }

    /// Build a block extending `justify`'s block. `None` if that block is not known yet.
    pub fn build_block(&mut self, view: u64, justify: &Certificate) -> Option<Block> {
        let parent = self.tree.get(&justify.block())?;
        let height = parent.block.height + 1;
        let parent_hash = parent.hash;
        let payload = self.take_payload(&parent_hash);
        Some(Block {
            domain: self.cfg.domain,
            height,
            view,
            proposer: self.me(),
            parent: parent_hash,
            justify: justify.clone(),
            payload: payload.into(),
        })
    }

    /// Restore after a crash: the committed chain from disk, the persisted blocks above it and
    /// the persisted safety state.
    pub fn restore(&mut self, committed: Vec<Block>, mut blocks: Vec<Block>, safety: SafetyState) {
        if let Some(first) = committed.first()
            && !self.tree.contains(&first.parent)
        {
            // The chain below was pruned from disk (local replicas keep a window).
            self.tree.reroot(first.clone());
        }
        for block in committed {
            let hash = block.hash();
            if self.tree.insert(block).is_ok() {
                self.tree.commit(hash);
            }
        }
        // Parents first; forks and blocks at or below the committed height are harmless.
        blocks.sort_by_key(|b| b.height);
        let committed = self.tree.committed().1;
        for block in blocks.into_iter().filter(|b| b.height > committed) {
            self.saved.insert((block.height, block.hash()));
            let _ = self.tree.insert(block);
        }
        self.safety = safety;
    }
}

/// What the protocol cannot judge about a payload item: its encoding, its producer's signature,
/// whether it was committed long ago. The node plugs in its admission rule, the same one its
/// API and gossip use; a replica votes for a block only if every item passes.
pub trait PayloadRule: Send {
    /// One verdict per item, in order.
    fn admit(&mut self, domain: DomainId, txs: &[Tx]) -> Vec<bool>;
}

/// The simulator's rule: every item is fine.
pub struct AcceptAll;

impl PayloadRule for AcceptAll {
    fn admit(&mut self, _: DomainId, txs: &[Tx]) -> Vec<bool> {
        vec![true; txs.len()]
    }
}
