//! When a leader with work proposes. Every block costs each member a share signature and a
//! certificate check, so under light traffic a leader that proposes as soon as one item is
//! pending spends most of a small device's energy on nearly empty blocks. The pacer holds
//! new payload back until it has waited `delay_ms`, and spaces blocks at least `interval_ms`
//! apart, unless the payload is big enough to be worth a block at once (`Config::busy_bytes`
//! or a full block): then neither wait applies, so under load the chain runs at its own pace.
//! The core has no clock: both waits are timers the driver fires.

use crate::io::{Output, Timer};

pub(crate) struct Pacer {
    delay_ms: u64,
    interval_ms: u64,
    /// The delay for the payload pending now has started (its timer is set or it passed).
    waiting: bool,
    /// ... and has passed.
    waited: bool,
    /// The minimum interval since the last block has not passed yet.
    holding: bool,
    /// Timers carry the epoch they were set in: a wait that was cut short (the payload went
    /// into a block) must not open the next one when its stale timer fires.
    delay_epoch: u64,
    interval_epoch: u64,
}

/// What is pending when a leader asks whether to propose.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Work {
    /// Payload not yet in a block.
    pub new: bool,
    /// The new payload is big enough that waiting saves nothing: it goes out at once.
    pub busy: bool,
    /// Payload on the chain whose commit only further blocks finish or announce. It has
    /// waited its delay already (it went into a block), so only the interval holds it.
    pub chain: bool,
}

impl Pacer {
    pub fn new(delay_ms: u64, interval_ms: u64) -> Pacer {
        Pacer {
            delay_ms,
            interval_ms,
            waiting: false,
            waited: false,
            holding: false,
            delay_epoch: 0,
            interval_epoch: 0,
        }
    }

    /// Whether a leader may propose now. New payload starts its delay here, so the delay runs
    /// while an earlier block is still being certified.
    pub fn ready(&mut self, work: Work, out: &mut Vec<Output>) -> bool {
        if !work.new && !work.chain {
            self.forget_delay();
            return false;
        }
        if work.busy {
            return true;
        }
        if work.new && !self.waiting {
            self.waiting = true;
            if self.delay_ms == 0 {
                self.waited = true;
            } else {
                self.delay_epoch += 1;
                out.push(Output::SetTimer {
                    timer: Timer::Delay(self.delay_epoch),
                    after_ms: self.delay_ms,
                });
            }
        }
        let due = work.chain || self.waited;
        due && !self.holding
    }

    /// A block went out with the pending payload: the next payload waits afresh.
    pub fn proposed(&mut self) {
        self.forget_delay();
    }

    /// Start the minimum interval before the next block.
    pub fn hold(&mut self, out: &mut Vec<Output>) {
        if self.interval_ms == 0 {
            return;
        }
        self.holding = true;
        self.interval_epoch += 1;
        out.push(Output::SetTimer {
            timer: Timer::Interval(self.interval_epoch),
            after_ms: self.interval_ms,
        });
    }

    /// A pacing timer fired; true if it opened a wait, so the leader should look again.
    pub fn fired(&mut self, timer: Timer) -> bool {
        match timer {
            Timer::Delay(epoch) if epoch == self.delay_epoch && self.waiting && !self.waited => {
                self.waited = true;
                true
            }
            Timer::Interval(epoch) if epoch == self.interval_epoch && self.holding => {
                self.holding = false;
                true
            }
            _ => false,
        }
    }

    fn forget_delay(&mut self) {
        // A stale timer finds `waiting` false, or a newer epoch once the next wait starts.
        self.waiting = false;
        self.waited = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers(out: &[Output]) -> Vec<(Timer, u64)> {
        out.iter()
            .filter_map(|o| match o {
                Output::SetTimer { timer, after_ms } => Some((*timer, *after_ms)),
                _ => None,
            })
            .collect()
    }

    const NEW: Work = Work {
        new: true,
        busy: false,
        chain: false,
    };

    #[test]
    fn new_payload_waits_the_delay_then_the_interval_spaces_blocks() {
        let mut p = Pacer::new(200, 500);
        let mut out = Vec::new();
        assert!(!p.ready(NEW, &mut out));
        assert_eq!(timers(&out), vec![(Timer::Delay(1), 200)]);
        // More payload within the delay starts no second wait.
        out.clear();
        assert!(!p.ready(NEW, &mut out));
        assert!(out.is_empty());
        assert!(p.fired(Timer::Delay(1)));
        assert!(p.ready(NEW, &mut out));
        p.proposed();
        p.hold(&mut out);
        assert_eq!(timers(&out), vec![(Timer::Interval(1), 500)]);
        // A chain block is due at once but not before the interval.
        let chain = Work {
            chain: true,
            ..Work::default()
        };
        assert!(!p.ready(chain, &mut out));
        assert!(p.fired(Timer::Interval(1)));
        assert!(p.ready(chain, &mut out));
    }

    #[test]
    fn busy_payload_skips_the_delay_and_a_stale_delay_opens_nothing() {
        let mut p = Pacer::new(200, 0);
        let mut out = Vec::new();
        assert!(!p.ready(NEW, &mut out));
        let busy = Work { busy: true, ..NEW };
        assert!(p.ready(busy, &mut out));
        p.proposed();
        out.clear();
        // The wait started for the payload that just went out is void.
        assert!(!p.fired(Timer::Delay(1)));
        out.clear();
        assert!(!p.ready(NEW, &mut out));
        assert_eq!(timers(&out), vec![(Timer::Delay(2), 200)]);
    }

    #[test]
    fn busy_payload_skips_the_interval_and_small_payload_waits_it_again() {
        let mut p = Pacer::new(200, 500);
        let mut out = Vec::new();
        let busy = Work { busy: true, ..NEW };
        assert!(p.ready(busy, &mut out));
        p.proposed();
        p.hold(&mut out);
        assert!(p.ready(busy, &mut out), "held back by the interval");
        p.proposed();
        p.hold(&mut out);
        // Traffic drops: a small block waits its delay and the interval again.
        out.clear();
        assert!(!p.ready(NEW, &mut out));
        assert!(p.fired(Timer::Delay(1)));
        assert!(!p.ready(NEW, &mut out), "the interval no longer holds");
        assert!(p.fired(Timer::Interval(2)));
        assert!(p.ready(NEW, &mut out));
    }

    #[test]
    fn without_delay_and_interval_a_leader_proposes_at_once() {
        let mut p = Pacer::new(0, 0);
        let mut out = Vec::new();
        assert!(p.ready(NEW, &mut out));
        p.proposed();
        p.hold(&mut out);
        assert!(p.ready(NEW, &mut out));
        assert!(out.is_empty(), "no timers: {out:?}");
        assert!(!p.ready(Work::default(), &mut out));
    }
}
