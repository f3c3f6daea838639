use super::*;
use crate::testkit::{Cluster, deal, keys};
use lcbft_protocol::Config;
use lcbft_protocol::message::Message;
use lcbft_protocol::replica::{Replica, Stored};
use lcbft_protocol::types::Tx;

fn open_all(dir: &Path, n: usize) -> Vec<Store> {
    (0..n)
        .map(|i| Store::open(&dir.join(format!("node{i}.redb"))).expect("open"))
        .collect()
}

#[test]
fn committed_chain_and_safety_survive_a_crash_and_restore_a_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dealt = deal(4);
    let mut cluster = Cluster::new(&dealt, open_all(dir.path(), 4));
    for i in 0..6 {
        cluster.submit(Tx::new(format!("trace-{i}").into_bytes()));
        cluster.run(10_000);
    }
    let height = cluster.stores[1]
        .committed_height(DomainId::Global)
        .expect("height");
    assert!(height >= 3, "the cluster committed only {height} blocks");
    let safety = cluster.persisted[1].clone().expect("persisted");
    let last_voted = cluster.replicas[1].safety().last_voted;
    let chain0 = cluster.stores[0]
        .committed_chain(DomainId::Global)
        .expect("chain0");
    // Drop without any clean shutdown.
    drop(cluster);

    let store = Store::open(&dir.path().join("node1.redb")).expect("reopen");
    let chain = store.committed_chain(DomainId::Global).expect("chain");
    assert_eq!(chain.len() as u64, height);
    let common = chain.len().min(chain0.len());
    assert!(common >= 3);
    assert_eq!(chain[..common], chain0[..common]);
    for (i, b) in chain.iter().enumerate() {
        assert_eq!(b.height, i as u64 + 1);
        let proof = store.proof_at(DomainId::Global, b.height).expect("proof");
        assert!(proof.is_some_and(|p| p.qc.msg.digest != lcbft_protocol::types::Hash::ZERO));
    }
    let stored = store
        .safety(DomainId::Global)
        .expect("safety")
        .expect("some");
    assert_eq!(stored, safety);
    // Voting state is never ahead of what is on disk.
    assert_eq!(stored.last_voted, last_voted);
    let first_tx = Tx::new(b"trace-0".to_vec());
    let loc = store.tx_location(&first_tx.id()).expect("index");
    assert!(loc.is_some_and(|l| l.domain == DomainId::Global && l.height >= 1));

    // The blocks above the chain came back too, among them the one the highest QC names,
    // and nothing at or below the committed height was kept.
    let uncommitted = store.uncommitted_blocks(DomainId::Global).expect("blocks");
    assert!(uncommitted.iter().all(|b| b.height > height));
    assert!(
        uncommitted
            .iter()
            .any(|b| b.hash() == stored.high_qc.block()),
        "the highest QC's block was not on disk"
    );

    let replica = Replica::restore(
        Config::new(DomainId::Global, 1, 4),
        keys(&dealt, 4, 1),
        Stored {
            committed: chain,
            blocks: uncommitted,
            safety: Some(stored.clone()),
            rejoin: false,
        },
    );
    assert_eq!(replica.committed_height(), height);
    assert_eq!(replica.safety(), &stored);
    assert_eq!(replica.status().missing_block, None);
}

#[test]
fn conflicting_or_gapped_commits_are_refused_and_recommits_are_noops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dealt = deal(4);
    let mut cluster = Cluster::new(&dealt, open_all(dir.path(), 4));
    for i in 0..4 {
        cluster.submit(Tx::new(format!("t{i}").into_bytes()));
        cluster.run(10_000);
    }
    let store = cluster.stores[0].clone();
    let chain = store.committed_chain(DomainId::Global).expect("chain");
    assert!(chain.len() >= 2);
    let proof = store
        .proof_at(DomainId::Global, 1)
        .expect("read")
        .expect("proof");
    store
        .commit_block(&chain[0], &proof)
        .expect("recommit is a no-op");

    let mut forged = chain[0].clone();
    forged.payload.push(Tx::new(b"forged".to_vec()));
    let err = store.commit_block(&forged, &proof).expect_err("conflict");
    assert!(
        matches!(err, StoreError::Conflict { height: 1, .. }),
        "{err}"
    );

    let mut gap = chain[0].clone();
    gap.height = chain.len() as u64 + 5;
    let err = store.commit_block(&gap, &proof).expect_err("gap");
    assert!(matches!(err, StoreError::Gap { .. }), "{err}");
    assert_eq!(
        store.committed_height(DomainId::Global).expect("h"),
        chain.len() as u64
    );
}

#[test]
fn an_empty_store_has_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    assert_eq!(store.committed_height(DomainId::Local(3)).expect("h"), 0);
    assert!(store.safety(DomainId::Global).expect("s").is_none());
    assert!(
        store
            .committed_chain(DomainId::Global)
            .expect("c")
            .is_empty()
    );
    assert!(store.block(&Hash::ZERO).expect("b").is_none());
}

#[test]
fn pruning_keeps_the_window_and_a_pruned_store_still_restores_a_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dealt = deal(4);
    let mut cluster = Cluster::new(&dealt, open_all(dir.path(), 4));
    for i in 0..8 {
        cluster.submit(Tx::new(format!("p{i}").into_bytes()));
        cluster.run(10_000);
    }
    let store = cluster.stores[2].clone();
    let safety = cluster.persisted[2].clone();
    drop(cluster);
    let top = store.committed_height(DomainId::Global).expect("height");
    assert!(top >= 6, "{top}");
    let gone = (1..4)
        .filter_map(|h| store.block_at(DomainId::Global, h).expect("read"))
        .find(|b| !b.payload.is_empty())
        .expect("a block with payload below 4");
    assert_eq!(store.retained_from(DomainId::Global).expect("from"), 1);
    assert_eq!(store.prune(DomainId::Global, 4, false).expect("prune"), 3);
    assert_eq!(store.retained_from(DomainId::Global).expect("from"), 4);
    assert!(store.block_at(DomainId::Global, 3).expect("read").is_none());
    assert!(
        store
            .tx_location(&gone.payload[0].id())
            .expect("read")
            .is_none()
    );
    // Never the newest block, whatever the caller asks.
    store
        .prune(DomainId::Global, u64::MAX, false)
        .expect("prune");
    assert_eq!(store.retained_from(DomainId::Global).expect("from"), top);
    assert_eq!(
        store.committed_height(DomainId::Global).expect("height"),
        top
    );
    let chain = store.committed_chain(DomainId::Global).expect("chain");
    let replica = Replica::restore(
        Config::new(DomainId::Global, 2, 4),
        keys(&dealt, 4, 2),
        Stored {
            committed: chain,
            blocks: Vec::new(),
            safety,
            rejoin: false,
        },
    );
    assert_eq!(replica.committed_height(), top);
}

/// Block 1 of `domain` on genesis, carrying `payload` (the store checks heights, not votes).
fn first_block(domain: DomainId, payload: Vec<Tx>) -> lcbft_protocol::types::Block {
    let genesis = lcbft_protocol::types::Block::genesis(domain);
    let mut b = genesis.clone();
    b.height = 1;
    b.view = 1;
    b.parent = genesis.hash();
    b.payload = payload.into();
    b
}

/// An anchor-shaped item inside a committed local block is a member's data, not an anchor: it
/// moves no anchored height and indexes none of the traces it names.
#[test]
fn anchors_are_indexed_only_from_the_global_chain() {
    use lcbft_protocol::anchor::{Anchor, CommitProof};
    use lcbft_protocol::types::Certificate;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let inner_trace = Tx::new(b"a trace the fake anchor claims".to_vec());
    let anchor = Anchor {
        block: first_block(DomainId::Local(2), vec![inner_trace.clone()]),
        commit: CommitProof {
            above: Vec::new(),
            qc: Certificate::genesis(DomainId::Local(2)),
        },
    };
    let proof = CommitProof {
        above: Vec::new(),
        qc: Certificate::genesis(DomainId::Local(1)),
    };
    let local = first_block(DomainId::Local(1), vec![anchor.to_tx()]);
    store.commit_block(&local, &proof).expect("commit");
    assert_eq!(store.anchored_height(DomainId::Local(2)).expect("h"), 0);
    assert!(
        store
            .tx_location(&inner_trace.id())
            .expect("read")
            .is_none()
    );
    // The same item in a global block is indexed (the global replica verified it).
    let global = first_block(DomainId::Global, vec![anchor.to_tx()]);
    store.commit_block(&global, &proof).expect("commit");
    assert_eq!(store.anchored_height(DomainId::Local(2)).expect("h"), 1);
    // Where a restarted global replica's anchor checks start.
    let tips = store
        .anchored_tips([DomainId::Local(1), DomainId::Local(2)])
        .expect("tips");
    assert_eq!(
        tips.into_iter().collect::<Vec<_>>(),
        vec![(DomainId::Local(2), (1, anchor.block.hash()))]
    );
}

/// Commit `count` blocks of one small trace each on top of `domain`'s chain, in one
/// transaction; each block's QC certifies its parent, as the tree expects.
fn long_chain(store: &Store, domain: DomainId, count: u64) {
    use lcbft_protocol::anchor::CommitProof;
    use lcbft_protocol::types::Certificate;
    let mut parent = Block::genesis(domain);
    let batch = store.batch().expect("batch");
    for _ in 0..count {
        let mut justify = Certificate::genesis(domain);
        justify.msg.view = parent.view;
        justify.msg.digest = parent.hash();
        let b = Block {
            domain,
            height: parent.height + 1,
            view: parent.view + 1,
            proposer: 0,
            parent: parent.hash(),
            justify: justify.clone(),
            payload: vec![Tx::new(parent.height.to_le_bytes().to_vec())].into(),
        };
        let proof = CommitProof {
            above: Vec::new(),
            qc: justify,
        };
        batch.commit_block(&b, &proof).expect("commit");
        parent = b;
    }
    batch.finish().expect("finish");
}

#[test]
fn a_global_validator_restarts_from_a_bounded_tail_whatever_the_chain_length() {
    let dealt = deal(4);
    let window = lcbft_protocol::memory_window(DomainId::Global);
    let mut held = Vec::new();
    for count in [window / 2, 1_000, 4_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("v.redb")).expect("open");
        long_chain(&store, DomainId::Global, count);
        drop(store);

        let store = Store::open(&dir.path().join("v.redb")).expect("reopen");
        let tail = store
            .committed_tail(DomainId::Global, window)
            .expect("tail");
        assert_eq!(tail.len() as u64, count.min(window));
        assert_eq!(tail.last().map(|b| b.height), Some(count));
        let replica = Replica::restore(
            Config::new(DomainId::Global, 1, 4),
            keys(&dealt, 4, 1),
            Stored {
                committed: tail,
                blocks: Vec::new(),
                safety: None,
                rejoin: false,
            },
        );
        assert_eq!(replica.committed_height(), count);
        held.push(replica.blocks_in_memory());

        // A block below the window is served from disk, with its ancestors.
        let old = store
            .block_at(DomainId::Global, 10)
            .expect("read")
            .expect("block");
        assert_eq!(old.height, 10);
        let answer = store
            .chain_down(old.hash(), 0)
            .expect("chain")
            .expect("held");
        assert_eq!(answer.domain, DomainId::Global);
        let blocks: Vec<Block> = answer
            .blocks
            .iter()
            .map(|b| codec::decode(b, MAX_STORED).expect("a block"))
            .collect();
        let heights: Vec<u64> = blocks.iter().map(|b| b.height).collect();
        assert_eq!(heights, (1..=10).rev().collect::<Vec<_>>());
        // Sent as stored, the answer is what encoding the decoded blocks would give.
        assert_eq!(
            Message::encode_block_response(&answer.blocks),
            codec::encode(&Message::BlockResponse(blocks))
        );
        let top = store
            .block_at(DomainId::Global, count)
            .expect("read")
            .expect("top");
        let answer = store.chain_down(top.hash(), count - 3).expect("chain");
        assert_eq!(answer.expect("held").blocks.len(), 3);
        assert!(
            store
                .chain_down(Hash::of(b"unknown"), 0)
                .expect("read")
                .is_none()
        );
    }
    // What a restart decodes and holds is the window, not the chain.
    assert_eq!(
        held[1], held[2],
        "blocks in memory grew with the chain: {held:?}"
    );
    assert!(held[2] as u64 <= window + 1, "{held:?}");
}

fn accepted(domain: DomainId, seq: u64, body: &str) -> Accepted {
    Accepted {
        domain,
        seq,
        tx: Tx::new(body.as_bytes().to_vec()),
    }
}

/// What the node acknowledged comes back after a crash, oldest first, and only in the domain
/// it was acknowledged for.
#[test]
fn acknowledged_items_survive_a_reopen_in_arrival_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let items = vec![
        accepted(DomainId::Local(1), 7, "later"),
        accepted(DomainId::Local(1), 3, "first"),
        // The same bytes in another domain (a raw network) are another item.
        accepted(DomainId::Global, 5, "later"),
    ];
    {
        let store = Store::open(&path).expect("open");
        let batch = store.batch().expect("batch");
        batch.accept(&items).expect("accept");
        batch.finish().expect("one transaction");
        // Dropped without any shutdown.
    }
    let store = Store::open(&path).expect("reopen");
    let back = store.accepted().expect("read");
    let seqs: Vec<u64> = back.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, vec![3, 5, 7]);
    assert_eq!(back[0], items[1]);
    let id = items[0].tx.id();
    assert_eq!(
        store.accepted_tx(DomainId::Local(1), &id).expect("read"),
        Some(items[0].tx.clone())
    );
    assert_eq!(
        store.accepted_tx(DomainId::Local(2), &id).expect("read"),
        None
    );
    // Forgotten ones (refused for good) stay gone after another reopen.
    let batch = store.batch().expect("batch");
    batch
        .forget_accepted(DomainId::Global, &[id])
        .expect("forget");
    batch.finish().expect("commit");
    drop(store);
    let store = Store::open(&path).expect("reopen");
    let seqs: Vec<u64> = store
        .accepted()
        .expect("read")
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(seqs, vec![3, 7]);
}

/// Committing a block forgets the acknowledged items it carries, in the same transaction, and
/// only in the block's domain.
#[test]
fn a_commit_forgets_the_acknowledged_items_it_carries() {
    use lcbft_protocol::anchor::CommitProof;
    use lcbft_protocol::types::Certificate;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let d = DomainId::Local(1);
    let kept = accepted(d, 1, "not in the block");
    let taken = accepted(d, 2, "in the block");
    let elsewhere = accepted(DomainId::Global, 3, "in the block");
    let store = Store::open(&path).expect("open");
    store
        .accept(&[kept.clone(), taken.clone(), elsewhere.clone()])
        .expect("accept");
    let proof = CommitProof {
        above: Vec::new(),
        qc: Certificate::genesis(d),
    };
    let block = first_block(
        d,
        vec![taken.tx.clone(), Tx::new(b"someone else's".to_vec())],
    );
    store.commit_block(&block, &proof).expect("commit");
    drop(store);
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.accepted().expect("read"), vec![kept, elsewhere]);
    assert!(store.tx_location(&taken.tx.id()).expect("read").is_some());
}

/// Each stored item is checked against its key: bytes that do not hash to it are corruption,
/// reported, never offered to the domain.
#[test]
fn a_damaged_acknowledged_item_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    {
        let batch = store.batch().expect("batch");
        let mut t = batch.txn.open_table(accepted::ACCEPTED).expect("table");
        t.insert(
            (domain_key(DomainId::Global), [9; 32]),
            (1, b"bytes".as_slice()),
        )
        .expect("insert");
        drop(t);
        batch.finish().expect("commit");
    }
    let err = store.accepted().expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_rebase_makes_the_transferred_block_the_base_of_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (
        Store::open(&dir.path().join("old.redb")).expect("open"),
        Store::open(&dir.path().join("new.redb")).expect("open"),
    );
    let domain = DomainId::Local(1);
    long_chain(&old, domain, 5);
    long_chain(&new, domain, 40);
    let base = new.block_at(domain, 30).expect("read").expect("block");
    let proof = new.proof_at(domain, 30).expect("read").expect("proof");
    let next = new.block_at(domain, 31).expect("read").expect("block");
    let next_proof = new.proof_at(domain, 31).expect("read").expect("proof");
    // A gap is refused as a commit...
    let err = old.commit_block(&base, &proof).expect_err("gap");
    assert!(matches!(err, StoreError::Gap { .. }), "{err}");
    // ... and taken as a rebase, which drops the old chain.
    let batch = old.batch().expect("batch");
    batch.rebase(&base, &proof).expect("rebase");
    batch.finish().expect("finish");
    assert_eq!(old.committed_height(domain).expect("h"), 30);
    assert!(old.block_at(domain, 3).expect("read").is_none());
    assert_eq!(
        old.committed_tail(domain, 100).expect("tail"),
        vec![base.clone()]
    );
    // The old blocks' traces stay committed.
    let first = Tx::new(0u64.to_le_bytes().to_vec());
    assert!(old.tx_location(&first.id()).expect("index").is_some());
    // The chain goes on from the new base, and a restart restores a replica rooted there.
    old.commit_block(&next, &next_proof).expect("next");
    let tail = old.committed_tail(domain, 100).expect("tail");
    assert_eq!(tail, vec![base, next]);
    let stored = Stored {
        committed: tail,
        blocks: Vec::new(),
        safety: None,
        rejoin: false,
    };
    let replica = Replica::restore(Config::new(domain, 0, 4), keys(&deal(4), 4, 0), stored);
    assert_eq!(replica.committed_height(), 31);
}
