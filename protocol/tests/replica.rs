//! Replica steps as tables: an input, the outputs it must (and must not) produce.
#![allow(clippy::unwrap_used)]

use lcbft_protocol::Config;
use lcbft_protocol::crypto::{Dealer, DealtKeys, Share, SimScheme, ThresholdKeys, load_keys};
use lcbft_protocol::global::{GlobalReplica, leader};
use lcbft_protocol::io::{Event, Input, Output, Reject, SafetyState, Timer};
use lcbft_protocol::local::LocalReplica;
use lcbft_protocol::message::Message;
use lcbft_protocol::replica::{Replica, Stored};
use lcbft_protocol::types::{
    Bitmap, Certificate, DomainId, Hash, Kind, ReplicaIndex, SignedMsg, Tx, Vote,
};

fn keys(dealt: &DealtKeys, i: ReplicaIndex) -> Box<dyn ThresholdKeys> {
    load_keys(
        dealt.scheme,
        4,
        &dealt.public,
        dealt.secrets.get(usize::from(i)),
    )
    .unwrap()
}

/// These tables read one step's outputs, so leaders are unpaced: a paced one would hold its
/// proposal for a timer (the simulator's pacing tests cover that).
fn config(domain: DomainId, i: ReplicaIndex) -> Config {
    Config::new(domain, i, 4).unpaced()
}

fn replica(dealt: &DealtKeys, i: ReplicaIndex) -> GlobalReplica {
    GlobalReplica::new(config(DomainId::Global, i), keys(dealt, i))
}

fn proposal_of(outputs: &[Output]) -> Message {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Broadcast(m @ Message::Propose(_)) => Some(m.clone()),
            _ => None,
        })
        .expect("the leader proposes")
}

fn votes(outputs: &[Output]) -> Vec<(ReplicaIndex, Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: m @ Message::Vote(_),
            } => Some((*to, m.clone())),
            _ => None,
        })
        .collect()
}

fn persist_seq(outputs: &[Output]) -> u64 {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Persist { seq, .. } => Some(*seq),
            _ => None,
        })
        .expect("a persist before the vote")
}

#[test]
fn a_vote_leaves_only_after_its_safety_state_is_durable() {
    let dealt = SimScheme::deal(4, 3, [1; 32]);
    let lead = leader(1, 4);
    let mut l = replica(&dealt, lead);
    let out = l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())]));
    let proposal = proposal_of(&out);

    // Not the next leader, so the vote must travel.
    let me = (lead + 2) % 4;
    let mut r = replica(&dealt, me);
    let out = r.handle(Input::Message {
        from: lead,
        msg: proposal.clone(),
    });
    assert!(
        votes(&out).is_empty(),
        "vote sent before persisting: {out:?}"
    );
    let seq = persist_seq(&out);
    assert_eq!(r.safety().last_voted, 1);

    let out = r.handle(Input::Persisted(seq));
    let sent = votes(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].0,
        leader(2, 4),
        "votes go to the next view's leader"
    );

    // The same proposal again: no second vote in the view.
    let out = r.handle(Input::Message {
        from: lead,
        msg: proposal,
    });
    assert!(votes(&out).is_empty());
    assert!(!out.iter().any(|o| matches!(o, Output::Persist { .. })));
}

#[test]
fn a_restarted_replica_never_votes_twice_in_a_view() {
    let dealt = SimScheme::deal(4, 3, [2; 32]);
    let lead = leader(1, 4);
    let mut l = replica(&dealt, lead);
    let proposal = proposal_of(&l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())])));
    let me = (lead + 2) % 4;
    let mut r = replica(&dealt, me);
    let out = r.handle(Input::Message {
        from: lead,
        msg: proposal.clone(),
    });
    let (state, blocks) = out
        .iter()
        .find_map(|o| match o {
            Output::Persist { state, blocks, .. } => Some((state.clone(), blocks.clone())),
            _ => None,
        })
        .unwrap();
    let Message::Propose(p) = &proposal else {
        unreachable!()
    };
    assert_eq!(
        blocks,
        vec![p.block.clone()],
        "the block voted for goes to disk with the vote"
    );
    // Crash before the vote left; restart from what was on disk.
    let mut again = Replica::restore(
        config(DomainId::Global, me),
        keys(&dealt, me),
        Stored {
            committed: Vec::new(),
            blocks,
            safety: Some(state),
            rejoin: false,
        },
    );
    let out = again.handle(Input::Message {
        from: lead,
        msg: proposal,
    });
    assert!(votes(&out).is_empty(), "voted twice in view 1: {out:?}");
}

#[test]
fn a_proposal_from_a_non_leader_is_rejected_and_counted() {
    let dealt = SimScheme::deal(4, 3, [3; 32]);
    let lead = leader(1, 4);
    let mut l = replica(&dealt, lead);
    let proposal = proposal_of(&l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())])));
    let liar = (lead + 1) % 4;
    let mut r = replica(&dealt, (lead + 2) % 4);
    let out = r.handle(Input::Message {
        from: liar,
        msg: proposal,
    });
    assert!(votes(&out).is_empty());
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(lcbft_protocol::io::Event::Rejected { from, .. }) if *from == liar
    )));
}

#[test]
fn an_idle_leader_proposes_nothing_and_sets_no_timer() {
    let dealt = SimScheme::deal(4, 3, [4; 32]);
    let mut l = replica(&dealt, leader(1, 4));
    let out = l.handle(Input::Payload(Vec::new()));
    assert!(out.is_empty(), "idle domain produced {out:?}");
}

#[test]
fn the_collector_forms_one_certificate_from_a_quorum() {
    use lcbft_protocol::collector::{Added, Collector};
    use lcbft_protocol::types::{Hash, SignedMsg};
    let dealt = SimScheme::deal(4, 3, [5; 32]);
    let verifier = keys(&dealt, 0);
    let msg = SignedMsg {
        domain: DomainId::Global,
        kind: Kind::Vote,
        view: 9,
        digest: Hash::of(b"b"),
    };
    let share = |i: ReplicaIndex| keys(&dealt, i).sign_share(&msg.bytes()).unwrap();
    let mut c = Collector::default();
    assert_eq!(c.add(verifier.as_ref(), msg, 0, share(0)), Added::Pending);
    assert_eq!(c.add(verifier.as_ref(), msg, 0, share(0)), Added::Ignored);
    // A share over another message from signer 1: spoils the first combine, then is found.
    let mut other = msg;
    other.view = 10;
    let bad = keys(&dealt, 1).sign_share(&other.bytes()).unwrap();
    assert_eq!(c.add(verifier.as_ref(), msg, 1, bad), Added::Pending);
    assert_eq!(
        c.add(verifier.as_ref(), msg, 2, share(2)),
        Added::Invalid(vec![1])
    );
    match c.add(verifier.as_ref(), msg, 3, share(3)) {
        Added::Formed { cert, invalid } => {
            assert!(invalid.is_empty());
            assert!(verifier.verify(&msg.bytes(), &cert.signature));
            assert_eq!(cert.signers.iter().collect::<Vec<_>>(), vec![0, 2, 3]);
        }
        other => panic!("expected a certificate, got {other:?}"),
    }
    assert_eq!(c.add(verifier.as_ref(), msg, 1, share(1)), Added::Ignored);
    // A vote for another block in the same view is equivocation: not counted, reported.
    let mut fork = msg;
    fork.digest = Hash::of(b"fork");
    let s = keys(&dealt, 0).sign_share(&fork.bytes()).unwrap();
    assert_eq!(
        c.add(verifier.as_ref(), fork, 0, s),
        Added::DoubleVote {
            signer: 0,
            view: 9,
            first: msg.digest,
            second: fork.digest,
        }
    );
}

/// Two different valid votes from one signer in one view are reported once, as a double vote;
/// a forged share in a signer's name (relayed by someone else) never makes an honest signer
/// look like an equivocator; votes in different views or for the same block are no evidence.
#[test]
fn the_collector_reports_a_double_vote_only_on_two_valid_shares() {
    use lcbft_protocol::collector::{Added, Collector};
    use lcbft_protocol::types::{Hash, SignedMsg};
    let dealt = SimScheme::deal(4, 3, [6; 32]);
    let verifier = keys(&dealt, 0);
    let vote = |view: u64, block: &[u8]| SignedMsg {
        domain: DomainId::Local(1),
        kind: Kind::Vote,
        view,
        digest: Hash::of(block),
    };
    let sign = |i: ReplicaIndex, m: &SignedMsg| keys(&dealt, i).sign_share(&m.bytes()).unwrap();
    let mut c = Collector::default();
    let (a, b) = (vote(4, b"a"), vote(4, b"b"));
    assert_eq!(c.add(verifier.as_ref(), a, 2, sign(2, &a)), Added::Pending);
    // The same vote again, or a vote in another view: no evidence.
    assert_eq!(c.add(verifier.as_ref(), a, 2, sign(2, &a)), Added::Ignored);
    let later = vote(5, b"b");
    assert_eq!(
        c.add(verifier.as_ref(), later, 2, sign(2, &later)),
        Added::Pending
    );
    // Signer 2 votes for b in view 4 too: reported once, never counted.
    let double = Added::DoubleVote {
        signer: 2,
        view: 4,
        first: a.digest,
        second: b.digest,
    };
    assert_eq!(c.add(verifier.as_ref(), b, 2, sign(2, &b)), double);
    assert_eq!(c.add(verifier.as_ref(), b, 2, sign(2, &b)), Added::Ignored);
    let c_msg = vote(4, b"c");
    assert_eq!(
        c.add(verifier.as_ref(), c_msg, 2, sign(2, &c_msg)),
        Added::Ignored
    );
    // A share forged in signer 3's name for a (signed by 1), then 3's real vote for b: the
    // forged first share fails verification, so 3 is not accused.
    let forged = sign(1, &a);
    assert_eq!(c.add(verifier.as_ref(), a, 3, forged), Added::Pending);
    assert_eq!(c.add(verifier.as_ref(), b, 3, sign(3, &b)), Added::Ignored);
    // And a forged second share does not accuse the first signer either.
    let (x, y) = (vote(6, b"x"), vote(6, b"y"));
    assert_eq!(c.add(verifier.as_ref(), x, 0, sign(0, &x)), Added::Pending);
    assert_eq!(c.add(verifier.as_ref(), y, 0, sign(1, &y)), Added::Ignored);
}

/// A QC over `block` in `view`, signed by members 0..3.
fn qc_over(dealt: &DealtKeys, block: Hash, view: u64) -> Certificate {
    let msg = SignedMsg {
        domain: DomainId::Global,
        kind: Kind::Vote,
        view,
        digest: block,
    };
    let shares: Vec<(ReplicaIndex, Share)> = (0..3)
        .map(|i| (i, keys(dealt, i).sign_share(&msg.bytes()).unwrap()))
        .collect();
    let refs: Vec<(ReplicaIndex, &Share)> = shares.iter().map(|(i, s)| (*i, s)).collect();
    Certificate {
        msg,
        signers: Bitmap::from_indices(4, 0..3),
        signature: keys(dealt, 0).combine(&refs).unwrap(),
    }
}

/// A safety state naming a block the disk did not give back (a store from before blocks were
/// persisted, or a lost file): the replica says so in its status, asks every peer in turn,
/// reports the block unavailable once all were asked, and is whole again when one sends it.
#[test]
fn a_missing_block_named_by_the_safety_state_is_reported_and_fetched() {
    let dealt = SimScheme::deal(4, 3, [4; 32]);
    let lead = leader(1, 4);
    let mut l = replica(&dealt, lead);
    let Message::Propose(p) = proposal_of(&l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())])))
    else {
        unreachable!()
    };
    let block = p.block;
    let hash = block.hash();
    let mut state = SafetyState::genesis(DomainId::Global);
    state.last_voted = 1;
    state.high_qc = qc_over(&dealt, hash, 1);
    let me = (lead + 2) % 4;
    let restore = |blocks| {
        Replica::restore(
            config(DomainId::Global, me),
            keys(&dealt, me),
            Stored {
                committed: Vec::new(),
                blocks,
                safety: Some(state.clone()),
                rejoin: false,
            },
        )
    };
    assert_eq!(restore(vec![block.clone()]).status().missing_block, None);

    let mut r = restore(Vec::new());
    assert_eq!(r.status().missing_block, Some(hash));
    let asked = |out: &[Output]| {
        out.iter().any(|o| {
            matches!(o, Output::Send { msg: Message::BlockRequest { hash: h, .. }, .. } if *h == hash)
        })
    };
    let unavailable = |out: &[Output]| {
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::Unavailable { hash: h }) if *h == hash))
    };
    let out = r.handle(Input::Start);
    assert!(asked(&out), "{out:?}");
    let first = out
        .iter()
        .find_map(|o| match o {
            Output::SetTimer {
                timer: Timer::Sync(k),
                ..
            } => Some(*k),
            _ => None,
        })
        .expect("a sync timer");
    // Three peers: the first was asked at start, the next two on retries; the retry after
    // that finds everyone asked in vain.
    for (retry, round) in (1..=3).zip(first..) {
        let out = r.handle(Input::Timeout(Timer::Sync(round)));
        assert!(asked(&out), "retry {retry}: {out:?}");
        assert_eq!(unavailable(&out), retry == 3, "retry {retry}: {out:?}");
    }
    let from = (me + 1) % 4;
    r.handle(Input::Message {
        from,
        msg: Message::BlockResponse(vec![block]),
    });
    assert_eq!(r.status().missing_block, None);
}

/// DESIGN §7: nothing built on our own share leaves before the state covering it is durable.
/// The next leader votes for itself; the other two votes arrive, but the QC needs ours, so no
/// proposal leaves until the persist is reported.
#[test]
fn the_next_leaders_own_vote_completes_a_qc_only_once_durable() {
    let dealt = SimScheme::deal(4, 3, [5; 32]);
    let lead = leader(1, 4);
    let next = leader(2, 4);
    let mut l = replica(&dealt, lead);
    let proposal = proposal_of(&l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())])));
    let mut n = replica(&dealt, next);
    let out = n.handle(Input::Message {
        from: lead,
        msg: proposal.clone(),
    });
    let seq = persist_seq(&out);
    assert!(votes(&out).is_empty(), "our own vote is not sent: {out:?}");
    let others: Vec<ReplicaIndex> = (0..4).filter(|&i| i != lead && i != next).collect();
    for &i in &others {
        let mut r = replica(&dealt, i);
        let out = r.handle(Input::Message {
            from: lead,
            msg: proposal.clone(),
        });
        let out = r.handle(Input::Persisted(persist_seq(&out)));
        let (to, vote) = votes(&out).pop().expect("a vote");
        assert_eq!(to, next);
        let out = n.handle(Input::Message { from: i, msg: vote });
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Broadcast(Message::Propose(_)))),
            "a QC with our share left before it was durable: {out:?}"
        );
    }
    let out = n.handle(Input::Persisted(seq));
    let Message::Propose(p) = proposal_of(&out) else {
        unreachable!()
    };
    assert_eq!(p.block.view, 2);
    assert!(p.block.justify.signers.contains(next));
}

/// The signer bitmap is not signed: a certificate whose bitmap was padded (one more signer,
/// or a trailing byte) still carries a valid signature, and is refused all the same.
#[test]
fn a_certificate_with_a_padded_bitmap_is_refused() {
    let dealt = SimScheme::deal(4, 3, [6; 32]);
    let lead = leader(1, 4);
    let mut l = replica(&dealt, lead);
    let Message::Propose(p) = proposal_of(&l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())])))
    else {
        unreachable!()
    };
    let qc = qc_over(&dealt, p.block.hash(), 1);
    let mut four = qc.clone();
    four.signers = Bitmap::from_indices(4, 0..4);
    let mut longer = qc.clone();
    longer.signers.0.push(0);
    let me = (lead + 2) % 4;
    for bad in [four, longer] {
        let mut r = replica(&dealt, me);
        let out = r.handle(Input::Message {
            from: lead,
            msg: Message::Certificate(bad.clone()),
        });
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Event(Event::Rejected {
                    reason: Reject::BadCertificate,
                    ..
                })
            )),
            "{:?} accepted: {out:?}",
            bad.signers
        );
        assert_eq!(r.safety().high_qc.view(), 0);
    }
    let mut r = replica(&dealt, me);
    r.handle(Input::Message {
        from: lead,
        msg: Message::Certificate(qc),
    });
    assert_eq!(r.safety().high_qc.view(), 1, "the canonical QC counts");
}

/// One member sending shares for every future view (or round) leaves no slot per view: the
/// collector takes only shares within the view window.
#[test]
fn shares_for_far_views_take_no_collector_slots() {
    let dealt = SimScheme::deal(4, 3, [7; 32]);
    let share_for = |view: u64, kind: Kind, domain: DomainId| {
        let msg = SignedMsg {
            domain,
            kind,
            view,
            digest: Hash([9; 32]),
        };
        let share = keys(&dealt, 3).sign_share(&msg.bytes()).unwrap();
        Vote { msg, share }
    };
    let mut g = replica(&dealt, 0);
    for view in (2..5_000).step_by(7) {
        g.handle(Input::Message {
            from: 3,
            msg: Message::Vote(share_for(view, Kind::Vote, DomainId::Global)),
        });
    }
    assert!(g.collector_slots() <= 70, "{} slots", g.collector_slots());

    let mut cfg = config(DomainId::Local(1), 0);
    cfg.edge = Some(0);
    let mut edge = LocalReplica::new(cfg, keys(&dealt, 0));
    for round in 1..5_000 {
        edge.handle(Input::Message {
            from: 3,
            msg: Message::Vote(share_for(round, Kind::Vote, DomainId::Local(1))),
        });
    }
    assert!(
        edge.collector_slots() <= 70,
        "{} slots",
        edge.collector_slots()
    );
}

/// A member naming the largest view there is gets a drop, not an overflow.
#[test]
fn messages_for_the_last_view_are_dropped_without_overflow() {
    let dealt = SimScheme::deal(4, 3, [8; 32]);
    let lead = leader(1, 4);
    let mut l = replica(&dealt, lead);
    let Message::Propose(mut p) =
        proposal_of(&l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())])))
    else {
        unreachable!()
    };
    p.block.view = u64::MAX;
    let mut r = replica(&dealt, (lead + 2) % 4);
    let msg = SignedMsg {
        domain: DomainId::Global,
        kind: Kind::Timeout,
        view: u64::MAX,
        digest: Hash::ZERO,
    };
    let share = keys(&dealt, lead).sign_share(&msg.bytes()).unwrap();
    let vote = Vote {
        msg: SignedMsg {
            kind: Kind::Vote,
            ..msg
        },
        share: share.clone(),
    };
    for m in [
        Message::Propose(p),
        Message::Vote(vote.clone()),
        Message::NewView {
            timeout: Vote { msg, share },
            high_qc: Certificate::genesis(DomainId::Global),
            high_tc: None,
            vote: Some(vote),
        },
    ] {
        r.handle(Input::Message { from: lead, msg: m });
    }
    assert_eq!(r.safety().last_voted, 0);
}

fn persists(out: &[Output]) -> Vec<&Vec<lcbft_protocol::types::Block>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Persist { blocks, .. } => Some(blocks),
            _ => None,
        })
        .collect()
}

/// Trust no peer, on the paths this restart work added. A leader that equivocates with many
/// blocks for one view gets only the one we vote for written to disk; a member repeating a
/// timeout for a view we left gets no write per message (our share for that view is signed
/// and persisted once).
#[test]
fn a_member_cannot_make_us_write_per_message() {
    let dealt = SimScheme::deal(4, 3, [9; 32]);
    let lead = leader(1, 4);
    let me = (lead + 2) % 4;
    let mut l = replica(&dealt, lead);
    let mut r = replica(&dealt, me);
    let proposal = proposal_of(&l.handle(Input::Payload(vec![Tx::new(b"t".to_vec())])));
    let mut written = 0;
    for i in 0..50 {
        let mut p = proposal.clone();
        if let Message::Propose(p) = &mut p {
            p.block.payload = vec![Tx::new(format!("equivocation {i}").into_bytes())].into();
        }
        let out = r.handle(Input::Message { from: lead, msg: p });
        written += persists(&out).iter().map(|b| b.len()).sum::<usize>();
    }
    // The next write (a timeout) carries none of the equivocations either.
    r.handle(Input::Payload(vec![Tx::new(b"pending".to_vec())]));
    let out = r.handle(Input::Timeout(Timer::View(1)));
    assert_eq!(persists(&out).len(), 1, "{out:?}");
    written += persists(&out).iter().map(|b| b.len()).sum::<usize>();
    assert_eq!(written, 1, "only the block voted for is written");

    // Past view 5 with a certificate beyond it, so we answer a member still in view 5.
    let mut state = SafetyState::genesis(DomainId::Global);
    state.last_voted = 10;
    state.high_qc = qc_over(&dealt, Hash([3; 32]), 7);
    let mut past = Replica::restore(
        config(DomainId::Global, me),
        keys(&dealt, me),
        Stored {
            safety: Some(state),
            rejoin: false,
            ..Stored::default()
        },
    );
    let from = (me + 1) % 4;
    let msg = SignedMsg {
        domain: DomainId::Global,
        kind: Kind::Timeout,
        view: 5,
        digest: Hash::ZERO,
    };
    let share = keys(&dealt, from).sign_share(&msg.bytes()).unwrap();
    let mut writes = 0;
    for _ in 0..500 {
        let out = past.handle(Input::Message {
            from,
            msg: Message::NewView {
                timeout: Vote {
                    msg,
                    share: share.clone(),
                },
                high_qc: Certificate::genesis(DomainId::Global),
                high_tc: None,
                vote: None,
            },
        });
        writes += persists(&out).len();
        assert!(
            !out.iter().any(|o| matches!(o, Output::Send { .. })),
            "answered before our share was durable: {out:?}"
        );
    }
    assert_eq!(writes, 1, "{writes} writes for 500 repeated timeouts");
    // Once our share is durable, the next repeat is answered, still without a write.
    past.handle(Input::Persisted(1));
    let out = past.handle(Input::Message {
        from,
        msg: Message::NewView {
            timeout: Vote { msg, share },
            high_qc: Certificate::genesis(DomainId::Global),
            high_tc: None,
            vote: None,
        },
    });
    assert!(persists(&out).is_empty(), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Send { to, msg: Message::NewView { .. } } if *to == from)),
        "{out:?}"
    );
}

fn report(last_voted: u64, cert: Certificate) -> Message {
    Message::SafetyReport { last_voted, cert }
}

fn rejoining(dealt: &DealtKeys, domain: DomainId, me: ReplicaIndex) -> Replica {
    let mut cfg = config(domain, me);
    if domain != DomainId::Global {
        cfg.edge = Some(0);
    }
    Replica::restore(
        cfg,
        keys(dealt, me),
        Stored {
            rejoin: true,
            ..Stored::default()
        },
    )
}

/// A replica that lost its database voted in view 1, then a Byzantine leader shows it a second
/// block for view 1. Restored as new, it votes again (the hazard); rejoining, it signs nothing
/// until 2f+1 others said how far they got, and then only above that, durably first.
#[test]
fn a_replica_that_lost_its_state_never_signs_twice_in_a_view() {
    let dealt = SimScheme::deal(4, 3, [10; 32]);
    let lead = leader(1, 4);
    let me = (lead + 2) % 4;
    let first =
        proposal_of(&replica(&dealt, lead).handle(Input::Payload(vec![Tx::new(b"a".to_vec())])));
    let second =
        proposal_of(&replica(&dealt, lead).handle(Input::Payload(vec![Tx::new(b"b".to_vec())])));
    assert_ne!(first, second);
    let mut before = replica(&dealt, me);
    let out = before.handle(Input::Message {
        from: lead,
        msg: first,
    });
    let out = before.handle(Input::Persisted(persist_seq(&out)));
    assert_eq!(
        votes(&out).len(),
        1,
        "voted in view 1 before the disk was lost"
    );

    // The hazard: an empty disk taken at its word.
    let mut naive = Replica::restore(
        config(DomainId::Global, me),
        keys(&dealt, me),
        Stored::default(),
    );
    let out = naive.handle(Input::Message {
        from: lead,
        msg: second.clone(),
    });
    let out = naive.handle(Input::Persisted(persist_seq(&out)));
    assert_eq!(
        votes(&out).len(),
        1,
        "a replica without its state votes again"
    );

    let mut r = rejoining(&dealt, DomainId::Global, me);
    let out = r.handle(Input::Start);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Broadcast(Message::SafetyQuery)))
    );
    let out = r.handle(Input::Message {
        from: lead,
        msg: second,
    });
    assert!(
        votes(&out).is_empty() && persists(&out).is_empty(),
        "{out:?}"
    );

    let genesis = Certificate::genesis(DomainId::Global);
    let others: Vec<ReplicaIndex> = (0..4).filter(|&i| i != me).collect();
    // A lie beyond what its certificate allows is refused and not counted, and so is a forged
    // certificate; a refused member is not heard again (no second certificate check) until
    // the query is repeated. A second answer from one member is not counted either.
    let refused = |out: &[Output], why: Reject| {
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::Rejected { reason, .. }) if *reason == why))
    };
    let out = r.handle(Input::Message {
        from: others[0],
        msg: report(1_000, genesis.clone()),
    });
    assert!(refused(&out, Reject::Malformed));
    let mut forged = qc_over(&dealt, Hash([7; 32]), 3);
    forged.msg.view = 4;
    let out = r.handle(Input::Message {
        from: others[1],
        msg: report(1, forged.clone()),
    });
    assert!(refused(&out, Reject::BadCertificate));
    let out = r.handle(Input::Message {
        from: others[1],
        msg: report(1, forged),
    });
    assert!(out.is_empty(), "a refused member is heard again: {out:?}");
    let out = r.handle(Input::Timeout(Timer::Rejoin(1)));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Broadcast(Message::SafetyQuery)))
    );
    r.handle(Input::Message {
        from: others[0],
        msg: report(1, genesis.clone()),
    });
    let out = r.handle(Input::Message {
        from: others[0],
        msg: report(0, genesis.clone()),
    });
    assert!(
        persists(&out).is_empty(),
        "one member counted twice: {out:?}"
    );
    r.handle(Input::Message {
        from: others[1],
        msg: report(0, genesis.clone()),
    });
    let out = r.handle(Input::Message {
        from: others[2],
        msg: report(1, genesis.clone()),
    });
    // 2f+1 answered, the highest is view 1: never sign in views 1 or 2, on disk first.
    assert_eq!(r.safety().last_voted, 2);
    let seq = persist_seq(&out);
    assert!(votes(&out).is_empty());
    let out = r.handle(Input::Persisted(seq));
    assert!(
        votes(&out).is_empty(),
        "the held-back vote was for view 1: {out:?}"
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Rejoined {
            last_voted: 2,
            answers: 3
        })
    )));
}

/// A new network: every database is empty, so every replica rejoins, and every answer is the
/// genesis state. Nothing is raised and the vote held back goes out once the wait ends.
#[test]
fn a_new_network_loses_no_vote_to_the_rejoin_wait() {
    let dealt = SimScheme::deal(4, 3, [11; 32]);
    let lead = leader(1, 4);
    let me = (lead + 2) % 4;
    let proposal =
        proposal_of(&replica(&dealt, lead).handle(Input::Payload(vec![Tx::new(b"a".to_vec())])));
    let mut r = rejoining(&dealt, DomainId::Global, me);
    r.handle(Input::Start);
    assert!(
        votes(&r.handle(Input::Message {
            from: lead,
            msg: proposal
        }))
        .is_empty()
    );
    let mut out = Vec::new();
    for from in (0..4).filter(|&i| i != me) {
        // It answers others while it waits itself.
        let asked = r.handle(Input::Message {
            from,
            msg: Message::SafetyQuery,
        });
        assert!(asked.iter().any(|o| matches!(o, Output::Send { to, msg: Message::SafetyReport { last_voted: 0, .. } } if *to == from)));
        out = r.handle(Input::Message {
            from,
            msg: report(0, Certificate::genesis(DomainId::Global)),
        });
    }
    assert_eq!(r.safety().last_voted, 0);
    let out = r.handle(Input::Persisted(persist_seq(&out)));
    let out = r.handle(Input::Persisted(persist_seq(&out)));
    assert_eq!(votes(&out).len(), 1, "{out:?}");
}

/// A local member rejoins: its last voted view and view-change target rise past the answers,
/// and an answer claiming a term far past its own certificate is refused.
#[test]
fn a_local_member_rejoins_above_the_terms_reported() {
    let dealt = SimScheme::deal(4, 3, [12; 32]);
    let domain = DomainId::Local(1);
    let mut r = rejoining(&dealt, domain, 2);
    r.handle(Input::Start);
    let genesis = Certificate::genesis(domain);
    let view = |term: u64, round: u64| (term << 32) | round;
    let out = r.handle(Input::Message {
        from: 0,
        msg: report(view(40, 0), genesis.clone()),
    });
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Rejected {
            reason: Reject::Malformed,
            ..
        })
    )));
    // Refused this round; heard again when the query is repeated.
    r.handle(Input::Timeout(Timer::Rejoin(1)));
    r.handle(Input::Message {
        from: 0,
        msg: report(view(3, 0), genesis.clone()),
    });
    r.handle(Input::Message {
        from: 1,
        msg: report(view(2, 9), genesis.clone()),
    });
    let out = r.handle(Input::Message {
        from: 3,
        msg: report(0, genesis),
    });
    let Some(Output::Persist { state, .. }) =
        out.iter().find(|o| matches!(o, Output::Persist { .. }))
    else {
        panic!("the raised state goes to disk: {out:?}");
    };
    assert_eq!(state.last_voted, view(3, 1));
    assert_eq!(state.vc_target, 3);
}

/// A member that never answers (down since the network began, or withholding) delays a rejoin
/// but does not stop it: after ten rounds of asking, n-f-1 answers are enough.
#[test]
fn a_member_that_never_answers_delays_a_rejoin_but_does_not_stop_it() {
    let dealt = SimScheme::deal(4, 3, [14; 32]);
    let mut r = rejoining(&dealt, DomainId::Global, 2);
    r.handle(Input::Start);
    let genesis = Certificate::genesis(DomainId::Global);
    for from in [0, 1] {
        let out = r.handle(Input::Message {
            from,
            msg: report(4, genesis.clone()),
        });
        assert!(persists(&out).is_empty());
    }
    let mut ended = None;
    for round in 1..=20 {
        let out = r.handle(Input::Timeout(Timer::Rejoin(round)));
        if !persists(&out).is_empty() {
            ended = Some(round);
            break;
        }
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Broadcast(Message::SafetyQuery))),
            "round {round}: asked again"
        );
    }
    assert_eq!(ended, Some(10), "rounds before two answers were enough");
    assert_eq!(r.safety().last_voted, 5);
}

fn view_change_leader(outputs: &[Output]) -> Option<ReplicaIndex> {
    outputs.iter().find_map(|o| match o {
        Output::Broadcast(Message::ViewChange { leader, .. }) => Some(*leader),
        _ => None,
    })
}

/// Member `from`'s view-change message for `term`, naming `leader`.
fn view_change(dealt: &DealtKeys, from: ReplicaIndex, term: u64, leader: ReplicaIndex) -> Input {
    let domain = DomainId::Local(1);
    let msg = SignedMsg {
        domain,
        kind: Kind::ViewChange,
        view: term,
        digest: lcbft_protocol::message::view_change_digest(leader),
    };
    let share = keys(dealt, from).sign_share(&msg.bytes()).unwrap();
    Input::Message {
        from,
        msg: Message::ViewChange {
            share: Vote { msg, share },
            leader,
            high_qc: Certificate::genesis(domain),
            current: None,
        },
    }
}

/// Members rank leaders from history a member restarted above genesis lacks, so it may name
/// another leader for a term than its peers. With exactly n-f members up no term would form;
/// it signs again for the leader f+1 others named (one of them is honest), once per term.
#[test]
fn a_member_follows_the_leader_f_plus_1_others_name() {
    let dealt = SimScheme::deal(4, 3, [13; 32]);
    let domain = DomainId::Local(1);
    let mut r = LocalReplica::new(config(domain, 1), keys(&dealt, 1));
    // Work pending, the term timer fires: we ask for term 1, naming our own choice.
    let out = r.handle(Input::Payload(vec![Tx::new(vec![0xa1, 1])]));
    let timer = out
        .iter()
        .find_map(|o| match o {
            Output::SetTimer {
                timer: t @ Timer::Term(_),
                ..
            } => Some(*t),
            _ => None,
        })
        .expect("the term timer runs while work is pending");
    let out = r.handle(Input::Timeout(timer));
    let out = r.handle(Input::Persisted(persist_seq(&out)));
    let mine = view_change_leader(&out).expect("our view change leaves once durable");
    let theirs = (0..4).find(|&l| l != mine && l != 1).unwrap();
    // One member naming another leader may be the faulty one: nothing changes.
    let out = r.handle(view_change(&dealt, 2, 1, theirs));
    assert_eq!(view_change_leader(&out), None, "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Persist { .. })));
    // f+1 do: we sign again for theirs, durably first.
    let out = r.handle(view_change(&dealt, 3, 1, theirs));
    assert_eq!(
        view_change_leader(&out),
        None,
        "not before the persist: {out:?}"
    );
    let out = r.handle(Input::Persisted(persist_seq(&out)));
    assert_eq!(view_change_leader(&out), Some(theirs));
    // Once per term: a third naming yet another leader changes nothing.
    let out = r.handle(view_change(&dealt, 0, 1, mine));
    assert_eq!(view_change_leader(&out), None, "{out:?}");
    // A member joining a term f+1 others asked for names their leader at once.
    let mut late = LocalReplica::new(config(domain, 2), keys(&dealt, 2));
    late.handle(view_change(&dealt, 0, 4, 3));
    let out = late.handle(view_change(&dealt, 1, 4, 3));
    let out = late.handle(Input::Persisted(persist_seq(&out)));
    assert_eq!(view_change_leader(&out), Some(3));
}
