use super::*;
use crate::trace::{Action, Trace};
use lcbft_protocol::anchor::CommitProof;
use lcbft_protocol::types::{Block, Certificate};
use libp2p::identity::Keypair;
use prometheus_client::registry::Registry;

const DOMAIN: DomainId = DomainId::Local(1);

struct Fixture {
    admission: Admission,
    store: Store,
    metrics: Metrics,
    key: Keypair,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db")).expect("open");
    let metrics = Metrics::register(&mut Registry::default());
    Fixture {
        admission: Admission::new(1024, false, store.clone(), metrics.clone()),
        store,
        metrics,
        key: Keypair::generate_ed25519(),
        _dir: dir,
    }
}

fn trace(key: &Keypair, n: u64) -> Trace {
    let producer = key
        .clone()
        .try_into_ed25519()
        .expect("ed25519")
        .public()
        .to_bytes();
    Trace {
        producer,
        timestamp_ms: 1_700_000_000_000 + n,
        domain: DOMAIN,
        action: Action::Generated,
        application: "thermo".into(),
        digest: *blake3::hash(&n.to_be_bytes()).as_bytes(),
        body: Some(b"21.5C".to_vec()),
        parents: Vec::new(),
    }
}

fn signed(key: &Keypair, t: Trace) -> Tx {
    t.sign(key).expect("sign").to_tx()
}

fn refused(m: &Metrics, reason: &str) -> u64 {
    m.traces_refused
        .get_or_create(&Metrics::reason(reason))
        .get()
}

#[test]
fn one_bad_item_in_a_batch_is_refused_alone() {
    let f = fixture();
    let mut txs: Vec<Tx> = (0..5).map(|i| signed(&f.key, trace(&f.key, i))).collect();
    let mut forged = SignedTrace::from_tx(&txs[2]).expect("decode");
    forged.trace.application = "other".into();
    txs[2] = forged.to_tx();
    let verdicts = f.admission.check(DOMAIN, &txs);
    assert_eq!(
        verdicts,
        vec![Ok(()), Ok(()), Err(Refusal::BadSignature), Ok(()), Ok(())]
    );
    assert_eq!(refused(&f.metrics, "bad_signature"), 1);
    // Verified once: the same items again pass, the forged one still fails.
    let again = f.admission.check(DOMAIN, &txs);
    assert_eq!(again, verdicts);
}

#[test]
fn each_rule_refuses_with_its_reason() {
    let f = fixture();
    let good = signed(&f.key, trace(&f.key, 1));
    assert_eq!(
        f.admission.check(DOMAIN, std::slice::from_ref(&good)),
        vec![Ok(())]
    );

    let mut big = trace(&f.key, 2);
    big.body = Some(vec![0; 1025]);
    let mut many = trace(&f.key, 3);
    many.parents = vec![[1; 32]; MAX_PARENTS + 1];
    let elsewhere = signed(&f.key, trace(&f.key, 4));
    // The same signed trace with its map entries in another order: it decodes to the same
    // fields, but it is not the encoding its id is the hash of.
    let value: cbor4ii::core::Value = codec::decode(good.bytes(), 1 << 20).expect("value");
    let cbor4ii::core::Value::Map(mut entries) = value else {
        panic!("a signed trace is a map");
    };
    entries.reverse();
    let reordered = Tx::new(codec::encode(&cbor4ii::core::Value::Map(entries)));
    assert_ne!(reordered, good);
    assert_eq!(SignedTrace::from_tx(&reordered).ok(), None);

    let cases = [
        (signed(&f.key, big), Refusal::Oversized),
        (signed(&f.key, many), Refusal::BadField),
        (Tx::new(vec![0xff; 40]), Refusal::Malformed),
        (Tx::new(vec![0; 70_000]), Refusal::Oversized),
        (reordered, Refusal::NonCanonical),
    ];
    let mut counted = std::collections::HashMap::new();
    for (tx, why) in cases {
        assert_eq!(f.admission.check(DOMAIN, &[tx]), vec![Err(why)], "{why:?}");
        *counted.entry(why.label()).or_insert(0) += 1;
        assert_eq!(
            refused(&f.metrics, why.label()),
            counted[why.label()],
            "{why:?}"
        );
    }
    assert_eq!(
        f.admission.check(DomainId::Local(2), &[elsewhere]),
        vec![Err(Refusal::WrongDomain)]
    );
}

/// A verified trace is not decoded again, but its domain still counts: the bytes are the
/// same, and they name their domain.
#[test]
fn a_verified_trace_is_still_refused_in_another_domain() {
    let f = fixture();
    let good = signed(&f.key, trace(&f.key, 1));
    let one = std::slice::from_ref(&good);
    assert_eq!(f.admission.check(DOMAIN, one), vec![Ok(())]);
    assert_eq!(
        f.admission.check(DomainId::Local(2), one),
        vec![Err(Refusal::WrongDomain)]
    );
    assert_eq!(f.admission.check(DOMAIN, one), vec![Ok(())]);
}

#[test]
fn a_committed_trace_is_refused() {
    let f = fixture();
    let tx = signed(&f.key, trace(&f.key, 9));
    assert_eq!(
        f.admission.check(DOMAIN, std::slice::from_ref(&tx)),
        vec![Ok(())]
    );
    let genesis = Block::genesis(DOMAIN);
    let mut block = genesis.clone();
    block.height = 1;
    block.view = 1;
    block.parent = genesis.hash();
    block.payload = vec![tx.clone()].into();
    let proof = CommitProof {
        above: Vec::new(),
        qc: Certificate::genesis(DOMAIN),
    };
    f.store.commit_block(&block, &proof).expect("commit");
    assert_eq!(
        f.admission.check(DOMAIN, &[tx]),
        vec![Err(Refusal::Committed)]
    );
    assert_eq!(refused(&f.metrics, "committed"), 1);
}
