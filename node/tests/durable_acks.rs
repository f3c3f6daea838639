//! A `202` from `POST /v1/traces` means the trace is on the disk of the node that answered:
//! SIGKILL that node right after the answer, restart it, and the trace is committed.
//!
//! The network: 4 global validators; node 0 is also the edge of local/1, whose devices are
//! nodes 4, 5 and 6.

mod common;

use common::{Testnet, get, rt, trace_committed, wait_until};
use lcbft_node::http_client;
use lcbft_node::trace::{Action, Trace};
use lcbft_protocol::types::DomainId;
use libp2p::identity::Keypair;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const EDGE: usize = 0;

/// A signed trace for local/1, as the JSON `POST /v1/traces` takes.
fn signed_json(key: &Keypair, n: u64) -> Value {
    let producer = key
        .clone()
        .try_into_ed25519()
        .expect("ed25519")
        .public()
        .to_bytes();
    let data = format!("durable-{n}");
    let trace = Trace {
        producer,
        timestamp_ms: 1_700_000_000_000 + n,
        domain: DomainId::Local(1),
        action: Action::Generated,
        application: "durable-acks".into(),
        digest: *blake3::hash(data.as_bytes()).as_bytes(),
        body: Some(data.into_bytes()),
        parents: Vec::new(),
    };
    serde_json::to_value(trace.sign(key).expect("sign").to_json()).expect("json")
}

/// POST a body to `/v1/traces`: (status, answer).
fn post_traces(api: SocketAddr, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    rt().block_on(async {
        let r = http_client::request(api, "POST", "/v1/traces", Some(&body))
            .await
            .expect("the node answers");
        let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    })
}

fn api_up(api: SocketAddr) -> bool {
    wait_until(Duration::from_secs(30), || get(api, "/v1/status").is_some())
}

#[test]
fn an_acknowledged_trace_is_committed_after_a_sigkill_of_the_node_that_took_it() {
    let mut net = Testnet::layered(4, 3);
    let key = Keypair::generate_ed25519();
    let device = 4;

    // 1. The device runs alone: nobody to gossip the trace to, so after the kill only the
    //    device's own disk can hold it.
    net.nodes[device].start();
    assert!(api_up(net.nodes[device].api), "{}", net.logs());
    let (status, v) = post_traces(net.nodes[device].api, &signed_json(&key, 0));
    assert_eq!(status, 202, "{v}");
    net.nodes[device].kill();
    let alone = v["id"].as_str().expect("id").to_owned();

    // Back up, still alone: the trace is pending again, from the disk.
    net.nodes[device].start();
    assert!(api_up(net.nodes[device].api), "{}", net.logs());
    let reloaded = get(net.nodes[device].api, &format!("/v1/traces/{alone}"));

    // 2. The whole network: the device offers the trace again and the domain commits it.
    for i in 0..net.nodes.len() {
        if i != device {
            net.nodes[i].start();
        }
    }
    let committed = wait_until(Duration::from_secs(90), || {
        trace_committed(net.nodes[device].api, &alone)
            && trace_committed(net.nodes[EDGE].api, &alone)
    });
    assert!(
        committed,
        "the trace acknowledged before the SIGKILL was never committed\n{}",
        net.logs()
    );
    let (status, v) = reloaded.expect("the restarted device answers");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["durable"], true, "{v}");

    // 3. In a running network: a batch submitted to another device, killed at once.
    let other = 5;
    assert!(
        wait_until(Duration::from_secs(30), || {
            get(net.nodes[other].api, "/v1/status")
                .is_some_and(|(_, v)| v["connected"].as_array().is_some_and(|c| c.len() >= 3))
        }),
        "{}",
        net.logs()
    );
    let batch: Vec<Value> = (1..=64).map(|n| signed_json(&key, n)).collect();
    let (status, v) = post_traces(net.nodes[other].api, &Value::Array(batch));
    net.nodes[other].kill();
    assert_eq!(status, 200, "{v}");
    let ids: Vec<String> = v
        .as_array()
        .expect("one entry per item")
        .iter()
        .map(|e| {
            assert_eq!(e["status"], "pending", "{e}");
            e["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 64);
    net.nodes[other].start();
    let all = wait_until(Duration::from_secs(90), || {
        ids.iter()
            .all(|id| trace_committed(net.nodes[other].api, id))
    });
    assert!(all, "a trace of the batch was lost\n{}", net.logs());

    // Committed, the entries are gone from the disk's list: a fresh kill and restart finds
    // nothing to offer.
    let (_, v) = get(net.nodes[other].api, &format!("/v1/traces/{}", ids[0])).expect("answer");
    assert_eq!(v["status"], "committed", "{v}");
    let (status, v) = get(
        net.nodes[other].api,
        &format!("/v1/traces/{}", "ab".repeat(32)),
    )
    .expect("answer");
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["status"], "unknown", "{v}");
}
