//! A price on handshakes that come to nothing, per remote IP address (DESIGN §7).
//!
//! Admission judges a peer only after the noise handshake has proven its key, and a handshake
//! costs us three X25519 operations and a signature check. A stranger, or a member we cut
//! off, can redial as fast as it likes: in `hostile_shares` a cut-off member redialled each
//! honest node about 170 times a second, and those handshakes were half the node's CPU. So
//! every inbound connection that fails or is refused after its handshake costs its address a
//! token, and an address out of tokens is refused before the handshake, which costs us an
//! accept and a close. Connections that are admitted cost nothing, so honest members are never
//! refused unless they share an address with a peer that keeps failing (processes on one
//! host, as in a loopback testnet).

use super::limits::{Bucket, Rate};
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr, multiaddr::Protocol};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, ListenError, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};
use tokio::time::Instant;

/// Failed or refused handshakes an address may cost us: a burst for a host that restarts
/// several nodes at once, then a few a second.
pub const HANDSHAKES: Rate = Rate {
    per_second: 4.0,
    burst: 32.0,
};

/// Addresses tracked at most. Buckets that refilled are dropped first; past that, a new
/// address goes unmetered (bounded still by the pending-handshake limit) rather than growing
/// the map.
pub const MAX_ADDRESSES: usize = 4096;

/// The address is out of handshakes.
#[derive(Debug, thiserror::Error)]
#[error("too many failed handshakes from this address")]
pub struct OverBudget;

#[derive(Default)]
pub struct HandshakeGate {
    buckets: HashMap<IpAddr, Bucket>,
}

/// The IP address a multiaddr starts from, if it names one.
pub(super) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl HandshakeGate {
    /// Whether `ip` may start a handshake now.
    pub fn allows(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.buckets.get_mut(&ip).is_none_or(|b| {
            b.refill(HANDSHAKES, now);
            b.tokens >= 1.0
        })
    }

    /// A handshake from `ip` came to nothing.
    pub fn charge(&mut self, ip: IpAddr, now: Instant) {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_ADDRESSES {
            self.buckets.retain(|_, b| !b.refilled(HANDSHAKES, now));
            if self.buckets.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let b = self
            .buckets
            .entry(ip)
            .or_insert(Bucket::full(HANDSHAKES, now));
        b.refill(HANDSHAKES, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

impl NetworkBehaviour for HandshakeGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        match ip_of(remote_addr) {
            Some(ip) if !self.allows(ip, Instant::now()) => Err(ConnectionDenied::new(OverBudget)),
            _ => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let FromSwarm::ListenFailure(failure) = event else {
            return;
        };
        // Refused by us before the handshake, or given up by us: it cost nothing.
        let free = match failure.error {
            ListenError::Aborted => true,
            ListenError::Denied { cause } => cause.downcast_ref::<OverBudget>().is_some(),
            _ => false,
        };
        if !free && let Some(ip) = ip_of(failure.send_back_addr) {
            self.charge(ip, Instant::now());
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_until_its_budget_refills() {
        let mut g = HandshakeGate::default();
        let t0 = Instant::now();
        for _ in 0..HANDSHAKES.burst as usize {
            assert!(g.allows(ip(1), t0));
            g.charge(ip(1), t0);
        }
        assert!(!g.allows(ip(1), t0), "the burst is spent");
        assert!(g.allows(ip(2), t0), "another address has its own budget");
        let one = Duration::from_secs_f64(1.0 / HANDSHAKES.per_second);
        assert!(g.allows(ip(1), t0 + one), "one handshake a refill later");
        g.charge(ip(1), t0 + one);
        assert!(!g.allows(ip(1), t0 + one));
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_refilled_addresses_first() {
        let mut g = HandshakeGate::default();
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESSES + 10 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(i as u32));
            g.charge(a, t0);
        }
        assert_eq!(g.len(), MAX_ADDRESSES);
        // Once the first ones refilled, a new address takes their room.
        let later = t0 + Duration::from_secs_f64(1.0 / HANDSHAKES.per_second);
        g.charge(ip(9), later);
        assert!(g.len() <= MAX_ADDRESSES);
        g.charge(ip(9), later);
        assert!(g.allows(ip(9), later));
        for _ in 0..HANDSHAKES.burst as usize {
            g.charge(ip(9), later);
        }
        assert!(!g.allows(ip(9), later), "the new address is metered");
    }

    #[test]
    fn addresses_are_read_from_ip4_and_ip6_multiaddrs() {
        let a: Multiaddr = "/ip4/10.0.0.1/tcp/7000".parse().expect("addr");
        let b: Multiaddr = "/ip6/::1/tcp/7000".parse().expect("addr");
        let c: Multiaddr = "/dns4/example.org/tcp/7000".parse().expect("addr");
        assert_eq!(ip_of(&a), Some(ip(1)));
        assert_eq!(ip_of(&b), Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)));
        assert_eq!(ip_of(&c), None);
    }
}
