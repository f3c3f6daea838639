//! The basic phase's vote collection (paper Algorithm 4, DESIGN §2): one `Collector` gathers
//! threshold shares for every phase of both layers, keyed by the message they sign.
//!
//! Combining is optimistic: once `n - f` shares are in, combine them and verify the result
//! once. Only when that fails are the shares checked one by one; the bad signers are
//! reported (for scoring) and from then on every further share of that message is checked
//! on arrival. With honest shares a phase costs one combine and one verification.

use crate::crypto::{Share, ThresholdKeys};
use crate::types::{Bitmap, Certificate, Hash, Kind, ReplicaIndex, SignedMsg, View};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What adding a share did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Counted; not yet a quorum.
    Pending,
    /// This share completed a certificate (returned once per message); `invalid` lists
    /// signers whose shares failed on the way, to penalise.
    Formed {
        cert: Certificate,
        invalid: Vec<ReplicaIndex>,
    },
    /// Duplicate, late, or from a signer that already signed another digest in this slot.
    Ignored,
    /// Shares that failed verification, by signer: penalise them.
    Invalid(Vec<ReplicaIndex>),
    /// `signer` voted for two blocks in one view and both shares verify: evidence of a double
    /// vote (a Byzantine member, or a replica that lost its safety state). Reported once per
    /// signer and view; the second share is not counted.
    DoubleVote {
        signer: ReplicaIndex,
        view: View,
        first: Hash,
        second: Hash,
    },
}

#[derive(Default)]
struct Pending {
    shares: BTreeMap<ReplicaIndex, Share>,
    /// After a failed combine every share is verified before it is kept.
    suspicious: bool,
    done: bool,
}

/// One collector per replica and domain; slots are `(kind, view)`.
#[derive(Default)]
pub struct Collector {
    slots: BTreeMap<(Kind, View), Slot>,
    /// Signers caught with a bad share: theirs are verified on arrival from then on, so one
    /// liar cannot make every later phase pay a failed combine and a full share check.
    suspects: BTreeSet<ReplicaIndex>,
}

#[derive(Default)]
struct Slot {
    /// Which digest each signer signed in this slot: honest replicas sign one.
    signed: HashMap<ReplicaIndex, Signed>,
    by_digest: HashMap<Hash, Pending>,
}

/// A signer's first share in a slot. For votes the share is kept until a conflicting vote was
/// judged: a double vote is only reported when both shares verify, so a share forged in a
/// signer's name (relayed inside a NewView or Timeout) never makes an honest member look
/// like an equivocator.
struct Signed {
    digest: Hash,
    share: Option<Share>,
    /// A conflicting vote from this signer was judged already: one verdict per signer and
    /// slot, so a liar cannot make us pay pairings again and again.
    judged: bool,
}

impl Collector {
    pub fn add(
        &mut self,
        keys: &dyn ThresholdKeys,
        msg: SignedMsg,
        signer: ReplicaIndex,
        share: Share,
    ) -> Added {
        if usize::from(signer) >= keys.size() {
            return Added::Invalid(vec![signer]);
        }
        let slot = self.slots.entry((msg.kind, msg.view)).or_default();
        // A vote for a second block in one view is equivocation: only the first counts. Other
        // kinds may be re-signed for a new digest (a new leader retrying with a higher QC),
        // within a bound so a liar cannot make us hold unbounded digests.
        if msg.kind == Kind::Vote
            && let Some(first) = slot.signed.get_mut(&signer)
            && first.digest != msg.digest
        {
            return judge_double_vote(keys, msg, signer, &share, first);
        }
        if !slot.by_digest.contains_key(&msg.digest) && slot.by_digest.len() >= 2 * keys.size() {
            return Added::Ignored;
        }
        let pending = slot.by_digest.entry(msg.digest).or_default();
        if pending.shares.contains_key(&signer) {
            return Added::Ignored;
        }
        if pending.done {
            return Added::Ignored;
        }
        let bytes = msg.bytes();
        if (pending.suspicious || self.suspects.contains(&signer))
            && !keys.verify_share(signer, &bytes, &share)
        {
            return Added::Invalid(vec![signer]);
        }
        slot.signed.entry(signer).or_insert_with(|| Signed {
            digest: msg.digest,
            share: (msg.kind == Kind::Vote).then(|| share.clone()),
            judged: false,
        });
        pending.shares.insert(signer, share);
        if pending.shares.len() < keys.quorum() {
            return Added::Pending;
        }
        let (cert, bad) = try_combine(keys, &msg, pending);
        self.suspects.extend(bad.iter().copied());
        match cert {
            Some(cert) => {
                pending.done = true;
                pending.shares.clear();
                Added::Formed { cert, invalid: bad }
            }
            None if bad.is_empty() => Added::Pending,
            None => Added::Invalid(bad),
        }
    }

    /// How many distinct signers sent a share in this slot (for any digest).
    pub fn signers(&self, kind: Kind, view: View) -> usize {
        self.slots.get(&(kind, view)).map_or(0, |s| s.signed.len())
    }

    /// Slots held, for every kind and view.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Forget slots of `kind` below `view`: they can no longer matter.
    pub fn prune(&mut self, kind: Kind, below: View) {
        self.slots.retain(|(k, v), _| *k != kind || *v >= below);
    }
}

/// A second vote from `signer` in `msg`'s view, for another block than its `first`: evidence
/// only if both shares verify (the first may have been forged and relayed by someone else).
fn judge_double_vote(
    keys: &dyn ThresholdKeys,
    msg: SignedMsg,
    signer: ReplicaIndex,
    share: &Share,
    first: &mut Signed,
) -> Added {
    if first.judged {
        return Added::Ignored;
    }
    first.judged = true;
    let earlier = SignedMsg {
        digest: first.digest,
        ..msg
    };
    let Some(first_share) = first.share.take() else {
        return Added::Ignored;
    };
    if keys.verify_share(signer, &msg.bytes(), share)
        && keys.verify_share(signer, &earlier.bytes(), &first_share)
    {
        Added::DoubleVote {
            signer,
            view: msg.view,
            first: first.digest,
            second: msg.digest,
        }
    } else {
        Added::Ignored
    }
}

/// Combine the first quorum of shares; on failure verify each, drop the bad ones, and retry
/// with what is left. Also returns the signers found invalid on the way.
fn try_combine(
    keys: &dyn ThresholdKeys,
    msg: &SignedMsg,
    pending: &mut Pending,
) -> (Option<Certificate>, Vec<ReplicaIndex>) {
    let bytes = msg.bytes();
    let mut bad = Vec::new();
    loop {
        let chosen: Vec<(ReplicaIndex, &Share)> = pending
            .shares
            .iter()
            .take(keys.quorum())
            .map(|(i, s)| (*i, s))
            .collect();
        if chosen.len() < keys.quorum() {
            return (None, bad);
        }
        if let Ok(signature) = keys.combine(&chosen)
            && keys.verify(&bytes, &signature)
        {
            let cert = Certificate {
                msg: *msg,
                signers: Bitmap::from_indices(keys.size(), chosen.iter().map(|(i, _)| *i)),
                signature,
            };
            return (Some(cert), bad);
        }
        if pending.suspicious {
            // Everything kept was verified already; a failure now means the backend refused.
            return (None, bad);
        }
        pending.suspicious = true;
        let invalid: Vec<ReplicaIndex> = pending
            .shares
            .iter()
            .filter(|(i, s)| !keys.verify_share(**i, &bytes, s))
            .map(|(i, _)| *i)
            .collect();
        for i in &invalid {
            pending.shares.remove(i);
        }
        bad.extend(invalid);
    }
}
