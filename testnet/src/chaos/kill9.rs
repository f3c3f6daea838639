//! `kill9`: the crash campaign. Each round SIGKILLs one node (a domain's leader, an edge, or
//! any node) at a random instant under load, restarts it after a random pause and waits until
//! it has caught up. Throughout, every node's status and metrics are read to find:
//!
//! - conflicting commits: two nodes reporting different blocks at one height of one domain
//!   (and, at the end, the full chain comparison of `check`);
//! - lost committed blocks: a node whose committed head (the store's head, so durable) comes
//!   back lower, or with another block at the same height, after its restart;
//! - double votes: `lcbft_consensus_double_votes_total` (two valid shares from one signer for
//!   one view, seen by any node), summed across restarts, and the node logs' "double vote"
//!   lines, which also cover the moment between the last scrape and a kill;
//! - catch-up time: from the restart until the node holds, in each of its domains, the
//!   height the others had when it came back.

use super::{Ctx, RECOVER};
use crate::observe::Snapshot;
use crate::topology::Role;
use anyhow::bail;
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the log says once per double vote seen (the node's `error!` in its main loop).
const DOUBLE_VOTE_LOG: &str = "double vote:";

#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub round: u32,
    pub victim: String,
    /// Why it was picked: "leader of <domain>", "edge", or "any".
    pub picked_as: String,
    /// Pause under load before the kill, and how long the node stayed down.
    pub killed_after_ms: u64,
    pub down_ms: u64,
    /// From the restart to holding the others' height in every domain.
    pub catch_up_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub rounds: Vec<Round>,
    /// Different blocks reported at one (domain, height) by two nodes, seen live.
    pub conflicting_commits: Vec<String>,
    /// Committed heads that went back (or changed) on a node across its restart.
    pub lost_committed_blocks: Vec<String>,
    /// Double votes counted by the nodes' metrics, per layer, summed across restarts.
    pub double_votes_by_layer: BTreeMap<String, u64>,
    /// Double-vote lines in the node logs.
    pub double_votes_logged: u64,
    pub catch_up_ms_p50: Option<u64>,
    pub catch_up_ms_p99: Option<u64>,
    pub catch_up_ms_max: Option<u64>,
}

impl Report {
    pub fn double_votes(&self) -> u64 {
        self.double_votes_by_layer
            .values()
            .sum::<u64>()
            .max(self.double_votes_logged)
    }

    pub fn clean(&self) -> bool {
        self.conflicting_commits.is_empty()
            && self.lost_committed_blocks.is_empty()
            && self.double_votes() == 0
    }

    fn finish_catch_up(&mut self) {
        let mut ms: Vec<u64> = self.rounds.iter().filter_map(|r| r.catch_up_ms).collect();
        ms.sort_unstable();
        let pick = |q: f64| -> Option<u64> {
            if ms.is_empty() {
                return None;
            }
            let i = ((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1;
            Some(ms[i])
        };
        self.catch_up_ms_p50 = pick(0.50);
        self.catch_up_ms_p99 = pick(0.99);
        self.catch_up_ms_max = ms.last().copied();
    }
}

/// What every snapshot taught us, across the whole campaign.
#[derive(Default)]
struct Ledger {
    /// (domain, height) -> (block hash, first node that reported it).
    blocks: BTreeMap<(String, u64), (String, String)>,
    /// (node, domain) -> highest committed (height, hash) it reported.
    heads: BTreeMap<(String, String), (u64, String)>,
    /// (node, layer) -> last double-vote counter value read (it restarts at 0 with the node).
    counters: BTreeMap<(String, String), u64>,
    report: Report,
}

impl Ledger {
    fn ingest(&mut self, snap: &Snapshot) {
        for n in &snap.nodes {
            if let Some(st) = &n.status {
                for d in &st.domains {
                    self.head(&n.name, &d.domain, d.committed_height, &d.committed_hash);
                }
            }
            if let Some(c) = &n.counters {
                for (layer, &v) in &c.double_votes {
                    let last = self
                        .counters
                        .insert((n.name.clone(), layer.clone()), v)
                        .unwrap_or(0);
                    // A lower value means the node restarted and counts from 0 again.
                    let new = if v >= last { v - last } else { v };
                    *self
                        .report
                        .double_votes_by_layer
                        .entry(layer.clone())
                        .or_default() += new;
                }
            }
        }
    }

    fn head(&mut self, node: &str, domain: &str, height: u64, hash: &str) {
        if height == 0 {
            // Genesis: a node that answers before it opened its store would look like a loss.
            return;
        }
        match self.blocks.get(&(domain.to_owned(), height)) {
            Some((h, first)) if h != hash => {
                let what = format!(
                    "{domain} height {height}: {first} committed {} but {node} {}",
                    short(h),
                    short(hash)
                );
                if !self.report.conflicting_commits.contains(&what) {
                    self.report.conflicting_commits.push(what);
                }
            }
            Some(_) => {}
            None => {
                self.blocks.insert(
                    (domain.to_owned(), height),
                    (hash.to_owned(), node.to_owned()),
                );
            }
        }
        let key = (node.to_owned(), domain.to_owned());
        match self.heads.get(&key) {
            Some((h, _)) if height < *h => {
                self.report.lost_committed_blocks.push(format!(
                    "{node} {domain}: committed head went back from {h} to {height}"
                ));
                self.heads.insert(key, (height, hash.to_owned()));
            }
            Some((h, old)) if height == *h && old != hash => {
                self.report.lost_committed_blocks.push(format!(
                    "{node} {domain}: committed block {height} changed from {} to {}",
                    short(old),
                    short(hash)
                ));
            }
            _ => {
                self.heads.insert(key, (height, hash.to_owned()));
            }
        }
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

impl Ctx<'_> {
    fn observe(&self, ledger: &mut Ledger) -> Snapshot {
        let snap = Snapshot::take(self.net(), true);
        ledger.ingest(&snap);
        snap
    }

    /// Pick this round's victim: a leader, an edge or anyone, in turn, so leaders and edges
    /// are hit every few rounds whatever the seed.
    fn pick(&self, rng: &mut impl Rng, round: u32, snap: &Snapshot) -> (String, String) {
        let topo = &self.net().topo;
        match round % 3 {
            1 => {
                let domains = topo.domain_names();
                let d = &domains[rng.gen_range(0..domains.len())];
                if let Some(name) = snap.leader(d).and_then(|(p, _)| self.name_of(&p)) {
                    return (name, format!("leader of {d}"));
                }
            }
            2 => {
                let edges: Vec<&str> = topo
                    .nodes
                    .iter()
                    .filter(|n| n.role == Role::Edge)
                    .map(|n| n.name.as_str())
                    .collect();
                if !edges.is_empty() {
                    return (
                        edges[rng.gen_range(0..edges.len())].to_owned(),
                        "edge".into(),
                    );
                }
            }
            _ => {}
        }
        let n = &topo.nodes[rng.gen_range(0..topo.nodes.len())];
        (n.name.clone(), "any".into())
    }
}

pub(super) fn run(c: &mut Ctx, seed: u64, rounds: u32) -> anyhow::Result<Report> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    let result = campaign(c, &mut rng, rounds, &mut ledger);
    // Whatever stopped the campaign, count what the nodes saw.
    c.observe(&mut ledger);
    let mut report = std::mem::take(&mut ledger.report);
    report.double_votes_logged = logged_double_votes(c);
    report.finish_catch_up();
    c.p.note(&format!(
        "kill9: {} rounds, {} conflicting commits, {} lost committed blocks, {} double votes, catch-up p50 {:?} ms p99 {:?} ms",
        report.rounds.len(),
        report.conflicting_commits.len(),
        report.lost_committed_blocks.len(),
        report.double_votes(),
        report.catch_up_ms_p50,
        report.catch_up_ms_p99
    ));
    result.map(|()| report)
}

fn campaign(
    c: &mut Ctx,
    rng: &mut impl Rng,
    rounds: u32,
    ledger: &mut Ledger,
) -> anyhow::Result<()> {
    let start = c.observe(ledger);
    let before: Vec<(String, u64)> = c
        .net()
        .topo
        .domain_names()
        .into_iter()
        .map(|d| {
            let h = start.heights(&d).map_or(0, |r| r.max);
            (d, h)
        })
        .collect();
    for round in 1..=rounds {
        crash_round(c, rng, round, rounds, ledger)?;
    }
    wait_commits_past(c, ledger, before)?;
    c.p.note("kill9: every domain committed after the restarts");
    Ok(())
}

/// One round of the campaign: kill -9 a victim at a random instant, restart it after a
/// random pause, wait until it caught up and record the round in the ledger's report.
fn crash_round(
    c: &mut Ctx,
    rng: &mut impl Rng,
    round: u32,
    rounds: u32,
    ledger: &mut Ledger,
) -> anyhow::Result<()> {
    // A random instant under load: anywhere in a view, a vote, a write.
    let killed_after = Duration::from_millis(rng.gen_range(0..1500));
    c.sleep(killed_after)?;
    let snap = c.observe(ledger);
    let (victim, picked_as) = c.pick(rng, round, &snap);
    let down = Duration::from_millis(rng.gen_range(100..2500));
    c.p.note(&format!(
        "round {round}/{rounds}: kill -9 {victim} ({picked_as}), down for {:.1}s",
        down.as_secs_f64()
    ));
    c.s.kill(&victim, Signal::SIGKILL)?;
    c.sleep(down)?;
    let targets = catch_up_targets(c, ledger, &victim)?;
    c.s.restart(&victim)?;
    let caught_up = wait_caught_up(c, ledger, &victim, &targets)?;
    ledger.report.rounds.push(Round {
        round,
        victim: victim.clone(),
        picked_as,
        killed_after_ms: killed_after.as_millis() as u64,
        down_ms: down.as_millis() as u64,
        catch_up_ms: caught_up.map(|d| d.as_millis() as u64),
    });
    let Some(took) = caught_up else {
        bail!(
            "round {round}: {victim} did not catch up within {}s",
            RECOVER.as_secs()
        );
    };
    c.p.note(&format!(
        "round {round}/{rounds}: {victim} caught up in {:.1}s",
        took.as_secs_f64()
    ));
    if !ledger.report.clean() {
        bail!("round {round}: safety violated (see the kill9 report)");
    }
    Ok(())
}

/// Where the others are when `victim` comes back: per domain of `victim`, the height it
/// has to reach.
fn catch_up_targets(
    c: &Ctx,
    ledger: &mut Ledger,
    victim: &str,
) -> anyhow::Result<Vec<(String, u64)>> {
    let node = c.net().topo.node(victim)?.clone();
    let at_restart = c.observe(ledger);
    Ok(node
        .domains()
        .into_iter()
        .map(|d| {
            let h = at_restart
                .views(&d)
                .filter(|(n, _)| *n != victim)
                .map(|(_, v)| v.committed_height)
                .max()
                .unwrap_or(0);
            (d, h)
        })
        .collect())
}

/// Poll until the just restarted `victim` holds every target height; how long that took,
/// or None if it did not within `RECOVER`.
fn wait_caught_up(
    c: &Ctx,
    ledger: &mut Ledger,
    victim: &str,
    targets: &[(String, u64)],
) -> anyhow::Result<Option<Duration>> {
    let restarted = Instant::now();
    let mut caught_up = None;
    while restarted.elapsed() < RECOVER {
        let snap = c.observe(ledger);
        let done = snap
            .get(victim)
            .and_then(|o| o.status.as_ref())
            .is_some_and(|st| {
                targets
                    .iter()
                    .all(|(d, h)| st.domain(d).is_some_and(|v| v.committed_height >= *h))
            });
        if done {
            caught_up = Some(restarted.elapsed());
            break;
        }
        c.sleep(Duration::from_millis(200))?;
    }
    Ok(caught_up)
}

/// Wait until every domain has committed past its height `before` the campaign.
fn wait_commits_past(
    c: &Ctx,
    ledger: &mut Ledger,
    before: Vec<(String, u64)>,
) -> anyhow::Result<()> {
    for (d, h) in before {
        let mut moved = false;
        let start = Instant::now();
        while !moved && start.elapsed() < RECOVER {
            let snap = c.observe(ledger);
            moved = super::Ctx::committed_past(&snap, &d, h, &[]);
            if !moved {
                c.sleep(Duration::from_millis(300))?;
            }
        }
        if !moved {
            bail!("{d}: no commit after the restarts (still at {h})");
        }
    }
    Ok(())
}

/// Double votes the nodes logged over the whole run (logs are appended across restarts).
fn logged_double_votes(c: &Ctx) -> u64 {
    c.net()
        .topo
        .nodes
        .iter()
        .map(|n| {
            std::fs::read(n.dir(&c.net().root).join("node.log"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .lines()
                        .filter(|l| l.contains(DOUBLE_VOTE_LOG))
                        .count() as u64
                })
                .unwrap_or(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_from_the_sorted_times() {
        let mut r = Report::default();
        for (i, ms) in [900, 100, 300, 500, 700].into_iter().enumerate() {
            r.rounds.push(Round {
                round: i as u32 + 1,
                victim: "n".into(),
                picked_as: "any".into(),
                killed_after_ms: 0,
                down_ms: 0,
                catch_up_ms: Some(ms),
            });
        }
        r.finish_catch_up();
        assert_eq!(r.catch_up_ms_p50, Some(500));
        assert_eq!(r.catch_up_ms_p99, Some(900));
        assert_eq!(r.catch_up_ms_max, Some(900));
    }

    #[test]
    fn the_ledger_sees_forks_lost_heads_and_counts_across_restarts() {
        let mut l = Ledger::default();
        l.head("a", "global", 3, "h3");
        l.head("b", "global", 3, "h3");
        assert!(l.report.clean());
        l.head("b", "global", 4, "h4");
        l.head("c", "global", 4, "other");
        assert_eq!(l.report.conflicting_commits.len(), 1);
        l.head("a", "global", 2, "h2");
        assert_eq!(l.report.lost_committed_blocks.len(), 1);
        // Counters: 2, then 3 (one more), then the node restarts and reads 1 (one more).
        for v in [2, 3, 1] {
            let mut counters = crate::observe::Counters::default();
            counters.double_votes.insert("local".into(), v);
            let snap = Snapshot {
                nodes: vec![crate::observe::NodeObs {
                    name: "a".into(),
                    pid: Some(1),
                    status: None,
                    counters: Some(counters),
                }],
            };
            l.ingest(&snap);
        }
        assert_eq!(l.report.double_votes_by_layer.get("local"), Some(&4));
    }
}
