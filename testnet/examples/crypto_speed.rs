//! How fast this machine (or qemu) runs the threshold signature operations of one consensus
//! view, for the README's hardware section: `cargo run --profile device --example
//! crypto_speed -p lcbft-testnet`, or cross-built and run under `qemu-aarch64 -L
//! /usr/aarch64-linux-gnu`. Prints one JSON line of microseconds per operation.

use lcbft_protocol::crypto::{Dealer, ThresholdCryptoScheme, load_keys};
use std::time::{Duration, Instant};

/// Mean time of `f` over at least `min` and 3 runs.
fn time<T>(min: Duration, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 3 || start.elapsed() < min {
        std::hint::black_box(f());
        runs += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(runs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let min = Duration::from_millis(
        std::env::args()
            .nth(1)
            .map_or(Ok(1000), |s| s.parse())
            .map_err(|e| format!("argument: milliseconds per operation ({e})"))?,
    );
    // A local domain of the default testnet: an edge and 3 devices, quorum 3.
    let (n, quorum) = (4, 3);
    let dealt = ThresholdCryptoScheme::deal(n, quorum, [7; 32]);
    let keys: Vec<_> = dealt
        .secrets
        .iter()
        .map(|s| load_keys(dealt.scheme, n, &dealt.public, Some(s)))
        .collect::<Result<_, _>>()?;
    let msg = b"a vote on block 42 of local/1";
    let shares: Vec<_> = keys
        .iter()
        .map(|k| k.sign_share(msg))
        .collect::<Result<_, _>>()?;
    let refs: Vec<(u16, _)> = shares
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u16, s))
        .collect();
    let sig = keys[0].combine(&refs[..quorum])?;
    assert!(keys[0].verify(msg, &sig));
    let sign = time(min, || keys[1].sign_share(msg));
    let verify_share = time(min, || keys[0].verify_share(1, msg, &shares[1]));
    let combine = time(min, || keys[0].combine(&refs[..quorum]));
    let verify = time(min, || keys[0].verify(msg, &sig));
    println!(
        "{{\"scheme\":\"threshold-crypto\",\"arch\":\"{}\",\"sign_share_us\":{sign:.0},\"verify_share_us\":{verify_share:.0},\"combine_us\":{combine:.0},\"verify_us\":{verify:.0}}}",
        std::env::consts::ARCH
    );
    Ok(())
}
