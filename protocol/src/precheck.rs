//! A cheap, side-effect-free filter a node runs on gossip before forwarding it: right domain,
//! a sender entitled to send it, within the replica's view window. Signatures are checked
//! later by the replica itself (once, with its certificate cache); what fails there comes
//! back as `Event::Rejected`.

use crate::io::Reject;
use crate::local::term_of;
use crate::message::Message;
use crate::replica::Replica;
use crate::types::{Certificate, DomainId, ReplicaIndex, View};

/// How far ahead of the replica a message may be and still be worth forwarding.
const AHEAD: View = 64;

impl Replica {
    /// Whether `msg` from member `from` is plausible for this replica's domain right now.
    pub fn precheck(&self, from: ReplicaIndex, msg: &Message) -> Result<(), Reject> {
        let (domain, n) = match self {
            Replica::Global(r) => (DomainId::Global, r.members()),
            Replica::Local(r) => (r.domain(), r.members()),
        };
        if usize::from(from) >= n {
            return Err(Reject::NotLeader);
        }
        let status = self.status();
        let in_domain = |c: &Certificate| c.msg.domain == domain;
        match msg {
            Message::Propose(p) => {
                let b = &p.block;
                if b.domain != domain || !in_domain(&b.justify) {
                    return Err(Reject::WrongDomain);
                }
                if b.proposer != from {
                    return Err(Reject::NotLeader);
                }
                match self {
                    Replica::Global(_) => {
                        if crate::global::leader(b.view, n) != from {
                            return Err(Reject::NotLeader);
                        }
                        if b.view > status.view + AHEAD {
                            return Err(Reject::Malformed);
                        }
                    }
                    Replica::Local(_) => {
                        if term_of(b.view) > status.term + AHEAD {
                            return Err(Reject::Malformed);
                        }
                        if term_of(b.view) == status.term && from != status.leader {
                            return Err(Reject::NotLeader);
                        }
                    }
                }
                Ok(())
            }
            Message::Vote(v) => (v.msg.domain == domain)
                .then_some(())
                .ok_or(Reject::WrongDomain),
            Message::NewView {
                timeout, high_qc, ..
            } => {
                if timeout.msg.domain != domain || !in_domain(high_qc) {
                    return Err(Reject::WrongDomain);
                }
                if timeout.msg.view > status.view + AHEAD {
                    return Err(Reject::Malformed);
                }
                Ok(())
            }
            Message::ViewChange { share, high_qc, .. } => {
                if share.msg.domain != domain || !in_domain(high_qc) {
                    return Err(Reject::WrongDomain);
                }
                if share.msg.view > status.term + AHEAD {
                    return Err(Reject::Malformed);
                }
                Ok(())
            }
            Message::NewTerm { vc, leader, chosen } => {
                if !in_domain(vc) || !in_domain(chosen) {
                    return Err(Reject::WrongDomain);
                }
                if *leader != from {
                    return Err(Reject::NotLeader);
                }
                Ok(())
            }
            Message::TermStart(p) => in_domain(&p.confirm)
                .then_some(())
                .ok_or(Reject::WrongDomain),
            Message::Refuse { high_qc, .. } | Message::Certificate(high_qc) => {
                in_domain(high_qc).then_some(()).ok_or(Reject::WrongDomain)
            }
            Message::BlockRequest { .. } | Message::SafetyQuery => Ok(()),
            Message::SafetyReport { cert, .. } => {
                in_domain(cert).then_some(()).ok_or(Reject::WrongDomain)
            }
            Message::BlockResponse(blocks) => {
                if blocks.iter().any(|b| b.domain != domain) {
                    return Err(Reject::WrongDomain);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::crypto::{Dealer, SimScheme, load_keys};
    use crate::io::{Input, Output};
    use crate::types::Tx;

    fn replica(domain: DomainId, me: ReplicaIndex) -> Replica {
        let dealt = SimScheme::deal(4, 3, [8; 32]);
        let keys = load_keys(
            dealt.scheme,
            4,
            &dealt.public,
            dealt.secrets.get(usize::from(me)),
        );
        // One step's outputs are read: an unpaced leader proposes within it.
        Replica::new(Config::new(domain, me, 4).unpaced(), keys.unwrap())
    }

    #[test]
    fn proposals_from_the_wrong_sender_or_domain_are_filtered() {
        let mut leader = replica(DomainId::Global, 1);
        let out = leader.handle(Input::Payload(vec![Tx::new(b"t".to_vec())]));
        let proposal = out
            .into_iter()
            .find_map(|o| match o {
                Output::Broadcast(m @ Message::Propose(_)) => Some(m),
                _ => None,
            })
            .unwrap();
        let other = replica(DomainId::Global, 2);
        assert_eq!(other.precheck(1, &proposal), Ok(()));
        assert_eq!(other.precheck(3, &proposal), Err(Reject::NotLeader));
        assert_eq!(other.precheck(9, &proposal), Err(Reject::NotLeader));
        let local = replica(DomainId::Local(1), 2);
        assert_eq!(local.precheck(1, &proposal), Err(Reject::WrongDomain));
    }
}
