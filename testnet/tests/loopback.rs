//! The launcher on loopback (no root needed): init, up under load, and the chaos scenarios
//! that need no links cut.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_healthy_run, chaos, chaos_in, json, serial, testnet};
use std::time::Duration;

#[test]
fn init_writes_manifest_configs_and_monitoring() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let o = testnet(
        &["init", "--out", out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(o.status.success());
    let topo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("topology.json")).unwrap()).unwrap();
    let nodes = topo["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 10);
    assert!(out.join("genesis/genesis.toml").is_file());
    for n in nodes {
        let name = n["name"].as_str().unwrap();
        for f in ["node.key", "node.toml", "node-netns.toml"] {
            assert!(out.join("nodes").join(name).join(f).is_file(), "{name}/{f}");
        }
    }
    // Device configs in netns mode name no peers: mDNS finds them.
    let dev = std::fs::read_to_string(out.join("nodes/dev1-1/node-netns.toml")).unwrap();
    assert!(
        dev.contains("peers = []") && dev.contains("mdns = true"),
        "{dev}"
    );
    let prom = std::fs::read_to_string(out.join("prometheus.yml")).unwrap();
    assert_eq!(prom.matches("targets:").count(), 10, "{prom}");
    assert!(prom.contains("node: \"edge1\", role: \"edge\""), "{prom}");

    // Again into the same directory: refused, nothing overwritten.
    let o = testnet(
        &["init", "--out", out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(!o.status.success());
    // Bad shapes and commands on a directory that runs nothing fail with a clear message.
    let o = testnet(
        &[
            "init",
            "--global",
            "1",
            "--out",
            dir.path().join("x").to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(!o.status.success());
    let o = testnet(&["status", out.to_str().unwrap()], Duration::from_secs(30));
    assert!(!o.status.success());
}

#[test]
fn up_under_load_commits_both_layers_safely() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let o = testnet(
        &[
            "up",
            net.to_str().unwrap(),
            "--duration",
            "45",
            "--load",
            "200",
            "--json",
        ],
        Duration::from_secs(150),
    );
    let v = json(&o);
    eprintln!("{v:#}");
    assert!(o.status.success(), "{v:#}");
    assert_healthy_run(&v);
    // Stopped cleanly: nothing left running.
    assert!(!net.join("run").exists());
}

#[test]
fn chaos_kill_leader_elects_another_and_commits_resume() {
    let _g = serial();
    chaos("kill-leader", &[], Duration::from_secs(150));
}

#[test]
fn chaos_kill_restart_keeps_every_chain_safe() {
    let _g = serial();
    let args = ["--rounds", "3", "--seed", "7"];
    chaos("kill-restart", &args, Duration::from_secs(180));
}

/// Every node stopped at once, cleanly and then with kill -9, and started again: every domain
/// commits a trace submitted after the restart within 30 s, and every local block is
/// anchored (the scenario's own verdict), with no fork (the check).
#[test]
fn chaos_restart_all_by_sigterm_and_by_sigkill_commits_again() {
    let _g = serial();
    for signal in ["term", "kill"] {
        chaos(
            "restart-all",
            &["--signal", signal],
            Duration::from_secs(150),
        );
    }
}

/// A site's power cut: local/1 and its edge die at once and come back.
#[test]
fn chaos_power_loss_of_a_site_commits_again() {
    let _g = serial();
    chaos("power-loss", &[], Duration::from_secs(150));
}

/// One directory started five times: each run commits in every layer and anchors every
/// local block (a restarted network once never committed on the global chain again).
#[test]
fn the_same_directory_runs_five_times() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let net = net.to_str().unwrap();
    let mut last_global = 0;
    for run in 1..=5 {
        let o = testnet(
            &["up", net, "--duration", "12", "--load", "100", "--json"],
            Duration::from_secs(120),
        );
        let v = json(&o);
        assert!(o.status.success(), "run {run}: {v:#}");
        assert_healthy_run(&v);
        let global = v["global"]["height_max"].as_u64().unwrap();
        assert!(global > last_global, "run {run}: global stuck at {global}");
        last_global = global;
        for (domain, d) in v["local"]["domains"].as_object().unwrap() {
            assert!(
                d["commits"].as_u64().unwrap() > 0,
                "run {run}: {domain}: {v:#}"
            );
            assert_eq!(
                v["anchored"][domain], d["height_max"],
                "run {run}: {domain} is not anchored to its top: {v:#}"
            );
        }
    }
}

/// A device down while its domain commits past twice its window catches up by state transfer,
/// then completes a quorum with its vote; `check` finds no fork. The window and the pacing
/// are shrunk in every node.toml so the domain gets there in seconds.
#[test]
fn chaos_a_device_down_past_twice_its_window_catches_up_by_state_transfer() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let o = testnet(
        &["init", "--out", net.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "init failed");
    let mut edited = 0;
    for node in std::fs::read_dir(net.join("nodes")).unwrap() {
        let path = node.unwrap().path().join("node.toml");
        let mut cfg: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let consensus = cfg
            .entry("consensus")
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .unwrap();
        consensus.insert("local_window".into(), 8.into());
        consensus.insert("propose_delay".into(), "0ms".into());
        consensus.insert("min_block_interval".into(), "0ms".into());
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        edited += 1;
    }
    assert_eq!(edited, 10);
    chaos_in(&net, "long-down", &[], Duration::from_secs(240));
}

#[test]
fn link_scenarios_refuse_loopback_mode() {
    let _g = serial();
    let o = testnet(
        &["chaos", "--scenario", "partition-global"],
        Duration::from_secs(30),
    );
    assert!(!o.status.success());
}

/// The crash campaign (issue 11): ten kill -9 rounds of leaders, edges and any node at random
/// instants under load. No two nodes may commit different blocks at one height, no restarted
/// node may come back without a block it had committed, and no node may see two valid votes
/// from one signer in one view.
#[test]
fn chaos_kill9_ten_rounds_no_fork_no_loss_no_double_vote() {
    let _g = serial();
    let v = chaos(
        "kill9",
        &["--rounds", "10", "--seed", "3"],
        Duration::from_secs(240),
    );
    let k = &v["kill9"];
    assert_eq!(k["rounds"], 10, "{v:#}");
    assert_eq!(k["conflicting_commits"], 0, "{v:#}");
    assert_eq!(k["lost_committed_blocks"], 0, "{v:#}");
    assert_eq!(k["double_votes"], 0, "{v:#}");
    let picked: Vec<&str> = k["detail"]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["picked_as"].as_str().unwrap())
        .collect();
    assert!(
        picked.iter().any(|p| p.starts_with("leader of")),
        "{picked:?}"
    );
    assert!(picked.contains(&"edge"), "{picked:?}");
    assert!(k["catch_up_ms"]["p99"].as_u64().is_some(), "{v:#}");
}
