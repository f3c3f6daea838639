//! `lcbft-bench`: figures for lcbft. Performance targets are checked here, by printed numbers,
//! never by timed assertions in tests.

mod loadgen;
mod sim;
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sim(args) => sim::run(&args),
        Command::Throughput(args) => throughput::run(&args),
        Command::Loadgen(args) => loadgen::run(&args),
    }
}
