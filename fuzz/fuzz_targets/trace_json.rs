//! A trace as JSON (`POST /v1/traces`, `lcbft trace`): parsing and checking never panic; a
//! trace whose fields check out converts back to the same JSON fields; signed by its producer
//! it verifies, and its block item (canonical CBOR) decodes to the same signed trace.
#![no_main]

use lcbft_fuzz::{MAX_BODY, producer};
use lcbft_node::trace::{SignedTrace, SignedTraceJson, Trace, TraceJson};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(j) = serde_json::from_slice::<SignedTraceJson>(data) else {
        // A bare trace (what `lcbft trace sign` reads) checks its fields the same way.
        if let Ok(t) = serde_json::from_slice::<TraceJson>(data) {
            let _ = Trace::from_json(&t, MAX_BODY);
        }
        return;
    };
    if let Ok(s) = SignedTrace::from_json(&j, MAX_BODY) {
        s.verify().expect("from_json verified it");
        assert_eq!(SignedTrace::from_tx(&s.to_tx()).expect("own encoding"), s);
    }
    let Ok(mut t) = Trace::from_json(&j.trace, MAX_BODY) else {
        return;
    };
    assert_eq!(
        Trace::from_json(&t.to_json(), MAX_BODY).expect("own json"),
        t
    );
    let key = producer();
    t.producer = key
        .clone()
        .try_into_ed25519()
        .expect("ed25519")
        .public()
        .to_bytes();
    let s = t.sign(&key).expect("the producer signs");
    let back = SignedTrace::from_json(&s.to_json(), MAX_BODY).expect("signed json verifies");
    assert_eq!(back, s);
    assert_eq!(SignedTrace::from_tx(&s.to_tx()).expect("canonical item"), s);
});
