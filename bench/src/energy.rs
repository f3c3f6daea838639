//! `lcbft-bench energy`: what light traffic and idleness cost on the default testnet, for each
//! pacing setting. One fresh network per setting (its nodes' `[consensus] propose_delay` and
//! `min_block_interval` rewritten before start); on it, each offered rate in turn for
//! `--duration` seconds, each after a quiet `--settle`.
//!
//! Per point: CPU per role as percent of one core per node and as CPU-ms per committed trace
//! (`/proc/<pid>/stat`, utime+stime), blocks per second per layer (a local domain's on its
//! own), and submission -> local commit p50/p99 (the throughput watcher's method: the edge's
//! committed chain, polled every 50 ms). Prints one JSON line with every point; with
//! `--results`, also `energy.csv`, `energy.md` and the energy-latency curve `energy.png`.

use crate::plot::{self, Axes, Line};
use crate::throughput::watch;
use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use lcbft_testnet::init::{LOOPBACK_CONFIG, init};
use lcbft_testnet::load::{Load, Options};
use lcbft_testnet::net::Net;
use lcbft_testnet::session::Session;
use lcbft_testnet::topology::{Role, Shape};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(ClapArgs)]
pub struct Args {
    /// Offered loads, traces per second over the whole testnet (0: idle).
    #[arg(long, value_delimiter = ',', default_value = "0,1,5,20,100")]
    rates: Vec<f64>,
    /// Pacing settings as `DELAY_MS:INTERVAL_MS` (`0:0` proposes as soon as anything waits).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0:0,100:250,200:500,500:1000"
    )]
    pacing: Vec<String>,
    /// Seconds measured per rate.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds without load before each measurement (pending blocks finish, the chain goes
    /// quiet) and after the nodes are up.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Where the networks go; default: a fresh temporary directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write energy.csv, energy.md and energy.png here.
    #[arg(long)]
    results: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pacing {
    delay_ms: u64,
    interval_ms: u64,
}

impl Pacing {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Pacing> {
        let (d, i) = s
            .split_once(':')
            .with_context(|| format!("--pacing {s}: give DELAY_MS:INTERVAL_MS, e.g. 200:500"))?;
        let ms = |x: &str| {
            x.trim()
                .parse::<u64>()
                .ok()
                .filter(|v| *v <= 10_000)
                .with_context(|| format!("--pacing {s}: `{x}` is not a number of ms up to 10000"))
        };
        Ok(Pacing {
            delay_ms: ms(d)?,
            interval_ms: ms(i)?,
        })
    }

    pub(crate) fn label(self) -> String {
        format!("{}:{}", self.delay_ms, self.interval_ms)
    }
}

const ROLES: [Role; 3] = [Role::Device, Role::Edge, Role::Cloud];
/// Latency samples wanted per point.
const SAMPLES: f64 = 300.0;

pub fn run(a: &Args) -> anyhow::Result<()> {
    let pacings = a
        .pacing
        .iter()
        .map(|s| Pacing::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if pacings.is_empty() || a.rates.is_empty() {
        bail!("give at least one --pacing and one --rates value");
    }
    if let Some(r) = a.rates.iter().find(|r| !(**r >= 0.0 && **r <= 10_000.0)) {
        bail!("rate {r}: give traces per second from 0 to 10000");
    }
    if a.duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    let out = crate::throughput::out_dir(a.out.as_deref(), "lcbft-energy")?;
    let stop = lcbft_testnet::up::stop_flag()?;
    let mut points = Vec::new();
    for p in &pacings {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let dir = out.join(format!("pacing-{}-{}", p.delay_ms, p.interval_ms));
        points.extend(one_setting(a, *p, &dir, &stop)?);
    }
    let v = json!({
        "topology": "default",
        "duration_s": a.duration,
        "points": points,
    });
    println!("{}", serde_json::to_string(&v)?);
    if let Some(dir) = &a.results {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_tables(dir, &points)?;
        draw(&dir.join("energy.png"), &points)?;
        eprintln!(
            "wrote energy.csv, energy.md, energy.png in {}",
            dir.display()
        );
    }
    Ok(())
}

/// Every node's pacing, written into its config before the network starts.
pub(crate) fn set_pacing(dir: &Path, net: &Net, p: Pacing) -> anyhow::Result<()> {
    for n in &net.topo.nodes {
        let path = n.dir(dir).join(LOOPBACK_CONFIG);
        let mut cfg = lcbft_node::config::Config::load(&path, Vec::new())
            .with_context(|| format!("cannot read {}", path.display()))?;
        cfg.consensus.propose_delay = Duration::from_millis(p.delay_ms);
        cfg.consensus.min_block_interval = Duration::from_millis(p.interval_ms);
        std::fs::write(&path, cfg.to_toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn one_setting(a: &Args, p: Pacing, dir: &Path, stop: &AtomicBool) -> anyhow::Result<Vec<Value>> {
    if dir.exists() {
        bail!("{} exists: pick another --out", dir.display());
    }
    let bin = lcbft_testnet::procs::lcbft_bin()?;
    init(dir, Shape::default(), None)
        .with_context(|| format!("cannot init a testnet in {}", dir.display()))?;
    let net = Net::open(dir, false)?;
    set_pacing(dir, &net, p)?;
    let tag = format!("[pacing {}]", p.label());
    eprintln!(
        "{tag} starting {} nodes in {}",
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
    let net = session.net.clone();
    let mut points = Vec::new();
    for &rate in &a.rates {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        sleep(Duration::from_secs(a.settle), stop);
        eprintln!("{tag} {rate} traces/s for {} s", a.duration);
        let mut v = one_rate(a, &net, rate, stop)?;
        v["propose_delay_ms"] = json!(p.delay_ms);
        v["min_block_interval_ms"] = json!(p.interval_ms);
        eprintln!("{tag} {v}");
        points.push(v);
    }
    drop(session);
    Ok(points)
}

pub(crate) fn sleep(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU seconds of every node, by name.
pub(crate) fn cpu(net: &Net) -> BTreeMap<String, f64> {
    net.topo
        .nodes
        .iter()
        .filter_map(|n| {
            let (_, s) = lcbft_testnet::procs::usage(net.pid(n)?)?;
            Some((n.name.clone(), s))
        })
        .collect()
}

/// Committed height of every domain: a local domain's from its edge, the global one's from
/// the first cloud. One request each, so an idle measurement is not disturbed by polling.
fn heights(net: &Net) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for n in &net.topo.nodes {
        let domain = match (n.role, n.local) {
            (Role::Edge, Some(d)) => format!("local/{d}"),
            (Role::Cloud, _) if !out.contains_key("global") => "global".to_owned(),
            _ => continue,
        };
        let Some(status) = net.endpoint(n).get_json("/v1/status") else {
            continue;
        };
        let height = status["domains"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["domain"] == domain.as_str())
            .and_then(|d| d["committed_height"].as_u64());
        if let Some(h) = height {
            out.insert(domain, h);
        }
    }
    out
}

/// Blocks, traces committed and local-commit latency over one measured period, and every
/// node's CPU seconds at its start and end.
struct Seen {
    seconds: f64,
    cpu_before: BTreeMap<String, f64>,
    cpu_after: BTreeMap<String, f64>,
    local_blocks: u64,
    global_blocks: u64,
    traces: u64,
    window: f64,
    latency: Value,
}

fn one_rate(a: &Args, net: &Net, rate: f64, stop: &AtomicBool) -> anyhow::Result<Value> {
    let seen = if rate > 0.0 {
        measure_loaded(a, net, rate, stop)?
    } else {
        measure_idle(a, net, stop)
    };
    let domains = net.topo.domains.len().max(1) as f64;
    let (pct, ms_per_trace) = cpu_by_role(net, &seen);
    Ok(json!({
        "rate": rate,
        "seconds": round(seen.seconds, 10.0),
        "committed_per_s": round(seen.traces as f64 / seen.window, 10.0),
        "cpu_pct_per_node": pct,
        "cpu_ms_per_trace_per_node": ms_per_trace,
        "blocks_per_s": {
            "local_per_domain": round(seen.local_blocks as f64 / seen.window / domains, 100.0),
            "global": round(seen.global_blocks as f64 / seen.window, 100.0),
        },
        "local_commit_ms": seen.latency,
    }))
}

/// `rate` traces/s for `--duration`, then `--settle` for what is still pending.
fn measure_loaded(a: &Args, net: &Net, rate: f64, stop: &AtomicBool) -> anyhow::Result<Seen> {
    // The watcher polls the edges every 50 ms (a few status requests a second each): a
    // small part of the edge's figure under load, so it runs only then.
    let watcher = watch::Watcher::start(net)?;
    let cpu_before = cpu(net);
    watcher.mark_start();
    let started = Instant::now();
    let load = Load::start_with(net, &Options::sampled(rate, a.duration, SAMPLES))?;
    sleep(Duration::from_secs(a.duration), stop);
    let cpu_after = cpu(net);
    let seconds = started.elapsed().as_secs_f64();
    watcher.mark_end();
    let stats = load.stop();
    // Traces still pending when the load stopped count in latency, not in rates.
    sleep(Duration::from_secs(a.settle), stop);
    let obs = watcher.stop();
    let (local, global) = (obs.layer("local"), obs.layer("global"));
    Ok(Seen {
        seconds,
        cpu_before,
        cpu_after,
        local_blocks: local.blocks,
        global_blocks: global.blocks,
        traces: local.traces + global.traces,
        window: obs.window_seconds().max(0.001),
        latency: obs.latencies(&stats.samples()).local,
    })
}

/// `--duration` without load: blocks from the committed heights, no traces, no latency.
fn measure_idle(a: &Args, net: &Net, stop: &AtomicBool) -> Seen {
    let h0 = heights(net);
    let cpu_before = cpu(net);
    let started = Instant::now();
    sleep(Duration::from_secs(a.duration), stop);
    let cpu_after = cpu(net);
    let seconds = started.elapsed().as_secs_f64();
    let h1 = heights(net);
    let grown = |local: bool| -> u64 {
        h1.iter()
            .filter(|(d, _)| (*d != "global") == local)
            .map(|(d, h)| h.saturating_sub(h0.get(d).copied().unwrap_or(*h)))
            .sum()
    };
    Seen {
        seconds,
        cpu_before,
        cpu_after,
        local_blocks: grown(true),
        global_blocks: grown(false),
        traces: 0,
        window: seconds,
        latency: Value::Null,
    }
}

/// Per role, the mean node's CPU as percent of one core and as ms per committed trace.
fn cpu_by_role(net: &Net, seen: &Seen) -> (Map<String, Value>, Map<String, Value>) {
    let mut pct = Map::new();
    let mut ms_per_trace = Map::new();
    for role in ROLES {
        let spent: Vec<f64> = net
            .topo
            .nodes
            .iter()
            .filter(|n| n.role == role)
            .filter_map(|n| Some(seen.cpu_after.get(&n.name)? - seen.cpu_before.get(&n.name)?))
            .collect();
        if spent.is_empty() {
            continue;
        }
        let mean = spent.iter().sum::<f64>() / spent.len() as f64;
        let name = role.as_str().to_owned();
        pct.insert(
            name.clone(),
            json!(round(mean / seen.seconds * 100.0, 100.0)),
        );
        let per_trace = (seen.traces > 0).then(|| round(mean / seen.traces as f64 * 1e3, 1e3));
        ms_per_trace.insert(name, json!(per_trace));
    }
    (pct, ms_per_trace)
}

fn round(x: f64, k: f64) -> f64 {
    (x * k).round() / k
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x}"),
        None => String::new(),
    }
}

fn write_tables(dir: &Path, points: &[Value]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "delay_ms,interval_ms,rate,committed_per_s,device_pct,edge_pct,cloud_pct,\
         device_ms_per_trace,edge_ms_per_trace,cloud_ms_per_trace,local_blocks_per_s,\
         global_blocks_per_s,local_p50_ms,local_p99_ms\n",
    );
    let mut md = String::from(
        "| pacing (delay:interval ms) | traces/s | committed/s | device % | edge % | cloud % \
         | device ms/trace | edge ms/trace | local blocks/s (per domain) | global blocks/s \
         | local p50 ms | local p99 ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for v in points {
        let c = &v["cpu_pct_per_node"];
        let t = &v["cpu_ms_per_trace_per_node"];
        let b = &v["blocks_per_s"];
        let l = &v["local_commit_ms"];
        let row = [
            num(&v["propose_delay_ms"]),
            num(&v["min_block_interval_ms"]),
            num(&v["rate"]),
            num(&v["committed_per_s"]),
            num(&c["device"]),
            num(&c["edge"]),
            num(&c["cloud"]),
            num(&t["device"]),
            num(&t["edge"]),
            num(&t["cloud"]),
            num(&b["local_per_domain"]),
            num(&b["global"]),
            num(&l["p50"]),
            num(&l["p99"]),
        ];
        writeln!(csv, "{}", row.join(","))?;
        writeln!(
            md,
            "| {}:{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[10],
            row[11],
            row[12],
            row[13]
        )?;
    }
    std::fs::write(dir.join("energy.csv"), csv)?;
    std::fs::write(dir.join("energy.md"), md)?;
    Ok(())
}

/// The energy-latency curve: for each loaded rate, one line through the pacing settings from
/// a device's CPU against its local-commit p50; the edge's at 20 traces/s beside it.
fn draw(png: &Path, points: &[Value]) -> anyhow::Result<()> {
    use plotters::style::{BLUE, CYAN, GREEN, MAGENTA, RED};
    let colors = [CYAN, BLUE, GREEN, MAGENTA, plot::ORANGE];
    let mut rates: Vec<f64> = points
        .iter()
        .filter_map(|v| v["rate"].as_f64())
        .filter(|r| *r > 0.0)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let series = |rate: f64, role: &str| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|v| v["rate"].as_f64() == Some(rate))
            .filter_map(|v| {
                let x = v["local_commit_ms"]["p50"].as_f64()?;
                let y = v["cpu_pct_per_node"][role].as_f64()?;
                Some((x, y))
            })
            .collect()
    };
    let mut lines: Vec<Line> = rates
        .iter()
        .zip(colors.iter().cycle())
        .map(|(r, c)| Line::measured(format!("device, {r} traces/s"), *c, series(*r, "device")))
        .collect();
    if rates.contains(&20.0) {
        lines.push(Line::measured(
            "edge, 20 traces/s",
            RED,
            series(20.0, "edge"),
        ));
    }
    let axes = Axes {
        title: "lcbft energy vs latency by pacing (default testnet)",
        x: "submission -> local commit p50 (ms)",
        y: "CPU, % of one core per node",
    };
    plot::draw(png, &axes, &lines)
}
