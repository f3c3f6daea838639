//! What travels between nodes: one gossipsub topic per domain carrying [`Gossip`], and a
//! request-response protocol carrying [`Direct`] point-to-point messages (votes, view-change
//! shares, block sync). Both carry protocol messages in the protocol's bounded CBOR codec.

use lcbft_protocol::codec::{self, CodecError};
use lcbft_protocol::merkle;
use lcbft_protocol::message::{Message, Proposal};
use lcbft_protocol::proof::AnchorProof;
use lcbft_protocol::types::{DomainId, Hash, Header, Tx};
use libp2p::StreamProtocol;
use libp2p::gossipsub::IdentTopic;
use serde::{Deserialize, Serialize};

/// The version of what peers exchange: gossip, point-to-point requests and the consensus
/// messages inside them. Bump it with any change to their encoding. It names the topics and
/// the protocols, so nodes of two versions (a Pi not yet upgraded) do not talk and say why,
/// instead of dropping each other's new messages as malformed.
pub const WIRE_VERSION: u32 = 2;
/// `lcbft --version`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (wire 2)");
/// The request-response protocol for point-to-point consensus messages.
pub const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/lcbft/direct/2");
/// identify's protocol version string: a peer announcing another one speaks another version.
pub const IDENTIFY_PROTOCOL: &str = "/lcbft/2";
/// Largest wire message: a protocol message plus framing. gossipsub applies this bound to a
/// whole RPC frame, which may carry control messages (GRAFT, IHAVE ids) next to a message; a
/// frame over it fails to decode and costs the receiver the sender's gossip stream, so the
/// margin is generous.
pub const MAX_WIRE_BYTES: usize = codec::MAX_MESSAGE_BYTES + 64 * 1024;

/// `lcbft/global/<wire>`, `lcbft/local/<id>/<wire>`.
pub fn topic(domain: DomainId) -> IdentTopic {
    match domain {
        DomainId::Global => IdentTopic::new(format!("lcbft/global/{WIRE_VERSION}")),
        DomainId::Local(id) => IdentTopic::new(format!("lcbft/local/{id}/{WIRE_VERSION}")),
    }
}

/// A message published on a domain's topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// A consensus message for every member (proposals, certificates).
    Consensus(Box<Message>),
    /// Payload submitted at the author: every member's replica takes it as `Input::Payload`.
    Payload(Vec<Tx>),
    /// From an edge to its local domain: proof that the domain is anchored up to a block, so
    /// members may prune below it.
    Anchored(Box<AnchorProof>),
    /// A proposal whose payload travels by id (see [`Compact`]).
    Proposal(Box<Compact>),
}

/// A proposal with its payload named by item ids. Every member got the items already, as
/// payload gossip, so sending them again inside the proposal would double the bytes each
/// member receives, hashes, decrypts and signature-checks for every trace. A member missing
/// some of them fetches the whole block from the proposer (`BlockRequest`), as in block sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compact {
    /// The proposal, its block's payload left empty.
    pub proposal: Proposal,
    /// The payload's ids, in block order.
    pub ids: Vec<Hash>,
}

impl Compact {
    pub fn of(mut proposal: Proposal) -> Compact {
        let payload = std::mem::take(&mut proposal.block.payload);
        Compact {
            proposal,
            ids: payload.iter().map(Tx::id).collect(),
        }
    }

    /// The hash of the block this names: its header commits to the payload by the ids' root.
    pub fn block_hash(&self) -> Hash {
        let b = &self.proposal.block;
        Header {
            domain: b.domain,
            height: b.height,
            view: b.view,
            proposer: b.proposer,
            parent: b.parent,
            justify: b.justify.clone(),
            payload_root: merkle::root(self.ids.iter().copied()),
        }
        .hash()
    }

    /// The whole proposal, if `find` knows every item; otherwise how many are missing.
    pub fn complete(&self, find: impl Fn(&Hash) -> Option<Tx>) -> Result<Proposal, usize> {
        let found: Vec<Option<Tx>> = self.ids.iter().map(find).collect();
        let missing = found.iter().filter(|t| t.is_none()).count();
        if missing > 0 {
            return Err(missing);
        }
        let mut proposal = self.proposal.clone();
        proposal.block.payload = found.into_iter().flatten().collect();
        Ok(proposal)
    }
}

impl Gossip {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Gossip, CodecError> {
        codec::decode(bytes, codec::MAX_MESSAGE_BYTES)
    }
}

/// gossipsub's message id. Payload is named by its content, so a batch replayed by anyone (a
/// new sequence number, another relay) is dropped as a duplicate before it is decoded again.
/// Other messages are named by author and sequence number too: a replica re-sends an identical
/// consensus message on purpose when a peer lags.
pub fn message_id(m: &libp2p::gossipsub::Message) -> libp2p::gossipsub::MessageId {
    static PAYLOAD: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        // The variant's tag: everything before the (empty) array of items.
        let mut prefix = Gossip::Payload(Vec::new()).encode();
        prefix.pop();
        prefix
    });
    let mut h = blake3::Hasher::new();
    if !m.data.starts_with(&PAYLOAD) {
        h.update(&m.source.map(|p| p.to_bytes()).unwrap_or_default());
        h.update(&m.sequence_number.unwrap_or_default().to_be_bytes());
    }
    h.update(&m.data);
    libp2p::gossipsub::MessageId::from(h.finalize().as_bytes().to_vec())
}

/// A point-to-point request: one consensus message for the receiver's replica in `domain`.
/// The message stays encoded so the receiver decodes it with the protocol's bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direct {
    pub domain: DomainId,
    #[serde(with = "serde_bytes")]
    pub msg: Vec<u8>,
}

/// The answer to a [`Direct`]: whether the receiver took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack(pub bool);

impl Direct {
    pub fn new(domain: DomainId, msg: &Message) -> Direct {
        Direct {
            domain,
            msg: codec::encode(msg),
        }
    }

    /// A request carrying already encoded (or deliberately bad) message bytes.
    pub fn raw(domain: DomainId, msg: Vec<u8>) -> Direct {
        Direct { domain, msg }
    }

    pub fn message(&self) -> Result<Message, CodecError> {
        codec::decode(&self.msg, codec::MAX_MESSAGE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lcbft_protocol::types::Certificate;

    #[test]
    fn a_compact_proposal_names_the_same_block_and_completes_from_the_pool() {
        use lcbft_protocol::types::Block;
        let mut block = Block::genesis(DomainId::Global);
        block.height = 1;
        block.view = 1;
        block.parent = Block::genesis(DomainId::Global).hash();
        block.payload = (0..5u8).map(|i| Tx::new(vec![i; 40])).collect();
        let proposal = Proposal {
            block: block.clone(),
            timeout: None,
            term: None,
        };
        let compact = Compact::of(proposal.clone());
        assert!(compact.proposal.block.payload.is_empty());
        assert_eq!(compact.block_hash(), block.hash());
        let g = Gossip::Proposal(Box::new(compact.clone()));
        assert_eq!(Gossip::decode(&g.encode()).expect("decode"), g);
        let pool: std::collections::HashMap<Hash, Tx> =
            block.payload.iter().map(|t| (t.id(), t.clone())).collect();
        assert_eq!(compact.complete(|id| pool.get(id).cloned()), Ok(proposal));
        let partial = |id: &Hash| pool.get(id).filter(|t| t.bytes()[0] != 3).cloned();
        assert_eq!(compact.complete(partial), Err(1));
    }

    #[test]
    fn topics_follow_the_design() {
        assert_eq!(topic(DomainId::Global).to_string(), "lcbft/global/2");
        assert_eq!(topic(DomainId::Local(7)).to_string(), "lcbft/local/7/2");
    }

    #[test]
    fn every_name_carries_the_wire_version() {
        let v = format!("/{WIRE_VERSION}");
        assert!(DIRECT_PROTOCOL.as_ref().ends_with(&v));
        assert!(IDENTIFY_PROTOCOL.ends_with(&v));
        assert!(VERSION.ends_with(&format!("(wire {WIRE_VERSION})")));
    }

    #[test]
    fn gossip_round_trips_and_garbage_is_an_error() {
        let g = Gossip::Consensus(Box::new(Message::Certificate(Certificate::genesis(
            DomainId::Global,
        ))));
        assert_eq!(Gossip::decode(&g.encode()).expect("decode"), g);
        assert!(Gossip::decode(b"\xff\x00garbage").is_err());
        let huge = vec![0u8; codec::MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            Gossip::decode(&huge),
            Err(CodecError::TooLarge { .. })
        ));
        let msg = Message::Certificate(Certificate::genesis(DomainId::Local(2)));
        let d = Direct::new(DomainId::Local(2), &msg);
        assert_eq!(d.message().expect("msg"), msg);
    }

    #[test]
    fn payload_is_named_by_content_and_consensus_by_author_too() {
        use libp2p::gossipsub::Message as G;
        let msg = |data: Vec<u8>, seq: u64| G {
            source: Some(libp2p::PeerId::random()),
            data,
            sequence_number: Some(seq),
            topic: topic(DomainId::Local(1)).hash(),
        };
        let payload = Gossip::Payload(vec![Tx::new(b"t".to_vec())]).encode();
        assert_eq!(
            message_id(&msg(payload.clone(), 1)),
            message_id(&msg(payload.clone(), 2))
        );
        let other = Gossip::Payload(vec![Tx::new(b"u".to_vec())]).encode();
        assert_ne!(message_id(&msg(payload, 1)), message_id(&msg(other, 1)));
        let anchored = Gossip::Consensus(Box::new(Message::BlockRequest {
            hash: lcbft_protocol::types::Hash([1; 32]),
            above: 0,
        }))
        .encode();
        assert_ne!(
            message_id(&msg(anchored.clone(), 1)),
            message_id(&msg(anchored, 2))
        );
    }
}
