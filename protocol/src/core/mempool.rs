//! The one pool of payload waiting for a block: bounded by count and by bytes, with a share per
//! origin so one member cannot crowd out the others, and nothing in it that can never fit a
//! block. The node's API answers "pending" from it too; there is no second pool.

use crate::types::{Hash, ReplicaIndex, Tx};
use std::collections::{BTreeMap, HashMap};

/// Bounds of one replica's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// The largest item admitted: one that cannot fit a block would wait forever.
    pub max_tx_bytes: usize,
}

impl PoolLimits {
    pub fn new(max_block_bytes: usize) -> PoolLimits {
        PoolLimits {
            max_txs: 100_000,
            max_bytes: 32 << 20,
            max_tx_bytes: max_block_bytes,
        }
    }
}

/// Why the pool would not take an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolRefusal {
    /// Larger than a block can carry.
    Oversized,
    /// Its origin already holds its share of the pool.
    OverShare,
    /// Full of other origins' items, each within its share.
    Full,
}

impl PoolRefusal {
    pub fn label(self) -> &'static str {
        match self {
            PoolRefusal::Oversized => "oversized",
            PoolRefusal::OverShare => "over_share",
            PoolRefusal::Full => "full",
        }
    }
}

struct Entry {
    tx: Tx,
    origin: ReplicaIndex,
    seq: u64,
}

#[derive(Default, Clone, Copy)]
struct Usage {
    txs: usize,
    bytes: usize,
}

pub struct Mempool {
    limits: PoolLimits,
    /// Members of the domain: each origin may hold up to twice the fair share 1/n.
    members: usize,
    items: HashMap<Hash, Entry>,
    /// Arrival order: blocks take the oldest first.
    order: BTreeMap<u64, Hash>,
    /// Arrival order per origin: eviction takes an origin's newest without a scan of the pool
    /// (a full pool evicts on every insert, and a peer decides how often that is).
    by_origin: HashMap<ReplicaIndex, BTreeMap<u64, Hash>>,
    usage: HashMap<ReplicaIndex, Usage>,
    bytes: usize,
    next: u64,
}

impl Mempool {
    pub fn new(limits: PoolLimits, members: usize) -> Mempool {
        Mempool {
            limits,
            members: members.max(1),
            items: HashMap::new(),
            order: BTreeMap::new(),
            by_origin: HashMap::new(),
            usage: HashMap::new(),
            bytes: 0,
            next: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, id: &Hash) -> Option<&Tx> {
        self.items.get(id).map(|e| &e.tx)
    }

    /// Items oldest first.
    pub fn oldest(&self) -> impl Iterator<Item = (&Hash, &Tx)> {
        self.order
            .values()
            .filter_map(|id| self.items.get(id).map(|e| (id, &e.tx)))
    }

    /// What one origin may hold (items, bytes): its share of the pool.
    pub fn origin_share(&self) -> (usize, usize) {
        let s = self.share();
        (s.txs, s.bytes)
    }

    fn share(&self) -> Usage {
        Usage {
            txs: (self.limits.max_txs * 2 / self.members).max(1),
            bytes: (self.limits.max_bytes * 2 / self.members).max(self.limits.max_tx_bytes),
        }
    }

    /// Take `tx` from `origin`. `Ok(false)` if it was already here. When the pool is full, an
    /// origin within its share evicts the newest item of the origin holding the most.
    pub fn insert(&mut self, tx: Tx, origin: ReplicaIndex) -> Result<bool, PoolRefusal> {
        let len = tx.len();
        if len > self.limits.max_tx_bytes {
            return Err(PoolRefusal::Oversized);
        }
        let id = tx.id();
        if self.items.contains_key(&id) {
            return Ok(false);
        }
        let mine = self.usage.get(&origin).copied().unwrap_or_default();
        let share = self.share();
        if mine.txs + 1 > share.txs || mine.bytes + len > share.bytes {
            return Err(PoolRefusal::OverShare);
        }
        while self.items.len() + 1 > self.limits.max_txs || self.bytes + len > self.limits.max_bytes
        {
            let fair = self.limits.max_bytes / self.members;
            let heaviest = self
                .usage
                .iter()
                .filter(|(o, u)| **o != origin && (u.bytes > fair || u.txs > share.txs / 2))
                .max_by_key(|(_, u)| u.bytes)
                .map(|(o, _)| *o);
            let Some(victim) = heaviest else {
                return Err(PoolRefusal::Full);
            };
            self.evict_newest(victim);
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, id);
        self.by_origin.entry(origin).or_default().insert(seq, id);
        let u = self.usage.entry(origin).or_default();
        u.txs += 1;
        u.bytes += len;
        self.bytes += len;
        self.items.insert(id, Entry { tx, origin, seq });
        Ok(true)
    }

    fn evict_newest(&mut self, origin: ReplicaIndex) {
        let newest = self
            .by_origin
            .get(&origin)
            .and_then(|o| o.last_key_value())
            .map(|(_, id)| *id);
        if let Some(id) = newest {
            self.remove(&id);
        }
    }

    pub fn remove(&mut self, id: &Hash) -> Option<Tx> {
        let e = self.items.remove(id)?;
        self.order.remove(&e.seq);
        if let Some(o) = self.by_origin.get_mut(&e.origin) {
            o.remove(&e.seq);
            if o.is_empty() {
                self.by_origin.remove(&e.origin);
            }
        }
        let len = e.tx.len();
        self.bytes -= len;
        if let Some(u) = self.usage.get_mut(&e.origin) {
            u.txs -= 1;
            u.bytes -= len;
            if u.txs == 0 {
                self.usage.remove(&e.origin);
            }
        }
        Some(e.tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(tag: u32, len: usize) -> Tx {
        let mut b = tag.to_be_bytes().to_vec();
        b.resize(len.max(4), 0);
        Tx::new(b)
    }

    fn small() -> PoolLimits {
        PoolLimits {
            max_txs: 100,
            max_bytes: 4000,
            max_tx_bytes: 500,
        }
    }

    #[test]
    fn bounds_hold_by_bytes_count_and_item_size() {
        let mut p = Mempool::new(small(), 4);
        assert_eq!(p.origin_share(), (50, 2000));
        assert_eq!(p.insert(tx(0, 501), 0), Err(PoolRefusal::Oversized));
        assert_eq!(p.insert(tx(1, 100), 0), Ok(true));
        assert_eq!(p.insert(tx(1, 100), 1), Ok(false));
        // Each origin may hold half the pool (twice 1/4): 2000 bytes.
        for i in 2..21 {
            assert_eq!(p.insert(tx(i, 100), 0), Ok(true), "item {i}");
        }
        assert_eq!(p.insert(tx(99, 100), 0), Err(PoolRefusal::OverShare));
        assert_eq!(p.bytes(), 2000);
        for o in 1..4u16 {
            for i in 0..20 {
                let _ = p.insert(tx(1000 * u32::from(o) + i, 100), o);
            }
        }
        assert!(
            p.bytes() <= 4000 && p.len() <= 100,
            "{} {}",
            p.bytes(),
            p.len()
        );
    }

    #[test]
    fn a_flooding_origin_is_evicted_for_one_within_its_share() {
        let mut p = Mempool::new(small(), 4);
        for i in 0..20 {
            assert_eq!(p.insert(tx(i, 100), 0), Ok(true));
        }
        for i in 0..20 {
            assert_eq!(p.insert(tx(100 + i, 100), 1), Ok(true));
        }
        // Full: origin 2 holds nothing, so the heaviest (0 and 1 tie at 2000) gives way.
        assert_eq!(p.insert(tx(500, 100), 2), Ok(true));
        assert_eq!(p.bytes(), 4000);
        assert!(p.get(&tx(500, 100).id()).is_some());
        // The evicted item was the newest of its origin; the oldest stays first in line.
        let first = p.oldest().next().map(|(id, _)| *id);
        assert_eq!(first, Some(tx(0, 100).id()));
        for i in 0..20 {
            p.remove(&tx(i, 100).id());
            p.remove(&tx(100 + i, 100).id());
        }
        assert_eq!(p.len(), 1);
        assert_eq!(p.bytes(), 100);
    }

    #[test]
    fn within_shares_a_full_pool_refuses() {
        let limits = PoolLimits {
            max_txs: 4,
            max_bytes: 4000,
            max_tx_bytes: 500,
        };
        let mut p = Mempool::new(limits, 4);
        for o in 0..4u16 {
            assert_eq!(p.insert(tx(u32::from(o), 10), o), Ok(true));
        }
        assert_eq!(p.insert(tx(9, 10), 0), Err(PoolRefusal::Full));
    }
}
