//! The addresses we dial members at, bounded (DESIGN §7: address books have a bound).
//!
//! Only genesis members get an entry (the caller filters), so the total is bounded by the
//! genesis times the per-peer caps. Per peer, addresses are kept by how far we trust their
//! source, so hearsay cannot push out what the member told us itself:
//! - configured (`network.peers`): always kept;
//! - the member's own identify report: the latest [`MAX_OWN`];
//! - hearsay (mDNS answers anyone on the LAN can send, Kademlia records any member can
//!   fill): the latest [`MAX_HEARSAY`].

use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, VecDeque};

pub const MAX_OWN: usize = 8;
pub const MAX_HEARSAY: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Configured,
    /// The peer's own identify message.
    Itself,
    /// mDNS or Kademlia.
    Hearsay,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    Known,
    New,
    /// New, and the oldest address of its tier made room for it.
    Evicted(Multiaddr),
}

#[derive(Debug, Default)]
struct Entry {
    configured: Vec<Multiaddr>,
    own: VecDeque<Multiaddr>,
    hearsay: VecDeque<Multiaddr>,
}

impl Entry {
    fn contains(&self, a: &Multiaddr) -> bool {
        self.configured.contains(a) || self.own.contains(a) || self.hearsay.contains(a)
    }
}

#[derive(Debug, Default)]
pub struct AddressBook {
    peers: HashMap<PeerId, Entry>,
}

impl AddressBook {
    pub fn add(&mut self, peer: PeerId, addr: Multiaddr, source: Source) -> Added {
        let e = self.peers.entry(peer).or_default();
        if source == Source::Itself && !e.configured.contains(&addr) {
            // Confirmed by the peer itself: promote out of hearsay.
            e.hearsay.retain(|a| *a != addr);
        } else if e.contains(&addr) {
            return Added::Known;
        }
        let (tier, cap) = match source {
            Source::Configured => {
                e.configured.push(addr);
                return Added::New;
            }
            Source::Itself => (&mut e.own, MAX_OWN),
            Source::Hearsay => (&mut e.hearsay, MAX_HEARSAY),
        };
        if let Some(i) = tier.iter().position(|a| *a == addr) {
            // Seen again: now the newest.
            tier.remove(i);
            tier.push_back(addr);
            return Added::Known;
        }
        tier.push_back(addr);
        if tier.len() > cap
            && let Some(old) = tier.pop_front()
        {
            return Added::Evicted(old);
        }
        Added::New
    }

    /// What to dial, most trusted first.
    pub fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|e| {
                e.configured
                    .iter()
                    .chain(&e.own)
                    .chain(&e.hearsay)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Addresses held, all peers together.
    pub fn len(&self) -> usize {
        self.peers
            .values()
            .map(|e| e.configured.len() + e.own.len() + e.hearsay.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().expect("addr")
    }

    #[test]
    fn hearsay_is_bounded_and_cannot_push_out_what_the_peer_said() {
        let mut b = AddressBook::default();
        let p = PeerId::random();
        assert_eq!(b.add(p, addr(1), Source::Configured), Added::New);
        assert_eq!(b.add(p, addr(2), Source::Itself), Added::New);
        for port in 100..1100 {
            b.add(p, addr(port), Source::Hearsay);
        }
        let got = b.get(&p);
        assert_eq!(got.len(), 2 + MAX_HEARSAY);
        assert_eq!(&got[..2], &[addr(1), addr(2)]);
        assert_eq!(b.add(p, addr(1099), Source::Hearsay), Added::Known);
        assert_eq!(b.add(p, addr(1), Source::Hearsay), Added::Known);
    }

    #[test]
    fn the_peer_confirming_an_address_promotes_it_and_its_own_list_is_bounded() {
        let mut b = AddressBook::default();
        let p = PeerId::random();
        b.add(p, addr(5), Source::Hearsay);
        assert_eq!(b.add(p, addr(5), Source::Itself), Added::New);
        assert_eq!(b.get(&p), vec![addr(5)]);
        for port in 10..10 + MAX_OWN as u16 {
            b.add(p, addr(port), Source::Itself);
        }
        assert_eq!(b.len(), MAX_OWN);
        assert!(
            !b.get(&p).contains(&addr(5)),
            "the oldest own address went first"
        );
    }
}
