//! `check`: read every node's committed chains through the API and verify that no two nodes
//! hold different blocks at one height in any domain, that each chain links up, that anchored
//! local chains are complete in the global chain, and that sample proofs verify offline.
//! Parts the node cannot answer yet (anchors, proofs) are reported as not checked.

use crate::init::genesis_file;
use crate::net::Net;
use crate::observe::Snapshot;
use crate::topology::NodeSpec;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

#[derive(Clone, Debug)]
pub struct Block {
    pub hash: String,
    pub parent: String,
    pub txs: Vec<String>,
}

/// One domain's chain as the nodes agree on it: `blocks[h - 1]` is height h.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    pub blocks: Vec<Option<Block>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Violations: a fork, a gap, a broken link, a bad anchor or proof. Empty means safe.
    pub problems: Vec<String>,
    /// What could not be checked and why.
    pub notes: Vec<String>,
    /// Per domain, the highest committed height any node holds.
    pub heights: BTreeMap<String, u64>,
    pub proofs_verified: usize,
    #[serde(skip)]
    pub chains: BTreeMap<String, Chain>,
}

impl Report {
    pub fn safety(&self) -> String {
        if self.problems.is_empty() {
            "ok".to_owned()
        } else {
            self.problems.join("; ")
        }
    }

    /// How many of `ids` (domain, id) are in a block of their domain's chain.
    pub fn committed(&self, ids: &[(String, String)]) -> usize {
        let mut sets: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (d, chain) in &self.chains {
            let set = sets.entry(d.as_str()).or_default();
            for b in chain.blocks.iter().flatten() {
                set.extend(b.txs.iter().map(String::as_str));
            }
        }
        ids.iter()
            .filter(|(d, id)| {
                sets.get(d.as_str())
                    .is_some_and(|s| s.contains(id.as_str()))
            })
            .count()
    }
}

fn block_path(domain: &str, h: u64) -> String {
    format!("/v1/domains/{}/blocks/{h}", domain.replace('/', "-"))
}

/// A node's view of one domain: its committed height and the blocks it returned.
struct NodeChain {
    name: String,
    height: u64,
    blocks: Vec<Option<Block>>,
    anchored: u64,
}

fn read_chain(net: &Net, n: &NodeSpec, domain: &str) -> Option<NodeChain> {
    let ep = net.endpoint(n);
    let status: crate::observe::NodeStatus =
        serde_json::from_value(ep.get_json("/v1/status")?).ok()?;
    let d = status.domain(domain)?;
    let mut blocks = Vec::new();
    for h in 1..=d.committed_height {
        let b = ep.get_json(&block_path(domain, h)).map(|v| Block {
            hash: v["hash"].as_str().unwrap_or_default().to_owned(),
            parent: v["parent"].as_str().unwrap_or_default().to_owned(),
            txs: v["txs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        });
        blocks.push(b);
    }
    // A live member may prune while we read: what it had anchored after we read is what may
    // be missing.
    let after: Option<crate::observe::NodeStatus> = ep
        .get_json("/v1/status")
        .and_then(|v| serde_json::from_value(v).ok());
    let anchored_after = after
        .as_ref()
        .and_then(|s| s.domain(domain)?.anchored_height)
        .unwrap_or(0);
    Some(NodeChain {
        name: n.name.clone(),
        height: d.committed_height,
        blocks,
        anchored: d.anchored_height.unwrap_or(0).max(anchored_after),
    })
}

/// Compare the members' chains of one domain; add problems and return the agreed chain.
fn compare(domain: &str, chains: &[NodeChain], report: &mut Report) -> Chain {
    let top = chains.iter().map(|c| c.height).max().unwrap_or(0);
    let mut agreed = Chain::default();
    for h in 1..=top {
        let i = (h - 1) as usize;
        let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for c in chains.iter().filter(|c| c.height >= h) {
            match c.blocks.get(i).and_then(Option::as_ref) {
                Some(b) => seen.entry(b.hash.as_str()).or_default().push(&c.name),
                // Below its anchored height a local replica may have pruned the block.
                None if h <= c.anchored => {}
                None => report.problems.push(format!(
                    "{domain}: {} committed height {} but has no block at {h}",
                    c.name, c.height
                )),
            }
        }
        if seen.len() > 1 {
            let sides: Vec<String> = seen
                .iter()
                .map(|(hash, names)| {
                    format!("{} on {}", &hash[..hash.len().min(12)], names.join(","))
                })
                .collect();
            report.problems.push(format!(
                "{domain}: fork at height {h}: {}",
                sides.join(" vs ")
            ));
        }
        let block = seen.keys().next().and_then(|hash| {
            chains
                .iter()
                .filter_map(|c| c.blocks.get(i).and_then(Option::as_ref))
                .find(|b| b.hash == *hash)
                .cloned()
        });
        agreed.blocks.push(block);
    }
    for h in 2..=top as usize {
        if let (Some(Some(prev)), Some(Some(b))) =
            (agreed.blocks.get(h - 2), agreed.blocks.get(h - 1))
            && b.parent != prev.hash
        {
            report.problems.push(format!(
                "{domain}: block {h} does not extend block {}",
                h - 1
            ));
        }
    }
    report.heights.insert(domain.to_owned(), top);
    agreed
}

pub fn run(net: &Net, bin: Option<&Path>) -> Report {
    let mut report = Report::default();
    // Anchored heights first: on a live network the chains read after them can only be
    // higher, so "anchored above the local chain" is never a race of the two reads.
    let anchors_seen = Snapshot::take(net, false);
    for domain in net.topo.domain_names() {
        let members = net.topo.members(&domain);
        let chains: Vec<NodeChain> = std::thread::scope(|s| {
            let hs: Vec<_> = members
                .iter()
                .map(|n| {
                    let d = domain.as_str();
                    s.spawn(move || read_chain(net, n, d))
                })
                .collect();
            hs.into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        let missing: Vec<&str> = members
            .iter()
            .filter(|m| !chains.iter().any(|c| c.name == m.name))
            .map(|m| m.name.as_str())
            .collect();
        if chains.is_empty() {
            report.problems.push(format!(
                "{domain}: no member answered, nothing could be checked"
            ));
            continue;
        }
        if !missing.is_empty() {
            report.notes.push(format!(
                "{domain}: not read from {} (down or not answering)",
                missing.join(", ")
            ));
        }
        let chain = compare(&domain, &chains, &mut report);
        report.chains.insert(domain, chain);
    }
    check_anchors(net, &anchors_seen, &mut report);
    if let Some(bin) = bin {
        check_proofs(net, bin, &mut report);
    }
    report
}

/// Anchored heights must be committed locally; with the anchor API, the anchors of a local
/// domain must be heights 1..=A, each the hash the local chain holds.
fn check_anchors(net: &Net, snap: &Snapshot, report: &mut Report) {
    let Some(anchored) = snap.anchored() else {
        report
            .notes
            .push("anchors: not checked (the nodes report no anchored heights yet)".into());
        return;
    };
    let validators: Vec<&NodeSpec> = net.topo.members("global");
    for (domain, &a) in &anchored {
        let local = report.heights.get(domain).copied().unwrap_or(0);
        if a > local {
            report.problems.push(format!(
                "{domain}: anchored up to {a} but the local chain is only at {local}"
            ));
        }
        let Some(list) = anchor_list(net, &validators, domain) else {
            report.notes.push(format!(
                "{domain}: anchor completeness not checked (no anchor API)"
            ));
            continue;
        };
        let (claimed, list) = list;
        if (list.len() as u64) < claimed {
            report.problems.push(format!(
                "{domain}: a validator reports anchoring up to {claimed} but lists {} anchors",
                list.len()
            ));
        }
        let chain = report.chains.get(domain).cloned().unwrap_or_default();
        for (i, item) in list.iter().enumerate() {
            let h = item["height"].as_u64();
            if h != Some(i as u64 + 1) {
                report.problems.push(format!(
                    "{domain}: anchor #{} is for height {h:?}: the anchored chain has a gap",
                    i + 1
                ));
                break;
            }
            let hash = item["hash"].as_str();
            let want = chain
                .blocks
                .get(i)
                .and_then(|b| b.as_ref())
                .map(|b| b.hash.as_str());
            if let (Some(hash), Some(want)) = (hash, want)
                && hash != want
            {
                report.problems.push(format!(
                    "{domain}: the anchor of height {} names another block than the local chain",
                    i + 1
                ));
            }
        }
    }
}

/// `GET /v1/domains/local-N/anchors` page by page from the first validator that answers.
/// Returns that validator's anchored height and its list.
fn anchor_list(
    net: &Net,
    validators: &[&NodeSpec],
    domain: &str,
) -> Option<(u64, Vec<serde_json::Value>)> {
    const PAGE: usize = 10_000;
    let seg = domain.replace('/', "-");
    validators.iter().find_map(|v| {
        let ep = net.endpoint(v);
        let mut out = Vec::new();
        let mut claimed = 0;
        loop {
            let page = ep.get_json(&format!(
                "/v1/domains/{seg}/anchors?from={}&limit={PAGE}",
                out.len() + 1
            ))?;
            claimed = claimed.max(page["anchored_height"].as_u64().unwrap_or(0));
            let items = page["anchors"].as_array()?.clone();
            let n = items.len();
            out.extend(items);
            if n < PAGE {
                return Some((claimed, out));
            }
        }
    })
}

/// Fetch a few proofs of anchored traces and verify them with `lcbft verify-proof`.
fn check_proofs(net: &Net, bin: &Path, report: &mut Report) {
    let has_verify = Command::new(bin)
        .args(["verify-proof", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_verify {
        report
            .notes
            .push("proofs: not checked (this lcbft has no `verify-proof`)".into());
        return;
    }
    let anchored = Snapshot::take(net, false).anchored().unwrap_or_default();
    let dir = crate::procs::run_dir(&net.root).join("proofs");
    let _ = std::fs::create_dir_all(&dir);
    let mut sampled = 0;
    for (domain, chain) in &report.chains.clone() {
        let limit = if domain == "global" {
            u64::MAX
        } else {
            anchored.get(domain).copied().unwrap_or(0)
        };
        let ids: Vec<&String> = chain
            .blocks
            .iter()
            .take(limit.min(chain.blocks.len() as u64) as usize)
            .flatten()
            .flat_map(|b| b.txs.iter())
            .collect();
        // First and last anchored trace of the domain.
        let sample: Vec<&String> = ids.first().into_iter().chain(ids.last()).copied().collect();
        for id in sample.into_iter().collect::<BTreeSet<_>>() {
            let path = format!("/v1/traces/{id}/proof");
            let proof = net.topo.nodes.iter().find_map(|n| {
                let r = net.endpoint(n).get(&path).ok()?;
                (r.status == 200).then_some(r.body)
            });
            let Some(proof) = proof else {
                // Global-chain items are also anchors, which are not traces: no proof is fine.
                if domain != "global" {
                    report
                        .problems
                        .push(format!("{domain}: no node serves a proof for trace {id}"));
                }
                continue;
            };
            sampled += 1;
            let file = dir.join(format!("{id}.cbor"));
            if std::fs::write(&file, &proof).is_err() {
                continue;
            }
            let out = Command::new(bin)
                .arg("verify-proof")
                .arg(&file)
                .arg("--genesis")
                .arg(genesis_file(&net.root))
                .output();
            match out {
                Ok(o) if o.status.success() => report.proofs_verified += 1,
                Ok(o) => report.problems.push(format!(
                    "{domain}: the proof of trace {id} does not verify: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => report.notes.push(format!("proofs: cannot run lcbft: {e}")),
            }
        }
    }
    if sampled == 0 {
        report
            .notes
            .push("proofs: no anchored trace to sample yet".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(hash: &str, parent: &str) -> Option<Block> {
        Some(Block {
            hash: hash.into(),
            parent: parent.into(),
            txs: vec![format!("tx-{hash}")],
        })
    }

    fn node(name: &str, blocks: Vec<Option<Block>>) -> NodeChain {
        NodeChain {
            name: name.into(),
            height: blocks.len() as u64,
            blocks,
            anchored: 0,
        }
    }

    #[test]
    fn agreeing_chains_of_different_lengths_are_safe() {
        let mut r = Report::default();
        let chain = compare(
            "local/1",
            &[
                node("a", vec![b("h1", "g"), b("h2", "h1")]),
                node("b", vec![b("h1", "g")]),
            ],
            &mut r,
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(chain.blocks.len(), 2);
        r.chains.insert("local/1".into(), chain);
        let ids = [
            ("local/1".to_owned(), "tx-h2".to_owned()),
            ("local/1".to_owned(), "nope".to_owned()),
        ];
        assert_eq!(r.committed(&ids), 1);
    }

    #[test]
    fn forks_gaps_and_broken_links_are_problems() {
        let mut r = Report::default();
        compare(
            "global",
            &[node("a", vec![b("h1", "g")]), node("b", vec![b("x1", "g")])],
            &mut r,
        );
        assert!(
            r.problems[0].contains("fork at height 1"),
            "{:?}",
            r.problems
        );

        let mut r = Report::default();
        compare("global", &[node("a", vec![b("h1", "g"), None])], &mut r);
        assert!(r.problems[0].contains("no block at 2"), "{:?}", r.problems);

        let mut r = Report::default();
        compare(
            "global",
            &[node("a", vec![b("h1", "g"), b("h2", "zz")])],
            &mut r,
        );
        assert!(
            r.problems[0].contains("does not extend"),
            "{:?}",
            r.problems
        );
        assert_ne!(r.safety(), "ok");
    }
}
