//! The one-line progress text and the final JSON summary of a run.

use crate::check::Report;
use crate::emulate::Emulated;
use crate::load::Stats;
use crate::net::Net;
use crate::observe::Snapshot;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

fn range(r: Option<crate::observe::Range>) -> String {
    r.map_or("-".to_owned(), |r| format!("{}..{}", r.min, r.max))
}

pub fn line(net: &Net, snap: &Snapshot, traces_per_s: Option<f64>) -> String {
    let (have, want) = snap.links(net);
    let anchors = snap
        .anchored()
        .map_or("n/a".to_owned(), |a| a.values().sum::<u64>().to_string());
    let mut s = format!(
        "nodes {}/{} · links {have}/{want} · global h {} · local h {} · anchors {anchors}",
        snap.up(),
        net.topo.nodes.len(),
        range(snap.heights("global")),
        range(snap.local_heights()),
    );
    if let Some(r) = traces_per_s {
        s.push_str(&format!(" · {r:.0} traces/s"));
    }
    s
}

/// Per-domain heights at the start of a run, to count what the run committed.
pub fn start_heights(net: &Net, snap: &Snapshot) -> BTreeMap<String, u64> {
    net.topo
        .domain_names()
        .into_iter()
        .map(|d| {
            let h = snap.heights(&d).map_or(0, |r| r.max);
            (d, h)
        })
        .collect()
}

fn layer(net: &Net, snap: &Snapshot, start: &BTreeMap<String, u64>, local: bool) -> Value {
    let domains: Vec<String> = net
        .topo
        .domain_names()
        .into_iter()
        .filter(|d| d.starts_with("local/") == local)
        .collect();
    let mut per = serde_json::Map::new();
    let (mut lo, mut hi, mut commits, mut vcs) = (None::<u64>, 0u64, 0u64, None::<u64>);
    for d in &domains {
        let r = snap.heights(d).unwrap_or_default();
        let c = r.max.saturating_sub(start.get(d).copied().unwrap_or(0));
        let v = snap.view_changes(d);
        lo = Some(lo.map_or(r.min, |l| l.min(r.min)));
        hi = hi.max(r.max);
        commits += c;
        if let Some(v) = v {
            vcs = Some(vcs.unwrap_or(0) + v);
        }
        per.insert(
            d.clone(),
            json!({ "height_min": r.min, "height_max": r.max, "commits": c, "view_changes": v }),
        );
    }
    let mut out = json!({
        "height_min": lo.unwrap_or(0),
        "height_max": hi,
        "commits": commits,
        "view_changes": vcs,
    });
    if local {
        out["domains"] = Value::Object(per);
    }
    out
}

pub struct Run<'a> {
    pub net: &'a Net,
    /// Nodes under qemu (`up --emulate`).
    pub emulated: &'a BTreeMap<String, Emulated>,
    pub start: &'a BTreeMap<String, u64>,
    pub end: &'a Snapshot,
    pub stats: Option<&'a Stats>,
    pub report: &'a Report,
    pub seconds: f64,
    pub load_seconds: f64,
}

/// The `--json` object (see `up --help`).
pub fn summary(r: &Run) -> Value {
    let ids = r.stats.map(Stats::accepted_ids).unwrap_or_default();
    let committed = r.report.committed(&ids);
    let traces = r.stats.map(|s| {
        json!({
            "submitted": s.submitted.load(Ordering::Relaxed),
            "accepted": s.accepted.load(Ordering::Relaxed),
            "refused": s.refused.load(Ordering::Relaxed),
            "unreachable": s.unreachable.load(Ordering::Relaxed),
            "committed": committed,
            "committed_per_s": if r.load_seconds > 0.0 { committed as f64 / r.load_seconds } else { 0.0 },
        })
    });
    json!({
        "dir": r.net.root.display().to_string(),
        "mode": if r.net.netns { "netns" } else { "loopback" },
        "seconds": (r.seconds * 10.0).round() / 10.0,
        "nodes": { "total": r.net.topo.nodes.len(), "up": r.end.up() },
        "global": layer(r.net, r.end, r.start, false),
        "local": layer(r.net, r.end, r.start, true),
        "anchors": r.end.anchored().map(|a| a.values().sum::<u64>()),
        "anchored": r.end.anchored(),
        "anchor_lag_ms": anchor_lag(r.end),
        "emulated": emulated(r),
        "traces": traces.unwrap_or(json!({ "submitted": 0, "committed": 0 })),
        "safety": r.report.safety(),
        "check": r.report,
    })
}

/// Per local domain, the anchoring lag its edge measured (local commit to the anchor's global
/// commit), over the edge's recent blocks.
fn anchor_lag(end: &Snapshot) -> Value {
    let mut out = serde_json::Map::new();
    for node in &end.nodes {
        let Some(status) = &node.status else {
            continue;
        };
        for d in &status.domains {
            if let (Some(p50), Some(p99)) = (d.anchor_lag_p50_ms, d.anchor_lag_p99_ms) {
                out.insert(d.domain.clone(), json!({ "p50": p50, "p99": p99 }));
            }
        }
    }
    Value::Object(out)
}

/// Per emulated node: its architecture and, per domain it is in, its committed height against
/// the highest of the domain's members (`behind`).
fn emulated(r: &Run) -> Value {
    let mut out = Vec::new();
    for (name, e) in r.emulated {
        let Ok(spec) = r.net.topo.node(name) else {
            continue;
        };
        let status = r.end.get(name).and_then(|o| o.status.as_ref());
        let domains: serde_json::Map<String, Value> = spec
            .domains()
            .into_iter()
            .map(|d| {
                let mine = status
                    .and_then(|s| s.domain(&d))
                    .map(|v| v.committed_height);
                let top = r.end.heights(&d).map(|h| h.max);
                let behind = mine.zip(top).map(|(m, t)| t.saturating_sub(m));
                (
                    d,
                    json!({ "height": mine, "domain_height": top, "behind": behind }),
                )
            })
            .collect();
        out.push(json!({
            "node": name,
            "arch": e.arch.as_str(),
            "binary": e.bin.display().to_string(),
            "domains": domains,
        }));
    }
    Value::Array(out)
}
