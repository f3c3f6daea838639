//! The anchored chains (DESIGN §5): which local block is anchored in which global block, the
//! local blocks reachable through their anchors once pruned locally, provenance links, and
//! pruning of a local domain's window.

use super::{
    ANCHORS, BLOCKS, CHAIN, CHILDREN, PROOFS, Store, StoreError, TX_INDEX, db, decode, domain_key,
    last_height,
};
use crate::trace::SignedTrace;
use lcbft_protocol::anchor::{Anchor, Tips};
use lcbft_protocol::types::{Block, DomainId, Hash, Tx};
use redb::{ReadableTable, Table};

/// One anchored local block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorEntry {
    pub height: u64,
    pub hash: Hash,
    /// Height of the committed global block holding the anchor.
    pub global_height: u64,
}

/// Index what a committed block carries: provenance of its traces and, for a global block, its
/// anchors with the traces of the anchored blocks.
pub(super) fn index_payload(txn: &redb::WriteTransaction, block: &Block) -> Result<(), StoreError> {
    let mut children = txn.open_table(CHILDREN).map_err(db)?;
    let mut anchors = txn.open_table(ANCHORS).map_err(db)?;
    let mut index = txn.open_table(TX_INDEX).map_err(db)?;
    for tx in &block.payload {
        link_parents(&mut children, tx)?;
        // Only the global chain's anchors were checked (certificate, continuity) before they
        // were committed; an anchor-shaped item in a local block is a member's data.
        if block.domain != DomainId::Global {
            continue;
        }
        let Some(Ok(anchor)) = Anchor::from_tx(tx) else {
            continue;
        };
        let local = &anchor.block;
        let key = (domain_key(local.domain), local.height);
        if anchors.get(key).map_err(db)?.is_some() {
            continue;
        }
        anchors
            .insert(key, (block.height, local.hash().0))
            .map_err(db)?;
        for t in &local.payload {
            if index.get(t.id().0).map_err(db)?.is_none() {
                index.insert(t.id().0, key).map_err(db)?;
            }
            link_parents(&mut children, t)?;
        }
    }
    Ok(())
}

fn link_parents(children: &mut Table<([u8; 32], [u8; 32]), ()>, tx: &Tx) -> Result<(), StoreError> {
    for parent in SignedTrace::parents_of(tx) {
        children.insert((parent, tx.id().0), ()).map_err(db)?;
    }
    Ok(())
}

impl Store {
    /// Last height of `domain` anchored in the committed global chain (0: none).
    pub fn anchored_height(&self, domain: DomainId) -> Result<u64, StoreError> {
        let key = domain_key(domain);
        let txn = self.db.begin_read().map_err(db)?;
        let anchors = txn.open_table(ANCHORS).map_err(db)?;
        last_height(&anchors, key)
    }

    /// Each of `domains`' last anchored (height, hash) in the committed global chain: where
    /// a global replica's anchor checks start below the blocks it holds in memory.
    pub fn anchored_tips(
        &self,
        domains: impl IntoIterator<Item = DomainId>,
    ) -> Result<Tips, StoreError> {
        let mut tips = Tips::new();
        for domain in domains {
            let height = self.anchored_height(domain)?;
            if let Some(e) = self.anchor_at(domain, height)? {
                tips.insert(domain, (e.height, e.hash));
            }
        }
        Ok(tips)
    }

    pub fn anchor_at(
        &self,
        domain: DomainId,
        height: u64,
    ) -> Result<Option<AnchorEntry>, StoreError> {
        Ok(self
            .anchors(domain, height, 1)?
            .into_iter()
            .find(|e| e.height == height))
    }

    /// Up to `limit` anchored blocks of `domain` from height `from` on.
    pub fn anchors(
        &self,
        domain: DomainId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AnchorEntry>, StoreError> {
        let key = domain_key(domain);
        let txn = self.db.begin_read().map_err(db)?;
        let anchors = txn.open_table(ANCHORS).map_err(db)?;
        let mut out = Vec::new();
        for entry in anchors.range((key, from)..=(key, u64::MAX)).map_err(db)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(db)?;
            let (global_height, hash) = v.value();
            out.push(AnchorEntry {
                height: k.value().1,
                hash: Hash(hash),
                global_height,
            });
        }
        Ok(out)
    }

    /// The committed global block holding the anchor of `domain`'s block at `height`, and that
    /// anchor as it appears there.
    pub fn anchor_in_global(
        &self,
        domain: DomainId,
        height: u64,
    ) -> Result<Option<(Block, Tx, Anchor)>, StoreError> {
        let Some(entry) = self.anchor_at(domain, height)? else {
            return Ok(None);
        };
        let Some(global) = self.block_at(DomainId::Global, entry.global_height)? else {
            return Ok(None);
        };
        let found = global
            .payload
            .iter()
            .find_map(|tx| match Anchor::from_tx(tx) {
                Some(Ok(a)) if a.block.domain == domain && a.block.hash() == entry.hash => {
                    Some((tx.clone(), a))
                }
                _ => None,
            });
        Ok(found.map(|(tx, a)| (global, tx, a)))
    }

    /// A committed block of `domain`: from its own chain, or for a local domain through its
    /// anchor once pruned (or on a node outside the domain).
    pub fn committed_block(
        &self,
        domain: DomainId,
        height: u64,
    ) -> Result<Option<Block>, StoreError> {
        if let Some(b) = self.block_at(domain, height)? {
            return Ok(Some(b));
        }
        if domain == DomainId::Global {
            return Ok(None);
        }
        Ok(self
            .anchor_in_global(domain, height)?
            .map(|(_, _, a)| a.block))
    }

    /// Ids of committed traces naming `id` as a parent.
    pub fn children(&self, id: &Hash) -> Result<Vec<Hash>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let children = txn.open_table(CHILDREN).map_err(db)?;
        let mut out = Vec::new();
        for entry in children
            .range((id.0, [0; 32])..=(id.0, [0xff; 32]))
            .map_err(db)?
        {
            let (k, _) = entry.map_err(db)?;
            out.push(Hash(k.value().1));
        }
        Ok(out)
    }

    /// Lowest height of `domain`'s chain still held here (1 when nothing was pruned).
    pub fn retained_from(&self, domain: DomainId) -> Result<u64, StoreError> {
        let key = domain_key(domain);
        let txn = self.db.begin_read().map_err(db)?;
        let chain = txn.open_table(CHAIN).map_err(db)?;
        let first = chain
            .range((key, 1)..=(key, u64::MAX))
            .map_err(db)?
            .next()
            .transpose()
            .map_err(db)?;
        Ok(first.map(|(k, _)| k.value().1).unwrap_or(1))
    }

    /// Delete `domain`'s blocks below height `below` with their proofs, and unless
    /// `keep_index` their trace index entries; returns how many went. The caller decides what
    /// is safe to drop (anchored, outside the window); the newest block always stays, as the
    /// root a restart resumes from. A global node keeps the index: it finds the pruned blocks
    /// again through their anchors.
    pub fn prune(&self, domain: DomainId, below: u64, keep_index: bool) -> Result<u64, StoreError> {
        let key = domain_key(domain);
        let below = below.min(self.committed_height(domain)?);
        let txn = super::write_txn(&self.db)?;
        let mut pruned = 0;
        {
            let mut chain = txn.open_table(CHAIN).map_err(db)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(db)?;
            let mut proofs = txn.open_table(PROOFS).map_err(db)?;
            let mut index = txn.open_table(TX_INDEX).map_err(db)?;
            let mut children = txn.open_table(CHILDREN).map_err(db)?;
            let doomed: Vec<(u64, [u8; 32])> = chain
                .range((key, 1)..(key, below.max(1)))
                .map_err(db)?
                .map(|e| e.map(|(k, v)| (k.value().1, v.value())))
                .collect::<Result<_, _>>()
                .map_err(db)?;
            for (height, hash) in doomed {
                if let Some(bytes) = blocks.remove(hash).map_err(db)?
                    && !keep_index
                {
                    let block: Block = decode(bytes.value(), "block")?;
                    for tx in &block.payload {
                        index.remove(tx.id().0).map_err(db)?;
                        for parent in SignedTrace::parents_of(tx) {
                            children.remove((parent, tx.id().0)).map_err(db)?;
                        }
                    }
                }
                chain.remove((key, height)).map_err(db)?;
                proofs.remove((key, height)).map_err(db)?;
                pruned += 1;
            }
        }
        txn.commit().map_err(db)?;
        Ok(pruned)
    }
}
