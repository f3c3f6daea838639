//! Writes the seed corpora: real messages, requests, traces, a genesis, configs and a proof
//! from the fixture network. `fuzz/corpus/<target>/` is committed; rerun after a wire format
//! changes, from the repository root:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none seeds -- -runs=1`
//! (`SEEDS_OUT=<dir>` writes elsewhere).
//!
//! It is a libFuzzer binary only because cargo-fuzz builds every binary of this crate with
//! coverage instrumentation, which links only against libFuzzer; it ignores its input.
#![no_main]

use lcbft_fuzz::{LOCAL, genesis, global_proof, run, signed_trace};
use lcbft_node::config::{Config, EXAMPLE};
use lcbft_node::net::wire::{Ack, Direct, Gossip};
use lcbft_node::trace::SignedTrace;
use lcbft_protocol::codec;
use lcbft_protocol::message::Message;
use lcbft_protocol::types::{DomainId, Tx};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// Most seeds of one kind: enough for every message variant the run produces, few enough to
/// keep the corpora small.
const PER_KIND: usize = 3;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), bytes)
}

/// Up to `PER_KIND` messages of each variant, in the order they were sent.
fn sample(messages: &[Message]) -> Vec<Message> {
    let mut seen: Vec<(std::mem::Discriminant<Message>, usize)> = Vec::new();
    let mut bytes = BTreeSet::new();
    let mut out = Vec::new();
    for m in messages {
        let d = std::mem::discriminant(m);
        let count = match seen.iter_mut().find(|(k, _)| *k == d) {
            Some((_, c)) => c,
            None => {
                seen.push((d, 0));
                &mut seen.last_mut().expect("just pushed").1
            }
        };
        if *count < PER_KIND && bytes.insert(codec::encode(m)) {
            *count += 1;
            out.push(m.clone());
        }
    }
    out
}

static WRITE: Once = Once::new();

fuzz_target!(|_data: &[u8]| {
    WRITE.call_once(|| {
        let dir = std::env::var_os("SEEDS_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("fuzz/corpus"));
        write_all(&dir).expect("write the seeds");
        eprintln!("seeds written under {}", dir.display());
    });
});

fn write_all(dir: &Path) -> std::io::Result<()> {
    let global_txs: Vec<Tx> = (0..3)
        .map(|n| signed_trace(DomainId::Global, n).to_tx())
        .collect();
    let local_txs: Vec<Tx> = (0..3).map(|n| signed_trace(LOCAL, n).to_tx()).collect();
    let global = run(DomainId::Global, &global_txs);
    let local = run(LOCAL, &local_txs);

    let mut messages = sample(&global.messages);
    messages.extend(sample(&local.messages));
    for (i, m) in messages.iter().enumerate() {
        let domain = if i < sample(&global.messages).len() {
            DomainId::Global
        } else {
            LOCAL
        };
        let name = format!("{i:02}");
        // The first byte names the sender (see the message target).
        let mut from = vec![(i % 4) as u8];
        from.extend(codec::encode(m));
        write(dir, "message", &name, &from)?;
        write(
            &dir,
            "gossip",
            &name,
            &Gossip::Consensus(Box::new(m.clone())).encode(),
        )?;
        let mut req = vec![0];
        req.extend(codec::encode(&Direct::new(domain, m)));
        write(dir, "direct", &name, &req)?;
    }
    let mut ack = vec![1];
    ack.extend(codec::encode(&Ack(true)));
    write(dir, "direct", "ack", &ack)?;
    write(
        &dir,
        "gossip",
        "payload",
        &Gossip::Payload(local_txs.clone()).encode(),
    )?;

    let proof = global_proof(&global, &global_txs[0]).expect("the run commits its payload");
    write(dir, "proof", "global", &proof.encode())?;
    let commit = proof.clone();
    let anchored = lcbft_protocol::proof::AnchorProof {
        anchor: commit.trace,
        commit: match commit.finality {
            lcbft_protocol::proof::Finality::Global(c) => c,
            lcbft_protocol::proof::Finality::Anchored(_) => unreachable!("a global proof"),
        },
    };
    write(
        &dir,
        "gossip",
        "anchored",
        &Gossip::Anchored(Box::new(anchored)).encode(),
    )?;

    write(
        &dir,
        "genesis",
        "fixture",
        lcbft_node::genesis::to_toml(&genesis()).as_bytes(),
    )?;
    write(dir, "config", "example", EXAMPLE.as_bytes())?;
    write(
        &dir,
        "config",
        "default",
        Config::default().to_toml().as_bytes(),
    )?;
    let overrides = format!(
        "#LCBFT_API__LISTEN=127.0.0.1:7701\n#LCBFT_NETWORK__PEERS=[\"/ip4/10.0.0.2/tcp/7600/p2p/{}\"]\n#LCBFT_CONSENSUS__BASE_TOOBIG=1\n{EXAMPLE}",
        genesis().domains[0].members[0].peer_id
    );
    write(dir, "config", "overrides", overrides.as_bytes())?;

    let traces: Vec<SignedTrace> = (0..3).map(|n| signed_trace(LOCAL, n)).collect();
    let json = |t: &SignedTrace| serde_json::to_vec(&t.to_json()).expect("json");
    write(dir, "trace_json", "signed", &json(&traces[1]))?;
    write(
        &dir,
        "trace_json",
        "bare",
        &serde_json::to_vec(&traces[0].trace.to_json()).expect("json"),
    )?;
    let mut cbor = vec![0];
    cbor.extend(codec::encode(&traces));
    write(dir, "submit", "cbor-array", &cbor)?;
    let mut item = vec![0];
    item.extend(traces[2].to_tx().into_bytes());
    write(dir, "submit", "cbor-item", &item)?;
    let mut single = vec![1];
    single.extend(json(&traces[0]));
    write(dir, "submit", "json-single", &single)?;
    let mut array = vec![1];
    array.extend(
        serde_json::to_vec(&traces.iter().map(SignedTrace::to_json).collect::<Vec<_>>())
            .expect("json"),
    );
    write(dir, "submit", "json-array", &array)?;
    let mut frames = vec![2];
    for p in [&b"raw-1"[..], b"", b"raw payload 3"] {
        frames.extend((p.len() as u32).to_be_bytes());
        frames.extend(p);
    }
    write(dir, "submit", "frames", &frames)?;
    Ok(())
}
