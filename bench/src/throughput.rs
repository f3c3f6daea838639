//! `lcbft-bench throughput`: real `lcbft` processes on loopback (started, loaded and observed
//! with the `lcbft-testnet` library), one fresh network per offered rate. Prints one JSON line
//! per rate on stdout; progress goes to stderr. With `--sweep`, also draws throughput against
//! latency as a PNG.
//!
//! How it measures (see also the README's "Performance" section):
//! - **Offered rate**: items the load generator sent per second of load (refused ones count).
//! - **Committed/s**: the watcher ([`watch`]) follows every domain's committed chain on one
//!   member (a local domain on its edge, the global domain on a global validator), fetching
//!   each new block; traces in blocks committed while the load ran, divided by its duration.
//! - **Latency**: every k-th accepted trace (about 400 per run) is a sample with the instant
//!   its request left. Local commit = when the watcher first saw the block holding it;
//!   global commit = when a global validator first reported the domain's `anchored` height
//!   at or above that block (a local trace), or the global block holding it (a global trace).
//!   Error: the watcher polls every 50 ms, so a latency is late by up to 50 ms plus one status
//!   and block request (a few ms on loopback); a trace late in a batch is admitted up to the
//!   batch's admission time after its "sent" instant, which counts into its latency.
//! - **Blocks/s, bytes per trace**: height deltas; `lcbft_net_message_bytes_total{direction=
//!   "sent"}` summed over all nodes per layer, divided by that layer's committed traces (for
//!   the global layer of a layered network: its own traces plus the local traces anchored
//!   during the run).
//! - **CPU and memory**: `/proc/<pid>/stat` utime+stime deltas per role over the load, per
//!   1,000 committed traces (local + global); peak RSS is `VmHWM` per node, max per role.

pub(crate) mod watch;

use crate::energy::{Pacing, set_pacing};
use crate::plot::{self, Axes, Line};
use anyhow::{Context, bail};
use clap::{Args as ClapArgs, ValueEnum};
use lcbft_node::genesis::PayloadKind;
use lcbft_protocol::crypto::SchemeId;
use lcbft_testnet::init::{GenesisOptions, init_with};
use lcbft_testnet::load::{Load, Options, Stats};
use lcbft_testnet::net::Net;
use lcbft_testnet::session::Session;
use lcbft_testnet::topology::{Role, Shape};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TopologyArg {
    /// 4 global validators, no local domains (`init --global 4 --domains 0`).
    Global4,
    /// The default layered testnet: 2 clouds, 2 edges, 2 local domains of an edge + 3 devices.
    Default,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SchemeArg {
    ThresholdCrypto,
    Blsttc,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PayloadArg {
    /// Producer-signed traces (CBOR batches to `POST /v1/traces`).
    Signed,
    /// Random 512-byte payloads (`POST /v1/payloads`, a genesis with `payload = "raw"`).
    Raw,
}

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_enum, default_value = "default")]
    topology: TopologyArg,
    /// Offered load, items per second.
    #[arg(long, conflicts_with = "sweep")]
    rate: Option<f64>,
    /// Several offered rates, one fresh network each, e.g. `500,1000,2000,5000,10000`; also
    /// draws `sweep.png` in --out.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<f64>,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    #[arg(long, value_enum, default_value = "threshold-crypto")]
    scheme: SchemeArg,
    #[arg(long, value_enum, default_value = "signed")]
    payload: PayloadArg,
    /// Where the networks (and sweep.png) go; default: a fresh temporary directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Pacing of every node as `DELAY_MS:INTERVAL_MS` (`0:0`: propose as soon as anything
    /// waits); default: the nodes' own defaults.
    #[arg(long, value_parser = Pacing::parse)]
    pacing: Option<Pacing>,
}

/// Latency samples wanted per run.
const SAMPLES: f64 = 400.0;
/// After the load stops, time for what is pending to commit (counted in latency, not rate).
const SETTLE: Duration = Duration::from_secs(4);

pub fn run(a: &Args) -> anyhow::Result<()> {
    let rates: Vec<f64> = match (a.rate, a.sweep.is_empty()) {
        (Some(r), _) => vec![r],
        (None, false) => a.sweep.clone(),
        (None, true) => bail!("give --rate R or --sweep R1,R2,..."),
    };
    if let Some(r) = rates.iter().find(|r| !(**r > 0.0 && **r <= 200_000.0)) {
        bail!("rate {r}: give items per second, above 0 and at most 200000");
    }
    if a.duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    let out = out_dir(a.out.as_deref(), "lcbft-bench")?;
    let stop = lcbft_testnet::up::stop_flag()?;
    let mut results = Vec::new();
    for rate in rates {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let dir = out.join(format!("rate-{rate}"));
        let v = one_rate(a, rate, &dir, &stop)?;
        println!("{}", serde_json::to_string(&v)?);
        results.push(v);
    }
    if !a.sweep.is_empty() {
        let png = out.join("sweep.png");
        let first = results.first().cloned().unwrap_or_default();
        let title = format!(
            "lcbft {} {} {}",
            first["topology"].as_str().unwrap_or(""),
            first["scheme"].as_str().unwrap_or(""),
            first["payload"].as_str().unwrap_or("")
        );
        sweep_chart(&png, &title, &results)?;
        eprintln!("drew {}", png.display());
    }
    Ok(())
}

/// `given`, or a fresh directory under the system's temporary one; created either way.
pub(crate) fn out_dir(given: Option<&Path>, prefix: &str) -> anyhow::Result<PathBuf> {
    let out = given.map(Path::to_owned).unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            std::process::id()
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out)
}

fn shape(t: TopologyArg) -> Shape {
    match t {
        TopologyArg::Global4 => Shape {
            global: 4,
            domains: 0,
            devices: 0,
        },
        TopologyArg::Default => Shape::default(),
    }
}

fn one_rate(a: &Args, rate: f64, dir: &Path, stop: &AtomicBool) -> anyhow::Result<Value> {
    let session = start(a, rate, dir, stop)?;
    let net = session.net.clone();
    let m = measure(a, rate, &net, stop)?;
    drop(session);
    Ok(json_line(a, rate, dir, &net, &m))
}

/// A fresh network for one rate in `dir`, its nodes up and connected.
fn start(a: &Args, rate: f64, dir: &Path, stop: &AtomicBool) -> anyhow::Result<Session> {
    let bin = lcbft_testnet::procs::lcbft_bin()?;
    let opts = GenesisOptions {
        scheme: match a.scheme {
            SchemeArg::ThresholdCrypto => SchemeId::ThresholdCrypto,
            SchemeArg::Blsttc => SchemeId::Blsttc,
        },
        payload: match a.payload {
            PayloadArg::Signed => PayloadKind::Traces,
            PayloadArg::Raw => PayloadKind::Raw,
        },
    };
    if dir.exists() {
        bail!("{} exists: pick another --out", dir.display());
    }
    init_with(dir, shape(a.topology), None, opts)
        .with_context(|| format!("cannot init a testnet in {}", dir.display()))?;
    let net = Net::open(dir, false)?;
    if let Some(p) = a.pacing {
        set_pacing(dir, &net, p)?;
    }
    eprintln!(
        "[{rate}/s] starting {} nodes in {}",
        net.topo.nodes.len(),
        dir.display()
    );
    let session = Session::start(net, false, bin)?;
    if session.wait_ready(Duration::from_secs(60), stop).is_none() {
        bail!(
            "the nodes were not all up and connected within 60 s: see {}/nodes/*/node.log",
            dir.display()
        );
    }
    Ok(session)
}

/// One run's raw figures: the load's, the watcher's, and every node's usage and bytes sent
/// at the load's start and end.
struct Measured {
    load_seconds: f64,
    stats: Arc<Stats>,
    obs: watch::Observed,
    before: BTreeMap<String, Usage>,
    after: BTreeMap<String, Usage>,
    bytes_before: BTreeMap<String, f64>,
    bytes_after: BTreeMap<String, f64>,
}

fn measure(a: &Args, rate: f64, net: &Net, stop: &AtomicBool) -> anyhow::Result<Measured> {
    let watcher = watch::Watcher::start(net)?;
    let before = usage(net);
    let bytes_before = sent_bytes(net);
    let load = Load::start_with(net, &Options::sampled(rate, a.duration, SAMPLES))?;
    eprintln!("[{rate}/s] loading for {} s", a.duration);
    watcher.mark_start();
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1000));
        let acc = load.stats.accepted.load(Ordering::Relaxed);
        eprintln!(
            "[{rate}/s] {:.0} s: {} sent, {acc} accepted, {} committed",
            load.started.elapsed().as_secs_f64(),
            load.stats.submitted.load(Ordering::Relaxed),
            watcher.committed_so_far()
        );
    }
    let load_seconds = load.started.elapsed().as_secs_f64();
    let stats = load.stop();
    watcher.mark_end();
    let after = usage(net);
    let bytes_after = sent_bytes(net);
    eprintln!("[{rate}/s] letting pending traces commit");
    std::thread::sleep(SETTLE);
    let obs = watcher.stop();
    Ok(Measured {
        load_seconds,
        stats,
        obs,
        before,
        after,
        bytes_before,
        bytes_after,
    })
}

/// The JSON line of one rate.
fn json_line(a: &Args, rate: f64, dir: &Path, net: &Net, m: &Measured) -> Value {
    let samples = m.stats.samples();
    let lat = m.obs.latencies(&samples);
    let window = m.obs.window_seconds().max(0.001);
    let local = m.obs.layer("local");
    let global = m.obs.layer("global");
    let (cpu, rss) = by_role(net, m, local.traces + global.traces);
    let layered = net.topo.nodes.iter().any(|n| n.role == Role::Device);
    let bytes = |layer: &str, traces: u64| {
        let b = m.bytes_after.get(layer).copied().unwrap_or(0.0)
            - m.bytes_before.get(layer).copied().unwrap_or(0.0);
        (traces > 0).then(|| (b / traces as f64).round())
    };
    let global_traces_for_bytes = global.traces + if layered { m.obs.anchored_traces() } else { 0 };
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let stats = &m.stats;
    let load_seconds = m.load_seconds;
    let submitted = stats.submitted.load(Ordering::Relaxed);
    let mut v = json!({
        "topology": format!("{:?}", a.topology).to_lowercase(),
        "scheme": match a.scheme { SchemeArg::ThresholdCrypto => "threshold-crypto", SchemeArg::Blsttc => "blsttc" },
        "payload": match a.payload { PayloadArg::Signed => "signed", PayloadArg::Raw => "raw" },
        "rate": rate,
        "pacing": a.pacing.map(Pacing::label),
        "duration_s": round1(load_seconds),
        "offered_per_s": round1(submitted as f64 / load_seconds),
        "accepted_per_s": round1(stats.accepted.load(Ordering::Relaxed) as f64 / load_seconds),
        "refused": stats.refused.load(Ordering::Relaxed),
        "unreachable": stats.unreachable.load(Ordering::Relaxed),
        "requests": stats.requests.load(Ordering::Relaxed),
        "committed_per_s": {
            "local": round1(local.traces as f64 / window),
            "global": round1(global.traces as f64 / window),
        },
        "latency_ms": {
            "local_commit": lat.local,
            "global_commit": lat.global,
        },
        "blocks_per_s": {
            "local": round1(local.blocks as f64 / window),
            "global": round1(global.blocks as f64 / window),
        },
        "bytes_per_trace": {
            "local": bytes("local", local.traces),
            "global": bytes("global", global_traces_for_bytes),
        },
        "cpu_s_per_1000": cpu,
        "peak_rss_mb": rss,
        "dir": dir.display().to_string(),
    });
    if !layered {
        v["committed_per_s"]["local"] = Value::Null;
        v["latency_ms"]["local_commit"] = Value::Null;
        v["blocks_per_s"]["local"] = Value::Null;
        v["bytes_per_trace"]["local"] = Value::Null;
    }
    v
}

/// Per role: CPU seconds per 1,000 of the `committed` traces, summed over its nodes, and the
/// highest peak RSS of its nodes in MiB.
fn by_role(net: &Net, m: &Measured, committed: u64) -> (Map<String, Value>, Map<String, Value>) {
    let per_k = committed as f64 / 1000.0;
    let mut cpu = BTreeMap::new();
    let mut rss = BTreeMap::new();
    for n in &net.topo.nodes {
        let role = n.role.as_str();
        if let (Some(b), Some(e)) = (m.before.get(&n.name), m.after.get(&n.name)) {
            *cpu.entry(role).or_insert(0.0) += e.cpu_s - b.cpu_s;
            let r = rss.entry(role).or_insert(0u64);
            *r = (*r).max(e.peak_rss);
        }
    }
    let cpu = cpu
        .iter()
        .map(|(r, c)| {
            (
                r.to_string(),
                json!(if per_k > 0.0 {
                    Some((c / per_k * 1000.0).round() / 1000.0)
                } else {
                    None
                }),
            )
        })
        .collect::<Map<_, _>>();
    let rss = rss
        .iter()
        .map(|(r, b)| (r.to_string(), json!(b / (1 << 20))))
        .collect::<Map<_, _>>();
    (cpu, rss)
}

struct Usage {
    cpu_s: f64,
    peak_rss: u64,
}

/// CPU seconds and peak RSS (`VmHWM`) of every node, by name.
fn usage(net: &Net) -> BTreeMap<String, Usage> {
    let mut out = BTreeMap::new();
    for n in &net.topo.nodes {
        let Some(pid) = net.pid(n) else { continue };
        let Some((_, cpu_s)) = lcbft_testnet::procs::usage(pid) else {
            continue;
        };
        let peak_rss = status_bytes(pid, "VmHWM:");
        out.insert(n.name.clone(), Usage { cpu_s, peak_rss });
    }
    out
}

/// A memory figure of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`) in bytes; 0 if unreadable.
pub(crate) fn status_bytes(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes sent, per layer, summed over every node
/// (`lcbft_net_message_bytes_total{direction="sent"}`).
fn sent_bytes(net: &Net) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for n in &net.topo.nodes {
        let Ok(r) = net.endpoint(n).get("/metrics") else {
            continue;
        };
        for line in r.text().lines() {
            let Some(rest) = line.strip_prefix("lcbft_net_message_bytes_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once('}') else {
                continue;
            };
            if !labels.contains("direction=\"sent\"") {
                continue;
            }
            let layer = labels
                .split(',')
                .find_map(|l| l.strip_prefix("layer=\""))
                .map(|l| l.trim_end_matches('"').to_owned());
            let value = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok());
            if let (Some(layer), Some(value)) = (layer, value) {
                *out.entry(layer).or_insert(0.0) += value;
            }
        }
    }
    out
}

/// (committed/s, latency ms) for one latency figure of every result.
fn latency_series(results: &[Value], which: &str, q: &str) -> Vec<(f64, f64)> {
    results
        .iter()
        .filter_map(|v| {
            let c = &v["committed_per_s"];
            let x = c["local"].as_f64().unwrap_or(0.0) + c["global"].as_f64().unwrap_or(0.0);
            let y = v["latency_ms"][which][q].as_f64()?;
            Some((x, y))
        })
        .collect()
}

/// Throughput against latency, one line per layer and percentile.
fn sweep_chart(png: &Path, title: &str, results: &[Value]) -> anyhow::Result<()> {
    use plotters::style::{BLUE, CYAN, MAGENTA, RED};
    let lines = [
        ("local_commit", "p50", "local commit p50", BLUE),
        ("local_commit", "p99", "local commit p99", CYAN),
        ("global_commit", "p50", "global commit p50", RED),
        ("global_commit", "p99", "global commit p99", MAGENTA),
    ]
    .into_iter()
    .map(|(w, q, label, color)| Line::measured(label, color, latency_series(results, w, q)))
    .collect::<Vec<_>>();
    let axes = Axes {
        title,
        x: "committed traces/s (local + global)",
        y: "latency from submission (ms)",
    };
    plot::draw(png, &axes, &lines)
}
