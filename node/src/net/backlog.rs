//! Bytes on their way to each peer (DESIGN §7: every structure a peer can grow has a bound).
//!
//! A point-to-point message stays in our memory until the peer has read it and answered its
//! `Ack`, or the request times out. A member that asks for block sync answers (1 MiB each)
//! within its budget and reads them slowly would otherwise keep everything the budget let
//! through over the request timeout: 30-40 MiB per such member in `slow_reader`. So a message
//! that would take a peer's backlog past [`MAX_BACKLOG_BYTES`] is dropped and counted; a
//! peer with an empty backlog always gets one. An honest member reads its answers as they
//! come, and one that missed an answer asks again.

use libp2p::PeerId;
use libp2p::request_response::OutboundRequestId;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Four full sync answers.
pub const MAX_BACKLOG_BYTES: usize = 4 << 20;
/// libp2p reports every request answered, failed or timed out (5 s); one it never reported
/// is forgotten after this, so that no lost report can silence a peer for good.
pub const FORGET_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Backlog {
    bytes: HashMap<PeerId, usize>,
    requests: HashMap<OutboundRequestId, (PeerId, usize, Instant)>,
}

impl Backlog {
    /// Whether `bytes` more may go to `peer` now.
    pub fn admits(&self, peer: &PeerId, bytes: usize) -> bool {
        self.bytes
            .get(peer)
            .is_none_or(|b| *b == 0 || b.saturating_add(bytes) <= MAX_BACKLOG_BYTES)
    }

    /// Request `id` of `bytes` went to `peer`.
    pub fn sent(&mut self, id: OutboundRequestId, peer: PeerId, bytes: usize, now: Instant) {
        *self.bytes.entry(peer).or_default() += bytes;
        self.requests.insert(id, (peer, bytes, now));
    }

    /// Request `id` was answered or failed: its bytes are ours no more.
    pub fn done(&mut self, id: OutboundRequestId) {
        if let Some((peer, bytes, _)) = self.requests.remove(&id) {
            self.release(peer, bytes);
        }
    }

    /// Forget requests sent more than [`FORGET_AFTER`] before `now`.
    pub fn expire(&mut self, now: Instant) {
        let old: Vec<OutboundRequestId> = self
            .requests
            .iter()
            .filter(|(_, (_, _, at))| now.saturating_duration_since(*at) > FORGET_AFTER)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            self.done(id);
        }
    }

    fn release(&mut self, peer: PeerId, bytes: usize) {
        if let Some(b) = self.bytes.get_mut(&peer) {
            *b = b.saturating_sub(bytes);
            if *b == 0 {
                self.bytes.remove(&peer);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.bytes.len() + self.requests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request ids come only from a swarm; these tests need distinct ones.
    fn ids(n: usize) -> Vec<OutboundRequestId> {
        use libp2p::request_response::{self, ProtocolSupport};
        let mut b = request_response::cbor::Behaviour::<Vec<u8>, Vec<u8>>::new(
            [(libp2p::StreamProtocol::new("/test"), ProtocolSupport::Full)],
            request_response::Config::default(),
        );
        let peer = PeerId::random();
        (0..n).map(|_| b.send_request(&peer, Vec::new())).collect()
    }

    #[test]
    fn a_peer_gets_up_to_the_bound_then_nothing_until_it_reads() {
        let mut b = Backlog::default();
        let t0 = Instant::now();
        let slow = PeerId::random();
        let other = PeerId::random();
        let id = ids(6);
        let answer = 1 << 20;
        for &i in &id[..4] {
            assert!(b.admits(&slow, answer));
            b.sent(i, slow, answer, t0);
        }
        assert!(!b.admits(&slow, answer), "four answers are the bound");
        assert!(!b.admits(&slow, 1), "nothing more, however small");
        assert!(b.admits(&other, answer), "another peer has its own bound");
        b.done(id[0]);
        assert!(b.admits(&slow, answer), "room again once one was read");
        b.done(id[0]);
        for &i in &id[1..4] {
            b.done(i);
        }
        assert_eq!(
            b.len(),
            0,
            "nothing kept for a peer with nothing on its way"
        );
    }

    #[test]
    fn a_request_never_reported_is_forgotten() {
        let mut b = Backlog::default();
        let t0 = Instant::now();
        let peer = PeerId::random();
        let id = ids(1);
        b.sent(id[0], peer, MAX_BACKLOG_BYTES, t0);
        b.expire(t0 + FORGET_AFTER);
        assert!(!b.admits(&peer, 1), "not yet");
        b.expire(t0 + FORGET_AFTER + Duration::from_secs(1));
        assert!(b.admits(&peer, 1));
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn a_message_over_the_bound_still_goes_to_a_peer_with_nothing_on_its_way() {
        let mut b = Backlog::default();
        let peer = PeerId::random();
        let id = ids(1);
        assert!(b.admits(&peer, MAX_BACKLOG_BYTES + 1));
        b.sent(id[0], peer, MAX_BACKLOG_BYTES + 1, Instant::now());
        assert!(!b.admits(&peer, 1));
    }
}
