//! Counting and timing around a domain's threshold key set (like the protocol's `Counting`
//! wrapper, plus time): `lcbft_crypto_operations_total{op}` and
//! `lcbft_crypto_operation_seconds{op}`. Failed calls count too: the cost is the work asked.

use super::{Metrics, OpLabels, layer};
use lcbft_protocol::crypto::{CryptoError, SchemeId, Share, Signature, ThresholdKeys};
use lcbft_protocol::types::{DomainId, ReplicaIndex};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::time::Instant;

/// In the order of [`OPS`].
const SIGN_SHARE: usize = 0;
const VERIFY_SHARE: usize = 1;
const COMBINE: usize = 2;
const VERIFY: usize = 3;
const OPS: [&str; 4] = ["sign_share", "verify_share", "combine", "verify"];

pub struct TimedKeys {
    inner: Box<dyn ThresholdKeys>,
    /// Per operation: its counter and its histogram, resolved once.
    ops: [(Counter, Histogram); 4],
}

impl TimedKeys {
    pub fn new(inner: Box<dyn ThresholdKeys>, metrics: &Metrics, domain: DomainId) -> TimedKeys {
        let ops = OPS.map(|op| {
            let l = OpLabels {
                layer: layer(domain),
                domain: domain.to_string(),
                op,
            };
            (
                metrics.crypto_ops.get_or_create(&l).clone(),
                metrics.crypto_seconds.get_or_create(&l).clone(),
            )
        });
        TimedKeys { inner, ops }
    }

    fn timed<T>(&self, op: usize, f: impl FnOnce(&dyn ThresholdKeys) -> T) -> T {
        let start = Instant::now();
        let out = f(self.inner.as_ref());
        let (count, time) = &self.ops[op];
        count.inc();
        time.observe(start.elapsed().as_secs_f64());
        out
    }
}

impl ThresholdKeys for TimedKeys {
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
        self.timed(SIGN_SHARE, |k| k.sign_share(msg))
    }

    fn verify_share(&self, signer: ReplicaIndex, msg: &[u8], share: &Share) -> bool {
        self.timed(VERIFY_SHARE, |k| k.verify_share(signer, msg, share))
    }

    fn combine(&self, shares: &[(ReplicaIndex, &Share)]) -> Result<Signature, CryptoError> {
        self.timed(COMBINE, |k| k.combine(shares))
    }

    fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        self.timed(VERIFY, |k| k.verify(msg, sig))
    }
}
