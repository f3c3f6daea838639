//! Durable acknowledgements, the main loop's ledger: which items this node acknowledged
//! (`202`) still wait for their commit, per domain and within a bound, and when each is
//! offered to the domain again. Synchronous and clock-free (the caller passes `now`); the
//! items' bytes live in the pool and in the store, not here.

use lcbft_protocol::types::{DomainId, Hash};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// An acknowledged item not committed this long after it was last offered is offered again;
/// each further try waits twice as long, up to `MAX_REOFFER_AFTER`, so that a network that is
/// merely slow does not pay for repeated copies of its backlog.
pub const REOFFER_AFTER: Duration = Duration::from_secs(5);
pub const MAX_REOFFER_AFTER: Duration = Duration::from_secs(60);
/// Refusals remembered for `GET /v1/traces/{id}` (refusals after an acknowledgement are rare:
/// a restart with a smaller size limit, say).
const MAX_REFUSED: usize = 1024;

/// Bound of one domain's acknowledged items: the pool share the node's own submissions get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub txs: usize,
    pub bytes: usize,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    seq: u64,
    len: usize,
    due: Instant,
    tries: u32,
    /// Acknowledged before a state transfer: maybe committed in the blocks skipped.
    doubtful: bool,
}

#[derive(Debug)]
struct Ledger {
    limits: Limits,
    items: HashMap<Hash, Item>,
    bytes: usize,
    /// Every item by (due time, arrival number): the next to offer first.
    queue: BTreeMap<(Instant, u64), Hash>,
}

/// Every acknowledged, uncommitted item of this node.
#[derive(Debug, Default)]
pub struct Book {
    domains: BTreeMap<DomainId, Ledger>,
    next_seq: u64,
    refused: VecDeque<(DomainId, Hash, &'static str)>,
}

/// Why an item could not be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Not a domain of this node.
    Unknown,
    /// The domain's acknowledged items fill its bound.
    Bound,
}

/// The wait after the `tries`-th offer again: twice `REOFFER_AFTER` after the first.
fn offer_delay(tries: u32) -> Duration {
    REOFFER_AFTER
        .saturating_mul(1 << tries.min(8))
        .min(MAX_REOFFER_AFTER)
}

impl Book {
    pub fn new(limits: impl IntoIterator<Item = (DomainId, Limits)>) -> Book {
        Book {
            domains: limits
                .into_iter()
                .map(|(d, limits)| {
                    let ledger = Ledger {
                        limits,
                        items: HashMap::new(),
                        bytes: 0,
                        queue: BTreeMap::new(),
                    };
                    (d, ledger)
                })
                .collect(),
            next_seq: 0,
            refused: VecDeque::new(),
        }
    }

    pub fn contains(&self, domain: DomainId, id: &Hash) -> bool {
        self.domains
            .get(&domain)
            .is_some_and(|l| l.items.contains_key(id))
    }

    /// Whether an item of `len` bytes still fits `domain`'s bound.
    pub fn has_room(&self, domain: DomainId, len: usize) -> Result<(), Full> {
        let l = self.domains.get(&domain).ok_or(Full::Unknown)?;
        if l.items.len() + 1 > l.limits.txs || l.bytes + len > l.limits.bytes {
            return Err(Full::Bound);
        }
        Ok(())
    }

    /// Take an acknowledged item, first offered again at `due`; its arrival number, for the
    /// store. Refused over the bound; an item already here keeps its place.
    pub fn insert(
        &mut self,
        domain: DomainId,
        id: Hash,
        len: usize,
        due: Instant,
    ) -> Result<u64, Full> {
        if self.contains(domain, &id) {
            return self.add(domain, id, len, 0, due);
        }
        self.has_room(domain, len)?;
        self.add(domain, id, len, self.next_seq, due)
    }

    /// Take an item reloaded from the store, with its stored arrival number. Over the bound
    /// too (a restart with smaller limits): an acknowledged item is never dropped, and new
    /// ones wait until the domain is back within its bound.
    pub fn insert_at(
        &mut self,
        domain: DomainId,
        id: Hash,
        len: usize,
        seq: u64,
        due: Instant,
    ) -> Result<u64, Full> {
        self.add(domain, id, len, seq, due)
    }

    fn add(
        &mut self,
        domain: DomainId,
        id: Hash,
        len: usize,
        seq: u64,
        due: Instant,
    ) -> Result<u64, Full> {
        let l = self.domains.get_mut(&domain).ok_or(Full::Unknown)?;
        if let Some(item) = l.items.get(&id) {
            return Ok(item.seq);
        }
        let item = Item {
            seq,
            len,
            due,
            tries: 0,
            doubtful: false,
        };
        l.items.insert(id, item);
        l.bytes += len;
        l.queue.insert((due, seq), id);
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        Ok(seq)
    }

    /// The item committed or was given up: forget it. Whether it was here.
    pub fn remove(&mut self, domain: DomainId, id: &Hash) -> bool {
        let Some(l) = self.domains.get_mut(&domain) else {
            return false;
        };
        match l.items.remove(id) {
            Some(item) => {
                l.bytes -= item.len;
                l.queue.remove(&(item.due, item.seq));
                true
            }
            None => false,
        }
    }

    /// The item was refused after its acknowledgement (`reason`): forget it, and remember why
    /// for a while.
    pub fn refuse(&mut self, domain: DomainId, id: Hash, reason: &'static str) {
        self.remove(domain, &id);
        if self.refused.len() >= MAX_REFUSED {
            self.refused.pop_front();
        }
        self.refused.push_back((domain, id, reason));
    }

    /// Why the item was refused after its acknowledgement, if it was lately.
    pub fn refused(&self, id: &Hash) -> Option<(DomainId, &'static str)> {
        self.refused
            .iter()
            .rev()
            .find(|(_, i, _)| i == id)
            .map(|(d, _, r)| (*d, *r))
    }

    /// Up to `max` items due to be offered again at `now`, oldest due first; each is
    /// scheduled for its next offer (a longer wait each time).
    pub fn due(&mut self, now: Instant, max: usize) -> Vec<(DomainId, Hash)> {
        let mut out = Vec::new();
        for (domain, l) in &mut self.domains {
            while out.len() < max
                && let Some(entry) = l.queue.first_entry()
                && entry.key().0 <= now
            {
                let id = entry.remove();
                let Some(item) = l.items.get_mut(&id) else {
                    continue;
                };
                item.tries = item.tries.saturating_add(1);
                item.due = now + offer_delay(item.tries);
                l.queue.insert((item.due, item.seq), id);
                out.push((*domain, id));
            }
        }
        out
    }

    /// After a state transfer in `domain`: its items may be in the blocks this node skipped,
    /// which it cannot read, so it cannot tell which are committed. Each becomes doubtful and
    /// due at `now`: handed to the members, who can tell, instead of proposed here. How many.
    pub fn doubt(&mut self, domain: DomainId, now: Instant) -> usize {
        let Some(l) = self.domains.get_mut(&domain) else {
            return 0;
        };
        l.queue.clear();
        for (id, item) in &mut l.items {
            item.doubtful = true;
            item.tries = 0;
            item.due = now;
            l.queue.insert((now, item.seq), *id);
        }
        l.items.len()
    }

    /// How often a doubtful item was offered so far; `None` for an ordinary one.
    pub fn doubtful(&self, domain: DomainId, id: &Hash) -> Option<u32> {
        let item = self.domains.get(&domain)?.items.get(id)?;
        item.doubtful.then_some(item.tries)
    }

    /// Items and bytes acknowledged and waiting in `domain`.
    pub fn usage(&self, domain: DomainId) -> (usize, usize) {
        self.domains
            .get(&domain)
            .map(|l| (l.items.len(), l.bytes))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> Hash {
        Hash([i; 32])
    }

    const D: DomainId = DomainId::Local(1);

    fn book(txs: usize, bytes: usize) -> Book {
        Book::new([(D, Limits { txs, bytes })])
    }

    #[test]
    fn the_bound_holds_by_count_and_by_bytes() {
        let now = Instant::now();
        let mut b = book(3, 250);
        assert_eq!(b.insert(D, id(1), 100, now), Ok(0));
        assert_eq!(b.insert(D, id(2), 100, now), Ok(1));
        // Bytes: 200 + 100 > 250.
        assert_eq!(b.insert(D, id(3), 100, now), Err(Full::Bound));
        assert_eq!(b.insert(D, id(3), 50, now), Ok(2));
        // Count: a fourth item.
        assert_eq!(b.insert(D, id(4), 0, now), Err(Full::Bound));
        // Again: keeps its place, costs nothing.
        assert_eq!(b.insert(D, id(1), 100, now), Ok(0));
        assert_eq!(b.usage(D), (3, 250));
        assert_eq!(
            b.insert(DomainId::Global, id(5), 1, now),
            Err(Full::Unknown)
        );
        // A commit frees room.
        assert!(b.remove(D, &id(2)));
        assert!(!b.remove(D, &id(2)));
        assert_eq!(b.usage(D), (2, 150));
        assert_eq!(b.insert(D, id(4), 100, now), Ok(3));
        // Reloaded items are never dropped, even over the bound; new ones wait.
        assert_eq!(b.insert_at(D, id(9), 1000, 7, now), Ok(7));
        assert_eq!(b.usage(D), (4, 1250));
        assert_eq!(b.insert(D, id(10), 1, now), Err(Full::Bound));
    }

    #[test]
    fn items_are_offered_again_with_growing_waits_until_removed() {
        let t0 = Instant::now();
        let mut b = book(10, 10_000);
        b.insert(D, id(1), 10, t0 + REOFFER_AFTER).expect("room");
        b.insert(D, id(2), 10, t0 + REOFFER_AFTER).expect("room");
        assert!(b.due(t0, 100).is_empty());
        let t1 = t0 + REOFFER_AFTER;
        assert_eq!(b.due(t1, 1), vec![(D, id(1))]);
        assert_eq!(b.due(t1, 1), vec![(D, id(2))]);
        assert!(b.due(t1, 10).is_empty());
        // The second try waits twice as long.
        assert!(b.due(t1 + REOFFER_AFTER, 10).is_empty());
        let t2 = t1 + 2 * REOFFER_AFTER;
        assert_eq!(b.due(t2, 10), vec![(D, id(1)), (D, id(2))]);
        b.remove(D, &id(1));
        let far = t2 + MAX_REOFFER_AFTER;
        assert_eq!(b.due(far, 10), vec![(D, id(2))]);
        assert_eq!(b.domains[&D].queue.len(), 1);
    }

    #[test]
    fn refusals_are_remembered_within_a_bound() {
        let now = Instant::now();
        let mut b = book(10, 10_000);
        b.insert(D, id(1), 10, now).expect("room");
        b.refuse(D, id(1), "oversized");
        assert!(!b.contains(D, &id(1)));
        assert_eq!(b.refused(&id(1)), Some((D, "oversized")));
        for i in 0..MAX_REFUSED {
            b.refuse(D, Hash::of(&i.to_be_bytes()), "oversized");
        }
        assert_eq!(b.refused(&id(1)), None);
        assert_eq!(b.refused.len(), MAX_REFUSED);
    }

    #[test]
    fn after_a_transfer_every_item_is_doubtful_and_due_at_once() {
        let t0 = Instant::now();
        let mut b = book(10, 10_000);
        b.insert(D, id(1), 10, t0 + MAX_REOFFER_AFTER)
            .expect("room");
        b.insert(D, id(2), 10, t0 + REOFFER_AFTER).expect("room");
        assert_eq!(b.doubtful(D, &id(1)), None);
        assert_eq!(b.doubt(D, t0), 2);
        assert_eq!(b.doubt(DomainId::Global, t0), 0);
        assert_eq!(b.due(t0, 10), vec![(D, id(1)), (D, id(2))]);
        assert_eq!(b.doubtful(D, &id(1)), Some(1));
        // Offered again with the usual growing waits; an item acknowledged later is ordinary.
        assert!(b.due(t0 + REOFFER_AFTER, 10).is_empty());
        b.insert(D, id(3), 10, t0).expect("room");
        assert_eq!(b.doubtful(D, &id(3)), None);
        assert_eq!(b.domains[&D].queue.len(), 3);
    }

    #[test]
    fn arrival_numbers_continue_after_a_reload() {
        let now = Instant::now();
        let mut b = book(10, 10_000);
        assert_eq!(b.insert_at(D, id(1), 10, 41, now), Ok(41));
        assert_eq!(b.insert(D, id(2), 10, now), Ok(42));
    }
}
