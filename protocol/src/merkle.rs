//! Binary Merkle tree over payload ids: the block header commits to its payload through the
//! root, and a trace's inclusion proof is its path.

use crate::types::Hash;
use serde::{Deserialize, Serialize};

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"lcbft1/node");
    h.update(&left.0);
    h.update(&right.0);
    Hash(*h.finalize().as_bytes())
}

fn leaf(id: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"lcbft1/leaf");
    h.update(&id.0);
    Hash(*h.finalize().as_bytes())
}

/// Root of the tree whose leaves are `ids` in order; an odd node is promoted unchanged.
pub fn root(ids: impl IntoIterator<Item = Hash>) -> Hash {
    let mut level: Vec<Hash> = ids.into_iter().map(|id| leaf(&id)).collect();
    if level.is_empty() {
        return Hash::ZERO;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node(l, r),
                [only] => *only,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

/// One step of an inclusion path: the sibling and whether it sits on the left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub sibling: Hash,
    pub left: bool,
}

/// The inclusion path of leaf `index`, or `None` when out of range.
pub fn path(ids: &[Hash], index: usize) -> Option<Vec<Step>> {
    if index >= ids.len() {
        return None;
    }
    let mut level: Vec<Hash> = ids.iter().map(leaf).collect();
    let mut at = index;
    let mut steps = Vec::new();
    while level.len() > 1 {
        let sibling = at ^ 1;
        if sibling < level.len() {
            steps.push(Step {
                sibling: level[sibling],
                left: sibling < at,
            });
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node(l, r),
                [only] => *only,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
        at /= 2;
    }
    Some(steps)
}

/// Recompute the root from a leaf id and its path.
pub fn fold(id: &Hash, steps: &[Step]) -> Hash {
    steps.iter().fold(leaf(id), |acc, s| {
        if s.left {
            node(&s.sibling, &acc)
        } else {
            node(&acc, &s.sibling)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_folds_to_the_root_and_a_wrong_leaf_does_not() {
        for n in 1..20u8 {
            let ids: Vec<Hash> = (0..n).map(|i| Hash::of(&[i])).collect();
            let r = root(ids.iter().copied());
            for i in 0..ids.len() {
                let p = path(&ids, i).unwrap();
                assert_eq!(fold(&ids[i], &p), r, "n={n} i={i}");
                assert_ne!(fold(&Hash::of(b"other"), &p), r);
            }
            assert!(path(&ids, ids.len()).is_none());
        }
        assert_eq!(root(std::iter::empty()), Hash::ZERO);
    }
}
