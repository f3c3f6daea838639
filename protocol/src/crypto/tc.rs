//! The default backend: BLS12-381 threshold signatures from `threshold_crypto` 0.4.
//!
//! Encoding: the public key set is the commitment polynomial's coefficients as 48-byte
//! compressed G1 points, constant term (the group key) first, so its length gives the quorum;
//! a secret share is its 32-byte big-endian scalar; shares and signatures are 96-byte
//! compressed G2 points.

use super::hashed::{self, HashedMessages};
use super::{
    CryptoError, Dealer, DealtKeys, G1_COMPRESSED, SchemeId, SecretBytes, Share, Signature,
    ThresholdKeys, bls_quorum, distinct_quorum, fixed,
};
use crate::types::ReplicaIndex;
use rand_chacha02::ChaChaRng;
use rand_chacha02::rand_core::SeedableRng;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as DeError, SeqDeserializer};
use threshold_crypto::ff::{Field, PrimeField};
use threshold_crypto::group::{CurveAffine, CurveProjective, EncodedPoint};
use threshold_crypto::poly::Poly;
use threshold_crypto::{
    Fr, FrRepr, G1Affine, G2, G2Affine, IntoFr, PublicKey, PublicKeySet, PublicKeyShare, SIG_SIZE,
    SecretKeyShare, Signature as TcSignature, SignatureShare,
};

pub struct ThresholdCryptoScheme;

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
                G1Affine::one()
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
                    Ok(secret)
                } else {
                    Err(CryptoError::Malformed {
                        what: "secret share (not of this key set)",
                    })
                }
            })
            .transpose()?;
        Ok(Box::new(TcKeys {
            quorum: set.threshold() + 1,
            public_key: set.public_key(),
            shares,
            secret,
            hashed: HashedMessages::new(hashed::CAPACITY),
        }))
    }
}

struct TcKeys {
    public_key: PublicKey,
    quorum: usize,
    /// By member index; deriving one costs `quorum` curve multiplications.
    shares: Vec<PublicKeyShare>,
    secret: Option<SecretKeyShare>,
    /// `hash_g2` draws a random point and clears its cofactor: a pairing's worth of work.
    hashed: HashedMessages<G2Affine>,
}

impl TcKeys {
    fn hash(&self, msg: &[u8]) -> G2Affine {
        self.hashed
            .point(msg, |m| threshold_crypto::hash_g2(m).into_affine())
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
        Ok(Share(secret.sign_g2(self.hash(msg)).to_bytes().to_vec()))
    }

    fn verify_share(&self, signer: ReplicaIndex, msg: &[u8], share: &Share) -> bool {
        // Malformed input is refused before the message is hashed.
        self.shares.get(usize::from(signer)).is_some_and(|key| {
            parse_share(share).is_ok_and(|share| key.verify_g2(&share, self.hash(msg)))
        })
    }

    fn combine(&self, shares: &[(ReplicaIndex, &Share)]) -> Result<Signature, CryptoError> {
        // Interpolated here rather than by `combine_signatures`, whose input type only comes
        // from a subgroup-checked decoding that costs more than the scalar multiplication:
        // an off-subgroup share just yields a signature that `verify`, which does check, rejects.
        let points = distinct_quorum(self.size(), self.quorum, shares)?
            .into_iter()
            .map(|(i, share)| Ok(((i + 1).into_fr(), g2_unchecked(share)?)))
            .collect::<Result<Vec<_>, CryptoError>>()?;
        let mut sum = G2::zero();
        for (x, point) in &points {
            // The Lagrange basis polynomial of `x` at 0: the product of other / (other - x).
            let (mut num, mut den) = (Fr::one(), Fr::one());
            for (other, _) in points.iter().filter(|(other, _)| other != x) {
                num.mul_assign(other);
                let mut diff = *other;
                diff.sub_assign(x);
                den.mul_assign(&diff);
            }
            // Distinct signers make every difference nonzero.
            let inverse = den.inverse().ok_or(CryptoError::Malformed {
                what: "signature share set",
            })?;
            num.mul_assign(&inverse);
            sum.add_assign(&point.mul(num));
        }
        Ok(Signature(
            sum.into_affine().into_compressed().as_ref().to_vec(),
        ))
    }

    fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        fixed::<SIG_SIZE>(&sig.0, "signature")
            .ok()
            .and_then(|bytes| TcSignature::from_bytes(bytes).ok())
            .is_some_and(|sig| self.public_key.verify_g2(&sig, self.hash(msg)))
    }
}

fn parse_share(share: &Share) -> Result<SignatureShare, CryptoError> {
    let bytes = fixed::<SIG_SIZE>(&share.0, "signature share")?;
    SignatureShare::from_bytes(bytes).map_err(|_| CryptoError::Malformed {
        what: "signature share",
    })
}

/// A share's point, checked to be on the curve but not to be in the prime-order subgroup.
fn g2_unchecked(share: &Share) -> Result<G2Affine, CryptoError> {
    let mut compressed = <G2Affine as CurveAffine>::Compressed::empty();
    compressed
        .as_mut()
        .copy_from_slice(&fixed::<SIG_SIZE>(&share.0, "signature share")?);
    compressed
        .into_affine_unchecked()
        .map_err(|_| CryptoError::Malformed {
            what: "signature share",
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
