//! gossipsub peer scoring (DESIGN §7: a bad message lowers its sender's score).
//!
//! Every peer here is a genesis member or a configured observer (admission runs first), so
//! the score has one job: make misbehaviour expensive, never reward volume. Only penalties
//! count, so an honest peer sits at 0 and a peer's score says how much it misbehaved lately:
//! - P4, invalid messages: every message we `Reject` (undecodable, not a member's, refused by
//!   the replica) counts against the peer that sent it to us, squared, so a handful within a
//!   few seconds graylists it and a rare honest disagreement is forgotten in seconds;
//! - P5, the application score: what the network task holds against a peer outside gossip
//!   (direct requests over their rate limit or unreadable, notices over theirs; see
//!   `limits.rs`), decaying there;
//! - P7, gossipsub's own protocol violations (broken IWANT promises, GRAFT during backoff).
//!
//! Left out on purpose: mesh delivery rates (P3) misjudge a quiet domain (a local domain
//! commits only when traces arrive) and our meshes hold every member anyway; positive scores
//! (P1, P2) would let a peer bank credit to spend on attacks; IP colocation (P6), because
//! admission by identity already bounds sybils and a loopback testnet puts every member on
//! one address.
//!
//! Thresholds follow the gossipsub spec's order: below -20 we stop gossiping IHAVE to a peer,
//! below -40 we stop publishing to it, below -80 everything it sends is ignored unread.

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicHash, TopicScoreParams};
use std::time::Duration;

/// Weight of one rejected message in the squared P4 counter: 1 costs 5, 2 cost 20, 4 cost 80
/// (graylisted).
pub const INVALID_MESSAGE_WEIGHT: f64 = -5.0;
/// P4's counter decays by this factor per second: it halves in about 13.5 s, so a peer stays
/// under the graylist bound only below about one rejected message every five seconds.
pub const INVALID_MESSAGE_DECAY: f64 = 0.95;
pub const GOSSIP_THRESHOLD: f64 = -20.0;
pub const PUBLISH_THRESHOLD: f64 = -40.0;
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

pub fn params(topics: &[TopicHash]) -> PeerScoreParams {
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 0.0,
        first_message_deliveries_weight: 0.0,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 0.0,
        mesh_message_deliveries_threshold: 0.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(5),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: INVALID_MESSAGE_DECAY,
    };
    PeerScoreParams {
        topics: topics.iter().map(|t| (t.clone(), topic.clone())).collect(),
        topic_score_cap: 0.0,
        // The network task sets the application score to minus its penalty points.
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        // gossipsub's default: one violation over the threshold costs 10, squared.
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 0.0,
        behaviour_penalty_decay: 0.9,
        // A peer whose send queue overflows is slow, not hostile: a busy Raspberry Pi.
        slow_peer_weight: 0.0,
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        // A member that disconnects and comes back finds its score where it left it (the
        // decay still runs meanwhile): reconnecting is no way to wash a penalty off.
        retain_score: Duration::from_secs(600),
        ..PeerScoreParams::default()
    }
}

pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        // Peer exchange is off (members come from the genesis), so never accept it.
        accept_px_threshold: f64::MAX,
        // Opportunistic grafting starts when the mesh's median score falls below this; with
        // no positive scores it would only shuffle members around.
        opportunistic_graft_threshold: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_valid_for_gossipsub() {
        let t = crate::net::wire::topic(lcbft_protocol::types::DomainId::Global).hash();
        params(&[t]).validate().expect("score params");
        thresholds().validate().expect("thresholds");
    }

    #[test]
    fn four_rejected_messages_graylist_and_one_does_not() {
        let score = |n: f64| INVALID_MESSAGE_WEIGHT * n * n;
        assert!(score(1.0) > GOSSIP_THRESHOLD);
        assert!(score(4.0) <= GRAYLIST_THRESHOLD);
        // One rejected message a second settles at 1/(1-decay) = 20 of them: graylisted.
        let steady = 1.0 / (1.0 - INVALID_MESSAGE_DECAY);
        assert!(score(steady) < GRAYLIST_THRESHOLD);
    }
}
