//! `lcbft-bench crypto`: what each threshold-signature operation costs with each BLS backend,
//! and the floor of one basic phase built from those figures (DESIGN §2): a replica hashes the
//! message to the curve once, signs its share once and verifies the certificate once; the
//! collector also combines `n - f` shares and verifies the result once.

use crate::cpu::thread_ns;
use clap::{Args as ClapArgs, ValueEnum};
use lcbft_protocol::crypto::{
    BlsttcScheme, Dealer, SchemeId, Share, ThresholdCryptoScheme, ThresholdKeys,
};
use lcbft_protocol::types::ReplicaIndex;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    /// threshold_crypto (the default backend).
    Tc,
    /// blsttc (blst-based).
    Blsttc,
    Both,
}

impl SchemeArg {
    pub fn schemes(self) -> Vec<SchemeId> {
        match self {
            SchemeArg::Tc => vec![SchemeId::ThresholdCrypto],
            SchemeArg::Blsttc => vec![SchemeId::Blsttc],
            SchemeArg::Both => vec![SchemeId::ThresholdCrypto, SchemeId::Blsttc],
        }
    }
}

#[derive(ClapArgs)]
pub struct Args {
    /// Domain sizes (n = 3f + 1 or more).
    #[arg(long, value_delimiter = ',', default_value = "4,7,16,31")]
    n: Vec<usize>,
    #[arg(long, value_enum, default_value = "both")]
    scheme: SchemeArg,
    /// CPU milliseconds spent timing each operation (at least three calls each).
    #[arg(long, default_value_t = 300)]
    budget_ms: u64,
}

/// CPU nanoseconds per operation for one backend and domain size.
#[derive(Clone, Copy, Debug, Default)]
pub struct Costs {
    pub n: usize,
    pub hash_to_curve: f64,
    /// Sign, verify share and verify are timed on a message already hashed to the curve (each
    /// key set remembers its hashed messages), so a phase's floor adds the hash once.
    pub sign_share: f64,
    pub verify_share: f64,
    /// Combining `n - f` shares.
    pub combine: f64,
    pub verify: f64,
}

impl Costs {
    /// One basic phase at a replica that is not the collector: hash, sign, verify the
    /// certificate.
    pub fn replica_phase(&self) -> f64 {
        self.hash_to_curve + self.sign_share + self.verify
    }

    /// One basic phase at the collector: a replica's work plus one combination (its verify of
    /// the combined signature is the one it would do as a replica).
    pub fn collector_phase(&self) -> f64 {
        self.replica_phase() + self.combine
    }

    /// CM_s per replica, averaged over the domain (one collector among n).
    pub fn phase_mean(&self) -> f64 {
        self.replica_phase() + self.combine / self.n as f64
    }

    /// CPU of a run's crypto operations at these prices: sign, verify share, combine, verify
    /// counts as in `SimReport::crypto`; each sign also pays one hash (one message per share).
    pub fn price(&self, ops: [f64; 4]) -> f64 {
        ops[0] * (self.sign_share + self.hash_to_curve)
            + ops[1] * self.verify_share
            + ops[2] * self.combine
            + ops[3] * self.verify
    }

    pub fn json(&self) -> Value {
        let us = |ns: f64| (ns / 1e3 * 10.0).round() / 10.0;
        json!({
            "n": self.n,
            "hash_to_curve_us": us(self.hash_to_curve),
            "sign_share_us": us(self.sign_share),
            "verify_share_us": us(self.verify_share),
            "combine_us": us(self.combine),
            "verify_us": us(self.verify),
            "phase_replica_us": us(self.replica_phase()),
            "phase_collector_us": us(self.collector_phase()),
            "phase_mean_us": us(self.phase_mean()),
        })
    }
}

pub fn scheme_name(scheme: SchemeId) -> &'static str {
    match scheme {
        SchemeId::ThresholdCrypto => "tc",
        SchemeId::Blsttc => "blsttc",
        SchemeId::Sim => "sim",
    }
}

/// Mean CPU nanoseconds of `op(i)` over at least three calls and about `budget_ns`.
fn time(budget_ns: u64, mut op: impl FnMut(u64)) -> f64 {
    let start = thread_ns();
    let mut calls = 0u64;
    while calls < 3 || thread_ns() - start < budget_ns {
        op(calls);
        calls += 1;
    }
    (thread_ns() - start) as f64 / calls as f64
}

fn deal(scheme: SchemeId, n: usize, quorum: usize) -> lcbft_protocol::crypto::DealtKeys {
    match scheme {
        SchemeId::Blsttc => BlsttcScheme::deal(n, quorum, [7; 32]),
        _ => ThresholdCryptoScheme::deal(n, quorum, [7; 32]),
    }
}

fn load(
    scheme: SchemeId,
    n: usize,
    dealt: &lcbft_protocol::crypto::DealtKeys,
) -> Vec<Box<dyn ThresholdKeys>> {
    dealt
        .secrets
        .iter()
        .map(|s| {
            let keys = match scheme {
                SchemeId::Blsttc => BlsttcScheme::load(n, &dealt.public, Some(s)),
                _ => ThresholdCryptoScheme::load(n, &dealt.public, Some(s)),
            };
            keys.expect("freshly dealt keys load")
        })
        .collect()
}

/// Time every operation of `scheme` for a domain of `n`.
pub fn measure(scheme: SchemeId, n: usize, budget_ms: u64) -> Costs {
    let budget = budget_ms * 1_000_000;
    let f = (n - 1) / 3;
    let quorum = n - f;
    let members = load(scheme, n, &deal(scheme, n, quorum));
    let msg = b"lcbft-bench crypto: one signed message".to_vec();
    let hash_to_curve = time(budget, |i| {
        let m = format!("fresh message {i}");
        match scheme {
            SchemeId::Blsttc => {
                std::hint::black_box(blsttc::hash_g2(m));
            }
            _ => {
                std::hint::black_box(ThresholdCryptoScheme::hash_to_curve(m.as_bytes()));
            }
        }
    });
    let shares: Vec<Share> = members
        .iter()
        .map(|k| k.sign_share(&msg).expect("member signs"))
        .collect();
    let sign_share = time(budget, |_| {
        std::hint::black_box(members[0].sign_share(&msg).expect("member signs"));
    });
    let verifier = &members[n - 1];
    let verify_share = time(budget, |i| {
        let signer = (i as usize) % n;
        let index = ReplicaIndex::try_from(signer).expect("small index");
        assert!(verifier.verify_share(index, &msg, &shares[signer]));
    });
    let chosen: Vec<(ReplicaIndex, &Share)> = shares
        .iter()
        .enumerate()
        .take(quorum)
        .map(|(i, s)| (ReplicaIndex::try_from(i).expect("small index"), s))
        .collect();
    let combine = time(budget, |_| {
        std::hint::black_box(members[0].combine(&chosen).expect("quorum combines"));
    });
    let signature = members[0].combine(&chosen).expect("quorum combines");
    let verify = time(budget, |_| {
        assert!(verifier.verify(&msg, &signature));
    });
    Costs {
        n,
        hash_to_curve,
        sign_share,
        verify_share,
        combine,
        verify,
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(n) = args.n.iter().find(|&&n| n < 4) {
        anyhow::bail!("--n {n}: a domain needs at least 4 replicas");
    }
    let mut out = serde_json::Map::new();
    for scheme in args.scheme.schemes() {
        let rows: Vec<Value> = args
            .n
            .iter()
            .map(|&n| {
                let c = measure(scheme, n, args.budget_ms);
                eprintln!("{} {}", scheme_name(scheme), c.json());
                c.json()
            })
            .collect();
        out.insert(scheme_name(scheme).to_string(), Value::Array(rows));
    }
    println!(
        "{}",
        json!({ "command": "crypto", "unit": "CPU microseconds per operation", "schemes": out })
    );
    Ok(())
}
