//! The storage worker: one thread owns all writes, in the order the replicas asked for them,
//! and reports each durable write back to the main loop (`Persisted` only after fsync). Jobs
//! that queue up while a write is under way go into the next transaction together, so a busy
//! node pays one fsync for many writes (group commit) and an idle one pays no delay.
//!
//! Items the API acknowledges ride the same queue: the worker answers the API itself once
//! they are durable, so a `202` never leaves before the fsync that covers it.

use crate::api::SubmitError;
use crate::metrics::Metrics;
use crate::store::{Accepted, Store, StoreError};
use lcbft_protocol::anchor::CommitProof;
use lcbft_protocol::io::SafetyState;
use lcbft_protocol::types::{Block, DomainId, Hash};
use tokio::sync::{mpsc, oneshot};

/// The answer to one API submission, sent once what it acknowledges is durable.
pub type SubmitReply = (
    oneshot::Sender<Vec<Result<bool, SubmitError>>>,
    Vec<Result<bool, SubmitError>>,
);

#[derive(Debug)]
pub enum Job {
    Persist {
        domain: DomainId,
        seq: u64,
        state: Box<SafetyState>,
        blocks: Vec<Block>,
    },
    Commit {
        block: Box<Block>,
        proof: CommitProof,
    },
    /// A state transfer: `block` becomes the base of its domain's stored chain.
    Rebase {
        block: Box<Block>,
        proof: CommitProof,
    },
    /// Items the API acknowledges, and the answer that acknowledges them. With no items the
    /// answer still waits for every write queued before it (an item a client sends twice is
    /// answered `pending` only once the first copy is on disk).
    Accept {
        items: Vec<Accepted>,
        reply: SubmitReply,
    },
    /// Acknowledged items of `domain` found committed, or refused for good.
    Forget { domain: DomainId, ids: Vec<Hash> },
}

#[derive(Debug)]
pub enum Done {
    Persisted {
        domain: DomainId,
        seq: u64,
    },
    Committed {
        block: Box<Block>,
        hash: Hash,
    },
    /// A state transfer's block is the base of the stored chain now.
    Rebased {
        domain: DomainId,
        height: u64,
        hash: Hash,
    },
    /// A write failed: the node cannot go on safely.
    Failed(StoreError),
}

impl Job {
    /// What the main loop is told once the job is durable; an acknowledgement is answered
    /// here, to the API.
    fn done(self) -> Option<Done> {
        match self {
            Job::Persist { domain, seq, .. } => Some(Done::Persisted { domain, seq }),
            Job::Commit { block, .. } => {
                let hash = block.hash();
                Some(Done::Committed { block, hash })
            }
            Job::Accept {
                reply: (tx, answer),
                ..
            } => {
                let _ = tx.send(answer);
                None
            }
            Job::Rebase { block, .. } => Some(Done::Rebased {
                domain: block.domain,
                height: block.height,
                hash: block.hash(),
            }),
            Job::Forget { .. } => None,
        }
    }

    /// The metric label of the write.
    fn op(&self) -> &'static str {
        match self {
            Job::Persist { .. } => "persist",
            Job::Commit { .. } => "commit",
            Job::Accept { .. } => "accept",
            Job::Forget { .. } => "forget",
            Job::Rebase { .. } => "rebase",
        }
    }

    /// Whether the job writes anything.
    fn writes(&self) -> bool {
        match self {
            Job::Accept { items, .. } => !items.is_empty(),
            Job::Forget { ids, .. } => !ids.is_empty(),
            Job::Persist { .. } | Job::Commit { .. } | Job::Rebase { .. } => true,
        }
    }
}

/// Jobs written in one transaction at most, so that one fsync never waits for an unbounded
/// amount of work.
const MAX_BATCH: usize = 64;

/// Every job in one transaction: all of them are durable, or none. Jobs that write nothing
/// cost no transaction.
fn write(store: &Store, jobs: &[Job]) -> Result<(), StoreError> {
    if !jobs.iter().any(Job::writes) {
        return Ok(());
    }
    let batch = store.batch()?;
    for job in jobs {
        match job {
            Job::Persist {
                domain,
                state,
                blocks,
                ..
            } => batch.save_safety(*domain, state, blocks)?,
            Job::Commit { block, proof } => batch.commit_block(block, proof)?,
            Job::Rebase { block, proof } => batch.rebase(block, proof)?,
            Job::Accept { items, .. } => batch.accept(items)?,
            Job::Forget { domain, ids } => batch.forget_accepted(*domain, ids)?,
        }
    }
    batch.finish()
}

pub struct Worker {
    jobs: std::sync::mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    pub fn spawn(
        store: Store,
        done: mpsc::UnboundedSender<Done>,
        metrics: Metrics,
    ) -> std::io::Result<Worker> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("lcbft-storage".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Whatever queued up while the last fsync ran goes into one transaction.
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH
                        && let Ok(job) = rx.try_recv()
                    {
                        jobs.push(job);
                    }
                    let start = std::time::Instant::now();
                    let result = write(&store, &jobs);
                    let elapsed = start.elapsed().as_secs_f64();
                    if jobs.iter().any(Job::writes) {
                        metrics.observe_storage_batch(jobs.len());
                    }
                    match result {
                        Ok(()) => {
                            for job in jobs {
                                if job.writes() {
                                    metrics.observe_storage_write(job.op(), elapsed);
                                }
                                if let Some(d) = job.done() {
                                    let _ = done.send(d);
                                }
                            }
                        }
                        Err(e) => {
                            let _ = done.send(Done::Failed(e));
                            return;
                        }
                    }
                }
            })?;
        Ok(Worker { jobs, thread })
    }

    pub fn submit(&self, job: Job) {
        // The thread only stops after a failure, which the main loop acts on.
        let _ = self.jobs.send(job);
    }

    /// Finish every queued write, then stop.
    pub fn flush_and_stop(self) {
        drop(self.jobs);
        let _ = self.thread.join();
    }
}
