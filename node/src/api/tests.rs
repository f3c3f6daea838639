use super::*;
use crate::http_client::{HttpResponse, request, request_bytes};
use crate::trace::{Action, Trace};
use libp2p::identity::Keypair;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An API on an ephemeral port with a stand-in main loop that counts submissions.
async fn start() -> (SocketAddr, Arc<AtomicUsize>, tempfile::TempDir) {
    start_with(PayloadKind::Traces).await
}

async fn start_with(payload: PayloadKind) -> (SocketAddr, Arc<AtomicUsize>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("store");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (tx, mut rx) = mpsc::channel(16);
    let submitted = Arc::new(AtomicUsize::new(0));
    let count = submitted.clone();
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        while let Some(req) = rx.recv().await {
            match req {
                ApiRequest::Submit { domain, txs, reply } => {
                    if domain != DomainId::Global {
                        let e = SubmitError::NotMember(domain.to_string());
                        let _ = reply.send(vec![Err(e); txs.len()]);
                        continue;
                    }
                    count.fetch_add(txs.len(), Ordering::SeqCst);
                    let _ = reply.send(txs.iter().map(|tx| Ok(seen.insert(tx.id()))).collect());
                }
                ApiRequest::Pending { reply, .. } => {
                    let _ = reply.send(Lookup::Unknown);
                }
                ApiRequest::Status { reply } => {
                    let _ = reply.send(Vec::new());
                }
                ApiRequest::SubmitAnchor { reply, .. } => {
                    let _ = reply.send(Err("not a validator".into()));
                }
            }
        }
    });
    let admission = crate::admission::Admission::new(
        1024,
        payload == PayloadKind::Raw,
        store.clone(),
        metrics.clone(),
    );
    let state = ApiState {
        admission,
        store,
        requests: tx,
        net: NetHandle::detached(),
        registry: Arc::new(registry),
        metrics,
        max_trace_bytes: 1024,
        payload,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, state));
    (addr, submitted, dir)
}

fn signed(domain: DomainId, body: &[u8]) -> String {
    serde_json::to_string(&signed_trace(domain, body).to_json()).expect("json")
}

fn signed_trace(domain: DomainId, body: &[u8]) -> SignedTrace {
    let key = Keypair::generate_ed25519();
    let producer = key
        .clone()
        .try_into_ed25519()
        .expect("ed25519")
        .public()
        .to_bytes();
    let trace = Trace {
        producer,
        timestamp_ms: 1,
        domain,
        action: Action::Generated,
        application: "test".into(),
        digest: *blake3::hash(body).as_bytes(),
        body: Some(body.to_vec()),
        parents: vec![],
    };
    trace.sign(&key).expect("sign")
}

async fn post(addr: SocketAddr, body: &str) -> HttpResponse {
    request(addr, "POST", "/v1/traces", Some(body))
        .await
        .expect("request")
}

#[tokio::test]
async fn good_traces_are_admitted_once_and_bad_ones_get_4xx_and_store_nothing() {
    let (addr, submitted, _dir) = start().await;

    let good = signed(DomainId::Global, b"21.5C");
    let r = post(addr, &good).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"pending\""), "{}", r.body);
    let r = post(addr, &good).await;
    assert_eq!(r.status, 200, "duplicate: {}", r.body);
    assert!(r.body.contains("\"duplicate\":true"), "{}", r.body);
    assert_eq!(submitted.load(Ordering::SeqCst), 2);

    let tampered = good.replace("\"test\"", "\"evil\"");
    let local = signed(DomainId::Local(9), b"x");
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "bad JSON"),
        (tampered, 400, "signature"),
        (
            good.replace("\"generated\"", "\"teleported\""),
            400,
            "bad JSON",
        ),
        (signed(DomainId::Global, &[7u8; 2000]), 413, "exceeds"),
        ("x".repeat(64 * 1024), 413, ""),
        (local, 422, "not a member"),
    ];
    for (body, status, needle) in cases {
        let r = post(addr, &body).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert!(r.body.contains(needle), "{needle} in {}", r.body);
    }
    // Only the non-member submission reached the main loop (and it refused it).
    assert_eq!(submitted.load(Ordering::SeqCst), 2);

    let r = request(addr, "GET", "/metrics", None)
        .await
        .expect("metrics");
    assert!(
        r.body
            .contains("lcbft_traces_refused_total{reason=\"bad_json\"} 2"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("lcbft_traces_admitted_total 1"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn lookups_answer_404_and_400() {
    let (addr, _, _dir) = start().await;
    let r = request(
        addr,
        "GET",
        &format!("/v1/traces/{}", "ab".repeat(32)),
        None,
    )
    .await
    .expect("get");
    assert_eq!(r.status, 404);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["status"], "unknown", "{v}");
    assert!(v["error"].is_string(), "{v}");
    let r = request(addr, "GET", "/v1/traces/xyz", None)
        .await
        .expect("get");
    assert_eq!(r.status, 400);
    let r = request(addr, "GET", "/v1/domains/global/blocks/1", None)
        .await
        .expect("block");
    assert_eq!(r.status, 404);
    let r = request(addr, "GET", "/v1/domains/mars/blocks/1", None)
        .await
        .expect("block");
    assert_eq!(r.status, 400);
    let r = request(addr, "GET", "/v1/status", None)
        .await
        .expect("status");
    assert_eq!(r.status, 200);
    let s: StatusJson = serde_json::from_str(&r.body).expect("status json");
    assert!(s.domains.is_empty());
}

fn entries(r: &HttpResponse) -> Vec<serde_json::Value> {
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("a JSON array")
}

#[tokio::test]
async fn a_json_array_is_admitted_item_by_item_in_order() {
    let (addr, submitted, _dir) = start().await;
    let good = signed(DomainId::Global, b"a");
    let other = signed(DomainId::Global, b"b");
    let tampered = good.replace("\"test\"", "\"evil\"");
    let local = signed(DomainId::Local(9), b"c");
    let body = format!("[{good}, {other}, {good}, {tampered}, {{\"x\": 1}}, {local}]");
    let r = post(addr, &body).await;
    let e = entries(&r);
    assert_eq!(e.len(), 6, "{}", r.body);
    assert_eq!(e[0]["status"], "pending");
    assert_eq!(e[0]["duplicate"], false);
    assert_eq!(e[1]["status"], "pending");
    assert_ne!(e[0]["id"], e[1]["id"]);
    assert_eq!(e[2]["duplicate"], true, "the same trace again");
    assert_eq!(e[2]["id"], e[0]["id"]);
    assert_eq!(e[3]["status"], "rejected");
    assert_eq!(e[3]["reason"], "bad_signature");
    assert_eq!(e[4]["reason"], "bad_json");
    assert_eq!(e[5]["reason"], "not_member");
    assert!(
        e[5]["error"]
            .as_str()
            .is_some_and(|m| m.contains("not a member"))
    );
    // Three good items reached the main loop; the non-member one was refused there.
    assert_eq!(submitted.load(Ordering::SeqCst), 3);
    // A single object still gets the answer it always got.
    let r = post(addr, &other).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"duplicate\":true"), "{}", r.body);
    let r = post(addr, "[]").await;
    assert_eq!(entries(&r).len(), 0);
}

#[tokio::test]
async fn a_cbor_array_of_signed_traces_is_admitted() {
    let (addr, submitted, _dir) = start().await;
    let a = signed_trace(DomainId::Global, b"a");
    let mut bad = signed_trace(DomainId::Global, b"b");
    bad.signature[0] ^= 1;
    let big = signed_trace(DomainId::Global, &[1u8; 2000]);
    let body = lcbft_protocol::codec::encode(&vec![a.clone(), bad, big]);
    let r = request_bytes(addr, "POST", "/v1/traces", "application/cbor", &body)
        .await
        .expect("post");
    let e = entries(&r);
    assert_eq!(e.len(), 3, "{}", r.body);
    assert_eq!(e[0]["status"], "pending");
    assert_eq!(e[0]["id"], a.to_tx().id().to_hex());
    assert_eq!(e[1]["reason"], "bad_signature");
    assert_eq!(e[2]["reason"], "oversized");
    assert_eq!(submitted.load(Ordering::SeqCst), 1);
    let r = request_bytes(addr, "POST", "/v1/traces", "application/cbor", b"\xff\x00")
        .await
        .expect("post");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("CBOR"), "{}", r.body);
}

#[tokio::test]
async fn batches_over_the_limits_get_a_json_413() {
    let (addr, submitted, _dir) = start().await;
    let one = signed(DomainId::Global, b"a");
    let many = format!(
        "[{}]",
        vec![one.as_str(); submit::MAX_BATCH_ITEMS + 1].join(",")
    );
    let r = post(addr, &many).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("at most 4096"), "{}", r.body);
    let huge = format!("[\"{}\"]", "x".repeat(submit::MAX_BATCH_BYTES));
    let r = post(addr, &huge).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON error");
    assert!(
        v["error"].as_str().is_some_and(|m| m.contains("limit")),
        "{v}"
    );
    assert_eq!(submitted.load(Ordering::SeqCst), 0);
}

fn frames(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend((p.len() as u32).to_be_bytes());
        out.extend(*p);
    }
    out
}

#[tokio::test]
async fn raw_payloads_only_on_a_raw_network_and_traces_only_on_a_trace_network() {
    let (addr, _, _dir) = start().await;
    let body = frames(&[&[1u8; 512]]);
    let raw = |addr, path: &'static str, body: Vec<u8>| async move {
        request_bytes(addr, "POST", path, "application/octet-stream", &body)
            .await
            .expect("post")
    };
    let r = raw(addr, "/v1/payloads?domain=global", body.clone()).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("/v1/traces"), "{}", r.body);

    let (addr, submitted, _dir2) = start_with(PayloadKind::Raw).await;
    let r = post(addr, &signed(DomainId::Global, b"a")).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("/v1/payloads"), "{}", r.body);

    let body = frames(&[
        &[1u8; 512],
        &[2u8; 512],
        &[1u8; 512],
        &[0u8; 4],
        &[],
        &[3u8; 1025],
    ]);
    let r = raw(addr, "/v1/payloads?domain=global", body).await;
    let e = entries(&r);
    assert_eq!(e.len(), 6, "{}", r.body);
    assert_eq!(e[0]["status"], "pending");
    assert_eq!(
        e[0]["id"],
        Tx::new(vec![1u8; 512]).id().to_hex(),
        "the id of a raw payload is its hash as a Tx"
    );
    assert_eq!(e[1]["duplicate"], false);
    assert_eq!(e[2]["duplicate"], true);
    // The admission rule's reasons: an anchor-tagged or empty payload is malformed.
    assert_eq!(e[3]["reason"], "malformed");
    assert_eq!(e[4]["reason"], "malformed");
    assert_eq!(e[5]["reason"], "oversized");
    assert_eq!(submitted.load(Ordering::SeqCst), 3);

    let r = raw(addr, "/v1/payloads?domain=local/9", frames(&[&[1u8; 8]])).await;
    assert_eq!(entries(&r)[0]["reason"], "not_member");
    for path in ["/v1/payloads", "/v1/payloads?domain=local/x"] {
        let r = raw(addr, path, frames(&[&[1u8; 8]])).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body.contains("expected 'global' or 'local/<id>'"),
            "{}",
            r.body
        );
    }
    let r = raw(addr, "/v1/payloads?domain=global", vec![0, 0, 0, 9, 1]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("announces 9 bytes"), "{}", r.body);
}
