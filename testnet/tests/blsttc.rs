//! A testnet dealt blsttc keys runs like the default one: both layers commit under load, the
//! anchors verify and the safety check passes. Short, to keep CI time down; the
//! threshold_crypto run in `loopback.rs` is the long one.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_healthy_run, json, serial, testnet};
use std::time::Duration;

#[test]
fn a_blsttc_testnet_commits_both_layers_safely() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let o = testnet(
        &["init", "--scheme", "blsttc", "--out", net.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(o.status.success());
    let genesis = std::fs::read_to_string(net.join("genesis/genesis.toml")).unwrap();
    assert!(genesis.contains("scheme = \"blsttc\""), "{genesis}");
    let o = testnet(
        &[
            "up",
            net.to_str().unwrap(),
            "--duration",
            "20",
            "--load",
            "100",
            "--json",
        ],
        Duration::from_secs(90),
    );
    let v = json(&o);
    eprintln!("{v:#}");
    assert!(o.status.success(), "{v:#}");
    assert_healthy_run(&v);
}
