//! The node's main loop: one `tokio::select!` over network events, storage completions, API
//! requests and timers, feeding the replicas and carrying out their effects in order.

mod anchors;
mod durable;
mod proposals;
mod sync;
mod transfer;

use super::NodeError;
use super::acks::{Book, Limits};
use super::anchoring::Anchoring;
use super::driver::{Driver, Effect};
use super::storage::{Done, Job, Worker};
use crate::api::{ApiRequest, DomainStatus};
use crate::genesis::Genesis;
use crate::metrics::Metrics;
use crate::net::wire::Gossip;
use crate::net::{GossipRef, NetEvent, NetHandle, Verdict};
use crate::store::Store;
use lcbft_protocol::io::{Event, Input, Reject};
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{DomainId, Hash, ReplicaIndex, Tx};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// Traces submitted here travel to the domain in one gossip message per this many bytes, or
/// per this delay after the first one waiting, whichever comes first. Every message costs its
/// receivers a signature check and a wake-up; at 5 ms an edge spent a fifth more CPU per trace
/// at 2,000/s, for no lower latency (a commit takes several blocks, each tens of ms).
const GOSSIP_BATCH_BYTES: usize = 64 * 1024;
const GOSSIP_BATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(30);

pub struct MainLoop {
    drivers: BTreeMap<DomainId, Driver>,
    genesis: Arc<Genesis>,
    net: NetHandle,
    storage: Worker,
    metrics: Metrics,
    /// Per domain: traces submitted here, not yet gossiped, their bytes and the deadline.
    outbox: BTreeMap<DomainId, (Vec<Tx>, usize, Instant)>,
    /// Last committed (height, hash) per domain.
    head: BTreeMap<DomainId, (u64, Hash)>,
    anchoring: Anchoring,
    store: Store,
    ticks: u64,
    /// Per domain: proposals whose block we asked of the proposer (`proposals`).
    waiting: BTreeMap<DomainId, proposals::WaitingList>,
    /// Items acknowledged here and not yet committed (`durable`).
    acks: Book,
}

/// How often anchors are re-submitted, notices sent and windows pruned.
const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_secs(1);

impl MainLoop {
    pub fn new(
        drivers: BTreeMap<DomainId, Driver>,
        genesis: Arc<Genesis>,
        store: Store,
        net: NetHandle,
        storage: Worker,
        metrics: Metrics,
        anchoring: Anchoring,
    ) -> MainLoop {
        let mut head = BTreeMap::new();
        for &d in drivers.keys() {
            if let Ok(h) = store.committed_height(d)
                && let Ok(Some(b)) = store.block_at(d, h)
            {
                head.insert(d, (h, b.hash()));
            }
        }
        // Our own acknowledged items may hold what our own submissions may hold in the pool.
        let acks = Book::new(drivers.iter().map(|(d, driver)| {
            let (txs, bytes) = driver.replica().pool_share();
            (*d, Limits { txs, bytes })
        }));
        MainLoop {
            acks,
            drivers,
            genesis,
            net,
            storage,
            metrics,
            outbox: BTreeMap::new(),
            head,
            anchoring,
            store,
            ticks: 0,
            waiting: BTreeMap::new(),
        }
    }

    pub async fn run(
        mut self,
        mut net_events: mpsc::Receiver<NetEvent>,
        mut storage_done: mpsc::UnboundedReceiver<Done>,
        mut api: mpsc::Receiver<ApiRequest>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        tokio::pin!(shutdown);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let deadline = self
                .drivers
                .values()
                .filter_map(Driver::next_deadline)
                .min();
            let timer = sleep_until(deadline);
            let gossip_due = sleep_until(self.outbox.values().map(|(_, _, at)| *at).min());
            tokio::select! {
                _ = &mut shutdown => {
                    info!("shutting down: no more votes");
                    break Ok(());
                }
                Some(done) = storage_done.recv() => {
                    if let Err(e) = self.on_storage(done) {
                        break Err(e);
                    }
                }
                Some(ev) = net_events.recv() => self.on_net(ev),
                Some(req) = api.recv() => self.on_api(req),
                _ = housekeeping.tick() => {
                    self.housekeeping();
                    self.reoffer();
                }
                _ = gossip_due => self.flush_outbox(Instant::now()),
                _ = timer => {
                    let now = Instant::now();
                    let domains: Vec<DomainId> = self.drivers.keys().copied().collect();
                    for d in domains {
                        if let Some(driver) = self.drivers.get_mut(&d) {
                            let effects = driver.fire_due(now);
                            self.carry_out(d, effects);
                        }
                    }
                }
            }
        };
        // Every write queued so far becomes durable before we return.
        let storage = self.storage;
        let _ = tokio::task::spawn_blocking(move || storage.flush_and_stop()).await;
        result
    }

    fn feed(&mut self, domain: DomainId, input: Input) {
        let Some(driver) = self.drivers.get_mut(&domain) else {
            return;
        };
        let effects = driver.handle(input, Instant::now());
        self.carry_out(domain, effects);
        self.show_pool(domain);
    }

    fn show_pool(&self, domain: DomainId) {
        if let Some(driver) = self.drivers.get(&domain) {
            let (txs, bytes) = driver.replica().pool_usage();
            self.metrics.set_pool(domain, txs, bytes);
        }
    }

    /// Gossip what waits in the outbox: every domain's, or only those due at `now`.
    fn flush_outbox(&mut self, now: Instant) {
        let due: Vec<DomainId> = self
            .outbox
            .iter()
            .filter(|(_, (_, _, at))| *at <= now)
            .map(|(d, _)| *d)
            .collect();
        for domain in due {
            self.flush(domain);
        }
    }

    fn flush(&mut self, domain: DomainId) {
        if let Some((txs, _, _)) = self.outbox.remove(&domain) {
            self.net.broadcast(domain, &Gossip::Payload(txs));
        }
    }

    /// Carry out a replica's effects, in order.
    fn carry_out(&mut self, domain: DomainId, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send { to, msg } => {
                    match self.genesis.domain(domain).and_then(|d| d.peer(to)) {
                        Some(peer) => self.net.send(domain, peer, msg),
                        None => warn!(%domain, to, "send to an unknown member"),
                    }
                }
                Effect::Broadcast(Message::Propose(p)) => self.propose(domain, p),
                Effect::Broadcast(msg) => self
                    .net
                    .broadcast(domain, &Gossip::Consensus(Box::new(msg))),
                Effect::Persist { seq, state, blocks } => self.storage.submit(Job::Persist {
                    domain,
                    seq,
                    state,
                    blocks,
                }),
                Effect::Commit { block, proof } => {
                    self.forget_committed(domain, &block.payload);
                    self.storage.submit(Job::Commit { block, proof })
                }
                Effect::Event(ev) => self.on_event(domain, ev),
            }
        }
    }

    /// Events are counted by the domain's driver (`DomainObserver`); here they are logged.
    fn on_event(&mut self, domain: DomainId, ev: Event) {
        match &ev {
            Event::CertificateFormed { .. } => {}
            Event::Proposed { view, txs } => debug!(%domain, view, txs, "proposed"),
            Event::ViewChange { from, to } => info!(%domain, from, to, "view change"),
            Event::NewLeader { term, leader } => info!(%domain, term, leader, "new leader"),
            Event::Rejected { from, reason } => {
                let peer = self.genesis.domain(domain).and_then(|d| d.peer(*from));
                warn!(%domain, from, ?peer, ?reason, "replica rejected a message");
            }
            Event::AnchorRejected { error } => self.on_anchor_rejected(error),
            Event::DoubleVote {
                signer,
                view,
                first,
                second,
            } => {
                let peer = self.genesis.domain(domain).and_then(|d| d.peer(*signer));
                error!(%domain, signer, ?peer, view, %first, %second, "double vote: one signer voted for two blocks in one view");
            }
            Event::PoolRefused { id, reason } => {
                debug!(%domain, %id, reason = reason.label(), "payload pool refused an item")
            }
            Event::Rejoined {
                last_voted,
                answers,
            } => {
                let n = self.genesis.domain(domain).map_or(0, |d| d.n());
                let f = n.saturating_sub(1) / 3;
                if *answers < 2 * f + 1 {
                    warn!(
                        %domain, last_voted, answers,
                        "rejoined on fewer than 2f+1 answers, after waiting for the others: a member did not answer"
                    );
                } else {
                    info!(%domain, last_voted, answers, "rejoined: signing again, above the views the members reported");
                }
            }
            Event::Transferred { height } => {
                info!(%domain, height, "restarted from the anchored block; fetching the blocks above");
                self.doubt_acknowledged(domain);
            }
            Event::Unavailable { hash } => {
                let named = self
                    .drivers
                    .get(&domain)
                    .and_then(|d| d.replica().status().missing_block);
                if named == Some(*hash) {
                    error!(
                        %domain, %hash,
                        "our safety state names a block that no reachable member sent when asked; \
                         this domain cannot go on here until a member holding it is back"
                    );
                } else {
                    warn!(%domain, %hash, "no member sent a requested block; still asking");
                }
            }
        }
    }

    fn on_storage(&mut self, done: Done) -> Result<(), NodeError> {
        match done {
            Done::Persisted { domain, seq } => self.feed(domain, Input::Persisted(seq)),
            Done::Committed { block, hash } => {
                let domain = block.domain;
                info!(%domain, height = block.height, %hash, txs = block.payload.len(), "committed");
                self.show_pool(domain);
                self.head.insert(domain, (block.height, hash));
                self.on_anchoring_commit(&block);
                self.metrics
                    .on_committed(domain, block.height, block.payload.len());
            }
            Done::Rebased {
                domain,
                height,
                hash,
            } => {
                info!(%domain, height, %hash, "stored chain rebased on the transferred block");
                self.head.insert(domain, (height, hash));
                self.metrics.set_committed_height(domain, height);
            }
            Done::Failed(e) => return Err(NodeError::StorageFailed(e)),
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Consensus {
                domain,
                from,
                msg,
                gossip,
            } => {
                if let Message::BlockResponse(blocks) = &*msg
                    && let Some((proposer, propose)) = self.fetched(domain, blocks)
                {
                    return self.on_consensus(domain, proposer, propose, gossip);
                }
                self.on_consensus(domain, from, *msg, gossip);
            }
            NetEvent::Proposal {
                domain,
                from,
                compact,
                gossip,
            } => self.on_compact(domain, from, *compact, gossip),
            NetEvent::Payload { domain, from, txs } => {
                if !txs.is_empty() {
                    self.feed(domain, Input::Relayed { from, txs });
                }
            }
            NetEvent::Anchored {
                domain,
                from,
                proof,
                gossip,
            } => {
                let verdict = self.on_notice(domain, from, &proof);
                if let Some(g) = gossip {
                    self.net.judge(g, verdict);
                }
            }
            NetEvent::Listening(_) => {}
        }
    }

    fn on_consensus(
        &mut self,
        domain: DomainId,
        from: ReplicaIndex,
        msg: Message,
        gossip: Option<GossipRef>,
    ) {
        if self.served_from_store(domain, from, &msg) {
            return;
        }
        let Some(driver) = self.drivers.get_mut(&domain) else {
            // Not reached: we subscribe only to our domains' topics.
            if let Some(g) = gossip {
                self.net.validate(g, false);
            }
            return;
        };
        let effects = driver.handle(Input::Message { from, msg }, Instant::now());
        // The replica is the judge of a consensus message: if it rejected the sender,
        // gossipsub must not forward the message and, unless an honest member could have
        // relayed it, holds it against the relays (`Verdict::of_replica`).
        let rejected = effects.iter().find_map(|e| match e {
            Effect::Event(Event::Rejected { from: f, reason }) if *f == from => Some(*reason),
            _ => None,
        });
        // A share or certificate that failed its check: its sender pays for the check, by
        // gossip or not.
        if matches!(rejected, Some(Reject::BadShare | Reject::BadCertificate))
            && let Some(peer) = self.genesis.domain(domain).and_then(|d| d.peer(from))
        {
            self.net.charge_failed_check(peer);
        }
        if let Some(g) = gossip {
            self.net.judge(g, Verdict::of_replica(rejected));
        }
        self.carry_out(domain, effects);
    }

    fn on_api(&mut self, req: ApiRequest) {
        match req {
            ApiRequest::Submit { domain, txs, reply } => self.submit(domain, txs, reply),
            ApiRequest::Pending { id, reply } => {
                let _ = reply.send(self.lookup(&id));
            }
            ApiRequest::SubmitAnchor { tx, reply } => {
                let _ = reply.send(self.submit_anchor_from_api(tx));
            }
            ApiRequest::Status { reply } => {
                let status = self
                    .drivers
                    .values()
                    .map(|d| self.domain_status(d))
                    .collect();
                let _ = reply.send(status);
            }
        }
    }

    fn domain_status(&self, d: &Driver) -> DomainStatus {
        let (height, hash) = self.head.get(&d.domain).copied().unwrap_or_default();
        let genesis = self.genesis.domain(d.domain);
        let role = genesis
            .and_then(|g| g.members.get(usize::from(d.me)))
            .map(|m| m.role.to_string())
            .unwrap_or_default();
        let s = d.replica().status();
        let peer = |i: u16| {
            genesis
                .and_then(|g| g.peer(i))
                .map(|p| p.to_string())
                .unwrap_or_default()
        };
        let anchoring = self.anchoring_status(d.domain);
        DomainStatus {
            anchored_height: anchoring.anchored_height,
            retained_from: anchoring.retained_from,
            anchor_lag_p50_ms: anchoring.anchor_lag_p50_ms,
            anchor_lag_p99_ms: anchoring.anchor_lag_p99_ms,
            anchored: anchoring.anchored,
            ranking: s.successors.iter().map(|&i| peer(i)).collect(),
            missing_block: s.missing_block.map(|h| h.to_hex()),
            domain: d.domain.to_string(),
            index: d.me,
            role,
            view: s.view,
            term: s.term,
            leader: s.leader,
            leader_peer: peer(s.leader),
            // The store's head: what `/v1/domains/../blocks` can serve (the replica's
            // height may be ahead while the write is queued).
            committed_height: height,
            committed_hash: hash.to_hex(),
            high_qc_view: s.high_qc_view,
            last_voted: s.last_voted,
            peers: Vec::new(),
            members: genesis
                .map(|g| {
                    g.members
                        .iter()
                        .filter(|m| m.index != d.me)
                        .map(|m| m.peer_id.to_string())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// One of our items for the gossip outbox: it goes out with the others submitted here in
    /// the same few milliseconds.
    fn queue_gossip(&mut self, domain: DomainId, tx: Tx) {
        let len = tx.len();
        let now = Instant::now();
        let entry = self
            .outbox
            .entry(domain)
            .or_insert_with(|| (Vec::new(), 0, now + GOSSIP_BATCH_DELAY));
        entry.0.push(tx);
        entry.1 += len;
        if entry.1 >= GOSSIP_BATCH_BYTES {
            self.flush(domain);
        }
    }
}

/// Sleep until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
