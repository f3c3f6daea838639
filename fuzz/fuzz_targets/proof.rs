//! `lcbft verify-proof`: a trace proof decoded from a file and checked against a genesis built
//! deterministically here (the fixture's key sets). Nothing panics; a proof that decodes
//! round-trips; and a proof that verifies is about a block the fixture network really
//! committed: the fuzzer cannot forge threshold signatures, so anything else that verifies is
//! a soundness bug (a proof malleable in some unsigned part).
#![no_main]

use lcbft_fuzz::{Run, key_ring, run, signed_trace};
use lcbft_node::proofs::verify_trace_proof;
use lcbft_protocol::anchor::KeyRing;
use lcbft_protocol::proof::TraceProof;
use lcbft_protocol::types::{DomainId, Hash};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::sync::LazyLock;

struct Fixture {
    ring: KeyRing,
    /// Hashes of the global blocks the fixture committed.
    committed: BTreeSet<Hash>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let txs: Vec<_> = (0..3)
        .map(|n| signed_trace(DomainId::Global, n).to_tx())
        .collect();
    let Run { committed, .. } = run(DomainId::Global, &txs);
    Fixture {
        ring: key_ring(),
        committed,
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = TraceProof::decode(data) else {
        return;
    };
    assert_eq!(
        TraceProof::decode(&proof.encode()).expect("an encoded proof decodes"),
        proof
    );
    let Ok((proven, _item)) = verify_trace_proof(&proof, &FIXTURE.ring) else {
        return;
    };
    assert_eq!(proven.trace, proof.trace.tx.id());
    assert_eq!(proven.domain, proof.trace.block.domain);
    if proven.domain == DomainId::Global {
        assert!(
            FIXTURE.committed.contains(&proof.trace.block.hash()),
            "a proof verifies for a global block the fixture never committed"
        );
    }
});
