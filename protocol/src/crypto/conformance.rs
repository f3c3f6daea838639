//! Behaviour every backend shares, instantiated per backend by [`conformance_tests!`] so a
//! failure names both the backend and the property.

use super::{CryptoError, Dealer, DealtKeys, SecretBytes, Share, Signature, ThresholdKeys};
use crate::types::ReplicaIndex;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// (n, quorum) pairs: f = 1 and f = 2.
const SIZES: [(usize, usize); 2] = [(4, 3), (7, 5)];
const MSG: &[u8] = b"block 17 in view 3";
const OTHER: &[u8] = b"block 18 in view 3";

struct Domain {
    dealt: DealtKeys,
    members: Vec<Box<dyn ThresholdKeys>>,
    observer: Box<dyn ThresholdKeys>,
}

impl Domain {
    fn new<D: Dealer>(n: usize, quorum: usize) -> Domain {
        let dealt = D::deal(n, quorum, [n as u8; 32]);
        let members = dealt
            .secrets
            .iter()
            .map(|s| D::load(n, &dealt.public, Some(s)).unwrap())
            .collect();
        let observer = D::load(n, &dealt.public, None).unwrap();
        Domain {
            dealt,
            members,
            observer,
        }
    }

    fn shares(&self, msg: &[u8]) -> Vec<Share> {
        self.members
            .iter()
            .map(|m| m.sign_share(msg).unwrap())
            .collect()
    }
}

fn idx(i: usize) -> ReplicaIndex {
    ReplicaIndex::try_from(i).unwrap()
}

/// Every subset of `0..n` with exactly `k` members, as index lists.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == k)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

pub(super) fn deal_is_deterministic<D: Dealer>() {
    for (n, q) in SIZES {
        assert_eq!(D::deal(n, q, [7; 32]), D::deal(n, q, [7; 32]));
        assert_ne!(D::deal(n, q, [7; 32]).public, D::deal(n, q, [8; 32]).public);
        assert_eq!(D::deal(n, q, [7; 32]).secrets.len(), n);
    }
}

pub(super) fn reports_its_shape<D: Dealer>() {
    for (n, q) in SIZES {
        let d = Domain::new::<D>(n, q);
        for keys in d.members.iter().chain([&d.observer]) {
            assert_eq!(
                (keys.size(), keys.quorum(), keys.scheme()),
                (n, q, d.dealt.scheme)
            );
        }
    }
}

pub(super) fn any_quorum_combines_to_one_signature<D: Dealer>() {
    for (n, q) in SIZES {
        let d = Domain::new::<D>(n, q);
        let shares = d.shares(MSG);
        let mut first: Option<Signature> = None;
        for subset in subsets(n, q) {
            let chosen: Vec<_> = subset.iter().map(|&i| (idx(i), &shares[i])).collect();
            let sig = d.observer.combine(&chosen).unwrap();
            assert!(d.observer.verify(MSG, &sig), "subset {subset:?}");
            assert!(!d.observer.verify(OTHER, &sig));
            assert_eq!(
                sig,
                *first.get_or_insert_with(|| sig.clone()),
                "subset {subset:?}"
            );
        }
        // Extra shares beyond the quorum change nothing.
        let all: Vec<_> = shares
            .iter()
            .enumerate()
            .rev()
            .map(|(i, s)| (idx(i), s))
            .collect();
        assert_eq!(Some(d.observer.combine(&all).unwrap()), first);
    }
}

pub(super) fn shares_bind_signer_and_message<D: Dealer>() {
    for (n, q) in SIZES {
        let d = Domain::new::<D>(n, q);
        let shares = d.shares(MSG);
        for (i, share) in shares.iter().enumerate() {
            assert!(d.observer.verify_share(idx(i), MSG, share));
            assert!(!d.observer.verify_share(idx(i), OTHER, share));
            assert!(!d.observer.verify_share(idx((i + 1) % n), MSG, share));
            assert!(!d.observer.verify_share(idx(n), MSG, share));
            let truncated = Share(share.0[..share.0.len() - 1].to_vec());
            assert!(!d.observer.verify_share(idx(i), MSG, &truncated));
        }
    }
}

pub(super) fn a_bad_share_spoils_the_signature<D: Dealer>() {
    for (n, q) in SIZES {
        let d = Domain::new::<D>(n, q);
        let shares = d.shares(MSG);
        let wrong_msg = d.members[0].sign_share(OTHER).unwrap();
        let mut chosen: Vec<_> = (1..q).map(|i| (idx(i), &shares[i])).collect();
        chosen.push((0, &wrong_msg));
        let sig = d.observer.combine(&chosen).unwrap();
        assert!(!d.observer.verify(MSG, &sig));
        assert!(!d.observer.verify(OTHER, &sig));
        // Member 1's share presented as member 0's.
        chosen[q - 1] = (0, &shares[1]);
        chosen[0] = (idx(q), &shares[q]);
        let sig = d.observer.combine(&chosen).unwrap();
        assert!(!d.observer.verify(MSG, &sig));
    }
}

pub(super) fn combine_needs_a_quorum_of_distinct_known_signers<D: Dealer>() {
    for (n, q) in SIZES {
        let d = Domain::new::<D>(n, q);
        let shares = d.shares(MSG);
        let mut chosen: Vec<_> = (0..q - 1).map(|i| (idx(i), &shares[i])).collect();
        let short = Err(CryptoError::NotEnoughShares {
            needed: q,
            got: q - 1,
        });
        assert_eq!(d.observer.combine(&chosen), short);
        assert_eq!(
            d.observer.combine(&[]),
            Err(CryptoError::NotEnoughShares { needed: q, got: 0 })
        );
        chosen.push((0, &shares[0]));
        assert_eq!(
            d.observer.combine(&chosen),
            short,
            "a repeated signer counts once"
        );
        chosen.push((idx(n), &shares[0]));
        assert_eq!(
            d.observer.combine(&chosen),
            Err(CryptoError::UnknownSigner(idx(n)))
        );
        chosen.pop();
        let stub = Share(vec![1, 2, 3]);
        chosen.push((idx(q - 1), &stub));
        assert!(matches!(
            d.observer.combine(&chosen),
            Err(CryptoError::Malformed { .. })
        ));
    }
}

pub(super) fn observers_verify_but_cannot_sign<D: Dealer>() {
    let d = Domain::new::<D>(4, 3);
    assert_eq!(d.observer.sign_share(MSG), Err(CryptoError::NoSecret));
    let shares = d.shares(MSG);
    let chosen: Vec<_> = (0..3).map(|i| (idx(i), &shares[i])).collect();
    let sig = d.members[3].combine(&chosen).unwrap();
    assert!(d.observer.verify(MSG, &sig));
}

pub(super) fn damaged_key_material_is_refused<D: Dealer>() {
    let DealtKeys {
        public, secrets, ..
    } = D::deal(4, 3, [5; 32]);
    for len in 0..public.len() {
        let truncated = &public[..len];
        // A BLS set cut at a point boundary is a valid set of lower quorum: only the quorum
        // check a caller makes, or a member's secret no longer matching, can catch it.
        if let Ok(keys) = D::load(4, truncated, None) {
            assert_ne!(keys.quorum(), 3, "public truncated to {len}");
        }
        assert!(
            D::load(4, truncated, Some(&secrets[0])).is_err(),
            "public truncated to {len}"
        );
    }
    let mut longer = public.clone();
    longer.push(0);
    assert!(D::load(4, &longer, None).is_err());
    // The key set needs 3 signers, more than a domain of 2 has.
    assert!(D::load(2, &public, None).is_err());
    for len in 0..secrets[0].0.len() {
        let secret = SecretBytes(secrets[0].0[..len].to_vec());
        assert!(
            D::load(4, &public, Some(&secret)).is_err(),
            "secret truncated to {len}"
        );
    }
    let foreign = D::deal(4, 3, [6; 32]).secrets.swap_remove(0);
    assert!(D::load(4, &public, Some(&foreign)).is_err());
    assert!(D::load(4, &public, Some(&SecretBytes(vec![0xff; 32]))).is_err());
}

/// Random bytes anywhere key material or signatures enter must give errors, never panics.
pub(super) fn random_bytes_never_panic<D: Dealer>() {
    let d = Domain::new::<D>(4, 3);
    let public_len = d.dealt.public.len();
    let secret_len = d.dealt.secrets[0].0.len();
    let share_len = d.shares(MSG)[0].0.len();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let bytes = |len: usize| prop_oneof![vec(any::<u8>(), len), vec(any::<u8>(), 0..2 * len)];
    let inputs = (
        bytes(public_len),
        bytes(secret_len),
        bytes(share_len),
        0u16..6,
    );
    let valid = d.shares(MSG);
    runner
        .run(&inputs, |(public, secret, share, signer)| {
            let _ = D::load(4, &public, None);
            let _ = D::load(4, &public, Some(&SecretBytes(secret.clone())));
            let _ = D::load(4, &d.dealt.public, Some(&SecretBytes(secret)));
            let share = Share(share);
            prop_assert!(!d.observer.verify_share(signer, MSG, &share));
            let chosen = [(0, &valid[0]), (1, &valid[1]), (signer, &share)];
            if let Ok(sig) = d.observer.combine(&chosen) {
                prop_assert!(!d.observer.verify(MSG, &sig));
            }
            prop_assert!(!d.observer.verify(MSG, &Signature(share.0.clone())));
            Ok(())
        })
        .unwrap();
}

/// Prints rough per-operation costs; run with `--release -- --ignored --nocapture`.
pub(super) fn report_timings<D: Dealer>() {
    use std::hint::black_box;
    use std::time::{Duration, Instant};
    fn per_call(runs: u32, mut f: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..runs {
            f();
        }
        start.elapsed() / runs
    }
    const RUNS: u32 = 50;
    for (n, q) in [(4, 3), (31, 21)] {
        let d = Domain::new::<D>(n, q);
        let shares = d.shares(MSG);
        let chosen: Vec<_> = (0..q).map(|i| (idx(i), &shares[i])).collect();
        let sig = d.observer.combine(&chosen).unwrap();
        let scheme = d.dealt.scheme;
        if n == 4 {
            let sign = per_call(RUNS, || {
                drop(black_box(d.members[0].sign_share(black_box(MSG))))
            });
            let verify_share = per_call(RUNS, || {
                assert!(d.observer.verify_share(0, MSG, &shares[0]))
            });
            let verify = per_call(RUNS, || assert!(d.observer.verify(MSG, &sig)));
            println!(
                "{scheme:?}: sign_share {sign:?}, verify_share {verify_share:?}, verify {verify:?}"
            );
        }
        let combine = per_call(RUNS, || {
            drop(black_box(d.observer.combine(black_box(&chosen))))
        });
        println!("{scheme:?}: combine of {q} {combine:?}");
    }
}

macro_rules! conformance_tests {
    ($scheme:ty) => {
        #[test]
        fn deal_is_deterministic() {
            $crate::crypto::conformance::deal_is_deterministic::<$scheme>();
        }
        #[test]
        fn reports_its_shape() {
            $crate::crypto::conformance::reports_its_shape::<$scheme>();
        }
        #[test]
        fn any_quorum_combines_to_one_signature() {
            $crate::crypto::conformance::any_quorum_combines_to_one_signature::<$scheme>();
        }
        #[test]
        fn shares_bind_signer_and_message() {
            $crate::crypto::conformance::shares_bind_signer_and_message::<$scheme>();
        }
        #[test]
        fn a_bad_share_spoils_the_signature() {
            $crate::crypto::conformance::a_bad_share_spoils_the_signature::<$scheme>();
        }
        #[test]
        fn combine_needs_a_quorum_of_distinct_known_signers() {
            $crate::crypto::conformance::combine_needs_a_quorum_of_distinct_known_signers::<$scheme>();
        }
        #[test]
        fn observers_verify_but_cannot_sign() {
            $crate::crypto::conformance::observers_verify_but_cannot_sign::<$scheme>();
        }
        #[test]
        fn damaged_key_material_is_refused() {
            $crate::crypto::conformance::damaged_key_material_is_refused::<$scheme>();
        }
        #[test]
        fn random_bytes_never_panic() {
            $crate::crypto::conformance::random_bytes_never_panic::<$scheme>();
        }
        #[test]
        #[ignore = "timing report: run with --release -- --ignored --nocapture"]
        fn report_timings() {
            $crate::crypto::conformance::report_timings::<$scheme>();
        }
    };
}
pub(super) use conformance_tests;
