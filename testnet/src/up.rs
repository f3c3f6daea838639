//! `up`: start a testnet, watch it, optionally load it, stop it, summarise and check it.

use crate::check;
use crate::emulate;
use crate::load::Load;
use crate::observe::Snapshot;
use crate::progress::Progress;
use crate::session::{self, Session};
use crate::summary;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Args {
    pub dir: Option<PathBuf>,
    pub duration: Option<u64>,
    pub netns: bool,
    pub load: Option<f64>,
    pub json: bool,
    /// `ARCH:NODE[,NODE..]`: run those nodes' cross-built binary under qemu.
    pub emulate: Vec<String>,
    /// `ARCH=PATH`: the binary to emulate (default: the cross build in the target dir).
    pub emulate_bin: Vec<String>,
}

/// SIGINT and SIGTERM set the returned flag instead of killing us, so the nodes get stopped;
/// a second one exits at once (`lcbft-testnet down` cleans up after that).
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// After the load stops, give pending traces this long to commit before the final look ...
const SETTLE: Duration = Duration::from_secs(4);
/// ... and then up to this much longer for the last local blocks to be anchored (a local
/// commit reaches the global chain a few paced global blocks later).
const SETTLE_ANCHORS: Duration = Duration::from_secs(20);

pub fn run(a: Args) -> anyhow::Result<bool> {
    let bin = crate::procs::lcbft_bin()?;
    if a.netns {
        crate::netns::preflight()?;
    }
    if let Some(r) = a.load
        && !(r > 0.0 && r <= 100_000.0)
    {
        anyhow::bail!("--load {r}: give a rate in traces per second, above 0 and at most 100000");
    }
    let plan = emulate::Plan::parse(&a.emulate)?;
    let emulate_bins = emulate::parse_bins(&a.emulate_bin)?;
    let stop = stop_flag()?;
    let dir = a.dir.clone().unwrap_or_else(session::fresh_dir);
    let net = session::open_or_init(&dir, a.netns)?;
    plan.check(&net.topo)?;
    let emulated = plan.resolve(&bin, &emulate_bins)?;
    let started = Instant::now();
    let deadline = a.duration.map(|s| started + Duration::from_secs(s));
    let mut s = Session::start_emulating(net, a.netns, bin.clone(), emulated)?;
    let mut progress = Progress::new();
    for (name, e) in &s.emulated {
        progress.note(&format!(
            "{name} runs the {} binary under {} ({})",
            e.arch.as_str(),
            e.arch.qemu().0,
            e.bin.display()
        ));
    }
    progress.note(&format!(
        "testnet {} ({} nodes, {}): logs in nodes/*/node.log{}",
        s.net.root.display(),
        s.net.topo.nodes.len(),
        if a.netns {
            "one network namespace each"
        } else {
            "loopback"
        },
        if deadline.is_some() {
            ""
        } else {
            "; Ctrl-C stops it"
        }
    ));
    let over = |stop: &AtomicBool| {
        stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
    };

    // Wait for the mesh (at most a minute) before loading it.
    let mut start_snap = None;
    while start_snap.is_none() && !over(&stop) && started.elapsed() < Duration::from_secs(60) {
        let snap = Snapshot::take(&s.net, false);
        progress.update(&format!("starting: {}", summary::line(&s.net, &snap, None)));
        let (have, want) = snap.links(&s.net);
        if snap.up() == s.net.topo.nodes.len() && have >= want {
            start_snap = Some(snap);
        } else {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let start_snap = match start_snap {
        Some(snap) => {
            progress.note(&format!(
                "all nodes up and connected after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            snap
        }
        None => {
            progress.note("warning: not every node is up and connected; going on anyway");
            Snapshot::take(&s.net, false)
        }
    };
    let start_heights = summary::start_heights(&s.net, &start_snap);
    let load = match a.load {
        Some(rate) if !over(&stop) => Some(Load::start(&s.net, rate)?),
        _ => None,
    };
    let mut last = (Instant::now(), 0u64);
    while !over(&stop) {
        std::thread::sleep(Duration::from_millis(1000));
        for (name, how) in s.reap() {
            progress.note(&format!(
                "node {name} exited ({how}); see nodes/{name}/node.log"
            ));
        }
        let snap = Snapshot::take(&s.net, true);
        let rate = load.as_ref().map(|l| {
            let acc = l.stats.accepted.load(Ordering::Relaxed);
            let r = (acc - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), acc);
            r
        });
        progress.update(&summary::line(&s.net, &snap, rate));
    }
    let load_seconds = load
        .as_ref()
        .map_or(0.0, |l| l.started.elapsed().as_secs_f64());
    let stats = load.map(Load::stop);
    if !stop.load(Ordering::Relaxed) && stats.is_some() {
        progress.update("letting pending traces commit");
        std::thread::sleep(SETTLE);
        progress.update("letting the last local blocks be anchored");
        let until = Instant::now() + SETTLE_ANCHORS;
        while !stop.load(Ordering::Relaxed)
            && Instant::now() < until
            && !anchored_to_top(&s.net, &Snapshot::take(&s.net, false))
        {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    progress.update("checking the chains");
    let end = Snapshot::take(&s.net, true);
    let report = check::run(&s.net, Some(&bin));
    let seconds = started.elapsed().as_secs_f64();
    progress.update("stopping the nodes");
    s.shutdown();
    progress.finish();
    let run = summary::Run {
        net: &s.net,
        emulated: &s.emulated,
        start: &start_heights,
        end: &end,
        stats: stats.as_deref(),
        report: &report,
        seconds,
        load_seconds,
    };
    let out = summary::summary(&run);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_human(&out);
    }
    Ok(report.problems.is_empty())
}

/// Every local domain's highest committed block is anchored in the global chain.
fn anchored_to_top(net: &crate::net::Net, snap: &Snapshot) -> bool {
    let anchored = snap.anchored().unwrap_or_default();
    net.topo
        .domain_names()
        .iter()
        .filter(|d| *d != "global")
        .all(|d| {
            snap.heights(d)
                .is_none_or(|h| anchored.get(d).is_some_and(|&a| a >= h.max))
        })
}

fn print_human(v: &serde_json::Value) {
    let layer = |l: &serde_json::Value| {
        format!(
            "height {}..{}, {} commits, {} view changes",
            l["height_min"], l["height_max"], l["commits"], l["view_changes"]
        )
    };
    println!(
        "testnet {} ({}s, {})",
        v["dir"].as_str().unwrap_or(""),
        v["seconds"],
        v["mode"].as_str().unwrap_or("")
    );
    println!("  global: {}", layer(&v["global"]));
    println!("  local:  {}", layer(&v["local"]));
    println!("  anchors: {}", v["anchors"]);
    let t = &v["traces"];
    println!(
        "  traces: {} submitted, {} committed ({:.1}/s)",
        t["submitted"],
        t["committed"],
        t["committed_per_s"].as_f64().unwrap_or(0.0)
    );
    for e in v["emulated"].as_array().into_iter().flatten() {
        for (d, h) in e["domains"].as_object().into_iter().flatten() {
            println!(
                "  emulated {} ({}): {d} height {} of {} ({} behind)",
                e["node"].as_str().unwrap_or(""),
                e["arch"].as_str().unwrap_or(""),
                h["height"],
                h["domain_height"],
                h["behind"]
            );
        }
    }
    println!("  safety: {}", v["safety"].as_str().unwrap_or(""));
    for n in v["check"]["notes"].as_array().into_iter().flatten() {
        println!("  note: {}", n.as_str().unwrap_or(""));
    }
}
