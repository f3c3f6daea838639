//! What a client's body reaches on `POST /v1/traces` and `POST /v1/payloads`, up to and
//! including the admission rule gossip and proposals share. The first byte picks the format:
//! a CBOR array (also judged whole as one gossiped item), JSON (one trace or an array), or
//! length-prefixed raw frames.
//!
//! Nothing panics; whatever the rule admits is a canonical trace whose signature verifies
//! (the rule verifies in batches, ZIP-215; this checks it against a single verification); raw
//! frames re-frame to the same body.
#![no_main]

use lcbft_fuzz::{LOCAL, MAX_BODY};
use lcbft_node::admission::{Admission, Refusal};
use lcbft_node::api::submit::{TraceBody, decode_traces, split_frames};
use lcbft_node::metrics::Metrics;
use lcbft_node::store::Store;
use lcbft_node::trace::SignedTrace;
use lcbft_protocol::types::Tx;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static RULE: LazyLock<(tempfile::TempDir, Admission)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("fuzz.redb")).expect("empty store");
    let rule = Admission::new(MAX_BODY, false, store, Metrics::new());
    (dir, rule)
});

/// Judge `tx` as the node would for `domain`; if admitted, it must be a valid trace.
fn judge(domain: lcbft_protocol::types::DomainId, tx: Tx) {
    let verdict = RULE.1.check(domain, std::slice::from_ref(&tx));
    assert_eq!(verdict.len(), 1);
    // Nothing is committed in the fuzzer's store.
    assert_ne!(verdict[0], Err(Refusal::Committed));
    if verdict[0].is_ok() {
        let t = SignedTrace::from_tx(&tx).expect("admitted items are canonical traces");
        t.verify().expect("admitted traces verify one by one too");
        assert_eq!(t.trace.domain, domain);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 | 1 => {
            let cbor = mode % 3 == 0;
            if cbor {
                judge(LOCAL, Tx::new(body.to_vec()));
            }
            let items = match decode_traces(body, cbor, MAX_BODY) {
                Ok(TraceBody::Batch(items)) => items,
                Ok(TraceBody::Single(item)) => vec![item],
                Err(_) => return,
            };
            for t in items.into_iter().flatten() {
                judge(t.trace.domain, t.to_tx());
            }
        }
        _ => {
            let Ok(frames) = split_frames(body) else {
                return;
            };
            let mut again = Vec::new();
            for f in &frames {
                again.extend((f.len() as u32).to_be_bytes());
                again.extend(f);
            }
            assert_eq!(again, body);
        }
    }
});
