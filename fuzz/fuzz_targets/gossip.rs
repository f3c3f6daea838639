//! A gossipsub message's data, as `validate_gossip` decodes it from any member: decoding never
//! panics, what decodes re-encodes to a value that decodes the same, and payload items go
//! through the per-item decoders the validator applies (anchors, traces).
#![no_main]

use lcbft_node::net::wire::Gossip;
use lcbft_node::trace::SignedTrace;
use lcbft_protocol::anchor::Anchor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(gossip) = Gossip::decode(data) else {
        return;
    };
    let again = Gossip::decode(&gossip.encode()).expect("an encoded gossip decodes");
    assert_eq!(again, gossip);
    if let Gossip::Payload(txs) = &gossip {
        for tx in txs {
            if Anchor::is_anchor(tx) {
                let _ = Anchor::from_tx(tx);
            } else if let Ok(t) = SignedTrace::from_tx(tx) {
                // from_tx accepts only the canonical encoding.
                assert_eq!(&t.to_tx(), tx);
            }
        }
    }
});
