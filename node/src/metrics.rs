//! The node's own metrics, in the one registry libp2p's metrics also use (`GET /metrics`).
//!
//! Names follow Prometheus conventions: an `lcbft_` prefix per subsystem (`consensus`,
//! `crypto`, `net`, `sync`, `mempool`, `traces`, `anchors`, `storage`), base units (seconds,
//! bytes), `_total` on counters (prometheus-client appends it) and histograms for durations.
//! `layer` (`global`/`local`) and `domain` (`global`, `local/1`) label what belongs to a domain.
//! Recording sites call one method of [`Metrics`] each; the per-domain bookkeeping that needs
//! state (when a block was first seen, when a certificate's first share arrived) lives in
//! [`DomainObserver`], owned by the domain's driver.
//!
//! Label sets a dashboard queries are created at startup ([`Metrics::init_domain`],
//! [`Metrics::init_anchoring`]) so their series exist, at zero, before the first event.

mod crypto;
mod observer;
mod process;
mod text;

pub use crypto::TimedKeys;
pub use observer::DomainObserver;
pub use process::{ProcessCollector, ProcessStats, StorageCollector, read_stats};
pub use text::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode as encode_text};

use crate::genesis::{Genesis, Role};
use crate::net::wire::Gossip;
use lcbft_protocol::io::Reject;
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{DomainId, Kind};
use libp2p::PeerId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::path::PathBuf;

/// A histogram family whose histograms all get the same buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// A domain: `layer` is `global` or `local`, `domain` is `global` or `local/<id>`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabels {
    pub layer: &'static str,
    pub domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub layer: &'static str,
    pub domain: String,
    /// `timeout`: this replica's own timer fired; `peers`: it followed other members (f+1
    /// asking for a later term, or a certificate for it).
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub layer: &'static str,
    pub domain: String,
    /// Certificate kind: `vote`, `timeout`, `view_change`, `confirm`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainReasonLabels {
    pub layer: &'static str,
    pub domain: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub layer: &'static str,
    pub domain: String,
    /// `sign_share`, `verify_share`, `combine`, `verify`.
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub layer: &'static str,
    pub domain: String,
    /// `sent` or `received`.
    pub direction: &'static str,
    /// The message: `propose`, `vote`, `new_view`, ..., or `payload` for gossiped traces.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub layer: &'static str,
    pub domain: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportReasonLabels {
    /// `gossip` or `direct`.
    pub transport: &'static str,
    pub reason: String,
}

/// What the network task could not hand to the main loop (its queue was full).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventKindLabels {
    /// `consensus`, `payload`, `anchored` or `listening`.
    pub kind: &'static str,
}

/// The anchored local domain.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnchorLabels {
    pub domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Compact proposals: `whole` (completed from the pool), `fetch` (items missing, block
    /// asked of the proposer), `fetched` (that block arrived).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageOpLabels {
    /// `persist` (safety state) or `commit` (a block).
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub peer_id: String,
    /// `edge` if this node is the edge of a local domain, else `cloud` or `device`.
    pub role: String,
    pub version: &'static str,
}

/// Why the global chain refuses an anchor (`AnchorError::reason` in the protocol): created at
/// startup so the dashboard's rejection panel has series before the first refusal.
pub const ANCHOR_REJECT_REASONS: [&str; 6] = [
    "undecodable",
    "unknown_domain",
    "gap",
    "fork",
    "stale",
    "bad_certificate",
];

/// Why the network layer refuses a message (`net/task.rs`), per transport.
const NET_REJECT_REASONS: [(&str, &[&str]); 2] = [
    (
        "gossip",
        &[
            "unknown_topic",
            "anonymous",
            "not_member",
            "malformed",
            "oversized",
            "bad_trace",
            "bad_anchor_notice",
            "replica",
            "not_edge",
            "notice_rate_limited",
            "rate_limited",
            "sync_by_gossip",
            "bad_proposal",
        ],
    ),
    (
        "direct",
        &[
            "unknown_domain",
            "not_member",
            "malformed",
            "oversized",
            "unreadable",
            "rate_limited",
            "sync_rate_limited",
        ],
    ),
];

/// Why a connection is refused (`net/behaviour.rs`): `not_member` (neither in the genesis nor
/// a configured observer), `limit` (connection limits).
const CONNECTION_REFUSAL_REASONS: [&str; 4] =
    ["not_member", "limit", "cut_off", "handshake_budget"];

/// What the network task drops when the main loop's queue is full.
const NET_EVENT_KINDS: [&str; 5] = ["consensus", "payload", "anchored", "proposal", "listening"];

/// Why a replica refuses a message (`Reject` in the protocol, snake_case).
const CONSENSUS_REJECT_REASONS: [&str; 7] = [
    "wrong_domain",
    "not_leader",
    "bad_certificate",
    "bad_share",
    "malformed",
    "unrequested",
    "bad_anchor",
];

fn commit_latency_histogram() -> Histogram {
    // 5 ms .. 41 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn certificate_histogram() -> Histogram {
    // 0.5 ms .. 16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn crypto_histogram() -> Histogram {
    // 10 us .. 1.3 s: a simulated share costs microseconds, a BLS pairing milliseconds.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 18))
}

fn anchor_lag_histogram() -> Histogram {
    // 50 ms .. 14 min
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

fn storage_histogram() -> Histogram {
    // 0.1 ms .. 3.3 s: dominated by fsync.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Cheap to clone: every metric is a shared handle.
#[derive(Clone, Debug)]
pub struct Metrics {
    // Consensus, per domain.
    pub view: Family<DomainLabels, Gauge>,
    pub term: Family<DomainLabels, Gauge>,
    pub leader: Family<DomainLabels, Gauge>,
    pub committed_height: Family<DomainLabels, Gauge>,
    pub commits: Family<DomainLabels, Counter>,
    pub commit_latency: HistogramFamily<DomainLabels>,
    pub proposals: Family<DomainLabels, Counter>,
    pub view_changes: Family<CauseLabels, Counter>,
    pub leader_changes: Family<DomainLabels, Counter>,
    pub certificates: Family<KindLabels, Counter>,
    pub certificate_seconds: HistogramFamily<KindLabels>,
    pub consensus_rejected: Family<DomainReasonLabels, Counter>,
    pub double_votes: Family<DomainLabels, Counter>,
    // Threshold crypto.
    pub crypto_ops: Family<OpLabels, Counter>,
    pub crypto_seconds: HistogramFamily<OpLabels>,
    // Network.
    pub messages: Family<MessageLabels, Counter>,
    pub message_bytes: Family<MessageLabels, Counter>,
    pub net_rejected: Family<TransportReasonLabels, Counter>,
    pub peers: Gauge,
    pub sync_requests: Family<DirectionLabels, Counter>,
    pub connections_refused: Family<ReasonLabels, Counter>,
    pub net_events_dropped: Family<EventKindLabels, Counter>,
    pub sends_dropped: Family<ReasonLabels, Counter>,
    pub addresses_evicted: Counter,
    pub addresses_known: Gauge,
    pub peers_graylisted: Gauge,
    pub peers_penalised: Gauge,
    pub peers_cut_off: Gauge,
    // Traces and the pending pool.
    pub mempool_traces: Family<DomainLabels, Gauge>,
    pub mempool_bytes: Family<DomainLabels, Gauge>,
    pub traces_admitted: Counter,
    pub traces_refused: Family<ReasonLabels, Counter>,
    pub traces_committed: Family<DomainLabels, Counter>,
    pub traces_durable: Family<DomainLabels, Gauge>,
    pub traces_reoffered: Family<DomainLabels, Counter>,
    pub publish_failures: Family<DomainReasonLabels, Counter>,
    // Anchoring local blocks into the global chain.
    pub anchors_submitted: Family<AnchorLabels, Counter>,
    pub anchors_accepted: Family<AnchorLabels, Counter>,
    pub anchors_rejected: Family<ReasonLabels, Counter>,
    pub anchored_height: Family<AnchorLabels, Gauge>,
    pub anchor_lag: HistogramFamily<AnchorLabels>,
    // Storage.
    pub pruned_blocks: Family<DomainLabels, Counter>,
    pub compact_proposals: Family<OutcomeLabels, Counter>,
    pub storage_write_seconds: HistogramFamily<StorageOpLabels>,
    pub storage_batch_jobs: Histogram,
    pub node_info: Family<InfoLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics in no registry (tests, tools): recording works, nothing is served.
    pub fn new() -> Metrics {
        Metrics {
            view: Family::default(),
            term: Family::default(),
            leader: Family::default(),
            committed_height: Family::default(),
            commits: Family::default(),
            commit_latency: Family::new_with_constructor(commit_latency_histogram),
            proposals: Family::default(),
            view_changes: Family::default(),
            leader_changes: Family::default(),
            certificates: Family::default(),
            certificate_seconds: Family::new_with_constructor(certificate_histogram),
            consensus_rejected: Family::default(),
            double_votes: Family::default(),
            crypto_ops: Family::default(),
            crypto_seconds: Family::new_with_constructor(crypto_histogram),
            messages: Family::default(),
            message_bytes: Family::default(),
            net_rejected: Family::default(),
            peers: Gauge::default(),
            connections_refused: Family::default(),
            net_events_dropped: Family::default(),
            sends_dropped: Family::default(),
            addresses_evicted: Counter::default(),
            addresses_known: Gauge::default(),
            peers_graylisted: Gauge::default(),
            peers_penalised: Gauge::default(),
            peers_cut_off: Gauge::default(),
            sync_requests: Family::default(),
            mempool_traces: Family::default(),
            mempool_bytes: Family::default(),
            traces_admitted: Counter::default(),
            traces_refused: Family::default(),
            traces_committed: Family::default(),
            traces_durable: Family::default(),
            traces_reoffered: Family::default(),
            publish_failures: Family::default(),
            anchors_submitted: Family::default(),
            anchors_accepted: Family::default(),
            anchors_rejected: Family::default(),
            anchored_height: Family::default(),
            anchor_lag: Family::new_with_constructor(anchor_lag_histogram),
            pruned_blocks: Family::default(),
            compact_proposals: Family::default(),
            storage_write_seconds: Family::new_with_constructor(storage_histogram),
            storage_batch_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            node_info: Family::default(),
        }
    }

    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::new();
        let r = registry.sub_registry_with_prefix("lcbft");
        m.register_consensus(r.sub_registry_with_prefix("consensus"));
        m.register_crypto(r.sub_registry_with_prefix("crypto"));
        m.register_net(r.sub_registry_with_prefix("net"));
        r.register(
            "sync_requests",
            "Block sync requests sent and received, received ones answered from disk (blocks older than the replica holds in memory), and state transfers (this member restarted from an anchored block, too far behind to sync from its peers)",
            m.sync_requests.clone(),
        );
        m.register_mempool(r.sub_registry_with_prefix("mempool"));
        m.register_traces(r.sub_registry_with_prefix("traces"));
        m.register_anchors(r.sub_registry_with_prefix("anchors"));
        r.register(
            "anchored_height",
            "Highest local block height anchored in a committed global block",
            m.anchored_height.clone(),
        );
        r.register(
            "anchor_lag_seconds",
            "Time from a local block's commit to its anchor's commit in the global chain",
            m.anchor_lag.clone(),
        );
        m.register_storage(r.sub_registry_with_prefix("storage"));
        r.register(
            "node_info",
            "This node: PeerId, role and version (always 1)",
            m.node_info.clone(),
        );
        for (transport, reasons) in NET_REJECT_REASONS {
            for reason in reasons {
                m.net_rejected_counter(transport, reason);
            }
        }
        for reason in CONNECTION_REFUSAL_REASONS {
            m.connection_refused_counter(reason);
        }
        for kind in NET_EVENT_KINDS {
            let _ = m
                .net_events_dropped
                .get_or_create(&EventKindLabels { kind });
        }
        m
    }

    fn register_consensus(&self, c: &mut Registry) {
        c.register(
            "view",
            "Current view: the global view, or the round within the local term",
            self.view.clone(),
        );
        c.register(
            "term",
            "Current local term (0 in the global layer)",
            self.term.clone(),
        );
        c.register(
            "leader",
            "Index of the leader of the current view or term",
            self.leader.clone(),
        );
        c.register(
            "committed_height",
            "Highest committed block height",
            self.committed_height.clone(),
        );
        c.register("commits", "Blocks committed", self.commits.clone());
        c.register(
            "commit_latency_seconds",
            "Time from a block's proposal (made or first seen here) to its commit here",
            self.commit_latency.clone(),
        );
        c.register(
            "proposals",
            "Blocks proposed by this node",
            self.proposals.clone(),
        );
        c.register(
            "view_changes",
            "Global views given up or local term changes started, by cause",
            self.view_changes.clone(),
        );
        c.register(
            "leader_changes",
            "Local terms started with a new leader",
            self.leader_changes.clone(),
        );
        c.register(
            "certificates_formed",
            "Certificates formed here by kind: each one is a basic phase run",
            self.certificates.clone(),
        );
        c.register(
            "certificate_formation_seconds",
            "Time from the first share of a certificate seen here to the certificate",
            self.certificate_seconds.clone(),
        );
        c.register(
            "rejected_messages",
            "Consensus messages the replica refused, by reason",
            self.consensus_rejected.clone(),
        );
        c.register(
            "double_votes",
            "Votes for a second block in one view from one signer, both shares valid (must stay 0)",
            self.double_votes.clone(),
        );
    }

    fn register_crypto(&self, c: &mut Registry) {
        c.register(
            "operations",
            "Threshold-signature operations by kind",
            self.crypto_ops.clone(),
        );
        c.register(
            "operation_seconds",
            "Time spent in threshold-signature operations by kind",
            self.crypto_seconds.clone(),
        );
    }

    fn register_net(&self, c: &mut Registry) {
        c.register(
            "messages",
            "Consensus and payload messages sent and received, by kind",
            self.messages.clone(),
        );
        c.register(
            "message_bytes",
            "Encoded bytes of consensus and payload messages sent and received",
            self.message_bytes.clone(),
        );
        c.register(
            "compact_proposals",
            "Proposals received with their payload by id, by outcome (whole from the pool, fetch, fetched)",
            self.compact_proposals.clone(),
        );
        c.register(
            "rejected_messages",
            "Messages refused by the network layer (non-member, undecodable, oversized, refused by the replica)",
            self.net_rejected.clone(),
        );
        c.register("peers", "Connected peers", self.peers.clone());
        c.register(
            "refused_connections",
            "Connections refused: peers neither in the genesis nor configured observers (not_member), members cut off for their penalties (cut_off), over the connection limits (limit), or before the handshake from an address whose handshakes keep failing (handshake_budget)",
            self.connections_refused.clone(),
        );
        c.register(
            "dropped_sends",
            "Point-to-point messages we dropped instead of sending: the peer had not read what we sent it already (peer_backlog)",
            self.sends_dropped.clone(),
        );
        c.register(
            "dropped_events",
            "Messages the network task dropped because the main loop's queue was full, by kind",
            self.net_events_dropped.clone(),
        );
        c.register(
            "publish_failures",
            "Gossip messages this node could not publish, by domain and reason (no_peers, duplicate, queues_full, too_large, ...)",
            self.publish_failures.clone(),
        );
        c.register(
            "evicted_addresses",
            "Peer addresses forgotten to keep the address book within its bounds",
            self.addresses_evicted.clone(),
        );
        c.register(
            "known_addresses",
            "Member addresses in the address book",
            self.addresses_known.clone(),
        );
        c.register(
            "graylisted_peers",
            "Connected peers whose gossipsub score is below the graylist threshold (their gossip is ignored)",
            self.peers_graylisted.clone(),
        );
        c.register(
            "penalised_peers",
            "Peers holding penalty points for requests over their rate limit or unreadable",
            self.peers_penalised.clone(),
        );
        c.register(
            "cut_off_peers",
            "Peers whose connections are refused until their penalty points decay",
            self.peers_cut_off.clone(),
        );
    }

    fn register_mempool(&self, c: &mut Registry) {
        c.register(
            "traces",
            "Traces known but not yet committed",
            self.mempool_traces.clone(),
        );
        c.register(
            "bytes",
            "Bytes of traces known but not yet committed",
            self.mempool_bytes.clone(),
        );
    }

    fn register_traces(&self, c: &mut Registry) {
        c.register(
            "admitted",
            "Traces admitted through the API",
            self.traces_admitted.clone(),
        );
        c.register(
            "refused",
            "Traces refused by the admission rule (API, gossip or proposal) or the pool",
            self.traces_refused.clone(),
        );
        c.register(
            "committed",
            "Traces and anchors in committed blocks",
            self.traces_committed.clone(),
        );
        c.register(
            "durable",
            "Traces this node acknowledged (202) and has not yet seen committed: on its disk, offered again until committed",
            self.traces_durable.clone(),
        );
        c.register(
            "reoffered",
            "Acknowledged traces offered to the domain again because they were not committed in time",
            self.traces_reoffered.clone(),
        );
    }

    fn register_anchors(&self, c: &mut Registry) {
        c.register(
            "submitted",
            "Anchors of committed local blocks submitted to the global chain",
            self.anchors_submitted.clone(),
        );
        c.register(
            "accepted",
            "Anchors committed in the global chain",
            self.anchors_accepted.clone(),
        );
        c.register(
            "rejected",
            "Anchors refused, by reason",
            self.anchors_rejected.clone(),
        );
    }

    fn register_storage(&self, c: &mut Registry) {
        c.register(
            "pruned_blocks",
            "Local blocks pruned after their anchoring",
            self.pruned_blocks.clone(),
        );
        c.register(
            "write_seconds",
            "Time of durable writes (fsync included), by kind",
            self.storage_write_seconds.clone(),
        );
        c.register(
            "batch_jobs",
            "Writes committed together in one transaction (group commit)",
            self.storage_batch_jobs.clone(),
        );
    }

    /// Scrape-time process metrics (`process_cpu_seconds_total`, ...) and the store's size.
    pub fn register_collectors(registry: &mut Registry, db: PathBuf) {
        registry.register_collector(Box::new(ProcessCollector::new()));
        registry
            .sub_registry_with_prefix("lcbft")
            .register_collector(Box::new(StorageCollector::new(db)));
    }

    pub fn reason(reason: &str) -> ReasonLabels {
        ReasonLabels {
            reason: reason.to_owned(),
        }
    }

    pub fn domain(domain: DomainId) -> DomainLabels {
        DomainLabels {
            layer: layer(domain),
            domain: domain.to_string(),
        }
    }

    /// `lcbft_node_info{peer_id, role, version} 1`.
    pub fn set_info(&self, peer_id: &str, role: &str) {
        self.node_info
            .get_or_create(&InfoLabels {
                peer_id: peer_id.to_owned(),
                role: role.to_owned(),
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
    }

    /// Create the label sets of a domain this node is a member of, so each series exists
    /// (at zero) from the start.
    pub fn init_domain(&self, domain: DomainId) {
        let d = Metrics::domain(domain);
        for f in [&self.view, &self.term, &self.leader, &self.committed_height] {
            let _ = f.get_or_create(&d);
        }
        for f in [
            &self.mempool_traces,
            &self.mempool_bytes,
            &self.traces_durable,
        ] {
            let _ = f.get_or_create(&d);
        }
        for f in [
            &self.commits,
            &self.proposals,
            &self.leader_changes,
            &self.traces_committed,
            &self.traces_reoffered,
            &self.pruned_blocks,
        ] {
            let _ = f.get_or_create(&d);
        }
        let _ = self.commit_latency.get_or_create(&d);
        for cause in ["timeout", "peers"] {
            let _ = self.view_changes.get_or_create(&CauseLabels {
                layer: d.layer,
                domain: d.domain.clone(),
                cause,
            });
        }
        let kinds: &[Kind] = match domain {
            DomainId::Global => &[Kind::Vote, Kind::Timeout],
            DomainId::Local(_) => &[Kind::Vote, Kind::ViewChange, Kind::Confirm],
        };
        for &k in kinds {
            let l = KindLabels {
                layer: d.layer,
                domain: d.domain.clone(),
                kind: kind_name(k),
            };
            let _ = self.certificates.get_or_create(&l);
            let _ = self.certificate_seconds.get_or_create(&l);
        }
        for reason in CONSENSUS_REJECT_REASONS {
            let _ = self.consensus_rejected.get_or_create(&DomainReasonLabels {
                layer: d.layer,
                domain: d.domain.clone(),
                reason: reason.to_owned(),
            });
        }
        for direction in ["sent", "received", "served_from_disk", "state_transfer"] {
            let _ = self.sync_requests.get_or_create(&DirectionLabels {
                layer: d.layer,
                domain: d.domain.clone(),
                direction,
            });
        }
    }

    /// Create the anchoring series of every local domain of the genesis.
    pub fn init_anchoring(&self, local_domains: impl IntoIterator<Item = DomainId>) {
        for domain in local_domains {
            let a = anchor_labels(domain);
            let _ = self.anchors_submitted.get_or_create(&a);
            let _ = self.anchors_accepted.get_or_create(&a);
            let _ = self.anchored_height.get_or_create(&a);
            let _ = self.anchor_lag.get_or_create(&a);
        }
        for reason in ANCHOR_REJECT_REASONS {
            let _ = self
                .anchors_rejected
                .get_or_create(&Metrics::reason(reason));
        }
    }

    /// A domain's observer, for its driver.
    pub fn observer(&self, domain: DomainId) -> DomainObserver {
        DomainObserver::new(self.clone(), domain)
    }

    /// Wrap a domain's key set so each operation is counted and timed.
    pub fn time_crypto(
        &self,
        domain: DomainId,
        keys: Box<dyn lcbft_protocol::crypto::ThresholdKeys>,
    ) -> Box<dyn lcbft_protocol::crypto::ThresholdKeys> {
        Box::new(TimedKeys::new(keys, self, domain))
    }

    // --- commits and the pending pool (main loop) ---

    /// A block is durably committed here.
    pub fn on_committed(&self, domain: DomainId, height: u64, txs: usize) {
        let d = Metrics::domain(domain);
        self.commits.get_or_create(&d).inc();
        self.set_committed_height(domain, height);
        self.traces_committed.get_or_create(&d).inc_by(txs as u64);
    }

    /// The committed height without a commit of our own (a state transfer).
    pub fn set_committed_height(&self, domain: DomainId, height: u64) {
        self.committed_height
            .get_or_create(&Metrics::domain(domain))
            .set(i64::try_from(height).unwrap_or(i64::MAX));
    }

    /// Acknowledged items of `domain` not yet seen committed.
    pub fn set_durable(&self, domain: DomainId, txs: usize) {
        self.traces_durable
            .get_or_create(&Metrics::domain(domain))
            .set(i64::try_from(txs).unwrap_or(i64::MAX));
    }

    pub fn on_reoffered(&self, domain: DomainId, txs: usize) {
        self.traces_reoffered
            .get_or_create(&Metrics::domain(domain))
            .inc_by(txs as u64);
    }

    /// A gossip message for `domain` was not published.
    pub fn on_publish_failed(&self, domain: DomainId, reason: &str) {
        self.publish_failures
            .get_or_create(&DomainReasonLabels {
                layer: layer(domain),
                domain: domain.to_string(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// What the payload pool of `domain` holds now.
    pub fn set_pool(&self, domain: DomainId, txs: usize, bytes: usize) {
        let d = Metrics::domain(domain);
        self.mempool_traces
            .get_or_create(&d)
            .set(i64::try_from(txs).unwrap_or(i64::MAX));
        self.mempool_bytes
            .get_or_create(&d)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    // --- network ---

    /// A consensus message (or gossip) of `bytes` encoded bytes sent to or received from
    /// `domain`'s members.
    pub fn on_message(&self, domain: DomainId, sent: bool, kind: &'static str, bytes: usize) {
        let direction = if sent { "sent" } else { "received" };
        let l = MessageLabels {
            layer: layer(domain),
            domain: domain.to_string(),
            direction,
            kind,
        };
        self.messages.get_or_create(&l).inc();
        self.message_bytes.get_or_create(&l).inc_by(bytes as u64);
        if kind == "block_request" {
            self.sync_requests
                .get_or_create(&DirectionLabels {
                    layer: l.layer,
                    domain: l.domain,
                    direction,
                })
                .inc();
        }
    }

    /// This member restarted its replica from an anchored block (a state transfer).
    pub fn on_state_transfer(&self, domain: DomainId) {
        self.sync_requests
            .get_or_create(&DirectionLabels {
                layer: layer(domain),
                domain: domain.to_string(),
                direction: "state_transfer",
            })
            .inc();
    }

    /// A peer's block request answered from the store: the blocks were older than what the
    /// replica holds in memory.
    pub fn on_sync_from_disk(&self, domain: DomainId) {
        self.sync_requests
            .get_or_create(&DirectionLabels {
                layer: layer(domain),
                domain: domain.to_string(),
                direction: "served_from_disk",
            })
            .inc();
    }

    /// A gossip message (consensus or payload) of `bytes` bytes published or received.
    pub fn on_gossip(&self, domain: DomainId, sent: bool, gossip: &Gossip, bytes: usize) {
        let kind = match gossip {
            Gossip::Consensus(msg) => message_kind(msg),
            Gossip::Payload(_) => "payload",
            Gossip::Anchored(_) => "anchor_notice",
            Gossip::Proposal(_) => "propose",
        };
        self.on_message(domain, sent, kind, bytes);
    }

    pub fn on_message_sent(&self, domain: DomainId, msg: &Message, bytes: usize) {
        self.on_message(domain, true, message_kind(msg), bytes);
    }

    pub fn on_message_received(&self, domain: DomainId, msg: &Message, bytes: usize) {
        self.on_message(domain, false, message_kind(msg), bytes);
    }

    /// A message refused by the network layer; `transport` is `gossip` or `direct`.
    pub fn on_net_rejected(&self, transport: &'static str, reason: &str) {
        self.net_rejected
            .get_or_create(&TransportReasonLabels {
                transport,
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The counter of one network rejection (handed to code that only counts).
    pub fn net_rejected_counter(&self, transport: &'static str, reason: &str) -> Counter {
        self.net_rejected
            .get_or_create(&TransportReasonLabels {
                transport,
                reason: reason.to_owned(),
            })
            .clone()
    }

    /// A connection refused; `reason` as in `CONNECTION_REFUSAL_REASONS`.
    pub fn dropped_send_counter(&self, reason: &str) -> Counter {
        self.sends_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .clone()
    }

    pub fn connection_refused_counter(&self, reason: &str) -> Counter {
        self.connections_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .clone()
    }

    /// A message for the main loop dropped because its queue was full.
    pub fn on_net_event_dropped(&self, kind: &'static str) {
        self.net_events_dropped
            .get_or_create(&EventKindLabels { kind })
            .inc();
    }

    pub fn set_peers(&self, n: usize) {
        self.peers.set(n as i64);
    }

    // --- anchoring (domain: the anchored local domain) ---

    /// An edge submitted the anchor of a committed local block.
    pub fn on_anchor_submitted(&self, domain: DomainId) {
        self.anchors_submitted
            .get_or_create(&anchor_labels(domain))
            .inc();
    }

    /// An anchor of `domain` was committed in the global chain.
    pub fn on_anchor_accepted(&self, domain: DomainId) {
        self.anchors_accepted
            .get_or_create(&anchor_labels(domain))
            .inc();
    }

    /// An anchor was refused; `reason` is `AnchorError::reason()`.
    pub fn on_anchor_rejected(&self, reason: &str) {
        self.anchors_rejected
            .get_or_create(&Metrics::reason(reason))
            .inc();
    }

    /// `domain` is anchored up to height `h` in committed global blocks.
    pub fn set_anchored_height(&self, domain: DomainId, h: u64) {
        self.anchored_height
            .get_or_create(&anchor_labels(domain))
            .set(i64::try_from(h).unwrap_or(i64::MAX));
    }

    /// Seconds from a local block's commit to the commit of the global block anchoring it.
    pub fn observe_anchor_lag(&self, domain: DomainId, secs: f64) {
        self.anchor_lag
            .get_or_create(&anchor_labels(domain))
            .observe(secs);
    }

    /// `n` blocks of `domain` were pruned.
    pub fn on_pruned(&self, domain: DomainId, n: u64) {
        self.pruned_blocks
            .get_or_create(&Metrics::domain(domain))
            .inc_by(n);
    }

    // --- storage ---

    pub fn on_compact_proposal(&self, outcome: &'static str) {
        self.compact_proposals
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One transaction held `jobs` writes.
    pub fn observe_storage_batch(&self, jobs: usize) {
        self.storage_batch_jobs.observe(jobs as f64);
    }

    /// A durable write of kind `op` (`persist`, `commit`) took `secs`.
    pub fn observe_storage_write(&self, op: &'static str, secs: f64) {
        self.storage_write_seconds
            .get_or_create(&StorageOpLabels { op })
            .observe(secs);
    }
}

/// `edge` beats `cloud` beats `device` (an edge is also a global validator), as in
/// `GET /v1/status`.
pub fn node_role(genesis: &Genesis, peer: &PeerId) -> &'static str {
    let roles: Vec<Role> = genesis
        .domains
        .iter()
        .flat_map(|d| d.members.iter())
        .filter(|m| m.peer_id == *peer)
        .map(|m| m.role)
        .collect();
    [Role::Edge, Role::Cloud, Role::Device]
        .into_iter()
        .find(|r| roles.contains(r))
        .map_or("", Role::as_str)
}

pub fn layer(domain: DomainId) -> &'static str {
    match domain {
        DomainId::Global => "global",
        DomainId::Local(_) => "local",
    }
}

fn anchor_labels(domain: DomainId) -> AnchorLabels {
    AnchorLabels {
        domain: domain.to_string(),
    }
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Vote => "vote",
        Kind::Timeout => "timeout",
        Kind::ViewChange => "view_change",
        Kind::Confirm => "confirm",
    }
}

pub fn reject_reason(reason: Reject) -> String {
    snake_case(&format!("{reason:?}"))
}

/// The message's variant, as a label value.
pub fn message_kind(msg: &Message) -> &'static str {
    match msg {
        Message::Propose(_) => "propose",
        Message::Vote(_) => "vote",
        Message::NewView { .. } => "new_view",
        Message::ViewChange { .. } => "view_change",
        Message::NewTerm { .. } => "new_term",
        Message::Refuse { .. } => "refuse",
        Message::TermStart(_) => "term_start",
        Message::Certificate(_) => "certificate",
        Message::BlockRequest { .. } => "block_request",
        Message::BlockResponse(_) => "block_response",
        Message::SafetyQuery => "safety_query",
        Message::SafetyReport { .. } => "safety_report",
    }
}

/// `BadShare` -> `bad_share`.
fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            // A variant with fields: keep the name only.
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
