//! What a replica pays for the threshold-signature work of one block, per backend: verify one
//! share, verify the `n - f` shares a collector gathers for one message (n = 4, n = 10), and
//! verify one combined signature twice (as a certificate is checked on arrival and again
//! later). Every round uses a message the verifier has not seen, as it is in consensus.
//!
//! Each figure is the median over rounds. Figures only, never assertions:
//! `cargo run --release -p lcbft-protocol --all-features --example crypto_costs [rounds]`

use lcbft_protocol::crypto::{Dealer, Share, ThresholdCryptoScheme, ThresholdKeys};
use lcbft_protocol::types::ReplicaIndex;
use std::time::{Duration, Instant};

/// A domain of `n` with its members' shares over `rounds` distinct messages.
struct Setup {
    observer: Box<dyn ThresholdKeys>,
    /// `(message, shares by signer)` per round.
    rounds: Vec<(Vec<u8>, Vec<Share>)>,
}

fn setup<D: Dealer>(n: usize, rounds: usize, tag: &str) -> Setup {
    let f = (n - 1) / 3;
    let quorum = n - f;
    let dealt = D::deal(n, quorum, [n as u8; 32]);
    let members: Vec<_> = dealt
        .secrets
        .iter()
        .map(|s| D::load(n, &dealt.public, Some(s)).expect("member keys"))
        .collect();
    let observer = D::load(n, &dealt.public, None).expect("public keys");
    let rounds = (0..rounds)
        .map(|r| {
            let msg = format!("{tag}: vote for block {r} in view {r}").into_bytes();
            let shares = members
                .iter()
                .take(quorum)
                .map(|m| m.sign_share(&msg).expect("sign"))
                .collect();
            (msg, shares)
        })
        .collect();
    Setup { observer, rounds }
}

/// The median over rounds of `round`'s time, in milliseconds: robust to a busy machine.
fn median_ms<T>(items: &[T], mut round: impl FnMut(&T)) -> f64 {
    let mut times: Vec<Duration> = items
        .iter()
        .map(|item| {
            let start = Instant::now();
            round(item);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

fn ms(x: f64) -> String {
    format!("{x:8.3} ms")
}

type Figures = Vec<(&'static str, f64)>;

/// Milliseconds per round for each figure of one backend.
fn measure<D: Dealer>(name: &str, rounds: usize) -> Figures {
    let mut figures = Vec::new();
    // Verify one share of a fresh message.
    let s = setup::<D>(4, rounds, &format!("{name} one"));
    let x = median_ms(&s.rounds, |(msg, shares)| {
        assert!(s.observer.verify_share(0, msg, &shares[0]));
    });
    figures.push(("verify_one_share", x));
    // A collector verifying the quorum of shares for one message.
    for n in [4, 10] {
        let s = setup::<D>(n, rounds, &format!("{name} quorum {n}"));
        let x = median_ms(&s.rounds, |(msg, shares)| {
            for (i, share) in shares.iter().enumerate() {
                assert!(s.observer.verify_share(i as ReplicaIndex, msg, share));
            }
        });
        let label = if n == 4 {
            "verify_quorum_shares_n4"
        } else {
            "verify_quorum_shares_n10"
        };
        figures.push((label, x));
    }
    // One certificate's signature checked twice.
    let s = setup::<D>(4, rounds, &format!("{name} cert"));
    let sigs: Vec<_> = s
        .rounds
        .iter()
        .map(|(_, shares)| {
            let chosen: Vec<_> = shares
                .iter()
                .enumerate()
                .map(|(i, sh)| (i as ReplicaIndex, sh))
                .collect();
            s.observer.combine(&chosen).expect("combine")
        })
        .collect();
    let certs: Vec<_> = s.rounds.iter().map(|(msg, _)| msg).zip(&sigs).collect();
    let x = median_ms(&certs, |(msg, sig)| {
        assert!(s.observer.verify(msg, sig));
        assert!(s.observer.verify(msg, sig));
    });
    figures.push(("verify_signature_twice", x));
    figures
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let mut all = vec![(
        "threshold_crypto",
        measure::<ThresholdCryptoScheme>("tc", rounds),
    )];
    #[cfg(feature = "blsttc")]
    all.push((
        "blsttc",
        measure::<lcbft_protocol::crypto::BlsttcScheme>("blsttc", rounds),
    ));
    println!("median per round of {rounds}, a fresh message each round:");
    for (backend, figures) in &all {
        for (what, x) in figures {
            println!("{backend:>16} {what:<26} {}", ms(*x));
        }
    }
    let json: Vec<String> = all
        .iter()
        .map(|(backend, figures)| {
            let fields: Vec<String> = figures
                .iter()
                .map(|(what, x)| format!("\"{what}_ms\":{x:.3}"))
                .collect();
            format!("\"{backend}\":{{{}}}", fields.join(","))
        })
        .collect();
    println!("{{\"rounds\":{rounds},{}}}", json.join(","));
}
