//! Proposals travel with their payload by id ([`Compact`]): members complete them from their
//! pool. A member missing items asks the proposer for the block (a `BlockRequest`, answered
//! from its tree like block sync) and takes the proposal whole when the block arrives.

use super::MainLoop;
use crate::net::wire::{Compact, Gossip};
use crate::net::{GossipRef, Verdict};
use lcbft_protocol::message::{Message, Proposal};
use lcbft_protocol::types::{Block, DomainId, Hash, ReplicaIndex};
use std::collections::VecDeque;
use tracing::debug;

/// Proposals waiting for their block, per domain, at most one per proposer. The oldest gives
/// way: a member can name items nobody has; a real block then still comes by sync once a
/// certificate names it.
const MAX_WAITING: usize = 4;

/// A proposal whose block was asked of its proposer.
pub(super) struct Waiting {
    hash: Hash,
    from: ReplicaIndex,
    proposal: Proposal,
}

pub(super) type WaitingList = VecDeque<Waiting>;

impl MainLoop {
    /// Gossip our proposal with its payload by id. Our own traces still in the outbox go
    /// first, on the same streams, so members hold them when the proposal arrives.
    pub(super) fn propose(&mut self, domain: DomainId, proposal: Proposal) {
        if proposal.block.payload.is_empty() {
            let msg = Message::Propose(proposal);
            self.net
                .broadcast(domain, &Gossip::Consensus(Box::new(msg)));
            return;
        }
        self.flush(domain);
        let compact = Compact::of(proposal);
        self.net
            .broadcast(domain, &Gossip::Proposal(Box::new(compact)));
    }

    pub(super) fn on_compact(
        &mut self,
        domain: DomainId,
        from: ReplicaIndex,
        compact: Compact,
        gossip: Option<GossipRef>,
    ) {
        let Some(driver) = self.drivers.get(&domain) else {
            if let Some(g) = gossip {
                self.net.judge(g, Verdict::Ignore);
            }
            return;
        };
        let replica = driver.replica();
        match compact.complete(|id| replica.pending(id).cloned()) {
            Ok(proposal) => {
                self.metrics.on_compact_proposal("whole");
                self.on_consensus(domain, from, Message::Propose(proposal), gossip);
            }
            Err(missing) => {
                self.metrics.on_compact_proposal("fetch");
                // Not forwarded: members complete it themselves, or ask the proposer.
                if let Some(g) = gossip {
                    self.net.judge(g, Verdict::Ignore);
                }
                let hash = compact.block_hash();
                debug!(%domain, %hash, missing, "proposal items missing: asking the proposer");
                let Some(peer) = self.genesis.domain(domain).and_then(|d| d.peer(from)) else {
                    return;
                };
                let waiting = self.waiting.entry(domain).or_default();
                if waiting.iter().any(|w| w.hash == hash) {
                    return;
                }
                // An honest proposer's newer proposal supersedes its older one.
                waiting.retain(|w| w.from != from);
                if waiting.len() >= MAX_WAITING {
                    waiting.pop_front();
                }
                waiting.push_back(Waiting {
                    hash,
                    from,
                    proposal: compact.proposal,
                });
                // Only this block: `above` past every height stops the answer after it.
                let request = Message::BlockRequest {
                    hash,
                    above: u64::MAX,
                };
                self.net.send(domain, peer, request);
            }
        }
    }

    /// A block we asked a proposer for: the waiting proposal, whole, to feed the replica as
    /// if it had come so from the proposer.
    pub(super) fn fetched(
        &mut self,
        domain: DomainId,
        blocks: &[Block],
    ) -> Option<(ReplicaIndex, Message)> {
        let block = blocks.first()?;
        // Sync answers pass here too: hash a block only while a proposal waits for one.
        let waiting = self.waiting.get_mut(&domain).filter(|w| !w.is_empty())?;
        let hash = block.hash();
        let at = waiting.iter().position(|w| w.hash == hash)?;
        let w = waiting.remove(at)?;
        self.metrics.on_compact_proposal("fetched");
        let mut proposal = w.proposal;
        proposal.block = block.clone();
        Some((w.from, Message::Propose(proposal)))
    }
}
