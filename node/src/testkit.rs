//! Test helpers: a synchronous in-memory cluster of real replicas (real threshold keys, no
//! network) that persists into [`Store`]s exactly as the node does.

use crate::store::Store;
use lcbft_protocol::Config;
use lcbft_protocol::crypto::{Dealer, DealtKeys, ThresholdCryptoScheme, ThresholdKeys, load_keys};
use lcbft_protocol::io::{Input, Output, Timer};
use lcbft_protocol::replica::Replica;
use lcbft_protocol::types::{DomainId, ReplicaIndex, Tx};
use std::collections::VecDeque;

pub fn deal(n: usize) -> DealtKeys {
    ThresholdCryptoScheme::deal(n, n - (n - 1) / 3, [7; 32])
}

pub fn keys(dealt: &DealtKeys, n: usize, me: ReplicaIndex) -> Box<dyn ThresholdKeys> {
    load_keys(
        dealt.scheme,
        n,
        &dealt.public,
        dealt.secrets.get(usize::from(me)),
    )
    .expect("dealt keys load")
}

pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub stores: Vec<Store>,
    /// The last safety state each replica asked to persist.
    pub persisted: Vec<Option<lcbft_protocol::io::SafetyState>>,
    queue: VecDeque<(usize, Input)>,
    /// Pacing timers set, fired once the cluster is quiet.
    pacing: Vec<(usize, Timer)>,
}

impl Cluster {
    pub fn new(dealt: &DealtKeys, stores: Vec<Store>) -> Cluster {
        let n = stores.len();
        let replicas = (0..n)
            .map(|i| {
                let me = i as ReplicaIndex;
                Replica::new(Config::new(DomainId::Global, me, n), keys(dealt, n, me))
            })
            .collect();
        Cluster {
            replicas,
            persisted: vec![None; n],
            stores,
            queue: VecDeque::new(),
            pacing: Vec::new(),
        }
    }

    pub fn submit(&mut self, tx: Tx) {
        for i in 0..self.replicas.len() {
            self.queue.push_back((i, Input::Payload(vec![tx.clone()])));
        }
    }

    /// Deliver everything queued. The happy path needs no timeout; pacing timers fire once
    /// nothing else is left, as they would after their delay.
    pub fn run(&mut self, max_steps: usize) {
        let n = self.replicas.len();
        for _ in 0..max_steps {
            if self.queue.is_empty() {
                let due = self.pacing.drain(..).map(|(i, t)| (i, Input::Timeout(t)));
                self.queue.extend(due);
            }
            let Some((i, input)) = self.queue.pop_front() else {
                return;
            };
            let from = i as ReplicaIndex;
            for out in self.replicas[i].handle(input) {
                match out {
                    Output::Send { to, msg } => self
                        .queue
                        .push_back((usize::from(to), Input::Message { from, msg })),
                    Output::Broadcast(msg) => {
                        for j in (0..n).filter(|&j| j != i) {
                            self.queue.push_back((
                                j,
                                Input::Message {
                                    from,
                                    msg: msg.clone(),
                                },
                            ));
                        }
                    }
                    Output::Persist { seq, state, blocks } => {
                        self.stores[i]
                            .save_safety(DomainId::Global, &state, &blocks)
                            .expect("persist");
                        self.persisted[i] = Some(state);
                        self.queue.push_back((i, Input::Persisted(seq)));
                    }
                    Output::Commit { block, proof } => {
                        self.stores[i].commit_block(&block, &proof).expect("commit");
                    }
                    Output::SetTimer {
                        timer: t @ (Timer::Delay(_) | Timer::Interval(_)),
                        ..
                    } => self.pacing.push((i, t)),
                    Output::SetTimer { .. } | Output::Event(_) => {}
                }
            }
        }
    }
}
