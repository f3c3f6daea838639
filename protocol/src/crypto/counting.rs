//! Call counting around any key set, so the simulator can check that each phase costs no more
//! crypto than the design's floor (e.g. one combine and one verification per certificate).

use super::{CryptoError, SchemeId, Share, Signature, ThresholdKeys};
use crate::types::ReplicaIndex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The operations that cost real time with a BLS backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CryptoOp {
    SignShare,
    VerifyShare,
    Combine,
    Verify,
}

impl CryptoOp {
    /// In the order of [`CryptoCounters::snapshot`].
    pub const ALL: [CryptoOp; 4] = [
        CryptoOp::SignShare,
        CryptoOp::VerifyShare,
        CryptoOp::Combine,
        CryptoOp::Verify,
    ];
}

/// Calls per operation, shared by every [`Counting`] wrapper that should add to the same tally
/// (e.g. all replicas of one simulated run).
#[derive(Debug, Default)]
pub struct CryptoCounters {
    counts: [AtomicU64; 4],
}

impl CryptoCounters {
    pub fn get(&self, op: CryptoOp) -> u64 {
        // Relaxed: each counter is an independent tally, never used to order other memory.
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// All counts, indexed like [`CryptoOp::ALL`].
    pub fn snapshot(&self) -> [u64; 4] {
        CryptoOp::ALL.map(|op| self.get(op))
    }

    pub fn reset(&self) {
        for count in &self.counts {
            count.store(0, Ordering::Relaxed);
        }
    }

    fn bump(&self, op: CryptoOp) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Delegates to `inner`, counting every call, including failed ones: the cost floor is about
/// the work a replica asks for.
pub struct Counting {
    inner: Box<dyn ThresholdKeys>,
    counters: Arc<CryptoCounters>,
}

impl Counting {
    pub fn new(inner: Box<dyn ThresholdKeys>, counters: Arc<CryptoCounters>) -> Self {
        Counting { inner, counters }
    }
}

impl ThresholdKeys for Counting {
    fn scheme(&self) -> SchemeId {
        self.inner.scheme()
    }

    fn quorum(&self) -> usize {
        self.inner.quorum()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn sign_share(&self, msg: &[u8]) -> Result<Share, CryptoError> {
        self.counters.bump(CryptoOp::SignShare);
        self.inner.sign_share(msg)
    }

    fn verify_share(&self, signer: ReplicaIndex, msg: &[u8], share: &Share) -> bool {
        self.counters.bump(CryptoOp::VerifyShare);
        self.inner.verify_share(signer, msg, share)
    }

    fn combine(&self, shares: &[(ReplicaIndex, &Share)]) -> Result<Signature, CryptoError> {
        self.counters.bump(CryptoOp::Combine);
        self.inner.combine(shares)
    }

    fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        self.counters.bump(CryptoOp::Verify);
        self.inner.verify(msg, sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Dealer, SimScheme};

    #[test]
    fn counts_match_calls() {
        let dealt = SimScheme::deal(4, 3, [3; 32]);
        let counters = Arc::new(CryptoCounters::default());
        let members: Vec<Counting> = dealt
            .secrets
            .iter()
            .map(|s| {
                let inner = SimScheme::load(4, &dealt.public, Some(s)).unwrap();
                Counting::new(inner, Arc::clone(&counters))
            })
            .collect();
        let shares: Vec<Share> = members
            .iter()
            .map(|m| m.sign_share(b"m").unwrap())
            .collect();
        for (i, share) in shares.iter().enumerate() {
            assert!(members[0].verify_share(i as ReplicaIndex, b"m", share));
        }
        let chosen: Vec<_> = (0..3).map(|i| (i as ReplicaIndex, &shares[i])).collect();
        let sig = members[1].combine(&chosen).unwrap();
        assert!(members[2].verify(b"m", &sig));
        assert!(!members[3].verify(b"other", &sig));
        // Failed calls count too.
        assert!(members[0].combine(&chosen[..1]).is_err());

        assert_eq!(counters.snapshot(), [4, 4, 2, 2]);
        assert_eq!(counters.get(CryptoOp::VerifyShare), 4);
        assert_eq!(members[0].quorum(), 3);
        assert_eq!(members[0].size(), 4);
        assert_eq!(members[0].scheme(), SchemeId::Sim);
        assert_eq!(counters.snapshot(), [4, 4, 2, 2], "accessors are free");

        counters.reset();
        assert_eq!(counters.snapshot(), [0; 4]);
    }
}
