//! `bundle`: from a hosts file (name, role, domain, LAN address per host), one directory per
//! host with everything that host runs: `node.toml` with the real addresses, its identity and
//! key shares (0600), the genesis and the systemd unit. The output directory is also a
//! manifest (`topology.json`), so `lcbft-testnet status`, `check` and `up` read it like a
//! testnet made by `init`.
//!
//! ```toml
//! # Optional: the ports every host uses unless it names its own.
//! p2p_port = 7600
//! api_port = 7700
//!
//! [[host]]
//! name = "cloud1"
//! role = "cloud"          # cloud | edge | device
//! address = "192.168.1.10"
//!
//! [[host]]
//! name = "edge1"
//! role = "edge"
//! domain = 1              # the local domain of an edge or a device
//! address = "192.168.1.20"
//!
//! [[host]]
//! name = "pi1"
//! role = "device"
//! domain = 1
//! address = "192.168.1.21"
//! ```

use crate::init::{self, GenesisOptions, LOOPBACK_CONFIG};
use crate::topology::{MANIFEST, NodeSpec, Role, Topology};
use anyhow::{Context, bail};
use lcbft_node::config::Config;
use lcbft_node::files;
use lcbft_node::genesis::{self, share_path};
use lcbft_protocol::types::DomainId;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

/// The systemd unit every host gets (the same file as `deploy/lcbft.service`).
pub const SYSTEMD_UNIT: &str = include_str!("../../deploy/lcbft.service");
pub const UNIT_FILE: &str = "lcbft.service";
/// Inside a host's directory: its share files, named by domain (`global.share`, ...).
pub const KEYS_DIR: &str = "keys";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    #[serde(default = "default_p2p_port")]
    p2p_port: u16,
    #[serde(default = "default_api_port")]
    api_port: u16,
    #[serde(default)]
    host: Vec<Host>,
}

fn default_p2p_port() -> u16 {
    7600
}

fn default_api_port() -> u16 {
    7700
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Host {
    name: String,
    role: Role,
    #[serde(default)]
    domain: Option<u32>,
    address: Ipv4Addr,
    #[serde(default)]
    p2p_port: Option<u16>,
    #[serde(default)]
    api_port: Option<u16>,
}

/// Read and check a hosts file; returns the nodes (in file order) and the local domains.
pub fn read_hosts(path: &Path) -> anyhow::Result<(Vec<NodeSpec>, Vec<u32>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read hosts file {}", path.display()))?;
    parse_hosts(&text).with_context(|| format!("hosts file {}", path.display()))
}

fn parse_hosts(text: &str) -> anyhow::Result<(Vec<NodeSpec>, Vec<u32>)> {
    let file: HostsFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    if file.host.is_empty() {
        bail!("names no hosts: add one [[host]] table per machine (name, role, domain, address)");
    }
    let mut nodes = Vec::new();
    let mut names = BTreeSet::new();
    let mut ports = BTreeMap::new();
    for (i, h) in file.host.iter().enumerate() {
        nodes.push(check_host(&file, i, h, &mut names, &mut ports)?);
    }
    let domains = check_domains(&nodes)?;
    Ok((nodes, domains))
}

/// Check host `i` of `file` against the rules and against the hosts before it (`names`
/// and the `ports` already taken per address); returns its node.
fn check_host(
    file: &HostsFile,
    i: usize,
    h: &Host,
    names: &mut BTreeSet<String>,
    ports: &mut BTreeMap<(Ipv4Addr, u16), String>,
) -> anyhow::Result<NodeSpec> {
    let what = format!("host {} (`{}`)", i + 1, h.name);
    let name_ok = !h.name.is_empty()
        && h.name.len() <= 32
        && h.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        bail!("{what}: name must be 1-32 letters, digits, '-' or '_' (it names a directory)");
    }
    if !names.insert(h.name.clone()) {
        bail!("{what}: the name is used by an earlier host too");
    }
    let local = host_local_domain(h, &what)?;
    if h.address.is_unspecified() || h.address.is_multicast() || h.address.is_broadcast() {
        bail!("{what}: address {} is not one host's address", h.address);
    }
    let p2p = h.p2p_port.unwrap_or(file.p2p_port);
    let api = h.api_port.unwrap_or(file.api_port);
    if p2p == 0 || api == 0 || p2p == api {
        bail!("{what}: p2p port {p2p} and api port {api} must be two different ports above 0");
    }
    for port in [p2p, api] {
        if let Some(other) = ports.insert((h.address, port), h.name.clone()) {
            bail!(
                "{what}: {}:{port} is also used by host `{other}`",
                h.address
            );
        }
    }
    Ok(NodeSpec {
        name: h.name.clone(),
        number: i,
        role: h.role,
        peer_id: String::new(),
        global: h.role != Role::Device,
        local,
        p2p_port: p2p,
        api_port: api,
        global_ip: None,
        local_ip: None,
        address: Some(h.address),
    })
}

/// The local domain of host `h` (`what` names it in errors): none for a cloud, required
/// and above 0 for an edge or a device.
fn host_local_domain(h: &Host, what: &str) -> anyhow::Result<Option<u32>> {
    Ok(match (h.role, h.domain) {
        (Role::Cloud, Some(d)) => bail!(
            "{what}: a cloud is in the global domain only; remove `domain = {d}` or make it an edge"
        ),
        (Role::Cloud, None) => None,
        (_, None) => bail!(
            "{what}: a{} {} needs `domain = <local domain id>`",
            if h.role == Role::Edge { "n" } else { "" },
            h.role.as_str()
        ),
        (_, Some(0)) => bail!("{what}: domain ids start at 1"),
        (_, Some(d)) => Some(d),
    })
}

/// Check that every local domain named by `nodes` has exactly one edge and at least one
/// device; returns the local domains in ascending order.
fn check_domains(nodes: &[NodeSpec]) -> anyhow::Result<Vec<u32>> {
    let domains: BTreeSet<u32> = nodes.iter().filter_map(|n| n.local).collect();
    for &d in &domains {
        let edges: Vec<&str> = nodes
            .iter()
            .filter(|n| n.local == Some(d) && n.role == Role::Edge)
            .map(|n| n.name.as_str())
            .collect();
        match edges.as_slice() {
            [_] => {}
            [] => bail!(
                "local domain {d} has devices but no edge: add a host with role = \"edge\", domain = {d}"
            ),
            more => bail!(
                "local domain {d} has {} edges ({}): a domain has exactly one",
                more.len(),
                more.join(", ")
            ),
        }
        if !nodes
            .iter()
            .any(|n| n.local == Some(d) && n.role == Role::Device)
        {
            bail!("local domain {d} has an edge but no device: add at least one device");
        }
    }
    Ok(domains.into_iter().collect())
}

/// Write one bundle per host of `hosts` under `out/nodes/<name>/`, plus the manifest, the
/// genesis with every share (`out/genesis/`: keep it offline), `prometheus.yml` and the
/// dashboards in `out`.
pub fn bundle(hosts: &Path, out: &Path, opts: GenesisOptions) -> anyhow::Result<Topology> {
    let (nodes, domains) = read_hosts(hosts)?;
    if out.join(MANIFEST).exists() {
        bail!(
            "{} already holds a network: pick another --out (a new bundle means new keys for every host)",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let topo = init::deal(out, nodes, domains, opts)?;
    let genesis_dir = out.join(init::GENESIS_DIR);
    let genesis_text = std::fs::read_to_string(init::genesis_file(out))
        .context("cannot read the genesis just written")?;
    for n in &topo.nodes {
        let dir = n.dir(out);
        init::write_file(
            &dir.join(LOOPBACK_CONFIG),
            &host_config(&topo, n)?.to_toml(),
        )?;
        init::write_file(&dir.join("genesis.toml"), &genesis_text)?;
        init::write_file(&dir.join(UNIT_FILE), SYSTEMD_UNIT)?;
        let peer = init::peer(n)?;
        for domain in held(n) {
            let from = share_path(&genesis_dir, &peer, domain);
            let name = from
                .file_name()
                .context("a share path without a file name")?;
            let to = dir.join(KEYS_DIR).join(name);
            let bytes = files::read_secret(&from, "it was written a moment ago")?;
            files::write_secret(&to, &bytes, "bundle into an empty --out")?;
        }
    }
    init::write_file(
        &out.join("prometheus.yml"),
        &crate::assets::prometheus_yml(&topo),
    )?;
    crate::assets::copy_dashboards(out)?;
    topo.save(out)?;
    // Fail here, not on the Pi, if a bundle does not load.
    for n in &topo.nodes {
        let path = n.dir(out).join(LOOPBACK_CONFIG);
        let cfg = Config::load(&path, std::iter::empty())
            .with_context(|| format!("the bundle of {} does not load", n.name))?;
        let g = genesis::load(&cfg.genesis)
            .with_context(|| format!("the bundle of {} has no readable genesis", n.name))?;
        let peer = init::peer(n)?;
        for domain in held(n) {
            let share = cfg
                .shares
                .join(format!("{}.share", genesis::domain_tag(domain)));
            genesis::load_member_keys(&g, domain, &peer, &share)
                .with_context(|| format!("the bundle of {} has a bad key share", n.name))?;
        }
    }
    Ok(topo)
}

/// The domains whose key shares the node holds.
fn held(n: &NodeSpec) -> Vec<DomainId> {
    let mut d = Vec::new();
    if n.global {
        d.push(DomainId::Global);
    }
    if let Some(l) = n.local {
        d.push(DomainId::Local(l));
    }
    d
}

/// A host's `node.toml`: listens on its LAN address; names every member of its domains as a
/// known peer (the global domain's Kademlia bootstrap, and the fallback where multicast is
/// filtered); mDNS on for members of a local domain, so a Pi that comes back on another
/// address is found again; the API on the LAN address for Prometheus and trace producers.
fn host_config(topo: &Topology, n: &NodeSpec) -> anyhow::Result<Config> {
    let mut c = Config {
        identity: "node.key".into(),
        genesis: "genesis.toml".into(),
        shares: KEYS_DIR.into(),
        data_dir: "data".into(),
        ..Config::default()
    };
    c.network.listen = vec![init::tcp(n.ip(), n.p2p_port)?];
    c.network.mdns = n.local.is_some();
    for other in &topo.nodes {
        let shares_domain = other.domains().iter().any(|d| n.in_domain(d));
        if other.name != n.name && shares_domain {
            let addr = format!(
                "/ip4/{}/tcp/{}/p2p/{}",
                other.ip(),
                other.p2p_port,
                other.peer_id
            );
            c.network
                .peers
                .push(libp2p::Multiaddr::from_str(&addr).context("a peer address")?);
        }
    }
    c.api.listen = n.api(false);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", parse_hosts(text).unwrap_err())
    }

    const GOOD: &str = r#"
        [[host]]
        name = "cloud1"
        role = "cloud"
        address = "10.0.0.1"
        [[host]]
        name = "edge1"
        role = "edge"
        domain = 1
        address = "10.0.0.2"
        [[host]]
        name = "pi1"
        role = "device"
        domain = 1
        address = "10.0.0.3"
        p2p_port = 7601
    "#;

    #[test]
    fn a_good_hosts_file_gives_roles_domains_and_ports() {
        let (nodes, domains) = parse_hosts(GOOD).expect("parses");
        assert_eq!(domains, [1]);
        assert_eq!(nodes.len(), 3);
        assert!(nodes[1].global && nodes[1].local == Some(1));
        assert!(!nodes[2].global);
        assert_eq!((nodes[2].p2p_port, nodes[2].api_port), (7601, 7700));
        assert_eq!(nodes[0].api(false).to_string(), "10.0.0.1:7700");
    }

    #[test]
    fn the_example_hosts_file_in_deploy_parses() {
        let text = include_str!("../../deploy/templates/hosts.toml");
        let (nodes, domains) = parse_hosts(text).expect("parses");
        assert_eq!((nodes.len(), domains.as_slice()), (6, [1].as_slice()));
    }

    #[test]
    fn bad_hosts_files_are_refused_naming_the_host_and_the_fix() {
        let cases = [
            ("", "names no hosts"),
            (
                "[[host]]\nname = \"a\"\nrole = \"pi\"\naddress = \"10.0.0.1\"",
                "unknown variant `pi`",
            ),
            (
                "[[host]]\nname = \"a\"\nrole = \"cloud\"\naddress = \"10.0.0.300\"",
                "address",
            ),
            (
                "[[host]]\nname = \"a\"\nrole = \"cloud\"\naddress = \"10.0.0.1\"\nport = 1",
                "unknown field `port`",
            ),
            (
                "[[host]]\nname = \"a/b\"\nrole = \"cloud\"\naddress = \"10.0.0.1\"",
                "host 1 (`a/b`): name",
            ),
            (
                "[[host]]\nname = \"a\"\nrole = \"cloud\"\ndomain = 2\naddress = \"10.0.0.1\"",
                "remove `domain = 2`",
            ),
            (
                "[[host]]\nname = \"a\"\nrole = \"device\"\naddress = \"10.0.0.1\"",
                "a device needs `domain",
            ),
            (
                "[[host]]\nname = \"a\"\nrole = \"device\"\ndomain = 3\naddress = \"10.0.0.1\"",
                "local domain 3 has devices but no edge",
            ),
            (
                "[[host]]\nname = \"a\"\nrole = \"edge\"\ndomain = 3\naddress = \"10.0.0.1\"",
                "local domain 3 has an edge but no device",
            ),
            (
                "[[host]]\nname = \"a\"\nrole = \"cloud\"\naddress = \"0.0.0.0\"",
                "not one host's address",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
        let dup = format!(
            "{GOOD}\n[[host]]\nname = \"pi1\"\nrole = \"device\"\ndomain = 1\naddress = \"10.0.0.4\""
        );
        assert!(
            err(&dup).contains("host 4 (`pi1`): the name is used"),
            "{}",
            err(&dup)
        );
        let clash = format!(
            "{GOOD}\n[[host]]\nname = \"pi2\"\nrole = \"device\"\ndomain = 1\naddress = \"10.0.0.3\"\np2p_port = 7601"
        );
        assert!(
            err(&clash).contains("10.0.0.3:7601 is also used by host `pi1`"),
            "{}",
            err(&clash)
        );
    }
}
