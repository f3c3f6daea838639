//! The one admission rule for payload, on every path: a trace submitted to the API, gossiped
//! by a member, or carried in a proposal is admitted only if it is in canonical encoding (its
//! id is the hash of those bytes), its body, application and parents are within limits, it
//! belongs to the domain it arrives in, its producer's signature verifies, and it is not
//! already committed.
//!
//! Signatures are checked once per node: a verified id is remembered, and the items of one
//! message are verified as a batch (ZIP-215 rules, under which a batch and a single check
//! agree on every signature, so no two members judge one trace differently).
//!
//! A raw network (genesis `payload = "raw"`, for benchmarks comparable to other BFT systems)
//! carries opaque items: they are only bounded in size, kept apart from anchors, and checked
//! against the committed index.

use crate::metrics::Metrics;
use crate::store::Store;
use crate::trace::{MAX_APPLICATION, MAX_PARENTS, SignedTrace};
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes, batch};
use lcbft_protocol::PayloadRule;
use lcbft_protocol::anchor::Anchor;
use lcbft_protocol::codec;
use lcbft_protocol::types::{DomainId, Hash, Tx};
use quick_cache::sync::Cache;
use std::sync::Arc;
use tracing::warn;

/// Room for a trace's fields around its body: producer, digest, signature, the longest
/// application and every parent, with their CBOR framing.
const FIELDS_BYTES: usize = 32 + 32 + 64 + MAX_APPLICATION + MAX_PARENTS * 34 + 256;
/// Verified trace ids remembered, with their domain: a trace is checked when it arrives and
/// again in the proposal that carries it, usually within a second.
const VERIFIED_CACHE: usize = 65_536;

/// Why an item was refused; the label is the `reason` of `lcbft_traces_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Oversized,
    Malformed,
    NonCanonical,
    BadField,
    WrongDomain,
    BadSignature,
    Committed,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Oversized => "oversized",
            Refusal::Malformed => "malformed",
            Refusal::NonCanonical => "non_canonical",
            Refusal::BadField => "bad_field",
            Refusal::WrongDomain => "wrong_domain",
            Refusal::BadSignature => "bad_signature",
            Refusal::Committed => "committed",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Oversized => "the trace is larger than this network admits",
            Refusal::Malformed => "not a signed trace",
            Refusal::NonCanonical => "the trace is not in canonical encoding",
            Refusal::BadField => "a field is out of its limits",
            Refusal::WrongDomain => "the trace belongs to another domain",
            Refusal::BadSignature => "the signature does not verify against the producer key",
            Refusal::Committed => "the trace is already committed",
        })
    }
}

#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    max_body: usize,
    /// A raw network (genesis `payload = "raw"`): items are opaque, only bounded in size.
    raw: bool,
    verified: Cache<Hash, DomainId>,
    store: Store,
    metrics: Metrics,
}

impl Admission {
    /// `max_body`: the largest trace body admitted (`api.max_trace_bytes`); every member of a
    /// domain should use the same, or one refuses to vote for what the others admit.
    pub fn new(max_body: usize, raw: bool, store: Store, metrics: Metrics) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                max_body,
                raw,
                verified: Cache::new(VERIFIED_CACHE),
                store,
                metrics,
            }),
        }
    }

    /// The largest encoded trace admitted.
    pub fn max_trace_bytes(&self) -> usize {
        self.inner.max_body + FIELDS_BYTES
    }

    /// One verdict per item, in order; refusals are counted by reason.
    pub fn check(&self, domain: DomainId, txs: &[Tx]) -> Vec<Result<(), Refusal>> {
        let ids: Vec<Hash> = txs.iter().map(Tx::id).collect();
        let mut verdicts: Vec<Result<(), Refusal>> = Vec::with_capacity(txs.len());
        let mut unverified = Vec::new();
        for (i, (tx, id)) in txs.iter().zip(&ids).enumerate() {
            match self.shape(domain, tx, id) {
                Ok(Some(trace)) => {
                    unverified.push((i, *id, trace));
                    verdicts.push(Ok(()));
                }
                Ok(None) => verdicts.push(Ok(())),
                Err(r) => verdicts.push(Err(r)),
            }
        }
        for (i, ok) in self.verify(&unverified) {
            if !ok {
                verdicts[i] = Err(Refusal::BadSignature);
            }
        }
        self.not_committed(&ids, &mut verdicts);
        for v in &verdicts {
            if let Err(r) = v {
                self.inner
                    .metrics
                    .traces_refused
                    .get_or_create(&Metrics::reason(r.label()))
                    .inc();
            }
        }
        verdicts
    }

    /// Everything but the signature and the history. `Some` if the signature still needs a
    /// check.
    fn shape(&self, domain: DomainId, tx: &Tx, id: &Hash) -> Result<Option<SignedTrace>, Refusal> {
        if self.inner.raw {
            if tx.len() > self.inner.max_body {
                return Err(Refusal::Oversized);
            }
            if tx.is_empty() || Anchor::is_anchor(tx) {
                return Err(Refusal::Malformed);
            }
            return Ok(None);
        }
        if tx.len() > self.max_trace_bytes() {
            return Err(Refusal::Oversized);
        }
        // An id is the hash of the bytes, and only bytes that passed every check below are
        // remembered: a proposal's items, seen before in gossip, are not decoded again.
        if let Some(known) = self.inner.verified.get(id) {
            return if known == domain {
                Ok(None)
            } else {
                Err(Refusal::WrongDomain)
            };
        }
        let signed: SignedTrace =
            codec::decode(tx.bytes(), self.max_trace_bytes()).map_err(|_| Refusal::Malformed)?;
        if codec::encode(&signed) != tx.bytes() {
            return Err(Refusal::NonCanonical);
        }
        let t = &signed.trace;
        if t.body
            .as_ref()
            .is_some_and(|b| b.len() > self.inner.max_body)
        {
            return Err(Refusal::Oversized);
        }
        if t.application.len() > MAX_APPLICATION || t.parents.len() > MAX_PARENTS {
            return Err(Refusal::BadField);
        }
        if t.domain != domain {
            return Err(Refusal::WrongDomain);
        }
        Ok(Some(signed))
    }

    /// Verify as one batch; on failure, one by one to find the bad items.
    fn verify(&self, items: &[(usize, Hash, SignedTrace)]) -> Vec<(usize, bool)> {
        if items.is_empty() {
            return Vec::new();
        }
        let parsed: Vec<Option<(VerificationKeyBytes, Signature, Vec<u8>)>> = items
            .iter()
            .map(|(_, _, s)| {
                let sig = Signature::try_from(s.signature.as_slice()).ok()?;
                Some((
                    VerificationKeyBytes::from(s.trace.producer),
                    sig,
                    s.trace.signing_bytes(),
                ))
            })
            .collect();
        let mut all_ok = parsed.iter().all(Option::is_some);
        if all_ok && items.len() > 1 {
            let mut b = batch::Verifier::new();
            for (vk, sig, msg) in parsed.iter().flatten() {
                b.queue((*vk, *sig, msg));
            }
            all_ok = b.verify(rand::thread_rng()).is_ok();
        } else {
            all_ok = false;
        }
        let verdicts: Vec<(usize, bool)> = items
            .iter()
            .zip(&parsed)
            .map(|((i, _, _), p)| {
                let ok = all_ok
                    || p.as_ref().is_some_and(|(vk, sig, msg)| {
                        VerificationKey::try_from(*vk).is_ok_and(|k| k.verify(sig, msg).is_ok())
                    });
                (*i, ok)
            })
            .collect();
        for ((_, id, signed), (_, ok)) in items.iter().zip(&verdicts) {
            if *ok {
                self.inner.verified.insert(*id, signed.trace.domain);
            }
        }
        verdicts
    }

    fn not_committed(&self, ids: &[Hash], verdicts: &mut [Result<(), Refusal>]) {
        match self.inner.store.committed_ids(ids) {
            Ok(found) => {
                for (v, committed) in verdicts.iter_mut().zip(found) {
                    if committed && v.is_ok() {
                        *v = Err(Refusal::Committed);
                    }
                }
            }
            // Judged without history this once: the replica's own recent-commit check and
            // the next read still stand.
            Err(e) => warn!("admission: reading the committed index failed: {e}"),
        }
    }
}

/// The admission rule as the replicas' vote check.
pub struct ProposalRule(pub Admission);

impl PayloadRule for ProposalRule {
    fn admit(&mut self, domain: DomainId, txs: &[Tx]) -> Vec<bool> {
        self.0
            .check(domain, txs)
            .into_iter()
            .map(|v| v.is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests;
