//! The main loop's anchoring duties: submitting anchors as an edge, counting what the global
//! replica refused, taking notices, pruning local windows.

use super::MainLoop;
use crate::api::DomainStatus;
use crate::net::Verdict;
use crate::net::wire::Gossip;
use crate::node::Effect;
use lcbft_protocol::anchor::{Anchor, AnchorError};
use lcbft_protocol::io::{Event, Input};
use lcbft_protocol::proof::AnchorProof;
use lcbft_protocol::types::{Block, DomainId, ReplicaIndex, Tx};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Bound on the anchors gossiped in one message.
const GOSSIP_BATCH_BYTES: usize = 1 << 20;

impl MainLoop {
    /// A block is durable: as an edge, anchor it at once; as a global node, note the anchors
    /// it carries.
    pub(super) fn on_anchoring_commit(&mut self, block: &Block) {
        let now = Instant::now();
        match block.domain {
            DomainId::Local(_) => {
                self.anchoring
                    .on_local_commit(block.domain, block.height, now);
                if self.anchoring.is_edge_of(block.domain) {
                    match self.anchoring.due(&self.store, block.domain, now) {
                        Ok(txs) => self.submit_anchors(block.domain, txs),
                        Err(e) => warn!(error = %e, "reading blocks to anchor"),
                    }
                }
            }
            DomainId::Global => {
                let anchored: Vec<(DomainId, u64)> = block
                    .payload
                    .iter()
                    .filter_map(|tx| Anchor::from_tx(tx)?.ok())
                    .map(|a| (a.block.domain, a.block.height))
                    .collect();
                for &(domain, height) in &anchored {
                    self.metrics.on_anchor_accepted(domain);
                    self.metrics.set_anchored_height(domain, height);
                }
                for (domain, lag) in self.anchoring.on_global_commit(&anchored, now) {
                    self.metrics.observe_anchor_lag(domain, lag.as_secs_f64());
                }
            }
        }
    }

    fn submit_anchors(&mut self, domain: DomainId, txs: Vec<Tx>) {
        if txs.is_empty() {
            return;
        }
        debug!(%domain, anchors = txs.len(), "submitting anchors");
        for _ in &txs {
            self.metrics.on_anchor_submitted(domain);
        }
        // Each anchor carries a whole local block: keep every gossip message well under the
        // wire limit.
        let mut batch = Vec::new();
        let mut bytes = 0;
        for tx in &txs {
            if !batch.is_empty() && bytes + tx.len() > GOSSIP_BATCH_BYTES {
                let full = std::mem::take(&mut batch);
                self.net.broadcast(DomainId::Global, &Gossip::Payload(full));
                bytes = 0;
            }
            bytes += tx.len();
            batch.push(tx.clone());
        }
        self.net
            .broadcast(DomainId::Global, &Gossip::Payload(batch));
        self.feed(DomainId::Global, Input::Payload(txs));
    }

    /// The global replica refused an anchor. At an anchored height it is a duplicate when the
    /// hash is the one anchored there (several edges, re-submissions), a fork otherwise.
    pub(super) fn on_anchor_rejected(&mut self, error: &AnchorError) {
        let reason = match error {
            AnchorError::Stale {
                domain,
                height,
                hash,
                ..
            } => match self.store.anchor_at(*domain, *height) {
                Ok(Some(e)) if e.hash == *hash => "duplicate",
                Ok(Some(_)) => "fork",
                // Anchored along the branch being decided, not yet in the store.
                _ => "duplicate",
            },
            other => other.reason(),
        };
        self.metrics.on_anchor_rejected(reason);
        if reason != "duplicate" {
            warn!(%error, reason, "anchor rejected");
        }
    }

    /// An edge's anchor notice: checked if this node can act on it (see
    /// [`Anchoring::worth_checking`](crate::node::anchoring::Anchoring::worth_checking)).
    /// Forwarded only once checked; one not worth checking is dropped, no fault of its sender.
    pub(super) fn on_notice(
        &mut self,
        domain: DomainId,
        from: ReplicaIndex,
        proof: &AnchorProof,
    ) -> Verdict {
        let now = Instant::now();
        let committed = self
            .drivers
            .get(&domain)
            .map_or(0, |d| d.replica().committed_height());
        // An undecodable anchor is refused by the check below, with its reason.
        if let Some(Ok(claimed)) = Anchor::from_tx(&proof.anchor.tx)
            && !self
                .anchoring
                .worth_checking(domain, claimed.block.height, committed, now)
        {
            return Verdict::Ignore;
        }
        match self.anchoring.on_notice(domain, proof, now) {
            Ok((height, anchor)) => {
                self.metrics.set_anchored_height(domain, height);
                self.transfer_if_behind(domain, anchor);
                Verdict::Accept
            }
            Err(e) => {
                self.metrics.on_net_rejected("gossip", "bad_anchor_notice");
                warn!(%domain, from, error = %e, "anchor notice refused");
                Verdict::Reject
            }
        }
    }

    pub(super) fn housekeeping(&mut self) {
        let now = Instant::now();
        // A few times after the start, once connections are up: ask peers for their highest
        // QC, so a node that was down catches up even if its domains have gone quiet.
        self.ticks += 1;
        if matches!(self.ticks, 2 | 4 | 8) {
            let domains: Vec<DomainId> = self.drivers.keys().copied().collect();
            for d in domains {
                self.feed(d, Input::Start);
            }
        }
        let (work, pruned) = match self.anchoring.tick(&self.store, now) {
            Ok(done) => done,
            Err(e) => {
                warn!(error = %e, "anchoring housekeeping");
                return;
            }
        };
        let mut by_domain: std::collections::BTreeMap<DomainId, Vec<Tx>> = Default::default();
        for (domain, tx) in work.submit {
            by_domain.entry(domain).or_default().push(tx);
        }
        for (domain, txs) in by_domain {
            self.submit_anchors(domain, txs);
        }
        for (domain, proof) in work.notices {
            self.net
                .broadcast(domain, &Gossip::Anchored(Box::new(proof)));
        }
        for (domain, n) in pruned {
            info!(%domain, blocks = n, "pruned anchored blocks outside the window");
            self.metrics.on_pruned(domain, n);
        }
    }

    /// An anchor from the API, judged by the global replica on the spot.
    pub(super) fn submit_anchor_from_api(&mut self, tx: Tx) -> Result<(), String> {
        let Some(driver) = self.drivers.get_mut(&DomainId::Global) else {
            return Err("this node is not a global validator".into());
        };
        let effects = driver.handle(Input::Payload(vec![tx.clone()]), Instant::now());
        let refused = effects.iter().find_map(|e| match e {
            Effect::Event(Event::AnchorRejected { error }) => Some(error.to_string()),
            _ => None,
        });
        self.carry_out(DomainId::Global, effects);
        match refused {
            Some(reason) => Err(reason),
            None => {
                self.net
                    .broadcast(DomainId::Global, &Gossip::Payload(vec![tx]));
                Ok(())
            }
        }
    }

    /// The anchoring fields of a domain's status.
    pub(super) fn anchoring_status(&self, domain: DomainId) -> DomainStatus {
        let mut s = DomainStatus::default();
        match domain {
            DomainId::Local(_) => {
                s.anchored_height = self.anchoring.anchored(&self.store, domain).ok();
                s.retained_from = self.store.retained_from(domain).ok();
                let ms = |q| {
                    self.anchoring
                        .lag_percentile(domain, q)
                        .map(|d| d.as_millis() as u64)
                };
                s.anchor_lag_p50_ms = ms(0.5);
                s.anchor_lag_p99_ms = ms(0.99);
            }
            DomainId::Global => {
                for d in self.genesis.domains.iter().map(|d| d.id) {
                    if d != DomainId::Global
                        && let Ok(h) = self.store.anchored_height(d)
                    {
                        s.anchored.insert(d.to_string(), h);
                    }
                }
            }
        }
        s
    }
}
