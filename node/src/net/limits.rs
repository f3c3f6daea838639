//! What a peer may make us do, per second, and what it costs the peer to ask for more
//! (DESIGN §7: every expensive check a peer can trigger is rate-limited per peer).
//!
//! One token bucket per (peer, kind of work). Requests over the limit are dropped (and
//! counted by the caller) and add penalty points to the peer; the network task hands minus
//! the points to gossipsub as the peer's application score (`scoring.rs`), so a peer that
//! keeps pushing ends up graylisted there too. Points halve every [`PENALTY_HALF_LIFE`].
//!
//! Only admitted peers (genesis members, configured observers) reach this: the maps hold at
//! most a few entries per admitted peer, and buckets that refilled are dropped.

use libp2p::PeerId;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// Kinds of work a peer can ask for, each with its own budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Any point-to-point request: decode and hand to the replica.
    Direct,
    /// A block sync request: an answer of up to a megabyte.
    Sync,
    /// An `Anchored` notice, charged to its author: two pairings to verify.
    Notice,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Work {
    /// The budgets. Honest peaks, for scale: a member sends the next leader one vote per
    /// view plus the odd timeout, view-change share and sync answer, and views run at under
    /// ten a second under load (README, Performance), so 200 a second is ample;
    /// a lagging replica asks one peer per missing block every half base timeout; an edge
    /// sends one notice per second.
    pub const fn rate(self) -> Rate {
        match self {
            Work::Direct => Rate {
                per_second: 200.0,
                burst: 400.0,
            },
            Work::Sync => Rate {
                per_second: 8.0,
                burst: 16.0,
            },
            Work::Notice => Rate {
                per_second: 2.0,
                burst: 5.0,
            },
        }
    }
}

/// Penalty points per refusal.
pub const RATE_LIMITED_POINTS: f64 = 1.0;
/// A request we cannot read or that names a domain we are not in: no honest member sends it.
pub const INVALID_POINTS: f64 = 10.0;
/// What a failed share or certificate check costs its sender, in direct requests: a check is
/// a pairing or two, a thousand times the work of passing a request on. So a member sending
/// bad shares gets about four checked a second instead of its 200 requests' worth.
pub const FAILED_CHECK_COST: f64 = 50.0;
/// Points at which a peer is cut off: its connections are closed and refused. A refused
/// request is cheap, but a peer sending thousands a second still costs us a substream, a
/// decryption and an answer each; this many points within a half-life is far beyond what
/// an honest member reaches (it stays within its budgets).
pub const CUT_OFF_POINTS: f64 = 500.0;
/// A cut-off peer may connect again once its points decayed below this: 20-30 s after its
/// last refusal, and cut off again within a second if it goes on.
pub const LET_BACK_POINTS: f64 = 125.0;
/// More points than this say nothing new (the peer is far below the graylist bound).
pub const MAX_POINTS: f64 = 1000.0;
pub const PENALTY_HALF_LIFE: Duration = Duration::from_secs(10);

/// A token bucket; the one refill rule for every budget.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    pub tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    /// Refill at `rate` up to `now`.
    pub fn refill(&mut self, rate: Rate, now: Instant) {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate.per_second;
        self.tokens = (self.tokens + refill).min(rate.burst);
        self.at = now;
    }

    /// Whether it would be full at `now`: it says nothing a fresh bucket would not.
    pub fn refilled(&self, rate: Rate, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate.per_second
            >= rate.burst
    }
}

#[derive(Debug, Default)]
pub struct Limits {
    buckets: HashMap<(PeerId, Work), Bucket>,
    points: HashMap<PeerId, f64>,
    last_decay: Option<Instant>,
    /// Peers whose connections we refuse until their points decay (see [`CUT_OFF_POINTS`]).
    cut_off: HashSet<PeerId>,
}

impl Limits {
    /// Take one unit of `work` for `peer` if its budget allows; otherwise charge it penalty
    /// points and say no.
    pub fn allow(&mut self, peer: PeerId, work: Work, now: Instant) -> bool {
        let b = self.bucket(peer, work, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.penalise(peer, RATE_LIMITED_POINTS);
            false
        }
    }

    /// `peer` made us check a share or certificate that failed: it pays
    /// [`FAILED_CHECK_COST`] requests of its direct budget (its next requests are refused until
    /// that refills) and the points of an invalid request.
    pub fn charge_failed_check(&mut self, peer: PeerId, now: Instant) {
        let burst = Work::Direct.rate().burst;
        let b = self.bucket(peer, Work::Direct, now);
        b.tokens = (b.tokens - FAILED_CHECK_COST).max(-burst);
        self.penalise(peer, INVALID_POINTS);
    }

    /// `peer`'s bucket for `work`, refilled up to `now`.
    fn bucket(&mut self, peer: PeerId, work: Work, now: Instant) -> &mut Bucket {
        let rate = work.rate();
        let b = self
            .buckets
            .entry((peer, work))
            .or_insert(Bucket::full(rate, now));
        b.refill(rate, now);
        b
    }

    pub fn penalise(&mut self, peer: PeerId, points: f64) {
        let p = self.points.entry(peer).or_default();
        *p = (*p + points).min(MAX_POINTS);
    }

    #[cfg(test)]
    pub fn points(&self, peer: &PeerId) -> f64 {
        self.points.get(peer).copied().unwrap_or(0.0)
    }

    /// Age the points and forget refilled buckets; returns each penalised peer with its new
    /// application score (minus its points; 0 once forgiven, after which it is forgotten).
    pub fn decay(&mut self, now: Instant) -> Vec<(PeerId, f64)> {
        let elapsed = self
            .last_decay
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_decay = Some(now);
        let factor = 0.5f64.powf(elapsed.as_secs_f64() / PENALTY_HALF_LIFE.as_secs_f64());
        let mut scores: Vec<(PeerId, f64)> = Vec::new();
        self.points.retain(|peer, p| {
            *p *= factor;
            let keep = *p >= 0.01;
            scores.push((*peer, if keep { -*p } else { 0.0 }));
            keep
        });
        self.buckets
            .retain(|(_, work), b| !b.refilled(work.rate(), now));
        scores
    }

    /// Peers to cut off now, and cut-off peers to let back now.
    pub fn cut_offs(&mut self) -> (Vec<PeerId>, Vec<PeerId>) {
        let cut: Vec<PeerId> = self
            .points
            .iter()
            .filter(|(peer, p)| **p >= CUT_OFF_POINTS && !self.cut_off.contains(*peer))
            .map(|(peer, _)| *peer)
            .collect();
        self.cut_off.extend(cut.iter().copied());
        let points = &self.points;
        let mut back = Vec::new();
        self.cut_off.retain(|peer| {
            let keep = points.get(peer).is_some_and(|p| *p >= LET_BACK_POINTS);
            if !keep {
                back.push(*peer);
            }
            keep
        });
        (cut, back)
    }

    pub fn is_cut_off(&self, peer: &PeerId) -> bool {
        self.cut_off.contains(peer)
    }

    pub fn cut_off_count(&self) -> usize {
        self.cut_off.len()
    }

    /// Peers holding penalty points.
    pub fn penalised(&self) -> usize {
        self.points.len()
    }

    /// Entries held (for tests of the bound).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len() + self.points.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_and_the_excess_costs_points() {
        let mut l = Limits::default();
        let p = PeerId::random();
        let t0 = Instant::now();
        let burst = Work::Sync.rate().burst as usize;
        assert!((0..burst).all(|_| l.allow(p, Work::Sync, t0)));
        assert!(!l.allow(p, Work::Sync, t0));
        assert_eq!(l.points(&p), RATE_LIMITED_POINTS);
        // Other work has its own budget.
        assert!(l.allow(p, Work::Direct, t0));
        // A second later: `per_second` more.
        let t1 = t0 + Duration::from_secs(1);
        let per_second = Work::Sync.rate().per_second as usize;
        assert!((0..per_second).all(|_| l.allow(p, Work::Sync, t1)));
        assert!(!l.allow(p, Work::Sync, t1));
        // Another peer is not affected.
        assert!(l.allow(PeerId::random(), Work::Sync, t1));
    }

    #[test]
    fn a_failed_check_costs_its_sender_direct_requests_and_points() {
        let mut l = Limits::default();
        let liar = PeerId::random();
        let t0 = Instant::now();
        let rate = Work::Direct.rate();
        for _ in 0..rate.burst as usize {
            assert!(l.allow(liar, Work::Direct, t0));
        }
        l.charge_failed_check(liar, t0);
        assert_eq!(l.points(&liar), INVALID_POINTS);
        // The cost must refill before the next request passes: not after 1/200 s ...
        let refilled = |cost: f64| Duration::from_secs_f64(cost / rate.per_second);
        assert!(!l.allow(liar, Work::Direct, t0 + refilled(1.0)));
        // ... only after the cost and one more request.
        let t1 = t0 + refilled(FAILED_CHECK_COST + 2.0);
        assert!(l.allow(liar, Work::Direct, t1));
        // Debt is bounded: a thousand failed checks cost at most one burst.
        for _ in 0..1000 {
            l.charge_failed_check(liar, t1);
        }
        assert_eq!(l.points(&liar), MAX_POINTS);
        assert!(!l.allow(liar, Work::Direct, t1 + refilled(rate.burst)));
        assert!(l.allow(liar, Work::Direct, t1 + refilled(rate.burst + 2.0)));
        // Another member is not affected.
        assert!(l.allow(PeerId::random(), Work::Direct, t0));
    }

    #[test]
    fn a_peer_deep_in_penalties_is_cut_off_until_they_decay() {
        let mut l = Limits::default();
        let liar = PeerId::random();
        let other = PeerId::random();
        let t0 = Instant::now();
        l.decay(t0);
        l.penalise(other, CUT_OFF_POINTS - 1.0);
        assert_eq!(l.cut_offs(), (vec![], vec![]));
        l.penalise(liar, CUT_OFF_POINTS);
        assert_eq!(l.cut_offs(), (vec![liar], vec![]));
        assert!(l.is_cut_off(&liar) && !l.is_cut_off(&other));
        // Reported once.
        assert_eq!(l.cut_offs(), (vec![], vec![]));
        // Two half-lives: 500 -> 125 points, still out; a little later, back.
        l.decay(t0 + PENALTY_HALF_LIFE * 2 - Duration::from_millis(100));
        assert_eq!(l.cut_offs(), (vec![], vec![]));
        l.decay(t0 + PENALTY_HALF_LIFE * 2 + Duration::from_millis(100));
        assert_eq!(l.cut_offs(), (vec![], vec![liar]));
        assert_eq!(l.cut_off_count(), 0);
    }

    #[test]
    fn points_halve_per_half_life_and_are_forgiven() {
        let mut l = Limits::default();
        let p = PeerId::random();
        let t0 = Instant::now();
        l.decay(t0);
        l.penalise(p, 100.0);
        let s = l.decay(t0 + PENALTY_HALF_LIFE);
        assert_eq!(s.len(), 1);
        assert!((s[0].1 + 50.0).abs() < 1e-6, "{s:?}");
        let s = l.decay(t0 + PENALTY_HALF_LIFE * 20);
        assert_eq!(s, vec![(p, 0.0)]);
        assert!(l.decay(t0 + PENALTY_HALF_LIFE * 21).is_empty());
    }

    #[test]
    fn points_are_capped_and_idle_buckets_dropped() {
        let mut l = Limits::default();
        let p = PeerId::random();
        let t0 = Instant::now();
        for _ in 0..10_000 {
            l.penalise(p, INVALID_POINTS);
        }
        assert_eq!(l.points(&p), MAX_POINTS);
        for _ in 0..100 {
            l.allow(PeerId::random(), Work::Notice, t0);
        }
        l.decay(t0 + Duration::from_secs(60));
        assert_eq!(l.len(), 1, "only the penalised peer's points remain");
    }
}
