//! Local domains: two-chain BFT with a stable leader (paper Algorithms 1, 2, 5, 6; DESIGN §4).
//!
//! A view packs the term (high 32 bits) and the round within it (low 32 bits), so "higher
//! view" orders terms first. The leader stays while it makes progress; a suspected leader is
//! replaced by two basic phases: ViewChange shares for the new term combined into a
//! certificate naming its leader, then Confirm shares over (leader, chosen QC).

use crate::core::{Config, Core};
use crate::crypto::ThresholdKeys;
use crate::io::{Event, Input, Output, Reject, SafetyState, Timer};
use crate::message::{Message, Proposal, TermProof, view_change_digest};
use crate::replica::Stored;
use crate::types::{Certificate, Hash, Kind, ReplicaIndex, SignedMsg, Tx, View, Vote};
use std::collections::BTreeMap;

pub fn term_of(view: View) -> u64 {
    view >> 32
}

pub fn round_of(view: View) -> u64 {
    view & 0xffff_ffff
}

/// The view of `round` in `term`.
pub fn view_at(term: u64, round: u64) -> View {
    (term << 32) | (round & 0xffff_ffff)
}

/// How far ahead of our view a buffered proposal may be.
const ROUND_WINDOW: View = 64;
/// How far ahead of our target a view-change message may be.
const TERM_WINDOW: u64 = 64;
/// How many terms past its highest certificate an honest member's last signature may be: it
/// moves to a new term only once n-f members are there, so only a run of dead leaders puts
/// it further ahead. A rejoining replica refuses answers claiming more (`core::rejoin`).
const REJOIN_TERMS: u64 = 8;

pub struct LocalReplica {
    pub(crate) core: Core,
    /// The running term, its leader and vote collector, and the block it started from.
    term: u64,
    leader: ReplicaIndex,
    collector: ReplicaIndex,
    term_start: Hash,
    /// Highest term we asked to move to (== `term` while the leader is trusted).
    target: u64,
    failures: u64,
    timer_epoch: u64,
    timer_armed: bool,
    proposed: View,
    /// The block we proposed at `proposed`: while it is being certified, its payload is not
    /// new to the pacer.
    proposed_block: Hash,
    /// As a new leader: best QC from ViewChange messages, per term.
    vc_best: BTreeMap<u64, Certificate>,
    /// As a new leader: the term being confirmed, its view-change certificate and chosen QC.
    announcing: Option<(u64, Certificate, Certificate)>,
    /// Who asked for which term (f+1 of them make us join).
    /// The highest term each member asked for (PBFT's view-change liveness rules read it).
    asked: BTreeMap<ReplicaIndex, u64>,
    /// The leader each other member named for each term ahead of ours, from its view-change
    /// message (see `named_leader`).
    named: BTreeMap<(u64, ReplicaIndex), ReplicaIndex>,
    /// The last term whose view-change message we signed again for the leader f+1 named.
    followed: u64,
    waiting: BTreeMap<View, (ReplicaIndex, Proposal)>,
    committed_seen: u64,
    /// Our view-change message for `target`, repeated until the term changes.
    my_vc: Option<(Message, u64)>,
    /// After rejoining: terms up to this one may have had our confirmation already.
    confirmed_through: u64,
}

impl LocalReplica {
    pub fn new(cfg: Config, keys: Box<dyn ThresholdKeys>) -> LocalReplica {
        let mut core = Core::new(cfg, keys, 2);
        let genesis = core.safety.high_qc.clone();
        core.pinned = genesis.block();
        let leader = core.tree.ranking(&genesis.block(), core.cfg.edge)[0];
        let mut r = LocalReplica {
            term: 0,
            leader,
            collector: leader,
            term_start: genesis.block(),
            target: 0,
            failures: 0,
            timer_epoch: 0,
            timer_armed: false,
            proposed: 0,
            proposed_block: Hash::ZERO,
            vc_best: BTreeMap::new(),
            announcing: None,
            asked: BTreeMap::new(),
            named: BTreeMap::new(),
            followed: 0,
            waiting: BTreeMap::new(),
            committed_seen: 0,
            my_vc: None,
            confirmed_through: 0,
            core,
        };
        r.collector = r.collector_for(0, &genesis);
        r
    }

    pub fn restore(cfg: Config, keys: Box<dyn ThresholdKeys>, stored: Stored) -> LocalReplica {
        let domain = cfg.domain;
        let mut r = LocalReplica::new(cfg, keys);
        let safety = stored
            .safety
            .unwrap_or_else(|| SafetyState::genesis(domain));
        let proof = safety.term.clone();
        r.target = safety.vc_target;
        r.proposed = safety.last_voted;
        r.core.restore(stored.committed, stored.blocks, safety);
        r.committed_seen = r.core.tree.committed().1;
        if let Some(p) = proof {
            r.enter_term(p);
        }
        r.target = r.target.max(r.term);
        if stored.rejoin {
            r.core.begin_rejoin();
        }
        r
    }

    pub fn domain(&self) -> crate::types::DomainId {
        self.core.cfg.domain
    }

    pub fn members(&self) -> usize {
        self.core.cfg.n
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn leader(&self) -> ReplicaIndex {
        self.leader
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

    /// Share-collection slots held (bounded by the round and term windows).
    pub fn collector_slots(&self) -> usize {
        self.core.collector.slots()
    }

    fn n(&self) -> usize {
        self.core.cfg.n
    }

    fn me(&self) -> ReplicaIndex {
        self.core.me()
    }

    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::Timeout(Timer::Term(epoch)) => {
                if epoch == self.timer_epoch && self.timer_armed {
                    self.timer_armed = false;
                    self.on_timeout();
                }
            }
            Input::Timeout(Timer::Sync(round)) => self.core.sync_retry(round),
            Input::Timeout(Timer::View(_)) => {}
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
            Input::StateTransfer { block, proof } => {
                if self.core.transfer(block, proof) {
                    self.note_commit();
                }
            }
        }
        std::mem::take(&mut self.core.out)
    }

    fn on_payload(&mut self, txs: Vec<Tx>, origin: ReplicaIndex) {
        self.core.add_payload(txs, origin);
        self.try_propose();
        self.arm_timer(false);
    }

    fn on_message(&mut self, from: ReplicaIndex, msg: Message) {
        if usize::from(from) >= self.n() || from == self.me() {
            return;
        }
        match msg {
            Message::Propose(p) => self.on_proposal(from, p),
            Message::Vote(v) => match v.msg.kind {
                Kind::Vote => self.on_vote(from, v),
                Kind::Confirm => self.on_confirm(from, v),
                _ => self.core.reject(from, Reject::Malformed),
            },
            Message::Certificate(c) => self.on_certificate(from, c),
            Message::ViewChange {
                share,
                leader,
                high_qc,
                current,
            } => {
                if let Some(p) = current {
                    self.on_term_proof(from, p);
                }
                self.on_view_change(from, share, leader, high_qc);
            }
            Message::NewTerm { vc, leader, chosen } => self.on_new_term(from, vc, leader, chosen),
            Message::Refuse { term, high_qc } => self.on_refuse(from, term, high_qc),
            Message::TermStart(p) => self.on_term_proof(from, p),
            Message::BlockRequest { hash, above } => self.core.on_block_request(from, hash, above),
            Message::BlockResponse(b) => {
                if self.core.on_block_response(from, b) {
                    self.retry_waiting();
                    self.try_propose();
                }
            }
            Message::SafetyQuery => {
                let cert = match &self.core.safety.term {
                    Some(p) if p.confirm.view() > term_of(self.core.safety.high_qc.view()) => {
                        p.confirm.clone()
                    }
                    _ => self.core.safety.high_qc.clone(),
                };
                self.core.on_safety_query(from, cert);
            }
            Message::SafetyReport { last_voted, cert } => {
                self.on_safety_report(from, last_voted, cert)
            }
            Message::NewView { .. } => self.core.reject(from, Reject::WrongDomain),
        }
    }

    /// A member's answer to our `SafetyQuery`, judged against its certificate (a QC, or the
    /// confirmation that started its term). When the wait ends we also never ask for or
    /// confirm a term up to the one we may have signed in, and reconsider the vote held back.
    fn on_safety_report(&mut self, from: ReplicaIndex, last_voted: View, cert: Certificate) {
        let plausible = |v: View, c: &Certificate| {
            let term = match c.msg.kind {
                Kind::Vote => term_of(c.view()),
                Kind::Confirm => c.view(),
                _ => return false,
            };
            term_of(v) <= term.saturating_add(REJOIN_TERMS)
        };
        if self
            .core
            .on_safety_report(from, last_voted, cert, plausible)
            .is_some()
        {
            self.end_rejoin();
        }
    }

    /// Enough members answered and our last voted view is raised: we may have asked for or
    /// confirmed its term already, so take it as our target and confirm no term up to it.
    fn end_rejoin(&mut self) {
        let signed = term_of(self.core.safety.last_voted);
        self.confirmed_through = signed;
        self.target = self.target.max(signed);
        self.core.safety.vc_target = self.target;
        self.proposed = self.proposed.max(self.core.safety.last_voted);
        self.core.end_rejoin();
    }

    /// The raised safety state is durable: vote for what we held back, if still current.
    fn rejoined(&mut self) {
        let Some(done) = self.core.rejoined() else {
            return;
        };
        if let Some((hash, view)) = done.deferred
            && view > self.core.safety.last_voted
            && term_of(view) == self.term
            && self.target == self.term
        {
            self.vote(hash, view);
        }
        self.try_propose();
        self.arm_timer(true);
    }

    // ---- normal case: two-chain with a stable leader ----

    fn on_proposal(&mut self, from: ReplicaIndex, p: Proposal) {
        if p.block.domain != self.core.cfg.domain {
            return self.core.reject(from, Reject::WrongDomain);
        }
        let term = term_of(p.block.view);
        if term > self.term {
            match &p.term {
                Some(proof) if proof.confirm.view() == term => {
                    let proof = proof.clone();
                    self.on_term_proof(from, proof);
                }
                _ => return self.core.reject(from, Reject::Malformed),
            }
        }
        if term != self.term {
            return;
        }
        let b = &p.block;
        if from != self.leader || b.proposer != from {
            return self.core.reject(from, Reject::NotLeader);
        }
        if !self.core.is_qc(&b.justify)
            || b.justify.block() != b.parent
            || b.justify.view() >= b.view
            || round_of(b.view) == 0
        {
            return self.core.reject(from, Reject::Malformed);
        }
        // Within a term rounds are consecutive; the first round extends at least the chosen
        // QC the term was confirmed with.
        let start_view = self
            .core
            .safety
            .term
            .as_ref()
            .map_or(0, |t| t.chosen.view());
        let chained = if round_of(b.view) == 1 {
            b.justify.view() >= start_view
        } else {
            b.justify.view().saturating_add(1) == b.view
        };
        if !chained {
            return self.core.reject(from, Reject::Malformed);
        }
        // Within a window of what we voted for or saw certified: a member that fell behind
        // (or restarted from a transferred block) follows its domain's certified progress.
        let known = self
            .core
            .safety
            .last_voted
            .max(self.core.safety.high_qc.view());
        if b.view > known + ROUND_WINDOW {
            return;
        }
        if !self.core.check_cert(&b.justify) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        if !self.core.tree.contains(&b.parent) {
            self.core.fetch(b.parent, from);
            self.waiting.insert(b.view, (from, p));
            return;
        }
        self.accept(from, p);
    }

    fn accept(&mut self, from: ReplicaIndex, p: Proposal) {
        let block = p.block;
        let view = block.view;
        let justify = block.justify.clone();
        let hash = block.hash();
        if !self.core.insert_block(block, from) {
            return;
        }
        let lock_before = self.core.safety.lock.view();
        self.core.process_qc(&justify);
        self.note_commit();
        // Vote rule (DESIGN §4): above the last voted view (which a view change raises past
        // this term), and extending a QC at least as high as our lock. Two certified blocks
        // in consecutive rounds commit; a quorum then holds a lock at least that high, and
        // every later QC or chosen term start must be confirmed by one of them.
        if view > self.core.safety.last_voted
            && justify.view() >= lock_before
            && self.target == self.term
            && self.core.payload_valid(&hash, from)
        {
            self.vote(hash, view);
        }
        self.try_propose();
    }

    fn vote(&mut self, hash: Hash, view: View) {
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
        self.core.voted_for(hash);
        let vote = Vote { msg, share };
        let to = self.collector;
        if to == self.me() {
            self.core.persist_with_own(Vec::new(), Message::Vote(vote));
        } else {
            self.core.persist_then(vec![Output::Send {
                to,
                msg: Message::Vote(vote),
            }]);
        }
        // The leader made progress: restart the suspicion timer.
        self.arm_timer(true);
    }

    /// The collector (the edge when offloading, else the leader) combines votes and hands the
    /// QC to the leader, so a device leader never combines shares.
    fn on_vote(&mut self, from: ReplicaIndex, v: Vote) {
        let m = v.msg;
        if m.domain != self.core.cfg.domain || term_of(m.view) != self.term {
            return;
        }
        if self.collector != self.me() {
            return;
        }
        // Only rounds above our highest QC and within the window: a peer must not leave a
        // slot for every round of the term.
        let high = self.core.safety.high_qc.view();
        if m.view <= high || m.view > high.max(view_at(self.term, 0)) + ROUND_WINDOW {
            return;
        }
        if let Some(cert) = self.core.collect(from, m, v.share) {
            if self.leader != self.me() {
                self.core
                    .send(self.leader, Message::Certificate(cert.clone()));
            }
            self.on_qc(from, cert);
        }
    }

    fn on_certificate(&mut self, from: ReplicaIndex, qc: Certificate) {
        if !self.core.is_qc(&qc) || !self.core.check_cert(&qc) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        self.on_qc(from, qc);
    }

    fn on_qc(&mut self, from: ReplicaIndex, qc: Certificate) {
        if !self.core.tree.contains(&qc.block()) {
            self.core.fetch(qc.block(), from);
        }
        self.core.process_qc(&qc);
        self.note_commit();
        let high = self.core.safety.high_qc.view();
        self.core.collector.prune(Kind::Vote, high + 1);
        self.try_propose();
    }

    /// The next view the leader proposes in: right after its highest QC within the term, or
    /// the term's first round.
    fn next_view(&self) -> View {
        let high = self.core.safety.high_qc.view();
        if term_of(high) == self.term && round_of(high) > 0 {
            high + 1
        } else {
            view_at(self.term, 1)
        }
    }

    fn try_propose(&mut self) {
        if self.core.rejoining() {
            return;
        }
        if self.leader != self.me() || self.target != self.term {
            return;
        }
        if self.term > 0 && self.core.safety.term.is_none() {
            return;
        }
        let view = self.next_view();
        let high = self.core.safety.high_qc.clone();
        let tip = if self.proposed > high.view() && self.core.tree.contains(&self.proposed_block) {
            self.proposed_block
        } else {
            high.block()
        };
        // Pacing before the in-flight check: the delay of payload arriving while a block is
        // being certified runs meanwhile.
        let paced = self.core.pace(&tip);
        // One block in flight: the next waits for the QC of the last (chained two-chain).
        if view <= self.proposed || view <= self.core.safety.last_voted || !paced {
            return;
        }
        let qc = self.core.safety.high_qc.clone();
        let Some(block) = self.core.build_block(view, &qc) else {
            return;
        };
        self.proposed = view;
        self.proposed_block = block.hash();
        self.core.paced(true);
        self.core.event(Event::Proposed {
            view,
            txs: block.payload.len(),
        });
        let proposal = Proposal {
            block,
            timeout: None,
            term: self.core.safety.term.clone(),
        };
        self.core.broadcast(Message::Propose(proposal.clone()));
        self.accept(self.me(), proposal);
    }

    // ---- view change: two basic phases (Algorithm 6) ----

    /// Leader of `term` as this replica computes it, from what every member of the running
    /// term agrees on: its start block S (the chosen QC's block). S was proposed by the last
    /// leader that made progress, in term t_S; that leader is the suspected one. The members
    /// are ranked by availability at S (Algorithm 2) without it, and the terms after t_S walk
    /// down that list: the first is the highest-ranked other than the suspect, and when terms
    /// keep failing from the same S, each tries the next candidate instead of returning to
    /// one already tried (two faulty leaders would otherwise alternate forever).
    fn leader_for(&self, term: u64) -> ReplicaIndex {
        if term == self.term {
            return self.leader;
        }
        let edge = self.core.cfg.edge;
        let (since, suspect) = match self.core.tree.get(&self.term_start) {
            Some(node) if node.block.height > 0 => (term_of(node.block.view), node.block.proposer),
            _ => (0, self.core.tree.ranking(&self.term_start, edge)[0]),
        };
        let candidates: Vec<ReplicaIndex> = self
            .core
            .tree
            .ranking(&self.term_start, edge)
            .into_iter()
            .filter(|&i| i != suspect)
            .collect();
        if candidates.is_empty() {
            return self.leader;
        }
        let k = term.saturating_sub(since + 1) % candidates.len() as u64;
        candidates[usize::try_from(k).unwrap_or(0)]
    }

    /// Who leads if the running term fails, then if that one fails too, and so on: the
    /// ranking as the view change will walk it, without repeats.
    pub fn successors(&self) -> Vec<ReplicaIndex> {
        let mut out: Vec<ReplicaIndex> = Vec::new();
        for t in self.term + 1..=self.term + self.core.cfg.n as u64 {
            let l = self.leader_for(t);
            if !out.contains(&l) {
                out.push(l);
            }
        }
        out
    }

    /// Votes go to the edge when offloading, unless the term before made no progress under it
    /// (then the edge itself may be the fault): the leader collects instead.
    fn collector_for(&self, term: u64, chosen: &Certificate) -> ReplicaIndex {
        let leader = if term == self.term {
            self.leader
        } else {
            self.leader_for(term)
        };
        match self.core.cfg.edge {
            Some(edge)
                if self.core.cfg.offload && (term == 0 || term_of(chosen.view()) + 1 == term) =>
            {
                edge
            }
            _ => leader,
        }
    }

    /// The leader made no progress in time, or the view change did not finish. Move on to the
    /// next term only once n-f replicas are in the current target too; until then, repeat our
    /// view-change message (a crashed or cut-off replica may have missed it).
    fn on_timeout(&mut self) {
        // Rejoining: nothing may be signed; the timer is armed again when the wait ends.
        if self.core.rejoining() {
            return;
        }
        if self.target > self.term && self.asked_at_least(self.target) < self.core.keys.quorum() {
            if let Some((vc, seq)) = self.my_vc.clone() {
                self.core.after(seq, vec![Output::Broadcast(vc)]);
            } else {
                let target = self.target;
                self.target -= 1;
                self.start_view_change(target);
                return;
            }
            self.arm_timer(true);
            return;
        }
        self.start_view_change(self.target + 1);
    }

    /// Phase 1: stop voting in this term for good, and ask the next leader to start `term`.
    fn start_view_change(&mut self, term: u64) {
        if self.core.rejoining() {
            return;
        }
        if term <= self.target && self.target != self.term {
            return;
        }
        if term <= self.term {
            return;
        }
        let leader = self
            .named_leader(term)
            .unwrap_or_else(|| self.leader_for(term));
        let Some(vc) = self.view_change(term, leader) else {
            return;
        };
        self.core.event(Event::ViewChange {
            from: self.term,
            to: term,
        });
        self.target = term;
        self.core.safety.vc_target = term;
        self.core.safety.last_voted = self.core.safety.last_voted.max(view_at(term, 0));
        self.failures += 1;
        self.send_view_change(vc);
    }

    fn view_change(&self, term: u64, leader: ReplicaIndex) -> Option<Message> {
        let msg = SignedMsg {
            domain: self.core.cfg.domain,
            kind: Kind::ViewChange,
            view: term,
            digest: view_change_digest(leader),
        };
        let share = self.core.keys.sign_share(&msg.bytes()).ok()?;
        Some(Message::ViewChange {
            share: Vote { msg, share },
            leader,
            high_qc: self.core.safety.high_qc.clone(),
            current: self.core.safety.term.clone(),
        })
    }

    /// Broadcast, not just to the new leader: every replica counts who moved on, to join f+1
    /// of them and to time out of a term only once n-f are in it (PBFT's liveness rules;
    /// without them replicas chase each other through terms).
    fn send_view_change(&mut self, vc: Message) {
        let seq = self
            .core
            .persist_with_own(vec![Output::Broadcast(vc.clone())], vc.clone());
        self.my_vc = Some((vc, seq));
        self.timer_armed = false;
        self.arm_timer(true);
    }

    /// The leader f+1 other members named for `term`: one of them is honest. Members rank
    /// leaders by availability counted from genesis; one whose chain restarted above genesis
    /// (a state transfer, a restart from a pruned disk) counts less and may name another
    /// leader, and with exactly n-f members up the term would never form without it.
    fn named_leader(&self, term: u64) -> Option<ReplicaIndex> {
        let mut counts: BTreeMap<ReplicaIndex, usize> = BTreeMap::new();
        for (_, leader) in self
            .named
            .range((term, ReplicaIndex::MIN)..=(term, ReplicaIndex::MAX))
        {
            *counts.entry(*leader).or_default() += 1;
        }
        let f = self.core.cfg.f();
        counts.into_iter().find(|(_, c)| *c > f).map(|(l, _)| l)
    }

    /// Our view-change message for our target names another leader than f+1 members do:
    /// sign theirs, once per term. Two shares of ours for one term cannot start it twice: a
    /// term starts only with n-f confirmations, and we confirm a term once.
    fn follow_named(&mut self) {
        let term = self.target;
        if term <= self.term || term <= self.followed || self.core.rejoining() {
            return;
        }
        let Some(named) = self.named_leader(term) else {
            return;
        };
        let mine = match &self.my_vc {
            Some((Message::ViewChange { share, leader, .. }, _)) if share.msg.view == term => {
                *leader
            }
            _ => return,
        };
        if named == mine {
            return;
        }
        let Some(vc) = self.view_change(term, named) else {
            return;
        };
        self.followed = term;
        self.send_view_change(vc);
    }

    /// Our own share, now durable, taken in as if we had sent it to ourselves.
    fn on_own(&mut self, msg: Message) {
        let me = self.me();
        match msg {
            Message::Vote(v) if v.msg.kind == Kind::Confirm => self.on_confirm(me, v),
            Message::Vote(v) => self.on_vote(me, v),
            Message::ViewChange {
                share,
                leader,
                high_qc,
                ..
            } => self.on_view_change(me, share, leader, high_qc),
            _ => {}
        }
    }

    fn on_view_change(
        &mut self,
        from: ReplicaIndex,
        share: Vote,
        leader: ReplicaIndex,
        high_qc: Certificate,
    ) {
        let m = share.msg;
        if m.domain != self.core.cfg.domain
            || m.kind != Kind::ViewChange
            || m.digest != view_change_digest(leader)
        {
            return self.core.reject(from, Reject::Malformed);
        }
        let term = m.view;
        if term <= self.term || term > self.target + TERM_WINDOW {
            return;
        }
        // f+1 replicas asking for a term include an honest one: join them.
        let asked = self.asked.entry(from).or_default();
        *asked = (*asked).max(term);
        if from != self.me() {
            self.named.insert((term, from), leader);
        }
        // f+1 replicas asking for a later term include an honest one: join the lowest term
        // that f+1 of them have reached.
        let joined = self.asked_nth(self.core.cfg.f() + 1);
        if joined > self.target {
            self.start_view_change(joined);
        }
        self.follow_named();
        if leader != self.me() || term < self.target {
            return;
        }
        if !self.core.is_qc(&high_qc) || !self.core.check_cert(&high_qc) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        if !self.core.tree.contains(&high_qc.block()) {
            self.core.fetch(high_qc.block(), from);
        }
        let best = self.vc_best.entry(term).or_insert_with(|| high_qc.clone());
        if high_qc.view() > best.view() {
            *best = high_qc;
        }
        if let Some(cert) = self.core.collect(from, m, share.share) {
            let mut chosen = self
                .vc_best
                .get(&term)
                .cloned()
                .unwrap_or_else(|| self.core.safety.high_qc.clone());
            if self.core.safety.high_qc.view() > chosen.view() {
                chosen = self.core.safety.high_qc.clone();
            }
            self.announce(term, cert, chosen);
        }
    }

    /// Phase 2 announcement: the view-change certificate and the highest QC it gathered.
    fn announce(&mut self, term: u64, vc: Certificate, chosen: Certificate) {
        self.announcing = Some((term, vc.clone(), chosen.clone()));
        let me = self.me();
        self.core.broadcast(Message::NewTerm {
            vc: vc.clone(),
            leader: me,
            chosen: chosen.clone(),
        });
        self.on_new_term(me, vc, me, chosen);
    }

    /// Confirm rule: a replica confirms a new term only if the chosen QC is not below its lock
    /// (that is what carries a committed block into the new term), and never for a term
    /// below one it already asked for.
    fn on_new_term(
        &mut self,
        from: ReplicaIndex,
        vc: Certificate,
        leader: ReplicaIndex,
        chosen: Certificate,
    ) {
        let term = vc.view();
        if vc.msg.domain != self.core.cfg.domain
            || vc.msg.kind != Kind::ViewChange
            || vc.msg.digest != view_change_digest(leader)
            || from != leader
        {
            return self.core.reject(from, Reject::Malformed);
        }
        if term <= self.term || term < self.target {
            return;
        }
        if !self.core.check_cert(&vc) || !self.core.is_qc(&chosen) || !self.core.check_cert(&chosen)
        {
            return self.core.reject(from, Reject::BadCertificate);
        }
        if !self.core.tree.contains(&chosen.block()) {
            self.core.fetch(chosen.block(), from);
        }
        self.core.process_qc(&chosen);
        self.note_commit();
        // The certificate proves n-f replicas asked for this term.
        for i in vc.signers.iter() {
            let asked = self.asked.entry(i).or_default();
            *asked = (*asked).max(term);
        }
        if chosen.view() < self.core.safety.lock.view() {
            let refuse = Message::Refuse {
                term,
                high_qc: self.core.safety.lock.clone(),
            };
            if leader == self.me() {
                return;
            }
            return self.core.send(leader, refuse);
        }
        if self.core.rejoining() || term <= self.confirmed_through {
            return;
        }
        let msg = SignedMsg {
            domain: self.core.cfg.domain,
            kind: Kind::Confirm,
            view: term,
            digest: TermProof::digest(leader, &chosen.block()),
        };
        let Ok(share) = self.core.keys.sign_share(&msg.bytes()) else {
            return;
        };
        if self.target < term {
            self.core.event(Event::ViewChange {
                from: self.term,
                to: term,
            });
        }
        self.target = term;
        self.core.safety.vc_target = term;
        self.core.safety.last_voted = self.core.safety.last_voted.max(view_at(term, 0));
        let vote = Vote { msg, share };
        if leader == self.me() {
            self.core.persist_with_own(Vec::new(), Message::Vote(vote));
        } else {
            self.core.persist_then(vec![Output::Send {
                to: leader,
                msg: Message::Vote(vote),
            }]);
        }
        self.arm_timer(false);
    }

    fn on_refuse(&mut self, from: ReplicaIndex, term: u64, high_qc: Certificate) {
        let Some((t, vc, chosen)) = self.announcing.clone() else {
            return;
        };
        if t != term || high_qc.view() <= chosen.view() {
            return;
        }
        if !self.core.is_qc(&high_qc) || !self.core.check_cert(&high_qc) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        // Liveness: retry the confirmation with the higher QC the refuser holds.
        self.announce(term, vc, high_qc);
    }

    fn on_confirm(&mut self, from: ReplicaIndex, v: Vote) {
        let Some((term, _, chosen)) = self.announcing.clone() else {
            return;
        };
        let m = v.msg;
        if m.domain != self.core.cfg.domain
            || m.view != term
            || m.digest != TermProof::digest(self.me(), &chosen.block())
        {
            return;
        }
        if let Some(cert) = self.core.collect(from, m, v.share) {
            let proof = TermProof {
                confirm: cert,
                leader: self.me(),
                chosen,
            };
            self.core.broadcast(Message::TermStart(proof.clone()));
            let me = self.me();
            self.on_term_proof(me, proof);
        }
    }

    /// A proof that a later term started (n - f confirmed it): adopt it.
    fn on_term_proof(&mut self, from: ReplicaIndex, proof: TermProof) {
        let c = &proof.confirm;
        let term = c.view();
        if term <= self.term {
            return;
        }
        if c.msg.domain != self.core.cfg.domain
            || c.msg.kind != Kind::Confirm
            || c.msg.digest != TermProof::digest(proof.leader, &proof.chosen.block())
            || usize::from(proof.leader) >= self.n()
            || !self.core.is_qc(&proof.chosen)
        {
            return self.core.reject(from, Reject::Malformed);
        }
        if !self.core.check_cert(c) || !self.core.check_cert(&proof.chosen) {
            return self.core.reject(from, Reject::BadCertificate);
        }
        if !self.core.tree.contains(&proof.chosen.block()) {
            self.core.fetch(proof.chosen.block(), from);
        }
        self.enter_term(proof);
        self.core.persist_then(Vec::new());
        self.retry_waiting();
        self.try_propose();
        self.arm_timer(true);
    }

    fn enter_term(&mut self, proof: TermProof) {
        let term = proof.confirm.view();
        self.core.process_qc(&proof.chosen);
        self.note_commit();
        // Compute the collector from the old term's view of the world before switching.
        self.leader = proof.leader;
        self.term = term;
        self.collector = self.collector_for(term, &proof.chosen);
        self.term_start = proof.chosen.block();
        self.core.pinned = self.term_start;
        self.target = self.target.max(term);
        self.core.safety.vc_target = self.target;
        self.core.safety.term = Some(proof);
        self.announcing = None;
        self.my_vc = None;
        self.vc_best.retain(|t, _| *t > term);
        self.asked.retain(|_, t| *t > term);
        self.named.retain(|(t, _), _| *t > term);
        self.core.collector.prune(Kind::ViewChange, term + 1);
        self.core.collector.prune(Kind::Confirm, term + 1);
        self.core.collector.prune(Kind::Vote, view_at(term, 0));
        self.core.event(Event::NewLeader {
            term,
            leader: self.leader,
        });
    }

    /// How many members asked for `term` or a later one.
    fn asked_at_least(&self, term: u64) -> usize {
        self.asked.values().filter(|&&t| t >= term).count()
    }

    /// The `k`-th highest term members asked for (0 if fewer than k asked).
    fn asked_nth(&self, k: usize) -> u64 {
        let mut terms: Vec<u64> = self.asked.values().copied().collect();
        terms.sort_unstable_by(|a, b| b.cmp(a));
        terms.get(k.saturating_sub(1)).copied().unwrap_or(0)
    }

    /// The suspicion timer runs while there is work or a view change in progress; progress
    /// (`fresh`) restarts it. An idle domain has no timer and changes no leader.
    fn arm_timer(&mut self, fresh: bool) {
        let needed = self.target > self.term || self.core.expects_progress();
        if !needed {
            self.timer_armed = false;
            return;
        }
        if self.timer_armed && !fresh {
            return;
        }
        self.timer_armed = true;
        self.timer_epoch += 1;
        let after = self.core.cfg.timeout_ms(self.failures);
        self.core.set_timer(Timer::Term(self.timer_epoch), after);
    }

    fn retry_waiting(&mut self) {
        let ready: Vec<View> = self
            .waiting
            .iter()
            .filter(|(_, (_, p))| self.core.tree.contains(&p.block.parent))
            .map(|(v, _)| *v)
            .collect();
        let term = self.term;
        self.waiting.retain(|v, _| term_of(*v) >= term);
        for v in ready {
            if let Some((from, p)) = self.waiting.remove(&v)
                && term_of(p.block.view) == self.term
            {
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
