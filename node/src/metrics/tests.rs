use super::*;
use lcbft_protocol::Config;
use lcbft_protocol::crypto::{Dealer, SimScheme};
use lcbft_protocol::io::{Input, Output};
use lcbft_protocol::replica::Replica;
use lcbft_protocol::types::{ReplicaIndex, Tx};
use std::collections::VecDeque;

fn classic(registry: &Registry) -> String {
    encode_text(registry, "text/plain").expect("encode").1
}

/// The value of the sample whose line starts with `name_and_labels`, summed.
fn value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn initialised_series_exist_before_any_event() {
    let mut r = Registry::default();
    let m = Metrics::register(&mut r);
    Metrics::register_collectors(&mut r, PathBuf::from("/nonexistent/lcbft.redb"));
    m.init_domain(DomainId::Global);
    m.init_domain(DomainId::Local(1));
    m.init_anchoring([DomainId::Local(1)]);
    m.set_info("12D3Koo", "edge");
    let text = classic(&r);
    for want in [
        "lcbft_consensus_commits_total{layer=\"global\",domain=\"global\"} 0",
        "lcbft_consensus_committed_height{layer=\"local\",domain=\"local/1\"} 0",
        "lcbft_consensus_view_changes_total{layer=\"local\",domain=\"local/1\",cause=\"timeout\"} 0",
        "lcbft_consensus_certificates_formed_total{layer=\"global\",domain=\"global\",kind=\"timeout\"} 0",
        "lcbft_consensus_commit_latency_seconds_count{layer=\"global\",domain=\"global\"} 0",
        "lcbft_sync_requests_total{layer=\"global\",domain=\"global\",direction=\"sent\"} 0",
        "lcbft_anchors_submitted_total{domain=\"local/1\"} 0",
        "lcbft_anchors_rejected_total{reason=\"gap\"} 0",
        "lcbft_anchored_height{domain=\"local/1\"} 0",
        "lcbft_anchor_lag_seconds_count{domain=\"local/1\"} 0",
        "lcbft_storage_pruned_blocks_total{layer=\"local\",domain=\"local/1\"} 0",
        "lcbft_node_info{peer_id=\"12D3Koo\",role=\"edge\",version=\"",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    // No store file: no size, and no error.
    assert!(!text.contains("lcbft_storage_size_bytes"));
}

#[test]
fn recording_methods_move_their_series() {
    let mut r = Registry::default();
    let m = Metrics::register(&mut r);
    let l1 = DomainId::Local(1);
    m.on_committed(l1, 7, 3);
    m.set_pool(l1, 3, 400);
    m.set_pool(l1, 1, 50);
    m.on_anchor_submitted(l1);
    m.on_anchor_accepted(l1);
    m.on_anchor_rejected("fork");
    m.set_anchored_height(l1, 6);
    m.observe_anchor_lag(l1, 1.5);
    m.on_pruned(l1, 4);
    m.on_net_rejected("gossip", "not_member");
    m.on_message(DomainId::Global, true, "block_request", 42);
    m.observe_storage_write("commit", 0.002);
    let text = classic(&r);
    let d = "{layer=\"local\",domain=\"local/1\"}";
    assert_eq!(
        value(&text, &format!("lcbft_consensus_committed_height{d}")),
        7.0
    );
    assert_eq!(
        value(&text, &format!("lcbft_traces_committed_total{d}")),
        3.0
    );
    assert_eq!(value(&text, &format!("lcbft_mempool_traces{d}")), 1.0);
    assert_eq!(value(&text, &format!("lcbft_mempool_bytes{d}")), 50.0);
    assert_eq!(
        value(&text, &format!("lcbft_storage_pruned_blocks_total{d}")),
        4.0
    );
    assert_eq!(
        value(&text, "lcbft_anchors_accepted_total{domain=\"local/1\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "lcbft_anchors_rejected_total{reason=\"fork\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "lcbft_anchored_height{domain=\"local/1\"}"),
        6.0
    );
    assert_eq!(
        value(&text, "lcbft_anchor_lag_seconds_sum{domain=\"local/1\"}"),
        1.5
    );
    assert_eq!(
        value(
            &text,
            "lcbft_net_rejected_messages_total{transport=\"gossip\",reason=\"not_member\"}"
        ),
        1.0
    );
    let sent = "{layer=\"global\",domain=\"global\",direction=\"sent\"";
    assert_eq!(
        value(&text, &format!("lcbft_sync_requests_total{sent}}}")),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("lcbft_net_message_bytes_total{sent},kind=\"block_request\"}}")
        ),
        42.0
    );
    assert_eq!(
        value(&text, "lcbft_storage_write_seconds_count{op=\"commit\"}"),
        1.0
    );
}

#[test]
fn reasons_and_kinds_are_snake_case() {
    assert_eq!(reject_reason(Reject::BadShare), "bad_share");
    assert_eq!(reject_reason(Reject::WrongDomain), "wrong_domain");
    assert_eq!(reject_reason(Reject::Malformed), "malformed");
    assert_eq!(kind_name(Kind::ViewChange), "view_change");
    assert_eq!(snake_case("NotLeader"), "not_leader");
}

/// Four global replicas with observed, timed keys, wired directly: their commits, certificates
/// and crypto show up in the metrics.
#[test]
fn an_observed_domain_records_commits_certificates_and_crypto() {
    let n = 4;
    let dealt = SimScheme::deal(n, 3, [9; 32]);
    let mut r = Registry::default();
    let m = Metrics::register(&mut r);
    m.init_domain(DomainId::Global);
    let mut replicas: Vec<(Replica, DomainObserver)> = (0..n)
        .map(|i| {
            let me = i as ReplicaIndex;
            let keys = SimScheme::load(n, &dealt.public, dealt.secrets.get(i)).expect("keys");
            let keys = m.time_crypto(DomainId::Global, keys);
            // This loop fires no timers: unpaced leaders propose without one.
            let cfg = Config::new(DomainId::Global, me, n).unpaced();
            let replica = Replica::new(cfg, keys);
            (replica, m.observer(DomainId::Global))
        })
        .collect();
    let mut queue: VecDeque<(usize, Input)> = VecDeque::new();
    for round in 0..5 {
        for i in 0..n {
            queue.push_back((
                i,
                Input::Payload(vec![Tx::new(format!("t{round}").into_bytes())]),
            ));
        }
    }
    let now = tokio::time::Instant::now();
    let mut steps = 0;
    while let Some((i, input)) = queue.pop_front() {
        steps += 1;
        assert!(steps < 100_000, "runaway");
        let (replica, obs) = &mut replicas[i];
        obs.on_input(&input, now);
        let outs = replica.handle(input);
        for out in &outs {
            obs.on_output(out, now);
        }
        obs.on_status(&replica.status());
        let from = i as ReplicaIndex;
        for out in outs {
            match out {
                Output::Send { to, msg } if usize::from(to) != i => {
                    queue.push_back((usize::from(to), Input::Message { from, msg }))
                }
                Output::Broadcast(msg) => {
                    for j in (0..n).filter(|&j| j != i) {
                        let msg = msg.clone();
                        queue.push_back((j, Input::Message { from, msg }));
                    }
                }
                Output::Persist { seq, .. } => queue.push_back((i, Input::Persisted(seq))),
                _ => {}
            }
        }
    }
    let text = classic(&r);
    let d = "{layer=\"global\",domain=\"global\"";
    let latency = value(
        &text,
        &format!("lcbft_consensus_commit_latency_seconds_count{d}}}"),
    );
    assert!(latency >= 1.0, "no commit latency observed:\n{text}");
    let votes = value(
        &text,
        &format!("lcbft_consensus_certificates_formed_total{d},kind=\"vote\"}}"),
    );
    assert!(votes >= 3.0, "certificates:\n{text}");
    assert_eq!(
        votes,
        value(
            &text,
            &format!("lcbft_consensus_certificate_formation_seconds_count{d},kind=\"vote\"}}")
        ),
        "each certificate formed here had its first share seen here"
    );
    assert!(value(&text, &format!("lcbft_consensus_proposals_total{d}}}")) >= 1.0);
    assert!(value(&text, &format!("lcbft_consensus_view{d}}}")) >= 1.0);
    for op in ["sign_share", "verify", "combine"] {
        let ops = value(
            &text,
            &format!("lcbft_crypto_operations_total{d},op=\"{op}\"}}"),
        );
        let timed = value(
            &text,
            &format!("lcbft_crypto_operation_seconds_count{d},op=\"{op}\"}}"),
        );
        assert!(
            ops >= 1.0 && ops == timed,
            "{op}: {ops} counted, {timed} timed"
        );
    }
}
