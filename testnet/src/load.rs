//! Load: device traces into their local domains (most of it) and cloud traces into the global
//! chain (a tenth), at a steady rate.
//!
//! Per target node and per [`PER_CONNECTION`] items/s (at most [`MAX_CONNECTIONS`]), a
//! producer thread signs traces ahead of time (about 20 µs each, so the sender is never CPU
//! bound) into a bounded queue, and a sender thread (inside the node's network namespace, if
//! any) posts them over one keep-alive connection as CBOR batches: every
//! item that is due, at most [`MAX_BATCH`] per request, checked every [`TICK`] at most, so a
//! low rate still sends each trace within a few milliseconds. On a raw network (genesis
//! `payload = "raw"`) the producer makes random 512-byte payloads for `POST /v1/payloads`.

use crate::init::{PRODUCER_KEY, genesis_file};
use crate::net::Net;
use crate::topology::{NodeSpec, Role};
use anyhow::Context;
use lcbft_node::genesis::PayloadKind;
use lcbft_node::identity;
use lcbft_node::trace::{Action, SignedTrace, Trace};
use libp2p::identity::Keypair;
use rand::RngCore;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Share of the rate that goes to the global domain directly.
const GLOBAL_SHARE: f64 = 0.1;
/// Most items per request.
pub const MAX_BATCH: usize = 256;
/// The sender looks for due items at least this often.
const TICK: Duration = Duration::from_millis(20);
/// Rate one connection (and its producer thread) is asked to carry at most.
const PER_CONNECTION: f64 = 1000.0;
/// Most connections (and producer threads) per target node.
const MAX_CONNECTIONS: usize = 8;
/// Size of a raw payload.
pub const RAW_PAYLOAD_BYTES: usize = 512;

#[derive(Debug, Default)]
pub struct Stats {
    /// Items sent (in any request that left).
    pub submitted: AtomicU64,
    /// Items the node admitted (pending, or already committed).
    pub accepted: AtomicU64,
    /// Items the node refused (a rejected batch entry, or a whole request answered 4xx/5xx).
    pub refused: AtomicU64,
    /// Items whose request got no answer.
    pub unreachable: AtomicU64,
    /// Requests sent.
    pub requests: AtomicU64,
    /// (domain, trace id) of every accepted trace (only with `Options::keep_ids`).
    pub ids: Mutex<Vec<(String, String)>>,
    /// Every `sample_every`-th accepted item, with when its request left.
    pub samples: Mutex<Vec<Sample>>,
}

/// An accepted item and when it was submitted, for latency measurement.
#[derive(Clone, Debug)]
pub struct Sample {
    pub domain: String,
    pub id: String,
    pub sent: Instant,
    pub sent_unix_ms: u64,
}

impl Stats {
    pub fn accepted_ids(&self) -> Vec<(String, String)> {
        self.ids.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// How to load a network.
#[derive(Clone, Debug)]
pub struct Options {
    /// Items per second, over all targets.
    pub rate: f64,
    /// Keep every accepted id (what `up`, `chaos` and `load` count commits with). Off for
    /// long high-rate runs, which would hold millions.
    pub keep_ids: bool,
    /// Keep every n-th accepted item as a latency [`Sample`] (0: none).
    pub sample_every: u64,
}

impl Options {
    pub fn rate(rate: f64) -> Options {
        Options {
            rate,
            keep_ids: true,
            sample_every: 0,
        }
    }

    /// A benchmark's load: `rate` for `seconds`, about `samples` latency samples over it, and
    /// no ids kept (millions at high rates).
    pub fn sampled(rate: f64, seconds: u64, samples: f64) -> Options {
        Options {
            rate,
            keep_ids: false,
            sample_every: ((rate * seconds as f64) / samples).max(1.0) as u64,
        }
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
    workers: Vec<JoinHandle<()>>,
    pub started: Instant,
    pub payload: PayloadKind,
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

/// The network's payload kind, from its genesis.
pub fn payload_kind(net: &Net) -> anyhow::Result<PayloadKind> {
    Ok(lcbft_node::genesis::load(&genesis_file(&net.root))?.payload)
}

impl Load {
    pub fn start(net: &Net, rate: f64) -> anyhow::Result<Load> {
        Load::start_with(net, &Options::rate(rate))
    }

    pub fn start_with(net: &Net, opts: &Options) -> anyhow::Result<Load> {
        let key_path = net.root.join(PRODUCER_KEY);
        let key = identity::load(&key_path).with_context(|| {
            format!("cannot load the trace producer key {}", key_path.display())
        })?;
        let payload = payload_kind(net)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let mut workers = Vec::new();
        for (node, domain, rate) in plan(net, opts.rate) {
            // One request in flight per connection: a node that takes a while to answer a
            // batch would cap a single connection's rate, so high rates get several.
            let lanes = ((rate / PER_CONNECTION).ceil() as usize).clamp(1, MAX_CONNECTIONS);
            let r = rate / lanes as f64;
            for lane in 0..lanes {
                // About a quarter second of items signed ahead.
                let depth = ((r / 4.0) as usize).clamp(MAX_BATCH, 16 * 1024);
                let (tx, rx) = std::sync::mpsc::sync_channel(depth);
                let producer = Producer {
                    key: key.clone(),
                    payload,
                    domain: domain.clone(),
                    name: format!("{}#{lane}", node.name),
                    stop: stop.clone(),
                };
                workers.push(std::thread::spawn(move || producer.run(tx)));
                let sender = Sender {
                    ep: net.endpoint(&node),
                    payload,
                    domain: domain.clone(),
                    rate: r,
                    keep_ids: opts.keep_ids,
                    sample_every: opts.sample_every,
                    stop: stop.clone(),
                    stats: stats.clone(),
                };
                workers.push(std::thread::spawn(move || sender.run(rx)));
            }
        }
        Ok(Load {
            stop,
            stats,
            workers,
            started,
            payload,
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

/// Makes the items of one target ahead of time: the CBOR of a signed trace (exactly the
/// bytes that become the block's `Tx`) or a raw payload.
struct Producer {
    key: Keypair,
    payload: PayloadKind,
    domain: String,
    name: String,
    stop: Arc<AtomicBool>,
}

impl Producer {
    fn run(self, tx: SyncSender<Vec<u8>>) {
        let mut rng = rand::thread_rng();
        let mut k = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            k += 1;
            let item = match self.payload {
                PayloadKind::Traces => {
                    match signed_trace(&self.key, &self.domain, &format!("{} {k}", self.name)) {
                        Ok(t) => t.to_tx().into_bytes(),
                        Err(_) => return,
                    }
                }
                PayloadKind::Raw => {
                    let mut p = vec![0u8; RAW_PAYLOAD_BYTES];
                    rng.fill_bytes(&mut p);
                    // Byte 0 first is the anchor tag, which the API refuses.
                    p[0] |= 1;
                    p
                }
            };
            let mut item = Some(item);
            // Wait for room, looking at the stop flag now and then.
            while let Some(i) = item.take() {
                match tx.try_send(i) {
                    Ok(()) => {}
                    Err(TrySendError::Full(i)) => {
                        if self.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        item = Some(i);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
    }
}

/// Sends one target's items at its rate over a keep-alive connection.
struct Sender {
    ep: crate::http::Endpoint,
    payload: PayloadKind,
    domain: String,
    rate: f64,
    keep_ids: bool,
    sample_every: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl Sender {
    fn run(self, rx: Receiver<Vec<u8>>) {
        if let Some(ns) = &self.ep.netns
            && crate::netns::enter(ns).is_err()
        {
            return;
        }
        let mut conn = crate::http::KeepAlive::new(self.ep.addr);
        let (path, content_type) = match self.payload {
            PayloadKind::Traces => ("/v1/traces".to_owned(), "application/cbor"),
            PayloadKind::Raw => (
                format!("/v1/payloads?domain={}", self.domain),
                "application/octet-stream",
            ),
        };
        let start = Instant::now();
        let mut sent = 0u64;
        let mut accepted_here = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let target = (self.rate * start.elapsed().as_secs_f64()) as u64;
            // Far behind (a slow node): skip ahead rather than burst.
            let behind_limit = (self.rate as u64).max(MAX_BATCH as u64);
            if target > sent + behind_limit {
                sent = target - behind_limit;
            }
            let due = target.saturating_sub(sent) as usize;
            if due == 0 {
                let next = Duration::from_secs_f64((sent + 1) as f64 / self.rate);
                let wait = next.saturating_sub(start.elapsed()).min(TICK);
                std::thread::sleep(wait.max(Duration::from_micros(200)));
                continue;
            }
            let items = match take(&rx, due.min(MAX_BATCH)) {
                Some(items) => items,
                None => return,
            };
            sent += items.len() as u64;
            let body = match self.payload {
                PayloadKind::Traces => cbor_array(&items),
                PayloadKind::Raw => frames(&items),
            };
            let sent_at = Instant::now();
            let sent_unix_ms = now_ms();
            let n = items.len() as u64;
            self.stats.submitted.fetch_add(n, Ordering::Relaxed);
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            match conn.post(&path, content_type, &body) {
                Ok(r) if r.status == 200 => {
                    let entries = r.json().ok();
                    let entries = entries.as_ref().and_then(|v| v.as_array());
                    let Some(entries) = entries else {
                        self.stats.refused.fetch_add(n, Ordering::Relaxed);
                        continue;
                    };
                    let mut ids = Vec::new();
                    let mut refused = 0;
                    for e in entries {
                        let ok = matches!(e["status"].as_str(), Some("pending" | "committed"));
                        match e["id"].as_str() {
                            Some(id) if ok => ids.push(id.to_owned()),
                            _ => refused += 1,
                        }
                    }
                    self.stats.refused.fetch_add(refused, Ordering::Relaxed);
                    self.stats
                        .accepted
                        .fetch_add(ids.len() as u64, Ordering::Relaxed);
                    self.record(ids, &mut accepted_here, sent_at, sent_unix_ms);
                }
                Ok(_) => {
                    self.stats.refused.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats.unreachable.fetch_add(n, Ordering::Relaxed);
                    // Do not spin on a node that is down.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn record(&self, ids: Vec<String>, count: &mut u64, sent: Instant, sent_unix_ms: u64) {
        if self.sample_every > 0 {
            let mut picked = Vec::new();
            for id in &ids {
                *count += 1;
                if *count % self.sample_every == 1 || self.sample_every == 1 {
                    picked.push(Sample {
                        domain: self.domain.clone(),
                        id: id.clone(),
                        sent,
                        sent_unix_ms,
                    });
                }
            }
            if let Ok(mut s) = self.stats.samples.lock() {
                s.extend(picked);
            }
        }
        if self.keep_ids
            && let Ok(mut all) = self.stats.ids.lock()
        {
            all.extend(ids.into_iter().map(|id| (self.domain.clone(), id)));
        }
    }
}

/// Up to `n` items: waits for the first (the producer may be behind), then takes what is
/// there. `None` once the producer is gone.
fn take(rx: &Receiver<Vec<u8>>, n: usize) -> Option<Vec<Vec<u8>>> {
    let first = loop {
        match rx.recv_timeout(TICK) {
            Ok(i) => break i,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    };
    let mut items = vec![first];
    while items.len() < n {
        match rx.try_recv() {
            Ok(i) => items.push(i),
            Err(_) => break,
        }
    }
    Some(items)
}

/// A CBOR array of already-encoded items (a CBOR array is its length, then its items).
pub fn cbor_array(items: &[Vec<u8>]) -> Vec<u8> {
    let n = items.len();
    let mut out = Vec::with_capacity(9 + items.iter().map(Vec::len).sum::<usize>());
    match n {
        0..=23 => out.push(0x80 | n as u8),
        24..=0xff => out.extend([0x98, n as u8]),
        0x100..=0xffff => {
            out.push(0x99);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(0x9a);
            out.extend((n as u32).to_be_bytes());
        }
    }
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

/// Raw payloads, each after its 4-byte big-endian length (`POST /v1/payloads`).
pub fn frames(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 4).sum());
    for i in items {
        out.extend((i.len() as u32).to_be_bytes());
        out.extend_from_slice(i);
    }
    out
}

/// A fresh signed trace.
pub fn signed_trace(key: &Keypair, domain: &str, data: &str) -> anyhow::Result<SignedTrace> {
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
        domain: domain.parse()?,
        action: Action::Generated,
        application: "lcbft-testnet".into(),
        digest: *blake3::hash(body.as_bytes()).as_bytes(),
        body: Some(body.into_bytes()),
        parents: Vec::new(),
    };
    Ok(trace.sign(key)?)
}

/// A fresh signed trace as the API takes it.
pub fn signed_trace_json(key: &Keypair, domain: &str, data: &str) -> anyhow::Result<String> {
    Ok(serde_json::to_string(
        &signed_trace(key, domain, data)?.to_json(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cbor_array_of_encoded_traces_decodes_as_the_node_does() {
        let key = Keypair::generate_ed25519();
        for n in [0usize, 1, 23, 24, 255, 256, 300] {
            let traces: Vec<SignedTrace> = (0..n)
                .map(|i| signed_trace(&key, "local/1", &i.to_string()).expect("sign"))
                .collect();
            let items: Vec<Vec<u8>> = traces.iter().map(|t| t.to_tx().into_bytes()).collect();
            let back: Vec<SignedTrace> =
                lcbft_protocol::codec::decode(&cbor_array(&items), usize::MAX).expect("decode");
            assert_eq!(back, traces, "{n} items");
        }
    }
}
