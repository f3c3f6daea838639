//! `lcbft-testnet`: a layered lcbft network of node processes on one machine.

use clap::Parser;

/// Start, watch and check a layered lcbft network.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("lcbft-testnet needs the networked node, which is not built yet")
}
