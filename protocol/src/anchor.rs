//! Anchors (DESIGN §5): a committed local block with the certificates that prove its commit,
//! carried as a global payload item. Global validators admit and vote for an anchor only if it
//! verifies against its domain's key set and continues that domain's anchored chain, so the
//! global chain holds every local block of every domain, in order, with no gap and no fork.

use crate::codec::{self, CodecError, MAX_MESSAGE_BYTES};
use crate::crypto::ThresholdKeys;
use crate::types::{Block, Certificate, DomainId, Hash, Header, Kind, Tx};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Public key sets by domain: what a verifier needs from the genesis.
pub type KeyRing = BTreeMap<DomainId, Box<dyn ThresholdKeys>>;

/// Why a commit proof, an anchor or a trace proof does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("no key set for domain {0} in the genesis")]
    UnknownDomain(DomainId),
    #[error("the commit chain has {got} blocks; the {domain} commit rule needs {needed}")]
    ChainTooShort {
        domain: DomainId,
        needed: usize,
        got: usize,
    },
    #[error("header at height {height} does not extend the block before it")]
    BrokenChain { height: u64 },
    #[error("header at height {height} breaks the commit rule (direct parent QC, next view)")]
    NotCommitRule { height: u64 },
    #[error("the commit certificate does not certify the last header of the chain")]
    WrongCertificate,
    #[error("the commit certificate names {got} signers, the quorum is {quorum}")]
    WrongSigners { got: usize, quorum: usize },
    #[error("the commit certificate's signature does not verify against the {0} key set")]
    BadSignature(DomainId),
    #[error("the payload item is not in the block (Merkle path mismatch)")]
    NotIncluded,
    #[error("the global payload item is not a readable anchor")]
    NotAnAnchor,
    #[error("the anchored block does not match the block holding the trace")]
    WrongAnchor,
    #[error("a block of domain {got} where {expected} was expected")]
    WrongDomain { expected: String, got: DomainId },
}

/// Blocks a commit chain needs under each layer's rule (DESIGN §3, §4).
pub fn chain_len(domain: DomainId) -> usize {
    match domain {
        DomainId::Global => 3,
        DomainId::Local(_) => 2,
    }
}

/// Proof that a block is committed: the headers above it up to the end of a commit chain, and
/// the QC over the last. Each header's hash covers its parent link and its justify QC, so the
/// one signature check on the last QC binds the whole chain; honest voters checked every
/// embedded QC before voting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitProof {
    pub above: Vec<Header>,
    pub qc: Certificate,
}

impl CommitProof {
    pub fn verify(&self, block: &Header, keys: &KeyRing) -> Result<(), ProofError> {
        let domain = block.domain;
        let keys = keys.get(&domain).ok_or(ProofError::UnknownDomain(domain))?;
        self.verify_with(block, keys.as_ref())
    }

    /// As [`CommitProof::verify`], with the domain's own key set.
    pub fn verify_with(&self, block: &Header, keys: &dyn ThresholdKeys) -> Result<(), ProofError> {
        let domain = block.domain;
        let needed = chain_len(domain);
        if self.above.len() + 1 < needed {
            return Err(ProofError::ChainTooShort {
                domain,
                needed,
                got: self.above.len() + 1,
            });
        }
        let mut chain = Vec::with_capacity(self.above.len() + 1);
        chain.push((block, block.hash()));
        for h in &self.above {
            let (prev, prev_hash) = chain[chain.len() - 1];
            if h.domain != domain || h.parent != prev_hash || h.height != prev.height + 1 {
                return Err(ProofError::BrokenChain { height: h.height });
            }
            chain.push((h, h.hash()));
        }
        // The commit rule on the last `needed` blocks: each certifies its parent directly, in
        // the next view.
        for pair in chain[chain.len() - needed..].windows(2) {
            let ((parent, parent_hash), (child, _)) = (pair[0], pair[1]);
            if child.justify.block() != parent_hash || child.view != parent.view + 1 {
                return Err(ProofError::NotCommitRule {
                    height: child.height,
                });
            }
        }
        let (last, last_hash) = chain[chain.len() - 1];
        let msg = &self.qc.msg;
        if msg.kind != Kind::Vote || msg.domain != domain || msg.digest != last_hash {
            return Err(ProofError::WrongCertificate);
        }
        if msg.view != last.view {
            return Err(ProofError::WrongCertificate);
        }
        check_signers(&self.qc, keys)?;
        if !keys.verify(&msg.bytes(), &self.qc.signature) {
            return Err(ProofError::BadSignature(domain));
        }
        Ok(())
    }
}

/// The signer bitmap is not covered by the threshold signature, so hold it to the exact shape
/// the Collector produces: one bit per member, exactly a quorum set. A proof whose bitmap was
/// altered then fails instead of passing with a misreported signer set.
fn check_signers(cert: &Certificate, keys: &dyn ThresholdKeys) -> Result<(), ProofError> {
    let quorum = keys.quorum();
    if !cert.signers.is_canonical(keys.size(), quorum) {
        let got = cert.signers.count();
        return Err(ProofError::WrongSigners { got, quorum });
    }
    Ok(())
}

/// A committed local block and its commit proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub block: Block,
    pub commit: CommitProof,
}

/// Payload items starting with this byte are anchors. Traces are CBOR maps or arrays, whose
/// first byte is never 0.
const ANCHOR_TAG: u8 = 0;

impl Anchor {
    pub fn to_tx(&self) -> Tx {
        let mut bytes = vec![ANCHOR_TAG];
        bytes.extend(codec::encode(self));
        Tx::new(bytes)
    }

    /// `None` when `tx` is not an anchor at all.
    pub fn from_tx(tx: &Tx) -> Option<Result<Anchor, CodecError>> {
        match tx.bytes().split_first() {
            Some((&ANCHOR_TAG, rest)) => Some(codec::decode(rest, MAX_MESSAGE_BYTES)),
            _ => None,
        }
    }

    pub fn is_anchor(tx: &Tx) -> bool {
        tx.bytes().first() == Some(&ANCHOR_TAG)
    }

    pub fn verify(&self, keys: &KeyRing) -> Result<(), ProofError> {
        if !matches!(self.block.domain, DomainId::Local(_)) {
            return Err(ProofError::WrongDomain {
                expected: "a local domain".into(),
                got: self.block.domain,
            });
        }
        self.commit.verify(&self.block.header(), keys)
    }

    pub fn link(&self) -> Link {
        Link {
            domain: self.block.domain,
            height: self.block.height,
            hash: self.block.hash(),
            parent: self.block.parent,
        }
    }
}

/// Where an anchor sits in its domain's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub domain: DomainId,
    pub height: u64,
    pub hash: Hash,
    pub parent: Hash,
}

/// Each local domain's last anchored (height, hash); a domain absent has only its genesis.
pub type Tips = BTreeMap<DomainId, (u64, Hash)>;

pub fn tip(tips: &Tips, domain: DomainId) -> (u64, Hash) {
    tips.get(&domain)
        .copied()
        .unwrap_or_else(|| (0, Block::genesis(domain).hash()))
}

/// Why an anchor is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    #[error("undecodable anchor")]
    Undecodable,
    #[error("anchor for {0}, which is not a local domain of the genesis")]
    UnknownDomain(DomainId),
    #[error("gap: {domain} is anchored up to {anchored}, the anchor is for height {height}")]
    Gap {
        domain: DomainId,
        anchored: u64,
        height: u64,
    },
    #[error(
        "fork: the anchor's block at {domain} height {height} does not extend the anchored chain"
    )]
    Fork { domain: DomainId, height: u64 },
    /// At or below the anchored height: a duplicate if the hash matches what is anchored
    /// there, a fork otherwise (the caller's history decides).
    #[error(
        "stale: {domain} is already anchored up to {anchored}, the anchor is for height {height}"
    )]
    Stale {
        domain: DomainId,
        anchored: u64,
        height: u64,
        hash: Hash,
    },
    #[error("bad commit certificate: {0}")]
    BadCertificate(ProofError),
}

impl AnchorError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AnchorError::Undecodable => "undecodable",
            AnchorError::UnknownDomain(_) => "unknown_domain",
            AnchorError::Gap { .. } => "gap",
            AnchorError::Fork { .. } => "fork",
            AnchorError::Stale { .. } => "stale",
            AnchorError::BadCertificate(_) => "bad_certificate",
        }
    }
}

/// Anchors whose certificate verified, remembered by payload id, so admission (from gossip
/// or the API), proposing, voting and every replay of a branch's anchors pay the pairing once
/// per anchor. Enough for every anchor in the mempool and on the uncommitted branches; a miss
/// only costs a check again.
const MAX_VERIFIED: usize = 16_384;
/// Anchors whose certificate was refused, by payload id, so a peer repeating one costs no
/// pairing either. Separate from the verified ones, so junk never pushes a good anchor out.
const MAX_REFUSED: usize = 1024;

/// A map that forgets its oldest entry beyond `capacity`.
struct Bounded<V> {
    map: HashMap<Hash, V>,
    /// Keys of `map`, oldest first.
    order: VecDeque<Hash>,
    capacity: usize,
}

impl<V> Bounded<V> {
    fn new(capacity: usize) -> Bounded<V> {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, id: &Hash) -> Option<&V> {
        self.map.get(id)
    }

    fn insert(&mut self, id: Hash, value: V) {
        if self.map.insert(id, value).is_none() {
            self.order.push_back(id);
            if self.order.len() > self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.map.remove(&oldest);
            }
        }
    }
}

/// A global validator's anchor rules: the local domains' key sets and the verdicts of the
/// certificate checks already made. A verdict depends only on the anchor's bytes (its id) and
/// the key sets, which never change here, so a remembered one is exactly what checking again
/// would say; only a check that ran and passed is remembered as valid.
pub struct AnchorRules {
    keys: KeyRing,
    verified: Bounded<Link>,
    /// The refused anchor's place (continuity is judged before the certificate) and why.
    refused: Bounded<(Link, ProofError)>,
}

impl AnchorRules {
    pub fn new(keys: KeyRing) -> AnchorRules {
        AnchorRules::with_capacity(keys, MAX_VERIFIED, MAX_REFUSED)
    }

    fn with_capacity(keys: KeyRing, verified: usize, refused: usize) -> AnchorRules {
        AnchorRules {
            keys,
            verified: Bounded::new(verified),
            refused: Bounded::new(refused),
        }
    }

    /// The anchor's place, verifying its certificate unless already judged. Continuity is
    /// not judged here.
    pub fn link(&mut self, tx: &Tx) -> Option<Result<Link, AnchorError>> {
        let id = tx.id();
        if let Some(link) = self.verified.get(&id) {
            return Some(Ok(*link));
        }
        if let Some((_, error)) = self.refused.get(&id) {
            return Some(Err(AnchorError::BadCertificate(error.clone())));
        }
        let anchor = match Anchor::from_tx(tx)? {
            Ok(a) => a,
            Err(_) => return Some(Err(AnchorError::Undecodable)),
        };
        Some(self.verify(id, &anchor))
    }

    /// The anchor's place without checking its certificate.
    pub fn peek(&self, tx: &Tx) -> Option<Result<Link, AnchorError>> {
        if let Some(link) = self.verified.get(&tx.id()) {
            return Some(Ok(*link));
        }
        Some(
            Anchor::from_tx(tx)?
                .map(|a| a.link())
                .map_err(|_| AnchorError::Undecodable),
        )
    }

    fn verify(&mut self, id: Hash, anchor: &Anchor) -> Result<Link, AnchorError> {
        let link = anchor.link();
        if !matches!(link.domain, DomainId::Local(_)) || !self.keys.contains_key(&link.domain) {
            return Err(AnchorError::UnknownDomain(link.domain));
        }
        match anchor.verify(&self.keys) {
            Ok(()) => {
                self.verified.insert(id, link);
                Ok(link)
            }
            Err(error) => {
                self.refused.insert(id, (link, error.clone()));
                Err(AnchorError::BadCertificate(error))
            }
        }
    }

    /// Judge `tx` against `tips` and advance them when it is a valid anchor. `Ok(None)`: not an
    /// anchor. Continuity is checked before the signature so junk costs no pairing, and a
    /// remembered verdict gives the same answer in the same order.
    pub fn apply(&mut self, tips: &mut Tips, tx: &Tx) -> Result<Option<Link>, AnchorError> {
        if !Anchor::is_anchor(tx) {
            return Ok(None);
        }
        let id = tx.id();
        let link = if let Some(link) = self.verified.get(&id) {
            *link
        } else if let Some((link, error)) = self.refused.get(&id) {
            continues(tips, link)?;
            return Err(AnchorError::BadCertificate(error.clone()));
        } else {
            let anchor = match Anchor::from_tx(tx) {
                None => return Ok(None),
                Some(Err(_)) => return Err(AnchorError::Undecodable),
                Some(Ok(a)) => a,
            };
            continues(tips, &anchor.link())?;
            self.verify(id, &anchor)?
        };
        continues(tips, &link)?;
        tips.insert(link.domain, (link.height, link.hash));
        Ok(Some(link))
    }
}

/// Whether `link` is the next block of its domain's anchored chain.
pub fn continues(tips: &Tips, link: &Link) -> Result<(), AnchorError> {
    let (anchored, hash) = tip(tips, link.domain);
    if link.height <= anchored {
        return Err(AnchorError::Stale {
            domain: link.domain,
            anchored,
            height: link.height,
            hash: link.hash,
        });
    }
    if link.height > anchored + 1 {
        return Err(AnchorError::Gap {
            domain: link.domain,
            anchored,
            height: link.height,
        });
    }
    if link.parent != hash {
        return Err(AnchorError::Fork {
            domain: link.domain,
            height: link.height,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
