//! `lcbft-bench sim`: the protocol simulator over many seeds.

use clap::{Args as ClapArgs, ValueEnum};
use lcbft_protocol::crypto::SchemeId;
use lcbft_protocol::sim::{Layer, RestartAll, Sim, SimConfig, SimReport};
use serde_json::{Value, json};

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
    let mut totals = Totals::default();
    for seed in args.first_seed..args.first_seed + args.seeds {
        let r = Sim::new(config(args, seed)).run();
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
        totals.add(seed, &r);
    }
    for f in totals.failures.iter().take(10) {
        eprintln!("failure: {f}");
    }
    println!("{}", summary(args, &totals, started));
    Ok(())
}

fn config(args: &Args, seed: u64) -> SimConfig {
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
    cfg
}

/// Sums over every seed run so far.
#[derive(Default)]
struct Totals {
    safety: u64,
    liveness: u64,
    commits: u64,
    view_changes: u64,
    /// Sum of phases per commit over the seeds that committed, and their number.
    phases_latency: f64,
    latency_seeds: u64,
    phases: u64,
    messages: u64,
    bytes: u64,
    crypto: [u64; 4],
    failures: Vec<Value>,
}

impl Totals {
    fn add(&mut self, seed: u64, r: &SimReport) {
        if !r.safety_violations.is_empty() {
            self.safety += 1;
            self.failures
                .push(json!({"seed": seed, "safety": r.safety_violations}));
        }
        if let Some(l) = &r.liveness_failure {
            self.liveness += 1;
            self.failures.push(
                json!({"seed": seed, "liveness": l, "strategies": format!("{:?}", r.strategies)}),
            );
        }
        self.commits += r.commits;
        self.view_changes += r.view_changes;
        if r.phases_per_commit > 0.0 {
            self.phases_latency += r.phases_per_commit;
            self.latency_seeds += 1;
        }
        self.phases += r.phases;
        self.messages += r.messages;
        self.bytes += r.bytes;
        for (total, x) in self.crypto.iter_mut().zip(r.crypto) {
            *total += x;
        }
    }
}

fn summary(args: &Args, t: &Totals, started: std::time::Instant) -> Value {
    let per_commit = |x: u64| {
        if t.commits == 0 {
            0.0
        } else {
            x as f64 / t.commits as f64
        }
    };
    json!({
        "layer": match args.layer { LayerArg::Global => "global", LayerArg::Local => "local" },
        "n": args.n,
        "byzantine": args.byzantine,
        "faults": !args.no_faults,
        "seeds": args.seeds,
        "safety_violations": t.safety,
        "liveness_failures": t.liveness,
        "commits": t.commits,
        "view_changes": t.view_changes,
        "phases_per_commit": if t.latency_seeds == 0 { 0.0 } else { t.phases_latency / t.latency_seeds as f64 },
        "phases_per_commit_amortised": per_commit(t.phases),
        "messages_per_commit": per_commit(t.messages),
        "bytes_per_commit": per_commit(t.bytes),
        "sign_shares_per_commit": per_commit(t.crypto[0]),
        "share_verifications_per_commit": per_commit(t.crypto[1]),
        "combines_per_commit": per_commit(t.crypto[2]),
        "verifications_per_commit": per_commit(t.crypto[3]),
        "wall_seconds": started.elapsed().as_secs_f64(),
    })
}
