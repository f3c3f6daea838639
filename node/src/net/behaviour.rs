//! The libp2p behaviour: a price on failed handshakes, admission (genesis members and
//! configured observers only) and connection limits first, then gossipsub (one topic per
//! domain, validation and peer scoring on), request-response for point-to-point messages,
//! identify, ping (the liveness heartbeat), optional mDNS and Kademlia.

use super::codec::DirectCodec;
use super::gate::HandshakeGate;
use super::scoring;
use super::wire::{Ack, DIRECT_PROTOCOL, Direct, IDENTIFY_PROTOCOL, MAX_WIRE_BYTES, message_id};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, allow_block_list, connection_limits, gossipsub, identify, mdns, ping,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

#[derive(NetworkBehaviour)]
#[behaviour(to_swarm = "BehaviourEvent")]
pub struct Behaviour {
    /// An address whose handshakes keep coming to nothing is refused before the next one.
    pub gate: HandshakeGate,
    /// Only genesis members and configured observers get a connection, in either direction:
    /// anyone else is refused right after the noise handshake proves who it is, before any
    /// protocol (gossipsub subscriptions included) runs on the connection.
    pub admitted: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Bounds what handshakes cost us before admission can judge the peer.
    pub limits: connection_limits::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub direct: request_response::Behaviour<DirectCodec>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Finds global members' addresses from a few bootstrap peers.
    pub kad: kad::Behaviour<MemoryStore>,
}

/// Our own Kademlia network, apart from any public DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/lcbft/kad/1");

#[derive(Debug)]
pub enum BehaviourEvent {
    Gossipsub(gossipsub::Event),
    Direct(request_response::Event<Direct, Ack>),
    Identify(Box<identify::Event>),
    Ping(ping::Event),
    Mdns(mdns::Event),
    Kad(kad::Event),
}

/// Admission and limits only refuse connections; they have no events.
impl From<Infallible> for BehaviourEvent {
    fn from(e: Infallible) -> Self {
        match e {}
    }
}

impl From<kad::Event> for BehaviourEvent {
    fn from(e: kad::Event) -> Self {
        BehaviourEvent::Kad(e)
    }
}

impl From<gossipsub::Event> for BehaviourEvent {
    fn from(e: gossipsub::Event) -> Self {
        BehaviourEvent::Gossipsub(e)
    }
}
impl From<request_response::Event<Direct, Ack>> for BehaviourEvent {
    fn from(e: request_response::Event<Direct, Ack>) -> Self {
        BehaviourEvent::Direct(e)
    }
}
impl From<identify::Event> for BehaviourEvent {
    fn from(e: identify::Event) -> Self {
        BehaviourEvent::Identify(Box::new(e))
    }
}
impl From<ping::Event> for BehaviourEvent {
    fn from(e: ping::Event) -> Self {
        BehaviourEvent::Ping(e)
    }
}
impl From<mdns::Event> for BehaviourEvent {
    fn from(e: mdns::Event) -> Self {
        BehaviourEvent::Mdns(e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BehaviourError {
    #[error("gossipsub config: {0}")]
    Gossipsub(String),
    #[error("mdns: {0}")]
    Mdns(#[from] std::io::Error),
}

pub struct Params {
    /// Everyone who may connect: genesis members and configured observers.
    pub admitted: BTreeSet<PeerId>,
    /// The gossipsub topics we score (ours).
    pub topics: Vec<gossipsub::TopicHash>,
    pub liveness_timeout: Duration,
    pub mdns: bool,
    /// Counts point-to-point requests the codec could not read.
    pub unreadable: Counter,
}

impl Behaviour {
    /// gossipsub's own metrics (mesh sizes, per-topic traffic, scores) go into `registry`.
    pub fn new(
        key: &Keypair,
        p: &Params,
        registry: &mut Registry,
    ) -> Result<Behaviour, BehaviourError> {
        // Domains are small and every member dials every other, and an author publishes to
        // every peer directly (flood publish), so the mesh only repairs a direct send that
        // failed. Two mesh peers do that; a full mesh (gossipsub's 6 holds a whole domain)
        // made every member receive each message 2-2.2 times. Messages are signed by their
        // author, so membership is checked on the author, not the relayer.
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .mesh_n(2)
            .mesh_n_low(1)
            .mesh_n_high(4)
            .mesh_outbound_min(1)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(MAX_WIRE_BYTES)
            .message_id_fn(message_id)
            .build()
            .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_cfg,
        )
        .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?
        .with_metrics(
            registry.sub_registry_with_prefix("libp2p_gossipsub"),
            gossipsub::MetricsConfig::default(),
        );
        gossipsub
            .with_peer_score(scoring::params(&p.topics), scoring::thresholds())
            .map_err(BehaviourError::Gossipsub)?;
        let codec = DirectCodec::new(p.unreadable.clone());
        let direct = request_response::Behaviour::with_codec(
            codec,
            [(DIRECT_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(format!("lcbft/{}", env!("CARGO_PKG_VERSION"))),
        );
        // The ping is the liveness heartbeat: three per liveness window.
        let ping = ping::Behaviour::new(
            ping::Config::new()
                .with_interval(p.liveness_timeout / 3)
                .with_timeout(p.liveness_timeout),
        );
        let mdns = if p.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                key.public().to_peer_id(),
            )?)
        } else {
            None
        };
        let me = key.public().to_peer_id();
        let mut kad =
            kad::Behaviour::with_config(me, MemoryStore::new(me), kad::Config::new(KAD_PROTOCOL));
        // Every node serves lookups: there are no light clients in a domain.
        kad.set_mode(Some(kad::Mode::Server));
        let mut admitted = allow_block_list::Behaviour::default();
        for peer in &p.admitted {
            admitted.allow_peer(*peer);
        }
        let limits = connection_limits::Behaviour::new(limits(p.admitted.len()));
        Ok(Behaviour {
            gate: HandshakeGate::default(),
            admitted,
            limits,
            gossipsub,
            direct,
            identify,
            ping,
            mdns: mdns.into(),
            kad,
        })
    }
}

/// Connection limits. Admission decides after the handshake, so what a stranger can cost is
/// bounded here: few handshakes at once, and at most two connections per peer (a simultaneous
/// dial in both directions) and two per admitted peer in total.
fn limits(admitted: usize) -> connection_limits::ConnectionLimits {
    let admitted = u32::try_from(admitted).unwrap_or(u32::MAX);
    connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
        .with_max_established_per_peer(Some(2))
        .with_max_established(Some(admitted.saturating_mul(2).max(2)))
}

/// Inbound handshakes in flight at once.
const MAX_PENDING_INCOMING: u32 = 32;
