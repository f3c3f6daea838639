//! threshold_crypto's hash, signatures and checks, computed with blst (through blstrs).
//!
//! threshold_crypto 0.4 does its curve arithmetic in portable Rust: a signature check (two
//! pairings and a subgroup check) costs about 4 ms, hashing a message to G2 about 2 ms, and
//! every member pays both for every block. blst computes the same points 2 to 4.4 times faster
//! (`lcbft-bench crypto`). The points, and so the bytes on the wire and on disk, are exactly
//! threshold_crypto's: the tests compare each operation with the library's own.

use blstrs::{Bls12, G1Affine, G2Affine, G2Prepared, G2Projective, Scalar};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};
use pairing::{MillerLoopResult, MultiMillerLoop};
use rand_chacha02::ChaChaRng;
use rand_chacha02::rand_core::{RngCore, SeedableRng};
use threshold_crypto::ff::{Field, PrimeField, PrimeFieldRepr};
use threshold_crypto::pairing::bls12_381::{Fq, Fq2};

/// The cofactor of BLS12-381's G2, least significant limb first.
const G2_COFACTOR: [u64; 8] = [
    0xcf1c38e31c7238e5,
    0x1616ec6e786f0c70,
    0x21537e293a6691ae,
    0xa628f1cb4d9e82ef,
    0xa68a205b2e5a7ddf,
    0xcd91de4547085aba,
    0x091d50792876a202,
    0x05d543a95414e7f1,
];

/// `threshold_crypto::hash_g2`: a ChaCha generator seeded with the message's SHA3-256 draws
/// an x coordinate and a choice of root until they name a curve point, which is then
/// multiplied by the cofactor. The draws go through pairing 0.16's own `Fq2::random`, so they
/// consume the generator exactly as the library does; a compressed encoding carries the x
/// coordinate and the choice of root to blst, which finds the point.
pub(super) fn hash_g2(msg: &[u8]) -> G2Affine {
    let mut rng = ChaChaRng::from_seed(sha3_256(msg));
    loop {
        let x = Fq2::random(&mut rng);
        let greatest = !rng.next_u32().is_multiple_of(2);
        if let Some(point) = Option::<G2Affine>::from(G2Affine::from_compressed_unchecked(
            &compressed_x(&x, greatest),
        )) {
            let point = times_cofactor(&point);
            if !bool::from(point.is_identity()) {
                return point.to_affine();
            }
        }
    }
}

/// The zcash encoding that pairing 0.16 and blst share: x.c1 then x.c0, big-endian, with the
/// "compressed" flag and the "larger y" flag in the top bits (x < p leaves them clear).
fn compressed_x(x: &Fq2, greatest: bool) -> [u8; 96] {
    let mut out = [0; 96];
    write_fq(&x.c1, &mut out[..48]);
    write_fq(&x.c0, &mut out[48..]);
    out[0] |= 0x80 | if greatest { 0x20 } else { 0 };
    out
}

fn write_fq(fq: &Fq, out: &mut [u8]) {
    // Writing 48 bytes into a 48-byte slice cannot fail.
    let _ = fq.into_repr().write_be(out);
}

fn sha3_256(msg: &[u8]) -> [u8; 32] {
    use tiny_keccak::{Hasher, Sha3};
    let mut sha3 = Sha3::v256();
    sha3.update(msg);
    let mut out = [0; 32];
    sha3.finalize(&mut out);
    out
}

/// `point` times the whole cofactor, with 4-bit windows. The point is not yet in the
/// prime-order subgroup, so blst's scalar multiplication (which uses the subgroup's
/// endomorphism and takes scalars of at most 256 bits) does not apply.
fn times_cofactor(point: &G2Affine) -> G2Projective {
    let mut table = [G2Projective::identity(); 16];
    for i in 1..16 {
        table[i] = table[i - 1] + point;
    }
    let mut acc = G2Projective::identity();
    for limb in G2_COFACTOR.iter().rev() {
        for nibble in (0..16).rev() {
            for _ in 0..4 {
                acc = acc.double();
            }
            let digit = (limb >> (4 * nibble)) & 0xf;
            if digit != 0 {
                acc += &table[digit as usize];
            }
        }
    }
    acc
}

/// `hash` times the secret `key`, compressed: threshold_crypto's `sign_g2`.
pub(super) fn sign(key: &Scalar, hash: &G2Affine) -> [u8; 96] {
    (hash * key).to_affine().to_compressed()
}

/// A share or signature from the wire: on the curve and in the prime-order subgroup, as
/// threshold_crypto's decoding requires.
pub(super) fn decode_checked(bytes: &[u8; 96]) -> Option<G2Affine> {
    G2Affine::from_compressed(bytes).into()
}

/// On the curve only: for combining, whose result is checked before anyone relies on it.
pub(super) fn decode_unchecked(bytes: &[u8; 96]) -> Option<G2Affine> {
    G2Affine::from_compressed_unchecked(bytes).into()
}

/// A G1 key from its compressed bytes, checked.
pub(super) fn decode_key(bytes: &[u8; 48]) -> Option<G1Affine> {
    G1Affine::from_compressed(bytes).into()
}

/// threshold_crypto's `verify_g2`, e(key, H(m)) = e(g1, sig), as one product of two Miller
/// loops that must be 1 after a single final exponentiation.
pub(super) fn verify(key: &G1Affine, hash: &G2Affine, sig: &G2Affine) -> bool {
    let minus_g1 = -G1Affine::generator();
    let hash = G2Prepared::from(*hash);
    let sig = G2Prepared::from(*sig);
    let product = Bls12::multi_miller_loop(&[(key, &hash), (&minus_g1, &sig)]);
    bool::from(product.final_exponentiation().is_identity())
}

/// `sum of scalar * point`, compressed: one multi-scalar multiplication (blst's Pippenger).
pub(super) fn weighted_sum(terms: &[(Scalar, G2Affine)]) -> [u8; 96] {
    let (scalars, points): (Vec<Scalar>, Vec<G2Projective>) = terms
        .iter()
        .map(|(s, p)| (*s, G2Projective::from(p)))
        .unzip();
    G2Projective::multi_exp(&points, &scalars)
        .to_affine()
        .to_compressed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use threshold_crypto::group::{CurveAffine, CurveProjective, EncodedPoint};

    #[test]
    fn hash_matches_threshold_crypto() {
        // Messages of many lengths, so the rejection loops take different numbers of rounds.
        for i in 0..64u32 {
            let msg: Vec<u8> = (0..i * 7).map(|j| (j ^ i) as u8).collect();
            let theirs = threshold_crypto::hash_g2(&msg)
                .into_affine()
                .into_compressed();
            assert_eq!(
                hash_g2(&msg).to_compressed().as_slice(),
                theirs.as_ref(),
                "message {i}"
            );
        }
    }

    /// A curve point outside the prime-order subgroup is refused as a share or signature,
    /// as threshold_crypto's decoding refuses it, even where the pairing equation would hold.
    #[test]
    fn off_subgroup_points_are_refused() {
        use rand_chacha02::rand_core::SeedableRng;
        let mut rng = ChaChaRng::from_seed([3; 32]);
        let point = loop {
            let x = Fq2::random(&mut rng);
            if let Some(p) = decode_unchecked(&compressed_x(&x, false)) {
                break p;
            }
        };
        let bytes = point.to_compressed();
        assert!(!bool::from(point.is_torsion_free()));
        assert!(decode_checked(&bytes).is_none());
        let mut theirs = <threshold_crypto::G2Affine as CurveAffine>::Compressed::empty();
        theirs.as_mut().copy_from_slice(&bytes);
        assert!(theirs.into_affine().is_err(), "the library refuses it too");
    }
}
