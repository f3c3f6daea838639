//! One look at every node: its process, `/v1/status` and the counters of `/metrics`. Fields
//! the node does not report (yet) stay `None`: the launcher works with older and newer nodes.

use crate::net::Net;
use std::collections::BTreeMap;

/// What a node reports at `GET /v1/status`: the node's own types, so the compiler keeps the
/// launcher in step with the API.
pub use lcbft_node::api::{DomainStatus as DomainView, StatusJson as NodeStatus};

#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// `lcbft_consensus_view_changes_total` per domain (summed over causes).
    pub view_changes: BTreeMap<String, u64>,
    /// `lcbft_consensus_double_votes_total` per layer (summed over domains).
    pub double_votes: BTreeMap<String, u64>,
    /// `lcbft_sync_requests_total{direction="state_transfer"}` per domain.
    pub state_transfers: BTreeMap<String, u64>,
}

#[derive(Clone, Debug)]
pub struct NodeObs {
    pub name: String,
    pub pid: Option<i32>,
    pub status: Option<NodeStatus>,
    pub counters: Option<Counters>,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeObs>,
}

/// Min and max committed height over the members that answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Snapshot {
    /// Ask every node at once (one thread each: a node that hangs delays nobody else).
    pub fn take(net: &Net, with_metrics: bool) -> Snapshot {
        let nodes = std::thread::scope(|s| {
            let handles: Vec<_> = net
                .topo
                .nodes
                .iter()
                .map(|n| {
                    s.spawn(move || {
                        let pid = net.pid(n);
                        let ep = net.endpoint(n);
                        let (status, counters) = if pid.is_some() {
                            let status = ep
                                .get_json("/v1/status")
                                .and_then(|v| serde_json::from_value(v).ok());
                            let counters = with_metrics
                                .then(|| ep.get("/metrics").ok())
                                .flatten()
                                .filter(|r| r.status == 200)
                                .map(|r| parse_counters(&r.text()));
                            (status, counters)
                        } else {
                            (None, None)
                        };
                        NodeObs {
                            name: n.name.clone(),
                            pid,
                            status,
                            counters,
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(&net.topo.nodes)
                .map(|(h, n)| {
                    h.join().unwrap_or_else(|_| NodeObs {
                        name: n.name.clone(),
                        pid: None,
                        status: None,
                        counters: None,
                    })
                })
                .collect()
        });
        Snapshot { nodes }
    }

    pub fn get(&self, name: &str) -> Option<&NodeObs> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn up(&self) -> usize {
        self.nodes.iter().filter(|n| n.status.is_some()).count()
    }

    /// Every view of `domain` that a member reported.
    pub fn views<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = (&'a str, &'a DomainView)> {
        self.nodes.iter().filter_map(move |n| {
            let d = n.status.as_ref()?.domain(domain)?;
            Some((n.name.as_str(), d))
        })
    }

    pub fn heights(&self, domain: &str) -> Option<Range> {
        let h: Vec<u64> = self
            .views(domain)
            .map(|(_, d)| d.committed_height)
            .collect();
        Some(Range {
            min: *h.iter().min()?,
            max: *h.iter().max()?,
        })
    }

    /// Heights over every local domain together.
    pub fn local_heights(&self) -> Option<Range> {
        let h: Vec<u64> = self
            .nodes
            .iter()
            .filter_map(|n| n.status.as_ref())
            .flat_map(|s| s.domains.iter())
            .filter(|d| d.domain.starts_with("local/"))
            .map(|d| d.committed_height)
            .collect();
        Some(Range {
            min: *h.iter().min()?,
            max: *h.iter().max()?,
        })
    }

    /// (connected member links, expected member links) over all domains.
    pub fn links(&self, net: &Net) -> (usize, usize) {
        let mut have = 0;
        let mut want = 0;
        for domain in net.topo.domain_names() {
            let n = net.topo.members(&domain).len();
            want += n * n.saturating_sub(1);
            have += self
                .views(&domain)
                .map(|(_, d)| d.peers.len())
                .sum::<usize>();
        }
        (have, want)
    }

    /// The leader most members of `domain` name (PeerId), with how many name it.
    pub fn leader(&self, domain: &str) -> Option<(String, usize)> {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, d) in self.views(domain) {
            *votes.entry(d.leader_peer.as_str()).or_default() += 1;
        }
        votes
            .into_iter()
            .max_by_key(|(_, c)| *c)
            .map(|(p, c)| (p.to_owned(), c))
    }

    /// Per local domain, the highest anchored height any node reports; `None` while no node
    /// reports anchoring at all.
    pub fn anchored(&self) -> Option<BTreeMap<String, u64>> {
        let mut out: Option<BTreeMap<String, u64>> = None;
        for s in self.nodes.iter().filter_map(|n| n.status.as_ref()) {
            // A global validator's view of every domain, and each member's of its own.
            let mut reports: Vec<(String, u64)> = s
                .domains
                .iter()
                .flat_map(|d| d.anchored.iter().map(|(d, h)| (d.clone(), *h)))
                .collect();
            reports.extend(
                s.domains
                    .iter()
                    .filter_map(|d| Some((d.domain.clone(), d.anchored_height?))),
            );
            for (d, h) in reports {
                let e = out.get_or_insert_default().entry(d).or_default();
                *e = (*e).max(h);
            }
        }
        out
    }

    /// Most view changes any member of `domain` counted (each replica counts the views it
    /// gave up; the maximum is the domain's count as its most affected member saw it).
    pub fn view_changes(&self, domain: &str) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|n| n.counters.as_ref()?.view_changes.get(domain).copied())
            .max()
    }
}

/// The counters we use from Prometheus text: view changes per domain, from
/// `lcbft_consensus_view_changes_total` (summed over causes); double votes per layer; state
/// transfers per domain.
pub fn parse_counters(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines() {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let label = |k: &str| labels.get(k).map(String::as_str);
        let (map, key) = match name {
            "lcbft_consensus_double_votes_total" => (&mut c.double_votes, label("layer")),
            "lcbft_sync_requests_total" if label("direction") == Some("state_transfer") => {
                (&mut c.state_transfers, label("domain"))
            }
            "lcbft_consensus_view_changes_total" => (&mut c.view_changes, label("domain")),
            _ => continue,
        };
        if let Some(key) = key {
            *map.entry(key.to_owned()).or_default() += value as u64;
        }
    }
    c
}

/// One Prometheus text sample with labels: its name, labels and value.
fn sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let (name, rest) = line.split_once('{')?;
    let (labels, rest) = parse_labels(rest)?;
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The labels after a sample's `{`, and what follows the closing `}`. Values are quoted and
/// may hold commas, braces and escaped quotes (`\"`, `\\`, `\n`).
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once('=')?;
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        s = &rest[end + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_view_changes_per_domain_and_ignores_the_rest() {
        let text = "# HELP x\nlcbft_consensus_view_changes_total{layer=\"global\",domain=\"global\",cause=\"timeout\"} 3\n\
                    lcbft_consensus_view_changes_total{domain=\"local/1\",cause=\"timeout\",layer=\"local\"} 2\n\
                    lcbft_commits_total{domain=\"global\"} 9\n\
                    lcbft_consensus_view_changes_total{layer=\"local\",domain=\"local/2\",cause=\"timeout\"} 4\n\
                    lcbft_consensus_view_changes_total{layer=\"local\",domain=\"local/2\",cause=\"peers\"} 1\n\
                    lcbft_consensus_double_votes_total{layer=\"local\",domain=\"local/2\"} 2\n\
                    lcbft_consensus_double_votes_total{layer=\"local\",domain=\"local/1\"} 1\n\
                    lcbft_sync_requests_total{layer=\"local\",domain=\"local/1\",direction=\"state_transfer\"} 2\n\
                    lcbft_sync_requests_total{layer=\"local\",domain=\"local/1\",direction=\"sent\"} 7\n# EOF\n";
        let c = parse_counters(text);
        assert_eq!(c.view_changes.get("global"), Some(&3));
        assert_eq!(c.view_changes.get("local/1"), Some(&2));
        assert_eq!(c.view_changes.get("local/2"), Some(&5));
        assert_eq!(c.view_changes.len(), 3);
        assert_eq!(c.double_votes.get("local"), Some(&3));
        assert_eq!(c.state_transfers.get("local/1"), Some(&2));
        assert_eq!(c.state_transfers.len(), 1);
        assert_eq!(c.double_votes.get("global"), None);
    }

    #[test]
    fn label_values_may_hold_commas_braces_and_escaped_quotes() {
        let line = r#"lcbft_consensus_view_changes_total{note="a,b}c \"q\" \\",domain="local/3", cause="x=y"} 6 1700000000"#;
        let (name, labels, value) = sample(line).expect("a sample");
        assert_eq!(name, "lcbft_consensus_view_changes_total");
        assert_eq!(labels["note"], r#"a,b}c "q" \"#);
        assert_eq!(labels["domain"], "local/3");
        assert_eq!(labels["cause"], "x=y");
        assert_eq!(value, 6.0);
        assert_eq!(parse_counters(line).view_changes.get("local/3"), Some(&6));
        for bad in [r#"x{a="b} 1"#, r#"x{a=b} 1"#, r#"x{a="b"} one"#] {
            assert!(sample(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn status_without_anchor_fields_parses_and_with_them_too() {
        let old = r#"{"role":"edge","peer_id":"p","listen":[],"connected":[],
            "domains":[{"domain":"local/1","index":0,"role":"edge","view":5,"term":0,"leader":0,
            "leader_peer":"p","committed_height":4,"committed_hash":"ab","high_qc_view":5,
            "last_voted":5,"peers":[]}]}"#;
        let s: NodeStatus = serde_json::from_str(old).unwrap();
        assert_eq!(s.domain("local/1").unwrap().committed_height, 4);
        let snap = Snapshot {
            nodes: vec![NodeObs {
                name: "edge1".into(),
                pid: Some(1),
                status: Some(s),
                counters: None,
            }],
        };
        assert!(snap.anchored().is_none());
        let new = r#"{"role":"edge","peer_id":"p","listen":[],"connected":[],
            "domains":[{"domain":"global","index":2,"role":"edge","view":9,"term":0,"leader":0,
            "leader_peer":"q","committed_height":7,"committed_hash":"cd","high_qc_view":9,
            "last_voted":9,"peers":[],"anchored":{"local/1":3}},
            {"domain":"local/1","index":0,"role":"edge","view":5,"term":0,"leader":0,
            "leader_peer":"p","committed_height":4,"committed_hash":"ab","high_qc_view":5,
            "last_voted":5,"peers":[],"anchored_height":2}]}"#;
        let s: NodeStatus = serde_json::from_str(new).unwrap();
        let snap = Snapshot {
            nodes: vec![NodeObs {
                name: "edge1".into(),
                pid: Some(1),
                status: Some(s),
                counters: None,
            }],
        };
        assert_eq!(snap.anchored().unwrap().get("local/1"), Some(&3));
    }
}
