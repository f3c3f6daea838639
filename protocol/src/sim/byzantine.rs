//! Byzantine replicas: an honest replica wrapped by a strategy that lies in one named way.

use crate::collector::{Added, Collector};
use crate::core::Config;
use crate::crypto::{Share, Signature, ThresholdKeys};
use crate::global;
use crate::io::{Input, Output};
use crate::message::{Message, Proposal, TermProof, view_change_digest};
use crate::replica::Replica;
use crate::types::{
    Bitmap, Block, Certificate, Hash, Kind, ReplicaIndex, SignedMsg, Tx, View, Vote,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// As leader, sends different blocks for one view to the two halves of the domain.
    Equivocator,
    /// Votes for every proposal it sees, ignoring its vote and lock rules.
    DoubleVoter,
    /// Sends well-formed shares over the wrong message.
    InvalidShare,
    /// Never sends a share (votes, timeouts, view changes, confirmations).
    Withholder,
    /// As leader, proposes extending the genesis certificate instead of its highest QC.
    StaleCert,
    /// As leader, proposes with a certificate whose signature is garbage.
    ForgedCert,
    /// Sends view-change messages with forged certificates and claims terms it never won.
    ForgedViewChange,
    /// As a new local leader, announces and extends a lower QC than the highest it was sent.
    LowCertLeader,
    /// Two honest copies of one replica's key on both sides of a partition.
    Twins,
    /// As leader, adds to each proposal in turn an item the admission rule refuses, a second
    /// copy of one of its items, or an item already committed.
    BadPayload,
}

impl Strategy {
    pub const ALL: [Strategy; 10] = [
        Strategy::Equivocator,
        Strategy::DoubleVoter,
        Strategy::InvalidShare,
        Strategy::Withholder,
        Strategy::StaleCert,
        Strategy::ForgedCert,
        Strategy::ForgedViewChange,
        Strategy::LowCertLeader,
        Strategy::Twins,
        Strategy::BadPayload,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Equivocator => "equivocator",
            Strategy::DoubleVoter => "double-voter",
            Strategy::InvalidShare => "invalid-share",
            Strategy::Withholder => "withholder",
            Strategy::StaleCert => "stale-cert",
            Strategy::ForgedCert => "forged-cert",
            Strategy::ForgedViewChange => "forged-view-change",
            Strategy::LowCertLeader => "low-cert-leader",
            Strategy::Twins => "twins",
            Strategy::BadPayload => "bad-payload",
        }
    }
}

pub struct Byzantine {
    strategy: Strategy,
    inner: Replica,
    cfg: Config,
    keys: Box<dyn ThresholdKeys>,
    collector: Collector,
    /// LowCertLeader: the term it announced with the genesis QC as chosen.
    low_term: Option<u64>,
    inputs: u64,
    /// BadPayload: an item committed here, to replay.
    committed: Option<Tx>,
    proposals: u64,
}

impl Byzantine {
    pub fn new(
        strategy: Strategy,
        inner: Replica,
        cfg: Config,
        keys: Box<dyn ThresholdKeys>,
    ) -> Byzantine {
        Byzantine {
            strategy,
            inner,
            cfg,
            keys,
            collector: Collector::default(),
            low_term: None,
            inputs: 0,
            committed: None,
            proposals: 0,
        }
    }

    fn others(&self) -> impl Iterator<Item = ReplicaIndex> + '_ {
        (0..self.cfg.n)
            .filter_map(|i| ReplicaIndex::try_from(i).ok())
            .filter(|&i| i != self.cfg.me)
    }

    fn genesis_qc(&self) -> Certificate {
        Certificate::genesis(self.cfg.domain)
    }

    fn forged(&self, kind: Kind, view: View) -> Certificate {
        Certificate {
            msg: SignedMsg {
                domain: self.cfg.domain,
                kind,
                view,
                digest: Hash::of(&view.to_be_bytes()),
            },
            signers: Bitmap::from_indices(self.cfg.n, 0..self.cfg.n as ReplicaIndex),
            signature: Signature(vec![7; 96]),
        }
    }

    fn sign(&self, msg: SignedMsg) -> Option<Vote> {
        let share = self.keys.sign_share(&msg.bytes()).ok()?;
        Some(Vote { msg, share })
    }

    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        self.inputs += 1;
        let mut extra = Vec::new();
        match (&self.strategy, &input) {
            (
                Strategy::DoubleVoter,
                Input::Message {
                    msg: Message::Propose(p),
                    ..
                },
            ) => {
                let msg = SignedMsg {
                    domain: self.cfg.domain,
                    kind: Kind::Vote,
                    view: p.block.view,
                    digest: p.block.hash(),
                };
                if let Some(v) = self.sign(msg) {
                    extra.push(Output::Broadcast(Message::Vote(v)));
                }
            }
            (
                Strategy::LowCertLeader,
                Input::Message {
                    msg: Message::Refuse { .. },
                    ..
                },
            ) => {
                return Vec::new();
            }
            (
                Strategy::LowCertLeader,
                Input::Message {
                    from,
                    msg: Message::Vote(v),
                },
            ) if v.msg.kind == Kind::Confirm && Some(v.msg.view) == self.low_term => {
                let (from, v) = (*from, v.clone());
                return self.collect_low_confirm(from, v);
            }
            (Strategy::ForgedViewChange, Input::Message { .. })
                if self.inputs.is_multiple_of(16) =>
            {
                extra.extend(self.forged_view_change());
            }
            _ => {}
        }
        let outputs = self.inner.handle(input);
        if let Some(tx) = outputs.iter().find_map(|o| match o {
            Output::Commit { block, .. } => block.payload.first(),
            _ => None,
        }) {
            self.committed = Some(tx.clone());
        }
        let mut result = Vec::new();
        for out in outputs {
            result.extend(self.transform(out));
        }
        result.extend(extra);
        result
    }

    fn transform(&mut self, out: Output) -> Vec<Output> {
        // Shares may be broadcast; lie to each recipient alike.
        if let Output::Broadcast(
            msg @ (Message::Vote(_) | Message::NewView { .. } | Message::ViewChange { .. }),
        ) = out
        {
            let sends: Vec<Output> = self
                .others()
                .map(|to| Output::Send {
                    to,
                    msg: msg.clone(),
                })
                .collect();
            return sends
                .into_iter()
                .flat_map(|o| self.transform_one(o))
                .collect();
        }
        self.transform_one(out)
    }

    fn transform_one(&mut self, out: Output) -> Vec<Output> {
        match (self.strategy, out) {
            (Strategy::Equivocator, Output::Broadcast(Message::Propose(p))) => self.equivocate(p),
            (Strategy::InvalidShare, Output::Send { to, msg }) => {
                vec![Output::Send {
                    to,
                    msg: self.corrupt(msg),
                }]
            }
            (
                Strategy::Withholder,
                Output::Send {
                    msg: Message::Vote(_) | Message::NewView { .. } | Message::ViewChange { .. },
                    ..
                },
            ) => Vec::new(),
            (Strategy::StaleCert, Output::Broadcast(Message::Propose(p))) => {
                vec![Output::Broadcast(Message::Propose(self.extend_genesis(p)))]
            }
            (Strategy::BadPayload, Output::Broadcast(Message::Propose(p))) => {
                vec![Output::Broadcast(Message::Propose(self.bad_payload(p)))]
            }
            (Strategy::ForgedCert, Output::Broadcast(Message::Propose(mut p))) => {
                p.block.justify.signature = Signature(vec![3; 96]);
                vec![Output::Broadcast(Message::Propose(p))]
            }
            (
                Strategy::ForgedViewChange,
                Output::Send {
                    to,
                    msg: Message::NewView { timeout, vote, .. },
                },
            ) => self.forge_new_view(to, timeout, vote),
            (
                Strategy::ForgedViewChange,
                Output::Send {
                    to,
                    msg:
                        Message::ViewChange {
                            share,
                            leader,
                            current,
                            ..
                        },
                },
            ) => self.forge_view_change(to, share, leader, current),
            (Strategy::LowCertLeader, Output::Broadcast(Message::NewTerm { vc, leader, .. })) => {
                self.low_term = Some(vc.view());
                vec![Output::Broadcast(Message::NewTerm {
                    vc,
                    leader,
                    chosen: self.genesis_qc(),
                })]
            }
            (Strategy::LowCertLeader, Output::Broadcast(Message::Propose(p)))
                if crate::local::round_of(p.block.view) == 1 =>
            {
                vec![Output::Broadcast(Message::Propose(self.extend_genesis(p)))]
            }
            (_, out) => vec![out],
        }
    }

    /// One proposal to half of the others, a different block for the same view to the rest.
    fn equivocate(&self, p: Proposal) -> Vec<Output> {
        let mut twin = p.clone();
        twin.block.payload.push(Tx::new(b"equivocation".to_vec()));
        self.others()
            .enumerate()
            .map(|(k, to)| Output::Send {
                to,
                msg: Message::Propose(if k % 2 == 0 { p.clone() } else { twin.clone() }),
            })
            .collect()
    }

    fn bad_payload(&mut self, mut p: Proposal) -> Proposal {
        self.proposals += 1;
        let refused = Tx::new([crate::sim::REFUSED_PREFIX, &self.proposals.to_be_bytes()].concat());
        let extra = match self.proposals % 3 {
            1 => p.block.payload.first().cloned(),
            2 => self.committed.clone(),
            _ => None,
        };
        p.block.payload.push(extra.unwrap_or(refused));
        p
    }

    fn forge_new_view(&self, to: ReplicaIndex, timeout: Vote, vote: Option<Vote>) -> Vec<Output> {
        let high_qc = self.forged(Kind::Vote, timeout.msg.view + 1000);
        let high_tc = Some(self.forged(Kind::Timeout, timeout.msg.view + 1000));
        vec![Output::Send {
            to,
            msg: Message::NewView {
                timeout,
                high_qc,
                high_tc,
                vote,
            },
        }]
    }

    fn forge_view_change(
        &self,
        to: ReplicaIndex,
        share: Vote,
        leader: ReplicaIndex,
        current: Option<TermProof>,
    ) -> Vec<Output> {
        let forged = self.forged(Kind::Vote, share.msg.view << 32 | 5);
        let mut out = vec![Output::Send {
            to,
            msg: Message::ViewChange {
                share,
                leader,
                high_qc: forged,
                current,
            },
        }];
        out.extend(self.forged_view_change());
        out
    }

    /// A share over the wrong message, in a well-formed envelope.
    fn corrupt(&self, msg: Message) -> Message {
        let wrong = |v: Vote| -> Vote {
            let mut other = v.msg;
            other.view = other.view.wrapping_add(1_000_000);
            let share = self
                .keys
                .sign_share(&other.bytes())
                .unwrap_or_else(|_| Share(vec![1; 96]));
            Vote { msg: v.msg, share }
        };
        match msg {
            Message::Vote(v) => Message::Vote(wrong(v)),
            Message::NewView {
                timeout,
                high_qc,
                high_tc,
                vote,
            } => Message::NewView {
                timeout: wrong(timeout),
                high_qc,
                high_tc,
                vote: vote.map(wrong),
            },
            Message::ViewChange {
                share,
                leader,
                high_qc,
                current,
            } => Message::ViewChange {
                share: wrong(share),
                leader,
                high_qc,
                current,
            },
            other => other,
        }
    }

    fn extend_genesis(&self, p: Proposal) -> Proposal {
        let genesis = Block::genesis(self.cfg.domain);
        let block = Block {
            domain: self.cfg.domain,
            height: 1,
            view: p.block.view,
            proposer: self.cfg.me,
            parent: genesis.hash(),
            justify: self.genesis_qc(),
            payload: p.block.payload,
        };
        Proposal { block, ..p }
    }

    /// Claims of a term or view it never won, backed by forged certificates.
    fn forged_view_change(&self) -> Vec<Output> {
        match self.cfg.domain {
            crate::types::DomainId::Global => {
                let view = self.inputs + 3;
                if global::leader(view, self.cfg.n) != self.cfg.me {
                    return Vec::new();
                }
                let block = Block {
                    domain: self.cfg.domain,
                    height: 1,
                    view,
                    proposer: self.cfg.me,
                    parent: Block::genesis(self.cfg.domain).hash(),
                    justify: self.genesis_qc(),
                    payload: Default::default(),
                };
                vec![Output::Broadcast(Message::Propose(Proposal {
                    block,
                    timeout: Some(self.forged(Kind::Timeout, view - 1)),
                    term: None,
                }))]
            }
            crate::types::DomainId::Local(_) => {
                let term = self.inputs / 16 + 1;
                let mut vc = self.forged(Kind::ViewChange, term);
                vc.msg.digest = view_change_digest(self.cfg.me);
                let chosen = self.forged(Kind::Vote, term << 32 | 9);
                let mut confirm = self.forged(Kind::Confirm, term);
                confirm.msg.digest = TermProof::digest(self.cfg.me, &chosen.block());
                vec![
                    Output::Broadcast(Message::NewTerm {
                        vc,
                        leader: self.cfg.me,
                        chosen: chosen.clone(),
                    }),
                    Output::Broadcast(Message::TermStart(TermProof {
                        confirm,
                        leader: self.cfg.me,
                        chosen,
                    })),
                ]
            }
        }
    }

    /// LowCertLeader collects confirmations of its low choice itself; if honest replicas were
    /// foolish enough to confirm, it starts the term and tells everyone.
    fn collect_low_confirm(&mut self, from: ReplicaIndex, v: Vote) -> Vec<Output> {
        let chosen = self.genesis_qc();
        if v.msg.digest != TermProof::digest(self.cfg.me, &chosen.block()) {
            return Vec::new();
        }
        match self.collector.add(self.keys.as_ref(), v.msg, from, v.share) {
            Added::Formed { cert, .. } => {
                let proof = TermProof {
                    confirm: cert,
                    leader: self.cfg.me,
                    chosen,
                };
                let mut out = vec![Output::Broadcast(Message::TermStart(proof.clone()))];
                let inner = self.inner.handle(Input::Message {
                    from: if from == self.cfg.me {
                        (self.cfg.me + 1) % self.cfg.n as ReplicaIndex
                    } else {
                        from
                    },
                    msg: Message::TermStart(proof),
                });
                for o in inner {
                    out.extend(self.transform(o));
                }
                out
            }
            _ => Vec::new(),
        }
    }
}
