//! A request-response stream on `/lcbft/direct/1`, read by the same libp2p CBOR codec and bound
//! the node uses (`net::codec`), then the inner consensus message the node decodes from it.
//! Reading never panics; a request that reads re-encodes to one that reads the same, and so
//! does its message. The first byte picks the request or the one-byte-bounded response side.
#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use lcbft_node::net::wire::{Ack, DIRECT_PROTOCOL, Direct, MAX_WIRE_BYTES};
use lcbft_protocol::codec;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::{Codec, cbor};

fn codec() -> cbor::codec::Codec<Direct, Ack> {
    cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_WIRE_BYTES as u64)
        .set_response_size_maximum(1024)
}

fuzz_target!(|data: &[u8]| {
    let Some((&side, data)) = data.split_first() else {
        return;
    };
    let mut c = codec();
    if side & 1 == 1 {
        let _ = block_on(c.read_response(&DIRECT_PROTOCOL, &mut Cursor::new(data)));
        return;
    }
    let Ok(req) = block_on(c.read_request(&DIRECT_PROTOCOL, &mut Cursor::new(data))) else {
        return;
    };
    let mut wire = Cursor::new(Vec::new());
    block_on(c.write_request(&DIRECT_PROTOCOL, &mut wire, req.clone())).expect("write to memory");
    let again = block_on(c.read_request(&DIRECT_PROTOCOL, &mut Cursor::new(wire.into_inner())))
        .expect("a written request reads");
    assert_eq!(again, req);
    if let Ok(msg) = req.message() {
        let back: lcbft_protocol::message::Message =
            codec::decode(&codec::encode(&msg), codec::MAX_MESSAGE_BYTES)
                .expect("an encoded message decodes");
        assert_eq!(back, msg);
    }
});
