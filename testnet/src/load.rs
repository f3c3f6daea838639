//! Signed trace load: device traces into their local domains (most of it) and cloud traces
//! into the global chain (a tenth), at a steady rate, from one thread per target node.

use crate::init::PRODUCER_KEY;
use crate::net::Net;
use crate::topology::{NodeSpec, Role};
use anyhow::Context;
use lcbft_node::identity;
use lcbft_node::trace::{Action, Trace};
use libp2p::identity::Keypair;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Share of the rate that goes to the global domain directly.
const GLOBAL_SHARE: f64 = 0.1;

#[derive(Debug, Default)]
pub struct Stats {
    pub submitted: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub unreachable: AtomicU64,
    /// (domain, trace id) of every accepted trace.
    pub ids: Mutex<Vec<(String, String)>>,
}

impl Stats {
    pub fn accepted_ids(&self) -> Vec<(String, String)> {
        self.ids.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
    workers: Vec<JoinHandle<()>>,
    pub started: Instant,
}

/// (target node, domain, rate per second) for a total `rate`.
fn plan(net: &Net, rate: f64) -> Vec<(NodeSpec, String, f64)> {
    let devices: Vec<&NodeSpec> = net
        .topo
        .nodes
        .iter()
        .filter(|n| n.role == Role::Device)
        .collect();
    let mut global: Vec<&NodeSpec> = net
        .topo
        .nodes
        .iter()
        .filter(|n| n.role == Role::Cloud)
        .collect();
    if global.is_empty() {
        global = net.topo.nodes.iter().filter(|n| n.global).collect();
    }
    let global_rate = if devices.is_empty() {
        rate
    } else {
        rate * GLOBAL_SHARE
    };
    let mut out = Vec::new();
    for d in &devices {
        let domain = d.local.map(|l| format!("local/{l}")).unwrap_or_default();
        out.push((
            (*d).clone(),
            domain,
            (rate - global_rate) / devices.len() as f64,
        ));
    }
    for g in &global {
        out.push((
            (*g).clone(),
            "global".to_owned(),
            global_rate / global.len() as f64,
        ));
    }
    out.retain(|(_, _, r)| *r > 0.0);
    out
}

impl Load {
    pub fn start(net: &Net, rate: f64) -> anyhow::Result<Load> {
        let key_path = net.root.join(PRODUCER_KEY);
        let key = identity::load(&key_path).with_context(|| {
            format!("cannot load the trace producer key {}", key_path.display())
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let mut workers = Vec::new();
        for (node, domain, r) in plan(net, rate) {
            let ep = net.endpoint(&node);
            let (stop, stats, key) = (stop.clone(), stats.clone(), key.clone());
            workers.push(std::thread::spawn(move || {
                if let Some(ns) = &ep.netns
                    && crate::netns::enter(ns).is_err()
                {
                    return;
                }
                let interval = Duration::from_secs_f64(1.0 / r);
                let mut due = Instant::now();
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep((due - now).min(Duration::from_millis(100)));
                        continue;
                    }
                    // Far behind (a slow node): skip ahead rather than burst.
                    if now - due > Duration::from_secs(1) {
                        due = now;
                    }
                    due += interval;
                    k += 1;
                    submit_one(&ep, &key, &domain, &format!("{} {k}", node.name), &stats);
                }
            }));
        }
        Ok(Load {
            stop,
            stats,
            workers,
            started,
        })
    }

    pub fn stop(self) -> Arc<Stats> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.join();
        }
        self.stats
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh signed trace as the API takes it.
pub fn signed_trace_json(key: &Keypair, domain: &str, data: &str) -> anyhow::Result<String> {
    let producer = key
        .clone()
        .try_into_ed25519()
        .context("the producer key must be ed25519")?
        .public()
        .to_bytes();
    let body = format!("{data} @{}", now_ms());
    let trace = Trace {
        producer,
        timestamp_ms: now_ms(),
        domain: lcbft_node::genesis::parse_domain(domain).context("bad domain")?,
        action: Action::Generated,
        application: "lcbft-testnet".into(),
        digest: *blake3::hash(body.as_bytes()).as_bytes(),
        body: Some(body.into_bytes()),
        parents: Vec::new(),
    };
    let signed = trace.sign(key)?;
    Ok(serde_json::to_string(&signed.to_json())?)
}

fn submit_one(ep: &crate::http::Endpoint, key: &Keypair, domain: &str, data: &str, stats: &Stats) {
    let Ok(body) = signed_trace_json(key, domain, data) else {
        return;
    };
    stats.submitted.fetch_add(1, Ordering::Relaxed);
    match ep.post("/v1/traces", body.as_bytes()) {
        Ok(r) if r.status == 202 || r.status == 200 => {
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            let id = r
                .json()
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned));
            if let (Some(id), Ok(mut ids)) = (id, stats.ids.lock()) {
                ids.push((domain.to_owned(), id));
            }
        }
        Ok(_) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            stats.unreachable.fetch_add(1, Ordering::Relaxed);
        }
    }
}
