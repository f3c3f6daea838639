//! The Merkle tree over a block's item ids: the root a leader computes per block and the path
//! a proof carries.

use criterion::{Criterion, criterion_group, criterion_main};
use lcbft_protocol::merkle::{fold, path, root};
use lcbft_protocol::types::Hash;
use std::hint::black_box;

fn merkle(c: &mut Criterion) {
    let ids: Vec<Hash> = (0..1024u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
    c.bench_function("merkle/root 1024", |b| {
        b.iter(|| root(black_box(ids.iter().copied())))
    });
    c.bench_function("merkle/path 1024", |b| {
        b.iter(|| path(black_box(&ids), 517).expect("in range"))
    });
    let steps = path(&ids, 517).expect("in range");
    c.bench_function("merkle/fold 1024", |b| {
        b.iter(|| fold(black_box(&ids[517]), black_box(&steps)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = merkle
}
criterion_main!(benches);
