//! `lcbft-bench sim`: the protocol simulator over many seeds.

use clap::{Args as ClapArgs, ValueEnum};
use lcbft_protocol::crypto::SchemeId;
use lcbft_protocol::sim::{Layer, RestartAll, Sim, SimConfig};
use serde_json::json;

#[derive(Clone, Copy, ValueEnum)]
pub enum LayerArg {
    Global,
    Local,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SchemeArg {
    /// Hash-based stand-in with the same observable behaviour: thousands of seeds per minute.
    Sim,
    /// Real BLS12-381 threshold signatures (threshold_crypto): slow, for a few seeds.
    ThresholdCrypto,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RestartArg {
    /// Every replica crashes at one instant while traces keep arriving.
    UnderLoad,
    /// Traces stop first; the quiet domain then loses power.
    Idle,
    /// Every replica crashes the instant after one replica's vote left it.
    AfterVote,
    /// The three above in turn, by seed.
    Rotate,
}

#[derive(ClapArgs)]
pub struct Args {
    /// Which layer's protocol to run.
    #[arg(long, value_enum, default_value = "global")]
    layer: LayerArg,
    /// Replicas in the domain.
    #[arg(long, default_value_t = 4)]
    n: usize,
    /// Byzantine replicas (at most f = (n-1)/3 for the guarantees to apply).
    #[arg(long, default_value_t = 1)]
    byzantine: usize,
    /// Number of seeds to run (seeds first-seed .. first-seed+seeds).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Run without crashes, partitions and loss (Byzantine replicas still act unless 0).
    #[arg(long)]
    no_faults: bool,
    /// Virtual milliseconds per seed.
    #[arg(long, default_value_t = 40_000)]
    duration_ms: u64,
    /// Signature scheme.
    #[arg(long, value_enum, default_value = "sim")]
    scheme: SchemeArg,
    /// Print one line per seed.
    #[arg(long)]
    verbose: bool,
    /// Print every replica input and output (use with one seed).
    #[arg(long)]
    trace: bool,
    /// Honest replicas crashed from the start for good (with --byzantine, at most f).
    #[arg(long, default_value_t = 0)]
    down: usize,
    /// In place of the chaotic quarter: the whole domain crashes at once and restarts from
    /// its disks (a site-wide power cut).
    #[arg(long, value_enum)]
    restart_all: Option<RestartArg>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let f = (args.n.max(1) - 1) / 3;
    if args.n < 4 {
        anyhow::bail!("--n must be at least 4 (n = 3f + 1 with f >= 1)");
    }
    if args.byzantine > f {
        eprintln!(
            "warning: --byzantine {} exceeds f = {f}; the guarantees do not apply",
            args.byzantine
        );
    }
    let started = std::time::Instant::now();
    let (mut safety, mut liveness, mut commits, mut view_changes) = (0u64, 0u64, 0u64, 0u64);
    let (mut phases_latency, mut latency_seeds, mut phases, mut messages, mut bytes) =
        (0.0, 0u64, 0u64, 0u64, 0u64);
    let mut crypto = [0u64; 4];
    let mut failures = Vec::new();
    for seed in args.first_seed..args.first_seed + args.seeds {
        let layer = match args.layer {
            LayerArg::Global => Layer::Global,
            LayerArg::Local => Layer::Local,
        };
        let mut cfg = SimConfig::new(layer, args.n, args.byzantine, seed);
        cfg.faults = !args.no_faults;
        cfg.trace = args.trace;
        cfg.down = args.down;
        cfg.restart_all = args.restart_all.map(|r| match r {
            RestartArg::UnderLoad => RestartAll::UnderLoad,
            RestartArg::Idle => RestartAll::Idle,
            RestartArg::AfterVote => RestartAll::AfterVote,
            RestartArg::Rotate => RestartAll::ALL[seed as usize % RestartAll::ALL.len()],
        });
        cfg.duration_ms = args.duration_ms;
        cfg.scheme = match args.scheme {
            SchemeArg::Sim => SchemeId::Sim,
            SchemeArg::ThresholdCrypto => SchemeId::ThresholdCrypto,
        };
        let r = Sim::new(cfg).run();
        if args.verbose {
            eprintln!(
                "seed {seed}: commits {} view_changes {} phases/commit {:.2} strategies {:?} safety {:?} liveness {:?}",
                r.commits,
                r.view_changes,
                r.phases_per_commit,
                r.strategies,
                r.safety_violations,
                r.liveness_failure
            );
        }
        if !r.safety_violations.is_empty() {
            safety += 1;
            failures.push(json!({"seed": seed, "safety": r.safety_violations}));
        }
        if let Some(l) = &r.liveness_failure {
            liveness += 1;
            failures.push(
                json!({"seed": seed, "liveness": l, "strategies": format!("{:?}", r.strategies)}),
            );
        }
        commits += r.commits;
        view_changes += r.view_changes;
        if r.phases_per_commit > 0.0 {
            phases_latency += r.phases_per_commit;
            latency_seeds += 1;
        }
        phases += r.phases;
        messages += r.messages;
        bytes += r.bytes;
        for (total, x) in crypto.iter_mut().zip(r.crypto) {
            *total += x;
        }
    }
    for f in failures.iter().take(10) {
        eprintln!("failure: {f}");
    }
    let per_commit = |x: u64| {
        if commits == 0 {
            0.0
        } else {
            x as f64 / commits as f64
        }
    };
    let summary = json!({
        "layer": match args.layer { LayerArg::Global => "global", LayerArg::Local => "local" },
        "n": args.n,
        "byzantine": args.byzantine,
        "faults": !args.no_faults,
        "seeds": args.seeds,
        "safety_violations": safety,
        "liveness_failures": liveness,
        "commits": commits,
        "view_changes": view_changes,
        "phases_per_commit": if latency_seeds == 0 { 0.0 } else { phases_latency / latency_seeds as f64 },
        "phases_per_commit_amortised": per_commit(phases),
        "messages_per_commit": per_commit(messages),
        "bytes_per_commit": per_commit(bytes),
        "sign_shares_per_commit": per_commit(crypto[0]),
        "share_verifications_per_commit": per_commit(crypto[1]),
        "combines_per_commit": per_commit(crypto[2]),
        "verifications_per_commit": per_commit(crypto[3]),
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    println!("{summary}");
    Ok(())
}
