//! The node's one TOML config file (`lcbft run --config FILE`). Every field has a default that
//! works on a LAN; `LCBFT_<FIELD>` / `LCBFT_<SECTION>__<FIELD>` environment variables override
//! the file; everything is validated once, at load, with errors naming the field.

use crate::files::{self, FileError};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: field `{field}` {reason}")]
    Field {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

/// One node's configuration. Relative paths are resolved against the config file's directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's libp2p identity, written by `lcbft keygen`.
    pub identity: PathBuf,
    /// The network's genesis file, written by `lcbft genesis` (the same on every node).
    pub genesis: PathBuf,
    /// Directory with this node's key shares (`global.share`, `local-<id>.share`). Empty: the
    /// `keys/<peer-id>/` directory `lcbft genesis` wrote beside the genesis file.
    pub shares: PathBuf,
    /// Where the node keeps its database.
    pub data_dir: PathBuf,
    pub network: NetworkConfig,
    pub consensus: ConsensusConfig,
    pub api: ApiConfig,
    /// Set by `lcbft run --rejoin`, never read from the file: the database may be older than
    /// what this node signed (restored from a backup), so every replica rejoins.
    #[serde(skip)]
    pub rejoin: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Addresses to listen on. Prefer the LAN address to 0.0.0.0: identify advertises what we
    /// listen on.
    pub listen: Vec<Multiaddr>,
    /// Known peers, each ending in `/p2p/<peer-id>`: bootstrap for the global domain, and the
    /// only discovery where mDNS cannot reach (loopback, routed networks).
    pub peers: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Peer ids outside the genesis that may connect and read this node's topics (a
    /// monitoring or archive node). Anyone else who is not a genesis member is refused at
    /// connection; observers can never author anything a member accepts.
    pub observers: Vec<PeerId>,
    /// A domain member silent this long is disconnected (pings run at a third of it).
    #[serde(with = "humantime_serde")]
    pub liveness_timeout: Duration,
    /// How often to redial known domain members we are not connected to.
    #[serde(with = "humantime_serde")]
    pub redial_interval: Duration,
    /// Close connections with no open stream after this long.
    #[serde(with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// First view (global) or term (local) timeout; doubles per view without a commit.
    #[serde(with = "humantime_serde")]
    pub base_timeout: Duration,
    /// Cap of the doubling timeout.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// Most payload items (traces, anchors) in one block. Every member of a domain must use the
    /// same value: a replica votes for no block over it.
    pub max_block_txs: usize,
    /// Local domains: send votes to the edge, which combines them, instead of the leader.
    pub offload: bool,
    /// Local domains: committed blocks kept in memory and on disk. Older ones are deleted
    /// from disk once anchored in a committed global block (never before); global nodes keep
    /// them all. A member down for longer catches up by state transfer.
    pub local_window: u64,
    /// Pacing: a leader holds payload back this long after it became pending, unless 16 KiB
    /// (local; global 192 KiB) is pending, so light traffic makes few, fuller blocks. 0
    /// proposes at once.
    #[serde(with = "humantime_serde")]
    pub propose_delay: Duration,
    /// Pacing: at most one block per this interval from a leader, unless 16 KiB (local;
    /// global 192 KiB) is pending (0: as fast as the chain goes). Timeouts are extended by the
    /// delay and the interval.
    #[serde(with = "humantime_serde")]
    pub min_block_interval: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the HTTP API (traces, status, metrics).
    pub enabled: bool,
    /// Address of the HTTP API. Localhost by default: put a proxy in front to expose it.
    pub listen: SocketAddr,
    /// Largest accepted trace body, in bytes.
    pub max_trace_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            identity: "node.key".into(),
            genesis: "genesis.toml".into(),
            shares: PathBuf::new(),
            data_dir: "data".into(),
            network: NetworkConfig::default(),
            consensus: ConsensusConfig::default(),
            api: ApiConfig::default(),
            rejoin: false,
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/7600"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            peers: Vec::new(),
            mdns: true,
            observers: Vec::new(),
            liveness_timeout: Duration::from_secs(6),
            redial_interval: Duration::from_secs(1),
            idle_connection_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            base_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(30),
            max_block_txs: 8192,
            offload: true,
            local_window: 256,
            propose_delay: Duration::from_millis(lcbft_protocol::Config::DEFAULT_PROPOSE_DELAY_MS),
            min_block_interval: Duration::from_millis(
                lcbft_protocol::Config::DEFAULT_MIN_BLOCK_INTERVAL_MS,
            ),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            max_trace_bytes: 64 * 1024,
        }
    }
}

/// The commented example `lcbft config example` prints; it parses to the defaults.
pub const EXAMPLE: &str = r#"# lcbft node configuration. Every field is optional; shown are the defaults.
# Relative paths are resolved against this file's directory. Environment variables override
# fields: LCBFT_DATA_DIR=/var/lib/lcbft, LCBFT_API__LISTEN=127.0.0.1:7701,
# LCBFT_NETWORK__PEERS='["/ip4/10.0.0.2/tcp/7600/p2p/12D3Koo..."]' (TOML values).

# This node's libp2p identity, written by `lcbft keygen --out node.key`.
identity = "node.key"
# The network's genesis file, written by `lcbft genesis` (the same on every node).
genesis = "genesis.toml"
# Directory with this node's key shares (global.share, local-<id>.share). Empty: the
# keys/<peer-id>/ directory that `lcbft genesis` wrote beside the genesis file.
shares = ""
# Where the node keeps its database.
data_dir = "data"

[network]
# Addresses to listen on. Prefer the LAN address to 0.0.0.0: identify advertises it.
listen = ["/ip4/0.0.0.0/tcp/7600"]
# Known peers, each ending in /p2p/<peer-id>: bootstrap for the global domain, and the only
# discovery where mDNS cannot reach (loopback, routed networks).
peers = []
# Discover peers on the LAN with mDNS.
mdns = true
# Peer ids outside the genesis allowed to connect and read (e.g. a monitoring node); every
# other non-member is refused at connection.
observers = []
# A domain member silent this long is disconnected (pings run at a third of it). Pings and
# the redial tick are most of what an idle node does: shorter finds a silently cut link
# sooner, at the cost of CPU on every node (README, Energy).
liveness_timeout = "6s"
# How often to check for silent members and redial those we are not connected to.
redial_interval = "1s"
# Close connections with no open stream after this long.
idle_connection_timeout = "1m"

[consensus]
# First view/term timeout; doubles per view without a commit, up to max_timeout.
base_timeout = "1s"
max_timeout = "30s"
# Most payload items (traces, anchors) in one block; blocks are also bounded by bytes (1 MiB
# local, 3 MiB global), which is what binds with traces of a few hundred bytes. Every member of
# a domain must use the same value: a block over it gets no vote.
max_block_txs = 8192
# Local domains: votes go to the edge, which combines them, instead of the leader.
offload = true
# Local domains: committed blocks kept in memory and on disk; older ones are deleted from disk
# once anchored in a committed global block, never before. Global nodes keep every block. A
# member down for longer than this catches up by state transfer from its edge's anchor notice.
local_window = 256
# Pacing, the energy-latency knob: a leader holds payload back this long after it became
# pending, and proposes at most one block per min_block_interval; neither holds once 16 KiB
# (local; 192 KiB global) is pending, so pacing never slows a loaded domain.
# Every block costs each member a signature and a certificate check, so fewer, fuller blocks
# save energy; a trace waits up to about delay + 2 intervals longer to commit. "0s" for both
# proposes as soon as anything is pending. Timeouts are extended by the two.
propose_delay = "200ms"
min_block_interval = "500ms"

[api]
# Serve the HTTP API (traces, status, metrics).
enabled = true
# Localhost by default: put a proxy in front to expose it.
listen = "127.0.0.1:7700"
# Largest accepted trace body, in bytes.
max_trace_bytes = 65536
"#;

impl Config {
    /// Read `path`, apply `LCBFT_*` overrides from `env`, resolve paths, validate.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = files::read_text(path, "write one with `lcbft config example > FILE`")?;
        Config::parse(&text, path, env)
    }

    /// [`Config::load`] on text already read; `path` names the file in errors and is the base of
    /// relative paths. The fuzzer calls this.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: one_line(&e.to_string()),
        })?;
        for (var, value) in env {
            apply_env(&mut table, &var, &value)?;
        }
        let mut cfg: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path.to_owned(),
                    reason: one_line(&e.to_string()),
                })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.identity,
            &mut cfg.genesis,
            &mut cfg.data_dir,
            &mut cfg.shares,
        ] {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        }
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let field = |field: &'static str, reason: &str| ConfigError::Field {
            path: path.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        let n = &self.network;
        if n.listen.is_empty() {
            return Err(field(
                "network.listen",
                "is empty: give at least one address",
            ));
        }
        for p in &n.peers {
            if !matches!(p.iter().last(), Some(Protocol::P2p(_))) {
                return Err(field(
                    "network.peers",
                    &format!("entry {p} does not end in /p2p/<peer-id>"),
                ));
            }
        }
        if n.liveness_timeout < Duration::from_millis(100) {
            return Err(field("network.liveness_timeout", "must be at least 100ms"));
        }
        if n.redial_interval < Duration::from_millis(10) {
            return Err(field("network.redial_interval", "must be at least 10ms"));
        }
        let c = &self.consensus;
        if c.base_timeout < Duration::from_millis(10) {
            return Err(field("consensus.base_timeout", "must be at least 10ms"));
        }
        if c.max_timeout < c.base_timeout {
            return Err(field(
                "consensus.max_timeout",
                "must not be below base_timeout",
            ));
        }
        if c.max_block_txs == 0 {
            return Err(field("consensus.max_block_txs", "must be at least 1"));
        }
        // A paced leader still proposes well within the view timeout (which pacing extends):
        // longer waits would only hide a crashed leader for longer.
        if c.propose_delay > Duration::from_secs(10) {
            return Err(field("consensus.propose_delay", "must be at most 10s"));
        }
        if c.min_block_interval > Duration::from_secs(10) {
            return Err(field("consensus.min_block_interval", "must be at most 10s"));
        }
        if c.local_window < 2 {
            return Err(field("consensus.local_window", "must be at least 2"));
        }
        if self.api.max_trace_bytes < 256 {
            return Err(field("api.max_trace_bytes", "must be at least 256"));
        }
        Ok(())
    }

    /// The config file a test or `lcbft-testnet` writes: `toml` text of this config.
    pub fn to_toml(&self) -> String {
        match toml::to_string_pretty(self) {
            Ok(s) => s,
            Err(e) => unreachable!("config serialization failed: {e}"),
        }
    }
}

/// Variables of the environment that name config fields.
pub fn env_overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("LCBFT_"))
        .collect()
}

/// `LCBFT_API__LISTEN=..` sets `api.listen`; the value is read as a TOML value, or as a
/// string when it is not one.
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let Some(name) = var.strip_prefix("LCBFT_") else {
        return Ok(());
    };
    let path: Vec<String> = name.split("__").map(str::to_ascii_lowercase).collect();
    let known = Config::default().to_toml();
    let known: toml::Table = toml::from_str(&known).unwrap_or_default();
    if lookup(&known, &path).is_none() {
        return Err(ConfigError::Env {
            var: var.to_owned(),
            reason: "names no config field (see `lcbft config example`)".into(),
        });
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, sections) = path.split_last().ok_or_else(|| ConfigError::Env {
        var: var.to_owned(),
        reason: "empty field name".into(),
    })?;
    let mut t = table;
    for s in sections {
        let entry = t
            .entry(s.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.to_owned(),
            reason: format!("`{s}` is not a section"),
        })?;
    }
    t.insert(last.clone(), parsed);
    Ok(())
}

fn lookup<'a>(t: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let v = t.get(first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        lookup(v.as_table()?, rest)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).expect("write");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(&path, env).map(|mut c| {
            // Make paths comparable across temp dirs.
            for p in [
                &mut c.identity,
                &mut c.genesis,
                &mut c.data_dir,
                &mut c.shares,
            ] {
                if let Ok(rel) = p.strip_prefix(dir.path()) {
                    *p = rel.to_owned();
                }
            }
            c
        })
    }

    #[test]
    fn the_example_is_the_defaults_and_an_empty_file_is_too() {
        assert_eq!(load_text(EXAMPLE, &[]).expect("example"), Config::default());
        assert_eq!(load_text("", &[]).expect("empty"), Config::default());
    }

    #[test]
    fn human_units_and_env_overrides() {
        let cfg = load_text(
            "[network]\nliveness_timeout = \"750ms\"\n[consensus]\nbase_timeout = \"2s\"\n",
            &[
                ("LCBFT_API__LISTEN", "127.0.0.1:9999"),
                ("LCBFT_DATA_DIR", "/var/lib/lcbft"),
                ("LCBFT_NETWORK__MDNS", "false"),
            ],
        )
        .expect("load");
        assert_eq!(cfg.network.liveness_timeout, Duration::from_millis(750));
        assert_eq!(cfg.consensus.base_timeout, Duration::from_secs(2));
        assert_eq!(cfg.api.listen, SocketAddr::from(([127, 0, 0, 1], 9999)));
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/lcbft"));
        assert!(!cfg.network.mdns);
    }

    #[test]
    fn observers_are_peer_ids() {
        let peer = PeerId::random();
        let cfg = load_text(&format!("[network]\nobservers = [\"{peer}\"]\n"), &[]).expect("load");
        assert_eq!(cfg.network.observers, vec![peer]);
        let back = load_text(&cfg.to_toml(), &[]).expect("round trip");
        assert_eq!(back.network.observers, vec![peer]);
    }

    #[test]
    fn errors_name_the_field() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("[network]\nlisten = []\n", &[], "network.listen"),
            (
                "[consensus]\nbase_timeout = \"5s\"\nmax_timeout = \"1s\"\n",
                &[],
                "consensus.max_timeout",
            ),
            (
                "[network]\npeers = [\"/ip4/127.0.0.1/tcp/1\"]\n",
                &[],
                "network.peers",
            ),
            (
                "[network]\nliveness_timeout = \"soon\"\n",
                &[],
                "liveness_timeout",
            ),
            ("[network]\nlisen = []\n", &[], "lisen"),
            (
                "[network]\nobservers = [\"not-a-peer-id\"]\n",
                &[],
                "observers",
            ),
            ("", &[("LCBFT_NETWORK__NOPE", "1")], "LCBFT_NETWORK__NOPE"),
            (
                "",
                &[("LCBFT_CONSENSUS__MAX_BLOCK_TXS", "0")],
                "consensus.max_block_txs",
            ),
            (
                "[consensus]\npropose_delay = \"1h\"\n",
                &[],
                "consensus.propose_delay",
            ),
            (
                "[consensus]\nmin_block_interval = \"11s\"\n",
                &[],
                "consensus.min_block_interval",
            ),
        ];
        for (text, env, needle) in cases {
            let err = load_text(text, env).expect_err(needle).to_string();
            assert!(err.contains(needle), "expected {needle} in: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
