//! Follows every domain's committed chain from one member per domain, every [`POLL`]: each
//! new block is fetched once, the traces in it are noted with the instant the block was first
//! seen, and so is every rise of a local domain's anchored height in the committed global
//! chain.

use lcbft_testnet::http::Endpoint;
use lcbft_testnet::load::Sample;
use lcbft_testnet::net::Net;
use lcbft_testnet::topology::Role;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

pub const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// One observed committed block.
struct BlockSeen {
    height: u64,
    at: Instant,
    /// Traces in it (anchors not counted).
    traces: u64,
}

#[derive(Default)]
struct Seen {
    /// Per domain, in height order.
    blocks: BTreeMap<String, Vec<BlockSeen>>,
    /// Trace id (raw bytes) -> (domain, height, first seen).
    traces: HashMap<[u8; 32], (String, u64, Instant)>,
    /// Per local domain: (anchored height, when first seen).
    anchored: BTreeMap<String, Vec<(u64, Instant)>>,
    start: Option<Instant>,
    end: Option<Instant>,
}

pub struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    committed: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

/// A layer's totals over the measured window.
pub struct LayerTotals {
    pub blocks: u64,
    pub traces: u64,
}

pub struct Latencies {
    pub local: Value,
    pub global: Value,
}

/// Whom to ask about each domain: a local domain's edge (which also reports the global
/// chain and its anchored heights), else the first global validator.
fn observers(net: &Net) -> Vec<(Endpoint, Vec<String>)> {
    let mut out = Vec::new();
    let mut global_watched = false;
    for n in &net.topo.nodes {
        if n.role == Role::Edge
            && let Some(d) = n.local
        {
            let mut domains = vec![format!("local/{d}")];
            if !global_watched {
                domains.push("global".to_owned());
                global_watched = true;
            }
            out.push((net.endpoint(n), domains));
        }
    }
    if !global_watched && let Some(g) = net.topo.nodes.iter().find(|n| n.global) {
        out.push((net.endpoint(g), vec!["global".to_owned()]));
    }
    out
}

impl Watcher {
    pub fn start(net: &Net) -> anyhow::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let committed = Arc::new(AtomicU64::new(0));
        let obs = observers(net);
        // Start from the heights already committed: those blocks are not ours.
        let mut heights: BTreeMap<String, u64> = BTreeMap::new();
        for (ep, domains) in &obs {
            let status = ep
                .get_json("/v1/status")
                .ok_or_else(|| anyhow::anyhow!("{} does not answer /v1/status", ep.addr))?;
            for d in domains {
                heights.insert(d.clone(), committed_height(&status, d).unwrap_or(0));
            }
        }
        let handle = {
            let (stop, seen, committed) = (stop.clone(), seen.clone(), committed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let tick = Instant::now();
                    for (ep, domains) in &obs {
                        poll(ep, domains, &mut heights, &seen, &committed);
                    }
                    std::thread::sleep(POLL.saturating_sub(tick.elapsed()));
                }
            })
        };
        Ok(Watcher {
            stop,
            seen,
            committed,
            handle: Some(handle),
        })
    }

    pub fn mark_start(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.start = Some(Instant::now());
        }
    }

    pub fn mark_end(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.end = Some(Instant::now());
        }
    }

    pub fn committed_so_far(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> Observed {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()));
        Observed { seen }
    }
}

fn committed_height(status: &Value, domain: &str) -> Option<u64> {
    status["domains"]
        .as_array()?
        .iter()
        .find(|d| d["domain"] == domain)?["committed_height"]
        .as_u64()
}

fn poll(
    ep: &Endpoint,
    domains: &[String],
    heights: &mut BTreeMap<String, u64>,
    seen: &Mutex<Seen>,
    committed: &AtomicU64,
) {
    let Some(status) = ep.get_json("/v1/status") else {
        return;
    };
    let now = Instant::now();
    for d in domains {
        let Some(top) = committed_height(&status, d) else {
            continue;
        };
        let from = heights.get(d).copied().unwrap_or(0);
        for h in from + 1..=top {
            let path = format!("/v1/domains/{}/blocks/{h}", d.replace('/', "-"));
            let Some(block) = ep.get_json(&path) else {
                // Try again next round.
                break;
            };
            heights.insert(d.clone(), h);
            let anchors = block["anchors"].as_array().map_or(0, Vec::len) as u64;
            let ids: Vec<[u8; 32]> = block["txs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| hex::decode(t.as_str()?).ok()?.try_into().ok())
                .collect();
            let traces = (ids.len() as u64).saturating_sub(anchors);
            committed.fetch_add(traces, Ordering::Relaxed);
            if let Ok(mut s) = seen.lock() {
                for id in ids {
                    s.traces.entry(id).or_insert((d.clone(), h, now));
                }
                s.blocks.entry(d.clone()).or_default().push(BlockSeen {
                    height: h,
                    at: now,
                    traces,
                });
            }
        }
    }
    // The global domain's anchored heights per local domain.
    let anchored = status["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["domain"] == "global")
        .and_then(|g| g["anchored"].as_object().cloned());
    if let (Some(anchored), Ok(mut s)) = (anchored, seen.lock()) {
        for (d, h) in anchored {
            let Some(h) = h.as_u64() else { continue };
            let list = s.anchored.entry(d).or_default();
            if list.last().is_none_or(|(last, _)| h > *last) {
                list.push((h, now));
            }
        }
    }
}

/// What the watcher saw.
pub struct Observed {
    seen: Seen,
}

fn percentiles(mut ms: Vec<f64>) -> Value {
    if ms.is_empty() {
        return Value::Null;
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize].round();
    json!({ "p50": at(0.5), "p99": at(0.99), "samples": ms.len() })
}

impl Observed {
    fn in_window(&self, at: Instant) -> bool {
        self.seen.start.is_none_or(|s| at >= s) && self.seen.end.is_none_or(|e| at <= e)
    }

    /// Seconds between the load's start and end.
    pub fn window_seconds(&self) -> f64 {
        match (self.seen.start, self.seen.end) {
            (Some(s), Some(e)) => (e - s).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Blocks and traces committed in the window, over the layer's domains.
    pub fn layer(&self, layer: &str) -> LayerTotals {
        let mut t = LayerTotals {
            blocks: 0,
            traces: 0,
        };
        for (d, blocks) in &self.seen.blocks {
            if (d == "global") != (layer == "global") {
                continue;
            }
            for b in blocks.iter().filter(|b| self.in_window(b.at)) {
                t.blocks += 1;
                t.traces += b.traces;
            }
        }
        t
    }

    /// Local traces whose blocks were anchored (seen anchored) within the window.
    pub fn anchored_traces(&self) -> u64 {
        let mut n = 0;
        for (d, list) in &self.seen.anchored {
            let Some(blocks) = self.seen.blocks.get(d) else {
                continue;
            };
            let before = list
                .iter()
                .filter(|(_, at)| self.seen.start.is_some_and(|s| *at < s))
                .map(|(h, _)| *h)
                .max()
                .unwrap_or(0);
            let upto = list
                .iter()
                .filter(|(_, at)| self.in_window(*at))
                .map(|(h, _)| *h)
                .max()
                .unwrap_or(before);
            n += blocks
                .iter()
                .filter(|b| b.height > before && b.height <= upto)
                .map(|b| b.traces)
                .sum::<u64>();
        }
        n
    }

    /// Submission to local commit, and to global commit (directly or of the anchor).
    pub fn latencies(&self, samples: &[Sample]) -> Latencies {
        let mut local = Vec::new();
        let mut global = Vec::new();
        for s in samples {
            let Some(id) = hex::decode(&s.id)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                continue;
            };
            let Some((domain, height, at)) = self.seen.traces.get(&id) else {
                continue;
            };
            let ms = |t: Instant| t.saturating_duration_since(s.sent).as_secs_f64() * 1000.0;
            if domain == "global" {
                global.push(ms(*at));
                continue;
            }
            local.push(ms(*at));
            let anchored = self
                .seen
                .anchored
                .get(domain)
                .and_then(|l| l.iter().find(|(h, _)| h >= height));
            if let Some((_, t)) = anchored {
                global.push(ms(*t));
            }
        }
        Latencies {
            local: percentiles(local),
            global: percentiles(global),
        }
    }
}
