//! The node's side of anchoring (DESIGN §5). An edge submits each committed block of its local
//! domain to the global mempool, re-submitting what is still missing from the committed global
//! chain (after a restart too), and tells its domain how far the chain is anchored with a
//! proof the members check. Local members prune only below that, outside their window. The
//! rules an anchor must meet live in the protocol; this only moves blocks and proofs around.

use crate::genesis::{Genesis, Role};
use crate::proofs::anchor_proof;
use crate::store::{Store, StoreError};
use lcbft_protocol::anchor::{Anchor, KeyRing, ProofError};
use lcbft_protocol::crypto::CryptoError;
use lcbft_protocol::proof::AnchorProof;
use lcbft_protocol::types::{DomainId, Tx};
use libp2p::PeerId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Anchors not seen committed this long after submission are submitted again.
const RESUBMIT_AFTER: Duration = Duration::from_secs(3);
/// Most anchors submitted at once (each carries a whole local block).
const MAX_BATCH: u64 = 32;
/// A notice is repeated this often even without progress, for members that restarted.
const NOTICE_EVERY: Duration = Duration::from_secs(5);
/// Lag samples kept for the status percentiles.
const LAG_SAMPLES: usize = 1000;
/// A member re-checks the anchored height at least this often while it advances (the height
/// it reports), however little it may prune.
const NOTICE_FRESH: Duration = Duration::from_secs(30);

pub struct Anchoring {
    keys: KeyRing,
    window: u64,
    /// Local domains this node is the edge of.
    edge_of: BTreeSet<DomainId>,
    /// Local domains this node is a member of.
    local: BTreeSet<DomainId>,
    global: bool,
    /// Members outside the global domain: the highest anchored height proven to us, and when.
    proven: BTreeMap<DomainId, u64>,
    proven_at: BTreeMap<DomainId, Instant>,
    submitted: BTreeMap<DomainId, BTreeMap<u64, Instant>>,
    committed_at: BTreeMap<(DomainId, u64), Instant>,
    lags: BTreeMap<DomainId, VecDeque<Duration>>,
    noticed: BTreeMap<DomainId, (u64, Instant)>,
}

/// What the main loop carries out after a tick.
#[derive(Default)]
pub struct Work {
    /// Anchors for the global replica and the global topic.
    pub submit: Vec<(DomainId, Tx)>,
    /// Notices for local topics.
    pub notices: Vec<(DomainId, AnchorProof)>,
}

impl Anchoring {
    pub fn new(genesis: &Genesis, me: &PeerId, window: u64) -> Result<Anchoring, CryptoError> {
        let mut edge_of = BTreeSet::new();
        let mut local = BTreeSet::new();
        let mut global = false;
        for d in &genesis.domains {
            let Some(member) = d.members.iter().find(|m| &m.peer_id == me) else {
                continue;
            };
            match d.id {
                DomainId::Global => global = true,
                DomainId::Local(_) => {
                    local.insert(d.id);
                    if member.role == Role::Edge {
                        edge_of.insert(d.id);
                    }
                }
            }
        }
        Ok(Anchoring {
            keys: genesis.key_ring()?,
            window,
            edge_of,
            local,
            global,
            proven: BTreeMap::new(),
            proven_at: BTreeMap::new(),
            submitted: BTreeMap::new(),
            committed_at: BTreeMap::new(),
            lags: BTreeMap::new(),
            noticed: BTreeMap::new(),
        })
    }

    pub fn is_edge_of(&self, domain: DomainId) -> bool {
        self.edge_of.contains(&domain)
    }

    /// How far `domain` is anchored as far as this node knows: from its own committed global
    /// chain, or from the proofs its edge sent.
    pub fn anchored(&self, store: &Store, domain: DomainId) -> Result<u64, StoreError> {
        if self.global {
            return store.anchored_height(domain);
        }
        // A member prunes only blocks proven anchored, and a state transfer's base is anchored,
        // so what it no longer holds is anchored too: after a restart, before any notice.
        let pruned = store.retained_from(domain)?.saturating_sub(1);
        Ok(self.proven.get(&domain).copied().unwrap_or(0).max(pruned))
    }

    pub fn on_local_commit(&mut self, domain: DomainId, height: u64, now: Instant) {
        if self.edge_of.contains(&domain) {
            self.committed_at.insert((domain, height), now);
        }
    }

    /// A committed global block: the lag of each anchor of ours it holds.
    pub fn on_global_commit(
        &mut self,
        anchors: &[(DomainId, u64)],
        now: Instant,
    ) -> Vec<(DomainId, Duration)> {
        let mut out = Vec::new();
        for &(domain, height) in anchors {
            if let Some(at) = self.committed_at.remove(&(domain, height)) {
                let lag = now.saturating_duration_since(at);
                let samples = self.lags.entry(domain).or_default();
                if samples.len() >= LAG_SAMPLES {
                    samples.pop_front();
                }
                samples.push_back(lag);
                out.push((domain, lag));
            }
        }
        out
    }

    /// Anchoring lag percentile (0.5, 0.99) over recent samples of `domain`.
    pub fn lag_percentile(&self, domain: DomainId, q: f64) -> Option<Duration> {
        let samples = self.lags.get(&domain)?;
        if samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = samples.iter().copied().collect();
        sorted.sort();
        let at = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted.get(at).copied()
    }

    /// Whether a member should check a notice claiming `domain` anchored up to `claimed`,
    /// with its own chain committed up to `committed`. A check costs two certificate
    /// verifications and the edge sends a notice a second under load, which cost a device more
    /// than the rest of its anchoring work; so only a notice the member can act on is checked:
    /// one that may show it behind by more than its window (a state transfer), one that lets it
    /// prune an eighth of its window more, or the first after `NOTICE_FRESH`.
    pub fn worth_checking(
        &self,
        domain: DomainId,
        claimed: u64,
        committed: u64,
        now: Instant,
    ) -> bool {
        let proven = self.proven.get(&domain).copied().unwrap_or(0);
        let checked_at = self.proven_at.get(&domain).copied();
        worth_checking(proven, checked_at, claimed, committed, self.window, now)
    }

    /// An edge's notice: accepted only if it proves an anchor of `domain`.
    pub fn on_notice(
        &mut self,
        domain: DomainId,
        proof: &AnchorProof,
        now: Instant,
    ) -> Result<(u64, Anchor), ProofError> {
        let anchor = proof.verify(&self.keys)?;
        if anchor.block.domain != domain {
            return Err(ProofError::WrongDomain {
                expected: domain.to_string(),
                got: anchor.block.domain,
            });
        }
        let height = anchor.block.height;
        self.proven_at.insert(domain, now);
        let known = self.proven.entry(domain).or_default();
        *known = (*known).max(height);
        Ok((*known, anchor))
    }

    /// Committed blocks a local member keeps on disk (`consensus.local_window`): a member
    /// further behind than this may find its peers pruned what it misses.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Anchors due for submission in `domain` (the edge's): every committed height above the
    /// anchored one not submitted recently, oldest first.
    pub fn due(
        &mut self,
        store: &Store,
        domain: DomainId,
        now: Instant,
    ) -> Result<Vec<Tx>, StoreError> {
        if !self.edge_of.contains(&domain) || !self.global {
            return Ok(Vec::new());
        }
        let anchored = store.anchored_height(domain)?;
        let committed = store.committed_height(domain)?;
        let submitted = self.submitted.entry(domain).or_default();
        submitted.retain(|&h, _| h > anchored);
        let mut txs = Vec::new();
        for height in anchored + 1..=committed.min(anchored + MAX_BATCH) {
            if submitted
                .get(&height)
                .is_some_and(|at| now.saturating_duration_since(*at) < RESUBMIT_AFTER)
            {
                continue;
            }
            let (Some(block), Some(commit)) = (
                store.block_at(domain, height)?,
                store.proof_at(domain, height)?,
            ) else {
                break;
            };
            submitted.insert(height, now);
            txs.push(Anchor { block, commit }.to_tx());
        }
        Ok(txs)
    }

    /// The periodic work: re-submissions, notices, pruning. Returns blocks pruned per domain.
    pub fn tick(
        &mut self,
        store: &Store,
        now: Instant,
    ) -> Result<(Work, Vec<(DomainId, u64)>), StoreError> {
        let mut work = Work::default();
        for domain in self.edge_of.clone() {
            for tx in self.due(store, domain, now)? {
                work.submit.push((domain, tx));
            }
            if let Some(notice) = self.notice(store, domain, now)? {
                work.notices.push((domain, notice));
            }
        }
        let mut pruned = Vec::new();
        for domain in self.local.clone() {
            let anchored = self.anchored(store, domain)?;
            let committed = store.committed_height(domain)?;
            // Keep the window, and everything not yet anchored.
            let below = (anchored + 1).min(committed.saturating_sub(self.window) + 1);
            if store.retained_from(domain)? < below {
                let n = store.prune(domain, below, self.global)?;
                if n > 0 {
                    pruned.push((domain, n));
                }
            }
        }
        Ok((work, pruned))
    }

    fn notice(
        &mut self,
        store: &Store,
        domain: DomainId,
        now: Instant,
    ) -> Result<Option<AnchorProof>, StoreError> {
        let anchored = store.anchored_height(domain)?;
        if anchored == 0 {
            return Ok(None);
        }
        if let Some((h, at)) = self.noticed.get(&domain)
            && *h == anchored
            && now.saturating_duration_since(*at) < NOTICE_EVERY
        {
            return Ok(None);
        }
        let Some(proof) = anchor_proof(store, domain, anchored)? else {
            return Ok(None);
        };
        self.noticed.insert(domain, (anchored, now));
        Ok(Some(proof))
    }
}

fn worth_checking(
    proven: u64,
    checked_at: Option<Instant>,
    claimed: u64,
    committed: u64,
    window: u64,
    now: Instant,
) -> bool {
    if claimed <= proven {
        return false;
    }
    let behind = claimed > committed.saturating_add(window);
    let prunes = claimed >= proven + (window / 8).max(1);
    let stale = checked_at.is_none_or(|at| now.saturating_duration_since(at) >= NOTICE_FRESH);
    behind || prunes || stale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_checked_only_when_the_member_can_act_on_it() {
        let now = Instant::now();
        let recent = Some(now - Duration::from_secs(1));
        let old = Some(now - NOTICE_FRESH);
        // (proven, last check, claimed, committed) with a window of 256 (a step of 32).
        let cases = [
            ((100, None, 101, 300), true, "the first notice"),
            ((100, recent, 100, 300), false, "nothing new"),
            ((100, None, 90, 300), false, "older than what is proven"),
            ((100, recent, 131, 300), false, "less than a step to prune"),
            ((100, recent, 132, 300), true, "a step to prune"),
            (
                (100, recent, 101, 0),
                false,
                "behind, but within the window",
            ),
            (
                (300, recent, 310, 54),
                false,
                "behind by exactly the window",
            ),
            (
                (300, recent, 310, 53),
                true,
                "behind by more than the window",
            ),
            ((100, old, 101, 300), true, "the last check is old"),
        ];
        for ((proven, at, claimed, committed), want, what) in cases {
            let got = worth_checking(proven, at, claimed, committed, 256, now);
            assert_eq!(got, want, "{what}");
        }
        // A tiny window prunes block by block.
        assert!(worth_checking(4, Some(now), 5, 100, 4, now));
    }
}
