//! Wire and chain types shared by both layers. Everything signed or hashed has one canonical
//! byte encoding, written out field by field so it never depends on a serde format.

use crate::crypto::{Share, Signature};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;

/// A replica's position in its domain's member list (and its key-share index).
pub type ReplicaIndex = u16;

/// Global views and local rounds and terms.
pub type View = u64;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..8])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The global domain, or one local domain by id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DomainId {
    Global,
    Local(u32),
}

impl DomainId {
    fn canonical(&self) -> [u8; 5] {
        match self {
            DomainId::Global => [0, 0, 0, 0, 0],
            DomainId::Local(id) => {
                let b = id.to_be_bytes();
                [1, b[0], b[1], b[2], b[3]]
            }
        }
    }
}

impl fmt::Debug for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainId::Global => f.write_str("global"),
            DomainId::Local(id) => write!(f, "local/{id}"),
        }
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A domain name that is neither `global` nor `local/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a domain: expected 'global' or 'local/<id>'")]
pub struct NotADomain(pub String);

/// The inverse of `Display`: `global` or `local/<id>`.
impl std::str::FromStr for DomainId {
    type Err = NotADomain;

    fn from_str(s: &str) -> Result<DomainId, NotADomain> {
        if s == "global" {
            return Ok(DomainId::Global);
        }
        s.strip_prefix("local/")
            .and_then(|id| id.parse().ok())
            .map(DomainId::Local)
            .ok_or_else(|| NotADomain(s.to_owned()))
    }
}

/// What a threshold share vouches for. Every basic phase signs one of these.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum Kind {
    /// A vote for a block (both layers).
    Vote,
    /// Global: "I gave up on this view" (NewView share; n-f form a timeout certificate).
    Timeout,
    /// Local view change phase 1: "move to this term".
    ViewChange,
    /// Local view change phase 2: "I accept this leader and chosen certificate for the term".
    Confirm,
}

/// The message a share signs: `(domain, kind, view, digest)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct SignedMsg {
    pub domain: DomainId,
    pub kind: Kind,
    pub view: View,
    pub digest: Hash,
}

impl SignedMsg {
    /// Canonical bytes: fixed layout, domain-separated, 52 bytes.
    pub fn bytes(&self) -> [u8; 52] {
        let mut out = [0u8; 52];
        out[..6].copy_from_slice(b"lcbft1");
        out[6..11].copy_from_slice(&self.domain.canonical());
        out[11] = self.kind as u8;
        out[12..20].copy_from_slice(&self.view.to_be_bytes());
        out[20..52].copy_from_slice(&self.digest.0);
        out
    }
}

/// Which members' shares went into a certificate (availability ranking reads it).
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Bitmap(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Bitmap {
    pub fn from_indices(n: usize, indices: impl IntoIterator<Item = ReplicaIndex>) -> Bitmap {
        let mut bytes = vec![0u8; n.div_ceil(8)];
        for i in indices {
            let i = usize::from(i);
            if i < n {
                bytes[i / 8] |= 1 << (i % 8);
            }
        }
        Bitmap(bytes)
    }

    pub fn contains(&self, i: ReplicaIndex) -> bool {
        let i = usize::from(i);
        self.0.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    pub fn count(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// The one shape a certificate's bitmap may have (the Collector's): one bit per member
    /// of an `n`-member domain, no bit beyond, and exactly `quorum` set. The threshold
    /// signature does not cover the bitmap, so any other shape is a forgery of who signed.
    pub fn is_canonical(&self, n: usize, quorum: usize) -> bool {
        self.0.len() == n.div_ceil(8)
            && (n.is_multiple_of(8) || self.0.last().is_none_or(|b| b >> (n % 8) == 0))
            && self.count() == quorum
    }

    pub fn iter(&self) -> impl Iterator<Item = ReplicaIndex> + '_ {
        (0..self.0.len() * 8)
            .filter_map(|i| ReplicaIndex::try_from(i).ok())
            .filter(|&i| self.contains(i))
    }
}

impl fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A combined threshold signature over a [`SignedMsg`] with the signers' bitmap: a QC when
/// `kind` is `Vote`, a timeout, view-change or confirmation certificate otherwise.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    pub msg: SignedMsg,
    pub signers: Bitmap,
    pub signature: Signature,
}

impl Certificate {
    /// The certificate of the genesis block: the one certificate that carries no signature.
    pub fn genesis(domain: DomainId) -> Certificate {
        Certificate {
            msg: SignedMsg {
                domain,
                kind: Kind::Vote,
                view: 0,
                digest: Block::genesis(domain).hash(),
            },
            signers: Bitmap::default(),
            signature: Signature::default(),
        }
    }

    pub fn is_genesis(&self) -> bool {
        self.msg.view == 0 && self.msg.kind == Kind::Vote && self.signature.0.is_empty()
    }

    pub fn view(&self) -> View {
        self.msg.view
    }

    /// The certified block, for a QC.
    pub fn block(&self) -> Hash {
        self.msg.digest
    }

    /// Cache key: the certificate's identity including its signature.
    pub fn id(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(&self.msg.bytes());
        h.update(&self.signers.0);
        h.update(&self.signature.0);
        Hash(*h.finalize().as_bytes())
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}({}@{:?} by {:?})",
            self.msg.kind, self.msg.view, self.msg.digest, self.signers
        )
    }
}

/// An opaque payload item: a data trace or an anchor, encoded by the node. Its id, the hash of
/// its bytes, is computed once when the item is made or decoded: an item is looked up by id at
/// every step of its way (pool, block hash, branch checks, index), and hashing it again at each
/// step cost more than any other per-item work under load. The bytes cannot change afterwards.
#[derive(Clone)]
pub struct Tx {
    bytes: Vec<u8>,
    id: Hash,
}

impl Tx {
    pub fn new(bytes: Vec<u8>) -> Tx {
        let id = Hash::of(&bytes);
        Tx { bytes, id }
    }

    pub fn id(&self) -> Hash {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl PartialEq for Tx {
    fn eq(&self, other: &Tx) -> bool {
        self.id == other.id
    }
}

impl Eq for Tx {}

impl std::hash::Hash for Tx {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state)
    }
}

impl PartialOrd for Tx {
    fn partial_cmp(&self, other: &Tx) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tx {
    fn cmp(&self, other: &Tx) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl Serialize for Tx {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&self.bytes, s)
    }
}

impl<'de> Deserialize<'de> for Tx {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tx, D::Error> {
        let bytes: Vec<u8> = serde_bytes::deserialize(d)?;
        Ok(Tx::new(bytes))
    }
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tx({:?}, {}B)", self.id, self.bytes.len())
    }
}

/// A block of either layer. `view` is the global view, or in a local domain the term in its
/// high 32 bits and the round within the term in its low 32 bits (see [`crate::local`]), so
/// one `u64` order serves both layers' rules.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub domain: DomainId,
    pub height: u64,
    pub view: View,
    pub proposer: ReplicaIndex,
    pub parent: Hash,
    /// The QC for `parent` (chained HotStuff: each block carries its parent's certificate).
    pub justify: Certificate,
    pub payload: Payload,
}

/// A block's items with their Merkle root, computed once. A block's hash is asked for at
/// every step of its way (tree, vote checks, storage, anchors, proofs), and the root over
/// thousands of ids was, under load, most of what the storage thread hashed. Reading goes
/// through `Deref`; any change goes through `DerefMut`, which forgets the root.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload {
    items: Vec<Tx>,
    #[serde(skip)]
    root: OnceLock<Hash>,
}

impl Payload {
    /// Merkle root over the items' ids (see [`crate::merkle`]).
    pub fn root(&self) -> Hash {
        *self
            .root
            .get_or_init(|| crate::merkle::root(self.items.iter().map(Tx::id)))
    }

    pub fn into_vec(self) -> Vec<Tx> {
        self.items
    }
}

impl std::ops::Deref for Payload {
    type Target = Vec<Tx>;

    fn deref(&self) -> &Vec<Tx> {
        &self.items
    }
}

impl std::ops::DerefMut for Payload {
    fn deref_mut(&mut self) -> &mut Vec<Tx> {
        self.root = OnceLock::new();
        &mut self.items
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.items == other.items
    }
}

impl Eq for Payload {}

impl From<Vec<Tx>> for Payload {
    fn from(items: Vec<Tx>) -> Payload {
        Payload {
            items,
            root: OnceLock::new(),
        }
    }
}

impl FromIterator<Tx> for Payload {
    fn from_iter<I: IntoIterator<Item = Tx>>(iter: I) -> Payload {
        Payload::from(iter.into_iter().collect::<Vec<Tx>>())
    }
}

impl IntoIterator for Payload {
    type Item = Tx;
    type IntoIter = std::vec::IntoIter<Tx>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a> IntoIterator for &'a Payload {
    type Item = &'a Tx;
    type IntoIter = std::slice::Iter<'a, Tx>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.items.fmt(f)
    }
}

impl Block {
    pub fn genesis(domain: DomainId) -> Block {
        Block {
            domain,
            height: 0,
            view: 0,
            proposer: 0,
            parent: Hash::ZERO,
            justify: Certificate {
                msg: SignedMsg {
                    domain,
                    kind: Kind::Vote,
                    view: 0,
                    digest: Hash::ZERO,
                },
                signers: Bitmap::default(),
                signature: Signature::default(),
            },
            payload: Payload::default(),
        }
    }

    /// Merkle root over the payload items' ids (see [`crate::merkle`]).
    pub fn payload_root(&self) -> Hash {
        self.payload.root()
    }

    /// Header hash: commits to every field, the payload through its Merkle root.
    pub fn hash(&self) -> Hash {
        self.header().hash()
    }

    /// The block without its payload: what proofs and anchors chain through.
    pub fn header(&self) -> Header {
        Header {
            domain: self.domain,
            height: self.height,
            view: self.view,
            proposer: self.proposer,
            parent: self.parent,
            justify: self.justify.clone(),
            payload_root: self.payload_root(),
        }
    }
}

/// A block's header: every field but the payload, which it commits to through the Merkle root.
/// Its hash is the block's hash.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Header {
    pub domain: DomainId,
    pub height: u64,
    pub view: View,
    pub proposer: ReplicaIndex,
    pub parent: Hash,
    pub justify: Certificate,
    pub payload_root: Hash,
}

impl Header {
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"lcbft1/block");
        h.update(&self.domain.canonical());
        h.update(&self.height.to_be_bytes());
        h.update(&self.view.to_be_bytes());
        h.update(&self.proposer.to_be_bytes());
        h.update(&self.parent.0);
        h.update(&self.justify.id().0);
        h.update(&self.payload_root.0);
        Hash(*h.finalize().as_bytes())
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Block(h{} v{:#x} by {} parent {:?} {} tx)",
            self.height,
            self.view,
            self.proposer,
            self.parent,
            self.payload.len()
        )
    }
}

/// A vote or any other share: what it signs and the share. The signer is the authenticated
/// sender the transport reports, never a field a peer could forge.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Vote {
    pub msg: SignedMsg,
    pub share: Share,
}
