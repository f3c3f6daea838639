//! Block sync below the replica's memory: committed blocks older than
//! [`lcbft_protocol::memory_window`] live on disk only, and a peer catching up still gets them.

use super::MainLoop;
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{DomainId, Hash, ReplicaIndex};
use tracing::{debug, warn};

impl MainLoop {
    /// Answer a block request from the store if the replica no longer holds the block; `false`
    /// leaves the request to the replica. The network layer already charged the peer's sync
    /// budget for it.
    pub(super) fn served_from_store(
        &mut self,
        domain: DomainId,
        from: ReplicaIndex,
        msg: &Message,
    ) -> bool {
        let Message::BlockRequest { hash, above } = *msg else {
            return false;
        };
        let held = self
            .drivers
            .get(&domain)
            .is_none_or(|d| d.replica().holds(&hash));
        if hash == Hash::ZERO || held {
            return false;
        }
        let chain = match self.store.chain_down(hash, above) {
            Ok(Some(chain)) if chain.domain == domain => chain,
            Ok(_) => {
                debug!(%domain, %hash, "sync request for a block we do not have");
                return true;
            }
            Err(e) => {
                warn!(%domain, %hash, "cannot read blocks for a peer's sync: {e}");
                return true;
            }
        };
        if let Some(peer) = self.genesis.domain(domain).and_then(|d| d.peer(from)) {
            self.metrics.on_sync_from_disk(domain);
            let answer = Message::encode_block_response(&chain.blocks);
            self.net.send_block_response(domain, peer, answer);
        }
        true
    }
}
