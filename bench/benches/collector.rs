//! One basic phase at the collector: n - f shares in, one certificate out (optimistic combine
//! and one verification), with the hash-based stand-in (the bookkeeping alone) and with blsttc.

use criterion::{Criterion, criterion_group, criterion_main};
use lcbft_protocol::collector::{Added, Collector};
use lcbft_protocol::crypto::{BlsttcScheme, Dealer, DealtKeys, SimScheme, ThresholdKeys};
use lcbft_protocol::crypto::{CryptoError, SecretBytes, Share};
use lcbft_protocol::types::{DomainId, Hash, Kind, ReplicaIndex, SignedMsg};

type Load = fn(usize, &[u8], Option<&SecretBytes>) -> Result<Box<dyn ThresholdKeys>, CryptoError>;

fn phase(c: &mut Criterion, name: &str, n: usize, dealt: &DealtKeys, load: Load) {
    let members: Vec<Box<dyn ThresholdKeys>> = dealt
        .secrets
        .iter()
        .map(|s| load(n, &dealt.public, Some(s)).expect("loads"))
        .collect();
    let msg = SignedMsg {
        domain: DomainId::Local(1),
        kind: Kind::Vote,
        view: 7,
        digest: Hash::of(b"block"),
    };
    let shares: Vec<(ReplicaIndex, Share)> = members
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let i = ReplicaIndex::try_from(i).expect("small");
            (i, k.sign_share(&msg.bytes()).expect("signs"))
        })
        .collect();
    let keys = &members[0];
    c.bench_function(&format!("collector/{name} n={n} one certificate"), |b| {
        b.iter(|| {
            let mut collector = Collector::default();
            let formed = shares
                .iter()
                .take(keys.quorum())
                .map(|(i, s)| collector.add(keys.as_ref(), msg, *i, s.clone()))
                .any(|a| matches!(a, Added::Formed { .. }));
            assert!(formed);
        })
    });
}

fn collector(c: &mut Criterion) {
    for n in [4, 16] {
        let quorum = n - (n - 1) / 3;
        phase(
            c,
            "sim",
            n,
            &SimScheme::deal(n, quorum, [2; 32]),
            SimScheme::load,
        );
    }
    phase(
        c,
        "blsttc",
        4,
        &BlsttcScheme::deal(4, 3, [2; 32]),
        BlsttcScheme::load,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = collector
}
criterion_main!(benches);
