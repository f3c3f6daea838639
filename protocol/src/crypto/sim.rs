//! A hash-based stand-in for threshold BLS, for the deterministic simulator only.
//!
//! **INSECURE by design.** The "public" key set contains the group secret from which every
//! member secret is derived, so anyone holding it can forge any share or signature. What it
//! does model faithfully is what the protocol can observe of a threshold scheme: a share
//! verifies only for its signer and message, any `quorum` distinct signers' shares combine
//! to the same signature, fewer are refused, and combining a bad share yields a signature that
//! fails verification. Blake3 makes that a few hundred nanoseconds per operation instead of
//! milliseconds, so thousands of seeds run in seconds.
//!
//! Encoding: public = quorum (u32 little-endian) ‖ group secret (32 bytes); member `i`'s secret
//! = keyed-hash(group secret, "member" ‖ i as u32 LE). A share is blake3(msg) ‖ a 64-byte tag
//! keyed by the member secret, a signature is 96 bytes keyed by the group secret: the sizes
//! of compressed G2 points, so simulated traffic has the real byte counts. The share carries
//! the message digest because `combine` is not given the message but must still tell whether
//! every share is the right one for the same message.

use super::{
    CryptoError, Dealer, DealtKeys, SchemeId, SecretBytes, Share, Signature, ThresholdKeys,
    distinct_quorum, fixed,
};
use crate::types::ReplicaIndex;

pub struct SimScheme;

const DIGEST: usize = 32;
const SHARE_LEN: usize = 96;
const SIG_LEN: usize = 96;
const PUBLIC_LEN: usize = 4 + 32;

impl Dealer for SimScheme {
    fn deal(n: usize, quorum: usize, seed: [u8; 32]) -> DealtKeys {
        assert!(
            (1..=n).contains(&quorum),
            "quorum {quorum} must be in 1..={n}"
        );
        let quorum = u32::try_from(quorum).unwrap_or(u32::MAX);
        let group = blake3::derive_key("lcbft sim scheme group secret", &seed);
        let mut public = quorum.to_le_bytes().to_vec();
        public.extend_from_slice(&group);
        let secrets = (0..n)
            .map(|i| SecretBytes(member_secret(&group, i).to_vec()))
            .collect();
        DealtKeys {
            scheme: SchemeId::Sim,
            public,
            secrets,
        }
    }

    fn load(
        n: usize,
        public: &[u8],
        secret: Option<&SecretBytes>,
    ) -> Result<Box<dyn ThresholdKeys>, CryptoError> {
        let public = fixed::<PUBLIC_LEN>(public, "public key set")?;
        let (quorum, group) = public.split_at(4);
        let quorum = fixed::<4>(quorum, "public key set").map(u32::from_le_bytes)?;
        let quorum = usize::try_from(quorum).unwrap_or(usize::MAX);
        if quorum == 0 || quorum > n {
            return Err(CryptoError::Malformed {
                what: "public key set",
            });
        }
        let group = fixed::<32>(group, "public key set")?;
        let members: Vec<[u8; 32]> = (0..n).map(|i| member_secret(&group, i)).collect();
        let secret = secret
            .map(|bytes| {
                let secret = fixed::<32>(&bytes.0, "secret share")?;
                // As in the BLS backends: a secret from another key set is refused at load.
                if members.contains(&secret) {
                    Ok(secret)
                } else {
                    Err(CryptoError::Malformed {
                        what: "secret share (not of this key set)",
                    })
                }
            })
            .transpose()?;
        Ok(Box::new(SimKeys {
            group,
            quorum,
            members,
            secret,
        }))
    }
}

struct SimKeys {
    group: [u8; 32],
    quorum: usize,
    members: Vec<[u8; 32]>,
    secret: Option<[u8; 32]>,
}

impl ThresholdKeys for SimKeys {
    fn scheme(&self) -> SchemeId {
        SchemeId::Sim
    }

    fn quorum(&self) -> usize {
        self.quorum
    }

    fn size(&self) -> usize {
        self.members.len()
    }

    fn sign_share(&self, msg: &[u8]) -> Result<Share, CryptoError> {
        let secret = self.secret.as_ref().ok_or(CryptoError::NoSecret)?;
        Ok(make_share(secret, blake3::hash(msg).as_bytes()))
    }

    fn verify_share(&self, signer: ReplicaIndex, msg: &[u8], share: &Share) -> bool {
        self.members
            .get(usize::from(signer))
            .is_some_and(|secret| *share == make_share(secret, blake3::hash(msg).as_bytes()))
    }

    fn combine(&self, shares: &[(ReplicaIndex, &Share)]) -> Result<Signature, CryptoError> {
        let chosen = distinct_quorum(self.size(), self.quorum, shares)?;
        if chosen.iter().any(|(_, share)| share.0.len() != SHARE_LEN) {
            return Err(CryptoError::Malformed {
                what: "signature share",
            });
        }
        let digest = chosen.first().map(|(_, share)| &share.0[..DIGEST]);
        match digest {
            Some(digest) if self.all_right(&chosen, digest) => Ok(self.signature(digest)),
            // Like interpolating a bad BLS share: a well-formed signature that will not verify.
            _ => {
                let mut hasher = blake3::Hasher::new_derive_key("lcbft sim scheme bad combination");
                for (_, share) in &chosen {
                    hasher.update(&share.0);
                }
                Ok(Signature(xof(&hasher, SIG_LEN)))
            }
        }
    }

    fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        *sig == self.signature(blake3::hash(msg).as_bytes())
    }
}

impl SimKeys {
    /// Whether each share is exactly what its signer would produce for `digest`.
    fn all_right(&self, chosen: &[(usize, &Share)], digest: &[u8]) -> bool {
        chosen.iter().all(|(i, share)| {
            self.members
                .get(*i)
                .is_some_and(|secret| **share == make_share(secret, digest))
        })
    }

    fn signature(&self, digest: &[u8]) -> Signature {
        let mut hasher = blake3::Hasher::new_keyed(&self.group);
        hasher.update(b"combined").update(digest);
        Signature(xof(&hasher, SIG_LEN))
    }
}

fn member_secret(group: &[u8; 32], index: usize) -> [u8; 32] {
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    let mut hasher = blake3::Hasher::new_keyed(group);
    hasher.update(b"member").update(&index.to_le_bytes());
    *hasher.finalize().as_bytes()
}

fn make_share(secret: &[u8; 32], digest: &[u8]) -> Share {
    let mut hasher = blake3::Hasher::new_keyed(secret);
    hasher.update(digest);
    let mut bytes = digest.to_vec();
    bytes.extend_from_slice(&xof(&hasher, SHARE_LEN - DIGEST));
    Share(bytes)
}

fn xof(hasher: &blake3::Hasher, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    hasher.finalize_xof().fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::SimScheme;
    use crate::crypto::Dealer;

    crate::crypto::conformance::conformance_tests!(SimScheme);

    #[test]
    fn encoding_sizes() {
        let dealt = SimScheme::deal(7, 5, [1; 32]);
        assert_eq!(dealt.public.len(), super::PUBLIC_LEN);
        let keys = SimScheme::load(7, &dealt.public, Some(&dealt.secrets[0])).unwrap();
        let share = keys.sign_share(b"m").unwrap();
        assert_eq!(share.0.len(), super::SHARE_LEN);
        let shares: Vec<_> = (0..5).map(|i| (i, &share)).collect();
        assert_eq!(keys.combine(&shares).unwrap().0.len(), super::SIG_LEN);
    }
}
