//! Messages hashed to G2, remembered per key set.
//!
//! Hashing a message to the curve is a large part of every BLS operation (with
//! threshold_crypto, whose hash draws a random point and clears its cofactor, it costs as
//! much as a pairing), and a replica handles the same message many times: it signs its share
//! of a vote, verifies the other `n - f - 1` shares of it, and checks the certificate made of
//! them on arrival and again later. So each backend hashes through a [`HashedMessages`]
//! memo: the message's blake3 digest to its point, a few hundred entries, the oldest
//! forgotten first. A miss recomputes the point, so the memo changes only how long an
//! operation takes, never its answer: no clock, no thread, nothing random.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Entries kept per key set: a few views' worth of votes, timeouts and certificates.
pub(super) const CAPACITY: usize = 512;

pub(super) struct HashedMessages<P> {
    inner: Mutex<Memo<P>>,
}

struct Memo<P> {
    points: BTreeMap<[u8; 32], P>,
    /// Keys of `points`, oldest first.
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl<P: Clone> HashedMessages<P> {
    pub(super) fn new(capacity: usize) -> HashedMessages<P> {
        HashedMessages {
            inner: Mutex::new(Memo {
                points: BTreeMap::new(),
                order: VecDeque::with_capacity(capacity),
                capacity: capacity.max(1),
            }),
        }
    }

    /// `msg` hashed to the curve by `hash`, from the memo when it holds it. The hash runs
    /// outside the lock, so a concurrent caller never waits for another's hashing.
    pub(super) fn point(&self, msg: &[u8], hash: impl FnOnce(&[u8]) -> P) -> P {
        let key = *blake3::hash(msg).as_bytes();
        if let Some(point) = self.lock().points.get(&key) {
            return point.clone();
        }
        let point = hash(msg);
        let mut memo = self.lock();
        if !memo.points.contains_key(&key) {
            if memo.order.len() >= memo.capacity
                && let Some(oldest) = memo.order.pop_front()
            {
                memo.points.remove(&oldest);
            }
            memo.order.push_back(key);
            memo.points.insert(key, point.clone());
        }
        point
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().points.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memo<P>> {
        // A panic while holding the lock leaves a consistent map (every update is one insert
        // after one remove), so a poisoned memo is still good.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::HashedMessages;
    use std::cell::Cell;

    #[test]
    fn hashes_each_message_once_and_forgets_the_oldest() {
        let memo = HashedMessages::new(2);
        let calls = Cell::new(0);
        let hash = |m: &[u8]| {
            calls.set(calls.get() + 1);
            m.len()
        };
        assert_eq!(memo.point(b"a", hash), 1);
        assert_eq!(memo.point(b"a", hash), 1);
        assert_eq!(calls.get(), 1, "the second lookup is a hit");
        assert_eq!(memo.point(b"bb", hash), 2);
        assert_eq!(memo.point(b"ccc", hash), 3);
        assert_eq!(memo.len(), 2, "bounded");
        assert_eq!(calls.get(), 3);
        // "a" was the oldest: hashed again; "ccc" is still there.
        assert_eq!(memo.point(b"a", hash), 1);
        assert_eq!(calls.get(), 4);
        assert_eq!(memo.point(b"ccc", hash), 3);
        assert_eq!(calls.get(), 4);
    }
}
