//! The network task: owns the swarm, validates what arrives, keeps domain members connected.
//!
//! libp2p alone notices a cut link only after 30 s or more and never redials (STYLE.md), so
//! every `redial_interval` this task disconnects members silent for `liveness_timeout` (pings
//! run three times per window, so a live link is never silent that long) and redials the
//! members it is not connected to.

use super::behaviour::{Behaviour, BehaviourEvent, Params};
use super::wire::{Ack, Direct, Gossip, topic};
use super::{Command, GossipRef, NetConfig, NetError, NetEvent, NetHandle, NetStatus};
use crate::admission::{Admission, Refusal};
use crate::genesis::Genesis;
use crate::metrics::Metrics;
use futures::StreamExt;
use lcbft_protocol::anchor::Anchor;
use lcbft_protocol::codec::CodecError;
use lcbft_protocol::types::{DomainId, Tx};
use libp2p::gossipsub::{self, MessageAcceptance, PublishError, TopicHash};
use libp2p::metrics::{Metrics as Libp2pMetrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, Message as RrMessage};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, kad, mdns, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Events buffered towards the main loop before the network task waits for it.
const EVENT_QUEUE: usize = 4096;

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
    let params = Params {
        liveness_timeout: cfg.liveness_timeout,
        mdns: cfg.mdns,
        unreadable: metrics.net_rejected_counter("direct", "unreadable"),
    };
    let idle = cfg.idle_connection_timeout;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| {
            Behaviour::new(key, &params, registry)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| NetError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    let lib_metrics = Libp2pMetrics::new(registry);

    for addr in &cfg.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let mut topics = HashMap::new();
    for &d in &cfg.domains {
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
    let local = *swarm.local_peer_id();
    // The members we keep connections to: everyone in our domains but us.
    let watched: BTreeSet<PeerId> = cfg
        .domains
        .iter()
        .filter_map(|d| cfg.genesis.domain(*d))
        .flat_map(|d| d.members.iter().map(|m| m.peer_id))
        .filter(|p| *p != local)
        .collect();
    let mut addresses: HashMap<PeerId, BTreeSet<Multiaddr>> = HashMap::new();
    for addr in &cfg.peers {
        let mut base = addr.clone();
        if let Some(Protocol::P2p(peer)) = base.pop() {
            swarm.behaviour_mut().kad.add_address(&peer, base.clone());
            swarm.add_peer_address(peer, base.clone());
            addresses.entry(peer).or_default().insert(base);
        }
    }
    // A node listening only on loopback is in a one-host testnet, where loopback addresses
    // learned from peers are right; anywhere else they would point back at ourselves.
    let loopback_only = cfg.listen.iter().all(is_loopback);
    let network_peers = cfg.genesis.all_peers();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let handle = NetHandle {
        tx: cmd_tx,
        metrics: metrics.clone(),
    };
    let net = Network {
        swarm,
        genesis: cfg.genesis,
        topics,
        watched,
        addresses,
        last_seen: HashMap::new(),
        events: ev_tx,
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
    };
    let task = tokio::spawn(net.run(cmd_rx));
    Ok((handle, ev_rx, task))
}

struct Network {
    swarm: Swarm<Behaviour>,
    genesis: Arc<Genesis>,
    topics: HashMap<TopicHash, DomainId>,
    watched: BTreeSet<PeerId>,
    addresses: HashMap<PeerId, BTreeSet<Multiaddr>>,
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
}

/// How often to look up a member whose address we do not know.
const LOOKUP_INTERVAL: Duration = Duration::from_secs(5);

impl Network {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(self.redial);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev).await,
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
                    // Nobody listens yet: the message is lost like any other; the protocol's
                    // timeouts and block sync recover.
                    Err(PublishError::NoPeersSubscribedToTopic) => {
                        debug!(%domain, "publish: no peers subscribed yet")
                    }
                    Err(e) => warn!(%domain, "publish failed: {e}"),
                }
            }
            Command::Send { domain, to, msg } => {
                self.swarm
                    .behaviour_mut()
                    .direct
                    .send_request(&to, Direct::raw(domain, msg));
            }
            Command::Validate { gossip, accept } => {
                let acceptance = if accept {
                    MessageAcceptance::Accept
                } else {
                    self.metrics.on_net_rejected("gossip", "replica");
                    debug!(source = %gossip.source, "gossip rejected by the replica");
                    MessageAcceptance::Reject
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&gossip.id, &gossip.source, acceptance);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
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

    /// Liveness check and redial (see the module doc).
    fn maintain(&mut self) {
        let now = Instant::now();
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
            } else if let Some(addrs) = self.addresses.get(&peer).filter(|a| !a.is_empty()) {
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs.iter().cloned().collect())
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

    fn touch(&mut self, peer: PeerId) {
        if self.watched.contains(&peer) {
            self.last_seen.insert(peer, Instant::now());
        }
    }

    /// Remember an address of a network member (for redial, request-response and Kademlia).
    fn learn(&mut self, peer: PeerId, addr: Multiaddr) {
        if !self.network_peers.contains(&peer)
            || peer == *self.swarm.local_peer_id()
            || (is_loopback(&addr) && !self.loopback_only)
        {
            return;
        }
        if self.addresses.entry(peer).or_default().insert(addr.clone()) {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            self.swarm.add_peer_address(peer, addr);
        }
    }

    async fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.lib_metrics.record(&ev);
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if !self.announced_listen {
                    self.announced_listen = true;
                    self.emit(NetEvent::Listening(address)).await;
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                debug!(peer = %peer_id, "connected");
                self.touch(peer_id);
                if !self.bootstrapped {
                    self.bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
                }
                self.metrics
                    .peers
                    .set(self.swarm.connected_peers().count() as i64);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    debug!(peer = %peer_id, "disconnected");
                }
                self.metrics
                    .peers
                    .set(self.swarm.connected_peers().count() as i64);
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour(b).await,
            _ => {}
        }
    }

    async fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(e) => {
                self.lib_metrics.record(&e);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = e
                {
                    self.touch(propagation_source);
                    let verdict = match self.validate_gossip(&message) {
                        // A consensus message is judged by the replica (signatures, shares,
                        // leader): the main loop reports its verdict with `Command::Validate`.
                        Ok(NetEvent::Consensus {
                            domain, from, msg, ..
                        }) => {
                            let gossip = Some(GossipRef {
                                id: message_id,
                                source: propagation_source,
                            });
                            return self
                                .emit(NetEvent::Consensus {
                                    domain,
                                    from,
                                    msg,
                                    gossip,
                                })
                                .await;
                        }
                        v => v,
                    };
                    let acceptance = match &verdict {
                        Ok(_) => MessageAcceptance::Accept,
                        Err(reason) => {
                            self.metrics.on_net_rejected("gossip", reason);
                            debug!(source = ?message.source, reason, "gossip rejected");
                            MessageAcceptance::Reject
                        }
                    };
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                    if let Ok(ev) = verdict {
                        self.emit(ev).await;
                    }
                }
            }
            BehaviourEvent::Direct(e) => self.on_direct(e).await,
            BehaviourEvent::Identify(e) => {
                self.lib_metrics.record(&*e);
                if let identify::Event::Received { peer_id, info, .. } = *e {
                    self.touch(peer_id);
                    // identify reports 127.0.0.1 for a node listening on 0.0.0.0: `learn`
                    // drops loopback addresses unless we are on a one-host testnet.
                    for addr in info.listen_addrs {
                        self.learn(peer_id, addr);
                    }
                }
            }
            BehaviourEvent::Ping(e) => {
                self.lib_metrics.record(&e);
                if e.result.is_ok() {
                    self.touch(e.peer);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.learn(peer, addr);
                }
                // mDNS never dials; the next maintenance tick does.
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Kad(e) => {
                self.lib_metrics.record(&e);
                match e {
                    kad::Event::RoutingUpdated {
                        peer, addresses, ..
                    } => {
                        for addr in addresses.iter().cloned().collect::<Vec<_>>() {
                            self.learn(peer, addr);
                        }
                    }
                    kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                        ..
                    } => {
                        for info in ok.peers {
                            for addr in info.addrs {
                                self.learn(info.peer_id, addr);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn validate_gossip(&self, m: &gossipsub::Message) -> Result<NetEvent, &'static str> {
        let domain = *self.topics.get(&m.topic).ok_or("unknown_topic")?;
        let members = self.genesis.domain(domain).ok_or("unknown_topic")?;
        let author = m.source.ok_or("anonymous")?;
        let from = members.index_of(&author).ok_or("not_member")?;
        let gossip = Gossip::decode(&m.data).map_err(codec_reason)?;
        self.metrics.on_gossip(domain, false, &gossip, m.data.len());
        match gossip {
            Gossip::Consensus(msg) => Ok(NetEvent::Consensus {
                domain,
                from,
                msg,
                gossip: None,
            }),
            Gossip::Payload(txs) => {
                // Traces of this domain passing the admission rule, or in the global domain
                // anchors (the replica judges those); a member relaying anything else is
                // refused as a whole, so gossipsub holds it against that member.
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
                    return Ok(NetEvent::Payload { domain, from, txs });
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
                Ok(NetEvent::Payload { domain, from, txs })
            }
            // Checked against the genesis key sets by the main loop.
            Gossip::Anchored(proof) => Ok(NetEvent::Anchored {
                domain,
                from,
                proof,
            }),
        }
    }

    async fn on_direct(&mut self, e: request_response::Event<Direct, Ack>) {
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
                    Ok(ev) => self.emit(ev).await,
                    Err(reason) => {
                        self.metrics.on_net_rejected("direct", reason);
                        debug!(%peer, reason, "direct message rejected");
                    }
                }
            }
            request_response::Event::Message {
                peer,
                message: RrMessage::Response { .. },
                ..
            } => self.touch(peer),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                debug!(%peer, "send failed: {error}");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "receive failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn validate_direct(&self, peer: &PeerId, req: &Direct) -> Result<NetEvent, &'static str> {
        if !self.topics.values().any(|d| *d == req.domain) {
            return Err("unknown_domain");
        }
        let members = self.genesis.domain(req.domain).ok_or("unknown_domain")?;
        let from = members.index_of(peer).ok_or("not_member")?;
        let msg = req.message().map_err(codec_reason)?;
        self.metrics
            .on_message_received(req.domain, &msg, req.msg.len());
        Ok(NetEvent::Consensus {
            domain: req.domain,
            from,
            msg: Box::new(msg),
            gossip: None,
        })
    }

    async fn emit(&mut self, ev: NetEvent) {
        // The main loop only stops after the network task does; a closed channel means shutdown.
        let _ = self.events.send(ev).await;
    }
}

fn codec_reason(e: CodecError) -> &'static str {
    match e {
        CodecError::TooLarge { .. } => "oversized",
        CodecError::Malformed(_) | CodecError::Trailing(_) => "malformed",
    }
}

fn is_loopback(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
