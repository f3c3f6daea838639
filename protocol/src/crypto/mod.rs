//! Threshold BLS signatures behind one small trait (DESIGN §2).
//!
//! A domain of `n` replicas shares one key set with threshold `t = n - f - 1`, so any
//! `n - f` valid shares combine into one signature that verifies against the domain's
//! public key. Backends: `threshold_crypto` (default), `blsttc` (feature `blsttc`), and
//! [`sim::SimScheme`], a hash-based stand-in that the simulator uses so thousands of seeds
//! run in seconds; it is insecure by construction and never selectable in a genesis file.

#[cfg(feature = "blsttc")]
mod blst;
#[cfg(test)]
mod conformance;
mod counting;
mod hashed;
pub mod sim;
mod tc;
mod tc_curve;

#[cfg(feature = "blsttc")]
pub use blst::BlsttcScheme;
pub use counting::{Counting, CryptoCounters, CryptoOp};
pub use sim::SimScheme;
pub use tc::ThresholdCryptoScheme;

use crate::types::ReplicaIndex;
use serde::{Deserialize, Serialize};

/// A signature share as it travels on the wire.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Share(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// A combined threshold signature as it travels on the wire.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share({})", hex_prefix(&self.0))
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", hex_prefix(&self.0))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Which backend a key set belongs to; written in the genesis file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeId {
    ThresholdCrypto,
    Blsttc,
    /// Simulation only: insecure, rejected by genesis loading.
    Sim,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("need {needed} distinct shares to combine, got {got}")]
    NotEnoughShares { needed: usize, got: usize },
    #[error("malformed {what}")]
    Malformed { what: &'static str },
    #[error("signer index {0} is outside the key set")]
    UnknownSigner(ReplicaIndex),
    #[error("this replica holds no secret share")]
    NoSecret,
    #[error("key material belongs to scheme {found:?}, expected {expected:?}")]
    WrongScheme { expected: SchemeId, found: SchemeId },
}

/// Serialized key material for one domain, as dealt by genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealtKeys {
    pub scheme: SchemeId,
    /// The public key set (commitment polynomial), backend encoding.
    #[serde(with = "serde_bytes")]
    pub public: Vec<u8>,
    /// One secret share per member, by index, backend encoding.
    pub secrets: Vec<SecretBytes>,
}

/// A member's secret share in backend encoding; never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(..)")
    }
}

/// One replica's view of a domain's threshold key set: the public set plus, for members,
/// its own secret share. All messages are the canonical bytes of a `SignedMsg`.
pub trait ThresholdKeys: Send + Sync {
    fn scheme(&self) -> SchemeId;
    /// Shares needed to combine (`t + 1 = n - f`).
    fn quorum(&self) -> usize;
    fn size(&self) -> usize;
    /// Sign `msg` with this replica's secret share.
    fn sign_share(&self, msg: &[u8]) -> Result<Share, CryptoError>;
    fn verify_share(&self, signer: ReplicaIndex, msg: &[u8], share: &Share) -> bool;
    /// Combine at least `quorum()` shares by Lagrange interpolation. Does not check the shares:
    /// a bad share yields a signature that fails [`ThresholdKeys::verify`].
    fn combine(&self, shares: &[(ReplicaIndex, &Share)]) -> Result<Signature, CryptoError>;
    fn verify(&self, msg: &[u8], sig: &Signature) -> bool;
}

/// Deals key sets: the genesis ceremony and tests use it.
pub trait Dealer {
    /// Deal a key set for `n` members where any `quorum` shares combine.
    fn deal(n: usize, quorum: usize, seed: [u8; 32]) -> DealtKeys;
    /// Load one replica's keys from dealt bytes; `secret` is that member's share, if any.
    fn load(
        n: usize,
        public: &[u8],
        secret: Option<&SecretBytes>,
    ) -> Result<Box<dyn ThresholdKeys>, CryptoError>;
}

/// Load keys for whichever scheme the material names.
pub fn load_keys(
    scheme: SchemeId,
    n: usize,
    public: &[u8],
    secret: Option<&SecretBytes>,
) -> Result<Box<dyn ThresholdKeys>, CryptoError> {
    match scheme {
        SchemeId::ThresholdCrypto => ThresholdCryptoScheme::load(n, public, secret),
        #[cfg(feature = "blsttc")]
        SchemeId::Blsttc => BlsttcScheme::load(n, public, secret),
        #[cfg(not(feature = "blsttc"))]
        SchemeId::Blsttc => Err(CryptoError::WrongScheme {
            expected: SchemeId::ThresholdCrypto,
            found: SchemeId::Blsttc,
        }),
        SchemeId::Sim => SimScheme::load(n, public, secret),
    }
}

/// The shares a backend interpolates: the first `quorum` with distinct signers, in the order
/// given. Lagrange interpolation uses exactly `quorum` points and a repeated signer adds no
/// point, so every backend picks the same subset and extra shares never change the result.
fn distinct_quorum<'a>(
    n: usize,
    quorum: usize,
    shares: &[(ReplicaIndex, &'a Share)],
) -> Result<Vec<(usize, &'a Share)>, CryptoError> {
    let mut seen = vec![false; n];
    let mut chosen = Vec::with_capacity(quorum);
    for &(signer, share) in shares {
        let index = usize::from(signer);
        let slot = seen
            .get_mut(index)
            .ok_or(CryptoError::UnknownSigner(signer))?;
        if !std::mem::replace(slot, true) && chosen.len() < quorum {
            chosen.push((index, share));
        }
    }
    if chosen.len() < quorum {
        return Err(CryptoError::NotEnoughShares {
            needed: quorum,
            got: chosen.len(),
        });
    }
    Ok(chosen)
}

/// Bytes of a fixed-size encoding, or `Malformed` naming `what`.
fn fixed<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], CryptoError> {
    bytes
        .try_into()
        .map_err(|_| CryptoError::Malformed { what })
}

/// Size of a compressed G1 point, the unit of both BLS backends' public encoding.
const G1_COMPRESSED: usize = 48;

/// Check a BLS public key set's shape (its commitment coefficients as compressed G1 points,
/// constant term first) before any curve arithmetic, which would otherwise panic on an empty
/// set or silently drop a trailing partial point. Returns the quorum it encodes.
fn bls_quorum(n: usize, public: &[u8]) -> Result<usize, CryptoError> {
    let quorum = public.len() / G1_COMPRESSED;
    if public.len() != quorum * G1_COMPRESSED || quorum == 0 || quorum > n {
        return Err(CryptoError::Malformed {
            what: "public key set",
        });
    }
    Ok(quorum)
}
