//! Rejoining without a trustworthy safety state.
//!
//! A replica whose database was lost comes back with the genesis safety state, and one restored
//! from a backup with an old one; either could sign a second time in a view it already signed
//! in. So before it signs anything (vote, timeout, view change, confirmation) it asks every
//! member for the highest view it signed in, waits for 2f+1 answers from others, and from then
//! on signs only above the highest answer.
//!
//! Why 2f+1 answers bound every view we may have signed in: a share of ours that matters
//! was given in a view `v` whose proposal (or term) rests on a certificate for the view before,
//! signed by a quorum of n-f. At most f of those are Byzantine and one is us, so at least
//! n-2f-1 honest others had signed in a view of at least `v - 1` before we did, and still
//! report so. 2f+1 answers from the n-1 others meet that set, so the highest answer is at least
//! `v - 1`, and signing only above `answer + 1` never repeats `v`.
//!
//! What this cannot bound: a share in the domain's very first view, which rests on the genesis
//! certificate alone. When every answer is the genesis state the replica goes on as new (that
//! is also how a new network starts, every database being empty).
//!
//! A member that does not answer (down, or withholding) would keep the replica silent for good,
//! and a new network with one member down could never start. So after `PATIENCE` rounds of
//! asking, n-f-1 answers (a quorum with ourselves) are enough: that still bounds every view we
//! signed in unless f members lie low and the honest ones that know better all stay silent.
//!
//! A member can lie. An answer lower than the truth only lowers one of 2f+1; one higher than
//! its own certificate allows is refused (an honest replica signs at most one view past its
//! highest certificate, or a few terms past it in a stuck local domain), so a liar can hold a
//! rejoining replica silent for a bounded stretch of views, never make it sign twice.

use crate::types::{Hash, ReplicaIndex, View};
use std::collections::{BTreeMap, BTreeSet};

/// Rounds of asking (one per base timeout) before n-f-1 answers are enough.
pub const PATIENCE: u64 = 10;

/// The wait is over.
#[derive(Debug)]
pub(crate) struct Rejoined {
    /// The block we would have voted for meanwhile, and its view.
    pub deferred: Option<(Hash, View)>,
}

#[derive(Debug, Default)]
pub(crate) struct Rejoin {
    /// The highest view each member that answered signed in.
    reports: BTreeMap<ReplicaIndex, View>,
    /// Members whose answer was refused this round: one certificate check each per round.
    refused: BTreeSet<ReplicaIndex>,
    /// Counts the timer that asks again.
    round: u64,
    /// A block we would have voted for meanwhile, and its view: reconsidered at the end.
    pub deferred: Option<(Hash, View)>,
    /// Enough members answered: the persist of the raised state, which ends the wait.
    pub ending: Option<u64>,
}

impl Rejoin {
    /// Take one member's answer (once per member).
    pub fn report(&mut self, from: ReplicaIndex, last_voted: View) {
        self.reports.entry(from).or_insert(last_voted);
    }

    /// The highest view any member signed in, once `needed` have answered.
    pub fn highest(&self, needed: usize) -> Option<View> {
        (self.reports.len() >= needed).then(|| self.reports.values().copied().max().unwrap_or(0))
    }

    pub fn answers(&self) -> usize {
        self.reports.len()
    }

    pub fn round(&self) -> u64 {
        self.round
    }

    /// Whether `from` has nothing more to say this round.
    pub fn heard(&self, from: ReplicaIndex) -> bool {
        self.reports.contains_key(&from) || self.refused.contains(&from)
    }

    pub fn refuse(&mut self, from: ReplicaIndex) {
        self.refused.insert(from);
    }

    /// Asking again: a member refused last round may answer again.
    pub fn next_round(&mut self) -> u64 {
        self.refused.clear();
        self.round += 1;
        self.round
    }
}
