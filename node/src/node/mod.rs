//! `lcbft run`: wire identity, genesis, key shares, store, network, storage worker and API
//! together, then hand over to the main loop (`main_loop.rs`).

mod acks;
mod anchoring;
mod driver;
mod main_loop;
mod storage;

use crate::admission::{Admission, ProposalRule};
use crate::api::{self, ApiRequest, ApiState};
use crate::config::Config;
use crate::genesis::{self, Genesis, GenesisError, domain_tag};
use crate::identity::{self, IdentityError};
use crate::metrics::Metrics;
use crate::net::{self, NetConfig, NetError};
use crate::store::{Store, StoreError};
use driver::Driver;
use lcbft_protocol::anchor::AnchorRules;
use lcbft_protocol::replica::{Replica, Stored};
use lcbft_protocol::types::{DomainId, ReplicaIndex};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use main_loop::MainLoop;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::info;

pub use driver::Effect;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error(
        "this node ({peer}) is in no domain of {genesis}: check `identity` in the config, or regenerate the genesis with this PeerId"
    )]
    NotAMember { peer: String, genesis: PathBuf },
    #[error("store {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Net(#[from] NetError),
    #[error("HTTP API on {addr}: {source}")]
    Api {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("storage worker: {0}")]
    Storage(String),
    #[error("storage failed, stopping to stay safe: {0}")]
    StorageFailed(StoreError),
    #[error("a public key set in the genesis does not load: {0}")]
    Keys(lcbft_protocol::crypto::CryptoError),
}

/// Run the node until `shutdown` resolves (or storage fails).
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let keypair = identity::load(&cfg.identity)?;
    let me = identity::peer_id(&keypair);
    let genesis = Arc::new(genesis::load(&cfg.genesis)?);
    let memberships = genesis.memberships(&me);
    if memberships.is_empty() {
        return Err(NodeError::NotAMember {
            peer: me.to_string(),
            genesis: cfg.genesis.clone(),
        });
    }
    let shares_dir = shares_dir(&cfg, &me);
    let (store, db_path) = open_store(&cfg)?;
    let mut registry = Registry::default();
    let metrics = node_metrics(&mut registry, &db_path, &genesis, &me);
    let admission = Admission::new(
        cfg.api.max_trace_bytes,
        genesis.payload == genesis::PayloadKind::Raw,
        store.clone(),
        metrics.clone(),
    );
    let parts = Parts {
        cfg: &cfg,
        me: &me,
        genesis: &genesis,
        store: &store,
        db_path: &db_path,
        metrics: &metrics,
        admission: &admission,
    };
    let drivers = parts.drivers(&memberships, &shares_dir)?;
    let net_config = parts.net_config(keypair, drivers.keys().copied().collect());
    let (net, net_events, net_task) = net::spawn(net_config, &mut registry, metrics.clone())?;
    let registry = Arc::new(registry);

    let (api_tx, api_rx) = mpsc::channel::<ApiRequest>(1024);
    if cfg.api.enabled {
        parts.serve_api(api_tx, net.clone(), registry).await?;
    }

    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let worker = storage::Worker::spawn(store.clone(), done_tx, metrics.clone())
        .map_err(|e| NodeError::Storage(e.to_string()))?;
    info!(peer = %me, domains = ?drivers.keys().collect::<Vec<_>>(), "node started");

    let anchoring = anchoring::Anchoring::new(&genesis, &me, cfg.consensus.local_window)
        .map_err(NodeError::Keys)?;
    let acknowledged = store
        .accepted()
        .map_err(|source| store_err(&db_path, source))?;
    let mut main = MainLoop::new(
        drivers,
        genesis,
        store,
        net.clone(),
        worker,
        metrics,
        anchoring,
    );
    main.reload(acknowledged, &admission);
    let result = main.run(net_events, done_rx, api_rx, shutdown).await;
    net.shutdown();
    let _ = net_task.await;
    info!("node stopped");
    result
}

/// Where this node's key shares are: `shares` in the config, or by default
/// `keys/<peer id>` next to the genesis.
fn shares_dir(cfg: &Config, me: &PeerId) -> PathBuf {
    if cfg.shares.as_os_str().is_empty() {
        cfg.genesis
            .parent()
            .unwrap_or(Path::new("."))
            .join("keys")
            .join(me.to_string())
    } else {
        cfg.shares.clone()
    }
}

/// The store in the data directory (created if missing), and its path.
fn open_store(cfg: &Config) -> Result<(Store, PathBuf), NodeError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| NodeError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let db_path = cfg.data_dir.join("lcbft.redb");
    let store = Store::open(&db_path).map_err(|source| store_err(&db_path, source))?;
    Ok((store, db_path))
}

fn store_err(path: &Path, source: StoreError) -> NodeError {
    NodeError::Store {
        path: path.to_owned(),
        source,
    }
}

fn node_metrics(
    registry: &mut Registry,
    db_path: &Path,
    genesis: &Genesis,
    me: &PeerId,
) -> Metrics {
    let metrics = Metrics::register(registry);
    Metrics::register_collectors(registry, db_path.to_owned());
    metrics.set_info(&me.to_string(), crate::metrics::node_role(genesis, me));
    metrics.init_anchoring(
        genesis
            .domains
            .iter()
            .map(|d| d.id)
            .filter(|d| *d != DomainId::Global),
    );
    metrics
}

/// What the steps of `run` share once the store is open.
struct Parts<'a> {
    cfg: &'a Config,
    me: &'a PeerId,
    genesis: &'a Arc<Genesis>,
    store: &'a Store,
    db_path: &'a Path,
    metrics: &'a Metrics,
    admission: &'a Admission,
}

impl Parts<'_> {
    /// A driver for each domain this node is a member of, its replica restored from disk.
    fn drivers(
        &self,
        memberships: &[(DomainId, ReplicaIndex)],
        shares_dir: &Path,
    ) -> Result<BTreeMap<DomainId, Driver>, NodeError> {
        let mut drivers = BTreeMap::new();
        for (domain, index) in memberships {
            let share = shares_dir.join(format!("{}.share", domain_tag(*domain)));
            let driver = self.driver(*domain, *index, &share)?;
            drivers.insert(*domain, driver);
        }
        Ok(drivers)
    }

    fn driver(
        &self,
        domain: DomainId,
        index: ReplicaIndex,
        share: &Path,
    ) -> Result<Driver, NodeError> {
        let (index2, keys) = genesis::load_member_keys(self.genesis, domain, self.me, share)?;
        debug_assert_eq!(index, index2);
        let keys = self.metrics.time_crypto(domain, keys);
        let mut replica = restore(self.cfg, self.genesis, self.store, domain, index, keys)
            .map_err(|e| store_err(self.db_path, e))?;
        if let Replica::Global(g) = &mut replica {
            let mut ring = self.genesis.key_ring().map_err(NodeError::Keys)?;
            ring.remove(&DomainId::Global);
            let anchored = self
                .store
                .anchored_tips(ring.keys().copied())
                .map_err(|e| store_err(self.db_path, e))?;
            g.set_anchor_rules(AnchorRules::new(ring), anchored);
        }
        replica.set_payload_rule(Box::new(ProposalRule(self.admission.clone())));
        info!(%domain, index, state = %replica.describe(), "replica restored");
        self.metrics.init_domain(domain);
        Ok(Driver::new(domain, index, replica).observed(self.metrics.observer(domain)))
    }

    fn net_config(&self, keypair: Keypair, domains: Vec<DomainId>) -> NetConfig {
        let cfg = self.cfg;
        NetConfig {
            keypair,
            genesis: self.genesis.clone(),
            domains,
            listen: cfg.network.listen.clone(),
            peers: cfg.network.peers.clone(),
            mdns: cfg.network.mdns,
            observers: cfg.network.observers.clone(),
            liveness_timeout: cfg.network.liveness_timeout,
            redial_interval: cfg.network.redial_interval,
            idle_connection_timeout: cfg.network.idle_connection_timeout,
            admission: Some(self.admission.clone()),
        }
    }

    /// Bind the HTTP API and serve it in a task of its own.
    async fn serve_api(
        &self,
        requests: mpsc::Sender<ApiRequest>,
        net: net::NetHandle,
        registry: Arc<Registry>,
    ) -> Result<(), NodeError> {
        let cfg = self.cfg;
        let listener = tokio::net::TcpListener::bind(cfg.api.listen)
            .await
            .map_err(|source| NodeError::Api {
                addr: cfg.api.listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(cfg.api.listen);
        info!(%addr, "HTTP API listening");
        let state = ApiState {
            store: self.store.clone(),
            requests,
            net,
            registry,
            metrics: self.metrics.clone(),
            max_trace_bytes: cfg.api.max_trace_bytes,
            payload: self.genesis.payload,
            admission: self.admission.clone(),
        };
        tokio::spawn(api::serve(listener, state));
        Ok(())
    }
}

/// A domain's replica from what is on disk.
fn restore(
    cfg: &Config,
    genesis: &Genesis,
    store: &Store,
    domain: DomainId,
    index: u16,
    keys: Box<dyn lcbft_protocol::crypto::ThresholdKeys>,
) -> Result<Replica, StoreError> {
    let dg = genesis.domain(domain);
    let n = dg.map(|d| d.n()).unwrap_or(0);
    let mut pc = lcbft_protocol::Config::new(domain, index, n);
    pc.base_timeout_ms = cfg.consensus.base_timeout.as_millis() as u64;
    pc.max_timeout_ms = cfg.consensus.max_timeout.as_millis() as u64;
    pc.max_block_txs = cfg.consensus.max_block_txs;
    pc.propose_delay_ms = cfg.consensus.propose_delay.as_millis() as u64;
    pc.min_block_interval_ms = cfg.consensus.min_block_interval.as_millis() as u64;
    if matches!(domain, DomainId::Local(_)) {
        pc.edge = dg.and_then(|d| d.edge());
        pc.offload = cfg.consensus.offload;
        // One window for a local domain, in memory and on disk: a member further behind than
        // its peers keep finds the blocks on no peer and catches up by state transfer.
        pc.memory_window = cfg.consensus.local_window;
    }
    let safety = store.safety(domain)?;
    // No safety state: a new database, or a lost one. Only the members can tell which, and
    // what we may have signed (protocol `core::rejoin`).
    let rejoin = cfg.rejoin || safety.is_none();
    if rejoin {
        info!(%domain, "rejoining: signing nothing until the members say how far they got");
    }
    let stored = Stored {
        committed: store.committed_tail(domain, pc.memory_window)?,
        blocks: store.uncommitted_blocks(domain)?,
        safety,
        rejoin,
    };
    Ok(Replica::restore(pc, keys, stored))
}
