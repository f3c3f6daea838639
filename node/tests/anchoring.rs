//! Anchoring end to end with real processes: 4 global validators (2 cloud, 2 edges) and two
//! local domains of an edge and 3 devices each. Device traces of both domains become provable
//! and every proof verifies offline; the global chain holds every local block in order with no
//! gap; an edge killed for a while re-anchors what it missed while its devices kept everything
//! unanchored; forged anchors are refused and counted by every global validator.

#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

mod common;

use common::{Testnet, get, lcbft, path_str, trace_committed, wait_until};
use lcbft_node::genesis;
use lcbft_protocol::anchor::{Anchor, CommitProof, KeyRing};
use lcbft_protocol::crypto::{Dealer, ThresholdCryptoScheme, ThresholdKeys, load_keys};
use lcbft_protocol::proof::TraceProof;
use lcbft_protocol::types::{
    Bitmap, Block, Certificate, DomainId, Hash, Kind, SignedMsg, Tx, View,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const VALIDATORS: [usize; 4] = [0, 1, 2, 3];
/// Edges of local/1 and local/2; their devices follow the validators.
const EDGES: [usize; 2] = [2, 3];
const DEVICES: [[usize; 3]; 2] = [[4, 5, 6], [7, 8, 9]];
const WINDOW: u64 = 4;

fn domain(d: usize) -> String {
    format!("local/{}", d + 1)
}

fn status(api: SocketAddr) -> Value {
    get(api, "/v1/status")
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

/// A domain's entry in a node's status.
fn entry(api: SocketAddr, name: &str) -> Value {
    status(api)["domains"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["domain"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// `local/N`'s anchored height in `api`'s committed global chain.
fn anchored(api: SocketAddr, name: &str) -> u64 {
    entry(api, "global")["anchored"][name].as_u64().unwrap_or(0)
}

fn local_height(api: SocketAddr, name: &str) -> u64 {
    entry(api, name)["committed_height"].as_u64().unwrap_or(0)
}

fn submit(net: &Testnet, node: usize, name: &str, data: &str, parent: Option<&str>) -> String {
    common::submit_derived(net, node, name, data, parent.as_slice())
}

fn genesis_path(net: &Testnet) -> PathBuf {
    net.root.path().join("net").join("genesis.toml")
}

/// Fetch a proof with `lcbft proof` and check it with `lcbft verify-proof`.
fn prove(net: &Testnet, node: usize, id: &str) -> Option<Vec<u8>> {
    try_prove(net, node, id).ok()
}

fn try_prove(net: &Testnet, node: usize, id: &str) -> Result<Vec<u8>, String> {
    let file = net.root.path().join(format!("{id}-{node}.proof"));
    let api = net.nodes[node].api.to_string();
    let (ok, _, err) = lcbft(&["proof", "--api", &api, id, "--out", path_str(&file)]);
    if !ok {
        return Err(err);
    }
    let (ok, out, err) = lcbft(&[
        "verify-proof",
        path_str(&file),
        "--genesis",
        path_str(&genesis_path(net)),
    ]);
    assert!(ok, "proof of {id} from node {node} does not verify: {err}");
    assert!(out.starts_with("valid"), "{out}");
    std::fs::read(&file).map_err(|e| e.to_string())
}

/// Every byte of a proof matters: flip one bit at positions spread over the whole file (the
/// protocol's tests flip every byte of a proof under the simulator's keys).
fn assert_flips_fail(proof: &[u8], keys: &KeyRing, file: &Path, genesis: &Path) {
    TraceProof::decode(proof).unwrap().verify(keys).unwrap();
    let stride = (proof.len() / 400).max(1);
    for at in (0..proof.len())
        .step_by(stride)
        .chain(proof.len() - 100..proof.len())
    {
        let mut altered = proof.to_vec();
        altered[at] ^= 0x04;
        let ok = TraceProof::decode(&altered).is_ok_and(|p| p.verify(keys).is_ok());
        assert!(!ok, "a proof with byte {at} altered still verifies");
    }
    // The command says what failed and exits non-zero.
    let mut altered = proof.to_vec();
    let last = altered.len() - 10;
    altered[last] ^= 0x01;
    std::fs::write(file, &altered).unwrap();
    let (ok, _, err) = lcbft(&[
        "verify-proof",
        path_str(file),
        "--genesis",
        path_str(genesis),
    ]);
    assert!(!ok && err.contains("does not verify"), "{err}");
}

/// The anchored chain of `name` as `api`'s global chain holds it, checked to run 1, 2, 3, ...
/// with each block's parent the block before. Returns the hashes by height.
fn walk_global_chain(api: SocketAddr, name: &str) -> Vec<String> {
    let top = entry(api, "global")["committed_height"].as_u64().unwrap();
    let mut hashes: Vec<String> = Vec::new();
    for h in 1..=top {
        let (code, block) = get(api, &format!("/v1/domains/global/blocks/{h}")).unwrap();
        assert_eq!(code, 200, "global block {h}: {block}");
        for a in block["anchors"].as_array().unwrap() {
            if a["domain"] != name {
                continue;
            }
            let height = a["height"].as_u64().unwrap();
            assert_eq!(
                height,
                hashes.len() as u64 + 1,
                "gap or repeat in {name} at global {h}"
            );
            if let Some(prev) = hashes.last() {
                assert_eq!(
                    a["parent"].as_str(),
                    Some(prev.as_str()),
                    "fork in {name} at {height}"
                );
            }
            hashes.push(a["hash"].as_str().unwrap().to_owned());
        }
    }
    hashes
}

/// A local block at `height` on `parent`, with a commit proof under `keys` (not the domain's).
fn forged_anchor(
    domain: DomainId,
    height: u64,
    parent: Hash,
    keys: &[Box<dyn ThresholdKeys>],
) -> Tx {
    let sign = |view: View, digest: Hash| {
        let msg = SignedMsg {
            domain,
            kind: Kind::Vote,
            view,
            digest,
        };
        let shares: Vec<_> = keys[..3]
            .iter()
            .map(|k| k.sign_share(&msg.bytes()).unwrap())
            .collect();
        let chosen: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u16, s))
            .collect();
        Certificate {
            msg,
            signers: Bitmap::from_indices(4, 0..3),
            signature: keys[0].combine(&chosen).unwrap(),
        }
    };
    let view = (1000 << 32) | 1;
    let block = Block {
        domain,
        height,
        view,
        proposer: 1,
        parent,
        justify: Certificate::genesis(domain),
        payload: Default::default(),
    };
    let child = Block {
        domain,
        height: height + 1,
        view: view + 1,
        proposer: 1,
        parent: block.hash(),
        justify: sign(view, block.hash()),
        payload: Default::default(),
    };
    let qc = sign(view + 1, child.hash());
    let commit = CommitProof {
        above: vec![child.header()],
        qc,
    };
    Anchor { block, commit }.to_tx()
}

fn post_anchor(api: SocketAddr, tx: &Tx) -> (u16, String) {
    let r = common::rt()
        .block_on(lcbft_node::http_client::request_bytes(
            api,
            "POST",
            "/v1/anchors",
            "application/cbor",
            tx.bytes(),
        ))
        .unwrap();
    (r.status, r.body)
}

fn rejected_count(api: SocketAddr, reason: &str) -> u64 {
    let r = common::rt()
        .block_on(lcbft_node::http_client::request(
            api, "GET", "/metrics", None,
        ))
        .unwrap();
    r.body
        .lines()
        .filter(|l| {
            l.starts_with("lcbft_anchors_rejected_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn both_domains_are_anchored_completely_and_every_trace_is_provable() {
    let mut net = Testnet::build(
        4,
        &[(EDGES[0], 3), (EDGES[1], 3)],
        &format!("local_window = {WINDOW}"),
    );
    net.start_all();
    let all: Vec<usize> = (0..net.nodes.len()).collect();
    assert!(
        common::all_connected(&net, &all, 3),
        "not connected:\n{}",
        net.logs()
    );
    let genesis_file = genesis::load(&genesis_path(&net)).unwrap();
    let keys = genesis_file.key_ring().unwrap();

    // Traces on devices of both domains, one derived from another.
    let mut traces: Vec<(usize, String)> = Vec::new();
    for round in 0..3 {
        for d in 0..2 {
            let device = DEVICES[d][round];
            traces.push((
                d,
                submit(
                    &net,
                    device,
                    &domain(d),
                    &format!("reading-{d}-{round}"),
                    None,
                ),
            ));
        }
    }
    let first = traces[0].1.clone();
    let ok = wait_until(Duration::from_secs(60), || {
        trace_committed(net.nodes[4].api, &first)
    });
    assert!(ok, "not committed:\n{}", net.logs());
    let derived = submit(&net, 5, "local/1", "average", Some(&first));
    traces.push((0, derived.clone()));

    // Provable from a cloud validator and from the domain's edge; verified offline.
    let provable = wait_until(Duration::from_secs(90), || {
        traces.iter().all(|(_, id)| prove(&net, 0, id).is_some())
    });
    assert!(provable, "not provable:\n{}", net.logs());
    for (d, id) in &traces {
        let edge = EDGES[*d];
        let ok = wait_until(Duration::from_secs(20), || prove(&net, edge, id).is_some());
        assert!(
            ok,
            "edge {edge}, {id}: {:?}",
            try_prove(&net, edge, id).err()
        );
        // Another cloud validator proves it too. Its bytes may differ (it may have committed
        // the global block through a later certificate chain); `prove` checks that it verifies.
        let ok = wait_until(Duration::from_secs(20), || prove(&net, 1, id).is_some());
        assert!(ok, "node 1, {id}: {:?}", try_prove(&net, 1, id).err());
    }
    let sample = prove(&net, 0, &derived).unwrap();
    let altered = net.root.path().join("altered.proof");
    assert_flips_fail(&sample, &keys, &altered, &genesis_path(&net));

    // Provenance both ways.
    let (_, lineage) = get(net.nodes[0].api, &format!("/v1/traces/{first}/lineage")).unwrap();
    let (_, child) = get(net.nodes[0].api, &format!("/v1/traces/{derived}")).unwrap();
    let (_, dl) = get(net.nodes[5].api, &format!("/v1/traces/{first}/lineage")).unwrap();
    assert_eq!(
        lineage["descendants"][0]["id"],
        derived.as_str(),
        "{lineage} {child} {dl}"
    );
    let (_, lineage) = get(
        net.nodes[EDGES[0]].api,
        &format!("/v1/traces/{derived}/lineage"),
    )
    .unwrap();
    assert_eq!(lineage["ancestors"][0]["id"], first.as_str(), "{lineage}");

    // Every local block of both domains is in the global chain, in order, no gap.
    for d in 0..2 {
        let name = domain(d);
        let complete = wait_until(Duration::from_secs(60), || {
            let local = local_height(net.nodes[DEVICES[d][0]].api, &name);
            local > 0 && anchored(net.nodes[0].api, &name) >= local
        });
        assert!(complete, "{name} not anchored completely:\n{}", net.logs());
        let chain = walk_global_chain(net.nodes[1].api, &name);
        for (i, hash) in chain.iter().enumerate() {
            let h = i as u64 + 1;
            let device =
                common::domain_block_hash(net.nodes[DEVICES[d][1]].api, &name.replace('/', "-"), h);
            assert!(
                device.is_none_or(|x| x == *hash),
                "{name} height {h} differs on a device"
            );
        }
    }

    // The edge of local/1 goes down; its devices keep committing but prune nothing unanchored.
    let edge = EDGES[0];
    net.nodes[edge].kill();
    let before = anchored(net.nodes[0].api, "local/1");
    let mut during = Vec::new();
    for i in 0..(WINDOW as usize + 4) {
        let id = submit(
            &net,
            DEVICES[0][i % 3],
            "local/1",
            &format!("offline-{i}"),
            None,
        );
        let ok = wait_until(Duration::from_secs(60), || {
            trace_committed(net.nodes[DEVICES[0][0]].api, &id)
        });
        assert!(
            ok,
            "local/1 stopped committing without its edge:\n{}",
            net.logs()
        );
        during.push(id);
    }
    let height_during = local_height(net.nodes[DEVICES[0][0]].api, "local/1");
    assert!(
        height_during > before + WINDOW,
        "{height_during} vs {before}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        anchored(net.nodes[0].api, "local/1"),
        before,
        "anchored without an edge?"
    );
    for &dev in &DEVICES[0] {
        let kept = entry(net.nodes[dev].api, "local/1")["retained_from"]
            .as_u64()
            .unwrap();
        assert!(
            kept <= before + 1,
            "device {dev} pruned unanchored blocks: keeps from {kept}, anchored {before}"
        );
    }

    // Back up: it re-submits what is missing; the anchored chain is complete again.
    net.nodes[edge].start();
    let complete = wait_until(Duration::from_secs(90), || {
        anchored(net.nodes[0].api, "local/1") >= height_during
    });
    assert!(complete, "not re-anchored:\n{}", net.logs());
    let chain = walk_global_chain(net.nodes[0].api, "local/1");
    assert!(chain.len() as u64 >= height_during);
    // Node 0 saw the anchors committed; node 1 may be a block behind.
    for id in &during {
        let ok = wait_until(Duration::from_secs(20), || prove(&net, 1, id).is_some());
        assert!(ok, "{id} not provable after the edge came back");
    }
    // Now the devices prune outside the window; the global nodes still serve what they pruned.
    let pruned = wait_until(Duration::from_secs(30), || {
        DEVICES[0].iter().all(|&dev| {
            entry(net.nodes[dev].api, "local/1")["retained_from"]
                .as_u64()
                .unwrap_or(1)
                > 1
        })
    });
    assert!(pruned, "devices did not prune:\n{}", net.logs());
    let (code, block) = get(net.nodes[1].api, "/v1/domains/local-1/blocks/1").unwrap();
    assert_eq!(
        (code, block["hash"].as_str()),
        (200, Some(chain[0].as_str()))
    );
    let (code, _) = get(net.nodes[DEVICES[0][0]].api, "/v1/domains/local-1/blocks/1").unwrap();
    assert_eq!(code, 404, "device kept a pruned block");

    // Forged anchors on the (now idle) anchored tip: every validator refuses and counts them.
    let tip = anchored(net.nodes[0].api, "local/1");
    let tip_hash: Hash = {
        let (_, a) = get(
            net.nodes[0].api,
            &format!("/v1/domains/local-1/anchors?from={tip}"),
        )
        .unwrap();
        let hex = a["anchors"][0]["hash"].as_str().unwrap().to_owned();
        Hash(hex::decode(hex).unwrap().try_into().unwrap())
    };
    let fake = ThresholdCryptoScheme::deal(4, 3, [42; 32]);
    let fake: Vec<Box<dyn ThresholdKeys>> = (0..4)
        .map(|i| load_keys(fake.scheme, 4, &fake.public, fake.secrets.get(i)).unwrap())
        .collect();
    let d1 = DomainId::Local(1);
    let forged = BTreeMap::from([
        (
            "bad_certificate",
            forged_anchor(d1, tip + 1, tip_hash, &fake),
        ),
        ("gap", forged_anchor(d1, tip + 3, tip_hash, &fake)),
        (
            "fork",
            forged_anchor(d1, tip, Hash::of(b"elsewhere"), &fake),
        ),
    ]);
    for &v in &VALIDATORS {
        for (reason, tx) in &forged {
            let before = rejected_count(net.nodes[v].api, reason);
            let (code, body) = post_anchor(net.nodes[v].api, tx);
            assert_eq!(
                code, 422,
                "validator {v} took a forged anchor ({reason}): {body}"
            );
            assert_eq!(
                rejected_count(net.nodes[v].api, reason),
                before + 1,
                "{reason} on {v}"
            );
        }
    }
    assert_eq!(anchored(net.nodes[0].api, "local/1"), tip);

    for (d, &e) in EDGES.iter().enumerate() {
        let s = entry(net.nodes[e].api, &domain(d));
        println!(
            "anchoring lag {}: p50 {} ms, p99 {} ms",
            domain(d),
            s["anchor_lag_p50_ms"],
            s["anchor_lag_p99_ms"]
        );
    }
    common::assert_no_fork(&net, &VALIDATORS);
}
