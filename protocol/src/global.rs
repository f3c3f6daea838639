//! The global domain: three-chain chained HotStuff with a round-robin leader per view
//! (paper Algorithm 3, DESIGN §3) and a pacemaker whose timeouts form certificates.

use crate::anchor::{AnchorRules, Tips};
use crate::core::{Config, Core};
use crate::crypto::ThresholdKeys;
use crate::io::{Event, Input, Output, Reject, SafetyState, Timer};
use crate::message::{Message, Proposal};
use crate::replica::Stored;
use crate::types::{Certificate, Hash, Kind, ReplicaIndex, SignedMsg, Tx, View, Vote};
use std::collections::BTreeMap;

pub struct GlobalReplica {
    pub(crate) core: Core,
    view: View,
    /// Views entered since the last commit: the pacemaker's back-off exponent.
    failures: u64,
    /// Whether the current view's timer runs (it does only while there is work: idle rule).
    timer_armed: bool,
    /// As leader of `view`, the certificate that entitles us to propose, until we do.
    ready: Option<(Certificate, Option<Certificate>)>,
    proposed: View,
    /// Proposals for views we have not reached yet, or whose ancestry is being fetched.
    waiting: BTreeMap<View, (ReplicaIndex, Proposal)>,
    committed_seen: u64,
    /// The view we gave up on and our Timeout share for it (re-sent until the view ends).
    timed_out: Option<(View, Vote, u64)>,
    high_tc: Option<Certificate>,
    /// Our last vote, repeated with a timeout in its view.
    last_vote: Option<Vote>,
    /// Our Timeout shares for views we have left (with the persist covering each), given to
    /// members still in them.
    left: BTreeMap<View, (Vote, u64)>,
}

/// Leader of a view: round-robin over the member list (Algorithm 3).
pub fn leader(view: View, n: usize) -> ReplicaIndex {
    ReplicaIndex::try_from(view % n as u64).unwrap_or(0)
}

/// How far ahead of our view a buffered proposal may be.
const VIEW_WINDOW: View = 64;

impl GlobalReplica {
    pub fn new(cfg: Config, keys: Box<dyn ThresholdKeys>) -> GlobalReplica {
        GlobalReplica {
            core: Core::new(cfg, keys, 3),
            view: 1,
            failures: 0,
            timer_armed: false,
            ready: None,
            proposed: 0,
            waiting: BTreeMap::new(),
            committed_seen: 0,
            timed_out: None,
            high_tc: None,
            last_vote: None,
            left: BTreeMap::new(),
        }
        .started()
    }

    /// The leader of view 1 holds the genesis QC and may propose as soon as there is work.
    fn started(mut self) -> GlobalReplica {
        if leader(self.view, self.n()) == self.core.me() {
            self.ready = Some((self.core.safety.high_qc.clone(), None));
        }
        self
    }

    /// A replica restarted from disk: it resumes after its last voted view, never below.
    pub fn restore(cfg: Config, keys: Box<dyn ThresholdKeys>, stored: Stored) -> GlobalReplica {
        let domain = cfg.domain;
        let mut r = GlobalReplica::new(cfg, keys);
        let safety = stored
            .safety
            .unwrap_or_else(|| SafetyState::genesis(domain));
        r.ready = None;
        // Resume in the view we last acted in: having voted or timed out there we cannot vote
        // again, but we can still time out of it with the others.
        r.view = safety.last_voted.max(safety.high_qc.view() + 1);
        r.proposed = safety.last_voted;
        r.core.restore(stored.committed, stored.blocks, safety);
        r.committed_seen = r.core.tree.committed().1;
        // Leading the view right after our highest QC, we may still propose with it (unless
        // we already did: `proposed` covers that).
        let high_qc = r.core.safety.high_qc.clone();
        if r.view == high_qc.view() + 1 && leader(r.view, r.n()) == r.core.me() {
            r.ready = Some((high_qc, None));
        }
        if stored.rejoin {
            r.core.begin_rejoin();
        }
        r
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn members(&self) -> usize {
        self.core.cfg.n
    }

    pub fn committed_height(&self) -> u64 {
        self.core.tree.committed().1
    }

    pub fn blocks_in_memory(&self) -> usize {
        self.core.tree.len()
    }

    /// A block our highest QC or lock names that we do not hold (being fetched).
    pub fn missing_block(&self) -> Option<Hash> {
        self.core.missing_named()
    }

    pub fn safety(&self) -> &SafetyState {
        &self.core.safety
    }

    /// Share-collection slots held (bounded by the view window).
    pub fn collector_slots(&self) -> usize {
        self.core.collector.slots()
    }

    /// Check anchors in admitted payload and proposals against these local domains' keys;
    /// `anchored` is each domain's tip below the committed blocks in memory (see
    /// [`crate::memory_window`]), empty when the whole chain is in memory.
    pub fn set_anchor_rules(&mut self, rules: AnchorRules, anchored: Tips) {
        self.core.set_anchor_rules(rules, anchored);
    }

    /// Each local domain's last anchored (height, hash) in the committed chain.
    pub fn anchored(&self) -> &Tips {
        self.core.anchored()
    }

    fn n(&self) -> usize {
        self.core.cfg.n
    }

    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::Timeout(Timer::View(v)) => self.on_timeout(v),
            Input::Timeout(Timer::Sync(round)) => self.core.sync_retry(round),
            Input::Timeout(Timer::Term(_)) => {}
            Input::Timeout(t @ (Timer::Delay(_) | Timer::Interval(_))) => {
                if self.core.pace_fired(t) {
                    self.try_propose();
                }
            }
            Input::Payload(txs) => {
                let me = self.core.cfg.me;
                self.on_payload(txs, me);
            }
            Input::Relayed { from, txs } => self.on_payload(txs, from),
            Input::Persisted(seq) => {
                for msg in self.core.persisted(seq) {
                    self.on_own(msg);
                }
                self.rejoined();
            }
            Input::Start => {
                self.core.ask_for_news();
                let _ = self.core.ask_safety(0);
            }
            Input::Timeout(Timer::Rejoin(round)) => {
                if self.core.ask_safety(round).is_some() {
                    self.end_rejoin();
                }
            }
            // A validator behind its peers' memory is served from their disks instead.
            Input::StateTransfer { .. } => {}
        }
        std::mem::take(&mut self.core.out)
    }

    fn on_payload(&mut self, txs: Vec<Tx>, origin: ReplicaIndex) {
        self.core.admit_payload(txs, origin);
        self.try_propose();
        self.arm_timer();
    }

    fn on_message(&mut self, from: ReplicaIndex, msg: Message) {
        if usize::from(from) >= self.n() || from == self.core.me() {
            return;
        }
        match msg {
            Message::Propose(p) => self.on_proposal(from, p),
            Message::Vote(v) => self.on_vote(from, v),
            Message::NewView {
                timeout,
                high_qc,
                high_tc,
                vote,
            } => {
                let their_tc = high_tc.as_ref().map_or(0, Certificate::view);
                if let Some(tc) = high_tc {
                    self.on_tc(from, tc);
                }
                if let Some(v) = vote
                    && v.msg.view == timeout.msg.view
                {
                    self.collect_vote(from, v);
                }
                self.on_new_view(from, timeout, high_qc, their_tc);
            }
            Message::BlockRequest { hash, above } => self.core.on_block_request(from, hash, above),
            Message::BlockResponse(b) => {
                if self.core.on_block_response(from, b) {
                    self.retry_waiting();
                    self.try_propose();
                }
            }
            Message::Certificate(c) => self.on_certificate(from, c),
            Message::SafetyQuery => {
                let cert = match &self.high_tc {
                    Some(tc) if tc.view() > self.core.safety.high_qc.view() => tc.clone(),
                    _ => self.core.safety.high_qc.clone(),
                };
                self.core.on_safety_query(from, cert);
            }
            Message::SafetyReport { last_voted, cert } => {
                self.on_safety_report(from, last_voted, cert)
            }
            Message::ViewChange { .. }
            | Message::NewTerm { .. }
            | Message::Refuse { .. }
            | Message::TermStart(_) => self.core.reject(from, Reject::WrongDomain),
        }
    }

    /// A proposal is followed only in the view it is for, from that view's leader, carrying a
    /// valid QC for its parent and, when that QC is not from the previous view, a timeout
    /// certificate for the previous view.
    fn on_proposal(&mut self, from: ReplicaIndex, p: Proposal) {
        let b = &p.block;
        if b.domain != self.core.cfg.domain {
            return self.core.reject(from, Reject::WrongDomain);
        }
        if from != leader(b.view, self.n()) || b.proposer != from {
            return self.core.reject(from, Reject::NotLeader);
        }
        if !self.core.is_qc(&b.justify)
            || b.justify.block() != b.parent
            || b.justify.view() >= b.view
        {
            return self.core.reject(from, Reject::Malformed);
        }
        if b.view.saturating_add(1) < self.view || b.view > self.view + VIEW_WINDOW {
            return;
        }
        if !self.core.check_cert(&b.justify) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        if b.justify.view() + 1 != b.view {
            let ok = p.timeout.as_ref().is_some_and(|tc| {
                tc.msg.kind == Kind::Timeout
                    && tc.view().saturating_add(1) == b.view
                    && self.core.check_cert(tc)
            });
            if !ok {
                return self.core.reject(from, Reject::BadCertificate);
            }
            if let Some(tc) = &p.timeout
                && self.high_tc.as_ref().is_none_or(|t| t.view() < tc.view())
            {
                self.high_tc = Some(tc.clone());
            }
        }
        if !self.core.tree.contains(&b.parent) {
            self.core.fetch(b.parent, from);
            self.waiting.insert(b.view, (from, p));
            return;
        }
        self.accept(from, p);
    }

    /// The proposal is valid and its parent known: absorb its QC, enter its view, vote.
    fn accept(&mut self, from: ReplicaIndex, p: Proposal) {
        let block = p.block;
        let view = block.view;
        let justify = block.justify.clone();
        let hash = block.hash();
        if !self.core.insert_block(block, from) {
            return;
        }
        self.core.process_qc(&justify);
        self.note_commit();
        if view > self.view {
            // Entering a later view is safe here: the QC or timeout certificate just checked
            // proves a quorum left the previous view.
            self.enter_view(view);
        }
        if view == self.view && self.core.payload_valid(&hash, from) {
            self.vote(hash, view);
        }
        self.try_propose();
    }

    /// Vote rule (DESIGN §3): once per view, only above the last voted view, and only for a
    /// block that extends the lock or whose QC is newer than the lock. The two-chain lock
    /// then guarantees no vote can help certify a block conflicting with a committed one.
    fn vote(&mut self, hash: Hash, view: View) {
        let Some(node) = self.core.tree.get(&hash) else {
            return;
        };
        let justify_view = node.block.justify.view();
        let lock = &self.core.safety.lock;
        let safe = self.core.tree.extends(&hash, &lock.block()) || justify_view > lock.view();
        if view <= self.core.safety.last_voted || !safe {
            return;
        }
        if self.core.rejoining() {
            return self.core.defer_vote(hash, view);
        }
        let msg = SignedMsg {
            domain: self.core.cfg.domain,
            kind: Kind::Vote,
            view,
            digest: hash,
        };
        let Ok(share) = self.core.keys.sign_share(&msg.bytes()) else {
            return;
        };
        self.core.safety.last_voted = view;
        let to = leader(view + 1, self.n());
        let vote = Vote { msg, share };
        self.last_vote = Some(vote.clone());
        self.core.voted_for(hash);
        if to == self.core.me() {
            self.core.persist_with_own(Vec::new(), Message::Vote(vote));
        } else {
            self.core.persist_then(vec![Output::Send {
                to,
                msg: Message::Vote(vote),
            }]);
        }
        // Views advance only on a certificate (the next proposal's QC, or a timeout
        // certificate), never on our own vote: replicas that voted and replicas that did not
        // stay in one view and give up on it together.
    }

    /// A member's answer to our `SafetyQuery`. An honest member signs at most one view past
    /// its highest certificate (QC or timeout certificate); after a restart it may have
    /// forgotten its timeout certificate, hence the window. When the wait ends, the vote held
    /// back meanwhile is reconsidered and the pacemaker runs again.
    fn on_safety_report(&mut self, from: ReplicaIndex, last_voted: View, cert: Certificate) {
        let plausible = |v: View, c: &Certificate| {
            matches!(c.msg.kind, Kind::Vote | Kind::Timeout) && v <= c.view() + VIEW_WINDOW
        };
        if self
            .core
            .on_safety_report(from, last_voted, cert, plausible)
            .is_some()
        {
            self.end_rejoin();
        }
    }

    /// Enough members answered and our last voted view is raised: never propose at or below
    /// it either, and write it before anything is signed.
    fn end_rejoin(&mut self) {
        self.proposed = self.proposed.max(self.core.safety.last_voted);
        self.core.end_rejoin();
    }

    /// The raised safety state is durable: vote for what we held back, if still in its view.
    fn rejoined(&mut self) {
        let Some(done) = self.core.rejoined() else {
            return;
        };
        if let Some((hash, view)) = done.deferred
            && view == self.view
        {
            self.vote(hash, view);
        }
        self.try_propose();
        self.arm_timer();
    }

    /// Votes go to the next view's leader, which combines them into the QC it proposes with.
    fn on_vote(&mut self, from: ReplicaIndex, v: Vote) {
        if leader(v.msg.view.wrapping_add(1), self.n()) != self.core.me() {
            return;
        }
        self.collect_vote(from, v);
    }

    /// One path for every vote share, whether it came to us as the next leader or repeated
    /// in a timeout.
    fn collect_vote(&mut self, from: ReplicaIndex, v: Vote) {
        let m = v.msg;
        if m.domain != self.core.cfg.domain || m.kind != Kind::Vote {
            return self.core.reject(from, Reject::Malformed);
        }
        // A slot per view a peer names would otherwise stay until we reach that view.
        if m.view.saturating_add(1) < self.view || m.view > self.view + VIEW_WINDOW {
            return;
        }
        if let Some(cert) = self.core.collect(from, m, v.share) {
            self.on_qc(from, cert);
        }
    }

    fn on_certificate(&mut self, from: ReplicaIndex, qc: Certificate) {
        if !self.core.is_qc(&qc) || !self.core.check_cert(&qc) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        self.on_qc(from, qc);
    }

    /// A new QC: adopt it, and if it entitles us to lead the next view, do.
    fn on_qc(&mut self, from: ReplicaIndex, qc: Certificate) {
        if !self.core.tree.contains(&qc.block()) {
            self.core.fetch(qc.block(), from);
        }
        self.core.process_qc(&qc);
        self.note_commit();
        let next = qc.view() + 1;
        // A QC for a view proves a quorum finished it: whoever sees one moves past it.
        self.enter_view(next);
        if next == self.view && leader(next, self.n()) == self.core.me() {
            if self.ready.is_none() {
                // Leaders rotate, so the interval between blocks runs from the certificate
                // of the last one, not from our own last proposal views ago.
                self.core.hold_pace();
            }
            self.ready = Some((qc, None));
            self.try_propose();
        }
    }

    /// Timeouts are broadcast: every replica combines the view's timeout certificate and
    /// moves on together, so replicas that drifted a view apart resynchronise; the next leader
    /// proposes with it and the highest QC it was sent. Normal views stay linear.
    fn on_new_view(
        &mut self,
        from: ReplicaIndex,
        timeout: Vote,
        high_qc: Certificate,
        their_tc: View,
    ) {
        let m = timeout.msg;
        if m.domain != self.core.cfg.domain || m.kind != Kind::Timeout || m.digest != Hash::ZERO {
            return self.core.reject(from, Reject::Malformed);
        }
        // The window first: the view is the peer's, and only within it is `+ 1` safe.
        if m.view > self.view + VIEW_WINDOW || m.view + VIEW_WINDOW < self.view {
            return;
        }
        let next = m.view + 1;
        if !self.core.is_qc(&high_qc) || !self.core.check_cert(&high_qc) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        if m.view < self.view {
            self.core.process_qc(&high_qc);
            self.note_commit();
            if high_qc.view() >= self.view {
                self.on_qc(from, high_qc.clone());
            }
            if next == self.view
                && let Some(tc) = self.core.collect(from, m, timeout.share.clone())
            {
                // The previous view's timeout certificate: as its successor's leader, we
                // may propose with it.
                self.enter_by_tc(tc);
            }
            let their_best = high_qc.view().max(their_tc);
            return self.help_behind(from, timeout, their_best);
        }
        if !self.core.tree.contains(&high_qc.block()) {
            self.core.fetch(high_qc.block(), from);
        }
        self.core.process_qc(&high_qc);
        self.note_commit();
        if high_qc.view() >= self.view {
            // The sender holds a QC for a view we have not finished: a quorum moved past it.
            self.on_qc(from, high_qc);
        }
        if let Some(cert) = self.core.collect(from, m, timeout.share) {
            self.enter_by_tc(cert);
        } else {
            // f+1 replicas gave up on a view we are still in: one is honest, join them.
            if m.view == self.view
                && self.core.collector.signers(Kind::Timeout, m.view) > self.core.cfg.f()
                && self.timed_out.as_ref().is_none_or(|(v, _, _)| *v != m.view)
            {
                self.timer_armed = true;
                self.on_timeout(m.view);
            }
        }
    }

    /// A member still in a view we have left (it lost the certificate that moved us on, or
    /// we restarted past it and no longer hold that certificate ourselves). We add our own
    /// Timeout share for its view to its share, so the view's timeout certificate forms here
    /// if it can, and answer with whatever certificate moves it on. Only a member that shows
    /// no such certificate is answered, and every answer shows one: two members past a view
    /// never answer each other. We never vote in a view we have left, so the share gives
    /// nothing away; it is signed once per view and made durable before anything built on
    /// it leaves.
    fn help_behind(&mut self, from: ReplicaIndex, theirs: Vote, their_best: View) {
        let view = theirs.msg.view;
        if their_best >= view {
            return;
        }
        let (mine, seq) = match self.left.get(&view) {
            Some(t) => t.clone(),
            None => {
                let Some(t) = self.sign_timeout(view) else {
                    return;
                };
                self.core.safety.last_voted = self.core.safety.last_voted.max(view);
                // Counted here, with theirs, once durable (`on_own`); answered at their next
                // timeout.
                let _ = self.core.collect(from, theirs.msg, theirs.share);
                let own = Message::NewView {
                    timeout: t.clone(),
                    high_qc: self.core.safety.high_qc.clone(),
                    high_tc: self.high_tc.clone(),
                    vote: None,
                };
                let seq = self.core.persist_with_own(Vec::new(), own);
                return self.remember_left(t, seq);
            }
        };
        let best = |r: &Self| {
            let tc = r.high_tc.as_ref().map_or(0, Certificate::view);
            tc.max(r.core.safety.high_qc.view())
        };
        if best(self) < view {
            let me = self.core.me();
            for (signer, share) in [(me, mine.share.clone()), (from, theirs.share)] {
                if let Some(tc) = self.core.collect(signer, mine.msg, share) {
                    self.enter_by_tc(tc);
                }
            }
        }
        if best(self) >= view {
            let msg = Message::NewView {
                timeout: mine,
                high_qc: self.core.safety.high_qc.clone(),
                high_tc: self.high_tc.clone(),
                vote: None,
            };
            self.core
                .if_durable(seq, vec![Output::Send { to: from, msg }]);
        }
    }

    /// Our own share, now durable, taken in as if we had sent it to ourselves.
    fn on_own(&mut self, msg: Message) {
        let me = self.core.me();
        match msg {
            Message::Vote(v) => self.on_vote(me, v),
            Message::NewView {
                timeout,
                high_qc,
                vote,
                ..
            } => {
                if let Some(v) = vote {
                    self.collect_vote(me, v);
                }
                if timeout.msg.view >= self.view {
                    self.on_new_view(me, timeout, high_qc, 0);
                } else if let Some(tc) = self.core.collect(me, timeout.msg, timeout.share) {
                    self.enter_by_tc(tc);
                }
            }
            _ => {}
        }
    }

    /// Our Timeout share for `view`: we give up on it. None while rejoining.
    fn sign_timeout(&self, view: View) -> Option<Vote> {
        if self.core.rejoining() {
            return None;
        }
        let msg = SignedMsg {
            domain: self.core.cfg.domain,
            kind: Kind::Timeout,
            view,
            digest: Hash::ZERO,
        };
        let share = self.core.keys.sign_share(&msg.bytes()).ok()?;
        Some(Vote { msg, share })
    }

    fn remember_left(&mut self, timeout: Vote, seq: u64) {
        self.left.insert(timeout.msg.view, (timeout, seq));
        let floor = self.view.saturating_sub(VIEW_WINDOW);
        self.left.retain(|v, _| *v >= floor);
    }

    /// A timeout certificate someone else formed: if it ends a view we are still in, follow.
    fn on_tc(&mut self, from: ReplicaIndex, tc: Certificate) {
        // The previous view's certificate still matters to us as its successor's leader.
        if tc.msg.kind != Kind::Timeout || tc.view().saturating_add(1) < self.view {
            return;
        }
        if !self.core.check_cert(&tc) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        self.enter_by_tc(tc);
    }

    /// Enter the view after a timeout certificate; its leader may propose with it.
    fn enter_by_tc(&mut self, tc: Certificate) {
        let next = tc.view() + 1;
        if self.high_tc.as_ref().is_none_or(|t| t.view() < tc.view()) {
            self.high_tc = Some(tc.clone());
        }
        self.enter_view(next);
        if next == self.view && leader(next, self.n()) == self.core.me() && self.ready.is_none() {
            let qc = self.core.safety.high_qc.clone();
            self.ready = Some((qc, Some(tc)));
            self.try_propose();
        }
    }

    /// Pacemaker: the view made no progress in time. Give up on it (never vote in it again)
    /// and broadcast a Timeout share with our highest QC. Until the view's timeout certificate
    /// forms we stay, re-sending the same share on a backed-off timer (links may have lost it).
    fn on_timeout(&mut self, view: View) {
        if view != self.view || !self.timer_armed {
            return;
        }
        self.timer_armed = false;
        if let Some((v, timeout, seq)) = self.timed_out.clone()
            && v == view
        {
            let high_qc = self.core.safety.high_qc.clone();
            let high_tc = self.high_tc.clone();
            let vote = self.vote_in(view);
            let again = Message::NewView {
                timeout,
                high_qc,
                high_tc,
                vote,
            };
            self.core.after(seq, vec![Output::Broadcast(again)]);
            self.failures += 1;
            self.arm_timer_anyway();
            return;
        }
        let Some(timeout) = self.sign_timeout(view) else {
            return;
        };
        self.core.event(Event::ViewChange {
            from: view,
            to: view + 1,
        });
        self.core.safety.last_voted = self.core.safety.last_voted.max(view);
        let new_view = Message::NewView {
            timeout: timeout.clone(),
            high_qc: self.core.safety.high_qc.clone(),
            high_tc: self.high_tc.clone(),
            vote: self.vote_in(view),
        };
        let seq = self
            .core
            .persist_with_own(vec![Output::Broadcast(new_view.clone())], new_view);
        self.timed_out = Some((view, timeout.clone(), seq));
        self.remember_left(timeout, seq);
        self.failures += 1;
        self.arm_timer_anyway();
    }

    /// Our vote in `view`, if we cast one there.
    fn vote_in(&self, view: View) -> Option<Vote> {
        self.last_vote.clone().filter(|v| v.msg.view == view)
    }

    fn arm_timer_anyway(&mut self) {
        self.timer_armed = true;
        let after_ms = self.core.cfg.timeout_ms(self.failures);
        self.core.set_timer(Timer::View(self.view), after_ms);
    }

    fn enter_view(&mut self, view: View) {
        if view <= self.view {
            return;
        }
        self.view = view;
        self.timer_armed = false;
        if self.ready.as_ref().is_some_and(|(qc, tc)| {
            qc.view() + 1 != view && tc.as_ref().is_none_or(|t| t.view() + 1 != view)
        }) {
            self.ready = None;
        }
        self.core
            .collector
            .prune(Kind::Vote, view.saturating_sub(1));
        self.core
            .collector
            .prune(Kind::Timeout, view.saturating_sub(1));
        self.arm_timer();
        self.retry_waiting();
    }

    /// Idle rule: a view's timer runs only while something is left to decide, so an idle
    /// domain neither proposes empty blocks nor burns views.
    fn arm_timer(&mut self) {
        if self.timer_armed || !self.core.expects_progress() {
            return;
        }
        self.timer_armed = true;
        let after_ms = self.core.cfg.timeout_ms(self.failures);
        self.core.set_timer(Timer::View(self.view), after_ms);
    }

    fn try_propose(&mut self) {
        if self.core.rejoining() {
            return;
        }
        if self.proposed >= self.view || leader(self.view, self.n()) != self.core.me() {
            return;
        }
        let Some((qc, tc)) = self.ready.clone() else {
            return;
        };
        let tip = qc.block();
        if !self.core.pace(&tip) {
            return;
        }
        let Some(block) = self.core.build_block(self.view, &qc) else {
            return;
        };
        self.proposed = self.view;
        // The interval started when the view was given to us (`hold_pace`).
        self.core.paced(false);
        self.core.event(Event::Proposed {
            view: self.view,
            txs: block.payload.len(),
        });
        let proposal = Proposal {
            block,
            timeout: tc,
            term: None,
        };
        self.core.broadcast(Message::Propose(proposal.clone()));
        // A node never receives its own gossip: feed the proposal to ourselves.
        self.accept(self.core.me(), proposal);
    }

    fn retry_waiting(&mut self) {
        let ready: Vec<View> = self
            .waiting
            .iter()
            .filter(|(v, (_, p))| **v <= self.view + 1 && self.core.tree.contains(&p.block.parent))
            .map(|(v, _)| *v)
            .collect();
        self.waiting.retain(|v, _| *v + 1 >= self.view);
        for v in ready {
            if let Some((from, p)) = self.waiting.remove(&v) {
                self.accept(from, p);
            }
        }
    }

    fn note_commit(&mut self) {
        let (_, height) = self.core.tree.committed();
        if height > self.committed_seen {
            self.failures = 0;
            self.committed_seen = height;
        }
    }
}
