//! The `lcbft` node daemon.

use clap::Parser;

/// lcbft node: runs one member of the global domain and/or a local domain.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!(
        "the networked node is not built yet: use `lcbft-bench sim` to run the consensus simulator"
    )
}
