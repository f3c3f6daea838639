//! The testnet manifest (`topology.json`): which nodes exist, their roles and domains, and
//! where each one listens in either mode. `init` writes it; every other command reads it, so
//! nothing else has to re-derive ports or namespace names.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "topology.json";
const VERSION: u32 = 1;
/// Every namespace this tool creates starts with this, so leftovers can be found by name.
pub const NS_PREFIX: &str = "lcbft-";
/// The namespace holding the bridges (the "switches" of the LANs).
pub const LAN_NS: &str = "lcbft-lan";
/// libp2p and API ports inside a node's namespace (each namespace has its own ports).
pub const NETNS_P2P_PORT: u16 = 7600;
pub const NETNS_API_PORT: u16 = 7700;

/// The node's own role type: the manifest and the genesis name roles one way.
pub use lcbft_node::genesis::Role;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeSpec {
    /// `cloud1`, `edge2`, `dev1-3`: also the node's directory under `nodes/`.
    pub name: String,
    /// Position in `nodes` (names the node's veth ports in netns mode).
    pub number: usize,
    pub role: Role,
    pub peer_id: String,
    /// Member of the global domain (clouds and edges).
    pub global: bool,
    /// The local domain it belongs to (edges and devices).
    pub local: Option<u32>,
    /// Loopback mode: libp2p and API ports on 127.0.0.1.
    pub p2p_port: u16,
    pub api_port: u16,
    /// Netns mode: its address on the global LAN and on its local LAN.
    pub global_ip: Option<Ipv4Addr>,
    pub local_ip: Option<Ipv4Addr>,
    /// Set for a host of a `bundle`: its LAN address, where its libp2p and API ports listen
    /// (`init` networks listen on 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
}

impl NodeSpec {
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join("nodes").join(&self.name)
    }

    pub fn netns(&self) -> String {
        format!("{NS_PREFIX}{}", self.name)
    }

    /// The domains it is a member of, as the node's API names them.
    pub fn domains(&self) -> Vec<String> {
        let mut d = Vec::new();
        if self.global {
            d.push("global".to_owned());
        }
        if let Some(l) = self.local {
            d.push(format!("local/{l}"));
        }
        d
    }

    pub fn in_domain(&self, domain: &str) -> bool {
        self.domains().iter().any(|d| d == domain)
    }

    pub fn api(&self, netns: bool) -> SocketAddr {
        if netns {
            SocketAddr::from(([127, 0, 0, 1], NETNS_API_PORT))
        } else {
            SocketAddr::from((self.ip(), self.api_port))
        }
    }

    /// Where its ports listen outside netns mode.
    pub fn ip(&self) -> Ipv4Addr {
        self.address.unwrap_or(Ipv4Addr::LOCALHOST)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Topology {
    pub version: u32,
    /// Local domain ids, in order.
    pub domains: Vec<u32>,
    pub nodes: Vec<NodeSpec>,
}

/// What `init` was asked for.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Global validators, edges included.
    pub global: usize,
    /// Local domains (each has one edge).
    pub domains: usize,
    /// Devices per local domain.
    pub devices: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            global: 4,
            domains: 2,
            devices: 3,
        }
    }
}

impl Shape {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.domains > 250 {
            bail!("--domains {}: at most 250 local domains", self.domains);
        }
        if self.global < self.domains {
            bail!(
                "--global {} is fewer than --domains {}: every local domain's edge is a global validator",
                self.global,
                self.domains
            );
        }
        if self.global == 0 {
            bail!("--global must be at least 1");
        }
        if self.global > 200 || self.devices > 200 {
            bail!("--global and --devices are at most 200 each");
        }
        if self.domains > 0 && self.devices == 0 {
            bail!("--devices must be at least 1 when there are local domains");
        }
        Ok(())
    }
}

/// Names, roles, domains and netns addresses for a shape; PeerIds and ports come later.
pub fn layout(shape: Shape) -> Vec<NodeSpec> {
    let mut nodes = Vec::new();
    let clouds = shape.global - shape.domains;
    let mut push = |name: String, role: Role, global: bool, local: Option<u32>| {
        let number = nodes.len();
        nodes.push(NodeSpec {
            name,
            number,
            role,
            peer_id: String::new(),
            global,
            local,
            p2p_port: 0,
            api_port: 0,
            global_ip: None,
            local_ip: None,
            address: None,
        });
    };
    for c in 1..=clouds {
        push(format!("cloud{c}"), Role::Cloud, true, None);
    }
    for d in 1..=shape.domains as u32 {
        push(format!("edge{d}"), Role::Edge, true, Some(d));
    }
    for d in 1..=shape.domains as u32 {
        for k in 1..=shape.devices {
            push(format!("dev{d}-{k}"), Role::Device, false, Some(d));
        }
    }
    // Netns addresses: the global LAN is 10.77.0.0/24, local domain d is 10.77.d.0/24; the
    // edge is .1 on its local LAN.
    let mut global_host = 1u8;
    let mut local_host = std::collections::BTreeMap::<u32, u8>::new();
    for n in &mut nodes {
        if n.global {
            n.global_ip = Some(Ipv4Addr::new(10, 77, 0, global_host));
            global_host = global_host.saturating_add(1);
        }
        if let Some(d) = n.local {
            let h = local_host.entry(d).or_insert(1);
            n.local_ip = Some(Ipv4Addr::new(10, 77, d as u8, *h));
            *h = h.saturating_add(1);
        }
    }
    nodes
}

impl Topology {
    pub fn load(dir: &Path) -> anyhow::Result<Topology> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a testnet directory? create one with `lcbft-testnet init --out {}`",
                path.display(),
                dir.display(),
                dir.display()
            )
        })?;
        let t: Topology = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        if t.version != VERSION {
            bail!(
                "{} has version {}, this lcbft-testnet reads {VERSION}: re-create it with `lcbft-testnet init`",
                path.display(),
                t.version
            );
        }
        Ok(t)
    }

    pub fn new(domains: Vec<u32>, nodes: Vec<NodeSpec>) -> Topology {
        Topology {
            version: VERSION,
            domains,
            nodes,
        }
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn node(&self, name: &str) -> anyhow::Result<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name).with_context(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            format!(
                "no node `{name}` in this testnet (nodes: {})",
                names.join(", ")
            )
        })
    }

    /// `global`, then `local/1`, ...
    pub fn domain_names(&self) -> Vec<String> {
        let mut d = vec!["global".to_owned()];
        d.extend(self.domains.iter().map(|l| format!("local/{l}")));
        d
    }

    pub fn members(&self, domain: &str) -> Vec<&NodeSpec> {
        self.nodes.iter().filter(|n| n.in_domain(domain)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_two_clouds_two_edges_and_three_devices_each() {
        let nodes = layout(Shape::default());
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cloud1", "cloud2", "edge1", "edge2", "dev1-1", "dev1-2", "dev1-3", "dev2-1",
                "dev2-2", "dev2-3"
            ]
        );
        assert_eq!(nodes.iter().filter(|n| n.global).count(), 4);
        let edge1 = &nodes[2];
        assert_eq!(edge1.domains(), ["global", "local/1"]);
        assert_eq!(edge1.global_ip, Some(Ipv4Addr::new(10, 77, 0, 3)));
        assert_eq!(edge1.local_ip, Some(Ipv4Addr::new(10, 77, 1, 1)));
        assert_eq!(nodes[9].local_ip, Some(Ipv4Addr::new(10, 77, 2, 4)));
        assert!(nodes[9].global_ip.is_none());
    }

    #[test]
    fn bad_shapes_are_refused_with_the_flag_named() {
        let bad = Shape {
            global: 1,
            domains: 2,
            devices: 3,
        };
        assert!(bad.validate().unwrap_err().to_string().contains("--global"));
        let bad = Shape {
            devices: 0,
            ..Shape::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--devices")
        );
        assert!(Shape::default().validate().is_ok());
    }
}
