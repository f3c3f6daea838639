//! The node's own metrics, in the one registry libp2p's metrics also use (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabels {
    pub domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub domain: String,
    pub event: String,
}

/// Cheap to clone: every metric is a shared handle.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Gossip messages refused at validation (non-member author, undecodable, oversized).
    pub gossip_rejected: Family<ReasonLabels, Counter>,
    /// Point-to-point messages refused (non-member sender, undecodable, unknown domain).
    pub direct_rejected: Family<ReasonLabels, Counter>,
    /// Consensus events the replicas reported (certificates, proposals, view changes,
    /// rejections).
    pub protocol_events: Family<EventLabels, Counter>,
    /// Blocks committed, per domain.
    pub commits: Family<DomainLabels, Counter>,
    pub committed_height: Family<DomainLabels, Gauge>,
    /// Connected peers.
    pub peers: Gauge,
    /// Traces admitted through the API.
    pub traces_admitted: Counter,
    /// Traces refused by the API (bad JSON, signature, size, duplicates).
    pub traces_refused: Family<ReasonLabels, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("lcbft");
        r.register(
            "gossip_rejected",
            "Gossip messages refused at validation",
            m.gossip_rejected.clone(),
        );
        r.register(
            "direct_rejected",
            "Point-to-point messages refused",
            m.direct_rejected.clone(),
        );
        r.register(
            "protocol_events",
            "Events reported by the consensus replicas",
            m.protocol_events.clone(),
        );
        r.register("commits", "Blocks committed", m.commits.clone());
        r.register(
            "committed_height",
            "Highest committed height",
            m.committed_height.clone(),
        );
        r.register("peers", "Connected peers", m.peers.clone());
        r.register(
            "traces_admitted",
            "Traces admitted through the API",
            m.traces_admitted.clone(),
        );
        r.register(
            "traces_refused",
            "Traces refused by the API",
            m.traces_refused.clone(),
        );
        m
    }

    pub fn reason(reason: &str) -> ReasonLabels {
        ReasonLabels {
            reason: reason.to_owned(),
        }
    }
}
