//! The simulator's judge. Safety: no two honest replicas commit different blocks at one
//! height, and each replica's chain grows without gaps. Liveness: after the network heals,
//! every honest replica commits payload submitted after the heal.

use crate::types::{Block, DomainId, Hash};
use std::collections::{BTreeSet, HashMap, HashSet};

pub struct Checker {
    domain: DomainId,
    by_height: HashMap<u64, (Hash, usize)>,
    /// Every committed payload id, at its height: none may commit twice.
    committed_ids: HashMap<Hash, u64>,
    node_height: HashMap<usize, u64>,
    violations: Vec<String>,
    submitted: HashMap<Hash, u64>,
    healed_at: Option<u64>,
    live_after_heal: HashSet<usize>,
    view_changes: BTreeSet<u64>,
    /// Per committed payload id: when an honest replica first and last committed it.
    committed_at: HashMap<Hash, (u64, u64)>,
}

pub struct Verdict {
    pub safety: Vec<String>,
    pub liveness: Option<String>,
    pub commits: u64,
}

impl Checker {
    pub fn new(domain: DomainId) -> Checker {
        Checker {
            domain,
            by_height: HashMap::new(),
            committed_ids: HashMap::new(),
            node_height: HashMap::new(),
            violations: Vec::new(),
            submitted: HashMap::new(),
            healed_at: None,
            live_after_heal: HashSet::new(),
            view_changes: BTreeSet::new(),
            committed_at: HashMap::new(),
        }
    }

    pub fn submitted(&mut self, tx: Hash, at: u64) {
        self.submitted.insert(tx, at);
    }

    pub fn healed(&mut self, at: u64) {
        self.healed_at = Some(at);
    }

    pub fn view_change(&mut self, to: u64) {
        self.view_changes.insert(to);
    }

    pub fn view_changes(&self) -> u64 {
        self.view_changes.len() as u64
    }

    /// A rule broken that the checker cannot see from commits (the simulator reports it).
    pub fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    pub fn restarted(&mut self, node: usize, height: u64) {
        self.node_height.insert(node, height);
    }

    /// Record an honest commit; true if it is the first commit of this height anywhere.
    pub fn commit(&mut self, node: usize, block: &Block, now: u64) -> bool {
        let hash = block.hash();
        if block.domain != self.domain {
            self.violations.push(format!(
                "node {node} committed a block of {:?}",
                block.domain
            ));
        }
        let last = self.node_height.get(&node).copied().unwrap_or(0);
        if block.height != last + 1 {
            self.violations.push(format!(
                "node {node} committed height {} after {last}",
                block.height
            ));
        }
        self.node_height.insert(node, block.height);
        if let Some(at) = self.healed_at
            && block
                .payload
                .iter()
                .any(|tx| self.submitted.get(&tx.id()).is_some_and(|t| *t >= at))
        {
            self.live_after_heal.insert(node);
        }
        for tx in &block.payload {
            let at = self.committed_at.entry(tx.id()).or_insert((now, now));
            at.1 = at.1.max(now);
        }
        match self.by_height.get(&block.height) {
            Some((h, other)) if *h != hash => {
                self.violations.push(format!(
                    "height {}: node {node} committed {:?} while node {other} committed {h:?}",
                    block.height, hash
                ));
                false
            }
            Some(_) => false,
            None => {
                self.by_height.insert(block.height, (hash, node));
                for tx in &block.payload {
                    if tx.bytes().starts_with(super::REFUSED_PREFIX) {
                        self.violations.push(format!(
                            "height {}: committed an item the admission rule refuses",
                            block.height
                        ));
                    }
                    if let Some(first) = self.committed_ids.insert(tx.id(), block.height) {
                        self.violations.push(format!(
                            "height {}: committed an item already committed at height {first}",
                            block.height
                        ));
                    }
                }
                true
            }
        }
    }

    /// Per committed submitted item, in submission order: how long after its submission an
    /// honest replica first committed it, and the last one did.
    pub fn latencies(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64, u64)> = self
            .committed_at
            .iter()
            .filter_map(|(id, (first, last))| {
                let sent = *self.submitted.get(id)?;
                Some((sent, first - sent, last - sent))
            })
            .collect();
        out.sort_unstable();
        out.into_iter().map(|(_, f, l)| (f, l)).collect()
    }

    pub fn verdict(&self, honest: &[usize]) -> Verdict {
        let stuck: Vec<usize> = honest
            .iter()
            .copied()
            .filter(|n| !self.live_after_heal.contains(n))
            .collect();
        let liveness = (!stuck.is_empty())
            .then(|| format!("honest nodes {stuck:?} committed nothing submitted after the heal"));
        Verdict {
            safety: self.violations.clone(),
            liveness,
            commits: self.by_height.len() as u64,
        }
    }
}
