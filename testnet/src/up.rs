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

/// When watching ends: at SIGINT or SIGTERM, or at the end of `--duration`.
struct Until {
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Until {
    /// A signal asked us to stop.
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A signal asked us to stop, or the deadline passed.
    fn over(&self) -> bool {
        self.stopped() || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

pub fn run(a: Args) -> anyhow::Result<bool> {
    let bin = crate::procs::lcbft_bin()?;
    check_args(&a)?;
    let plan = emulate::Plan::parse(&a.emulate)?;
    let emulate_bins = emulate::parse_bins(&a.emulate_bin)?;
    let stop = stop_flag()?;
    let dir = a.dir.clone().unwrap_or_else(session::fresh_dir);
    let net = session::open_or_init(&dir, a.netns)?;
    plan.check(&net.topo)?;
    let emulated = plan.resolve(&bin, &emulate_bins)?;
    let started = Instant::now();
    let until = Until {
        stop,
        deadline: a.duration.map(|s| started + Duration::from_secs(s)),
    };
    let mut s = Session::start_emulating(net, a.netns, bin.clone(), emulated)?;
    let mut progress = Progress::new();
    announce(&progress, &s, a.netns, until.deadline.is_some());
    let start_snap = wait_connected(&s, &mut progress, started, &until);
    let start_heights = summary::start_heights(&s.net, &start_snap);
    let load = match a.load {
        Some(rate) if !until.over() => Some(Load::start(&s.net, rate)?),
        _ => None,
    };
    watch(&mut s, &mut progress, load.as_ref(), &until);
    let load_seconds = load
        .as_ref()
        .map_or(0.0, |l| l.started.elapsed().as_secs_f64());
    let stats = load.map(Load::stop);
    if !until.stopped() && stats.is_some() {
        settle(&s, &mut progress, &until);
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

/// Refuse what cannot work before touching anything: netns mode without its prerequisites,
/// a load rate out of range.
fn check_args(a: &Args) -> anyhow::Result<()> {
    if a.netns {
        crate::netns::preflight()?;
    }
    if let Some(r) = a.load
        && !(r > 0.0 && r <= 100_000.0)
    {
        anyhow::bail!("--load {r}: give a rate in traces per second, above 0 and at most 100000");
    }
    Ok(())
}

/// Say what runs where: the emulated nodes, the directory, the mode, how to stop.
fn announce(progress: &Progress, s: &Session, netns: bool, has_deadline: bool) {
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
        if netns {
            "one network namespace each"
        } else {
            "loopback"
        },
        if has_deadline {
            ""
        } else {
            "; Ctrl-C stops it"
        }
    ));
}

/// Wait for the mesh (at most a minute from `started`) before loading it; returns the
/// snapshot that showed every node up and connected, or else a fresh one.
fn wait_connected(
    s: &Session,
    progress: &mut Progress,
    started: Instant,
    until: &Until,
) -> Snapshot {
    let mut start_snap = None;
    while start_snap.is_none() && !until.over() && started.elapsed() < Duration::from_secs(60) {
        let snap = Snapshot::take(&s.net, false);
        progress.update(&format!("starting: {}", summary::line(&s.net, &snap, None)));
        let (have, want) = snap.links(&s.net);
        if snap.up() == s.net.topo.nodes.len() && have >= want {
            start_snap = Some(snap);
        } else {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    match start_snap {
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
    }
}

/// Until the run is over: every second, report nodes that exited and show a status line
/// (with the accepted load rate, if there is a load).
fn watch(s: &mut Session, progress: &mut Progress, load: Option<&Load>, until: &Until) {
    let mut last = (Instant::now(), 0u64);
    while !until.over() {
        std::thread::sleep(Duration::from_millis(1000));
        for (name, how) in s.reap() {
            progress.note(&format!(
                "node {name} exited ({how}); see nodes/{name}/node.log"
            ));
        }
        let snap = Snapshot::take(&s.net, true);
        let rate = load.map(|l| {
            let acc = l.stats.accepted.load(Ordering::Relaxed);
            let r = (acc - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), acc);
            r
        });
        progress.update(&summary::line(&s.net, &snap, rate));
    }
}

/// After the load: let pending traces commit, then wait (a while, unless stopped) for the
/// last local blocks to be anchored.
fn settle(s: &Session, progress: &mut Progress, until: &Until) {
    progress.update("letting pending traces commit");
    std::thread::sleep(SETTLE);
    progress.update("letting the last local blocks be anchored");
    let end = Instant::now() + SETTLE_ANCHORS;
    while !until.stopped()
        && Instant::now() < end
        && !anchored_to_top(&s.net, &Snapshot::take(&s.net, false))
    {
        std::thread::sleep(Duration::from_millis(250));
    }
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
