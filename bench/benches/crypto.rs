//! Both BLS backends' threshold operations for a domain of 4 (the `crypto` subcommand gives the
//! same figures for any n, on the thread's CPU clock).

use criterion::{Criterion, criterion_group, criterion_main};
use lcbft_protocol::crypto::{
    BlsttcScheme, CryptoError, Dealer, DealtKeys, SecretBytes, Share, ThresholdCryptoScheme,
    ThresholdKeys,
};
use lcbft_protocol::types::ReplicaIndex;
use std::hint::black_box;

type Load = fn(usize, &[u8], Option<&SecretBytes>) -> Result<Box<dyn ThresholdKeys>, CryptoError>;

fn backend(c: &mut Criterion, name: &str, dealt: &DealtKeys, load: Load) {
    let n = dealt.secrets.len();
    let members: Vec<Box<dyn ThresholdKeys>> = dealt
        .secrets
        .iter()
        .map(|s| load(n, &dealt.public, Some(s)).expect("loads"))
        .collect();
    let msg = b"one vote";
    let shares: Vec<Share> = members
        .iter()
        .map(|k| k.sign_share(msg).expect("signs"))
        .collect();
    let quorum = members[0].quorum();
    let chosen: Vec<(ReplicaIndex, &Share)> = (0..quorum)
        .map(|i| (ReplicaIndex::try_from(i).expect("small"), &shares[i]))
        .collect();
    let sig = members[0].combine(&chosen).expect("combines");
    let mut counter = 0u64;
    c.bench_function(&format!("{name}/sign share (fresh message)"), |b| {
        b.iter(|| {
            counter += 1;
            members[0]
                .sign_share(&counter.to_le_bytes())
                .expect("signs")
        })
    });
    c.bench_function(&format!("{name}/verify share"), |b| {
        b.iter(|| members[1].verify_share(0, black_box(msg), &shares[0]))
    });
    c.bench_function(&format!("{name}/combine n-f of 4"), |b| {
        b.iter(|| members[0].combine(black_box(&chosen)).expect("combines"))
    });
    c.bench_function(&format!("{name}/verify combined"), |b| {
        b.iter(|| members[2].verify(black_box(msg), &sig))
    });
}

fn crypto(c: &mut Criterion) {
    backend(
        c,
        "threshold_crypto",
        &ThresholdCryptoScheme::deal(4, 3, [1; 32]),
        ThresholdCryptoScheme::load,
    );
    backend(
        c,
        "blsttc",
        &BlsttcScheme::deal(4, 3, [1; 32]),
        BlsttcScheme::load,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = crypto
}
criterion_main!(benches);
