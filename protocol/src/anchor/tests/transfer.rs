//! State transfer: a member cut off while its domain committed more than its peers keep in
//! memory cannot catch up by sync. Restarted from a committed block and its commit proof (as
//! the anchored chain proves them), it fetches only the blocks above, commits with the others
//! and votes again.

use super::*;

/// Committed blocks each replica keeps in memory in these tests.
const WINDOW: u64 = 16;

fn cluster(dealt: &DealtKeys) -> Cluster {
    Cluster::with_config(LOCAL, dealt, |mut c| {
        c.memory_window = WINDOW;
        c
    })
}

fn height(c: &Cluster, i: usize) -> u64 {
    c.replicas[i].committed_height()
}

/// One block per trace, each submitted to `to`.
fn rounds(c: &mut Cluster, to: &[usize], first: u32, n: u32) {
    for i in first..first + n {
        c.submit_to(to, vec![trace(i)]);
        c.run();
    }
}

fn transferred(c: &Cluster, i: usize) -> Vec<u64> {
    c.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::Transferred { height } => Some(*height),
            _ => None,
        })
        .collect()
}

#[test]
fn a_member_behind_its_peers_memory_catches_up_by_state_transfer_and_votes_again() {
    let dealt = deal(3);
    let mut c = cluster(&dealt);
    let leader = usize::from(c.replicas[0].status().leader);
    // Two followers: `late` is cut off for a long time, `other` later, to show `late` votes.
    let mut followers = (0..N).filter(|&i| i != leader);
    let (late, other) = (followers.next().unwrap(), followers.next().unwrap());
    let live: Vec<usize> = (0..N).filter(|&i| i != late).collect();
    rounds(&mut c, &[0, 1, 2, 3], 0, 4);
    let before = height(&c, late);
    assert!(before >= 2, "the cluster commits: {before}");

    c.down[late] = true;
    rounds(&mut c, &live, 100, 3 * WINDOW as u32);
    let top = height(&c, leader);
    assert!(top > before + 2 * WINDOW, "{top} vs {before}");
    c.down[late] = false;

    // Sync alone cannot bridge the gap: its peers pruned the blocks in between.
    rounds(&mut c, &[0, 1, 2, 3], 1000, 3);
    assert!(
        height(&c, late) + WINDOW < height(&c, leader),
        "caught up without a transfer: {} of {}",
        height(&c, late),
        height(&c, leader)
    );

    // An anchored block lags the domain's head a little.
    let (block, proof) = c.commits[leader][c.commits[leader].len() - 3].clone();
    // A proof under another block's signature is refused.
    let mut forged = proof.clone();
    forged.qc.signature = c.commits[leader][0].1.qc.signature.clone();
    let stuck = height(&c, late);
    c.queue.push_back((
        late,
        Input::StateTransfer {
            block: block.clone(),
            proof: forged,
        },
    ));
    c.run();
    assert!(transferred(&c, late).is_empty());
    assert_eq!(height(&c, late), stuck);
    // A block at or below ours is ignored.
    let (old, old_proof) = c.commits[leader][0].clone();
    c.queue.push_back((
        late,
        Input::StateTransfer {
            block: old,
            proof: old_proof,
        },
    ));
    c.run();
    assert!(transferred(&c, late).is_empty());

    let base = block.height;
    // A trace committed while `late` was down, offered to it again: it cannot tell.
    let stale = trace(100);
    c.queue
        .push_back((late, Input::Payload(vec![stale.clone()])));
    c.queue
        .push_back((late, Input::StateTransfer { block, proof }));
    c.run();
    assert_eq!(transferred(&c, late), vec![base]);
    // The transfer leaves nothing pending that the skipped blocks may hold.
    assert!(c.replicas[late].pending(&stale.id()).is_none());
    rounds(&mut c, &[0, 1, 2, 3], 2000, 2);
    // Followers learn the leader's last commit from its next proposal.
    assert_eq!(height(&c, late), height(&c, other));
    assert!(height(&c, late) > base + 2);
    // It committed every block above the transferred one, in order, with its proof.
    let after: Vec<u64> = c.commits[late]
        .iter()
        .map(|(b, _)| b.height)
        .filter(|h| *h > base)
        .collect();
    assert_eq!(after, (base + 1..=height(&c, late)).collect::<Vec<_>>());

    // With `other` cut off, no quorum forms without `late`'s share: it votes again.
    c.down[other] = true;
    let h = height(&c, leader);
    rounds(&mut c, &[0, 1, 2, 3], 3000, 3);
    assert!(height(&c, leader) >= h + 3, "{} vs {h}", height(&c, leader));
    assert!(height(&c, late) + 1 >= height(&c, leader));
    let (last, _) = c.commits[leader].last().unwrap();
    assert!(
        last.justify.signers.contains(late as ReplicaIndex),
        "{:?}",
        last.justify.signers
    );
    for r in &c.replicas {
        assert!(r.blocks_in_memory() <= (WINDOW + WINDOW / 4 + 8) as usize);
    }
}
