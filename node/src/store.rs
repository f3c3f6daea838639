//! The node's database (redb): per domain the safety state and the committed chain
//! (height -> hash, with each block's commit proof); blocks by hash; the trace index (tx id
//! -> where it was committed); and the items this node acknowledged and has not yet seen
//! committed (`accepted`). Synchronous: async code calls it from a dedicated thread or
//! `spawn_blocking`. Every write is one redb transaction committed with fsync, so what a
//! method returned `Ok` for survives `kill -9`.
//!
//! Corruption is refused, never repaired into an older state. redb's default one-phase commit
//! recognises a torn last commit by its checksums and falls back to the commit before it; a
//! file damaged later (a flipped page, a bad disk) would take the same path and silently
//! roll back an acknowledged commit, and with it the safety state: the replica could vote a
//! second time in a view. So every write uses two-phase commit (the primary slot is then
//! always valid after a crash, and redb reports a bad one as corruption instead of falling
//! back), and `open` runs redb's full checksum walk before anything is read.

use lcbft_protocol::anchor::CommitProof;
use lcbft_protocol::codec;
use lcbft_protocol::io::SafetyState;
use lcbft_protocol::types::{Block, DomainId, Hash};
use lcbft_protocol::{SYNC_BATCH_BLOCKS, SYNC_BATCH_BYTES};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;

/// Domain key -> CBOR `SafetyState`.
const SAFETY: TableDefinition<u64, &[u8]> = TableDefinition::new("safety");
/// Block hash -> CBOR `Block`.
const BLOCKS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("blocks");
/// (domain key, height) -> block hash of the committed chain.
const CHAIN: TableDefinition<(u64, u64), [u8; 32]> = TableDefinition::new("chain");
/// (domain key, height) -> CBOR `CommitProof`: what shows the block committed.
const PROOFS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("proofs");
/// Tx id -> (domain key, height) of the committed block holding it.
const TX_INDEX: TableDefinition<[u8; 32], (u64, u64)> = TableDefinition::new("tx_index");
/// (local domain key, height) -> (global height, block hash): the anchored chains.
const ANCHORS: TableDefinition<(u64, u64), (u64, [u8; 32])> = TableDefinition::new("anchors");
/// (parent trace id, child trace id): provenance, walked downwards by lineage queries.
const CHILDREN: TableDefinition<([u8; 32], [u8; 32]), ()> = TableDefinition::new("children");

/// (domain key, height, block hash) -> CBOR `Block`: blocks above the committed chain that
/// the replica handed out with its safety state, so that a restart finds every block its
/// locks and votes name. Forgotten once their height commits.
const UNCOMMITTED: TableDefinition<(u64, u64, [u8; 32]), &[u8]> =
    TableDefinition::new("uncommitted_blocks");

/// Stored values are bounded like wire messages (a block plus slack for its proof).
const MAX_STORED: usize = 2 * codec::MAX_MESSAGE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
    #[error("corrupt {what} in the database: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error(
        "{path} is damaged ({reason}); refusing to use it, since a repaired or rolled-back \
         database could make this replica vote twice in one view. Restore the file from a backup \
         of this node, or move it away and rejoin with a fresh data directory only as described for \
         a lost database"
    )]
    Damaged {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(
        "conflicting commit in {domain} at height {height}: stored {stored}, new {new} (safety violation)"
    )]
    Conflict {
        domain: DomainId,
        height: u64,
        stored: Hash,
        new: Hash,
    },
    #[error("commit in {domain} at height {height} leaves a gap after height {last}")]
    Gap {
        domain: DomainId,
        height: u64,
        last: u64,
    },
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// Every write transaction: fsync on commit (redb's default) and two-phase commit, so a bad
/// primary commit slot is reported as corruption instead of rolled back (see the module doc).
pub(crate) fn write_txn(database: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = database.begin_write().map_err(db)?;
    txn.set_two_phase_commit(true);
    Ok(txn)
}

/// Typed domain key: global is 0, local domain `id` is `2^32 + id`.
pub fn domain_key(d: DomainId) -> u64 {
    match d {
        DomainId::Global => 0,
        DomainId::Local(id) => (1 << 32) | u64::from(id),
    }
}

fn domain_of(key: u64) -> DomainId {
    if key == 0 {
        DomainId::Global
    } else {
        DomainId::Local(key as u32)
    }
}

/// Where a committed tx is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub domain: DomainId,
    pub height: u64,
}

/// Blocks read for a sync answer (`Store::chain_down`), newest first, each as stored:
/// `codec::encode(&block)`.
#[derive(Debug)]
pub struct StoredChain {
    /// The domain of the first block.
    pub domain: DomainId,
    pub blocks: Vec<Vec<u8>>,
}

/// What `chain_down` decodes of a stored block: the fields that walk the chain. The others,
/// the payload above all, are skipped over unread.
#[derive(Deserialize)]
struct Link {
    domain: DomainId,
    height: u64,
    parent: Hash,
}

/// redb's page cache. Its default (1 GiB) lets a node's memory grow with its database, which
/// a long-running device (a Raspberry Pi) cannot afford; the hot pages (the chain's tail, the
/// safety state, the index pages of recent traces) fit well within this.
const CACHE_BYTES: usize = 64 << 20;

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Open (or create) the database at `path`, creating every table. An existing file is
    /// checked in full first: a damaged or truncated one is refused with `Damaged`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let damaged = |reason: String| StoreError::Damaged {
            path: path.to_owned(),
            reason,
        };
        // redb would initialise an empty file as a new database: a file cut to nothing must
        // not come back as a replica with genesis safety state.
        if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            return Err(damaged("the file is empty".into()));
        }
        // redb asserts (panics) on a file shorter than its header says: a truncated file.
        let opened = std::panic::catch_unwind(|| {
            Database::builder().set_cache_size(CACHE_BYTES).create(path)
        })
        .map_err(|_| damaged("truncated: shorter than its header says".into()))?;
        let mut database = opened.map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => damaged(why),
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                damaged(format!("truncated: {io}"))
            }
            e => db(e),
        })?;
        match database.check_integrity() {
            Ok(true) => {}
            // Only the allocator state was rebuilt (after an unclean stop): no data changed.
            Ok(false) => {
                tracing::info!(path = %path.display(), "database allocator state rebuilt after an unclean stop")
            }
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why))) => {
                return Err(damaged(why));
            }
            Err(e) => return Err(damaged(e.to_string())),
        }
        let txn = write_txn(&database)?;
        {
            txn.open_table(SAFETY).map_err(db)?;
            txn.open_table(BLOCKS).map_err(db)?;
            txn.open_table(CHAIN).map_err(db)?;
            txn.open_table(PROOFS).map_err(db)?;
            txn.open_table(TX_INDEX).map_err(db)?;
            txn.open_table(ANCHORS).map_err(db)?;
            txn.open_table(CHILDREN).map_err(db)?;
            txn.open_table(UNCOMMITTED).map_err(db)?;
            txn.open_table(accepted::ACCEPTED).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(Store {
            db: Arc::new(database),
        })
    }

    /// Durably record `domain`'s safety state and, in the same transaction, the uncommitted
    /// blocks the replica handed out with it.
    pub fn save_safety(
        &self,
        domain: DomainId,
        state: &SafetyState,
        blocks: &[Block],
    ) -> Result<(), StoreError> {
        let batch = self.batch()?;
        batch.save_safety(domain, state, blocks)?;
        batch.finish()
    }

    /// The uncommitted blocks of `domain` saved with its safety state, lowest first, as
    /// `Replica::restore` takes them.
    pub fn uncommitted_blocks(&self, domain: DomainId) -> Result<Vec<Block>, StoreError> {
        let key = domain_key(domain);
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(UNCOMMITTED).map_err(db)?;
        let mut out = Vec::new();
        for entry in t
            .range((key, 0, [0; 32])..=(key, u64::MAX, [0xff; 32]))
            .map_err(db)?
        {
            let (_, bytes) = entry.map_err(db)?;
            out.push(decode(bytes.value(), "uncommitted block")?);
        }
        Ok(out)
    }

    pub fn safety(&self, domain: DomainId) -> Result<Option<SafetyState>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(SAFETY).map_err(db)?;
        let Some(v) = t.get(domain_key(domain)).map_err(db)? else {
            return Ok(None);
        };
        decode(v.value(), "safety state").map(Some)
    }

    /// Durably append a committed block (with the certificates that committed it) to its
    /// domain's chain and index its payload. Re-committing a stored block is a no-op; a
    /// different block at a stored height, or a gap, is refused.
    pub fn commit_block(&self, block: &Block, proof: &CommitProof) -> Result<(), StoreError> {
        let batch = self.batch()?;
        batch.commit_block(block, proof)?;
        batch.finish()
    }

    /// Several writes in one transaction: one fsync for all of them (group commit). Nothing
    /// of it is durable before `finish` returns `Ok`.
    pub fn batch(&self) -> Result<Batch, StoreError> {
        Ok(Batch {
            txn: write_txn(&self.db)?,
        })
    }

    /// Highest committed height of `domain` (0: only genesis).
    pub fn committed_height(&self, domain: DomainId) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let chain = txn.open_table(CHAIN).map_err(db)?;
        last_height(&chain, domain_key(domain))
    }

    /// The committed chain of `domain` from its lowest retained height up.
    pub fn committed_chain(&self, domain: DomainId) -> Result<Vec<Block>, StoreError> {
        self.committed_tail(domain, u64::MAX)
    }

    /// The last `keep` committed blocks of `domain` (fewer if fewer are retained), lowest
    /// first, as `Replica::restore` takes them: a restart reads a bounded tail, not the chain.
    pub fn committed_tail(&self, domain: DomainId, keep: u64) -> Result<Vec<Block>, StoreError> {
        let key = domain_key(domain);
        let txn = self.db.begin_read().map_err(db)?;
        let chain = txn.open_table(CHAIN).map_err(db)?;
        let blocks = txn.open_table(BLOCKS).map_err(db)?;
        let top = last_height(&chain, key)?;
        let from = top.saturating_sub(keep.saturating_sub(1)).max(1);
        let mut out = Vec::new();
        for entry in chain.range((key, from)..=(key, u64::MAX)).map_err(db)? {
            let (_, hash) = entry.map_err(db)?;
            let bytes =
                blocks
                    .get(hash.value())
                    .map_err(db)?
                    .ok_or_else(|| StoreError::Corrupt {
                        what: "chain",
                        reason: format!("block {} is missing", Hash(hash.value())),
                    })?;
            out.push(decode(bytes.value(), "block")?);
        }
        Ok(out)
    }

    /// A sync answer from disk, for blocks a replica no longer holds in memory: `hash` and its
    /// ancestors down to height `above` (exclusive; at least `hash`), within the protocol's
    /// sync bounds. The blocks stay encoded as stored (`Message::encode_block_response` sends
    /// them so); `None` if `hash` is not a stored block.
    pub fn chain_down(&self, hash: Hash, above: u64) -> Result<Option<StoredChain>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let blocks = txn.open_table(BLOCKS).map_err(db)?;
        let mut domain = None;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        let mut next = hash;
        while let Some(found) = blocks.get(next.0).map_err(db)? {
            let link: Link = decode(found.value(), "block")?;
            let enough = link.height <= above || out.len() >= SYNC_BATCH_BLOCKS;
            bytes += found.value().len();
            if !out.is_empty() && (enough || bytes > SYNC_BATCH_BYTES) {
                break;
            }
            domain.get_or_insert(link.domain);
            next = link.parent;
            out.push(found.value().to_vec());
            if link.height == 0 {
                break;
            }
        }
        Ok(domain.map(|domain| StoredChain {
            domain,
            blocks: out,
        }))
    }

    pub fn block_at(&self, domain: DomainId, height: u64) -> Result<Option<Block>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let chain = txn.open_table(CHAIN).map_err(db)?;
        let Some(hash) = chain.get((domain_key(domain), height)).map_err(db)? else {
            return Ok(None);
        };
        let blocks = txn.open_table(BLOCKS).map_err(db)?;
        let found = blocks.get(hash.value()).map_err(db)?;
        found.map(|b| decode(b.value(), "block")).transpose()
    }

    pub fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let blocks = txn.open_table(BLOCKS).map_err(db)?;
        let found = blocks.get(hash.0).map_err(db)?;
        found.map(|b| decode(b.value(), "block")).transpose()
    }

    pub fn proof_at(
        &self,
        domain: DomainId,
        height: u64,
    ) -> Result<Option<CommitProof>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let proofs = txn.open_table(PROOFS).map_err(db)?;
        let found = proofs.get((domain_key(domain), height)).map_err(db)?;
        found.map(|b| decode(b.value(), "proof")).transpose()
    }

    /// Where the tx with this id was committed, if it was.
    /// Which of `ids` are in a committed block, in one read.
    pub fn committed_ids(&self, ids: &[Hash]) -> Result<Vec<bool>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let index = txn.open_table(TX_INDEX).map_err(db)?;
        ids.iter()
            .map(|id| Ok(index.get(id.0).map_err(db)?.is_some()))
            .collect()
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<TxLocation>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let index = txn.open_table(TX_INDEX).map_err(db)?;
        let found = index.get(id.0).map_err(db)?;
        Ok(found.map(|v| {
            let (key, height) = v.value();
            TxLocation {
                domain: domain_of(key),
                height,
            }
        }))
    }
}

/// Writes gathered into one transaction; see `Store::batch`.
pub struct Batch {
    txn: WriteTransaction,
}

impl Batch {
    /// Record `domain`'s safety state with the uncommitted blocks the replica handed out
    /// with it.
    pub fn save_safety(
        &self,
        domain: DomainId,
        state: &SafetyState,
        blocks: &[Block],
    ) -> Result<(), StoreError> {
        let key = domain_key(domain);
        let bytes = codec::encode(state);
        let txn = &self.txn;
        {
            let mut t = txn.open_table(SAFETY).map_err(db)?;
            t.insert(key, bytes.as_slice()).map_err(db)?;
            let mut u = txn.open_table(UNCOMMITTED).map_err(db)?;
            for b in blocks {
                u.insert((key, b.height, b.hash().0), codec::encode(b).as_slice())
                    .map_err(db)?;
            }
        }
        Ok(())
    }

    /// Append a committed block and its proof to its domain's chain and index its payload;
    /// the rules are `Store::commit_block`'s.
    pub fn commit_block(&self, block: &Block, proof: &CommitProof) -> Result<(), StoreError> {
        let domain = block.domain;
        let key = domain_key(domain);
        let hash = block.hash();
        let txn = &self.txn;
        {
            let chain = txn.open_table(CHAIN).map_err(db)?;
            if let Some(stored) = chain.get((key, block.height)).map_err(db)? {
                let stored = Hash(stored.value());
                if stored == hash {
                    return Ok(());
                }
                return Err(StoreError::Conflict {
                    domain,
                    height: block.height,
                    stored,
                    new: hash,
                });
            }
            let last = last_height(&chain, key)?;
            if block.height != last + 1 {
                return Err(StoreError::Gap {
                    domain,
                    height: block.height,
                    last,
                });
            }
        }
        self.append(block, proof)
    }

    /// A state transfer: `block`, committed and proven by the anchored chain, becomes the base
    /// of its domain's chain; the stored chain below goes, as the window's pruning would take
    /// it (it is anchored: anchors go in order, and `block` is anchored above it). The trace
    /// index keeps its rows: those traces stay committed.
    pub fn rebase(&self, block: &Block, proof: &CommitProof) -> Result<(), StoreError> {
        let key = domain_key(block.domain);
        let txn = &self.txn;
        {
            let mut chain = txn.open_table(CHAIN).map_err(db)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(db)?;
            let mut proofs = txn.open_table(PROOFS).map_err(db)?;
            let old: Vec<(u64, [u8; 32])> = chain
                .range((key, 0)..=(key, u64::MAX))
                .map_err(db)?
                .map(|e| e.map(|(k, v)| (k.value().1, v.value())))
                .collect::<Result<_, _>>()
                .map_err(db)?;
            for (height, hash) in old {
                blocks.remove(hash).map_err(db)?;
                chain.remove((key, height)).map_err(db)?;
                proofs.remove((key, height)).map_err(db)?;
            }
        }
        self.append(block, proof)
    }

    /// Write `block` at the top of its domain's chain, checked by the caller.
    fn append(&self, block: &Block, proof: &CommitProof) -> Result<(), StoreError> {
        let key = domain_key(block.domain);
        let hash = block.hash();
        let txn = &self.txn;
        {
            let mut chain = txn.open_table(CHAIN).map_err(db)?;
            chain.insert((key, block.height), hash.0).map_err(db)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(db)?;
            blocks
                .insert(hash.0, codec::encode(block).as_slice())
                .map_err(db)?;
            let mut proofs = txn.open_table(PROOFS).map_err(db)?;
            proofs
                .insert((key, block.height), codec::encode(&proof).as_slice())
                .map_err(db)?;
            let mut index = txn.open_table(TX_INDEX).map_err(db)?;
            for tx in &block.payload {
                index.insert(tx.id().0, (key, block.height)).map_err(db)?;
            }
            // This block is in the chain now, and its rivals at or below it never will be.
            let mut uncommitted = txn.open_table(UNCOMMITTED).map_err(db)?;
            uncommitted
                .retain_in(
                    (key, 0, [0; 32])..=(key, block.height, [0xff; 32]),
                    |_, _| false,
                )
                .map_err(db)?;
        }
        accepted::forget_committed(txn, block)?;
        anchors::index_payload(txn, block)
    }

    /// Commit every write of the batch, with fsync.
    pub fn finish(self) -> Result<(), StoreError> {
        self.txn.commit().map_err(db)
    }
}

/// The highest height under domain `key` in a table keyed by (domain key, height); 0 if none.
fn last_height<V: redb::Value + 'static>(
    table: &impl ReadableTable<(u64, u64), V>,
    key: u64,
) -> Result<u64, StoreError> {
    let last = table
        .range((key, 0)..=(key, u64::MAX))
        .map_err(db)?
        .next_back()
        .transpose()
        .map_err(db)?;
    Ok(last.map(|(k, _)| k.value().1).unwrap_or(0))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StoreError> {
    codec::decode(bytes, MAX_STORED).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

mod accepted;
mod anchors;
pub use accepted::Accepted;
pub use anchors::AnchorEntry;

#[cfg(test)]
mod faults;
#[cfg(test)]
mod tests;
