//! The other backend: BLS12-381 threshold signatures from `blsttc` (over `blst`), with the
//! standard hash to G2.
//!
//! Encoding: the public key set is the commitment polynomial's coefficients as 48-byte
//! compressed G1 points, constant term (the group key) first, so its length gives the quorum;
//! a secret share is its 32-byte big-endian scalar; shares and signatures are 96-byte
//! compressed G2 points.

use super::hashed::{self, HashedMessages};
use super::{
    CryptoError, Dealer, DealtKeys, SchemeId, SecretBytes, Share, Signature, ThresholdKeys,
    bls_quorum, distinct_quorum, fixed,
};
use crate::types::ReplicaIndex;
use blsttc::{
    G2Affine, PublicKey, PublicKeySet, PublicKeyShare, SIG_SIZE, SK_SIZE, SecretKeySet,
    SecretKeyShare, Signature as BlsSignature, SignatureShare,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub struct BlsttcScheme;

impl Dealer for BlsttcScheme {
    fn deal(n: usize, quorum: usize, seed: [u8; 32]) -> DealtKeys {
        assert!(
            (1..=n).contains(&quorum),
            "quorum {quorum} must be in 1..={n}"
        );
        let set = SecretKeySet::random(quorum - 1, &mut ChaCha20Rng::from_seed(seed));
        DealtKeys {
            scheme: SchemeId::Blsttc,
            public: set.public_keys().to_bytes(),
            secrets: (0..n)
                .map(|i| SecretBytes(set.secret_key_share(i).to_bytes().to_vec()))
                .collect(),
        }
    }

    fn load(
        n: usize,
        public: &[u8],
        secret: Option<&SecretBytes>,
    ) -> Result<Box<dyn ThresholdKeys>, CryptoError> {
        // Checked first: `from_bytes` drops a trailing partial point and accepts an empty set,
        // on which `threshold()` underflows.
        bls_quorum(n, public)?;
        let set =
            PublicKeySet::from_bytes(public.to_vec()).map_err(|_| CryptoError::Malformed {
                what: "public key set",
            })?;
        let shares: Vec<PublicKeyShare> = (0..n).map(|i| set.public_key_share(i)).collect();
        let secret = secret
            .map(|bytes| {
                let secret = fixed::<SK_SIZE>(&bytes.0, "secret share").and_then(|b| {
                    SecretKeyShare::from_bytes(b).map_err(|_| CryptoError::Malformed {
                        what: "secret share",
                    })
                })?;
                // A share from another key set would only surface later as invalid shares.
                if shares.contains(&secret.public_key_share()) {
                    Ok(secret)
                } else {
                    Err(CryptoError::Malformed {
                        what: "secret share (not of this key set)",
                    })
                }
            })
            .transpose()?;
        Ok(Box::new(BlsKeys {
            quorum: set.threshold() + 1,
            public_key: set.public_key(),
            set,
            shares,
            secret,
            hashed: HashedMessages::new(hashed::CAPACITY),
        }))
    }
}

struct BlsKeys {
    set: PublicKeySet,
    public_key: PublicKey,
    quorum: usize,
    /// By member index; deriving one costs `quorum` curve multiplications.
    shares: Vec<PublicKeyShare>,
    secret: Option<SecretKeyShare>,
    /// Hash-to-curve (SSWU and cofactor clearing) is a fifth of a share check here.
    hashed: HashedMessages<G2Affine>,
}

impl BlsKeys {
    fn hash(&self, msg: &[u8]) -> G2Affine {
        self.hashed.point(msg, |m| blsttc::hash_g2(m))
    }
}

impl ThresholdKeys for BlsKeys {
    fn scheme(&self) -> SchemeId {
        SchemeId::Blsttc
    }

    fn quorum(&self) -> usize {
        self.quorum
    }

    fn size(&self) -> usize {
        self.shares.len()
    }

    fn sign_share(&self, msg: &[u8]) -> Result<Share, CryptoError> {
        let secret = self.secret.as_ref().ok_or(CryptoError::NoSecret)?;
        Ok(Share(secret.sign_g2(self.hash(msg)).to_bytes().to_vec()))
    }

    fn verify_share(&self, signer: ReplicaIndex, msg: &[u8], share: &Share) -> bool {
        // Malformed input is refused before the message is hashed.
        self.shares.get(usize::from(signer)).is_some_and(|key| {
            parse_share(share).is_ok_and(|share| key.verify_g2(&share, self.hash(msg)))
        })
    }

    fn combine(&self, shares: &[(ReplicaIndex, &Share)]) -> Result<Signature, CryptoError> {
        let parsed = distinct_quorum(self.size(), self.quorum, shares)?
            .into_iter()
            .map(|(i, share)| Ok((i, parse_share(share)?)))
            .collect::<Result<Vec<_>, CryptoError>>()?;
        // Only fails on too few or repeated indices, which `distinct_quorum` rules out.
        let sig = self
            .set
            .combine_signatures(parsed.iter().map(|(i, share)| (*i, share)))
            .map_err(|_| CryptoError::Malformed {
                what: "signature share set",
            })?;
        Ok(Signature(sig.to_bytes().to_vec()))
    }

    fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        fixed::<SIG_SIZE>(&sig.0, "signature")
            .ok()
            .and_then(|bytes| BlsSignature::from_bytes(bytes).ok())
            .is_some_and(|sig| self.public_key.verify_g2(&sig, self.hash(msg)))
    }
}

fn parse_share(share: &Share) -> Result<SignatureShare, CryptoError> {
    let bytes = fixed::<SIG_SIZE>(&share.0, "signature share")?;
    SignatureShare::from_bytes(bytes).map_err(|_| CryptoError::Malformed {
        what: "signature share",
    })
}

#[cfg(test)]
mod tests {
    use super::BlsttcScheme;
    use crate::crypto::Dealer;

    crate::crypto::conformance::conformance_tests!(BlsttcScheme);

    #[test]
    fn encoding_sizes() {
        let dealt = BlsttcScheme::deal(7, 5, [1; 32]);
        assert_eq!(dealt.public.len(), 5 * 48);
        assert!(dealt.secrets.iter().all(|s| s.0.len() == 32));
        let keys = BlsttcScheme::load(7, &dealt.public, Some(&dealt.secrets[0])).unwrap();
        assert_eq!(keys.sign_share(b"m").unwrap().0.len(), 96);
    }
}
