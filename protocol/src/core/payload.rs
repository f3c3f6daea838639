//! Payload rules on top of the mempool: anchors are admitted, proposed and voted for only when
//! they continue their domain's anchored chain along the branch they join (DESIGN §5).

use super::Core;
use crate::anchor::{Anchor, AnchorError, AnchorRules, Link, Tips, continues};
use crate::io::{Event, Reject};
use crate::types::{Hash, ReplicaIndex, Tx};
use std::collections::HashSet;
use std::sync::Arc;

impl Core {
    /// Turn on anchor checking (global validators). `anchored` holds the tips of the chain
    /// below what is in memory (the store's anchor index); the committed chain in memory
    /// moves them on. Committed anchors were verified before they were committed.
    pub fn set_anchor_rules(&mut self, rules: AnchorRules, anchored: Tips) {
        let mut tips = anchored;
        let top = self.tree.committed().1;
        // Every committed block in memory is at most the tree's size below the top.
        let lowest = top.saturating_sub(self.tree.len() as u64);
        for height in lowest.max(1)..=top {
            if let Some(node) = self
                .tree
                .committed_at(height)
                .and_then(|h| self.tree.get(&h))
            {
                for tx in &node.block.payload {
                    record_committed(&mut tips, tx);
                }
            }
        }
        self.anchored = tips;
        self.anchors = Some(rules);
    }

    pub fn anchored(&self) -> &Tips {
        &self.anchored
    }

    /// Committed global block: its anchors move the committed tips.
    pub(super) fn note_committed_payload(&mut self, payload: &[Tx]) {
        if self.anchors.is_none() {
            return;
        }
        for tx in payload {
            record_committed(&mut self.anchored, tx);
        }
    }

    /// The anchored tips after the uncommitted blocks from the committed block up to `tip`.
    fn branch_tips(&mut self, tip: &Hash) -> Tips {
        let mut tips = self.anchored.clone();
        let Some(rules) = self.anchors.as_mut() else {
            return tips;
        };
        let committed = self.tree.committed().1;
        let mut blocks = Vec::new();
        let mut hash = *tip;
        while let Some(node) = self.tree.get(&hash) {
            if node.block.height <= committed {
                break;
            }
            blocks.push(Arc::clone(&node.block));
            hash = node.block.parent;
        }
        for block in blocks.iter().rev() {
            for tx in &block.payload {
                // Already judged when the block was voted on or certified by a quorum.
                let _ = rules.apply(&mut tips, tx);
            }
        }
        tips
    }

    /// Whether a proposed block's payload may be voted for: within the block bounds, no item
    /// twice nor already in the branch or recently committed, every trace passing the node's
    /// admission rule, every anchor continuing the chain at the parent. A block that fails is
    /// not voted for and its proposer is reported.
    pub fn payload_valid(&mut self, hash: &Hash, from: ReplicaIndex) -> bool {
        let Some(block) = self.tree.get(hash).map(|n| Arc::clone(&n.block)) else {
            return false;
        };
        let bytes: usize = block.payload.iter().map(|tx| tx.len()).sum();
        if block.payload.len() > self.cfg.max_block_txs || bytes > self.cfg.max_block_bytes {
            self.reject(from, Reject::BadPayload);
            return false;
        }
        let in_chain = self.tree.uncommitted_payload(&block.parent);
        let mut seen = HashSet::with_capacity(block.payload.len());
        for tx in &block.payload {
            let id = tx.id();
            if !seen.insert(id) || in_chain.contains(&id) || self.recent.contains(&id) {
                self.reject(from, Reject::BadPayload);
                return false;
            }
        }
        let domain = self.cfg.domain;
        if self.anchors.is_none() {
            // Local domains: every item is a trace, judged without a copy.
            if self.rule.admit(domain, &block.payload).contains(&false) {
                self.reject(from, Reject::BadPayload);
                return false;
            }
            return true;
        }
        let (anchors, items): (Vec<&Tx>, Vec<Tx>) = {
            let (a, i): (Vec<&Tx>, Vec<&Tx>) =
                block.payload.iter().partition(|tx| Anchor::is_anchor(tx));
            (a, i.into_iter().cloned().collect())
        };
        if !items.is_empty() && self.rule.admit(domain, &items).contains(&false) {
            self.reject(from, Reject::BadPayload);
            return false;
        }
        if anchors.is_empty() {
            return true;
        }
        let mut tips = self.branch_tips(&block.parent);
        let Some(rules) = self.anchors.as_mut() else {
            return true;
        };
        for tx in anchors {
            if let Err(error) = rules.apply(&mut tips, tx) {
                self.event(Event::AnchorRejected { error });
                self.reject(from, Reject::BadAnchor);
                return false;
            }
        }
        true
    }

    /// Admission of new payload: anchors that cannot join the chain (bad certificate, fork,
    /// gap past what is pending, already anchored) are refused and reported, the rest queued.
    pub fn admit_payload(&mut self, txs: Vec<Tx>, origin: ReplicaIndex) {
        if self.anchors.is_none() {
            return self.add_payload(txs, origin);
        }
        let (mut anchors, mut others): (Vec<Tx>, Vec<Tx>) =
            txs.into_iter().partition(Anchor::is_anchor);
        if anchors.is_empty() {
            // Traces, the common case: no branch walk, no mempool scan.
            return self.add_payload(others, origin);
        }
        let high = self.safety.high_qc.block();
        let mut tips = self.branch_tips(&high);
        let pending = self.pending_links();
        let Some(rules) = self.anchors.as_mut() else {
            return;
        };
        extend_tips(&mut tips, pending);
        let mut linked = Vec::new();
        let mut errors = Vec::new();
        for tx in anchors.drain(..) {
            match rules.peek(&tx) {
                Some(Ok(link)) => linked.push((link, tx)),
                Some(Err(error)) => errors.push(error),
                None => others.push(tx),
            }
        }
        // In chain order, so one submission may carry a run of consecutive anchors.
        linked.sort_by_key(|(l, _)| (l.domain, l.height));
        for (_, tx) in linked {
            match rules.apply(&mut tips, &tx) {
                Ok(_) => others.push(tx),
                Err(error) => errors.push(error),
            }
        }
        for error in errors {
            self.event(Event::AnchorRejected { error });
        }
        self.add_payload(others, origin);
    }

    /// Links of the anchors waiting in the mempool (all verified on admission).
    fn pending_links(&mut self) -> Vec<Link> {
        let Some(rules) = self.anchors.as_mut() else {
            return Vec::new();
        };
        self.mempool
            .oldest()
            .map(|(_, tx)| tx)
            .filter(|tx| Anchor::is_anchor(tx))
            .filter_map(|tx| rules.link(tx)?.ok())
            .collect()
    }

    /// Of the leader's payload candidates, the anchors that continue the chain at `parent`, in
    /// chain order; anchors that never can (already anchored, forked) leave the mempool.
    pub(super) fn select_anchors(&mut self, parent: &Hash, anchors: Vec<Tx>) -> Vec<Tx> {
        if anchors.is_empty() {
            return anchors;
        }
        let mut tips = self.branch_tips(parent);
        let Some(rules) = self.anchors.as_mut() else {
            return Vec::new();
        };
        let mut dead = Vec::new();
        let mut linked = Vec::new();
        for tx in anchors {
            match rules.link(&tx) {
                Some(Ok(link)) => linked.push((link, tx)),
                _ => dead.push(tx.id()),
            }
        }
        linked.sort_by_key(|(l, _)| (l.domain, l.height));
        let mut chosen = Vec::new();
        for (link, tx) in linked {
            match continues(&tips, &link) {
                Ok(()) => {
                    tips.insert(link.domain, (link.height, link.hash));
                    chosen.push(tx);
                }
                Err(AnchorError::Gap { .. }) => {}
                Err(_) => dead.push(tx.id()),
            }
        }
        for id in dead {
            self.mempool.remove(&id);
        }
        chosen
    }
}

/// Apply a committed anchor without checking it again: a quorum did.
fn record_committed(tips: &mut Tips, tx: &Tx) {
    if let Some(Ok(anchor)) = Anchor::from_tx(tx) {
        let link = anchor.link();
        tips.insert(link.domain, (link.height, link.hash));
    }
}

/// Advance `tips` through pending links that chain onto them.
fn extend_tips(tips: &mut Tips, mut pending: Vec<Link>) {
    pending.sort_by_key(|l| (l.domain, l.height));
    for link in pending {
        if continues(tips, &link).is_ok() {
            tips.insert(link.domain, (link.height, link.hash));
        }
    }
}
