//! `lcbft-bench scale`: how a committed block's cost grows with the domain, both layers,
//! without and with a view change.
//!
//! Real BLS cannot run at n = 128 in the simulator in reasonable time (loading one replica's
//! key set derives all n public shares, n × quorum curve multiplications), so these runs use
//! the hash-based stand-in, whose shares and signatures have the real sizes: messages, bytes
//! and crypto operations are exact. CPU per replica is the measured time of the replicas'
//! steps with the stand-in (consensus rules, no curve arithmetic) plus the counted crypto
//! operations priced at the BLS backend's costs from `crypto` (measured at n = 4; a
//! combination is priced in proportion to its n - f shares).

use crate::cost_model::{PerBlock, config, layer_name};
use crate::crypto::{Costs, scheme_name};
use crate::plot::{self, Axes, Line, ORANGE};
use anyhow::Context;
use clap::Args as ClapArgs;
use lcbft_protocol::crypto::SchemeId;
use lcbft_protocol::sim::{Layer, Sim};
use plotters::style::{BLUE, MAGENTA, RED};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    /// Domain sizes.
    #[arg(long, value_delimiter = ',', default_value = "4,16,64,128")]
    n: Vec<usize>,
    /// Blocks of payload per run (one item each, two seconds apart).
    #[arg(long, default_value_t = 10)]
    blocks: u64,
    /// Three blocks per run, for CI.
    #[arg(long)]
    quick: bool,
    /// Backend whose measured costs price the counted crypto operations.
    #[arg(long, value_enum, default_value = "blsttc")]
    scheme: crate::cost_model::BlsArg,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write scale.md, scale.csv and the PNG plots into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

struct Row {
    n: usize,
    layer: Layer,
    view_change: bool,
    m: PerBlock,
    /// Crypto operations at the backend's prices, per replica per block.
    crypto_ns: f64,
}

impl Row {
    fn cpu_ns(&self) -> f64 {
        self.m.cpu_mean_ns + self.crypto_ns
    }

    fn json(&self) -> Value {
        let mut v = self.m.json();
        let o = v.as_object_mut().expect("object");
        o.insert("n".into(), json!(self.n));
        o.insert("layer".into(), json!(layer_name(self.layer)));
        o.insert("view_change".into(), json!(self.view_change));
        o.insert(
            "messages_per_block_per_n".into(),
            json!(round2(self.m.messages / self.n as f64)),
        );
        o.insert(
            "crypto_cpu_ms_per_replica_per_block".into(),
            json!(round2(self.crypto_ns / 1e6)),
        );
        o.insert(
            "cpu_ms_per_replica_per_block_priced".into(),
            json!(round2(self.cpu_ns() / 1e6)),
        );
        v
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `costs` (measured at `costs.n`) for a domain of `n`: a combination interpolates n - f
/// shares, so it is priced in proportion to them; the other operations do not depend on n.
fn costs_at(costs: &Costs, n: usize) -> Costs {
    let quorum = |n: usize| (n - (n - 1) / 3) as f64;
    Costs {
        n,
        combine: costs.combine * quorum(n) / quorum(costs.n),
        ..*costs
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(n) = args.n.iter().find(|&&n| n < 4) {
        anyhow::bail!("--n {n}: a domain needs at least 4 replicas");
    }
    let started = std::time::Instant::now();
    let scheme = args.scheme.id();
    let base = crate::crypto::measure(scheme, 4, if args.quick { 50 } else { 400 });
    eprintln!("crypto {} n=4: {}", scheme_name(scheme), base.json());
    let blocks = if args.quick { 3 } else { args.blocks };
    let mut rows = Vec::new();
    for &n in &args.n {
        let costs = costs_at(&base, n);
        for layer in [Layer::Global, Layer::Local] {
            for view_change in [false, true] {
                let mut cfg = config(layer, n, SchemeId::Sim, args.seed);
                cfg.tx_every_ms = 2_000;
                cfg.duration_ms = blocks * 2_000 - 100;
                // Every block's first proposal is lost: one leader failure per block.
                cfg.leader_failure = if view_change { 1.0 } else { 0.0 };
                let t = std::time::Instant::now();
                let report = Sim::new(cfg).run();
                if !report.safety_violations.is_empty() {
                    anyhow::bail!("n = {n}: safety violated: {:?}", report.safety_violations);
                }
                let m = PerBlock::of(&report, t.elapsed().as_secs_f64());
                let row = Row {
                    n,
                    layer,
                    view_change,
                    crypto_ns: costs.price(m.crypto) / n as f64,
                    m,
                };
                eprintln!("scale: {}", row.json());
                rows.push(row);
            }
        }
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_table(dir, args, &base, &rows)?;
        charts(dir, &rows)?;
        eprintln!("wrote scale tables and plots into {}", dir.display());
    }
    println!(
        "{}",
        json!({
            "command": "scale",
            "priced_with": scheme_name(scheme),
            "quick": args.quick,
            "crypto_n4": base.json(),
            "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
            "wall_seconds": round2(started.elapsed().as_secs_f64()),
        })
    );
    Ok(())
}

fn write_table(dir: &Path, args: &Args, base: &Costs, rows: &[Row]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "n,layer,view_change,blocks,view_changes,phases_per_block,messages_per_block,messages_per_block_per_n,bytes_per_block,sign_shares,share_verifications,combines,verifications,cpu_ms_protocol_per_replica,crypto_cpu_ms_per_replica,cpu_ms_per_replica,wall_s\n",
    );
    let mut md = format!(
        "# Scale: cost per committed block as the domain grows\n\n\
         Simulator, sparse load (one item every 2 s), seed {seed}; with a view change = every \
         block's first proposal lost (one leader failure per block). Crypto counted exactly with \
         the hash-based stand-in and priced at {scheme}'s costs measured at n = 4 (combine \
         scaled by n - f): sign {s:.2} + hash {h:.2} ms, verify share {vs:.2} ms, combine \
         {c:.2} ms (n = 4), verify {v:.2} ms. CPU = the replicas' measured steps + priced crypto, \
         mean per replica.\n\n\
         | n | layer | view change | phases/block | msgs/block | msgs/block/n | bytes/block | sign/verify-share/combine/verify per block | CPU ms/replica/block | run s |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        seed = args.seed,
        scheme = scheme_name(args.scheme.id()),
        s = base.sign_share / 1e6,
        h = base.hash_to_curve / 1e6,
        vs = base.verify_share / 1e6,
        c = base.combine / 1e6,
        v = base.verify / 1e6,
    );
    for r in rows {
        let m = &r.m;
        writeln!(
            csv,
            "{},{},{},{},{},{:.3},{:.1},{:.2},{:.0},{:.1},{:.1},{:.1},{:.1},{:.3},{:.3},{:.3},{:.2}",
            r.n,
            layer_name(r.layer),
            r.view_change,
            m.blocks,
            m.view_changes,
            m.phases,
            m.messages,
            m.messages / r.n as f64,
            m.bytes,
            m.crypto[0],
            m.crypto[1],
            m.crypto[2],
            m.crypto[3],
            m.cpu_mean_ns / 1e6,
            r.crypto_ns / 1e6,
            r.cpu_ns() / 1e6,
            m.wall_s,
        )?;
        writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} / {:.0} / {:.1} / {:.0} | {:.2} | {:.1} |",
            r.n,
            layer_name(r.layer),
            if r.view_change { "yes" } else { "no" },
            m.phases,
            m.messages,
            m.messages / r.n as f64,
            m.bytes,
            m.crypto[0],
            m.crypto[1],
            m.crypto[2],
            m.crypto[3],
            r.cpu_ns() / 1e6,
            m.wall_s,
        )?;
    }
    std::fs::write(dir.join("scale.csv"), csv)?;
    std::fs::write(dir.join("scale.md"), md)?;
    Ok(())
}

fn charts(dir: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let series = |layer: Layer, vc: bool, y: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.layer == layer && r.view_change == vc)
            .map(|r| (r.n as f64, y(r)))
            .collect()
    };
    let lines_of = |y: &dyn Fn(&Row) -> f64| {
        [
            Line::measured("global", RED, series(Layer::Global, false, y)),
            Line::measured("local", BLUE, series(Layer::Local, false, y)),
            Line::measured(
                "global, leader fails",
                MAGENTA,
                series(Layer::Global, true, y),
            ),
            Line::measured("local, leader fails", ORANGE, series(Layer::Local, true, y)),
        ]
    };
    plot::draw(
        &dir.join("scale-messages.png"),
        &Axes {
            title: "Messages per committed block, per replica (flat = linear in n)",
            x: "replicas in the domain (n)",
            y: "messages per committed block / n",
        },
        &lines_of(&|r| r.m.messages / r.n as f64),
    )?;
    plot::draw(
        &dir.join("scale-cpu.png"),
        &Axes {
            title: "CPU per replica per committed block (crypto priced)",
            x: "replicas in the domain (n)",
            y: "CPU ms per replica per block",
        },
        &lines_of(&|r| r.cpu_ns() / 1e6),
    )
}
