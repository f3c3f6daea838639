//! Network namespaces for `--netns` mode, made with `ip` (iproute2).
//!
//! Layout: every node runs in its own namespace `lcbft-<node>`. The LANs are Linux bridges
//! inside one more namespace, `lcbft-lan`: `brg` for the global domain and `brl<d>` for local
//! domain d. A node gets one veth per LAN it is on (`eth-g`, `eth-l` on its side, `n<k>g`,
//! `n<k>l` on the bridge side), so an edge has two. Nothing is created in the host's own
//! namespace, so the host network is never touched. Each node's API listens on 127.0.0.1
//! inside its namespace; the launcher reaches it from a thread that `setns`es into it.

use crate::topology::{LAN_NS, NS_PREFIX, NodeSpec, Topology};
use anyhow::{Context, bail};
use std::cell::RefCell;
use std::process::Command;

/// Records which launcher owns the namespaces, so a second run neither tears down a live
/// one nor trips over the leftovers of a crashed one.
const LOCK: &str = "/run/lcbft-testnet-netns.json";

thread_local! {
    static CURRENT: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub fn is_current(ns: &str) -> bool {
    CURRENT.with(|c| c.borrow().as_deref() == Some(ns))
}

/// Move the calling thread into namespace `ns` (for the sockets it opens from now on).
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{ns}");
    let f = std::fs::File::open(&path).with_context(|| format!("no network namespace {ns}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter network namespace {ns}"))?;
    CURRENT.with(|c| *c.borrow_mut() = Some(ns.to_owned()));
    Ok(())
}

/// Root and iproute2 are needed; say so plainly otherwise.
pub fn preflight() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "--netns needs root: it creates network namespaces, bridges and veth links (run it as root, e.g. with sudo); without --netns the testnet runs on loopback and needs no root"
        );
    }
    let ok = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!("--netns needs the `ip` command from iproute2 (apt-get install iproute2)");
    }
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Our namespaces that exist now.
pub fn ours() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NS_PREFIX))
        .map(str::to_owned)
        .collect()
}

fn pids_in(ns: &str) -> Vec<i32> {
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The pid and directory of the launcher that owns the namespaces, if it is alive.
pub fn live_owner() -> Option<(i32, String)> {
    let text = std::fs::read_to_string(LOCK).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pid = i32::try_from(v["pid"].as_i64()?).ok()?;
    let dir = v["dir"].as_str()?.to_owned();
    crate::procs::alive(pid).then_some((pid, dir))
}

pub fn claim(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Some((pid, owner)) = live_owner()
        && pid != std::process::id() as i32
    {
        bail!(
            "a netns testnet is already running (launcher pid {pid}, directory {owner}): stop it first with `lcbft-testnet down {owner}`"
        );
    }
    let text = serde_json::json!({ "pid": std::process::id(), "dir": dir.display().to_string() });
    std::fs::write(LOCK, text.to_string()).with_context(|| format!("cannot write {LOCK}"))
}

/// Remove every `lcbft-*` namespace, killing what still runs in them (leftovers of a run that
/// crashed, or of this one).
pub fn destroy_all() -> anyhow::Result<()> {
    for ns in ours() {
        for pid in pids_in(&ns) {
            crate::procs::signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        ip(&["netns", "del", &ns])?;
    }
    if live_owner().is_none_or(|(pid, _)| pid == std::process::id() as i32) {
        let _ = std::fs::remove_file(LOCK);
    }
    Ok(())
}

fn port(n: &NodeSpec, lan: char) -> String {
    format!("n{}{lan}", n.number)
}

/// Create namespaces, bridges, links and addresses for `topo`.
pub fn create(topo: &Topology) -> anyhow::Result<()> {
    ip(&["netns", "add", LAN_NS])?;
    ip(&["-n", LAN_NS, "link", "set", "lo", "up"])?;
    let mut bridges = vec!["brg".to_owned()];
    bridges.extend(topo.domains.iter().map(|d| format!("brl{d}")));
    for br in &bridges {
        bridge(br)?;
    }
    for n in &topo.nodes {
        let ns = n.netns();
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let lans = [
            (n.global_ip, 'g', "brg".to_owned(), "eth-g"),
            (
                n.local_ip,
                'l',
                n.local.map(|d| format!("brl{d}")).unwrap_or_default(),
                "eth-l",
            ),
        ];
        for (addr, tag, br, inner) in lans {
            let Some(addr) = addr else { continue };
            let outer = port(n, tag);
            ip(&[
                "-n", LAN_NS, "link", "add", &outer, "type", "veth", "peer", "name", inner,
                "netns", &ns,
            ])?;
            ip(&["-n", LAN_NS, "link", "set", &outer, "master", &br, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                inner,
            ])?;
            ip(&["-n", &ns, "link", "set", inner, "up"])?;
        }
    }
    Ok(())
}

/// A bridge that floods multicast (mDNS) to every port without IGMP snooping.
fn bridge(name: &str) -> anyhow::Result<()> {
    ip(&[
        "-n",
        LAN_NS,
        "link",
        "add",
        name,
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    ip(&["-n", LAN_NS, "link", "set", name, "up"])?;
    Ok(())
}

/// Split the global LAN: `side` moves to a second bridge, so the halves cannot talk.
pub fn split_global(side: &[&NodeSpec]) -> anyhow::Result<()> {
    bridge("brg2")?;
    for n in side {
        ip(&["-n", LAN_NS, "link", "set", &port(n, 'g'), "master", "brg2"])?;
    }
    Ok(())
}

pub fn heal_global(side: &[&NodeSpec]) -> anyhow::Result<()> {
    for n in side {
        ip(&["-n", LAN_NS, "link", "set", &port(n, 'g'), "master", "brg"])?;
    }
    ip(&["-n", LAN_NS, "link", "del", "brg2"])?;
    Ok(())
}

/// Unplug (or plug back) a node's cable to its local LAN.
pub fn set_local_link(n: &NodeSpec, up: bool) -> anyhow::Result<()> {
    let state = if up { "up" } else { "down" };
    ip(&["-n", LAN_NS, "link", "set", &port(n, 'l'), state])?;
    Ok(())
}
