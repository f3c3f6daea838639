//! Networking (DESIGN §1, §7). The network task alone owns the libp2p swarm; the rest of the
//! node talks to it through a cloneable [`NetHandle`] sending [`Command`]s and receives
//! [`NetEvent`]s: consensus messages and payload already checked for membership and bounds.
//!
//! Trust no peer (DESIGN §7): only genesis members and configured observers get a connection,
//! and an address whose handshakes keep failing is refused before the next one;
//! gossipsub scores peers by the messages we reject; point-to-point work, block sync and
//! anchor notices are rate-limited per peer; address books are bounded and dialling backs
//! off; the swarm never waits for the main loop (a full queue is a counted drop).

mod addresses;
mod backlog;
mod behaviour;
mod codec;
mod gate;
mod limits;
mod scoring;
mod task;
pub mod wire;

use crate::genesis::Genesis;
use crate::metrics::Metrics;
use lcbft_protocol::io::Reject;
use lcbft_protocol::message::Message;
use lcbft_protocol::proof::AnchorProof;
use lcbft_protocol::types::{DomainId, ReplicaIndex, Tx};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

// The budgets, for tests that check a flood gets no more than they allow.
pub use gate::HANDSHAKES;
pub use limits::{Rate, Work};
pub use task::spawn;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("behaviour: {0}")]
    Behaviour(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot subscribe to {topic}: {reason}")]
    Subscribe { topic: String, reason: String },
}

/// What the network task needs to know.
pub struct NetConfig {
    pub keypair: Keypair,
    pub genesis: Arc<Genesis>,
    /// Domains this node is a member of (one topic each).
    pub domains: Vec<DomainId>,
    pub listen: Vec<Multiaddr>,
    /// Configured peer addresses, each ending in `/p2p/<peer-id>`.
    pub peers: Vec<Multiaddr>,
    pub mdns: bool,
    /// Peers outside the genesis that may connect and read our topics (they can never author
    /// anything we accept). Everyone else is refused at connection.
    pub observers: Vec<PeerId>,
    pub liveness_timeout: Duration,
    pub redial_interval: Duration,
    pub idle_connection_timeout: Duration,
    /// The node's admission rule for gossiped traces; `None` only for tools and test peers
    /// that never hand payload to a replica.
    pub admission: Option<crate::admission::Admission>,
}

/// Delivered to the node's main loop. `from` is the sender's index in `domain`, taken from
/// the authenticated PeerId, never from the message.
#[derive(Debug)]
pub enum NetEvent {
    Consensus {
        domain: DomainId,
        from: ReplicaIndex,
        msg: Box<Message>,
        /// Set when the message came by gossip: its validation waits for the replica's verdict,
        /// to be given back with [`NetHandle::validate`].
        gossip: Option<GossipRef>,
    },
    Payload {
        domain: DomainId,
        from: ReplicaIndex,
        txs: Vec<Tx>,
    },
    /// An edge's proof of how far `domain` is anchored. It is forwarded only once the main
    /// loop verified it and said so with [`NetHandle::validate`].
    Anchored {
        domain: DomainId,
        from: ReplicaIndex,
        proof: Box<AnchorProof>,
        gossip: Option<GossipRef>,
    },
    /// A proposal by its proposer, its payload named by ids: the main loop completes it from
    /// the pool (or fetches the block) and gives its verdict with [`NetHandle::judge`].
    Proposal {
        domain: DomainId,
        from: ReplicaIndex,
        compact: Box<wire::Compact>,
        gossip: Option<GossipRef>,
    },
    /// The listening addresses are known (the first one bound).
    Listening(Multiaddr),
}

/// A gossip message awaiting its validation result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipRef {
    pub id: libp2p::gossipsub::MessageId,
    pub source: PeerId,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NetStatus {
    pub peer_id: String,
    pub listen: Vec<String>,
    pub connected: Vec<String>,
}

/// What becomes of a gossip message once judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver and forward.
    Accept,
    /// Not forwarded, no fault of the sender (it may be late or early, as honest ones are).
    Ignore,
    /// Not forwarded and held against the peer that sent it (gossipsub score).
    Reject,
}

impl Verdict {
    /// The replica's judgement of a consensus message: `None` if it did not reject the sender.
    /// gossipsub holds a rejected message against every peer that relayed it to us, so only
    /// what every honest member refuses before relaying is rejected. Ignored, not punished:
    /// - what a timing difference between honest members explains (a proposal from the leader
    ///   of a term we already left, a block we no longer wait for);
    /// - a bad share or certificate: an honest member relays a share it had no reason to check
    ///   yet (shares are checked when a combine fails or their signer is a suspect) and a
    ///   certificate outside its window. Its signer pays instead (`charge_failed_check`).
    pub fn of_replica(rejected: Option<Reject>) -> Verdict {
        match rejected {
            None => Verdict::Accept,
            Some(
                Reject::NotLeader | Reject::Unrequested | Reject::BadCertificate | Reject::BadShare,
            ) => Verdict::Ignore,
            Some(
                Reject::WrongDomain | Reject::Malformed | Reject::BadAnchor | Reject::BadPayload,
            ) => Verdict::Reject,
        }
    }
}

#[derive(Debug)]
pub enum Command {
    /// Publish on `domain`'s topic.
    Broadcast {
        domain: DomainId,
        gossip: Vec<u8>,
    },
    /// Point-to-point to `to`: a protocol message, already encoded. `bounded`: dropped if
    /// what is on its way to `to` is at its bound (`backlog.rs`); false only for probes that
    /// must go out exactly as given.
    Send {
        domain: DomainId,
        to: PeerId,
        msg: Vec<u8>,
        bounded: bool,
    },
    /// Point-to-point to every other member of `domain`: what the replica broadcasts but only
    /// direct requests may carry (block sync requests, see [`NetHandle::broadcast`]).
    SendToMembers {
        domain: DomainId,
        msg: Vec<u8>,
    },
    /// The node's verdict on a gossip message: accepted messages are forwarded, others are
    /// not, and rejected ones count against their propagator in gossipsub.
    Validate {
        gossip: GossipRef,
        verdict: Verdict,
    },
    /// `peer` sent a share or certificate that failed its check here: it pays for the check
    /// (`Limits::charge_failed_check`).
    ChargeFailedCheck(PeerId),
    Status(oneshot::Sender<NetStatus>),
    /// Close connections and stop.
    Shutdown,
}

/// Cloneable handle to the network task. Sending never blocks: commands queue unbounded so
/// the main loop never waits on the network while the network waits on it.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::UnboundedSender<Command>,
    /// Counts what the node sends (`lcbft_net_messages_total`).
    metrics: Metrics,
}

impl NetHandle {
    /// A handle to no network: commands are dropped and status is empty (tests, offline
    /// tools).
    pub fn detached() -> NetHandle {
        let (tx, _) = mpsc::unbounded_channel();
        NetHandle {
            tx,
            metrics: Metrics::new(),
        }
    }

    pub fn broadcast(&self, domain: DomainId, gossip: &wire::Gossip) {
        // A sync request answered by every member that reads it would let one small message
        // cost the domain a megabyte per member, with no sender to charge for relayed copies:
        // members answer sync requests only point-to-point, where each requester has a budget.
        // A rejoining replica's safety query likewise (and gossipsub would drop its repeats,
        // byte for byte the same, as duplicates).
        if let wire::Gossip::Consensus(msg) = gossip
            && matches!(**msg, Message::BlockRequest { .. } | Message::SafetyQuery)
        {
            let bytes = lcbft_protocol::codec::encode(&**msg);
            self.metrics.on_message_sent(domain, msg, bytes.len());
            self.command(Command::SendToMembers { domain, msg: bytes });
            return;
        }
        let bytes = gossip.encode();
        self.metrics.on_gossip(domain, true, gossip, bytes.len());
        self.command(Command::Broadcast {
            domain,
            gossip: bytes,
        });
    }

    /// Publish bytes exactly as given (tools and tests that probe peers' validation).
    pub fn broadcast_raw(&self, domain: DomainId, bytes: Vec<u8>) {
        self.command(Command::Broadcast {
            domain,
            gossip: bytes,
        });
    }

    pub fn send(&self, domain: DomainId, to: PeerId, msg: Message) {
        let bytes = lcbft_protocol::codec::encode(&msg);
        self.metrics.on_message_sent(domain, &msg, bytes.len());
        self.command(Command::Send {
            domain,
            to,
            msg: bytes,
            bounded: true,
        });
    }

    /// Send a `Message::BlockResponse` already encoded (`Message::encode_block_response`),
    /// counted as `send` counts one.
    pub fn send_block_response(&self, domain: DomainId, to: PeerId, msg: Vec<u8>) {
        self.metrics
            .on_message(domain, true, "block_response", msg.len());
        self.command(Command::Send {
            domain,
            to,
            msg,
            bounded: true,
        });
    }

    /// Send bytes as the message of a point-to-point request, exactly as given and whatever
    /// is on its way to the peer already (tools and tests that probe peers' validation).
    pub fn send_raw(&self, domain: DomainId, to: PeerId, msg: Vec<u8>) {
        self.command(Command::Send {
            domain,
            to,
            msg,
            bounded: false,
        });
    }

    pub fn validate(&self, gossip: GossipRef, accept: bool) {
        let verdict = if accept {
            Verdict::Accept
        } else {
            Verdict::Reject
        };
        self.judge(gossip, verdict);
    }

    pub fn judge(&self, gossip: GossipRef, verdict: Verdict) {
        self.command(Command::Validate { gossip, verdict });
    }

    pub fn charge_failed_check(&self, peer: PeerId) {
        self.command(Command::ChargeFailedCheck(peer));
    }

    pub async fn status(&self) -> NetStatus {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Status(tx));
        rx.await.unwrap_or_default()
    }

    pub fn shutdown(&self) {
        self.command(Command::Shutdown);
    }

    fn command(&self, c: Command) {
        // The task only stops at shutdown; commands after that have nowhere to go.
        let _ = self.tx.send(c);
    }
}
