//! `lcbft-bench soak`: the default testnet under a steady load for a long time, to show that
//! nothing grows with the age of the network. Every few seconds it samples each node's RSS,
//! CPU, open files and disk use and the domains' committed heights into a CSV; at the end it
//! draws RSS and disk per role over time and prints one JSON line with, per role, RSS at the
//! start and end of the steady state and its slope (least squares, after the warm-up), and
//! the disk bytes each role adds per committed trace.

use crate::energy::{cpu, sleep};
use crate::plot::{self, Axes, Line};
use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use lcbft_testnet::init::init;
use lcbft_testnet::load::{Load, Options};
use lcbft_testnet::net::Net;
use lcbft_testnet::session::Session;
use lcbft_testnet::topology::{Role, Shape};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(ClapArgs)]
pub struct Args {
    /// How long to run: seconds, or with a unit (`90s`, `30m`, `2h`).
    #[arg(long, value_parser = seconds)]
    duration: u64,
    /// Offered load, traces per second over the whole testnet.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    every: u64,
    /// Seconds at the start left out of the slopes (caches and pools filling up); default a
    /// tenth of the run.
    #[arg(long)]
    warmup: Option<u64>,
    /// Where the network goes; default: a fresh temporary directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where soak.csv and soak.png go.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
}

fn seconds(s: &str) -> Result<u64, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: give seconds, or a number with s, m or h"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{s}`: the unit must be s, m or h")),
    };
    Ok(n * factor)
}

/// One node at one instant.
struct Sample {
    t: f64,
    node: String,
    role: Role,
    rss: u64,
    cpu_s: f64,
    fds: usize,
    disk: u64,
}

const ROLES: [Role; 3] = [Role::Device, Role::Edge, Role::Cloud];

pub fn run(a: &Args) -> anyhow::Result<()> {
    let warmup = warmup(a)?;
    let dir = crate::throughput::out_dir(a.out.as_deref(), "lcbft-soak")?.join("net");
    std::fs::create_dir_all(&a.results)
        .with_context(|| format!("cannot create {}", a.results.display()))?;
    let (session, stop) = start(&dir)?;
    let net = session.net.clone();
    let csv_path = a.results.join("soak.csv");
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    writeln!(
        csv,
        "t_s,node,role,rss_mb,cpu_s,open_files,disk_mb,traces_committed"
    )?;
    let load = Load::start_with(
        &net,
        &Options {
            rate: a.rate,
            keep_ids: false,
            sample_every: 0,
        },
    )?;
    eprintln!(
        "soak: {} traces/s for {} s in {}",
        a.rate,
        a.duration,
        dir.display()
    );
    let Recorded { samples, committed } = record(a, &net, &dir, &mut csv, &stop)?;
    let cpu_end = cpu(&net);
    let stats = load.stop();
    drop(session);
    let png = a.results.join("soak.png");
    draw(&png, &samples)?;
    let v = summary(a, warmup as f64, &samples, &committed, &cpu_end, &stats);
    println!("{}", serde_json::to_string(&v)?);
    eprintln!("wrote {} and {}", csv_path.display(), png.display());
    Ok(())
}

/// The warm-up in seconds, once the arguments are known to leave a steady state to measure.
fn warmup(a: &Args) -> anyhow::Result<u64> {
    if a.duration < 2 * a.every.max(1) || a.every == 0 {
        bail!("--duration must cover at least two samples of --every seconds (at least 1)");
    }
    if !(a.rate > 0.0 && a.rate <= 10_000.0) {
        bail!("--rate: give traces per second, above 0 and at most 10000");
    }
    let warmup = a.warmup.unwrap_or(a.duration / 10);
    if warmup + 2 * a.every > a.duration {
        bail!("--warmup leaves fewer than two samples of steady state");
    }
    Ok(warmup)
}

/// A default testnet in `dir`, its nodes up and connected, and the flag Ctrl-C sets.
fn start(dir: &Path) -> anyhow::Result<(Session, Arc<AtomicBool>)> {
    init(dir, Shape::default(), None)
        .with_context(|| format!("cannot init a testnet in {}", dir.display()))?;
    let net = Net::open(dir, false)?;
    let stop = lcbft_testnet::up::stop_flag()?;
    let bin = lcbft_testnet::procs::lcbft_bin()?;
    let session = Session::start(net, false, bin)?;
    if session.wait_ready(Duration::from_secs(60), &stop).is_none() {
        bail!(
            "the nodes were not all up and connected within 60 s: see {}/nodes/*/node.log",
            dir.display()
        );
    }
    Ok((session, stop))
}

/// Every node's samples, and the traces committed at each instant sampled.
struct Recorded {
    samples: Vec<Sample>,
    committed: Vec<(f64, u64)>,
}

/// Every `--every` seconds until `--duration` or a stop: each node's sample, also as a row of
/// `csv`, and the traces committed by then.
fn record(
    a: &Args,
    net: &Net,
    dir: &Path,
    csv: &mut std::fs::File,
    stop: &AtomicBool,
) -> anyhow::Result<Recorded> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut committed = Vec::new();
    while started.elapsed().as_secs() < a.duration && !stop.load(Ordering::Relaxed) {
        let t = started.elapsed().as_secs_f64();
        let traces = traces_committed(net);
        let now = sample(net, dir, t);
        for s in &now {
            writeln!(
                csv,
                "{:.1},{},{},{:.1},{:.2},{},{:.2},{traces}",
                s.t,
                s.node,
                s.role.as_str(),
                s.rss as f64 / 1048576.0,
                s.cpu_s,
                s.fds,
                s.disk as f64 / 1048576.0
            )?;
        }
        csv.flush()?;
        committed.push((t, traces));
        samples.extend(now);
        eprintln!("soak: {t:.0} s, {traces} traces committed");
        sleep(Duration::from_secs(a.every), stop);
    }
    Ok(Recorded { samples, committed })
}

/// Traces committed so far: each local domain's count at its edge plus the global count at
/// the first cloud (`lcbft_traces_committed_total`).
fn traces_committed(net: &Net) -> u64 {
    let mut total = 0.0;
    let mut cloud = false;
    for n in &net.topo.nodes {
        let domain = match (n.role, n.local) {
            (Role::Edge, Some(d)) => format!("local/{d}"),
            (Role::Cloud, _) if !cloud => {
                cloud = true;
                "global".to_owned()
            }
            _ => continue,
        };
        let Ok(r) = net.endpoint(n).get("/metrics") else {
            continue;
        };
        let want = format!("domain=\"{domain}\"");
        total += r
            .text()
            .lines()
            .filter(|l| l.starts_with("lcbft_traces_committed_total{") && l.contains(&want))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total as u64
}

fn sample(net: &Net, dir: &Path, t: f64) -> Vec<Sample> {
    let mut out = Vec::new();
    for n in &net.topo.nodes {
        let Some(pid) = net.pid(n) else { continue };
        let Some((_, cpu_s)) = lcbft_testnet::procs::usage(pid) else {
            continue;
        };
        let rss = crate::throughput::status_bytes(pid, "VmRSS:");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        out.push(Sample {
            t,
            node: n.name.clone(),
            role: n.role,
            rss,
            cpu_s,
            fds,
            disk: du(&n.dir(dir).join("data")),
        });
    }
    out
}

/// Bytes allocated to the files under `path` (as `du`: a file grown by `set_len` but not yet
/// written counts only for what it holds).
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Per role and instant, the mean over that role's nodes of `field`.
fn by_role(samples: &[Sample], role: Role, field: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    let mut at: BTreeMap<u64, (f64, f64, usize)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.role == role) {
        let e = at.entry((s.t * 10.0) as u64).or_insert((s.t, 0.0, 0));
        e.1 += field(s);
        e.2 += 1;
    }
    at.into_values()
        .map(|(t, sum, n)| (t, sum / n as f64))
        .collect()
}

/// Least-squares slope of `points` (y per x).
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn summary(
    a: &Args,
    warmup: f64,
    samples: &[Sample],
    committed: &[(f64, u64)],
    cpu_end: &BTreeMap<String, f64>,
    stats: &lcbft_testnet::load::Stats,
) -> Value {
    let steady = |p: &[(f64, f64)]| -> Vec<(f64, f64)> {
        p.iter().copied().filter(|(t, _)| *t >= warmup).collect()
    };
    let traces_at = |t: f64| {
        committed
            .iter()
            .min_by(|x, y| (x.0 - t).abs().total_cmp(&(y.0 - t).abs()))
            .map_or(0, |c| c.1)
    };
    let mut roles = serde_json::Map::new();
    for role in ROLES {
        let rss = steady(&by_role(samples, role, |s| s.rss as f64 / 1048576.0));
        let disk = steady(&by_role(samples, role, |s| s.disk as f64));
        let fds = steady(&by_role(samples, role, |s| s.fds as f64));
        let (Some(first), Some(last)) = (rss.first(), rss.last()) else {
            continue;
        };
        let traces = traces_at(last.0).saturating_sub(traces_at(first.0));
        // A cache filling up bends the curve: the last third says where it is heading.
        let tail_from = last.0 - (last.0 - first.0) / 3.0;
        let tail: Vec<(f64, f64)> = rss
            .iter()
            .copied()
            .filter(|(t, _)| *t >= tail_from)
            .collect();
        let disk_growth = disk.last().map_or(0.0, |d| d.1) - disk.first().map_or(0.0, |d| d.1);
        let round = |x: f64, k: f64| (x * k).round() / k;
        roles.insert(
            role.as_str().to_owned(),
            json!({
                "rss_mb_start": round(first.1, 10.0),
                "rss_mb_end": round(last.1, 10.0),
                "rss_mb_per_hour": slope(&rss).map(|s| round(s * 3600.0, 100.0)),
                "rss_mb_per_hour_last_third": slope(&tail).map(|s| round(s * 3600.0, 100.0)),
                "open_files_start": fds.first().map(|f| f.1.round()),
                "open_files_end": fds.last().map(|f| f.1.round()),
                "disk_bytes_per_trace": (traces > 0).then(|| round(disk_growth / traces as f64, 10.0)),
            }),
        );
    }
    let last = committed.last().copied().unwrap_or((0.0, 0));
    let cpu_total: f64 = cpu_end.values().sum();
    json!({
        "duration_s": a.duration,
        "rate": a.rate,
        "warmup_s": warmup,
        "samples": committed.len(),
        "offered": stats.submitted.load(Ordering::Relaxed),
        "traces_committed": last.1,
        "committed_per_s": if last.0 > 0.0 { (last.1 as f64 / last.0 * 10.0).round() / 10.0 } else { 0.0 },
        "cpu_s_all_nodes": (cpu_total * 10.0).round() / 10.0,
        "roles": roles,
    })
}

fn draw(png: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let colors = [
        plot::ORANGE,
        plotters::prelude::BLUE,
        plotters::prelude::RED,
    ];
    let mut lines = Vec::new();
    for (role, color) in ROLES.into_iter().zip(colors) {
        let minutes = |p: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
            p.into_iter().map(|(t, y)| (t / 60.0, y)).collect()
        };
        lines.push(Line::measured(
            format!("{} RSS (MiB)", role.as_str()),
            color,
            minutes(by_role(samples, role, |s| s.rss as f64 / 1048576.0)),
        ));
        lines.push(Line::predicted(
            format!("{} disk (MiB)", role.as_str()),
            color,
            minutes(by_role(samples, role, |s| s.disk as f64 / 1048576.0)),
        ));
    }
    plot::draw(
        png,
        &Axes {
            title: "lcbft soak: RSS (thick) and disk (thin) per node, mean per role",
            x: "minutes",
            y: "MiB",
        },
        &lines,
    )
}
