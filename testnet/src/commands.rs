//! The small subcommands: init, bundle, down, load, check.

use crate::check;
use crate::load::Load;
use crate::net::Net;
use crate::topology::Shape;
use crate::{netns, procs};
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub fn init(
    out: PathBuf,
    global: usize,
    domains: usize,
    devices: usize,
    base_port: Option<u16>,
    opts: crate::init::GenesisOptions,
) -> anyhow::Result<bool> {
    let shape = Shape {
        global,
        domains,
        devices,
    };
    let topo = crate::init::init_with(&out, shape, base_port, opts)?;
    println!(
        "wrote a testnet of {} nodes to {}: start it with `lcbft-testnet up {}`",
        topo.nodes.len(),
        out.display(),
        out.display()
    );
    Ok(true)
}

pub fn bundle(hosts: &Path, out: &Path, opts: crate::init::GenesisOptions) -> anyhow::Result<bool> {
    let topo = crate::bundle::bundle(hosts, out, opts)?;
    println!(
        "wrote {} host bundles to {}/nodes/: copy each to its host (deploy/RASPBERRY-PI.md); \
         {}/genesis/ holds every key share: keep it offline",
        topo.nodes.len(),
        out.display(),
        out.display()
    );
    Ok(true)
}

pub fn down(dir: &Path) -> anyhow::Result<bool> {
    let net = Net::open(dir, false)?;
    if let Some(s) = procs::read_state(&net.root)
        && procs::alive(s.launcher_pid)
        && s.launcher_pid != std::process::id() as i32
    {
        // The launcher stops its nodes and namespaces itself.
        procs::signal(s.launcher_pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while procs::alive(s.launcher_pid) && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let pids = net.pids();
    procs::stop_all(&pids, Duration::from_secs(5));
    if net.netns || netns::live_owner().is_some_and(|(_, d)| Path::new(&d) == net.root) {
        netns::destroy_all()?;
    }
    procs::clear_state(&net.root);
    println!("stopped the testnet in {}", net.root.display());
    Ok(true)
}

pub fn load(dir: &Path, rate: f64, duration: u64) -> anyhow::Result<bool> {
    if !(rate > 0.0 && rate <= 100_000.0) {
        bail!("--rate {rate}: give traces per second, above 0 and at most 100000");
    }
    let net = Net::open(dir, false)?;
    net.require_running()?;
    let before = check::run(&net, None);
    let l = Load::start(&net, rate)?;
    let started = l.started;
    std::thread::sleep(Duration::from_secs(duration));
    let stats = l.stop();
    let seconds = started.elapsed().as_secs_f64();
    // Give the last traces time to commit.
    std::thread::sleep(Duration::from_secs(4));
    let after = check::run(&net, None);
    let ids = stats.accepted_ids();
    let committed = after.committed(&ids);
    let blocks: u64 = after
        .heights
        .iter()
        .map(|(d, h)| h.saturating_sub(before.heights.get(d).copied().unwrap_or(0)))
        .sum();
    let v = serde_json::json!({
        "seconds": (seconds * 10.0).round() / 10.0,
        "rate_asked": rate,
        "submitted": stats.submitted.load(Ordering::Relaxed),
        "accepted": stats.accepted.load(Ordering::Relaxed),
        "refused": stats.refused.load(Ordering::Relaxed),
        "unreachable": stats.unreachable.load(Ordering::Relaxed),
        "committed": committed,
        "committed_per_s": committed as f64 / seconds,
        "blocks_committed": blocks,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(committed > 0)
}

pub fn check(dir: &Path, json: bool) -> anyhow::Result<bool> {
    let net = Net::open(dir, false)?;
    net.require_running()?;
    let bin = procs::lcbft_bin().ok();
    let report = check::run(&net, bin.as_deref());
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["safety"] = report.safety().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (d, h) in &report.heights {
            println!("{d}: {h} blocks, checked on every member that answered");
        }
        println!("proofs verified offline: {}", report.proofs_verified);
        for n in &report.notes {
            println!("note: {n}");
        }
        for p in &report.problems {
            println!("PROBLEM: {p}");
        }
        println!("safety: {}", report.safety());
    }
    Ok(report.problems.is_empty())
}
