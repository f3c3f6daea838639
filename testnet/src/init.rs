//! `init`: identities, genesis, one config per node and mode, the Prometheus scrape config,
//! the dashboards, and the manifest.

use crate::assets;
use crate::topology::{NETNS_API_PORT, NETNS_P2P_PORT, NodeSpec, Role, Shape, Topology, layout};
use anyhow::{Context, bail};
use lcbft_node::config::Config;
use lcbft_node::genesis::PayloadKind;
use lcbft_node::{genesis, identity};
use lcbft_protocol::crypto::SchemeId;
use libp2p::{Multiaddr, PeerId};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub const GENESIS_DIR: &str = "genesis";
pub const PRODUCER_KEY: &str = "producer.key";
pub const LOOPBACK_CONFIG: &str = "node.toml";
pub const NETNS_CONFIG: &str = "node-netns.toml";

pub fn genesis_file(root: &Path) -> PathBuf {
    root.join(GENESIS_DIR).join("genesis.toml")
}

/// What the genesis is dealt with: the threshold scheme and what blocks carry.
#[derive(Clone, Copy, Debug)]
pub struct GenesisOptions {
    pub scheme: SchemeId,
    pub payload: PayloadKind,
}

impl Default for GenesisOptions {
    fn default() -> Self {
        GenesisOptions {
            scheme: SchemeId::ThresholdCrypto,
            payload: PayloadKind::Traces,
        }
    }
}

/// Write a complete testnet under `out` (which must not hold one yet).
pub fn init(out: &Path, shape: Shape, base_port: Option<u16>) -> anyhow::Result<Topology> {
    init_with(out, shape, base_port, GenesisOptions::default())
}

/// [`init`] with a chosen scheme and payload kind.
pub fn init_with(
    out: &Path,
    shape: Shape,
    base_port: Option<u16>,
    opts: GenesisOptions,
) -> anyhow::Result<Topology> {
    shape.validate()?;
    if out.join(crate::topology::MANIFEST).exists() {
        bail!(
            "{} already holds a testnet: use it (`lcbft-testnet up {}`) or pick another --out",
            out.display(),
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut nodes = layout(shape);
    let ports = free_ports(2 * nodes.len(), base_port)?;
    for (i, n) in nodes.iter_mut().enumerate() {
        n.p2p_port = ports[2 * i];
        n.api_port = ports[2 * i + 1];
    }
    let domains: Vec<u32> = (1..=shape.domains as u32).collect();
    let topo = deal(out, nodes, domains, opts)?;
    for n in &topo.nodes {
        let dir = n.dir(out);
        write_file(
            &dir.join(LOOPBACK_CONFIG),
            &loopback_config(&topo, n)?.to_toml(),
        )?;
        write_file(&dir.join(NETNS_CONFIG), &netns_config(&topo, n)?.to_toml())?;
    }
    write_file(&out.join("prometheus.yml"), &assets::prometheus_yml(&topo))?;
    assets::copy_dashboards(out)?;
    topo.save(out)?;
    Ok(topo)
}

/// Give every node a directory and an identity (`nodes/<name>/node.key`), write the producer
/// key and deal the genesis with its key shares (`genesis/`). `init` and `bundle` both make
/// their networks with this.
pub fn deal(
    out: &Path,
    mut nodes: Vec<NodeSpec>,
    domains: Vec<u32>,
    opts: GenesisOptions,
) -> anyhow::Result<Topology> {
    for n in &mut nodes {
        let dir = n.dir(out);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let kp = identity::generate(&dir.join("node.key"))?;
        n.peer_id = identity::peer_id(&kp).to_string();
    }
    identity::generate(&out.join(PRODUCER_KEY))?;
    write_genesis(out, &nodes, &domains, opts)?;
    Ok(Topology::new(domains, nodes))
}

pub(crate) fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub(crate) fn peer(n: &NodeSpec) -> anyhow::Result<PeerId> {
    PeerId::from_str(&n.peer_id).with_context(|| format!("bad PeerId for {}", n.name))
}

fn write_genesis(
    out: &Path,
    nodes: &[NodeSpec],
    domains: &[u32],
    opts: GenesisOptions,
) -> anyhow::Result<()> {
    let global = nodes
        .iter()
        .filter(|n| n.global)
        .map(peer)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut locals = Vec::new();
    for &d in domains {
        let members: Vec<&NodeSpec> = nodes.iter().filter(|n| n.local == Some(d)).collect();
        let edge = members
            .iter()
            .find(|n| n.role == Role::Edge)
            .context("a local domain without an edge")?;
        let devices = members
            .iter()
            .filter(|n| n.role == Role::Device)
            .map(|n| peer(n))
            .collect::<anyhow::Result<Vec<_>>>()?;
        locals.push((d, peer(edge)?, devices));
    }
    let req = genesis::Request {
        scheme: opts.scheme,
        payload: opts.payload,
        global,
        locals,
    };
    let (g, secrets) = genesis::deal(&req)?;
    genesis::write(&out.join(GENESIS_DIR), &g, &secrets)?;
    Ok(())
}

/// What every node of a testnet shares: the default first timeout, capped low so faults heal
/// within a test run.
pub(crate) fn base_config(n: &NodeSpec) -> Config {
    let mut c = Config {
        identity: "node.key".into(),
        genesis: Path::new("../..").join(GENESIS_DIR).join("genesis.toml"),
        shares: Path::new("../..")
            .join(GENESIS_DIR)
            .join("keys")
            .join(&n.peer_id),
        data_dir: "data".into(),
        ..Config::default()
    };
    c.consensus.max_timeout = Duration::from_secs(4);
    c
}

pub(crate) fn tcp(ip: Ipv4Addr, port: u16) -> anyhow::Result<Multiaddr> {
    Ok(format!("/ip4/{ip}/tcp/{port}").parse()?)
}

/// Loopback: mDNS ignores loopback, so every node gets the addresses of the members of its
/// domains.
fn loopback_config(topo: &Topology, n: &NodeSpec) -> anyhow::Result<Config> {
    let mut c = base_config(n);
    c.network.listen = vec![tcp(Ipv4Addr::LOCALHOST, n.p2p_port)?];
    c.network.mdns = false;
    for other in &topo.nodes {
        let shares_domain = other.domains().iter().any(|d| n.in_domain(d));
        if other.name != n.name && shares_domain {
            c.network.peers.push(
                format!(
                    "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                    other.p2p_port, other.peer_id
                )
                .parse()?,
            );
        }
    }
    c.api.listen = n.api(false);
    Ok(c)
}

/// Netns: a local LAN is found by mDNS only (no addresses); the global domain by Kademlia
/// from one bootstrap address (the first global node; it itself bootstraps from the second).
/// Clouds run without mDNS, so the global mesh really comes from Kademlia.
fn netns_config(topo: &Topology, n: &NodeSpec) -> anyhow::Result<Config> {
    let mut c = base_config(n);
    c.network.listen = [n.global_ip, n.local_ip]
        .into_iter()
        .flatten()
        .map(|ip| tcp(ip, NETNS_P2P_PORT))
        .collect::<anyhow::Result<_>>()?;
    c.network.mdns = n.local.is_some();
    if n.global {
        let global: Vec<&NodeSpec> = topo.nodes.iter().filter(|g| g.global).collect();
        let bootstrap = global.iter().find(|g| g.name != n.name);
        if let Some(b) = bootstrap
            && let Some(ip) = b.global_ip
        {
            c.network
                .peers
                .push(format!("/ip4/{ip}/tcp/{NETNS_P2P_PORT}/p2p/{}", b.peer_id).parse()?);
        }
    }
    c.api.listen = std::net::SocketAddr::from(([127, 0, 0, 1], NETNS_API_PORT));
    Ok(c)
}

/// `count` loopback ports that are free now, in one block below the kernel's ephemeral range
/// (a port in that range can be taken meanwhile as the source port of any outbound
/// connection, and our nodes dial all the time).
pub fn free_ports(count: usize, base: Option<u16>) -> anyhow::Result<Vec<u16>> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let count32 = count as u32;
    let free = |b: u32| -> bool {
        (b..b + count32)
            .all(|p| u16::try_from(p).is_ok_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()))
    };
    if let Some(b) = base {
        if !free(u32::from(b)) {
            bail!(
                "--base-port {b}: ports {b}..{} are not all free",
                u32::from(b) + count32
            );
        }
        return Ok((0..count32).map(|i| (u32::from(b) + i) as u16).collect());
    }
    let (lo, hi) = if low > 12_000 + count32 {
        (10_000, low - count32)
    } else {
        (40_000, 60_000)
    };
    for _ in 0..200 {
        let b = rand::Rng::gen_range(&mut rand::thread_rng(), lo..hi);
        if free(b) {
            return Ok((0..count32).map(|i| (b + i) as u16).collect());
        }
    }
    bail!("found no block of {count} free loopback ports: pass --base-port")
}
