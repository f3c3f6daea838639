//! Durable acknowledgements, the main loop's duties. An item the API submits goes into the
//! pool and the gossip outbox at once, and into the storage worker's queue with the API's
//! answer: the worker answers once the item is on disk (group commit), so a `202` means the
//! item survives a crash of this node. Until it commits (the commit's transaction deletes it
//! from disk) or is refused for good, it is offered to the domain again, with growing waits;
//! after a restart it is reloaded into the pool and offered again.

use super::MainLoop;
use crate::admission::Admission;
use crate::api::{Lookup, SubmitError};
use crate::net::wire::Gossip;
use crate::node::Effect;
use crate::node::acks::{Book, Full, REOFFER_AFTER};
use crate::node::storage::Job;
use crate::store::Accepted;
use lcbft_protocol::PoolRefusal;
use lcbft_protocol::io::{Event, Input};
use lcbft_protocol::replica::Replica;
use lcbft_protocol::types::{DomainId, Hash, Tx};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Items offered again per housekeeping tick, over all domains.
const MAX_REOFFER: usize = 2048;
/// A doubtful item (acknowledged before a state transfer) is handed to the members this many
/// times, then forgotten: a member that can tell admits it if it is new, and it commits.
const DOUBTFUL_OFFERS: u32 = 3;
/// Reloaded items are first offered this long after the start, once peers are connected.
const RELOAD_OFFER_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

type Answer = Result<bool, SubmitError>;

/// What the pool said about items fed to it, by id.
fn refusals(effects: &[Effect]) -> HashMap<Hash, PoolRefusal> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event(Event::PoolRefused { id, reason }) => Some((*id, *reason)),
            _ => None,
        })
        .collect()
}

/// Submitted items on their way in: an answer for each (`None` while the pool has yet to
/// take it), the items for the disk, and the items for the pool with their sequence numbers.
struct Intake {
    answers: Vec<Option<Answer>>,
    to_disk: Vec<Accepted>,
    to_pool: Vec<(u64, Tx)>,
}

impl Intake {
    /// Acknowledge each new item in `acks`; items acknowledged or pending already are
    /// answered now, the rest go to the pool.
    fn sort(
        acks: &mut Book,
        replica: &Replica,
        domain: DomainId,
        txs: &[Tx],
        due: std::time::Instant,
    ) -> Intake {
        let mut intake = Intake {
            answers: Vec::with_capacity(txs.len()),
            to_disk: Vec::new(),
            to_pool: Vec::new(),
        };
        for tx in txs {
            let id = tx.id();
            if acks.contains(domain, &id) {
                intake.answers.push(Some(Ok(false)));
                continue;
            }
            let seq = match acks.insert(domain, id, tx.len(), due) {
                Ok(seq) => seq,
                Err(Full::Bound | Full::Unknown) => {
                    intake
                        .answers
                        .push(Some(Err(SubmitError::Full(PoolRefusal::OverShare))));
                    continue;
                }
            };
            if replica.pending(&id).is_some() {
                // Pending already (a peer gossiped it): the answer says so, and it is on our
                // disk too before the answer, like every item we answer `pending` for.
                intake.answers.push(Some(Ok(false)));
                intake.to_disk.push(Accepted {
                    domain,
                    seq,
                    tx: tx.clone(),
                });
            } else {
                intake.answers.push(None);
                intake.to_pool.push((seq, tx.clone()));
            }
        }
        intake
    }

    /// Answer the items the pool was fed, by what it `refused` and what it holds now; the
    /// items it took are returned, for the gossip outbox.
    fn settle(
        &mut self,
        acks: &mut Book,
        replica: &Replica,
        domain: DomainId,
        refused: &HashMap<Hash, PoolRefusal>,
    ) -> Vec<Tx> {
        let mut pooled = std::mem::take(&mut self.to_pool).into_iter();
        let mut outbox = Vec::new();
        for answer in &mut self.answers {
            if answer.is_some() {
                continue;
            }
            let Some((seq, tx)) = pooled.next() else {
                break;
            };
            let id = tx.id();
            if let Some(reason) = refused.get(&id) {
                acks.remove(domain, &id);
                *answer = Some(Err(SubmitError::Full(*reason)));
            } else if replica.pending(&id).is_none() {
                // The replica committed it a moment ago (the store has not written it yet).
                acks.remove(domain, &id);
                *answer = Some(Ok(false));
            } else {
                *answer = Some(Ok(true));
                outbox.push(tx.clone());
                self.to_disk.push(Accepted { domain, seq, tx });
            }
        }
        outbox
    }
}

impl MainLoop {
    /// Items the API admitted (by the one rule): into our pool and the gossip outbox now,
    /// and onto the disk before the answer, which the storage worker sends.
    pub(super) fn submit(
        &mut self,
        domain: DomainId,
        txs: Vec<Tx>,
        reply: oneshot::Sender<Vec<Answer>>,
    ) {
        let Some(driver) = self.drivers.get_mut(&domain) else {
            let _ = reply.send(vec![
                Err(SubmitError::NotMember(domain.to_string()));
                txs.len()
            ]);
            return;
        };
        let now = Instant::now();
        let due = std::time::Instant::now() + REOFFER_AFTER;
        let mut intake = Intake::sort(&mut self.acks, driver.replica(), domain, &txs, due);
        let effects = driver.handle(
            Input::Payload(intake.to_pool.iter().map(|(_, tx)| tx.clone()).collect()),
            now,
        );
        let outbox = intake.settle(
            &mut self.acks,
            driver.replica(),
            domain,
            &refusals(&effects),
        );
        for tx in outbox {
            self.queue_gossip(domain, tx);
        }
        let answers = intake
            .answers
            .into_iter()
            .map(|a| a.unwrap_or(Ok(false)))
            .collect();
        self.storage.submit(Job::Accept {
            items: intake.to_disk,
            reply: (reply, answers),
        });
        self.show_durable(domain);
        // After the outbox took the new traces: a proposal among the effects names them by
        // id, so they must be gossiped before it (`propose` flushes the outbox first).
        self.carry_out(domain, effects);
        self.show_pool(domain);
    }

    /// A block committed: its items no longer wait (the commit's transaction deletes them
    /// from disk).
    pub(super) fn forget_committed(&mut self, domain: DomainId, payload: &[Tx]) {
        let mut any = false;
        for tx in payload {
            any |= self.acks.remove(domain, &tx.id());
        }
        if any {
            self.show_durable(domain);
        }
    }

    pub(super) fn show_durable(&self, domain: DomainId) {
        self.metrics.set_durable(domain, self.acks.usage(domain).0);
    }

    /// What this node knows of an item not found in the committed index.
    pub(super) fn lookup(&self, id: &Hash) -> Lookup {
        for (&domain, driver) in &self.drivers {
            if let Some(tx) = driver.replica().pending(id) {
                return Lookup::Pending {
                    domain,
                    tx: Some(tx.clone()),
                    durable: self.acks.contains(domain, id),
                };
            }
        }
        for &domain in self.drivers.keys() {
            if self.acks.contains(domain, id) {
                // Out of the pool for now (evicted, or refused while full): offered again
                // from the disk.
                let tx = self.store.accepted_tx(domain, id).ok().flatten();
                return Lookup::Pending {
                    domain,
                    tx,
                    durable: true,
                };
            }
        }
        match self.acks.refused(id) {
            Some((domain, reason)) => Lookup::Refused { domain, reason },
            None => Lookup::Unknown,
        }
    }

    /// Take back what this node had acknowledged before it stopped: judged again by the
    /// admission rule (committed meanwhile, or refused by a changed limit: forgotten), then
    /// into the pool, to be offered once peers are connected.
    pub fn reload(&mut self, items: Vec<Accepted>, rule: &Admission) {
        let total = items.len();
        let mut by_domain: BTreeMap<DomainId, Vec<Accepted>> = BTreeMap::new();
        for a in items {
            by_domain.entry(a.domain).or_default().push(a);
        }
        let due = std::time::Instant::now() + RELOAD_OFFER_AFTER;
        for (domain, items) in by_domain {
            let txs: Vec<Tx> = items.iter().map(|a| a.tx.clone()).collect();
            let ids: Vec<Hash> = txs.iter().map(Tx::id).collect();
            if !self.drivers.contains_key(&domain) {
                warn!(%domain, items = txs.len(), "acknowledged traces of a domain this node is no longer in: dropped");
                self.storage.submit(Job::Forget { domain, ids });
                continue;
            }
            let mut forget = Vec::new();
            let mut keep = Vec::new();
            for (a, verdict) in items.into_iter().zip(rule.check(domain, &txs)) {
                let id = a.tx.id();
                match verdict {
                    Ok(()) => keep.push(a),
                    Err(crate::admission::Refusal::Committed) => forget.push(id),
                    Err(r) => {
                        warn!(%domain, %id, reason = r.label(), "an acknowledged trace is refused now: dropped");
                        self.acks.refuse(domain, id, r.label());
                        forget.push(id);
                    }
                }
            }
            for a in &keep {
                let _ = self
                    .acks
                    .insert_at(domain, a.tx.id(), a.tx.len(), a.seq, due);
            }
            let txs: Vec<Tx> = keep.into_iter().map(|a| a.tx).collect();
            forget.extend(self.feed_own(domain, txs));
            self.storage.submit(Job::Forget {
                domain,
                ids: forget,
            });
            self.show_durable(domain);
            self.show_pool(domain);
        }
        if total > 0 {
            info!(
                items = total,
                "reloaded acknowledged traces not yet committed: offering them again"
            );
        }
    }

    /// Feed our own items to a domain's pool. Items the pool can never take (larger than a
    /// block) are refused for good: returned, to forget. A full pool is not for good: the
    /// items stay acknowledged and are offered again.
    fn feed_own(&mut self, domain: DomainId, txs: Vec<Tx>) -> Vec<Hash> {
        let Some(driver) = self.drivers.get_mut(&domain) else {
            return Vec::new();
        };
        if txs.is_empty() {
            return Vec::new();
        }
        let effects = driver.handle(Input::Payload(txs), Instant::now());
        let mut gone = Vec::new();
        for (id, reason) in refusals(&effects) {
            if reason == PoolRefusal::Oversized {
                warn!(%domain, %id, "an acknowledged trace no longer fits a block: dropped");
                self.acks.refuse(domain, id, reason.label());
                gone.push(id);
            }
        }
        self.carry_out(domain, effects);
        gone
    }

    /// Offer again what was acknowledged here and is not committed yet: from the pool, or
    /// back into it from the disk. Items found committed meanwhile are forgotten.
    pub(super) fn reoffer(&mut self) {
        let due = self.acks.due(std::time::Instant::now(), MAX_REOFFER);
        if due.is_empty() {
            return;
        }
        let mut by_domain: BTreeMap<DomainId, Vec<Hash>> = BTreeMap::new();
        for (d, id) in due {
            by_domain.entry(d).or_default().push(id);
        }
        for (domain, ids) in by_domain {
            let Some(driver) = self.drivers.get(&domain) else {
                continue;
            };
            let mut offer = Vec::new();
            let mut missing = Vec::new();
            let mut forget = Vec::new();
            for id in ids {
                if let Some(tries) = self.acks.doubtful(domain, &id) {
                    // Never into our own pool: a proposal of ours holding it would be refused
                    // by every member that saw it commit.
                    if tries > DOUBTFUL_OFFERS {
                        self.acks.remove(domain, &id);
                        forget.push(id);
                    } else if let Ok(Some(tx)) = self.store.accepted_tx(domain, &id) {
                        offer.push(tx);
                    }
                    continue;
                }
                match driver.replica().pending(&id) {
                    Some(tx) => offer.push(tx.clone()),
                    None => missing.push(id),
                }
            }
            if !missing.is_empty() {
                let committed = self.store.committed_ids(&missing).unwrap_or_else(|e| {
                    warn!("reading the committed index: {e}");
                    vec![false; missing.len()]
                });
                let mut back = Vec::new();
                for (id, committed) in missing.into_iter().zip(committed) {
                    if committed {
                        self.acks.remove(domain, &id);
                        forget.push(id);
                        continue;
                    }
                    match self.store.accepted_tx(domain, &id) {
                        Ok(Some(tx)) => back.push(tx),
                        // Not on disk: a commit deleted it, and the next read of the index
                        // will show it.
                        Ok(None) => {}
                        Err(e) => warn!(%domain, %id, "reading an acknowledged trace: {e}"),
                    }
                }
                let gone = self.feed_own(domain, back.clone());
                offer.extend(back.into_iter().filter(|tx| !gone.contains(&tx.id())));
                forget.extend(gone);
            }
            if !forget.is_empty() {
                self.storage.submit(Job::Forget {
                    domain,
                    ids: forget,
                });
            }
            if !offer.is_empty() {
                debug!(%domain, items = offer.len(), "offering acknowledged traces again");
                self.metrics.on_reoffered(domain, offer.len());
                self.gossip_items(domain, offer);
            }
            self.show_durable(domain);
            self.show_pool(domain);
        }
    }

    /// A state transfer in `domain`: what this node acknowledged there is handed to the
    /// members from now on (see `Book::doubt`).
    pub(super) fn doubt_acknowledged(&mut self, domain: DomainId) {
        let n = self.acks.doubt(domain, std::time::Instant::now());
        if n > 0 {
            info!(%domain, items = n, "acknowledged traces may be in the blocks skipped: handing them to the members, who can tell");
        }
        self.show_pool(domain);
    }

    /// Gossip items in messages of at most `GOSSIP_BATCH_BYTES`.
    fn gossip_items(&mut self, domain: DomainId, txs: Vec<Tx>) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for tx in txs {
            if !batch.is_empty() && bytes + tx.len() > super::GOSSIP_BATCH_BYTES {
                self.net
                    .broadcast(domain, &Gossip::Payload(std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes += tx.len();
            batch.push(tx);
        }
        if !batch.is_empty() {
            self.net.broadcast(domain, &Gossip::Payload(batch));
        }
    }
}
