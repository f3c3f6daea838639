//! `lcbft-bench`: figures for lcbft. Performance targets are checked here, by printed numbers,
//! never by timed assertions in tests.

mod sim;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sim(args) => sim::run(&args),
    }
}
