//! `long-down`: a device stays down while its domain commits and anchors more than twice the
//! domain's window, and its peers prune the blocks it missed. Started again, it can only catch
//! up by state transfer (the anchored block and its commit proof from the global chain). Then
//! enough of the other devices are stopped that no quorum forms without it: new commits show
//! it votes again. The `check` that follows every scenario compares the chains.
//!
//! With the default window (256 blocks) this takes minutes; shrink `local_window` (and the
//! pacing) in the devices' `node.toml` to make it quick.

use super::{Ctx, RECOVER};
use crate::observe::Snapshot;
use crate::topology::Role;
use anyhow::{Context, bail};
use lcbft_node::config::Config;
use nix::sys::signal::Signal;
use std::time::Duration;

const DOMAIN: &str = "local/1";

pub fn run(c: &mut Ctx) -> anyhow::Result<()> {
    let devices: Vec<String> = c
        .net()
        .topo
        .members(DOMAIN)
        .into_iter()
        .filter(|n| n.role == Role::Device)
        .map(|n| n.name.clone())
        .collect();
    let members = c.net().topo.members(DOMAIN).len();
    let faults = (members - 1) / 3;
    let Some(victim) = devices.first().cloned() else {
        bail!("{DOMAIN} has no device");
    };
    if devices.len() <= faults {
        bail!("{DOMAIN} has too few devices to leave a quorum that needs {victim}");
    }
    let down_at = stop_until_pruned(c, &victim)?;
    c.p.note(&format!(
        "{DOMAIN}: every live member pruned past {down_at}; starting {victim}"
    ));
    c.s.restart(&victim)?;
    super::catch_up(c, &victim)?;
    let transfers = Snapshot::take(c.net(), true)
        .get(&victim)
        .and_then(|o| o.counters.as_ref()?.state_transfers.get(DOMAIN).copied())
        .unwrap_or(0);
    if transfers == 0 {
        bail!("{victim} caught up without a state transfer");
    }
    c.p.note(&format!("{victim} caught up by state transfer"));

    // Only the victim completes a quorum now.
    let stopped: Vec<String> = devices.iter().skip(1).take(faults).cloned().collect();
    commit_with_vote_of(c, &victim, &stopped)
}

/// Kill `victim` and wait until its domain has anchored more than twice its window past
/// the height it stopped at and every live member pruned past it; returns that height.
fn stop_until_pruned(c: &mut Ctx, victim: &str) -> anyhow::Result<u64> {
    let window = window_of(c, victim)?;
    let down_at = c.snap().heights(DOMAIN).map_or(0, |r| r.max);
    let target = down_at + 2 * window + 2;
    c.p.note(&format!(
        "{DOMAIN}: stopping {victim} at height {down_at}; window {window}, waiting for height {target} anchored"
    ));
    c.s.kill(victim, Signal::SIGKILL)?;

    // A block is ~0.1-1 s under load; leave room for a big window on a slow machine.
    let limit = RECOVER + Duration::from_secs(2 * window + 2);
    let others = |name: &str| name != victim;
    let pruned = c.wait(limit, |snap| {
        let anchored = snap
            .anchored()
            .and_then(|a| a.get(DOMAIN).copied())
            .unwrap_or(0);
        let views: Vec<_> = snap.views(DOMAIN).filter(|(n, _)| others(n)).collect();
        anchored >= target
            && !views.is_empty()
            && views
                .iter()
                .all(|(_, d)| d.retained_from.is_some_and(|r| r > down_at + 1))
    })?;
    if !pruned {
        bail!(
            "{DOMAIN}: within {}s the domain did not anchor height {target} and prune past {down_at}",
            limit.as_secs()
        );
    }
    Ok(down_at)
}

/// Kill the `stopped` devices so that a quorum needs `victim`'s vote, wait for new commits,
/// then start them again and let them catch up.
fn commit_with_vote_of(c: &mut Ctx, victim: &str, stopped: &[String]) -> anyhow::Result<()> {
    for name in stopped {
        c.s.kill(name, Signal::SIGKILL)?;
    }
    let h = c
        .snap()
        .get(victim)
        .and_then(|o| {
            o.status
                .as_ref()?
                .domain(DOMAIN)
                .map(|d| d.committed_height)
        })
        .context("the restarted device does not answer")?;
    c.p.note(&format!(
        "{DOMAIN}: stopped {}; a quorum needs {victim}'s vote",
        stopped.join(",")
    ));
    let voted = c.wait(RECOVER, |snap| {
        Ctx::committed_past(snap, DOMAIN, h + 3, &[])
    })?;
    if !voted {
        bail!(
            "{DOMAIN}: no commit within {}s with {victim} completing the quorum",
            RECOVER.as_secs()
        );
    }
    c.p.note(&format!("{DOMAIN}: committed with {victim}'s vote"));
    for name in stopped {
        c.s.restart(name)?;
        super::catch_up(c, name)?;
    }
    Ok(())
}

/// The domain's window as the device's own `node.toml` sets it.
fn window_of(c: &Ctx, name: &str) -> anyhow::Result<u64> {
    let n = c.net().topo.node(name)?;
    let path = crate::procs::config_path(&c.net().root, n, c.net().netns);
    let cfg = Config::load(&path, std::iter::empty())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(cfg.consensus.local_window)
}
