//! A small builder for multi-process tests: keys, genesis and configs in a temp dir, real
//! `lcbft run` processes on loopback with their own ports, and API helpers.

#![allow(dead_code)]

use lcbft_node::http_client;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lcbft");

/// Run `lcbft ARGS`, returning (success, stdout, stderr).
pub fn lcbft(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run lcbft");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// A free loopback port below the kernel's ephemeral range, never handed out twice in this
/// process. Below the range, because a port from `bind(0)` is released before the node binds
/// it and can meanwhile become the source port of any outbound connection (our own nodes dial
/// all the time), which would break a node's start or restart.
fn free_port() -> u16 {
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if low > 12_000 {
        for _ in 0..1000 {
            let port = 10_000 + rand::random::<u16>() % (low - 10_000);
            if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                taken.insert(port);
                return port;
            }
        }
    }
    // An unusual range: let the kernel choose.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    taken.insert(port);
    port
}

pub struct Node {
    pub dir: PathBuf,
    pub peer: String,
    pub p2p: String,
    pub api: SocketAddr,
    child: Option<Child>,
}

impl Node {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("node.log")).expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .env("RUST_LOG", "info,lcbft_node=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lcbft run");
        self.child = Some(child);
    }

    /// SIGTERM, then wait for the exit (at most 10 s).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Send a signal by name (`STOP`, `CONT`, ...) to the running process.
    pub fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{name}"), &c.id().to_string()])
                .status()
                .expect("kill(1) is needed by this test");
            assert!(status.success(), "kill -{name} failed");
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Testnet {
    pub root: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Testnet {
    /// Keys, genesis and configs for `n` global validators.
    pub fn global(n: usize) -> Testnet {
        Testnet::layered(n, 0)
    }

    /// `n` global validators; with `devices > 0`, node 0 is also the edge of local domain 1
    /// whose other members are nodes `n..n + devices`.
    pub fn layered(n: usize, devices: usize) -> Testnet {
        let domains: &[(usize, usize)] = if devices > 0 { &[(0, devices)] } else { &[] };
        Testnet::build(n, domains, "")
    }

    /// `n` global validators and local domains `1..`, each `(edge, devices)`: global node
    /// `edge` is its edge and the next `devices` nodes after the validators (and the devices of
    /// earlier domains) its devices. `consensus` is extra TOML for the `[consensus]` table.
    pub fn build(n: usize, domains: &[(usize, usize)], consensus: &str) -> Testnet {
        let total = n + domains.iter().map(|d| d.1).sum::<usize>();
        let root = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for i in 0..total {
            let dir = root.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            let key = dir.join("node.key");
            let (ok, peer, err) = lcbft(&["keygen", "--out", key.to_str().expect("utf8")]);
            assert!(ok, "keygen: {err}");
            let port = free_port();
            nodes.push(Node {
                dir,
                p2p: format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"),
                peer,
                api: SocketAddr::from(([127, 0, 0, 1], free_port())),
                child: None,
            });
        }
        let net = root.path().join("net");
        let mut args = vec!["genesis".to_owned(), "--global".to_owned()];
        args.extend(nodes[..n].iter().map(|n| n.peer.clone()));
        let mut next = n;
        for (d, &(edge, devices)) in domains.iter().enumerate() {
            let local: Vec<String> = std::iter::once(edge)
                .chain(next..next + devices)
                .map(|i| nodes[i].peer.clone())
                .collect();
            next += devices;
            args.extend([
                "--domain".to_owned(),
                format!("{}={}", d + 1, local.join(",")),
            ]);
        }
        args.extend(["--out".to_owned(), net.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = lcbft(&args);
        assert!(ok, "genesis: {err}");
        for (i, node) in nodes.iter().enumerate() {
            let listen = node
                .p2p
                .rsplit_once("/p2p/")
                .map(|(a, _)| a)
                .unwrap_or_default();
            let peers: Vec<String> = nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, n)| format!("\"{}\"", n.p2p))
                .collect();
            let config = format!(
                r#"identity = "node.key"
genesis = "{genesis}"
shares = "{shares}"
data_dir = "data"

[network]
listen = ["{listen}"]
peers = [{peers}]
mdns = false
liveness_timeout = "2s"
redial_interval = "300ms"

[consensus]
base_timeout = "500ms"
max_timeout = "4s"
{consensus}

[api]
listen = "{api}"
"#,
                genesis = net.join("genesis.toml").display(),
                shares = net.join("keys").join(&node.peer).display(),
                peers = peers.join(", "),
                api = node.api,
            );
            std::fs::write(node.dir.join("node.toml"), config).expect("config");
        }
        Testnet { root, nodes }
    }

    pub fn start_all(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let log = n.log();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- node{i} ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// GET a JSON document; `None` if the node is not answering (yet).
pub fn get(api: SocketAddr, path: &str) -> Option<(u16, Value)> {
    rt().block_on(async {
        let r = http_client::request(api, "GET", path, None).await.ok()?;
        Some((r.status, serde_json::from_str(&r.body).ok()?))
    })
}

pub fn post(api: SocketAddr, path: &str, body: &str) -> Option<(u16, Value)> {
    rt().block_on(async {
        let r = http_client::request(api, "POST", path, Some(body))
            .await
            .ok()?;
        Some((
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        ))
    })
}

/// Wait until each of `nodes` reports at least `peers` connected peers.
pub fn all_connected(net: &Testnet, nodes: &[usize], peers: usize) -> bool {
    wait_until(Duration::from_secs(60), || {
        nodes.iter().all(|&i| {
            get(net.nodes[i].api, "/v1/status")
                .is_some_and(|(_, v)| v["connected"].as_array().is_some_and(|c| c.len() >= peers))
        })
    })
}

/// Start the global validators `nodes` and wait until they are connected and commit a trace.
pub fn start_committing(net: &mut Testnet, nodes: &[usize]) {
    for &i in nodes {
        net.nodes[i].start();
    }
    assert!(all_connected(net, nodes, nodes.len() - 1), "{}", net.logs());
    let first = submit(net, nodes[0], "before the attack");
    assert!(
        wait_until(Duration::from_secs(60), || trace_committed(
            net.nodes[nodes[0]].api,
            &first
        )),
        "the honest nodes do not commit:\n{}",
        net.logs()
    );
}

/// Poll `check` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Sign and submit a global trace with `lcbft trace submit`; returns its id.
pub fn submit(net: &Testnet, node: usize, data: &str) -> String {
    submit_to(net, node, "global", data)
}

/// Sign and submit a trace for `domain` (`global`, `local/1`).
pub fn submit_to(net: &Testnet, node: usize, domain: &str, data: &str) -> String {
    submit_derived(net, node, domain, data, &[])
}

/// Submit a trace derived from `parents` (trace ids, hex).
pub fn submit_derived(
    net: &Testnet,
    node: usize,
    domain: &str,
    data: &str,
    parents: &[&str],
) -> String {
    let producer = net.root.path().join("producer.key");
    if !producer.exists() {
        let (ok, _, err) = lcbft(&["keygen", "--out", path_str(&producer)]);
        assert!(ok, "{err}");
    }
    let api = net.nodes[node].api.to_string();
    let mut args = vec![
        "trace",
        "submit",
        "--api",
        &api,
        "--key",
        path_str(&producer),
        "--domain",
        domain,
        "--data",
        data,
    ];
    for p in parents {
        args.extend(["--parent", p]);
    }
    let (ok, id, err) = lcbft(&args);
    assert!(ok, "trace submit: {err}\n{}", net.logs());
    assert_eq!(id.len(), 64, "trace id: {id}");
    id
}

pub fn trace_committed(api: SocketAddr, id: &str) -> bool {
    get(api, &format!("/v1/traces/{id}")).is_some_and(|(_, v)| v["status"] == "committed")
}

/// Whether every `(node, trace id)` is committed at its node within `within`.
pub fn all_committed(net: &Testnet, traces: &[(usize, String)], within: Duration) -> bool {
    wait_until(within, || {
        traces
            .iter()
            .all(|(i, id)| trace_committed(net.nodes[*i].api, id))
    })
}

pub fn block_hash(api: SocketAddr, height: u64) -> Option<String> {
    domain_block_hash(api, "global", height)
}

/// The hash of node `node`'s global block at `height`, which it must hold.
pub fn hash_at(net: &Testnet, node: usize, height: u64) -> lcbft_protocol::types::Hash {
    let hex = block_hash(net.nodes[node].api, height).expect("a block");
    lcbft_protocol::types::Hash(
        hex::decode(&hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .expect("a block hash"),
    )
}

/// `n` global validators, unpaced (each leader proposes as soon as anything waits), started
/// and connected.
pub fn unpaced_global(n: usize) -> Testnet {
    let consensus = "propose_delay = \"0ms\"\nmin_block_interval = \"0ms\"";
    let mut net = Testnet::build(n, &[], consensus);
    net.start_all();
    let all: Vec<usize> = (0..n).collect();
    assert!(
        all_connected(&net, &all, n - 1),
        "not connected:\n{}",
        net.logs()
    );
    net
}

/// Submit traces carrying `filler` bytes each, round robin, until node 1 has committed
/// `target` blocks (at most 60 s).
pub fn grow_history(net: &Testnet, target: u64, filler: usize) {
    let mut i = 0;
    let grew = wait_until(Duration::from_secs(60), || {
        i += 1;
        submit(
            net,
            i % net.nodes.len(),
            &format!("history {i} {}", "x".repeat(filler)),
        );
        committed_height(net.nodes[1].api).unwrap_or(0) >= target
    });
    assert!(
        grew,
        "the validators did not reach {target}:\n{}",
        net.logs()
    );
}

/// `segment`: `global` or `local-<id>`.
pub fn domain_block_hash(api: SocketAddr, segment: &str, height: u64) -> Option<String> {
    let (status, v) = get(api, &format!("/v1/domains/{segment}/blocks/{height}"))?;
    (status == 200).then(|| v["hash"].as_str().unwrap_or_default().to_owned())
}

/// No two nodes hold different blocks at one height, and every node holds a block at every
/// height up to its committed height. Returns the lowest committed height among `nodes`.
pub fn assert_no_fork(net: &Testnet, nodes: &[usize]) -> u64 {
    let heights: Vec<u64> = nodes
        .iter()
        .map(|&i| committed_height(net.nodes[i].api).expect("status answers"))
        .collect();
    let top = heights.iter().copied().max().unwrap_or(0);
    for h in 1..=top {
        let mut hashes = Vec::new();
        for (&i, &height) in nodes.iter().zip(&heights) {
            // Heights only grow, so a node at `height >= h` must answer for `h`.
            let hash = block_hash(net.nodes[i].api, h);
            assert!(
                hash.is_some() || height < h,
                "node {i} committed {height} but has no block at {h}"
            );
            hashes.extend(hash.map(|x| (i, x)));
        }
        assert!(
            hashes.iter().all(|(_, x)| *x == hashes[0].1),
            "fork at height {h}: {hashes:?}"
        );
    }
    heights.iter().copied().min().unwrap_or(0)
}

pub fn committed_height(api: SocketAddr) -> Option<u64> {
    domain_height(api, "global")
}

/// Committed height of `domain` (`global`, `local/1`) at a node.
pub fn domain_height(api: SocketAddr, domain: &str) -> Option<u64> {
    let (_, v) = get(api, "/v1/status")?;
    v["domains"]
        .as_array()?
        .iter()
        .find(|d| d["domain"] == domain)?["committed_height"]
        .as_u64()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// A node's `/metrics` text ("" if it does not answer).
pub fn metrics_text(net: &Testnet, node: usize) -> String {
    rt().block_on(async {
        http_client::request(net.nodes[node].api, "GET", "/metrics", None)
            .await
            .map(|r| r.body)
            .unwrap_or_default()
    })
}

/// Sum of the samples in Prometheus text whose name and labels start with `prefix`.
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many peers `node` pruned from its mesh on `domain`'s topic for a bad gossipsub score.
/// gossipsub holds a rejected message against every member that relayed it, so an honest
/// relay pruned here means our verdicts fell on it.
pub fn pruned_for_score(
    net: &Testnet,
    node: usize,
    domain: lcbft_protocol::types::DomainId,
) -> f64 {
    metric(
        net,
        node,
        &format!(
            "libp2p_gossipsub_mesh_peer_churn_events_total{{hash=\"{}\",reason=\"BadScore\"}}",
            lcbft_node::net::wire::topic(domain).hash()
        ),
    )
}

/// `metric_sum` over a node's metrics.
pub fn metric(net: &Testnet, node: usize, prefix: &str) -> f64 {
    metric_sum(&metrics_text(net, node), prefix)
}

/// The network config of an in-process peer a test drives by hand (an attacker, an observer,
/// a Byzantine replica): no mDNS, no admission of its own, short liveness timers.
pub fn probe_config(
    keypair: libp2p::identity::Keypair,
    genesis: lcbft_node::genesis::Genesis,
    domains: Vec<lcbft_protocol::types::DomainId>,
    listen: Vec<libp2p::Multiaddr>,
    peers: Vec<libp2p::Multiaddr>,
) -> lcbft_node::net::NetConfig {
    lcbft_node::net::NetConfig {
        keypair,
        genesis: std::sync::Arc::new(genesis),
        domains,
        listen,
        peers,
        mdns: false,
        observers: Vec::new(),
        liveness_timeout: Duration::from_secs(2),
        redial_interval: Duration::from_millis(200),
        idle_connection_timeout: Duration::from_secs(30),
        admission: None,
    }
}

/// The test network's genesis, as the nodes load it.
pub fn load_genesis(net: &Testnet) -> lcbft_node::genesis::Genesis {
    lcbft_node::genesis::load(&net.root.path().join("net").join("genesis.toml")).expect("genesis")
}

/// `node`'s index and threshold key share in `domain`, from the files the testnet wrote (a
/// test that plays that member in process).
pub fn member_keys(
    net: &Testnet,
    node: usize,
    domain: lcbft_protocol::types::DomainId,
) -> (
    lcbft_protocol::types::ReplicaIndex,
    Box<dyn lcbft_protocol::crypto::ThresholdKeys>,
) {
    let genesis = load_genesis(net);
    let peer: libp2p::PeerId = net.nodes[node].peer.parse().expect("peer");
    let share = lcbft_node::genesis::share_path(&net.root.path().join("net"), &peer, domain);
    lcbft_node::genesis::load_member_keys(&genesis, domain, &peer, &share).expect("member keys")
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/<pid>/stat). Panics if
/// the process is gone: a node that died must not read as an idle one.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let rest = stat.rsplit_once(')').expect("comm").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Resident memory of a running node, in MiB (0 if it is not running).
pub fn rss_mib(net: &Testnet, node: usize) -> f64 {
    let Some(pid) = net.nodes[node].pid() else {
        return 0.0;
    };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// An in-process peer with `key` on every domain of the genesis, dialing `targets`. Returns the
/// handle and a count of the messages it received from the network. Call it inside a tokio
/// runtime.
pub fn attacker(
    net: &Testnet,
    targets: &[usize],
    key: libp2p::identity::Keypair,
) -> (
    lcbft_node::net::NetHandle,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let genesis = load_genesis(net);
    let domains = genesis.domains.iter().map(|d| d.id).collect();
    let peers = targets
        .iter()
        .map(|&i| net.nodes[i].p2p.parse().expect("multiaddr"))
        .collect();
    let (handle, mut events, _task) = lcbft_node::net::spawn(
        probe_config(
            key,
            genesis,
            domains,
            vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            peers,
        ),
        &mut prometheus_client::registry::Registry::default(),
        lcbft_node::metrics::Metrics::default(),
    )
    .expect("attacker network");
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = read.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if !matches!(ev, lcbft_node::net::NetEvent::Listening(_)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    (handle, read)
}
