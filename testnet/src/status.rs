//! `status`: one table row per node and domain, with the process's memory and CPU.

use crate::emulate::Emulated;
use crate::net::Net;
use crate::observe::Snapshot;
use crate::procs;
use crate::topology::NodeSpec;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn short(peer: &str) -> String {
    let n = peer.len();
    if n > 8 {
        format!("..{}", &peer[n - 6..])
    } else {
        peer.to_owned()
    }
}

/// One reading of the network: the nodes' answers, and their processes' CPU use over a short
/// window.
struct Sample<'a> {
    snap: Snapshot,
    /// Per pid: (RSS, CPU seconds) at the start of the window.
    before: BTreeMap<i32, (u64, f64)>,
    /// The window's length in seconds.
    secs: f64,
    /// Peer id -> node name, to name the leaders.
    names: BTreeMap<&'a str, &'a str>,
}

impl<'a> Sample<'a> {
    fn take(net: &'a Net) -> Sample<'a> {
        // CPU is measured over a short window, so the figure is current, not a lifetime average.
        let before: BTreeMap<i32, (u64, f64)> = net
            .pids()
            .into_iter()
            .filter_map(|p| Some((p, procs::usage(p)?)))
            .collect();
        let t0 = Instant::now();
        let snap = Snapshot::take(net, false);
        let wait = Duration::from_millis(500).saturating_sub(t0.elapsed());
        std::thread::sleep(wait);
        let secs = t0.elapsed().as_secs_f64();
        let names: BTreeMap<&str, &str> = net
            .topo
            .nodes
            .iter()
            .map(|n| (n.peer_id.as_str(), n.name.as_str()))
            .collect();
        Sample {
            snap,
            before,
            secs,
            names,
        }
    }

    /// The RSS and CPU% cells of process `pid` (`-` for what is unknown).
    fn usage_cells(&self, pid: Option<i32>) -> (String, String) {
        pid.and_then(|p| {
            let (rss, now) = procs::usage(p)?;
            let cpu = self
                .before
                .get(&p)
                .map(|(_, b)| (now - b) / self.secs * 100.0);
            Some((
                format!("{}M", rss / (1 << 20)),
                cpu.map_or("-".into(), |c| format!("{c:.1}")),
            ))
        })
        .unwrap_or(("-".into(), "-".into()))
    }
}

pub fn run(net: &Net) -> anyhow::Result<()> {
    net.require_running()?;
    let sample = Sample::take(net);
    println!(
        "{:<9} {:<6} {:>7} {:<8} {:>10} {:>5} {:>7} {:<9} {:>5} {:>7} {:>6}",
        "NODE",
        "ROLE",
        "PID",
        "DOMAIN",
        "VIEW/RND",
        "TERM",
        "HEIGHT",
        "LEADER",
        "PEERS",
        "RSS",
        "CPU%"
    );
    let emulated = procs::read_state(&net.root)
        .map(|s| s.emulated)
        .unwrap_or_default();
    for n in &net.topo.nodes {
        print_node(net, &sample, n, emulated.contains_key(&n.name));
    }
    print_notes(&sample.snap, &emulated);
    Ok(())
}

/// The rows of node `n`: one per domain it reports, or a single row of `-` if it does not
/// answer.
fn print_node(net: &Net, sample: &Sample, n: &NodeSpec, is_emulated: bool) {
    let obs = sample.snap.get(&n.name);
    // An emulated node is marked by a `*` after its name (explained below the table).
    let name = if is_emulated {
        format!("{}*", n.name)
    } else {
        n.name.clone()
    };
    let pid = obs.and_then(|o| o.pid);
    let (rss, cpu) = sample.usage_cells(pid);
    let pid_s = pid.map_or("down".to_owned(), |p| p.to_string());
    let status = obs.and_then(|o| o.status.as_ref());
    let Some(status) = status else {
        println!(
            "{:<9} {:<6} {:>7} {:<8} {:>10} {:>5} {:>7} {:<9} {:>5} {:>7} {:>6}",
            name,
            n.role.as_str(),
            pid_s,
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            rss,
            cpu
        );
        return;
    };
    for d in &status.domains {
        // A local view packs term and round; the term has its own column.
        let view = if d.domain == "global" {
            d.view
        } else {
            d.view & 0xffff_ffff
        };
        let members = net.topo.members(&d.domain).len().saturating_sub(1);
        let leader = sample
            .names
            .get(d.leader_peer.as_str())
            .map_or_else(|| short(&d.leader_peer), |s| (*s).to_owned());
        println!(
            "{:<9} {:<6} {:>7} {:<8} {:>10} {:>5} {:>7} {:<9} {:>5} {:>7} {:>6}",
            name,
            n.role.as_str(),
            pid_s,
            d.domain,
            view,
            d.term,
            d.committed_height,
            leader,
            format!("{}/{members}", d.peers.len()),
            rss,
            cpu
        );
    }
}

/// The lines below the table: missing blocks, emulated nodes, anchored heights.
fn print_notes(snap: &Snapshot, emulated: &BTreeMap<String, Emulated>) {
    for (name, d) in snap
        .nodes
        .iter()
        .filter_map(|o| Some((o.name.as_str(), o.status.as_ref()?)))
        .flat_map(|(name, st)| st.domains.iter().map(move |d| (name, d)))
    {
        if let Some(block) = &d.missing_block {
            println!(
                "warning: {name} in {} lacks block {block}, which its safety state names; until a member sends it, it cannot vote there",
                d.domain
            );
        }
    }
    for (name, e) in emulated {
        println!(
            "* {name} is emulated: the {} binary under {} (its RSS and CPU include qemu)",
            e.arch.as_str(),
            e.arch.qemu().0
        );
    }
    if let Some(a) = snap.anchored() {
        let parts: Vec<String> = a.iter().map(|(d, h)| format!("{d} up to {h}")).collect();
        println!("anchored: {}", parts.join(", "));
    }
}
