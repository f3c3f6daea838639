//! Durable acknowledgements: the items this node answered `202` for and has not yet seen
//! committed. Written before the answer (the storage worker's group commit), deleted in the
//! transaction that commits their block (or once found committed or refused some other way),
//! and reloaded into the pool at start so that they are offered again.

use super::{Batch, Store, StoreError, db, domain_key, domain_of};
use lcbft_protocol::types::{Block, DomainId, Hash, Tx};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

/// (domain key, item id): keyed by domain too, since a raw network may carry the same bytes
/// in two domains.
type Key = (u64, [u8; 32]);
/// (arrival number, the item's bytes).
type Entry<'a> = (u64, &'a [u8]);
pub(super) const ACCEPTED: TableDefinition<Key, Entry> = TableDefinition::new("accepted");

/// An item acknowledged here and not yet seen committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub domain: DomainId,
    /// Arrival order across the node: a reload gives items back oldest first.
    pub seq: u64,
    pub tx: Tx,
}

impl Store {
    /// Every acknowledged item not yet seen committed, oldest first.
    pub fn accepted(&self) -> Result<Vec<Accepted>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(ACCEPTED).map_err(db)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let (key, id) = k.value();
            let (seq, bytes) = v.value();
            out.push(entry_of(key, id, seq, bytes)?);
        }
        out.sort_by_key(|a| a.seq);
        Ok(out)
    }

    /// One acknowledged item, if it still waits for its commit.
    pub fn accepted_tx(&self, domain: DomainId, id: &Hash) -> Result<Option<Tx>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(ACCEPTED).map_err(db)?;
        let key = domain_key(domain);
        let Some(v) = t.get((key, id.0)).map_err(db)? else {
            return Ok(None);
        };
        let (seq, bytes) = v.value();
        entry_of(key, id.0, seq, bytes).map(|a| Some(a.tx))
    }

    /// Durably record acknowledged items (tests and tools; the node goes through a batch).
    pub fn accept(&self, items: &[Accepted]) -> Result<(), StoreError> {
        let batch = self.batch()?;
        batch.accept(items)?;
        batch.finish()
    }
}

impl Batch {
    /// Record acknowledged items.
    pub fn accept(&self, items: &[Accepted]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut t = self.txn.open_table(ACCEPTED).map_err(db)?;
        for a in items {
            t.insert((domain_key(a.domain), a.tx.id().0), (a.seq, a.tx.bytes()))
                .map_err(db)?;
        }
        Ok(())
    }

    /// Forget acknowledged items of `domain`: committed, or refused for good.
    pub fn forget_accepted(&self, domain: DomainId, ids: &[Hash]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = domain_key(domain);
        let mut t = self.txn.open_table(ACCEPTED).map_err(db)?;
        for id in ids {
            t.remove((key, id.0)).map_err(db)?;
        }
        Ok(())
    }
}

/// A committed block's items are no longer waiting: forget those acknowledged here, in the
/// transaction that commits the block. Costs one lookup per item, and nothing when this node
/// holds no acknowledged item.
pub(super) fn forget_committed(txn: &WriteTransaction, block: &Block) -> Result<(), StoreError> {
    let mut t = txn.open_table(ACCEPTED).map_err(db)?;
    if t.is_empty().map_err(db)? {
        return Ok(());
    }
    let key = domain_key(block.domain);
    for tx in &block.payload {
        t.remove((key, tx.id().0)).map_err(db)?;
    }
    Ok(())
}

fn entry_of(key: u64, id: [u8; 32], seq: u64, bytes: &[u8]) -> Result<Accepted, StoreError> {
    let tx = Tx::new(bytes.to_vec());
    if tx.id().0 != id {
        return Err(StoreError::Corrupt {
            what: "acknowledged item",
            reason: format!(
                "stored under {} but its bytes hash to {}",
                Hash(id),
                tx.id()
            ),
        });
    }
    Ok(Accepted {
        domain: domain_of(key),
        seq,
        tx,
    })
}
