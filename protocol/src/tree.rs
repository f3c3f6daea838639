//! The block tree a replica knows, rooted at genesis: parent links, the commit rule's chain
//! walk, and per-block summaries the leader rules read in O(1).

use crate::types::{Block, Certificate, DomainId, Hash, ReplicaIndex, Tx};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub struct Node {
    pub block: Arc<Block>,
    pub hash: Hash,
    /// Highest height committed by the commit rule applied anywhere in this block's
    /// ancestry, itself included: what every replica that has this block knows is final.
    pub announced: u64,
    /// Height of the newest block with payload in this block's ancestry (0 if none).
    pub last_payload: u64,
    /// Per member, how many certificates in this ancestry carry its share (Algorithm 2).
    pub availability: Arc<Vec<u32>>,
}

pub struct BlockTree {
    chain: usize,
    n: usize,
    nodes: HashMap<Hash, Node>,
    by_height: HashMap<u64, Hash>,
    /// Blocks whose parent is not known yet, by parent.
    orphans: HashMap<Hash, Vec<Block>>,
    orphan_hashes: HashSet<Hash>,
    orphan_count: usize,
    committed: Hash,
    committed_height: u64,
    /// Blocks not yet judged by a commit: once the committed height passes one that is not on
    /// the committed chain, it can never commit and is dropped (a Byzantine leader's refused
    /// proposals must not stay in memory for good).
    undecided: BTreeSet<(u64, Hash)>,
}

/// Orphans kept while their ancestry is fetched; only requested blocks become orphans.
const MAX_ORPHANS: usize = 4096;

impl BlockTree {
    /// `chain` is the commit rule's length: 3 (global) or 2 (local).
    pub fn new(domain: DomainId, chain: usize, n: usize) -> BlockTree {
        let genesis = Block::genesis(domain);
        let hash = genesis.hash();
        let mut nodes = HashMap::new();
        nodes.insert(
            hash,
            Node {
                block: Arc::new(genesis),
                hash,
                announced: 0,
                last_payload: 0,
                availability: Arc::new(vec![0; n]),
            },
        );
        let mut by_height = HashMap::new();
        by_height.insert(0, hash);
        BlockTree {
            chain,
            n,
            nodes,
            by_height,
            orphans: HashMap::new(),
            orphan_hashes: HashSet::new(),
            orphan_count: 0,
            committed: hash,
            committed_height: 0,
            undecided: BTreeSet::new(),
        }
    }

    /// Forget blocks below `height` except `pinned` and the committed block: a long-running
    /// replica must not hold its whole chain in memory. Blocks below can no longer be served
    /// to a peer that far behind.
    pub fn prune_below(&mut self, height: u64, pinned: &Hash) {
        let committed = self.committed;
        self.nodes
            .retain(|h, n| n.block.height >= height || h == pinned || *h == committed);
        self.by_height.retain(|&k, _| k >= height);
    }

    /// Changes the commit rule's length (the simulator's broken-rule tests only).
    pub(crate) fn set_chain(&mut self, chain: usize) {
        self.chain = chain;
    }

    /// Restart from `block` as the committed root: the chain below it was pruned from disk.
    pub fn reroot(&mut self, block: Block) {
        let hash = block.hash();
        let height = block.height;
        self.nodes.clear();
        self.by_height.clear();
        self.orphans.clear();
        self.orphan_hashes.clear();
        self.orphan_count = 0;
        self.undecided.clear();
        self.nodes.insert(
            hash,
            Node {
                block: Arc::new(block),
                hash,
                announced: height,
                last_payload: height,
                availability: Arc::new(vec![0; self.n]),
            },
        );
        self.by_height.insert(height, hash);
        self.committed = hash;
        self.committed_height = height;
    }

    pub fn get(&self, hash: &Hash) -> Option<&Node> {
        self.nodes.get(hash)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.nodes.contains_key(hash)
    }

    pub fn committed(&self) -> (Hash, u64) {
        (self.committed, self.committed_height)
    }

    pub fn committed_at(&self, height: u64) -> Option<Hash> {
        (height <= self.committed_height)
            .then(|| self.by_height.get(&height).copied())
            .flatten()
    }

    /// Insert `block`. Returns the hashes now connected (the block and any orphans it freed),
    /// or the parent hash to fetch when the block had to wait.
    pub fn insert(&mut self, block: Block) -> Result<Vec<Hash>, Hash> {
        let hash = block.hash();
        if self.nodes.contains_key(&hash) {
            return Ok(Vec::new());
        }
        if !self.nodes.contains_key(&block.parent) {
            let parent = block.parent;
            if self.orphan_count < MAX_ORPHANS && self.orphan_hashes.insert(hash) {
                self.orphans.entry(parent).or_default().push(block);
                self.orphan_count += 1;
            }
            return Err(parent);
        }
        let mut added = Vec::new();
        let mut queue = vec![block];
        while let Some(block) = queue.pop() {
            let hash = block.hash();
            if self.nodes.contains_key(&hash) {
                continue;
            }
            let Some(node) = self.summarise(block, hash) else {
                continue;
            };
            self.undecided.insert((node.block.height, hash));
            self.nodes.insert(hash, node);
            added.push(hash);
            if let Some(children) = self.orphans.remove(&hash) {
                self.orphan_count -= children.len();
                for c in &children {
                    self.orphan_hashes.remove(&c.hash());
                }
                queue.extend(children);
            }
        }
        Ok(added)
    }

    /// Whether this block is held, connected or waiting for its ancestry.
    pub fn knows(&self, hash: &Hash) -> bool {
        self.nodes.contains_key(hash) || self.orphan_hashes.contains(hash)
    }

    fn summarise(&self, block: Block, hash: Hash) -> Option<Node> {
        let parent = self.nodes.get(&block.parent)?;
        if block.height != parent.block.height + 1 || block.view <= parent.block.view {
            return None;
        }
        let announced = self
            .commit_target(&block.justify)
            .map_or(0, |h| self.nodes[&h].block.height)
            .max(parent.announced);
        let last_payload = if block.payload.is_empty() {
            parent.last_payload
        } else {
            block.height
        };
        let mut availability = parent.availability.clone();
        if !block.justify.is_genesis() {
            let counts = Arc::make_mut(&mut availability);
            for i in block.justify.signers.iter() {
                if let Some(c) = counts.get_mut(usize::from(i)) {
                    *c += 1;
                }
            }
        }
        Some(Node {
            block: Arc::new(block),
            hash,
            announced,
            last_payload,
            availability,
        })
    }

    /// The block a certificate commits by the chain rule: follow `chain - 1` justify links from
    /// the certified block; every link must be a direct parent in the next view.
    pub fn commit_target(&self, qc: &Certificate) -> Option<Hash> {
        let mut hash = qc.block();
        for _ in 1..self.chain {
            let node = self.nodes.get(&hash)?;
            let b = &node.block;
            let parent = self.nodes.get(&b.parent)?;
            if b.justify.block() != b.parent || b.view != parent.block.view + 1 {
                return None;
            }
            hash = b.parent;
        }
        Some(hash)
    }

    /// The lock a certificate implies: `chain - 2` justify links back from it.
    pub fn lock_of<'a>(&'a self, qc: &'a Certificate) -> Option<&'a Certificate> {
        let mut cert = qc;
        for _ in 2..self.chain {
            cert = &self.nodes.get(&cert.block())?.block.justify;
        }
        Some(cert)
    }

    /// Whether `descendant` extends `ancestor` (or is it).
    pub fn extends(&self, descendant: &Hash, ancestor: &Hash) -> bool {
        let Some(target) = self.nodes.get(ancestor).map(|n| n.block.height) else {
            return false;
        };
        let mut hash = *descendant;
        while let Some(node) = self.nodes.get(&hash) {
            if hash == *ancestor {
                return true;
            }
            if node.block.height <= target {
                return false;
            }
            hash = node.block.parent;
        }
        false
    }

    /// Commit `target` and its uncommitted ancestors; returns them oldest first. `None` if
    /// `target` conflicts with what is already committed (a safety violation upstream).
    pub fn commit(&mut self, target: Hash) -> Option<Vec<Arc<Block>>> {
        let height = self.nodes.get(&target)?.block.height;
        if height <= self.committed_height {
            return (self.committed_at(height) == Some(target)).then(Vec::new);
        }
        let mut chain = Vec::new();
        let mut hash = target;
        while hash != self.committed {
            let node = self.nodes.get(&hash)?;
            if node.block.height <= self.committed_height {
                return None;
            }
            chain.push(node.block.clone());
            hash = node.block.parent;
        }
        chain.reverse();
        for b in &chain {
            self.by_height.insert(b.height, b.hash());
        }
        self.committed = target;
        self.committed_height = height;
        self.drop_dead_forks();
        Some(chain)
    }

    fn drop_dead_forks(&mut self) {
        while let Some(&(h, hash)) = self.undecided.first() {
            if h > self.committed_height {
                break;
            }
            self.undecided.pop_first();
            if self.by_height.get(&h) != Some(&hash) {
                self.nodes.remove(&hash);
            }
        }
    }

    /// Payload ids in blocks from `tip` down to the last committed block (being decided).
    pub fn uncommitted_payload(&self, tip: &Hash) -> HashSet<Hash> {
        self.uncommitted_ids(tip).collect()
    }

    /// Ids of the payload on the branch from `tip` down to the committed block, tip first.
    pub fn uncommitted_ids(&self, tip: &Hash) -> impl Iterator<Item = Hash> + '_ {
        let mut next = Some(*tip);
        std::iter::from_fn(move || {
            let node = self.nodes.get(&next?)?;
            if node.block.height <= self.committed_height {
                return None;
            }
            next = Some(node.block.parent);
            Some(node.block.payload.iter().map(Tx::id))
        })
        .flatten()
    }

    /// Members ranked by availability at `hash` (Algorithm 2): most certificates first, then
    /// `first` (the edge), then lowest index.
    pub fn ranking(&self, hash: &Hash, first: Option<ReplicaIndex>) -> Vec<ReplicaIndex> {
        let counts = self
            .nodes
            .get(hash)
            .map(|n| n.availability.clone())
            .unwrap_or_else(|| Arc::new(vec![0; self.n]));
        let mut members: Vec<ReplicaIndex> = (0..self.n)
            .filter_map(|i| ReplicaIndex::try_from(i).ok())
            .collect();
        members.sort_by_key(|&i| {
            (
                std::cmp::Reverse(counts[usize::from(i)]),
                Some(i) != first,
                i,
            )
        });
        members
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::View;

    fn child(parent: &Block, view: View, tag: &[u8]) -> Block {
        let mut b = parent.clone();
        b.height = parent.height + 1;
        b.view = view;
        b.parent = parent.hash();
        b.payload = vec![crate::types::Tx::new(tag.to_vec())].into();
        b
    }

    /// A block beside the committed chain at a committed height can never commit: it leaves
    /// memory with the commit that passes it, whether it came before or after that commit.
    #[test]
    fn forks_below_the_committed_height_are_dropped() {
        let mut tree = BlockTree::new(DomainId::Global, 3, 4);
        let genesis = Block::genesis(DomainId::Global);
        let a1 = child(&genesis, 1, b"a1");
        let b1 = child(&genesis, 2, b"b1 refused");
        let a2 = child(&a1, 3, b"a2");
        for b in [&a1, &b1, &a2] {
            assert!(tree.insert(b.clone()).is_ok());
        }
        assert!(tree.commit(a1.hash()).is_some());
        assert!(tree.contains(&a1.hash()) && tree.contains(&a2.hash()));
        assert!(!tree.contains(&b1.hash()), "the dead fork stayed");
        let late = child(&genesis, 4, b"late fork");
        assert!(tree.insert(late.clone()).is_ok());
        assert!(tree.commit(a2.hash()).is_some());
        assert!(!tree.contains(&late.hash()));
        assert_eq!(tree.committed_at(1), Some(a1.hash()));
        assert_eq!(tree.committed_at(2), Some(a2.hash()));
    }
}
