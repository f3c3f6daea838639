use super::*;
use crate::http_client::{HttpResponse, request};
use crate::trace::{Action, Trace};
use libp2p::identity::Keypair;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An API on an ephemeral port with a stand-in main loop that counts submissions.
async fn start() -> (SocketAddr, Arc<AtomicUsize>, tempfile::TempDir) {
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
                ApiRequest::Submit { domain, tx, reply } => {
                    if domain != DomainId::Global {
                        let _ = reply.send(Err(SubmitError::NotMember(domain_name(domain))));
                        continue;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = reply.send(Ok(seen.insert(tx.id())));
                }
                ApiRequest::Pending { reply, .. } => {
                    let _ = reply.send(None);
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
    let state = ApiState {
        store,
        requests: tx,
        net: NetHandle::detached(),
        registry: Arc::new(registry),
        metrics,
        max_trace_bytes: 1024,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, state));
    (addr, submitted, dir)
}

fn signed(domain: DomainId, body: &[u8]) -> String {
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
    let s = trace.sign(&key).expect("sign");
    serde_json::to_string(&s.to_json()).expect("json")
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
