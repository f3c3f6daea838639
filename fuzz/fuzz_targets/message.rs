//! A consensus message as the protocol codec decodes it (inside gossip or a direct request),
//! then what a replica does with it (the replica is the judge of gossip before it is
//! forwarded), for a global and a local replica at genesis, from the sender the first byte names.
//! Nothing panics (overflow checks are on), and what decodes round-trips.
//!
//! The replicas use the simulator's hash-based keys: verifying costs nothing, so the fuzzer
//! spends its time in the state machines rather than in pairings.
#![no_main]

use lcbft_protocol::Config;
use lcbft_protocol::codec;
use lcbft_protocol::crypto::{Dealer, SimScheme};
use lcbft_protocol::io::Input;
use lcbft_protocol::message::Message;
use lcbft_protocol::replica::Replica;
use lcbft_protocol::types::{DomainId, ReplicaIndex};
use libfuzzer_sys::fuzz_target;

const N: usize = 4;

fn replica(domain: DomainId) -> Replica {
    let dealt = SimScheme::deal(N, N - 1, [3; 32]);
    let keys = SimScheme::load(N, &dealt.public, dealt.secrets.first()).expect("sim keys");
    let mut r = Replica::new(Config::new(domain, 0, N), keys);
    let _ = r.handle(Input::Start);
    r
}

fuzz_target!(|data: &[u8]| {
    let Some((&from, data)) = data.split_first() else {
        return;
    };
    // Mostly members, sometimes an index outside the domain.
    let from = ReplicaIndex::from(from % (N as u8 + 1));
    let Ok(msg) = codec::decode::<Message>(data, codec::MAX_MESSAGE_BYTES) else {
        return;
    };
    let back: Message = codec::decode(&codec::encode(&msg), codec::MAX_MESSAGE_BYTES)
        .expect("an encoded message decodes");
    assert_eq!(back, msg);
    for domain in [DomainId::Global, DomainId::Local(1)] {
        let mut r = replica(domain);
        // The network task hands the replica every message from a member.
        if usize::from(from) < N {
            let _ = r.handle(Input::Message {
                from,
                msg: msg.clone(),
            });
        }
    }
});
