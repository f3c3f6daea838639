//! The network task: owns the swarm, validates what arrives, keeps domain members connected.
//!
//! libp2p alone notices a cut link only after 30 s or more and never redials (STYLE.md), so
//! every `redial_interval` this task disconnects members silent for `liveness_timeout` (pings
//! run three times per window, so a live link is never silent that long) and redials the
//! members it is not connected to; a member whose dials keep failing is tried less often
//! (doubling up to [`MAX_DIAL_BACKOFF`]).
//!
//! Nothing a peer does may stall this task: it never awaits the main loop. When the main
//! loop's queue is full, what a peer sent is dropped and counted
//! (`lcbft_net_dropped_events_total{kind}`); our own commands queue unbounded and are never
//! dropped.

use super::addresses::{Added, AddressBook, Source};
use super::backlog::Backlog;
use super::behaviour::{Behaviour, BehaviourEvent, Params};
use super::limits::{self, Limits, Work};
use super::scoring;
use super::wire::{Ack, Direct, Gossip, IDENTIFY_PROTOCOL, topic};
use super::{Command, GossipRef, NetConfig, NetError, NetEvent, NetHandle, NetStatus, Verdict};
use crate::admission::{Admission, Refusal};
use crate::genesis::{Genesis, Role};
use crate::metrics::Metrics;
use futures::StreamExt;
use lcbft_protocol::anchor::Anchor;
use lcbft_protocol::codec::CodecError;
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{DomainId, ReplicaIndex, Tx};
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError, TopicHash};
use libp2p::metrics::{Metrics as Libp2pMetrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, Message as RrMessage};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionDenied, DialError, ListenError, Swarm, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, allow_block_list, connection_limits, identify, kad, mdns, noise, ping, tcp,
    yamux,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Events buffered towards the main loop; beyond it what peers send is dropped (counted).
const EVENT_QUEUE: usize = 4096;
/// Longest wait between dials of a member whose dials fail.
const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(5);

/// Build the swarm, listen, subscribe, and start the task.
pub fn spawn(
    cfg: NetConfig,
    registry: &mut Registry,
    metrics: Metrics,
) -> Result<
    (
        NetHandle,
        mpsc::Receiver<NetEvent>,
        tokio::task::JoinHandle<()>,
    ),
    NetError,
> {
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let net = Network::new(cfg, registry, metrics.clone(), ev_tx)?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let handle = NetHandle {
        tx: cmd_tx,
        metrics,
    };
    let task = tokio::spawn(net.run(cmd_rx));
    Ok((handle, ev_rx, task))
}

fn behaviour_params(
    cfg: &NetConfig,
    network_peers: &BTreeSet<PeerId>,
    metrics: &Metrics,
) -> Params {
    let mut admitted = network_peers.clone();
    admitted.extend(cfg.observers.iter().copied());
    Params {
        admitted,
        topics: cfg.domains.iter().map(|d| topic(*d).hash()).collect(),
        liveness_timeout: cfg.liveness_timeout,
        mdns: cfg.mdns,
        unreadable: metrics.net_rejected_counter("direct", "unreadable"),
    }
}

fn build_swarm(
    cfg: &NetConfig,
    params: &Params,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let idle = cfg.idle_connection_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| {
            Behaviour::new(key, params, registry)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| NetError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

fn listen(swarm: &mut Swarm<Behaviour>, addrs: &[Multiaddr]) -> Result<(), NetError> {
    for addr in addrs {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Subscribe to each domain's topic; returns which domain each topic is.
fn subscribe(
    swarm: &mut Swarm<Behaviour>,
    domains: &[DomainId],
) -> Result<HashMap<TopicHash, DomainId>, NetError> {
    let mut topics = HashMap::new();
    for &d in domains {
        let t = topic(d);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&t)
            .map_err(|e| NetError::Subscribe {
                topic: t.to_string(),
                reason: e.to_string(),
            })?;
        topics.insert(t.hash(), d);
    }
    Ok(topics)
}

/// The members we keep connections to: everyone in our domains but us.
fn watched_members(cfg: &NetConfig, local: PeerId) -> BTreeSet<PeerId> {
    cfg.domains
        .iter()
        .filter_map(|d| cfg.genesis.domain(*d))
        .flat_map(|d| d.members.iter().map(|m| m.peer_id))
        .filter(|p| *p != local)
        .collect()
}

/// Hand the configured peer addresses to Kademlia and the swarm, and remember them.
fn configured_addresses(swarm: &mut Swarm<Behaviour>, peers: &[Multiaddr]) -> AddressBook {
    let mut addresses = AddressBook::default();
    for addr in peers {
        let mut base = addr.clone();
        if let Some(Protocol::P2p(peer)) = base.pop() {
            swarm.behaviour_mut().kad.add_address(&peer, base.clone());
            swarm.add_peer_address(peer, base.clone());
            addresses.add(peer, base, Source::Configured);
        }
    }
    addresses
}

struct Network {
    swarm: Swarm<Behaviour>,
    genesis: Arc<Genesis>,
    topics: HashMap<TopicHash, DomainId>,
    watched: BTreeSet<PeerId>,
    addresses: AddressBook,
    last_seen: HashMap<PeerId, Instant>,
    events: mpsc::Sender<NetEvent>,
    lib_metrics: Libp2pMetrics,
    metrics: Metrics,
    liveness: Duration,
    redial: Duration,
    announced_listen: bool,
    /// Everyone named in the genesis: the only peers whose addresses we learn.
    network_peers: BTreeSet<PeerId>,
    loopback_only: bool,
    /// Last Kademlia lookup per member with no known address.
    lookups: HashMap<PeerId, Instant>,
    bootstrapped: bool,
    admission: Option<Admission>,
    /// Per-peer budgets and penalty points.
    limits: Limits,
    /// Bytes on their way to each peer, bounded per peer.
    backlog: Backlog,
    dropped_sends: Counter,
    /// Members whose last dials failed: how many in a row, and when to try next.
    dialing: HashMap<PeerId, (u32, Instant)>,
    refused: Refused,
    /// Peers that announced another wire version, warned about once each. Only members and
    /// observers get a connection, so the genesis bounds it.
    other_versions: BTreeSet<PeerId>,
    /// The last warning about a failed publish, and the failures not warned about since.
    publish_warned: Option<Instant>,
    publish_unwarned: u64,
}

/// At most one warning about failed publishes per this long; the metric counts every one.
const PUBLISH_WARN_EVERY: Duration = Duration::from_secs(10);

/// Counters of refused connections, by reason.
struct Refused {
    not_member: Counter,
    limit: Counter,
    /// A member cut off for its penalties (`Limits::cut_offs`).
    cut_off: Counter,
    /// Refused before the handshake: its address failed too many (`gate.rs`).
    handshake_budget: Counter,
}

impl Refused {
    /// `cut_off`: the peer is a member we cut off, which the allow list refuses like a
    /// stranger.
    fn count(&self, cause: &ConnectionDenied, cut_off: bool) {
        if cause
            .downcast_ref::<allow_block_list::NotAllowed>()
            .is_some()
        {
            if cut_off {
                self.cut_off.inc();
            } else {
                self.not_member.inc();
            }
        } else if cause
            .downcast_ref::<connection_limits::Exceeded>()
            .is_some()
        {
            self.limit.inc();
        } else if cause.downcast_ref::<super::gate::OverBudget>().is_some() {
            self.handshake_budget.inc();
        }
    }
}

/// How often to look up a member whose address we do not know.
const LOOKUP_INTERVAL: Duration = Duration::from_secs(5);

impl Network {
    /// Build the swarm, listen and subscribe; the task sends its events to `events`.
    fn new(
        cfg: NetConfig,
        registry: &mut Registry,
        metrics: Metrics,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<Self, NetError> {
        let network_peers = cfg.genesis.all_peers();
        let params = behaviour_params(&cfg, &network_peers, &metrics);
        let mut swarm = build_swarm(&cfg, &params, registry)?;
        let lib_metrics = Libp2pMetrics::new(registry);
        listen(&mut swarm, &cfg.listen)?;
        let topics = subscribe(&mut swarm, &cfg.domains)?;
        let watched = watched_members(&cfg, *swarm.local_peer_id());
        let addresses = configured_addresses(&mut swarm, &cfg.peers);
        // A node listening only on loopback is in a one-host testnet, where loopback addresses
        // learned from peers are right; anywhere else they would point back at ourselves.
        let loopback_only = cfg.listen.iter().all(is_loopback);
        let refused = Refused {
            not_member: metrics.connection_refused_counter("not_member"),
            limit: metrics.connection_refused_counter("limit"),
            cut_off: metrics.connection_refused_counter("cut_off"),
            handshake_budget: metrics.connection_refused_counter("handshake_budget"),
        };
        let dropped_sends = metrics.dropped_send_counter("peer_backlog");
        Ok(Network {
            swarm,
            genesis: cfg.genesis,
            topics,
            watched,
            addresses,
            last_seen: HashMap::new(),
            events,
            lib_metrics,
            metrics,
            liveness: cfg.liveness_timeout,
            redial: cfg.redial_interval,
            announced_listen: false,
            network_peers,
            loopback_only,
            lookups: HashMap::new(),
            bootstrapped: false,
            admission: cfg.admission,
            limits: Limits::default(),
            backlog: Backlog::default(),
            dropped_sends,
            dialing: HashMap::new(),
            refused,
            other_versions: BTreeSet::new(),
            publish_warned: None,
            publish_unwarned: 0,
        })
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(self.redial);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(c) => self.on_command(c),
                },
                _ = tick.tick() => self.maintain(),
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        info!("network stopped");
    }

    /// A gossip message was not published: whatever it carried is lost unless sent again.
    /// Consensus recovers by its timeouts and block sync; traces acknowledged here are offered
    /// again by the main loop until they commit.
    fn publish_failed(&mut self, domain: DomainId, e: PublishError) {
        let reason = publish_reason(&e);
        self.metrics.on_publish_failed(domain, reason);
        // The same bytes were published lately: they went out then.
        if matches!(e, PublishError::Duplicate) {
            debug!(%domain, "publish: sent lately already");
            return;
        }
        let now = Instant::now();
        if self
            .publish_warned
            .is_some_and(|at| now < at + PUBLISH_WARN_EVERY)
        {
            self.publish_unwarned += 1;
            return;
        }
        warn!(
            %domain,
            reason,
            more_since_last_warning = self.publish_unwarned,
            "gossip publish failed: {e} (counted in lcbft_net_publish_failures_total)"
        );
        self.publish_warned = Some(now);
        self.publish_unwarned = 0;
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Broadcast { domain, gossip } => {
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic(domain), gossip)
                {
                    Ok(_) => {}
                    Err(e) => self.publish_failed(domain, e),
                }
            }
            Command::Send {
                domain,
                to,
                msg,
                bounded,
            } => self.send_direct(domain, to, msg, bounded),
            Command::SendToMembers { domain, msg } => {
                let local = *self.swarm.local_peer_id();
                let members: Vec<PeerId> = self
                    .genesis
                    .domain(domain)
                    .map(|d| d.members.iter().map(|m| m.peer_id).collect())
                    .unwrap_or_default();
                for to in members.into_iter().filter(|p| *p != local) {
                    self.send_direct(domain, to, msg.clone(), true);
                }
            }
            Command::Validate { gossip, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                    Verdict::Reject => MessageAcceptance::Reject,
                };
                if verdict != Verdict::Accept {
                    self.metrics.on_net_rejected("gossip", "replica");
                    debug!(source = %gossip.source, ?verdict, "gossip refused by the node");
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&gossip.id, &gossip.source, acceptance);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::ChargeFailedCheck(peer) => {
                self.limits.charge_failed_check(peer, Instant::now());
            }
            Command::Shutdown => {}
        }
    }

    fn status(&self) -> NetStatus {
        NetStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen: self.swarm.listeners().map(|a| a.to_string()).collect(),
            connected: self
                .swarm
                .connected_peers()
                .map(|p| p.to_string())
                .collect(),
        }
    }

    /// Liveness check, redial (see the module doc), and penalties aged and shown to gossipsub.
    fn maintain(&mut self) {
        let now = Instant::now();
        self.show_penalties(now);
        self.backlog.expire(now);
        for peer in self.watched.clone() {
            if self.swarm.is_connected(&peer) {
                let silent = self
                    .last_seen
                    .get(&peer)
                    .is_none_or(|t| now.duration_since(*t) > self.liveness);
                if silent {
                    warn!(%peer, "member silent for {:?}: disconnecting", self.liveness);
                    self.last_seen.remove(&peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            } else if self.limits.is_cut_off(&peer)
                || self.dialing.get(&peer).is_some_and(|(_, next)| *next > now)
            {
                // Cut off, or backing off after failed dials.
            } else if let Some(addrs) = Some(self.addresses.get(&peer)).filter(|a| !a.is_empty()) {
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(%peer, "redial: {e}");
                }
            } else if self
                .lookups
                .get(&peer)
                .is_none_or(|t| now.duration_since(*t) >= LOOKUP_INTERVAL)
            {
                self.lookups.insert(peer, now);
                self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            }
        }
    }

    /// Age penalty points and hand them to gossipsub as application scores; publish how many
    /// peers are penalised and graylisted.
    fn show_penalties(&mut self, now: Instant) {
        for (peer, score) in self.limits.decay(now) {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&peer, score);
        }
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let graylisted = self
            .swarm
            .connected_peers()
            .filter(|p| {
                gossipsub
                    .peer_score(p)
                    .is_some_and(|s| s < scoring::GRAYLIST_THRESHOLD)
            })
            .count();
        self.metrics.peers_graylisted.set(graylisted as i64);
        self.metrics
            .peers_penalised
            .set(self.limits.penalised() as i64);
        let (cut, back) = self.limits.cut_offs();
        for peer in cut {
            warn!(%peer, "cutting off a peer whose requests keep failing or exceeding its budget, until its penalty decays");
            self.swarm.behaviour_mut().admitted.disallow_peer(peer);
        }
        for peer in back {
            info!(%peer, "letting a cut-off peer back");
            self.swarm.behaviour_mut().admitted.allow_peer(peer);
        }
        self.metrics
            .peers_cut_off
            .set(self.limits.cut_off_count() as i64);
    }

    /// A dial of `peer` failed: wait longer before the next.
    fn dial_failed(&mut self, peer: PeerId) {
        let now = Instant::now();
        let (failures, next) = self.dialing.entry(peer).or_insert((0, now));
        *failures = failures.saturating_add(1);
        let backoff = self
            .redial
            .saturating_mul(1 << (*failures).min(16))
            .min(MAX_DIAL_BACKOFF);
        *next = now + backoff;
    }

    fn touch(&mut self, peer: PeerId) {
        if self.watched.contains(&peer) {
            self.last_seen.insert(peer, Instant::now());
        }
    }

    /// Remember an address of a network member (for redial, request-response and Kademlia).
    fn learn(&mut self, peer: PeerId, addr: Multiaddr, source: Source) {
        if !self.network_peers.contains(&peer)
            || peer == *self.swarm.local_peer_id()
            || (is_loopback(&addr) && !self.loopback_only)
        {
            return;
        }
        match self.addresses.add(peer, addr.clone(), source) {
            Added::Known => return,
            Added::New => {}
            Added::Evicted(old) => {
                debug!(%peer, %old, "address book full for this peer: forgot the oldest");
                self.metrics.addresses_evicted.inc();
            }
        }
        self.metrics
            .addresses_known
            .set(self.addresses.len() as i64);
        self.swarm
            .behaviour_mut()
            .kad
            .add_address(&peer, addr.clone());
        self.swarm.add_peer_address(peer, addr);
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.lib_metrics.record(&ev);
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if !self.announced_listen {
                    self.announced_listen = true;
                    self.emit(NetEvent::Listening(address));
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                debug!(peer = %peer_id, "connected");
                self.dialing.remove(&peer_id);
                self.touch(peer_id);
                if !self.bootstrapped {
                    self.bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
                }
                self.metrics.set_peers(self.swarm.connected_peers().count());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    debug!(peer = %peer_id, "disconnected");
                }
                self.metrics.set_peers(self.swarm.connected_peers().count());
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                send_back_addr,
                peer_id,
                ..
            } => {
                let cut_off = peer_id.is_some_and(|p| self.limits.is_cut_off(&p));
                self.refused.count(&cause, cut_off);
                debug!(from = %send_back_addr, "inbound connection refused: {cause}");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let DialError::Denied { cause } = &error {
                    let cut_off = peer_id.is_some_and(|p| self.limits.is_cut_off(&p));
                    self.refused.count(cause, cut_off);
                }
                // Only our own redials of members back off; a dial already under way or a
                // peer already connected is no failure.
                if let Some(peer) = peer_id.filter(|p| self.watched.contains(p))
                    && !matches!(
                        error,
                        DialError::DialPeerConditionFalse(_) | DialError::Aborted
                    )
                    && !self.swarm.is_connected(&peer)
                {
                    self.dial_failed(peer);
                }
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour(b),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(e) => self.on_gossipsub(e),
            BehaviourEvent::Direct(e) => self.on_direct(e),
            BehaviourEvent::Identify(e) => self.on_identify(*e),
            BehaviourEvent::Ping(e) => self.on_ping(e),
            BehaviourEvent::Mdns(e) => self.on_mdns(e),
            BehaviourEvent::Kad(e) => self.on_kad(e),
        }
    }

    fn on_gossipsub(&mut self, e: gossipsub::Event) {
        self.lib_metrics.record(&e);
        if let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        {
            self.on_gossip_message(propagation_source, message_id, &message);
        }
    }

    fn on_gossip_message(
        &mut self,
        propagation_source: PeerId,
        message_id: MessageId,
        message: &gossipsub::Message,
    ) {
        self.touch(propagation_source);
        let gossip = GossipRef {
            id: message_id.clone(),
            source: propagation_source,
        };
        let verdict = match self.validate_gossip(message) {
            // A consensus message is judged by the replica (signatures, shares, leader), an
            // anchor notice by the main loop (its proof): it reports its verdict with
            // `Command::Validate`, and only then is it forwarded.
            Ok(mut ev) if awaits_verdict(&ev) => {
                attach_gossip(&mut ev, gossip);
                return self.emit(ev);
            }
            v => v,
        };
        let acceptance = match &verdict {
            Ok(_) => MessageAcceptance::Accept,
            Err(reason) => {
                self.metrics.on_net_rejected("gossip", reason);
                debug!(source = ?message.source, reason, "gossip rejected");
                // A budget is ours alone: an honest relay may have passed the message on
                // within it, and gossipsub would hold a rejection against the relay.
                if over_budget(reason) {
                    MessageAcceptance::Ignore
                } else {
                    MessageAcceptance::Reject
                }
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if let Ok(ev) = verdict {
            self.emit(ev);
        }
    }

    fn on_identify(&mut self, e: identify::Event) {
        self.lib_metrics.record(&e);
        let identify::Event::Received { peer_id, info, .. } = e else {
            return;
        };
        self.touch(peer_id);
        if info.protocol_version != IDENTIFY_PROTOCOL {
            self.metrics.on_net_rejected("identify", "wire_version");
            if self.other_versions.insert(peer_id) {
                warn!(
                    %peer_id,
                    theirs = %info.protocol_version,
                    ours = IDENTIFY_PROTOCOL,
                    agent = %info.agent_version,
                    "peer speaks another wire version: no message passes between us until both run the same release"
                );
            }
        }
        // identify reports 127.0.0.1 for a node listening on 0.0.0.0: `learn` drops loopback
        // addresses unless we are on a one-host testnet.
        for addr in info.listen_addrs {
            self.learn(peer_id, addr, Source::Itself);
        }
    }

    fn on_ping(&mut self, e: ping::Event) {
        self.lib_metrics.record(&e);
        if e.result.is_ok() {
            self.touch(e.peer);
        }
    }

    fn on_mdns(&mut self, e: mdns::Event) {
        match e {
            mdns::Event::Discovered(found) => {
                for (peer, addr) in found {
                    self.learn(peer, addr, Source::Hearsay);
                }
                // mDNS never dials; the next maintenance tick does.
            }
            mdns::Event::Expired(_) => {}
        }
    }

    fn on_kad(&mut self, e: kad::Event) {
        self.lib_metrics.record(&e);
        match e {
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                for addr in addresses.iter().cloned().collect::<Vec<_>>() {
                    self.learn(peer, addr, Source::Hearsay);
                }
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            } => {
                for info in ok.peers {
                    for addr in info.addrs {
                        self.learn(info.peer_id, addr, Source::Hearsay);
                    }
                }
            }
            _ => {}
        }
    }

    fn validate_gossip(&mut self, m: &gossipsub::Message) -> Result<NetEvent, &'static str> {
        let domain = *self.topics.get(&m.topic).ok_or("unknown_topic")?;
        let members = self.genesis.domain(domain).ok_or("unknown_topic")?;
        let author = m.source.ok_or("anonymous")?;
        let from = members.index_of(&author).ok_or("not_member")?;
        let gossip = Gossip::decode(&m.data).map_err(codec_reason)?;
        self.metrics.on_gossip(domain, false, &gossip, m.data.len());
        match gossip {
            // Answered only point-to-point (see `NetHandle::broadcast`).
            Gossip::Consensus(msg)
                if matches!(*msg, Message::BlockRequest { .. } | Message::SafetyQuery) =>
            {
                Err("sync_by_gossip")
            }
            // Charged to its author as a direct request is: a member whose failed checks put
            // its budget in debt has its consensus messages dropped unread on both paths.
            Gossip::Consensus(_) if !self.limits.allow(author, Work::Direct, Instant::now()) => {
                Err("rate_limited")
            }
            Gossip::Consensus(msg) => Ok(NetEvent::Consensus {
                domain,
                from,
                msg,
                gossip: None,
            }),
            Gossip::Payload(txs) => {
                let txs = self.admit_payload(domain, txs)?;
                Ok(NetEvent::Payload { domain, from, txs })
            }
            // Only the proposer announces its block this way; the replica judges the rest
            // once the proposal is whole.
            Gossip::Proposal(compact) => {
                let block = &compact.proposal.block;
                if block.proposer != from || !block.payload.is_empty() {
                    return Err("bad_proposal");
                }
                Ok(NetEvent::Proposal {
                    domain,
                    from,
                    compact,
                    gossip: None,
                })
            }
            Gossip::Anchored(proof) => {
                self.check_notice(domain, from, author)?;
                Ok(NetEvent::Anchored {
                    domain,
                    from,
                    proof,
                    gossip: None,
                })
            }
        }
    }

    /// The gossiped transactions to pass on. Traces of this domain passing the admission rule,
    /// or in the global domain anchors (the replica judges those); a member relaying anything
    /// else is refused as a whole, so gossipsub holds it against that member.
    fn admit_payload(&self, domain: DomainId, txs: Vec<Tx>) -> Result<Vec<Tx>, &'static str> {
        if txs.is_empty() {
            return Err("bad_trace");
        }
        let anchors = |tx: &Tx| domain == DomainId::Global && Anchor::is_anchor(tx);
        if txs
            .iter()
            .filter(|tx| anchors(tx))
            .any(|tx| !matches!(Anchor::from_tx(tx), Some(Ok(_))))
        {
            return Err("bad_anchor");
        }
        let Some(admission) = &self.admission else {
            return Ok(txs);
        };
        let (anchored, traces): (Vec<Tx>, Vec<Tx>) = txs.into_iter().partition(anchors);
        let verdicts = admission.check(domain, &traces);
        // Counted by reason in `lcbft_traces_refused_total`.
        if verdicts
            .iter()
            .any(|v| v.is_err_and(|r| r != Refusal::Committed))
        {
            return Err("bad_trace");
        }
        // A trace committed while this message travelled is no fault of its author.
        let mut txs = anchored;
        txs.extend(
            traces
                .into_iter()
                .zip(verdicts)
                .filter_map(|(tx, v)| v.is_ok().then_some(tx)),
        );
        Ok(txs)
    }

    /// Only a local domain's edge anchors it; its notices cost pairings to check (the main
    /// loop does, against the genesis key sets), so each edge has a budget.
    fn check_notice(
        &mut self,
        domain: DomainId,
        from: ReplicaIndex,
        author: PeerId,
    ) -> Result<(), &'static str> {
        let edge = self
            .genesis
            .domain(domain)
            .and_then(|d| d.members.get(usize::from(from)))
            .is_some_and(|m| m.role == Role::Edge);
        if domain == DomainId::Global || !edge {
            return Err("not_edge");
        }
        if !self.limits.allow(author, Work::Notice, Instant::now()) {
            return Err("notice_rate_limited");
        }
        Ok(())
    }

    fn on_direct(&mut self, e: request_response::Event<Direct, Ack>) {
        match e {
            request_response::Event::Message {
                peer,
                message:
                    RrMessage::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.touch(peer);
                let verdict = self.validate_direct(&peer, &request);
                let ok = verdict.is_ok();
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .direct
                    .send_response(channel, Ack(ok));
                match verdict {
                    Ok(ev) => self.emit(ev),
                    Err(reason) => {
                        self.metrics.on_net_rejected("direct", reason);
                        debug!(%peer, reason, "direct message rejected");
                        if !over_budget(reason) {
                            self.limits.penalise(peer, limits::INVALID_POINTS);
                        }
                    }
                }
            }
            request_response::Event::Message {
                peer,
                message: RrMessage::Response { request_id, .. },
                ..
            } => {
                self.backlog.done(request_id);
                self.touch(peer);
            }
            request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                self.backlog.done(request_id);
                debug!(%peer, "send failed: {error}");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "receive failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Point-to-point to `to`, unless `bounded` and what is on its way to it already is at
    /// the bound.
    fn send_direct(&mut self, domain: DomainId, to: PeerId, msg: Vec<u8>, bounded: bool) {
        let bytes = msg.len();
        if bounded && !self.backlog.admits(&to, bytes) {
            self.dropped_sends.inc();
            debug!(peer = %to, bytes, "peer has not read what we sent it: message dropped");
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request(&to, Direct::raw(domain, msg));
        self.backlog.sent(id, to, bytes, Instant::now());
    }

    fn validate_direct(&mut self, peer: &PeerId, req: &Direct) -> Result<NetEvent, &'static str> {
        let now = Instant::now();
        if !self.limits.allow(*peer, Work::Direct, now) {
            return Err("rate_limited");
        }
        if !self.topics.values().any(|d| *d == req.domain) {
            return Err("unknown_domain");
        }
        let members = self.genesis.domain(req.domain).ok_or("unknown_domain")?;
        let from = members.index_of(peer).ok_or("not_member")?;
        let msg = req.message().map_err(codec_reason)?;
        if matches!(msg, Message::BlockRequest { .. } | Message::SafetyQuery)
            && !self.limits.allow(*peer, Work::Sync, now)
        {
            return Err("sync_rate_limited");
        }
        self.metrics
            .on_message_received(req.domain, &msg, req.msg.len());
        Ok(NetEvent::Consensus {
            domain: req.domain,
            from,
            msg: Box::new(msg),
            gossip: None,
        })
    }

    /// Hand `ev` to the main loop without waiting: a full queue drops it (counted by kind),
    /// and a dropped gossip message is neither forwarded nor held against its sender.
    fn emit(&mut self, ev: NetEvent) {
        let ev = match self.events.try_send(ev) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(ev)) => ev,
            // The main loop only stops after the network task does: shutdown.
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        };
        let (kind, gossip) = match ev {
            NetEvent::Consensus { gossip, .. } => ("consensus", gossip),
            NetEvent::Anchored { gossip, .. } => ("anchored", gossip),
            NetEvent::Proposal { gossip, .. } => ("proposal", gossip),
            NetEvent::Payload { .. } => ("payload", None),
            NetEvent::Listening(_) => ("listening", None),
        };
        self.metrics.on_net_event_dropped(kind);
        debug!(kind, "main loop busy: dropped a message");
        if let Some(g) = gossip {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&g.id, &g.source, MessageAcceptance::Ignore);
        }
    }
}

/// A refusal for a budget (`rate_limited`, `sync_rate_limited`, `notice_rate_limited`): the
/// limiter charged the peer already.
fn over_budget(reason: &str) -> bool {
    reason.ends_with("rate_limited")
}

fn codec_reason(e: CodecError) -> &'static str {
    match e {
        CodecError::TooLarge { .. } => "oversized",
        CodecError::Malformed(_) | CodecError::Trailing(_) => "malformed",
    }
}

/// Whether the main loop judges `ev` (the replica a consensus message or proposal, the main
/// loop an anchor notice's proof) rather than this task alone.
fn awaits_verdict(ev: &NetEvent) -> bool {
    matches!(
        ev,
        NetEvent::Consensus { .. } | NetEvent::Proposal { .. } | NetEvent::Anchored { .. }
    )
}

/// Mark `ev` as come by gossip, so its verdict can be reported to gossipsub later.
fn attach_gossip(ev: &mut NetEvent, gossip: GossipRef) {
    match ev {
        NetEvent::Consensus { gossip: slot, .. }
        | NetEvent::Proposal { gossip: slot, .. }
        | NetEvent::Anchored { gossip: slot, .. } => *slot = Some(gossip),
        NetEvent::Payload { .. } | NetEvent::Listening(_) => {}
    }
}

fn is_loopback(a: &Multiaddr) -> bool {
    super::gate::ip_of(a).is_some_and(|ip| ip.is_loopback())
}

/// A label for a publish failure. libp2p adds a variant under its `partial-messages` feature,
/// which another crate in a build may turn on, so a `match` could not be exhaustive both with
/// and without it: test the known ones, anything else is `other`.
fn publish_reason(e: &PublishError) -> &'static str {
    if matches!(e, PublishError::NoPeersSubscribedToTopic) {
        "no_peers"
    } else if matches!(e, PublishError::Duplicate) {
        "duplicate"
    } else if matches!(e, PublishError::AllQueuesFull(_)) {
        "queues_full"
    } else if matches!(e, PublishError::MessageTooLarge) {
        "too_large"
    } else if matches!(e, PublishError::SigningError(_)) {
        "signing"
    } else if matches!(e, PublishError::TransformFailed(_)) {
        "transform"
    } else {
        "other"
    }
}
