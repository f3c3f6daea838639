//! A running testnet that this process controls: it starts the nodes (after the namespaces in
//! netns mode), restarts and kills them on request, and tears everything down at the end,
//! also when an error or a panic unwinds through it.

use crate::emulate::Emulated;
use crate::net::Net;
use crate::observe::Snapshot;
use crate::topology::{Shape, Topology};
use crate::{init, netns, procs};
use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const GRACE: Duration = Duration::from_secs(5);

pub struct Session {
    pub net: Net,
    pub bin: PathBuf,
    /// Nodes run under qemu instead of `bin`.
    pub emulated: BTreeMap<String, Emulated>,
    children: HashMap<String, Child>,
    /// This process started the network, so it stops it.
    owns: bool,
    done: bool,
}

/// A fresh directory for a testnet nobody named.
pub fn fresh_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("lcbft-testnet-{secs}-{}", std::process::id()))
}

/// The testnet in `dir`, created with the default shape when `dir` holds none.
pub fn open_or_init(dir: &Path, netns: bool) -> anyhow::Result<Net> {
    if !dir.join(crate::topology::MANIFEST).exists() {
        init::init(dir, Shape::default(), None)?;
        eprintln!("initialised a default testnet in {}", dir.display());
    }
    Net::open(dir, netns)
}

/// Stop what a crashed earlier run left in `net`'s directory.
fn clear_leftovers(net: &Net) {
    let pids = net.pids();
    if !pids.is_empty() {
        eprintln!(
            "stopping {} node(s) left over from an earlier run",
            pids.len()
        );
        procs::stop_all(&pids, GRACE);
    }
    procs::clear_state(&net.root);
}

impl Session {
    /// Start every node of `net` (in its namespace with `netns`).
    pub fn start(net: Net, netns_mode: bool, bin: PathBuf) -> anyhow::Result<Session> {
        Session::start_emulating(net, netns_mode, bin, BTreeMap::new())
    }

    /// [`Session::start`] with some nodes under emulation.
    pub fn start_emulating(
        mut net: Net,
        netns_mode: bool,
        bin: PathBuf,
        emulated: BTreeMap<String, Emulated>,
    ) -> anyhow::Result<Session> {
        if let Some(s) = procs::running(&net.root, &net.topo.nodes) {
            bail!(
                "a testnet is already running in {} (launcher pid {}): stop it with `lcbft-testnet down {}`",
                net.root.display(),
                s.launcher_pid,
                net.root.display()
            );
        }
        clear_leftovers(&net);
        net.netns = netns_mode;
        if netns_mode {
            netns::preflight()?;
            netns::claim(&net.root)?;
            netns::destroy_all()?;
            netns::create(&net.topo).context("cannot set up the network namespaces")?;
        } else {
            check_ports_free(&net.topo)?;
        }
        procs::write_state(
            &net.root,
            &procs::RunState {
                launcher_pid: std::process::id() as i32,
                netns: netns_mode,
                emulated: emulated.clone(),
            },
        )?;
        let mut s = Session {
            net,
            bin,
            emulated,
            children: HashMap::new(),
            owns: true,
            done: false,
        };
        let names: Vec<String> = s.net.topo.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            s.restart(&name)?;
        }
        Ok(s)
    }

    /// Act on a network another `lcbft-testnet` process runs (it keeps ownership).
    pub fn attach(net: Net, bin: PathBuf) -> Session {
        let emulated = procs::read_state(&net.root)
            .map(|s| s.emulated)
            .unwrap_or_default();
        Session {
            net,
            bin,
            emulated,
            children: HashMap::new(),
            owns: false,
            done: false,
        }
    }

    /// Start the node (again); a live instance is left alone.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let n = self.net.topo.node(name)?.clone();
        if self.net.pid(&n).is_some() {
            return Ok(());
        }
        let child = procs::spawn_node(
            &self.net.root,
            &self.bin,
            &n,
            self.net.netns,
            self.emulated.get(name),
        )?;
        self.children.insert(n.name.clone(), child);
        Ok(())
    }

    /// Signal the node; with SIGKILL, wait until it is gone.
    pub fn kill(&mut self, name: &str, sig: Signal) -> anyhow::Result<()> {
        let n = self.net.topo.node(name)?.clone();
        let Some(pid) = self.net.pid(&n) else {
            bail!("{name} is not running");
        };
        procs::signal(pid, sig);
        if let Some(mut c) = self.children.remove(name) {
            if sig == Signal::SIGKILL {
                let _ = c.wait();
            } else {
                self.children.insert(name.to_owned(), c);
            }
        }
        let start = Instant::now();
        while sig == Signal::SIGKILL && procs::alive(pid) && start.elapsed() < GRACE {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Signal every named node at one instant, then wait until all are gone. Returns those
    /// still alive after the grace period, which are then killed.
    pub fn stop_at_once(&mut self, names: &[String], sig: Signal) -> anyhow::Result<Vec<String>> {
        let mut pids = Vec::new();
        for name in names {
            let n = self.net.topo.node(name)?.clone();
            let Some(pid) = self.net.pid(&n) else {
                bail!("{name} is not running");
            };
            pids.push((name.clone(), pid));
        }
        for (_, pid) in &pids {
            procs::signal(*pid, sig);
        }
        let start = Instant::now();
        let mut forced = Vec::new();
        for (name, pid) in pids {
            loop {
                let gone = match self.children.get_mut(&name) {
                    Some(c) => !matches!(c.try_wait(), Ok(None)),
                    None => !procs::alive(pid),
                };
                if gone {
                    break;
                }
                if start.elapsed() > GRACE {
                    procs::signal(pid, Signal::SIGKILL);
                    forced.push(name.clone());
                    if let Some(c) = self.children.get_mut(&name) {
                        let _ = c.wait();
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.children.remove(&name);
        }
        Ok(forced)
    }

    /// Collect children that exited: (node, how).
    pub fn reap(&mut self) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        self.children.retain(|name, c| match c.try_wait() {
            Ok(Some(st)) => {
                gone.push((name.clone(), st.to_string()));
                false
            }
            _ => true,
        });
        gone
    }

    /// Wait until every node answers and every domain member is connected to every other.
    pub fn wait_ready(&self, limit: Duration, stop: &AtomicBool) -> Option<Snapshot> {
        let start = Instant::now();
        while start.elapsed() < limit && !stop.load(Ordering::Relaxed) {
            let snap = Snapshot::take(&self.net, false);
            let (have, want) = snap.links(&self.net);
            if snap.up() == self.net.topo.nodes.len() && have >= want {
                return Some(snap);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }

    /// Stop every node (SIGTERM, SIGKILL after a grace), remove namespaces and run state.
    pub fn shutdown(&mut self) {
        if self.done || !self.owns {
            self.done = true;
            return;
        }
        self.done = true;
        let pids = self.net.pids();
        procs::stop_all(&pids, GRACE);
        for c in self.children.values_mut() {
            let _ = c.wait();
        }
        if self.net.netns
            && let Err(e) = netns::destroy_all()
        {
            eprintln!("warning: cannot remove the network namespaces: {e:#}");
        }
        procs::clear_state(&self.net.root);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Loopback ports are fixed at init: say which one is taken instead of letting a node die.
fn check_ports_free(topo: &Topology) -> anyhow::Result<()> {
    for n in &topo.nodes {
        for port in [n.p2p_port, n.api_port] {
            if std::net::TcpListener::bind((n.ip(), port)).is_err() {
                bail!(
                    "port {}:{port} of node {} is in use or not an address of this machine: is another testnet or program using it? stop it, or `init` a new directory (it picks free ports)",
                    n.ip(),
                    n.name
                );
            }
        }
    }
    Ok(())
}
