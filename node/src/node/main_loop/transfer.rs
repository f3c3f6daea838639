//! State transfer: a local member that was down while its domain committed more blocks than
//! its peers keep cannot fetch the ones in between. Its edge's anchor notice carries the newest
//! anchored block with its commit proof, checked against the genesis; the member makes that
//! block the base of its stored chain and restarts its replica from it, then fetches only the
//! blocks above from its peers. Older heights stay available from global nodes.

use super::MainLoop;
use crate::node::storage::Job;
use lcbft_protocol::anchor::Anchor;
use lcbft_protocol::io::Input;
use lcbft_protocol::types::DomainId;
use tracing::info;

impl MainLoop {
    /// After a verified notice: restart from `anchor` if we are further behind it than the
    /// window; a member within the window catches up by ordinary sync, which keeps its chain.
    pub(super) fn transfer_if_behind(&mut self, domain: DomainId, anchor: Anchor) {
        let Some(driver) = self.drivers.get(&domain) else {
            return;
        };
        let committed = driver.replica().committed_height();
        let target = anchor.block.height;
        if target <= committed.saturating_add(self.anchoring.window()) {
            return;
        }
        info!(
            %domain,
            from = committed,
            to = target,
            "behind by more than the window: restarting from the anchored block"
        );
        self.metrics.on_state_transfer(domain);
        // Queued before anything the replica outputs after the transfer, so the stored chain
        // is rebased before the blocks above are written.
        self.storage.submit(Job::Rebase {
            block: Box::new(anchor.block.clone()),
            proof: anchor.commit.clone(),
        });
        self.feed(
            domain,
            Input::StateTransfer {
                block: anchor.block,
                proof: anchor.commit,
            },
        );
    }
}
