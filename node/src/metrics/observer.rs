//! Per-domain consensus metrics that need memory: the driver shows its observer every input,
//! every output and the replica's status after each step.
//!
//! - Commit latency: from the moment a block was proposed here or its proposal first arrived,
//!   to the replica's commit of it.
//! - Certificate formation time: from the first share of a signed message seen here (ours or a
//!   member's) to the certificate.
//! - View-change cause: `timeout` when the step was our own timer, `peers` when a message made
//!   the replica move.

use super::{CauseLabels, DomainLabels, KindLabels, Metrics, kind_name, reject_reason};
use lcbft_protocol::io::{Event, Input, Output};
use lcbft_protocol::message::Message;
use lcbft_protocol::replica::Status;
use lcbft_protocol::types::{DomainId, Hash, Kind, View, Vote};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Entries older than this are forgotten (a block never committed, a certificate never formed).
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Bound on remembered blocks and share sets, whatever peers send.
const MAX_TRACKED: usize = 8192;

pub struct DomainObserver {
    metrics: Metrics,
    labels: DomainLabels,
    local: bool,
    view: Gauge,
    term: Gauge,
    leader: Gauge,
    commit_latency: Histogram,
    proposals: Counter,
    leader_changes: Counter,
    /// Block hash -> when its proposal was made or first seen.
    proposed: HashMap<Hash, Instant>,
    /// (kind, view) -> when its first share was seen.
    shares: HashMap<(Kind, View), Instant>,
    /// The input being handled is one of our timers.
    timeout_step: bool,
    last_prune: Option<Instant>,
}

impl DomainObserver {
    pub fn new(metrics: Metrics, domain: DomainId) -> DomainObserver {
        let labels = Metrics::domain(domain);
        // Exported as 0 from the start: a scrape that finds no series cannot tell "none" from
        // "not counted".
        let _ = metrics.double_votes.get_or_create(&labels);
        DomainObserver {
            view: metrics.view.get_or_create(&labels).clone(),
            term: metrics.term.get_or_create(&labels).clone(),
            leader: metrics.leader.get_or_create(&labels).clone(),
            commit_latency: metrics.commit_latency.get_or_create(&labels).clone(),
            proposals: metrics.proposals.get_or_create(&labels).clone(),
            leader_changes: metrics.leader_changes.get_or_create(&labels).clone(),
            metrics: metrics.clone(),
            labels,
            local: matches!(domain, DomainId::Local(_)),
            proposed: HashMap::new(),
            shares: HashMap::new(),
            timeout_step: false,
            last_prune: None,
        }
    }

    /// Metrics in no registry: for drivers built without a node (tests).
    pub fn detached(domain: DomainId) -> DomainObserver {
        DomainObserver::new(Metrics::new(), domain)
    }

    /// Before the replica handles `input`.
    pub fn on_input(&mut self, input: &Input, now: Instant) {
        self.timeout_step = matches!(input, Input::Timeout(_));
        if let Input::Message { msg, .. } = input {
            self.on_message(msg, now);
        }
    }

    /// Each output of the step, in order.
    pub fn on_output(&mut self, out: &Output, now: Instant) {
        match out {
            // Our own shares travel in what we send and broadcast (the one to ourselves too).
            Output::Send { msg, .. } | Output::Broadcast(msg) => self.on_message(msg, now),
            Output::Commit { block, .. } => {
                if let Some(at) = self.proposed.remove(&block.hash()) {
                    self.commit_latency
                        .observe(now.saturating_duration_since(at).as_secs_f64());
                }
            }
            Output::Event(ev) => self.on_event(ev, now),
            _ => {}
        }
    }

    /// After the step: the replica's view, term and leader.
    pub fn on_status(&mut self, s: &Status) {
        let view = if self.local {
            lcbft_protocol::local::round_of(s.view)
        } else {
            s.view
        };
        self.view.set(clamp(view));
        self.term.set(clamp(s.term));
        self.leader.set(i64::from(s.leader));
    }

    fn on_message(&mut self, msg: &Message, now: Instant) {
        match msg {
            Message::Propose(p) => {
                self.prune(now);
                if self.proposed.len() < MAX_TRACKED {
                    self.proposed.entry(p.block.hash()).or_insert(now);
                }
            }
            Message::Vote(v) => self.share_seen(v, now),
            Message::NewView { timeout, vote, .. } => {
                self.share_seen(timeout, now);
                if let Some(v) = vote {
                    self.share_seen(v, now);
                }
            }
            Message::ViewChange { share, .. } => self.share_seen(share, now),
            _ => {}
        }
    }

    fn share_seen(&mut self, v: &Vote, now: Instant) {
        // Shares of certificates formed elsewhere (our votes to the next leader) stay until
        // pruned.
        self.prune(now);
        let key = (v.msg.kind, v.msg.view);
        if self.shares.len() < MAX_TRACKED || self.shares.contains_key(&key) {
            self.shares.entry(key).or_insert(now);
        }
    }

    fn on_event(&mut self, ev: &Event, now: Instant) {
        let d = &self.labels;
        match ev {
            Event::CertificateFormed { kind, view } => {
                let l = KindLabels {
                    layer: d.layer,
                    domain: d.domain.clone(),
                    kind: kind_name(*kind),
                };
                self.metrics.certificates.get_or_create(&l).inc();
                if let Some(at) = self.shares.remove(&(*kind, *view)) {
                    self.metrics
                        .certificate_seconds
                        .get_or_create(&l)
                        .observe(now.saturating_duration_since(at).as_secs_f64());
                }
            }
            Event::Proposed { .. } => {
                self.proposals.inc();
            }
            Event::ViewChange { .. } => {
                let cause = if self.timeout_step {
                    "timeout"
                } else {
                    "peers"
                };
                self.metrics
                    .view_changes
                    .get_or_create(&CauseLabels {
                        layer: d.layer,
                        domain: d.domain.clone(),
                        cause,
                    })
                    .inc();
            }
            Event::NewLeader { .. } => {
                self.leader_changes.inc();
            }
            Event::Rejected { reason, .. } => {
                self.metrics
                    .consensus_rejected
                    .get_or_create(&super::DomainReasonLabels {
                        layer: d.layer,
                        domain: d.domain.clone(),
                        reason: reject_reason(*reason),
                    })
                    .inc();
            }
            Event::DoubleVote { .. } => {
                self.metrics.double_votes.get_or_create(d).inc();
            }
            _ => {}
        }
    }

    /// Forget what is too old to be useful, at most once a second.
    fn prune(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_prune = Some(now);
        let fresh = |at: &mut Instant| now.saturating_duration_since(*at) < FORGET_AFTER;
        self.proposed.retain(|_, at| fresh(at));
        self.shares.retain(|_, at| fresh(at));
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
