//! `lcbft-bench`: figures for lcbft. Performance targets are checked here, by printed numbers,
//! never by timed assertions in tests.

mod cost_model;
mod cpu;
mod crypto;
mod energy;
mod loadgen;
mod plot;
mod scale;
mod sim;
mod soak;
mod throughput;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "lcbft benchmarks and simulator runs", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the deterministic simulator over many seeds (crashes, partitions, message loss and
    /// rotating Byzantine strategies) and print a JSON summary as the last line.
    Sim(sim::Args),
    /// Start real `lcbft` processes (the binary next to this one), offer a load, and print one
    /// JSON line per rate: committed/s, latency to local and global commit, blocks/s, bytes,
    /// CPU and memory per role. Progress on stderr.
    Throughput(throughput::Args),
    /// What the testnet's load generator can offer when the nodes are not the limit: HTTP
    /// sinks that admit every item stand in for the nodes of a default testnet. One JSON line.
    Loadgen(loadgen::Args),
    /// Cost of each threshold-signature operation with both BLS backends, and the floor of one
    /// basic phase for a replica and for the collector. One JSON line.
    Crypto(crypto::Args),
    /// The paper's cost model (§6: 3 phases per global block, 2 + 2p per local block)
    /// against the simulator with real BLS and leader failures with probability p, sparse and
    /// saturated. Tables and plots with --out; one JSON line.
    CostModel(cost_model::Args),
    /// Messages, bytes, crypto and CPU per committed block as the domain grows, both layers,
    /// with and without a view change. Tables and plots with --out; one JSON line.
    Scale(scale::Args),
    /// CPU per role (percent of a core, ms per committed trace), blocks/s per layer and
    /// submission -> local commit latency on the default testnet at light loads, for each
    /// pacing setting. One JSON line; tables and the energy-latency plot with --results.
    Energy(energy::Args),
    /// The default testnet under a steady load for --duration: RSS, CPU, open files and disk
    /// per node every few seconds to bench/results/soak.csv, RSS and disk per role over time
    /// to soak.png, and one JSON line with the RSS slope per role after the warm-up.
    Soak(soak::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sim(args) => sim::run(&args),
        Command::Throughput(args) => throughput::run(&args),
        Command::Loadgen(args) => loadgen::run(&args),
        Command::Crypto(args) => crypto::run(&args),
        Command::CostModel(args) => cost_model::run(&args),
        Command::Scale(args) => scale::run(&args),
        Command::Energy(args) => energy::run(&args),
        Command::Soak(args) => soak::run(&args),
    }
}
