//! The launcher in network namespaces (root only): mDNS discovery across bridges, a 2|2
//! global partition, an edge cut off its LAN. Skipped, loudly, without root or iproute2.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_healthy_run, chaos, json, netns_unavailable, serial, skip, testnet};
use std::time::Duration;

#[test]
fn up_netns_discovers_by_mdns_and_commits_both_layers() {
    let _g = serial();
    if let Some(why) = netns_unavailable() {
        return skip("up_netns_discovers_by_mdns_and_commits_both_layers", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let o = testnet(
        &[
            "up",
            net.to_str().unwrap(),
            "--netns",
            "--duration",
            "60",
            "--load",
            "100",
            "--json",
        ],
        Duration::from_secs(180),
    );
    let v = json(&o);
    eprintln!("{v:#}");
    assert!(o.status.success(), "{v:#}");
    assert_eq!(v["mode"], "netns");
    assert_healthy_run(&v);
    // Torn down: no namespace of ours is left.
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains("lcbft-"), "left behind: {list}");
}

#[test]
fn chaos_partition_global_heals() {
    let _g = serial();
    if let Some(why) = netns_unavailable() {
        return skip("chaos_partition_global_heals", &why);
    }
    chaos("partition-global", &["--netns"], Duration::from_secs(180));
}

#[test]
fn chaos_isolate_edge_devices_go_on_and_edge_catches_up() {
    let _g = serial();
    if let Some(why) = netns_unavailable() {
        return skip("chaos_isolate_edge_devices_go_on_and_edge_catches_up", &why);
    }
    chaos("isolate-edge", &["--netns"], Duration::from_secs(180));
}
