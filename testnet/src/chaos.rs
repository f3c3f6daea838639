//! `chaos`: fault scenarios against a testnet, each ending with `check`. Against a network
//! `up` runs in the directory, or else on a network this command starts and stops itself.

mod kill9;
mod long_down;

use crate::check;
use crate::load::Load;
use crate::net::Net;
use crate::observe::Snapshot;
use crate::progress::Progress;
use crate::session::{self, Session};
use crate::topology::NodeSpec;
use anyhow::bail;
use clap::ValueEnum;
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Kill -9 the leader of local domain 1: the view change must elect another member and
    /// commits must resume; then restart it and let it catch up.
    KillLeader,
    /// Kill -9 a random node and restart it, `--rounds` times (one node down at a time).
    KillRestart,
    /// The crash campaign: `--rounds` times, kill -9 a leader, an edge or any node at a random
    /// instant under load, restart it after a random pause, and measure its catch-up; report
    /// conflicting commits, lost committed blocks and double votes (all must be 0).
    Kill9,
    /// Split the global LAN 2|2 (no side has a quorum), then heal: global commits resume.
    /// Needs --netns.
    PartitionGlobal,
    /// Unplug edge1 from its local LAN: the devices elect a new leader and go on; plug it back
    /// in and it catches up. Needs --netns.
    IsolateEdge,
    /// Stop every node of the network at one instant (SIGTERM, or kill -9 with --signal
    /// kill) and start them all again: every domain must commit newly submitted traces and
    /// every local block must end up anchored.
    RestartAll,
    /// A site's power cut: kill -9 local domain 1 and its edge at one instant, start them
    /// again; every domain must commit newly submitted traces, every local block anchored.
    PowerLoss,
    /// Stop a device of local domain 1 until its domain has anchored more than twice its
    /// window (`local_window` in its node.toml) and its peers pruned what it missed; start it:
    /// it must catch up by state transfer and then complete a quorum with its vote.
    LongDown,
}

/// How `restart-all` stops the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StopSignal {
    /// SIGTERM: each node shuts down cleanly (it must within the grace period).
    Term,
    /// SIGKILL: each node dies wherever it is.
    Kill,
}

impl StopSignal {
    fn signal(self) -> Signal {
        match self {
            StopSignal::Term => Signal::SIGTERM,
            StopSignal::Kill => Signal::SIGKILL,
        }
    }
}

impl Scenario {
    fn needs_netns(self) -> bool {
        matches!(self, Scenario::PartitionGlobal | Scenario::IsolateEdge)
    }
}

pub struct Args {
    pub scenario: Scenario,
    pub dir: Option<PathBuf>,
    pub netns: bool,
    pub seed: u64,
    pub rounds: u32,
    pub load: f64,
    pub signal: StopSignal,
}

/// Time allowed for a recovery step (a view change, a catch-up, commits resuming).
const RECOVER: Duration = Duration::from_secs(40);
/// How long the nodes stay down in `restart-all` and `power-loss`.
const POWER_OFF: Duration = Duration::from_secs(2);
/// How soon after a restart every domain must commit a trace submitted after it.
const COMMIT_AFTER_RESTART: Duration = Duration::from_secs(30);
/// How long an edge stays cut off in `isolate-edge`.
const ISOLATION: Duration = Duration::from_secs(6);

struct Ctx<'a> {
    s: &'a mut Session,
    p: &'a Progress,
    stop: &'a AtomicBool,
}

impl Ctx<'_> {
    fn net(&self) -> &Net {
        &self.s.net
    }

    fn snap(&self) -> Snapshot {
        Snapshot::take(&self.s.net, false)
    }

    fn sleep(&self, d: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Poll until `cond` holds on a fresh snapshot; false after `limit`.
    fn wait(
        &self,
        limit: Duration,
        mut cond: impl FnMut(&Snapshot) -> bool,
    ) -> anyhow::Result<bool> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if cond(&self.snap()) {
                return Ok(true);
            }
            self.sleep(Duration::from_millis(300))?;
        }
        Ok(false)
    }

    fn name_of(&self, peer: &str) -> Option<String> {
        self.net()
            .topo
            .nodes
            .iter()
            .find(|n| n.peer_id == peer)
            .map(|n| n.name.clone())
    }

    /// Every answering member of `domain` (other than `except`) is above `height`.
    fn committed_past(snap: &Snapshot, domain: &str, height: u64, except: &[&str]) -> bool {
        let views: Vec<u64> = snap
            .views(domain)
            .filter(|(n, _)| !except.contains(n))
            .map(|(_, d)| d.committed_height)
            .collect();
        !views.is_empty() && views.iter().all(|&h| h > height)
    }
}

pub fn run(a: Args) -> anyhow::Result<bool> {
    let bin = crate::procs::lcbft_bin()?;
    let stop = crate::up::stop_flag()?;
    let mut s = open_session(&a, &bin)?;
    let p = Progress::new();
    p.note(&format!(
        "chaos {:?} on {}",
        a.scenario,
        s.net.root.display()
    ));
    if s.wait_ready(Duration::from_secs(60), &stop).is_none() {
        p.note("warning: not every node is up and connected; going on anyway");
    }
    let load = Load::start(&s.net, a.load)?;
    let mut crash: Option<kill9::Report> = None;
    let outcome = {
        let mut ctx = Ctx {
            s: &mut s,
            p: &p,
            stop: &stop,
        };
        // Let the load commit a little first, so there is a history to keep safe.
        ctx.sleep(Duration::from_secs(3))
            .and_then(|_| run_scenario(&mut ctx, &a, &mut crash))
    };
    load.stop();
    p.note("checking the chains");
    let report = check::run(&s.net, Some(&bin));
    s.shutdown();
    p.finish();
    let (json, clean) = summary(&a, &outcome, &report, crash.as_ref());
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(outcome.is_ok() && report.problems.is_empty() && clean)
}

/// Attach to the network `up` runs in `a.dir`, or else start one (in `a.dir`, or in a fresh
/// directory); refuses a scenario that needs network namespaces where there are none.
fn open_session(a: &Args, bin: &Path) -> anyhow::Result<Session> {
    let running = match &a.dir {
        Some(d) => Net::open(d, a.netns).ok().filter(Net::is_running),
        None => None,
    };
    Ok(match running {
        Some(net) => {
            if a.scenario.needs_netns() && !net.netns {
                bail!(
                    "scenario {:?} cuts network links: it needs a testnet started with --netns",
                    a.scenario
                );
            }
            Session::attach(net, bin.to_path_buf())
        }
        None => {
            if a.scenario.needs_netns() && !a.netns {
                bail!(
                    "scenario {:?} cuts network links, which loopback mode has none of: run it with --netns (as root)",
                    a.scenario
                );
            }
            if a.netns {
                crate::netns::preflight()?;
            }
            let dir = a.dir.clone().unwrap_or_else(session::fresh_dir);
            let net = session::open_or_init(&dir, a.netns)?;
            Session::start(net, a.netns, bin.to_path_buf())?
        }
    })
}

/// Play scenario `a.scenario`; for `kill9`, `crash` receives its report (the default one if
/// the campaign failed).
fn run_scenario(ctx: &mut Ctx, a: &Args, crash: &mut Option<kill9::Report>) -> anyhow::Result<()> {
    match a.scenario {
        Scenario::KillLeader => kill_leader(ctx),
        Scenario::KillRestart => kill_restart(ctx, a.seed, a.rounds),
        Scenario::Kill9 => {
            let started = Instant::now();
            let r = kill9::run(ctx, a.seed, a.rounds);
            *crash = Some(r.as_ref().cloned().unwrap_or_default());
            ctx.p.note(&format!(
                "kill9 took {:.0}s",
                started.elapsed().as_secs_f64()
            ));
            r.map(|_| ())
        }
        Scenario::PartitionGlobal => partition_global(ctx),
        Scenario::IsolateEdge => isolate_edge(ctx),
        Scenario::RestartAll => {
            let all = ctx
                .net()
                .topo
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect();
            restart_at_once(ctx, all, a.signal.signal())
        }
        Scenario::PowerLoss => {
            let site = ctx
                .net()
                .topo
                .members("local/1")
                .into_iter()
                .map(|n| n.name.clone())
                .collect();
            restart_at_once(ctx, site, Signal::SIGKILL)
        }
        Scenario::LongDown => long_down::run(ctx),
    }
}

/// The JSON summary of a chaos run, and whether the `kill9` campaign (if any) was clean.
fn summary(
    a: &Args,
    outcome: &anyhow::Result<()>,
    report: &check::Report,
    crash: Option<&kill9::Report>,
) -> (serde_json::Value, bool) {
    let verdict = match outcome {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("{e:#}"),
    };
    let mut json = serde_json::json!({
        "scenario": format!("{:?}", a.scenario),
        "scenario_result": verdict,
        "safety": report.safety(),
        "check": report,
    });
    let mut clean = true;
    if let Some(k) = crash {
        let (kill9, k_clean) = kill9_summary(k, report);
        json["kill9"] = kill9;
        clean = k_clean;
    }
    (json, clean)
}

/// The `kill9` part of the summary, and whether the campaign was clean: no conflicting
/// commit, no lost committed block, no double vote.
fn kill9_summary(k: &kill9::Report, report: &check::Report) -> (serde_json::Value, bool) {
    // Forks `check` finds in the full chains count as conflicting commits too.
    let forks = report
        .problems
        .iter()
        .filter(|p| p.contains(": fork at height "))
        .count();
    let conflicting = k.conflicting_commits.len() + forks;
    let clean = conflicting == 0 && k.clean();
    let json = serde_json::json!({
        "rounds": k.rounds.len(),
        "conflicting_commits": conflicting,
        "lost_committed_blocks": k.lost_committed_blocks.len(),
        "double_votes": k.double_votes(),
        "catch_up_ms": {
            "p50": k.catch_up_ms_p50,
            "p99": k.catch_up_ms_p99,
            "max": k.catch_up_ms_max,
        },
        "detail": k,
    });
    (json, clean)
}

fn kill_leader(c: &mut Ctx) -> anyhow::Result<()> {
    let domain = "local/1";
    let snap = c.snap();
    let (leader_peer, _) = snap
        .leader(domain)
        .ok_or_else(|| anyhow::anyhow!("{domain} reports no leader"))?;
    let Some(leader) = c.name_of(&leader_peer) else {
        bail!("{domain}'s leader {leader_peer} is no node of this testnet");
    };
    let term0 = snap.views(domain).map(|(_, d)| d.term).max().unwrap_or(0);
    // The next leader must be the best-ranked member other than the one we kill.
    let expected = snap
        .views(domain)
        .find(|(n, _)| *n != leader)
        .and_then(|(_, d)| d.ranking.iter().find(|p| **p != leader_peer).cloned());
    let h0 = snap.heights(domain).map_or(0, |r| r.max);
    c.p.note(&format!(
        "{domain}: leader is {leader} (term {term0}, height {h0}); kill -9"
    ));
    c.s.kill(&leader, Signal::SIGKILL)?;
    let mut new_leader = None;
    let elected = c.wait(RECOVER, |snap| {
        let views: Vec<_> = snap.views(domain).filter(|(n, _)| *n != leader).collect();
        let agreed = views
            .windows(2)
            .all(|w| w[0].1.leader_peer == w[1].1.leader_peer);
        let moved = views
            .iter()
            .all(|(_, d)| d.term > term0 && d.leader_peer != leader_peer);
        if agreed && moved && !views.is_empty() {
            new_leader = Some((views[0].1.leader_peer.clone(), views[0].1.term));
        }
        new_leader.is_some()
    })?;
    let Some((peer, term)) = new_leader.filter(|_| elected) else {
        bail!(
            "{domain}: no new leader within {}s after killing {leader}",
            RECOVER.as_secs()
        );
    };
    let name = c.name_of(&peer).unwrap_or(peer.clone());
    c.p.note(&format!("{domain}: {name} leads term {term}"));
    match expected {
        Some(e) if e != peer => {
            let e = c.name_of(&e).unwrap_or(e);
            bail!("{domain}: {name} was elected, but the next-ranked member was {e}");
        }
        Some(_) => {
            c.p.note(&format!("{domain}: {name} is the next-ranked member"))
        }
        None => c.p.note(
            "the node reports no ranking: next-ranked not verified, only that another member leads",
        ),
    }
    if !c.wait(RECOVER, |snap| {
        Ctx::committed_past(snap, domain, h0 + 1, &[leader.as_str()])
    })? {
        bail!("{domain}: commits did not resume under {name}");
    }
    c.p.note(&format!("{domain}: commits resumed; restarting {leader}"));
    c.s.restart(&leader)?;
    catch_up(c, &leader)
}

/// Wait until `name` answers and holds, in each of its domains, the height the others had.
fn catch_up(c: &mut Ctx, name: &str) -> anyhow::Result<()> {
    let node: NodeSpec = c.net().topo.node(name)?.clone();
    let snap = c.snap();
    let targets: Vec<(String, u64)> = node
        .domains()
        .into_iter()
        .map(|d| {
            let h = snap
                .views(&d)
                .filter(|(n, _)| *n != name)
                .map(|(_, v)| v.committed_height)
                .min()
                .unwrap_or(0);
            (d, h)
        })
        .collect();
    let ok = c.wait(RECOVER, |snap| {
        let Some(st) = snap.get(name).and_then(|o| o.status.as_ref()) else {
            return false;
        };
        targets
            .iter()
            .all(|(d, h)| st.domain(d).is_some_and(|v| v.committed_height >= *h))
    })?;
    if !ok {
        bail!("{name} did not catch up within {}s", RECOVER.as_secs());
    }
    c.p.note(&format!("{name} caught up"));
    Ok(())
}

fn kill_restart(c: &mut Ctx, seed: u64, rounds: u32) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let names: Vec<String> = c.net().topo.nodes.iter().map(|n| n.name.clone()).collect();
    let before: Vec<(String, u64)> = {
        let snap = c.snap();
        c.net()
            .topo
            .domain_names()
            .into_iter()
            .map(|d| {
                let h = snap.heights(&d).map_or(0, |r| r.max);
                (d, h)
            })
            .collect()
    };
    for round in 1..=rounds {
        let victim = &names[rng.gen_range(0..names.len())];
        let down = Duration::from_millis(rng.gen_range(1000..4000));
        c.p.note(&format!(
            "round {round}/{rounds}: kill -9 {victim}, down for {:.1}s",
            down.as_secs_f64()
        ));
        c.s.kill(victim, Signal::SIGKILL)?;
        c.sleep(down)?;
        c.s.restart(victim)?;
        catch_up(c, victim)?;
    }
    for (d, h) in before {
        if !c.wait(RECOVER, |snap| Ctx::committed_past(snap, &d, h, &[]))? {
            bail!("{d}: no commit after the restarts (still at {h})");
        }
    }
    c.p.note("every domain committed after the restarts");
    Ok(())
}

fn partition_global(c: &mut Ctx) -> anyhow::Result<()> {
    let global: Vec<NodeSpec> = c
        .net()
        .topo
        .members("global")
        .into_iter()
        .cloned()
        .collect();
    // Alternate members between the sides, so each has a cloud and an edge by default.
    let side: Vec<&NodeSpec> = global.iter().skip(1).step_by(2).collect();
    let names: Vec<&str> = side.iter().map(|n| n.name.as_str()).collect();
    let h0 = c.snap().heights("global").map_or(0, |r| r.max);
    c.p.note(&format!(
        "global: split off {} at height {h0}",
        names.join(",")
    ));
    crate::netns::split_global(&side)?;
    let during = c
        .sleep(Duration::from_secs(8))
        .map(|_| c.snap().heights("global").map_or(0, |r| r.max));
    c.p.note("global: healing the partition");
    crate::netns::heal_global(&side)?;
    let h1 = during?;
    c.p.note(&format!("global: height {h0} -> {h1} during the partition"));
    if !c.wait(RECOVER, |snap| Ctx::committed_past(snap, "global", h1, &[]))? {
        bail!(
            "global: no commit within {}s after healing",
            RECOVER.as_secs()
        );
    }
    c.p.note("global: every validator committed past the partition");
    Ok(())
}

fn isolate_edge(c: &mut Ctx) -> anyhow::Result<()> {
    let edge = c.net().topo.node("edge1")?.clone();
    let domain = "local/1";
    let h0 = c.snap().heights(domain).map_or(0, |r| r.max);
    c.p.note(&format!(
        "{domain}: unplugging edge1 from its LAN at height {h0}"
    ));
    crate::netns::set_local_link(&edge, false)?;
    let cut = Instant::now();
    let resumed = c.wait(RECOVER, |snap| {
        Ctx::committed_past(snap, domain, h0 + 1, &["edge1"])
    });
    // Stay cut long enough for everyone to notice the link is gone (liveness timeout).
    let held = c.sleep(ISOLATION.saturating_sub(cut.elapsed()));
    c.p.note(&format!("{domain}: plugging edge1 back in"));
    crate::netns::set_local_link(&edge, true)?;
    held?;
    if !resumed? {
        bail!(
            "{domain}: the devices did not commit without edge1 within {}s",
            RECOVER.as_secs()
        );
    }
    let h1 = c.snap().heights(domain).map_or(0, |r| r.max);
    c.p.note(&format!(
        "{domain}: the devices went on without edge1, to height {h1}"
    ));
    catch_up(c, "edge1")?;
    // What the devices committed while the edge was away must reach the global chain.
    if c.snap().anchored().is_some() {
        let anchored = c.wait(RECOVER, |snap| {
            snap.anchored()
                .and_then(|a| a.get(domain).copied())
                .is_some_and(|a| a >= h1)
        })?;
        if !anchored {
            bail!(
                "{domain}: the blocks committed without edge1 were not anchored within {}s",
                RECOVER.as_secs()
            );
        }
        c.p.note(&format!("{domain}: anchored up to {h1} again"));
    }
    Ok(())
}

/// Stop `names` at one instant with `sig`, start them again, then require every domain to
/// commit a trace submitted after the restart and every local block to be anchored.
fn restart_at_once(c: &mut Ctx, names: Vec<String>, sig: Signal) -> anyhow::Result<()> {
    let domains = c.net().topo.domain_names();
    let snap = c.snap();
    let before: Vec<String> = domains
        .iter()
        .map(|d| format!("{d} {}", snap.heights(d).map_or(0, |r| r.max)))
        .collect();
    c.p.note(&format!(
        "{sig} to {} node(s) at once ({})",
        names.len(),
        before.join(", ")
    ));
    let forced = c.s.stop_at_once(&names, sig)?;
    if !forced.is_empty() {
        bail!(
            "{} did not stop within the grace period after {sig}",
            forced.join(",")
        );
    }
    c.sleep(POWER_OFF)?;
    for name in &names {
        c.s.restart(name)?;
    }
    let restarted = Instant::now();
    c.p.note("started again; submitting a fresh trace to every domain");
    let probes = submit_probes(c, &domains)?;
    let mut last = String::new();
    let committed = c.wait(
        COMMIT_AFTER_RESTART.saturating_sub(restarted.elapsed()),
        |_| {
            let pending: Vec<&str> = probes
                .iter()
                .filter(|(_, ep, id)| {
                    ep.get_json(&format!("/v1/traces/{id}"))
                        .is_none_or(|v| v["status"] != "committed")
                })
                .map(|(d, _, _)| d.as_str())
                .collect();
            last = pending.join(", ");
            pending.is_empty()
        },
    )?;
    if !committed {
        bail!(
            "no commit of a fresh trace within {}s after the restart in: {last}",
            COMMIT_AFTER_RESTART.as_secs()
        );
    }
    c.p.note(&format!(
        "every domain committed its fresh trace {:.1}s after the restart",
        restarted.elapsed().as_secs_f64()
    ));
    anchored_up_to_date(c)
}

/// One fresh signed trace per domain, each to a member of it that answers: (domain, where,
/// trace id).
fn submit_probes(
    c: &Ctx,
    domains: &[String],
) -> anyhow::Result<Vec<(String, crate::http::Endpoint, String)>> {
    let key_path = c.net().root.join(crate::init::PRODUCER_KEY);
    let key = lcbft_node::identity::load(&key_path)
        .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", key_path.display()))?;
    let mut probes = Vec::new();
    for d in domains {
        let members: Vec<NodeSpec> = c.net().topo.members(d).into_iter().cloned().collect();
        let body = crate::load::signed_trace_json(&key, d, &format!("restart probe {d}"))?;
        let mut sent = None;
        let start = Instant::now();
        while sent.is_none() && start.elapsed() < COMMIT_AFTER_RESTART {
            for n in &members {
                let ep = c.net().endpoint(n);
                if let Ok(r) = ep.post("/v1/traces", body.as_bytes())
                    && r.status < 300
                    && let Some(id) = r
                        .json()
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned))
                {
                    sent = Some((ep, id));
                    break;
                }
            }
            if sent.is_none() {
                c.sleep(Duration::from_millis(300))?;
            }
        }
        let Some((ep, id)) = sent else {
            bail!(
                "{d}: no member accepted a trace within {}s",
                RECOVER.as_secs()
            );
        };
        probes.push((d.clone(), ep, id));
    }
    Ok(probes)
}

/// Every local block committed now is anchored in the committed global chain, in time.
fn anchored_up_to_date(c: &Ctx) -> anyhow::Result<()> {
    let snap = c.snap();
    if snap.anchored().is_none() {
        c.p.note("the nodes report no anchored heights: anchoring not checked");
        return Ok(());
    }
    let targets: Vec<(String, u64)> = c
        .net()
        .topo
        .domain_names()
        .into_iter()
        .filter(|d| d.starts_with("local/"))
        .map(|d| {
            let h = snap.heights(&d).map_or(0, |r| r.max);
            (d, h)
        })
        .collect();
    let ok = c.wait(RECOVER, |snap| {
        let anchored = snap.anchored().unwrap_or_default();
        targets
            .iter()
            .all(|(d, h)| anchored.get(d).is_some_and(|a| a >= h))
    })?;
    if !ok {
        bail!(
            "local blocks committed after the restart were not anchored within {}s: {targets:?} vs {:?}",
            RECOVER.as_secs(),
            c.snap().anchored()
        );
    }
    c.p.note("every local block is anchored");
    Ok(())
}
