//! The wire codec on a proposal of 64 items of 200 bytes: what every replica pays per block
//! before any rule runs.

use criterion::{Criterion, criterion_group, criterion_main};
use lcbft_protocol::codec::{MAX_MESSAGE_BYTES, decode, encode};
use lcbft_protocol::message::{Message, Proposal};
use lcbft_protocol::types::{Block, DomainId, Tx};
use std::hint::black_box;

fn proposal() -> Message {
    let mut block = Block::genesis(DomainId::Local(1));
    block.height = 1;
    block.view = 1;
    block.payload = (0..64u8).map(|i| Tx::new(vec![i; 200])).collect();
    Message::Propose(Proposal {
        block,
        timeout: None,
        term: None,
    })
}

fn codec(c: &mut Criterion) {
    let msg = proposal();
    let bytes = encode(&msg);
    c.bench_function("codec/encode proposal 64x200B", |b| {
        b.iter(|| encode(black_box(&msg)))
    });
    c.bench_function("codec/decode proposal 64x200B", |b| {
        b.iter(|| decode::<Message>(black_box(&bytes), MAX_MESSAGE_BYTES).expect("decodes"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = codec
}
criterion_main!(benches);
