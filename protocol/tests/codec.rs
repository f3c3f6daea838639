//! Every decoder refuses bad input with an error, never a panic: random bytes, truncations,
#![allow(clippy::unwrap_used)]
//! oversized input and wrong types.

use lcbft_protocol::codec::{CodecError, MAX_MESSAGE_BYTES, decode, encode};
use lcbft_protocol::crypto::{Share, Signature};
use lcbft_protocol::io::SafetyState;
use lcbft_protocol::message::{Message, Proposal, TermProof};
use lcbft_protocol::types::{
    Bitmap, Block, Certificate, DomainId, Hash, Kind, SignedMsg, Tx, Vote,
};
use proptest::prelude::*;

fn cert(kind: Kind, view: u64) -> Certificate {
    Certificate {
        msg: SignedMsg {
            domain: DomainId::Local(7),
            kind,
            view,
            digest: Hash::of(b"block"),
        },
        signers: Bitmap::from_indices(4, [0, 1, 3]),
        signature: Signature(vec![9; 96]),
    }
}

fn samples() -> Vec<Message> {
    let block = Block {
        domain: DomainId::Local(7),
        height: 3,
        view: 5,
        proposer: 1,
        parent: Hash::of(b"parent"),
        justify: cert(Kind::Vote, 4),
        payload: vec![Tx::new(b"trace".to_vec()), Tx::new(vec![0; 300])].into(),
    };
    let vote = Vote {
        msg: cert(Kind::Vote, 5).msg,
        share: Share(vec![1; 96]),
    };
    let proof = TermProof {
        confirm: cert(Kind::Confirm, 2),
        leader: 2,
        chosen: cert(Kind::Vote, 4),
    };
    vec![
        Message::Propose(Proposal {
            block: block.clone(),
            timeout: Some(cert(Kind::Timeout, 4)),
            term: Some(proof.clone()),
        }),
        Message::Vote(vote.clone()),
        Message::NewView {
            timeout: vote.clone(),
            high_qc: cert(Kind::Vote, 3),
            high_tc: None,
            vote: None,
        },
        Message::ViewChange {
            share: vote,
            leader: 3,
            high_qc: cert(Kind::Vote, 3),
            current: Some(proof.clone()),
        },
        Message::NewTerm {
            vc: cert(Kind::ViewChange, 2),
            leader: 2,
            chosen: cert(Kind::Vote, 3),
        },
        Message::Refuse {
            term: 2,
            high_qc: cert(Kind::Vote, 3),
        },
        Message::TermStart(proof),
        Message::Certificate(cert(Kind::Vote, 9)),
        Message::BlockRequest {
            hash: Hash::of(b"x"),
            above: 3,
        },
        Message::BlockResponse(vec![block]),
    ]
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let bytes = encode(&m);
        assert_eq!(decode::<Message>(&bytes, MAX_MESSAGE_BYTES).unwrap(), m);
    }
}

/// A sync answer built from stored block encodings is the encoding of the decoded answer,
/// for every length (CBOR writes short array lengths in the header byte, longer ones after
/// it).
#[test]
fn a_block_response_from_encoded_blocks_is_the_same_bytes() {
    let block = |height: u64| Block {
        domain: DomainId::Global,
        height,
        view: height + 1,
        proposer: (height % 4) as u16,
        parent: Hash::of(&height.to_be_bytes()),
        justify: cert(Kind::Vote, height),
        payload: (0..height % 3)
            .map(|i| Tx::new(vec![i as u8; 40]))
            .collect(),
    };
    for n in [0u64, 1, 23, 24, 255, 256, 300] {
        let blocks: Vec<Block> = (0..n).map(block).collect();
        let stored: Vec<Vec<u8>> = blocks.iter().map(encode).collect();
        let bytes = Message::encode_block_response(&stored);
        assert_eq!(
            bytes,
            encode(&Message::BlockResponse(blocks.clone())),
            "{n} blocks"
        );
        let back: Message = decode(&bytes, MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(back, Message::BlockResponse(blocks));
    }
}

/// The payload keeps its Merkle root once computed: every change must forget it, and the
/// payload must encode as the list of items it wraps.
#[test]
fn a_block_hash_follows_every_change_to_its_payload() {
    let Message::Propose(p) = &samples()[0] else {
        panic!("the first sample is a proposal");
    };
    let mut block = p.block.clone();
    let before = block.hash();
    // A decoded block has computed nothing yet.
    let fresh = |b: &Block| {
        decode::<Block>(&encode(b), MAX_MESSAGE_BYTES)
            .unwrap()
            .hash()
    };
    assert_eq!(before, fresh(&block));
    block.payload.push(Tx::new(b"one more".to_vec()));
    assert_ne!(block.hash(), before);
    assert_eq!(block.hash(), fresh(&block));
    block.payload[0] = Tx::new(b"another".to_vec());
    assert_eq!(block.hash(), fresh(&block));
    block.payload.clear();
    assert_eq!(block.payload_root(), Hash::ZERO);
    assert_eq!(
        encode(&p.block.payload),
        encode(&p.block.payload.iter().cloned().collect::<Vec<Tx>>())
    );
}

#[test]
fn every_truncation_is_an_error() {
    for m in samples() {
        let bytes = encode(&m);
        for len in 0..bytes.len() {
            assert!(
                decode::<Message>(&bytes[..len], MAX_MESSAGE_BYTES).is_err(),
                "{m:?} truncated to {len} decoded"
            );
        }
    }
}

#[test]
fn trailing_bytes_and_oversize_are_refused() {
    let mut bytes = encode(&samples()[1]);
    bytes.push(0);
    assert!(matches!(
        decode::<Message>(&bytes, MAX_MESSAGE_BYTES),
        Err(CodecError::Trailing(1))
    ));
    let big = encode(&samples()[0]);
    assert!(matches!(
        decode::<Message>(&big, 16),
        Err(CodecError::TooLarge { .. })
    ));
}

#[test]
fn wrong_types_are_refused() {
    let vote = encode(&samples()[1]);
    assert!(decode::<Block>(&vote, MAX_MESSAGE_BYTES).is_err());
    assert!(decode::<SafetyState>(&vote, MAX_MESSAGE_BYTES).is_err());
    assert!(decode::<Certificate>(&encode(&42u64), MAX_MESSAGE_BYTES).is_err());
}

/// A length prefix that promises gigabytes must fail fast, not allocate.
#[test]
fn huge_length_prefixes_fail_without_allocating() {
    // CBOR: array of 2^32-1 elements, then nothing.
    let bytes = [0x9b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    assert!(decode::<Vec<Tx>>(&bytes, MAX_MESSAGE_BYTES).is_err());
    let bytes = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(decode::<Tx>(&bytes, MAX_MESSAGE_BYTES).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Message>(&bytes, MAX_MESSAGE_BYTES);
        let _ = decode::<Block>(&bytes, MAX_MESSAGE_BYTES);
        let _ = decode::<Certificate>(&bytes, MAX_MESSAGE_BYTES);
        let _ = decode::<SafetyState>(&bytes, MAX_MESSAGE_BYTES);
        let _ = decode::<TermProof>(&bytes, MAX_MESSAGE_BYTES);
    }

    #[test]
    fn mutated_messages_never_panic(index in 0usize..10, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = encode(&samples()[index]);
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let _ = decode::<Message>(&bytes, MAX_MESSAGE_BYTES);
    }
}
