//! The storage worker: one thread owns all writes, in the order the replicas asked for them,
//! and reports each durable write back to the main loop (`Persisted` only after fsync).

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use lcbft_protocol::anchor::CommitProof;
use lcbft_protocol::io::SafetyState;
use lcbft_protocol::types::{Block, DomainId, Hash};
use tokio::sync::mpsc;

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
    /// A write failed: the node cannot go on safely.
    Failed(StoreError),
}

impl Job {
    /// The metric label of the write.
    fn op(&self) -> &'static str {
        #[allow(unreachable_patterns)]
        match self {
            Job::Persist { .. } => "persist",
            Job::Commit { .. } => "commit",
            _ => "other",
        }
    }
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
                for job in rx {
                    let start = std::time::Instant::now();
                    let op = job.op();
                    let result = match job {
                        Job::Persist {
                            domain,
                            seq,
                            state,
                            blocks,
                        } => store
                            .save_safety(domain, &state, &blocks)
                            .map(|()| Done::Persisted { domain, seq }),
                        Job::Commit { block, proof } => {
                            let hash = block.hash();
                            store
                                .commit_block(&block, &proof)
                                .map(|()| Done::Committed { block, hash })
                        }
                    };
                    metrics.observe_storage_write(op, start.elapsed().as_secs_f64());
                    let failed = result.is_err();
                    let _ = done.send(result.unwrap_or_else(Done::Failed));
                    if failed {
                        return;
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
