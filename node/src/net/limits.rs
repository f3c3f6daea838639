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
use std::collections::HashMap;
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
/// More points than this say nothing new (the peer is far below the graylist bound).
pub const MAX_POINTS: f64 = 1000.0;
pub const PENALTY_HALF_LIFE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct Limits {
    buckets: HashMap<(PeerId, Work), Bucket>,
    points: HashMap<PeerId, f64>,
    last_decay: Option<Instant>,
}

impl Limits {
    /// Take one unit of `work` for `peer` if its budget allows; otherwise charge it penalty
    /// points and say no.
    pub fn allow(&mut self, peer: PeerId, work: Work, now: Instant) -> bool {
        let rate = work.rate();
        let b = self.buckets.entry((peer, work)).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate.per_second;
        b.tokens = (b.tokens + refill).min(rate.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.penalise(peer, RATE_LIMITED_POINTS);
            false
        }
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
        self.buckets.retain(|(_, work), b| {
            let rate = work.rate();
            let full = b.tokens
                + now.saturating_duration_since(b.at).as_secs_f64() * rate.per_second
                >= rate.burst;
            !full
        });
        scores
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
