//! A testnet directory as the commands see it: the manifest, the mode it runs in, and how to
//! reach each node.

use crate::http::Endpoint;
use crate::procs;
use crate::topology::{NodeSpec, Topology};
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Net {
    pub root: PathBuf,
    pub topo: Topology,
    pub netns: bool,
}

impl Net {
    /// Open `dir`; the mode is the running network's, else `netns`.
    pub fn open(dir: &Path, netns: bool) -> anyhow::Result<Net> {
        let root = std::fs::canonicalize(dir)
            .with_context(|| format!("no testnet directory {}", dir.display()))?;
        let topo = Topology::load(&root)?;
        let netns = procs::read_state(&root).map_or(netns, |s| s.netns);
        Ok(Net { root, topo, netns })
    }

    pub fn endpoint(&self, n: &NodeSpec) -> Endpoint {
        Endpoint {
            addr: n.api(self.netns),
            netns: self.netns.then(|| n.netns()),
        }
    }

    pub fn pid(&self, n: &NodeSpec) -> Option<i32> {
        procs::node_pid(&self.root, n)
    }

    /// Live pids of every node.
    pub fn pids(&self) -> Vec<i32> {
        self.topo.nodes.iter().filter_map(|n| self.pid(n)).collect()
    }

    pub fn is_running(&self) -> bool {
        procs::running(&self.root, &self.topo.nodes).is_some()
    }

    /// Fail with a hint when nothing runs here.
    pub fn require_running(&self) -> anyhow::Result<()> {
        if !self.is_running() {
            anyhow::bail!(
                "no testnet is running in {}: start one with `lcbft-testnet up {}`",
                self.root.display(),
                self.root.display()
            );
        }
        Ok(())
    }
}
