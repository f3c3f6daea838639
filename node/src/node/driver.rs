//! One domain's replica with its timers: turns the replica's outputs into [`Effect`]s for the
//! main loop to carry out in order, and keeps one pending deadline per timer kind.

use crate::metrics::DomainObserver;
use lcbft_protocol::anchor::CommitProof;
use lcbft_protocol::io::{Event, Input, Output, SafetyState, Timer};
use lcbft_protocol::message::Message;
use lcbft_protocol::replica::Replica;
use lcbft_protocol::types::{Block, DomainId, ReplicaIndex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub enum Effect {
    Send {
        to: ReplicaIndex,
        msg: Message,
    },
    Broadcast(Message),
    Persist {
        seq: u64,
        state: Box<SafetyState>,
        blocks: Vec<Block>,
    },
    Commit {
        block: Box<Block>,
        proof: CommitProof,
    },
    Event(Event),
}

pub struct Driver {
    pub domain: DomainId,
    pub me: ReplicaIndex,
    replica: Replica,
    /// Pending timers: a new timer of a kind replaces the pending one of that kind.
    timers: [Option<(Instant, Timer)>; 6],
    /// Sees every input, output and status, for the domain's metrics.
    obs: DomainObserver,
}

fn slot(t: &Timer) -> usize {
    match t {
        Timer::View(_) => 0,
        Timer::Term(_) => 1,
        Timer::Sync(_) => 2,
        Timer::Delay(_) => 3,
        Timer::Interval(_) => 4,
        Timer::Rejoin(_) => 5,
    }
}

impl Driver {
    pub fn new(domain: DomainId, me: ReplicaIndex, replica: Replica) -> Driver {
        Driver {
            domain,
            me,
            replica,
            timers: [None; 6],
            obs: DomainObserver::detached(domain),
        }
    }

    /// Record this domain's metrics with `obs`.
    pub fn observed(mut self, obs: DomainObserver) -> Driver {
        self.obs = obs;
        self
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Feed one input; the effects must be carried out in the order returned.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.obs.on_input(&input, now);
        for out in self.replica.handle(input) {
            self.obs.on_output(&out, now);
            match out {
                Output::Send { to, msg } => {
                    // The replica handles its own share internally.
                    if to != self.me {
                        effects.push(Effect::Send { to, msg });
                    }
                }
                Output::Broadcast(msg) => effects.push(Effect::Broadcast(msg)),
                Output::SetTimer { timer, after_ms } => {
                    self.timers[slot(&timer)] =
                        Some((now + Duration::from_millis(after_ms), timer));
                }
                Output::Persist { seq, state, blocks } => effects.push(Effect::Persist {
                    seq,
                    state: Box::new(state),
                    blocks,
                }),
                Output::Commit { block, proof } => effects.push(Effect::Commit {
                    block: Box::new(block),
                    proof,
                }),
                Output::Event(e) => effects.push(Effect::Event(e)),
            }
        }
        self.obs.on_status(&self.replica.status());
        effects
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().flatten().map(|(at, _)| *at).min()
    }

    /// Fire every timer due at `now`.
    pub fn fire_due(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for i in 0..self.timers.len() {
            if let Some((at, timer)) = self.timers[i]
                && at <= now
            {
                self.timers[i] = None;
                effects.extend(self.handle(Input::Timeout(timer), now));
            }
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{deal, keys};
    use lcbft_protocol::Config;
    use lcbft_protocol::types::Tx;

    #[test]
    fn the_leader_proposes_and_a_timer_replaces_its_kind() {
        let dealt = deal(4);
        // View 1's leader is member 1 (round-robin).
        let cfg = Config::new(DomainId::Global, 1, 4).unpaced();
        let replica = Replica::new(cfg, keys(&dealt, 4, 1));
        let mut d = Driver::new(DomainId::Global, 1, replica);
        assert!(d.next_deadline().is_none(), "idle: no timer before work");
        let now = Instant::now();
        let effects = d.handle(Input::Payload(vec![Tx::new(b"x".to_vec())]), now);
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Broadcast(Message::Propose(_)))),
            "{effects:?}"
        );
        let deadline = d.next_deadline().expect("view timer armed");
        assert!(deadline > now);
        // Nothing is due before the deadline; at it, the view times out.
        assert!(d.fire_due(now).is_empty());
        let fired = d.fire_due(deadline);
        assert!(
            !fired.is_empty(),
            "a view timeout produces a NewView or persist"
        );
    }

    #[test]
    fn a_paced_leader_proposes_when_its_delay_is_due() {
        let dealt = deal(4);
        let mut cfg = Config::new(DomainId::Global, 1, 4);
        cfg.propose_delay_ms = 200;
        let replica = Replica::new(cfg, keys(&dealt, 4, 1));
        let mut d = Driver::new(DomainId::Global, 1, replica);
        let now = Instant::now();
        let effects = d.handle(Input::Payload(vec![Tx::new(b"x".to_vec())]), now);
        let proposes = |effects: &[Effect]| {
            effects
                .iter()
                .any(|e| matches!(e, Effect::Broadcast(Message::Propose(_))))
        };
        assert!(!proposes(&effects), "{effects:?}");
        let delay = Duration::from_millis(200);
        assert_eq!(
            d.next_deadline(),
            Some(now + delay),
            "the delay is the first due"
        );
        assert!(!proposes(&d.fire_due(now + delay / 2)));
        assert!(proposes(&d.fire_due(now + delay)));
    }
}
