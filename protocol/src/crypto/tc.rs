//! The default backend: BLS12-381 threshold signatures from `threshold_crypto` 0.4, whose
//! curve arithmetic `tc_curve` does with blst.
//!
//! Encoding: the public key set is the commitment polynomial's coefficients as 48-byte
//! compressed G1 points, constant term (the group key) first, so its length gives the quorum;
//! a secret share is its 32-byte big-endian scalar; shares and signatures are 96-byte
//! compressed G2 points.

use super::hashed::{self, HashedMessages};
use super::tc_curve;
use super::{
    CryptoError, Dealer, DealtKeys, G1_COMPRESSED, SchemeId, SecretBytes, Share, Signature,
    ThresholdKeys, bls_quorum, distinct_quorum, fixed,
};
use crate::types::ReplicaIndex;
use blstrs::{G1Affine, G2Affine, Scalar};
use rand_chacha02::ChaChaRng;
use rand_chacha02::rand_core::SeedableRng;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as DeError, SeqDeserializer};
use threshold_crypto::ff::{Field, PrimeField};
use threshold_crypto::group::{CurveAffine, CurveProjective};
use threshold_crypto::poly::Poly;
use threshold_crypto::{Fr, FrRepr, PublicKeySet, PublicKeyShare, SIG_SIZE, SecretKeyShare};

pub struct ThresholdCryptoScheme;

impl ThresholdCryptoScheme {
    /// `msg` hashed to G2 as every operation of this scheme hashes it (threshold_crypto's
    /// `hash_g2`, computed with blst), compressed. For benchmarks: the keys remember points.
    pub fn hash_to_curve(msg: &[u8]) -> [u8; SIG_SIZE] {
        tc_curve::hash_g2(msg).to_compressed()
    }
}

impl Dealer for ThresholdCryptoScheme {
    fn deal(n: usize, quorum: usize, seed: [u8; 32]) -> DealtKeys {
        assert!(
            (1..=n).contains(&quorum),
            "quorum {quorum} must be in 1..={n}"
        );
        let mut rng = ChaChaRng::from_seed(seed);
        // `SecretKeySet::random` draws exactly this polynomial but hides its coefficients, and
        // the public encoding needs them.
        let coeffs: Vec<Fr> = (0..quorum).map(|_| Fr::random(&mut rng)).collect();
        let public = coeffs
            .iter()
            .flat_map(|c| {
                threshold_crypto::G1Affine::one()
                    .mul(*c)
                    .into_affine()
                    .into_compressed()
                    .as_ref()
                    .to_vec()
            })
            .collect();
        let poly = Poly::from(coeffs);
        // Member i holds the polynomial at i + 1, as `SecretKeySet::secret_key_share(i)` does.
        let secrets = (1..=n)
            .map(|x| SecretBytes(scalar_to_bytes(&poly.evaluate(x))))
            .collect();
        DealtKeys {
            scheme: SchemeId::ThresholdCrypto,
            public,
            secrets,
        }
    }

    fn load(
        n: usize,
        public: &[u8],
        secret: Option<&SecretBytes>,
    ) -> Result<Box<dyn ThresholdKeys>, CryptoError> {
        let set = public_from_bytes(n, public)?;
        let shares: Vec<PublicKeyShare> = (0..n).map(|i| set.public_key_share(i)).collect();
        let secret = secret
            .map(|bytes| {
                let secret = secret_from_bytes(&bytes.0)?;
                // A share from another key set would only surface later as invalid shares.
                if shares.contains(&secret.public_key_share()) {
                    scalar_from_bytes(&bytes.0)
                } else {
                    Err(CryptoError::Malformed {
                        what: "secret share (not of this key set)",
                    })
                }
            })
            .transpose()?;
        // Keys are decoded once into blst's form (see `tc_curve`); the secret scalar is the
        // same 32 big-endian bytes.
        let key = |bytes: [u8; G1_COMPRESSED]| {
            tc_curve::decode_key(&bytes).ok_or(CryptoError::Malformed {
                what: "public key set",
            })
        };
        Ok(Box::new(TcKeys {
            quorum: set.threshold() + 1,
            public_key: key(set.public_key().to_bytes())?,
            shares: shares
                .iter()
                .map(|share| key(share.to_bytes()))
                .collect::<Result<_, _>>()?,
            secret,
            hashed: HashedMessages::new(hashed::CAPACITY),
        }))
    }
}

struct TcKeys {
    public_key: G1Affine,
    quorum: usize,
    /// By member index; deriving one costs `quorum` curve multiplications.
    shares: Vec<G1Affine>,
    secret: Option<Scalar>,
    /// `hash_g2` draws a random point and clears its cofactor: half a signature check's work.
    hashed: HashedMessages<G2Affine>,
}

impl TcKeys {
    fn hash(&self, msg: &[u8]) -> G2Affine {
        self.hashed.point(msg, tc_curve::hash_g2)
    }
}

impl ThresholdKeys for TcKeys {
    fn scheme(&self) -> SchemeId {
        SchemeId::ThresholdCrypto
    }

    fn quorum(&self) -> usize {
        self.quorum
    }

    fn size(&self) -> usize {
        self.shares.len()
    }

    fn sign_share(&self, msg: &[u8]) -> Result<Share, CryptoError> {
        let secret = self.secret.as_ref().ok_or(CryptoError::NoSecret)?;
        Ok(Share(tc_curve::sign(secret, &self.hash(msg)).to_vec()))
    }

    fn verify_share(&self, signer: ReplicaIndex, msg: &[u8], share: &Share) -> bool {
        // Malformed input is refused before the message is hashed.
        self.shares.get(usize::from(signer)).is_some_and(|key| {
            decode(&share.0, "signature share")
                .is_ok_and(|share| tc_curve::verify(key, &self.hash(msg), &share))
        })
    }

    fn combine(&self, shares: &[(ReplicaIndex, &Share)]) -> Result<Signature, CryptoError> {
        // Interpolated here rather than by `combine_signatures`, and from points decoded
        // without the subgroup check, which costs more than the multiplication: an
        // off-subgroup share just yields a signature that `verify`, which does check, rejects.
        let points = distinct_quorum(self.size(), self.quorum, shares)?
            .into_iter()
            .map(|(i, share)| Ok((Scalar::from(i as u64 + 1), g2_unchecked(share)?)))
            .collect::<Result<Vec<_>, CryptoError>>()?;
        let mut terms = Vec::with_capacity(points.len());
        for (x, point) in &points {
            // The Lagrange basis polynomial of `x` at 0: the product of other / (other - x).
            let (mut num, mut den) = (Scalar::from(1), Scalar::from(1));
            for (other, _) in points.iter().filter(|(other, _)| other != x) {
                num *= other;
                den *= other - x;
            }
            // Distinct signers make every difference nonzero.
            let inverse = Option::<Scalar>::from(group::ff::Field::invert(&den)).ok_or(
                CryptoError::Malformed {
                    what: "signature share set",
                },
            )?;
            terms.push((num * inverse, *point));
        }
        Ok(Signature(tc_curve::weighted_sum(&terms).to_vec()))
    }

    fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        decode(&sig.0, "signature")
            .is_ok_and(|sig| tc_curve::verify(&self.public_key, &self.hash(msg), &sig))
    }
}

/// A share or signature: on the curve and in the prime-order subgroup.
fn decode(bytes: &[u8], what: &'static str) -> Result<G2Affine, CryptoError> {
    tc_curve::decode_checked(&fixed::<SIG_SIZE>(bytes, what)?)
        .ok_or(CryptoError::Malformed { what })
}

/// A share's point, checked to be on the curve but not to be in the prime-order subgroup.
fn g2_unchecked(share: &Share) -> Result<G2Affine, CryptoError> {
    tc_curve::decode_unchecked(&fixed::<SIG_SIZE>(&share.0, "signature share")?).ok_or(
        CryptoError::Malformed {
            what: "signature share",
        },
    )
}

/// A secret share's scalar, for blst: the same 32 big-endian bytes `secret_from_bytes` read.
fn scalar_from_bytes(bytes: &[u8]) -> Result<Scalar, CryptoError> {
    let bytes = fixed::<32>(bytes, "secret share")?;
    Option::from(Scalar::from_bytes_be(&bytes)).ok_or(CryptoError::Malformed {
        what: "secret share",
    })
}

fn public_from_bytes(n: usize, public: &[u8]) -> Result<PublicKeySet, CryptoError> {
    // `Commitment` has no public constructor; its serde form is a one-field struct holding the
    // coefficients, each a tuple of compressed bytes, which a nested sequence matches.
    bls_quorum(n, public)?;
    let coeffs: Vec<Vec<u8>> = public
        .chunks_exact(G1_COMPRESSED)
        .map(<[u8]>::to_vec)
        .collect();
    let wire: SeqDeserializer<_, DeError> = vec![vec![coeffs]].into_deserializer();
    PublicKeySet::deserialize(wire).map_err(|_| CryptoError::Malformed {
        what: "public key set",
    })
}

fn scalar_to_bytes(scalar: &Fr) -> Vec<u8> {
    // `FrRepr` limbs are least significant first.
    scalar
        .into_repr()
        .0
        .iter()
        .rev()
        .flat_map(|limb| limb.to_be_bytes())
        .collect()
}

fn secret_from_bytes(bytes: &[u8]) -> Result<SecretKeyShare, CryptoError> {
    let bytes = fixed::<32>(bytes, "secret share")?;
    let mut repr = FrRepr::default();
    for (limb, chunk) in repr.0.iter_mut().rev().zip(bytes.chunks_exact(8)) {
        let mut be = [0; 8];
        be.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(be);
    }
    let mut scalar = Fr::from_repr(repr).map_err(|_| CryptoError::Malformed {
        what: "secret share",
    })?;
    Ok(SecretKeyShare::from_mut(&mut scalar))
}

#[cfg(test)]
mod tests {
    use super::ThresholdCryptoScheme;
    use crate::crypto::Dealer;

    crate::crypto::conformance::conformance_tests!(ThresholdCryptoScheme);

    #[test]
    fn encoding_sizes() {
        let dealt = ThresholdCryptoScheme::deal(7, 5, [1; 32]);
        assert_eq!(dealt.public.len(), 5 * 48);
        assert!(dealt.secrets.iter().all(|s| s.0.len() == 32));
        let keys = ThresholdCryptoScheme::load(7, &dealt.public, Some(&dealt.secrets[0])).unwrap();
        assert_eq!(keys.sign_share(b"m").unwrap().0.len(), 96);
    }

    /// Agrees with the library's own dealing, which `deal` reimplements to reach the coefficients.
    #[test]
    fn deal_matches_secret_key_set() {
        use rand_chacha02::rand_core::SeedableRng;
        let seed = [9; 32];
        let set = threshold_crypto::SecretKeySet::random(
            2,
            &mut rand_chacha02::ChaChaRng::from_seed(seed),
        );
        let dealt = ThresholdCryptoScheme::deal(4, 3, seed);
        assert_eq!(
            super::public_from_bytes(4, &dealt.public).unwrap(),
            set.public_keys()
        );
        for (i, secret) in dealt.secrets.iter().enumerate() {
            let ours = super::secret_from_bytes(&secret.0).unwrap();
            assert!(ours == set.secret_key_share(i));
        }
    }

    /// Shares and signatures are computed with blst (`tc_curve`); the library's own signing
    /// and checking are the reference, both ways.
    #[test]
    fn signatures_match_library() {
        let dealt = ThresholdCryptoScheme::deal(4, 3, [7; 32]);
        let set = super::public_from_bytes(4, &dealt.public).unwrap();
        let observer = ThresholdCryptoScheme::load(4, &dealt.public, None).unwrap();
        for msg in [&b""[..], b"m", &[0xa5; 300]] {
            let theirs: Vec<_> = dealt
                .secrets
                .iter()
                .map(|s| super::secret_from_bytes(&s.0).unwrap().sign(msg))
                .collect();
            for (i, secret) in dealt.secrets.iter().enumerate() {
                let ours = ThresholdCryptoScheme::load(4, &dealt.public, Some(secret))
                    .unwrap()
                    .sign_share(msg)
                    .unwrap();
                assert_eq!(ours.0, theirs[i].to_bytes().to_vec(), "member {i}");
                assert!(observer.verify_share(i as u16, msg, &ours));
            }
            let sig = set
                .combine_signatures(theirs.iter().enumerate().take(3))
                .unwrap();
            assert!(observer.verify(msg, &super::Signature(sig.to_bytes().to_vec())));
            assert!(!observer.verify(b"another", &super::Signature(sig.to_bytes().to_vec())));
        }
    }

    /// The point at infinity is a well-formed encoding, but neither a share nor a signature.
    #[test]
    fn the_point_at_infinity_verifies_nothing() {
        let dealt = ThresholdCryptoScheme::deal(4, 3, [5; 32]);
        let observer = ThresholdCryptoScheme::load(4, &dealt.public, None).unwrap();
        let mut infinity = vec![0; 96];
        infinity[0] = 0xc0;
        assert!(!observer.verify_share(0, b"m", &super::Share(infinity.clone())));
        assert!(!observer.verify(b"m", &super::Signature(infinity)));
    }

    /// `combine` interpolates itself; the library's interpolation is the reference.
    #[test]
    fn combine_matches_library() {
        let dealt = ThresholdCryptoScheme::deal(7, 5, [4; 32]);
        let set = super::public_from_bytes(7, &dealt.public).unwrap();
        let keys = ThresholdCryptoScheme::load(7, &dealt.public, None).unwrap();
        let shares: Vec<_> = dealt
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // Member 2 signs another message: interpolation is linear, so it must agree too.
                let msg: &[u8] = if i == 2 { b"other" } else { b"m" };
                super::secret_from_bytes(&s.0).unwrap().sign(msg)
            })
            .collect();
        for chosen in [[0, 1, 2, 3, 4], [6, 4, 2, 1, 5], [6, 5, 4, 3, 1]] {
            let ours: Vec<_> = chosen
                .iter()
                .map(|&i| (i as u16, super::Share(shares[i].to_bytes().to_vec())))
                .collect();
            let ours: Vec<_> = ours.iter().map(|(i, s)| (*i, s)).collect();
            let theirs = set
                .combine_signatures(chosen.iter().map(|&i| (i, &shares[i])))
                .unwrap();
            assert_eq!(keys.combine(&ours).unwrap().0, theirs.to_bytes().to_vec());
        }
    }
}
