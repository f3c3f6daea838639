//! `lcbft-bench cost-model`: the paper's §6 cost model against the simulator running real BLS.
//!
//! The paper counts the work of one committed block in basic phases: CM_g = 3·CM_s for the
//! global three-chain, CM_l = (2 + 2p)·CM_s for the local two-chain, where p is the chance that
//! the local leader fails in a round and the view change that follows costs two phases. Here
//! the simulator drops a block's first proposal with probability p (its leader fails in that
//! round) and counts, per committed block of payload, the certificates formed, the crypto
//! operations, messages, bytes and the CPU each replica spent in its consensus steps; CM_s is
//! the phase floor that `crypto` measures in the same run.
//!
//! Two regimes: *sparse*, one item every two seconds, so each block is alone and the idle rule
//! finishes its commit chain with empty blocks (the paper's picture, and the usual IoT load);
//! *saturated*, an item every 20 ms, where chained views pipeline and one certificate serves
//! as a phase of several blocks at once.

use crate::crypto::{Costs, scheme_name};
use crate::plot::{self, Axes, Line, ORANGE};
use anyhow::Context;
use clap::{Args as ClapArgs, ValueEnum};
use lcbft_protocol::crypto::SchemeId;
use lcbft_protocol::sim::{Layer, Sim, SimConfig, SimReport};
use plotters::style::{BLUE, CYAN, GREEN, MAGENTA, RED};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BlsArg {
    Tc,
    Blsttc,
}

impl BlsArg {
    pub fn id(self) -> SchemeId {
        match self {
            BlsArg::Tc => SchemeId::ThresholdCrypto,
            BlsArg::Blsttc => SchemeId::Blsttc,
        }
    }
}

#[derive(ClapArgs)]
pub struct Args {
    /// Probabilities that the local leader fails in a round.
    #[arg(long, value_delimiter = ',', default_value = "0,0.05,0.1,0.25,0.5")]
    p: Vec<f64>,
    /// Replicas per domain.
    #[arg(long, default_value_t = 4)]
    n: usize,
    /// BLS backend the replicas run.
    #[arg(long, value_enum, default_value = "blsttc")]
    scheme: BlsArg,
    /// Blocks of payload per sparse run (one item each).
    #[arg(long, default_value_t = 200)]
    blocks: u64,
    /// Virtual seconds per saturated run.
    #[arg(long, default_value_t = 20)]
    saturated_s: u64,
    /// A short run for CI: 6 sparse blocks and 2 saturated seconds per p.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write cost-model.md, cost-model.csv and the PNG plots into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Regime {
    Sparse,
    Saturated,
}

impl Regime {
    fn name(self) -> &'static str {
        match self {
            Regime::Sparse => "sparse",
            Regime::Saturated => "saturated",
        }
    }
}

pub fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::Global => "global",
        Layer::Local => "local",
    }
}

/// One simulated run's figures per committed block of payload.
#[derive(Clone, Debug, Default)]
pub struct PerBlock {
    pub blocks: u64,
    pub commits: u64,
    pub view_changes: u64,
    pub leader_failures: u64,
    pub phases: f64,
    /// Basic phases from a block's proposal to its first commit (the latency measure).
    pub phases_to_commit: f64,
    pub messages: f64,
    pub bytes: f64,
    /// Sign, verify share, combine, verify, summed over replicas.
    pub crypto: [f64; 4],
    /// CPU per replica: mean over honest replicas, and the busiest one (the collector).
    pub cpu_mean_ns: f64,
    pub cpu_max_ns: f64,
    pub wall_s: f64,
}

impl PerBlock {
    pub fn of(r: &SimReport, wall_s: f64) -> PerBlock {
        let blocks = r.payload_commits.max(1) as f64;
        let per = |x: u64| x as f64 / blocks;
        let cpus: Vec<u64> = r.cpu_ns.iter().copied().filter(|&c| c > 0).collect();
        let cpu_total: u64 = cpus.iter().sum();
        PerBlock {
            blocks: r.payload_commits,
            commits: r.commits,
            view_changes: r.view_changes,
            leader_failures: r.leader_failures,
            phases: per(r.phases),
            phases_to_commit: r.phases_per_commit,
            messages: per(r.messages),
            bytes: per(r.bytes),
            crypto: r.crypto.map(per),
            cpu_mean_ns: cpu_total as f64 / cpus.len().max(1) as f64 / blocks,
            cpu_max_ns: cpus.iter().copied().max().unwrap_or(0) as f64 / blocks,
            wall_s,
        }
    }

    pub fn json(&self) -> Value {
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "blocks": self.blocks,
            "commits": self.commits,
            "view_changes": self.view_changes,
            "leader_failures": self.leader_failures,
            "phases_per_block": r2(self.phases),
            "phases_to_commit": r2(self.phases_to_commit),
            "messages_per_block": r2(self.messages),
            "bytes_per_block": r2(self.bytes),
            "sign_shares_per_block": r2(self.crypto[0]),
            "share_verifications_per_block": r2(self.crypto[1]),
            "combines_per_block": r2(self.crypto[2]),
            "verifications_per_block": r2(self.crypto[3]),
            "cpu_ms_per_replica_per_block": r2(self.cpu_mean_ns / 1e6),
            "cpu_ms_busiest_replica_per_block": r2(self.cpu_max_ns / 1e6),
            "wall_s": r2(self.wall_s),
        })
    }
}

/// A fault-free domain of `n` honest replicas (the local one collecting at its edge) running
/// `scheme`, with its CPU read from this thread's CPU clock.
pub fn config(layer: Layer, n: usize, scheme: SchemeId, seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(layer, n, 0, seed);
    cfg.faults = false;
    cfg.offload = true;
    cfg.scheme = scheme;
    cfg.cpu_clock = crate::cpu::thread_ns;
    cfg
}

/// One run of `layer` in `regime` with leader failures at `p`.
pub fn run_one(
    layer: Layer,
    regime: Regime,
    p: f64,
    args: &Args,
    scheme: SchemeId,
) -> anyhow::Result<PerBlock> {
    let mut cfg = config(layer, args.n, scheme, args.seed);
    cfg.leader_failure = p;
    let (blocks, saturated_s) = if args.quick {
        (6, 2)
    } else {
        (args.blocks, args.saturated_s)
    };
    match regime {
        Regime::Sparse => {
            // Items at 0, 2 s, 4 s, ...; the last one has most of two seconds to commit.
            cfg.tx_every_ms = 2_000;
            cfg.duration_ms = blocks * 2_000 - 100;
        }
        Regime::Saturated => {
            cfg.tx_every_ms = 20;
            cfg.duration_ms = saturated_s * 1_000;
        }
    }
    let started = std::time::Instant::now();
    let report = Sim::new(cfg).run();
    if !report.safety_violations.is_empty() {
        anyhow::bail!("safety violated: {:?}", report.safety_violations);
    }
    let m = PerBlock::of(&report, started.elapsed().as_secs_f64());
    eprintln!(
        "{} {} p={p}: {}",
        layer_name(layer),
        regime.name(),
        m.json()
    );
    Ok(m)
}

/// The paper's phases per committed block.
pub fn predicted_phases(layer: Layer, p: f64) -> f64 {
    match layer {
        Layer::Global => 3.0,
        Layer::Local => 2.0 + 2.0 * p,
    }
}

struct Row {
    regime: Regime,
    layer: Layer,
    p: f64,
    m: PerBlock,
}

impl Row {
    fn predicted_phases(&self) -> f64 {
        predicted_phases(self.layer, self.p)
    }

    /// Predicted CPU per replica per block: phases × CM_s.
    fn predicted_cpu_ns(&self, costs: &Costs) -> f64 {
        self.predicted_phases() * costs.phase_mean()
    }

    /// The floor for the phases this run actually formed: measured phases × CM_s.
    fn floor_cpu_ns(&self, costs: &Costs) -> f64 {
        self.m.phases * costs.phase_mean()
    }

    /// The run's crypto operations at `crypto`'s prices, per replica per block.
    fn crypto_cpu_ns(&self, costs: &Costs, n: usize) -> f64 {
        costs.price(self.m.crypto) / n as f64
    }

    /// The run's figures, then where it ran and what the paper and `crypto` predict for it.
    fn json(&self, costs: &Costs, n: usize) -> Value {
        let mut v = self.m.json();
        let o = v.as_object_mut().expect("object");
        o.insert("regime".into(), json!(self.regime.name()));
        o.insert("layer".into(), json!(layer_name(self.layer)));
        o.insert("p".into(), json!(self.p));
        o.insert(
            "predicted_phases_per_block".into(),
            json!(self.predicted_phases()),
        );
        o.insert(
            "predicted_cpu_ms_per_replica_per_block".into(),
            json!(round2(self.predicted_cpu_ns(costs) / 1e6)),
        );
        o.insert(
            "floor_cpu_ms_per_replica_per_block".into(),
            json!(round2(self.floor_cpu_ns(costs) / 1e6)),
        );
        o.insert(
            "crypto_cpu_ms_per_replica_per_block".into(),
            json!(round2(self.crypto_cpu_ns(costs, n) / 1e6)),
        );
        v
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.n < 4 {
        anyhow::bail!("--n must be at least 4");
    }
    if let Some(p) = args.p.iter().find(|p| !(0.0..1.0).contains(*p)) {
        anyhow::bail!("--p {p}: a probability below 1");
    }
    let started = std::time::Instant::now();
    let scheme = args.scheme.id();
    let costs = crate::crypto::measure(scheme, args.n, if args.quick { 50 } else { 400 });
    eprintln!("crypto {}: {}", scheme_name(scheme), costs.json());
    let mut rows = Vec::new();
    for regime in [Regime::Sparse, Regime::Saturated] {
        // The paper has no p for the global chain: its leader rotates every view anyway.
        let global = run_one(Layer::Global, regime, 0.0, args, scheme)?;
        for &p in &args.p {
            rows.push(Row {
                regime,
                layer: Layer::Global,
                p,
                m: global.clone(),
            });
            rows.push(Row {
                regime,
                layer: Layer::Local,
                p,
                m: run_one(Layer::Local, regime, p, args, scheme)?,
            });
        }
    }
    let json_rows: Vec<Value> = rows.iter().map(|r| r.json(&costs, args.n)).collect();
    let ratios = cpu_ratios(&rows);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_table(dir, args, &costs, &rows)?;
        charts(dir, args, &costs, &rows)?;
        eprintln!("wrote cost-model tables and plots into {}", dir.display());
    }
    println!(
        "{}",
        json!({
            "command": "cost-model",
            "n": args.n,
            "scheme": scheme_name(scheme),
            "quick": args.quick,
            "cm_s_ms": round2(costs.phase_mean() / 1e6),
            "crypto": costs.json(),
            "local_global_cpu_ratio": ratios,
            "rows": json_rows,
            "wall_seconds": round2(started.elapsed().as_secs_f64()),
        })
    );
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Sparse regime, per p: measured local/global CPU per replica against the paper's (2 + 2p)/3.
fn cpu_ratios(rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .filter(|r| r.regime == Regime::Sparse && r.layer == Layer::Local)
        .filter_map(|local| {
            let global = rows.iter().find(|g| {
                g.regime == Regime::Sparse && g.layer == Layer::Global && g.p == local.p
            })?;
            let measured = local.m.cpu_mean_ns / global.m.cpu_mean_ns.max(1.0);
            Some(json!({
                "p": local.p,
                "measured": round2(measured),
                "predicted": round2(predicted_phases(Layer::Local, local.p) / 3.0),
            }))
        })
        .collect()
}

const CSV_HEADER: &str = "regime,layer,p,blocks,view_changes,phases_per_block,predicted_phases,phases_to_commit,messages_per_block,bytes_per_block,sign_shares,share_verifications,combines,verifications,cpu_ms_per_replica,predicted_cpu_ms_per_replica,floor_cpu_ms_per_replica,crypto_cpu_ms_per_replica,cpu_ms_busiest_replica\n";

fn write_table(dir: &Path, args: &Args, costs: &Costs, rows: &[Row]) -> anyhow::Result<()> {
    let mut csv = String::from(CSV_HEADER);
    let mut md = md_header(args, costs);
    for r in rows {
        csv_row(&mut csv, r, costs, args.n)?;
        md_row(&mut md, r, costs, args.n)?;
    }
    md_ratios(&mut md, &cpu_ratios(rows))?;
    std::fs::write(dir.join("cost-model.csv"), csv)?;
    std::fs::write(dir.join("cost-model.md"), md)?;
    Ok(())
}

/// The markdown's title, the run's setting and CM_s, and the head of the main table.
fn md_header(args: &Args, costs: &Costs) -> String {
    format!(
        "# Cost model: measured against the paper (§6)\n\n\
         Simulator, n = {n}, {scheme} BLS, no faults but the injected leader failures, seed {seed}. \
         CM_s = {cms:.2} ms of CPU per replica per basic phase (hash {h:.2} + sign {s:.2} + verify \
         {v:.2} ms, plus combine {c:.2} ms at the collector, shared over n), from `crypto` in the \
         same run. Per committed block of payload; CPU is the time inside the replicas' steps \
         on the thread's CPU clock, mean over replicas.\n\n\
         | regime | layer | p | blocks | view changes | phases/block (certificates formed) | paper | phases from proposal to commit | msgs/block | bytes/block | sign/verify-share/combine/verify per block | CPU ms/replica/block | paper (paper's phases × CM_s) | floor (measured phases × CM_s) | counted crypto at `crypto`'s prices | busiest replica |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        n = args.n,
        scheme = scheme_name(args.scheme.id()),
        seed = args.seed,
        cms = costs.phase_mean() / 1e6,
        h = costs.hash_to_curve / 1e6,
        s = costs.sign_share / 1e6,
        v = costs.verify / 1e6,
        c = costs.combine / 1e6,
    )
}

/// A row's first columns: what was run.
fn head(r: &Row) -> [String; 5] {
    [
        r.regime.name().to_string(),
        layer_name(r.layer).to_string(),
        r.p.to_string(),
        r.m.blocks.to_string(),
        r.m.view_changes.to_string(),
    ]
}

/// A row's figures, in column order after [`head`]: phases (measured, paper, to commit),
/// messages, bytes, the four crypto counts, CPU ms (measured, paper, floor, priced crypto,
/// busiest replica).
fn figures(r: &Row, costs: &Costs, n: usize) -> [f64; 14] {
    let m = &r.m;
    [
        m.phases,
        r.predicted_phases(),
        m.phases_to_commit,
        m.messages,
        m.bytes,
        m.crypto[0],
        m.crypto[1],
        m.crypto[2],
        m.crypto[3],
        m.cpu_mean_ns / 1e6,
        r.predicted_cpu_ns(costs) / 1e6,
        r.floor_cpu_ns(costs) / 1e6,
        r.crypto_cpu_ns(costs, n) / 1e6,
        m.cpu_max_ns / 1e6,
    ]
}

/// Decimals per figure: the CSV keeps more than the table shows.
const CSV_DECIMALS: [usize; 14] = [3, 3, 3, 1, 0, 2, 2, 2, 2, 3, 3, 3, 3, 3];
const MD_DECIMALS: [usize; 14] = [2, 2, 2, 1, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2];

fn formatted(r: &Row, costs: &Costs, n: usize, decimals: [usize; 14]) -> Vec<String> {
    figures(r, costs, n)
        .iter()
        .zip(decimals)
        .map(|(v, d)| format!("{v:.d$}"))
        .collect()
}

fn csv_row(csv: &mut String, r: &Row, costs: &Costs, n: usize) -> std::fmt::Result {
    let cells = formatted(r, costs, n, CSV_DECIMALS);
    writeln!(csv, "{},{}", head(r).join(","), cells.join(","))
}

fn md_row(md: &mut String, r: &Row, costs: &Costs, n: usize) -> std::fmt::Result {
    let cells = formatted(r, costs, n, MD_DECIMALS);
    // The four crypto counts share one cell.
    let (phases, rest) = cells.split_at(5);
    let (crypto, cpu) = rest.split_at(4);
    writeln!(
        md,
        "| {} | {} | {} | {} |",
        head(r).join(" | "),
        phases.join(" | "),
        crypto.join(" / "),
        cpu.join(" | ")
    )
}

/// The markdown's second table, from `cpu_ratios`.
fn md_ratios(md: &mut String, ratios: &[Value]) -> std::fmt::Result {
    md.push_str("\nLocal/global CPU per replica, sparse regime (paper: (2 + 2p)/3):\n\n| p | measured | paper |\n|---|---|---|\n");
    for r in ratios {
        writeln!(
            md,
            "| {} | {} | {} |",
            r["p"], r["measured"], r["predicted"]
        )?;
    }
    Ok(())
}

fn charts(dir: &Path, args: &Args, costs: &Costs, rows: &[Row]) -> anyhow::Result<()> {
    phases_chart(dir, args, rows)?;
    cpu_chart(dir, args, costs, rows)
}

/// `y` of each row of one regime and layer, against p.
fn series(rows: &[Row], regime: Regime, layer: Layer, y: impl Fn(&Row) -> f64) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|r| r.regime == regime && r.layer == layer)
        .map(|r| (r.p, y(r)))
        .collect()
}

/// The lines both charts open with: `y` measured for each layer in each regime.
fn measured_lines(rows: &[Row], y: impl Fn(&Row) -> f64) -> Vec<Line> {
    [
        ("global, sparse", RED, Regime::Sparse, Layer::Global),
        ("local, sparse", BLUE, Regime::Sparse, Layer::Local),
        (
            "global, saturated",
            MAGENTA,
            Regime::Saturated,
            Layer::Global,
        ),
        ("local, saturated", GREEN, Regime::Saturated, Layer::Local),
    ]
    .into_iter()
    .map(|(label, color, regime, layer)| {
        Line::measured(label, color, series(rows, regime, layer, &y))
    })
    .collect()
}

fn draw_against_p(png: &Path, title: &str, y: &str, lines: &[Line]) -> anyhow::Result<()> {
    let axes = Axes {
        title,
        x: "p (chance the local leader fails in a round)",
        y,
    };
    plot::draw(png, &axes, lines)
}

fn phases_chart(dir: &Path, args: &Args, rows: &[Row]) -> anyhow::Result<()> {
    let to_commit = |r: &Row| r.m.phases_to_commit;
    let paper = |r: &Row| r.predicted_phases();
    let mut lines = measured_lines(rows, |r| r.m.phases);
    lines.extend([
        Line::measured(
            "global, sparse, from proposal to commit",
            ORANGE,
            series(rows, Regime::Sparse, Layer::Global, to_commit),
        ),
        Line::measured(
            "local, sparse, from proposal to commit",
            CYAN,
            series(rows, Regime::Sparse, Layer::Local, to_commit),
        ),
        Line::predicted(
            "paper: global 3",
            RED,
            series(rows, Regime::Sparse, Layer::Global, paper),
        ),
        Line::predicted(
            "paper: local 2 + 2p",
            BLUE,
            series(rows, Regime::Sparse, Layer::Local, paper),
        ),
    ]);
    draw_against_p(
        &dir.join("cost-model-phases.png"),
        &format!("Basic phases per committed block, n = {}", args.n),
        "basic phases per committed block",
        &lines,
    )
}

fn cpu_chart(dir: &Path, args: &Args, costs: &Costs, rows: &[Row]) -> anyhow::Result<()> {
    let paper = |r: &Row| r.predicted_cpu_ns(costs) / 1e6;
    let mut lines = measured_lines(rows, |r| r.m.cpu_mean_ns / 1e6);
    lines.extend([
        Line::predicted(
            "paper: 3 CM_s",
            RED,
            series(rows, Regime::Sparse, Layer::Global, paper),
        ),
        Line::predicted(
            "paper: (2 + 2p) CM_s",
            BLUE,
            series(rows, Regime::Sparse, Layer::Local, paper),
        ),
    ]);
    let title = format!(
        "CPU per replica per committed block, n = {}, {}",
        args.n,
        scheme_name(args.scheme.id())
    );
    draw_against_p(
        &dir.join("cost-model-cpu.png"),
        &title,
        "CPU ms per replica per block",
        &lines,
    )
}
